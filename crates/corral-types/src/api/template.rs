//! Templates: immutable, content-addressed root file systems sandboxes start from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A template. Sandboxes name it as `name` (the newest version) or `name:version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Name (lowercase letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Version (`builtin` for `host`; imports number them 1, 2, ... unless given one).
    pub version: String,
    /// `tpl-` followed by the first 32 hex digits of the SHA-256 of its layer list:
    /// two imports of the same content have the same id.
    pub id: String,
    /// Where it came from: `builtin`, `dir:PATH` or `oci:PATH`.
    pub source: String,
    /// Bytes of file data in its layers.
    pub size_bytes: u64,
    /// Its read-only layers, bottom first; the last one is corral's (see docs/templates.md).
    pub layers: Vec<TemplateLayer>,
    /// The image's environment (`KEY=value`), when the source declared one.
    pub env: Vec<String>,
    /// When it was imported (RFC 3339).
    pub created_at: String,
}

/// One read-only layer of a template, shared by every template that has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateLayer {
    /// `sha256:` + the SHA-256 of the layer's content manifest (paths, types, modes,
    /// owners, file contents, link targets, whiteouts).
    pub digest: String,
    /// Bytes of file data in the layer.
    pub size_bytes: u64,
    /// What it was made from: an OCI blob digest, `dir`, or `corral` (corral's /etc
    /// and mount points).
    pub origin: String,
}

/// `GET /v1/templates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateList {
    /// Every version of every template, by name then creation time; `host` first.
    pub templates: Vec<Template>,
}

/// `POST /v1/templates` (admin only): import from a path on the daemon's host. Give
/// exactly one of `dir` and `oci`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateImportRequest {
    /// Template name.
    pub name: String,
    /// Version; default: one more than the highest numeric version of that name.
    #[serde(default)]
    pub version: Option<String>,
    /// A directory holding a root file system (copied; owners 0..65535 kept as the
    /// sandbox's ids).
    #[serde(default)]
    pub dir: Option<String>,
    /// An OCI image layout directory, or an OCI / `docker save` tarball.
    #[serde(default)]
    pub oci: Option<String>,
}

/// `POST /v1/templates/build` (admin only): build a template from a recipe (a
/// Dockerfile subset, see docs/templates.md) whose COPY/ADD sources are read from
/// `context`, a directory on the daemon's host. Answers when the build is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBuildRequest {
    /// Template name.
    pub name: String,
    /// Version; default: the next number, or the newest version when nothing changed.
    #[serde(default)]
    pub version: Option<String>,
    /// The recipe's text.
    pub recipe: String,
    /// The build context: an absolute directory path on the daemon's host.
    pub context: String,
    /// Values of the recipe's ARGs (`--build-arg`).
    #[serde(default)]
    pub build_args: std::collections::BTreeMap<String, String>,
}

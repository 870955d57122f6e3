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
    /// The image's environment (`KEY=value`), when the source declared one; the same
    /// as `config.env` (kept for existing clients).
    pub env: Vec<String>,
    /// What the image declares for the processes started in its sandboxes (a recipe's
    /// ENV, WORKDIR and USER; an OCI image's Env, WorkingDir and User).
    #[serde(default)]
    pub config: TemplateConfig,
    /// When it was imported (RFC 3339).
    pub created_at: String,
}

/// A template's image config. Every process started in a sandbox of the template
/// (exec, run_code, terminals, E2B processes) starts with it; the request's own `env`
/// (per key), `cwd` and `user` win, and corral's own variables (egress proxy, CA
/// bundle, secret placeholders) win over the template's `env`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Environment (`KEY=value`), in the image's order.
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory (absolute); none: the user's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The default user: `root` or `sandbox` (uid 1000); none: `sandbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
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

/// `POST /v1/templates/builds` (admin only): start a build job; answers 202 with the
/// [`TemplateBuild`] at once. Follow it with `GET /v1/templates/builds/{id}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBuildCreateRequest {
    /// Template name.
    pub name: String,
    /// Version; default: the next number (a recipe whose steps all come from the cache
    /// answers the newest version instead).
    #[serde(default)]
    pub version: Option<String>,
    /// What to build from.
    pub source: TemplateBuildSource,
}

/// What a build job builds from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TemplateBuildSource {
    /// A recipe (Dockerfile subset) whose COPY/ADD sources are read from `context`.
    Recipe {
        /// The recipe's text.
        recipe: String,
        /// The build context: an absolute directory path on the daemon's host.
        context: String,
        /// Values of the recipe's ARGs.
        #[serde(default)]
        build_args: std::collections::BTreeMap<String, String>,
    },
    /// A Debian base made by debootstrap (as `corral template debootstrap`).
    Debootstrap {
        /// The suite (default `bookworm`).
        #[serde(default)]
        suite: Option<String>,
        /// The archive URL (default: `[templates] debootstrap_mirror`, else the host's
        /// apt mirror for the suite).
        #[serde(default)]
        mirror: Option<String>,
        /// debootstrap's variant (default `minbase`).
        #[serde(default)]
        variant: Option<String>,
        /// Extra packages.
        #[serde(default)]
        include: Vec<String>,
        /// An absolute path on the daemon's host of a `debootstrap --make-tarball`
        /// file: no download.
        #[serde(default)]
        tarball: Option<String>,
    },
    /// A recipe shipped with corral (`python`, `node`, or one of the daemon's
    /// `[templates] recipes_dir`); its FROM base `debian` is bootstrapped first when
    /// missing.
    Shipped {
        /// The recipe's name.
        recipe: String,
    },
    /// An import (as `POST /v1/templates`) of a path on the daemon's host: give exactly
    /// one of `dir` and `oci`. Runs in the daemon; its events are `layer` and `bytes`.
    Import {
        /// An absolute path of a directory holding a root file system.
        #[serde(default)]
        dir: Option<String>,
        /// An absolute path of an OCI image layout directory, or an OCI / `docker
        /// save` tarball.
        #[serde(default)]
        oci: Option<String>,
    },
}

/// What happens to one layer of an OCI import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateLayerState {
    /// Its blob is being read and unpacked.
    Started,
    /// It was unpacked.
    Applied,
    /// The store has this blob's layer already (an earlier import of it): nothing read.
    Cached,
}

/// Where a build job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateBuildState {
    /// Waiting to start.
    Queued,
    /// Building.
    Running,
    /// Done: `template` is set.
    Succeeded,
    /// Failed: `error` says why.
    Failed,
    /// Cancelled with `DELETE`: nothing of it was registered.
    Cancelled,
}

impl TemplateBuildState {
    /// Whether the job has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TemplateBuildState::Succeeded
                | TemplateBuildState::Failed
                | TemplateBuildState::Cancelled
        )
    }
}

/// A template build job (`tb_...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBuild {
    /// `tb_` followed by 16 hex digits.
    pub id: String,
    /// The template it builds.
    pub name: String,
    /// The version asked for, if any.
    pub version: Option<String>,
    /// `recipe`, `debootstrap`, `shipped` or `import`.
    pub source: String,
    /// Where it is.
    pub state: TemplateBuildState,
    /// The current (or last) step, 1-based; 0 before the first.
    pub step: u32,
    /// Steps of the current phase (a shipped build may bootstrap its base first).
    pub total: u32,
    /// The template built, once succeeded.
    pub template: Option<Template>,
    /// Why it failed (`code`: `build_failed` for the recipe's or a step's fault, with
    /// the recipe line; `conflict`; `internal`).
    pub error: Option<crate::ErrorDetail>,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
}

/// `GET /v1/templates/builds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBuildList {
    /// Build jobs, newest first (running ones and the most recent finished ones).
    pub builds: Vec<TemplateBuild>,
    /// Next page cursor.
    pub next_cursor: Option<String>,
}

/// One line of `GET /v1/templates/builds/{id}/events` (`application/x-ndjson`): every
/// event from the start, then the rest as it happens; the stream ends after `done`,
/// `failed` or `cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TemplateBuildEvent {
    /// A phase of a shipped build (`debootstrap debian`, `recipe python`).
    Phase {
        /// What it does.
        text: String,
    },
    /// A step starts (or comes from the cache).
    Step {
        /// 1-based.
        step: u32,
        /// Steps in the recipe.
        total: u32,
        /// The instruction.
        text: String,
        /// Its layer came from the cache.
        cached: bool,
    },
    /// A line of output (a RUN's, debootstrap's).
    Output {
        /// The line (UTF-8, invalid bytes replaced; long lines cut).
        line: String,
    },
    /// A step finished.
    StepDone {
        /// 1-based.
        step: u32,
        /// How long it took.
        elapsed_ms: u64,
    },
    /// Older output lines were dropped to bound memory (the stream goes on).
    Dropped {
        /// How many lines.
        lines: u64,
    },
    /// An import's layer `layer` of `total` (OCI: one per image layer; a directory
    /// import has one).
    Layer {
        /// 1-based.
        layer: u32,
        /// Layers to import.
        total: u32,
        /// The blob's digest (`sha256:...`), or what the image names it by; `dir` for
        /// a directory.
        digest: String,
        /// The blob's size in bytes (0 for a directory: unknown ahead).
        size_bytes: u64,
        /// Started, applied or cached.
        state: TemplateLayerState,
    },
    /// How far an import is in the current layer (sent at most every 32 MiB or
    /// second).
    Bytes {
        /// Bytes read of the current blob (OCI) or copied (directory).
        done: u64,
        /// The blob's size; none for a directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        /// Files copied so far (directory imports).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        files: Option<u64>,
    },
    /// The build succeeded.
    Done {
        /// The template.
        template: Template,
    },
    /// The build failed.
    Failed {
        /// Stable snake_case code.
        code: String,
        /// What failed and what to do.
        message: String,
    },
    /// The build was cancelled; nothing of it remains.
    Cancelled,
}

//! Template lookup: a name becomes a root file system spec.

use std::path::{Path, PathBuf};

use corral_isolate::RootfsSpec;

use crate::host;
use crate::templates::{TemplateStore, TemplateStoreError};

/// Failures resolving or building a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// No template of that name.
    #[error(transparent)]
    Unknown(TemplateStoreError),
    /// The template's files are unusable (missing layer, other id base).
    #[error("template {name:?} cannot be used")]
    Store {
        /// Template name.
        name: String,
        /// The cause.
        #[source]
        source: TemplateStoreError,
    },
    /// Building the template's files failed.
    #[error("building template {name:?} in {} failed; check that the state directory is writable (set CORRAL_STATE_DIR to move it)", dir.display())]
    Build {
        /// Template name.
        name: String,
        /// Where it was being built.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Resolves a template (`host`, `name` or `name:version`) to its root file system:
/// `host` is built under `state_dir/templates` on first use; others come from the
/// template store there (see templates/mod.rs). Template files are owned by host ids
/// from `id_base`, which is uid/gid 0 inside sandboxes whose id map starts there.
pub fn resolve_template(
    state_dir: &Path,
    name: &str,
    id_base: u32,
) -> Result<RootfsSpec, TemplateError> {
    if name == "host" {
        return host::host_rootfs(&state_dir.join("templates"), id_base).map_err(
            |(dir, source)| TemplateError::Build {
                name: name.into(),
                dir,
                source,
            },
        );
    }
    TemplateStore::new(state_dir, id_base)
        .rootfs(name)
        .map_err(|e| match e {
            e @ TemplateStoreError::NotFound { .. } => TemplateError::Unknown(e),
            source => TemplateError::Store {
                name: name.into(),
                source,
            },
        })
}

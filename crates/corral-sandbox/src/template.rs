//! Template lookup: a name becomes a root file system spec.

use std::path::{Path, PathBuf};

use corral_isolate::RootfsSpec;

use crate::host;

/// Templates this build knows.
pub const TEMPLATE_NAMES: &[&str] = &["host"];

/// Failures resolving or building a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// No template of that name.
    #[error("unknown template {name:?}; available templates: {}", TEMPLATE_NAMES.join(", "))]
    Unknown {
        /// The requested name.
        name: String,
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

/// Resolves a template name to its root file system, building it under
/// `state_dir/templates` on first use. The template's own files are owned by host id
/// `id_base`, which is uid/gid 0 inside sandboxes whose id map starts there.
pub fn resolve_template(
    state_dir: &Path,
    name: &str,
    id_base: u32,
) -> Result<RootfsSpec, TemplateError> {
    match name {
        "host" => {
            host::host_rootfs(&state_dir.join("templates"), id_base).map_err(|(dir, source)| {
                TemplateError::Build {
                    name: name.into(),
                    dir,
                    source,
                }
            })
        }
        other => Err(TemplateError::Unknown { name: other.into() }),
    }
}

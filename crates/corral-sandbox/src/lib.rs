//! corral-sandbox: templates and (in later issues) the sandbox lifecycle.
//!
//! Today it owns the embedded `host` template: a read-only view of the host's /usr with
//! a synthesized /etc, built once into corral's state directory and shared read-only
//! by every sandbox.

mod host;
mod manager;
mod template;
mod templates;

pub use manager::{
    remove_template, spawn_main, template_users, ListQuery, LiveOutput, LiveProcess, Manager,
    ManagerConfig, NetSettings, PortError, PtyInput, PtyRequest, PtySession, SandboxError,
    TemplateSettings,
};
pub use template::{resolve_template, TemplateError};
pub use templates::{
    build_main, check_template_name, BuildEvent, BuildNetwork, BuildRequest, Debootstrap,
    RecipeError, TemplateSource, TemplateStore, TemplateStoreError,
};

// The recipe parser is pure and self-contained (std and thiserror only): the fuzz build
// compiles the same source once more here rather than widening `templates`' visibility.
#[cfg(fuzzing)]
#[allow(dead_code, unreachable_pub)]
#[path = "templates/recipe.rs"]
mod fuzz_recipe;

/// The recipe parser for the fuzz targets in fuzz/ (built only by `cargo fuzz`, which
/// sets `--cfg fuzzing`; not part of the public API).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::BTreeMap;

    /// One parsed step: its line, its text and its instruction (Debug text).
    pub type Step = (usize, String, String);

    /// Parses a recipe: its steps and `# corral: allow` hosts, or the error's (line,
    /// message).
    pub fn recipe(
        text: &str,
        build_args: &BTreeMap<String, String>,
    ) -> Result<(Vec<Step>, Vec<String>), (usize, String)> {
        match crate::fuzz_recipe::parse(text, build_args) {
            Ok(r) => Ok((
                r.steps
                    .into_iter()
                    .map(|s| (s.line, s.text, format!("{:?}", s.instr)))
                    .collect(),
                r.allow,
            )),
            Err(e) => Err((e.line, e.message)),
        }
    }
}

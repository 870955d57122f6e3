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

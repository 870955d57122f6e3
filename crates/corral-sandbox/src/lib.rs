//! corral-sandbox: templates and (in later issues) the sandbox lifecycle.
//!
//! Today it owns the embedded `host` template: a read-only view of the host's /usr with
//! a synthesized /etc, built once into corral's state directory and shared read-only
//! by every sandbox.

mod host;
mod manager;
mod template;

pub use manager::{
    spawn_main, ListQuery, LiveOutput, LiveProcess, Manager, ManagerConfig, PtyInput, PtyRequest, PtySession, SandboxError,
};
pub use template::{resolve_template, TemplateError, TEMPLATE_NAMES};

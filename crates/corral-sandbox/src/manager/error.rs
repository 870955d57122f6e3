//! What the Manager answers when it cannot do what was asked.

/// A Manager failure. Each kind maps to one HTTP status in corral-server; the message
/// says what failed and what to do, and never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The request is malformed or names something impossible (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// No such sandbox, process, path or snapshot for this tenant (404).
    #[error("{0}")]
    NotFound(String),
    /// The sandbox user may not do this to that path (403).
    #[error("{0}")]
    PermissionDenied(String),
    /// The sandbox is in the wrong state for this (409), e.g. paused.
    #[error("{0}")]
    Conflict(String),
    /// The template is being built (first use of a shipped recipe): the message names
    /// the build to follow; retry when it is done (409, code `template_building`).
    #[error("{0}")]
    TemplateBuilding(String),
    /// The tenant's quota would be exceeded (429).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The sandbox's disk (writable layer) is full (507).
    #[error("{0}")]
    NoSpace(String),
    /// The daemon is shutting down or a sandbox stopped responding (503).
    #[error("{0}")]
    Unavailable(String),
    /// corral failed (500); logged with its cause.
    #[error("{0}")]
    Internal(String),
}

impl SandboxError {
    /// The stable snake_case code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::InvalidRequest(_) => "invalid_argument",
            SandboxError::NotFound(_) => "not_found",
            SandboxError::PermissionDenied(_) => "permission_denied",
            SandboxError::Conflict(_) => "conflict",
            SandboxError::TemplateBuilding(_) => "template_building",
            SandboxError::QuotaExceeded(_) => "quota_exceeded",
            SandboxError::NoSpace(_) => "no_space",
            SandboxError::Unavailable(_) => "unavailable",
            SandboxError::Internal(_) => "internal",
        }
    }

    /// The HTTP status this maps to.
    pub fn http_status(&self) -> u16 {
        match self {
            SandboxError::InvalidRequest(_) => 400,
            SandboxError::NotFound(_) => 404,
            SandboxError::PermissionDenied(_) => 403,
            SandboxError::Conflict(_) | SandboxError::TemplateBuilding(_) => 409,
            SandboxError::QuotaExceeded(_) => 429,
            SandboxError::NoSpace(_) => 507,
            SandboxError::Unavailable(_) => 503,
            SandboxError::Internal(_) => 500,
        }
    }
}

//! E2B's error shapes: the control plane and envd's HTTP API answer
//! `{"code": <HTTP status>, "message": "..."}`; Connect RPCs answer
//! `{"code": "<connect code>", "message": "..."}` (unary: with the matching HTTP
//! status; streams: in the end-of-stream message).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_sandbox::SandboxError;
use serde_json::json;

/// An error answered to an E2B SDK.
#[derive(Debug, Clone)]
pub(crate) struct E2bError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl E2bError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        E2bError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub(crate) fn unauthenticated(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    pub(crate) fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    /// A part of E2B's surface corral does not offer (yet); the message names it.
    pub(crate) fn unsupported(feature: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "{feature} is not supported by corral's E2B-compatible endpoint (see docs/e2b.md)"
            ),
        )
    }
    pub(crate) fn internal(m: impl Into<String>) -> Self {
        eprintln!("corral: e2b endpoint: internal error: {}", m.into());
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corral failed internally; the daemon's log has the cause",
        )
    }

    /// The Connect code for this error.
    pub(crate) fn connect_code(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 413 => "invalid_argument",
            401 => "unauthenticated",
            403 => "permission_denied",
            404 => "not_found",
            409 => "already_exists",
            429 => "resource_exhausted",
            501 => "unimplemented",
            502..=504 => "unavailable",
            507 => "resource_exhausted",
            _ => "internal",
        }
    }

    /// The Connect error object (`{"code", "message"}`).
    pub(crate) fn connect_json(&self) -> serde_json::Value {
        json!({"code": self.connect_code(), "message": self.message})
    }

    /// A unary Connect error response.
    pub(crate) fn connect_response(&self) -> Response {
        (self.status, axum::Json(self.connect_json())).into_response()
    }
}

impl From<SandboxError> for E2bError {
    fn from(e: SandboxError) -> Self {
        if let SandboxError::Internal(m) = &e {
            return E2bError::internal(m.clone());
        }
        let status = match &e {
            // E2B's SDKs map 409 on envd to "already exists"; a stopped sandbox is
            // "not found" to them.
            SandboxError::Conflict(_) => StatusCode::CONFLICT,
            SandboxError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        E2bError::new(status, e.to_string())
    }
}

impl IntoResponse for E2bError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"code": self.status.as_u16(), "message": self.message})),
        )
            .into_response()
    }
}

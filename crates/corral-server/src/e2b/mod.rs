//! E2B-compatible endpoint: the official E2B SDKs (Python `e2b` 2.x, JS `e2b`) work
//! against corral with `E2B_API_URL=http://HOST:PORT/e2b`,
//! `E2B_SANDBOX_URL=http://HOST:PORT/e2b/sandbox` and `E2B_API_KEY=<a corral key>`.
//!
//! An adapter over the same [`corral_sandbox::Manager`] as `/v1` (same sandboxes,
//! tenants, limits): `control` is E2B's REST control plane (`X-API-Key`), `process`
//! and `filesystem` are envd's Connect-RPC services (JSON codec, the one the SDKs
//! use), `files` is envd's HTTP upload/download. Requests to the sandbox half are
//! routed by the `E2b-Sandbox-Id` header and authenticated by `X-Access-Token`, a
//! token the control plane issues for that one sandbox (token.rs; never the caller's
//! API key). See docs/e2b.md.

mod base64;
mod connect;
mod control;
mod error;
mod files;
mod filesystem;
mod process;
mod token;

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use error::E2bError;
pub(crate) use token::load_secret as load_token_secret;

use crate::auth::Caller;
use crate::AppState;

/// The routes under `/e2b`.
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/e2b/sandboxes", post(control::create).get(control::list))
        .route(
            "/e2b/v2/sandboxes",
            post(control::create).get(control::list),
        )
        .route(
            "/e2b/sandboxes/{id}",
            get(control::get).delete(control::kill),
        )
        .route("/e2b/sandboxes/{id}/timeout", post(control::timeout))
        .route("/e2b/sandboxes/{id}/connect", post(control::connect))
        .route("/e2b/v2/sandboxes/{id}/connect", post(control::connect))
        .route("/e2b/sandboxes/{id}/pause", post(control::pause))
        .route("/e2b/sandboxes/{id}/resume", post(control::resume))
        .route("/e2b/sandboxes/{id}/refreshes", post(control::refresh))
        .route("/e2b/sandbox/health", get(files::health))
        .route(
            "/e2b/sandbox/files",
            get(files::download).post(files::upload),
        )
        .route(
            "/e2b/sandbox/process.Process/{method}",
            post(process::dispatch),
        )
        .route(
            "/e2b/sandbox/filesystem.Filesystem/{method}",
            post(filesystem::dispatch),
        )
        .route("/e2b/{*rest}", axum::routing::any(control::unsupported))
}

/// The caller of a control-plane request (`X-API-Key`), and the key itself.
fn api_caller(st: &AppState, headers: &HeaderMap) -> Result<(Caller, String), E2bError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .ok_or_else(|| {
            E2bError::unauthenticated("missing API key: set E2B_API_KEY to a corral API key")
        })?;
    check_key(st, key).map(|c| (c, key.to_string()))
}

fn check_key(st: &AppState, key: &str) -> Result<Caller, E2bError> {
    match st.auth.check(key) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(E2bError::unauthenticated(
            "invalid API key: E2B_API_KEY must be a corral API key (`corral key create`)",
        )),
        Err(e) => Err(E2bError::internal(e.to_string())),
    }
}

/// The caller and sandbox of an envd request (`X-Access-Token`, `E2b-Sandbox-Id`):
/// the token must have been issued for this sandbox, to a key that is still live.
fn sandbox_caller(st: &AppState, headers: &HeaderMap) -> Result<(Caller, String), E2bError> {
    let token = headers
        .get("x-access-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| E2bError::unauthenticated("missing X-Access-Token: connect to the sandbox through Sandbox.create or Sandbox.connect"))?;
    let id = headers
        .get("e2b-sandbox-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| E2bError::bad_request("missing E2b-Sandbox-Id header: set E2B_SANDBOX_URL to http://HOST:PORT/e2b/sandbox"))?;
    let key_id = token::verify(&st.envd_secret, token, id).ok_or_else(|| {
        E2bError::unauthenticated(
            "invalid X-Access-Token for this sandbox: connect to it again (Sandbox.connect)",
        )
    })?;
    let caller = match st.auth.caller_by_key_id(key_id) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(E2bError::unauthenticated(
                "the API key this sandbox token was issued to has been revoked",
            ))
        }
        Err(e) => return Err(E2bError::internal(e.to_string())),
    };
    Ok((caller, id.to_string()))
}

/// The envd token for `sandbox`, issued to `caller`'s key.
fn envd_token(st: &AppState, caller: &Caller, sandbox: &str) -> String {
    token::issue(&st.envd_secret, &caller.key_id, sandbox)
}

/// The user an envd request runs as: `Authorization: Basic base64(user:)`; `root`
/// maps to corral's root (of the sandbox's user namespace), anything else to the
/// sandbox user (uid 1000).
fn envd_user(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let b = v.strip_prefix("Basic ")?;
    let raw = base64::decode(b.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let user = s.split(':').next()?;
    (user == "root").then(|| "root".to_string())
}

/// E2B resolves relative paths against the user's home; corral's paths are absolute.
fn abs_path(path: &str, headers: &HeaderMap) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    let home = if envd_user(headers).is_some() {
        "/root"
    } else {
        "/home/sandbox"
    };
    match path.trim_start_matches("./") {
        "" | "." => home.to_string(),
        p => format!("{home}/{p}"),
    }
}

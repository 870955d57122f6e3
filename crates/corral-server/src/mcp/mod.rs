//! MCP at /mcp: the official SDK's (rmcp) streamable HTTP server, nested in the axum
//! router behind the same API keys as /v1 (the key's agent is the principal). `corral
//! mcp` (stdio) is a bridge to this endpoint, so policy and audit stay in the daemon.
//!
//! - [`handler`]: tools/list and tools/call: arguments checked, governance, the Manager.
//! - [`govern`]: what an agent is shown, and every call through corral-govern.
//! - [`tools`]: the builtin sandbox tools, their input schemas and side-effect classes.
//! - [`guard`]: what rmcp does not do for us: JSON-RPC errors for malformed frames,
//!   sessions bound to the key that opened them, a session limit per key, idle expiry.

mod govern;
mod guard;
mod handler;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::routes::JSON_BODY_LIMIT;
use crate::{auth, AppState};

/// Sessions one API key may hold open at once; initialize past it is refused (429).
const MAX_SESSIONS_PER_KEY: usize = 16;
/// A session nobody used for this long is closed; the client initializes again.
const SESSION_IDLE: Duration = Duration::from_secs(10 * 60);

/// The /mcp route, authenticated.
pub(crate) fn router(st: Arc<AppState>) -> Router<Arc<AppState>> {
    let mut sessions = LocalSessionManager::default();
    // corral's guard expires idle sessions; rmcp's own timer is a backstop just after.
    sessions.session_config.keep_alive = Some(SESSION_IDLE + Duration::from_secs(60));
    let sessions = Arc::new(sessions);
    // Host checks guard unauthenticated local servers against DNS rebinding; /mcp
    // needs a bearer key that a browser page does not have, and the daemon may be
    // reached by any name its operator gives it.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(JSON_BODY_LIMIT);
    let handler_state = st.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler::McpHandler::new(handler_state.clone())),
        sessions.clone(),
        config,
    );
    let guard = Arc::new(guard::Guard::new(
        sessions,
        MAX_SESSIONS_PER_KEY,
        SESSION_IDLE,
    ));
    Router::new()
        .route_service("/mcp", service)
        .layer(from_fn_with_state(guard, guard::guard))
        .layer(from_fn_with_state(st, auth::require_key))
}

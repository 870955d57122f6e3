//! In front of rmcp's streamable HTTP service, behind the key middleware:
//!
//! - a POST body that is not JSON, or not a JSON-RPC message, is answered with a
//!   JSON-RPC error (-32700 parse error, -32600 invalid request) instead of rmcp's
//!   plain-text 415; a body over the limit with a JSON-RPC error and 413;
//! - a session belongs to the key that opened it: another key (or an expired or
//!   unknown session id) gets 404 and a JSON-RPC error, as the transport specifies
//!   for a session the server does not know;
//! - a key holds at most `max_per_key` sessions (429 past it);
//! - a session unused for `idle` is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::SessionManager;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::routes::JSON_BODY_LIMIT;

const SESSION_HEADER: &str = "mcp-session-id";

/// JSON-RPC 2.0 error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;

#[derive(Debug)]
struct Session {
    key_id: String,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct Table {
    sessions: HashMap<String, Session>,
    /// initialize requests in flight per key (they count against the limit).
    opening: HashMap<String, usize>,
}

/// Which key owns which session, and when each was last used.
#[derive(Debug)]
pub(crate) struct Guard {
    rmcp: Arc<LocalSessionManager>,
    table: Mutex<Table>,
    max_per_key: usize,
    idle: Duration,
}

/// Why a request was refused before reaching rmcp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GuardError {
    #[error("unknown or expired MCP session: send initialize again without an Mcp-Session-Id")]
    UnknownSession,
    #[error(
        "this API key already has {0} MCP sessions open: close one (HTTP DELETE /mcp with \
         its Mcp-Session-Id) or let idle ones expire"
    )]
    TooManySessions(usize),
}

impl Guard {
    pub(crate) fn new(rmcp: Arc<LocalSessionManager>, max_per_key: usize, idle: Duration) -> Guard {
        Guard {
            rmcp,
            table: Mutex::new(Table::default()),
            max_per_key,
            idle,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops sessions idle since before `now - idle`; returns their ids for closing.
    fn expire(&self, now: Instant) -> Vec<String> {
        let mut t = self.table();
        let idle = self.idle;
        let dead: Vec<String> = t
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_used) >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            t.sessions.remove(id);
        }
        dead
    }

    /// A request names session `id`: it must be this key's and alive.
    fn touch(&self, id: &str, key_id: &str, now: Instant) -> Result<(), GuardError> {
        match self.table().sessions.get_mut(id) {
            Some(s) if s.key_id == key_id => {
                s.last_used = now;
                Ok(())
            }
            _ => Err(GuardError::UnknownSession),
        }
    }

    /// Reserves a slot for an initialize; [`Guard::opened`] settles it.
    fn reserve(&self, key_id: &str) -> Result<(), GuardError> {
        let mut t = self.table();
        let open = t.sessions.values().filter(|s| s.key_id == key_id).count();
        let pending = t.opening.get(key_id).copied().unwrap_or(0);
        if open + pending >= self.max_per_key {
            return Err(GuardError::TooManySessions(self.max_per_key));
        }
        *t.opening.entry(key_id.to_string()).or_default() += 1;
        Ok(())
    }

    fn opened(&self, key_id: &str, session: Option<String>, now: Instant) {
        let mut t = self.table();
        if let Some(n) = t.opening.get_mut(key_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.opening.remove(key_id);
            }
        }
        if let Some(id) = session {
            t.sessions.insert(
                id,
                Session {
                    key_id: key_id.to_string(),
                    last_used: now,
                },
            );
        }
    }

    fn closed(&self, id: &str) {
        self.table().sessions.remove(id);
    }

    async fn close_in_rmcp(&self, ids: Vec<String>) {
        for id in ids {
            let _ = self.rmcp.close_session(&id.into()).await;
        }
    }
}

/// The middleware (after auth.rs's: the [`Caller`] is in the extensions).
pub(crate) async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        // Unreachable behind require_key; refuse rather than serve anonymously.
        return rpc_error(
            StatusCode::UNAUTHORIZED,
            Value::Null,
            INVALID_REQUEST,
            "no API key",
        );
    };
    let now = Instant::now();
    let expired = g.expire(now);
    if !expired.is_empty() {
        g.close_in_rmcp(expired).await;
    }
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(id) = &session {
        if let Err(e) = g.touch(id, &caller.key_id, now) {
            return rpc_error(
                StatusCode::NOT_FOUND,
                Value::Null,
                INVALID_REQUEST,
                &e.to_string(),
            );
        }
    }
    match *req.method() {
        Method::POST => post(&g, &caller, session, req, next).await,
        Method::DELETE => {
            let resp = next.run(req).await;
            if let Some(id) = session {
                if resp.status().is_success() {
                    g.closed(&id);
                }
            }
            resp
        }
        _ => next.run(req).await,
    }
}

async fn post(
    g: &Guard,
    caller: &Caller,
    session: Option<String>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, JSON_BODY_LIMIT).await else {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            INVALID_REQUEST,
            "the message is over the 1 MiB limit of /mcp requests (or the body was cut off)",
        );
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                PARSE_ERROR,
                &format!("parse error: the body is not JSON ({e})"),
            )
        }
    };
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if let Err(why) = check_message(&value) {
        return rpc_error(StatusCode::BAD_REQUEST, id, INVALID_REQUEST, &why);
    }
    let is_init = session.is_none() && value.get("method") == Some(&json!("initialize"));
    if is_init {
        if let Err(e) = g.reserve(&caller.key_id) {
            return rpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                id,
                INVALID_REQUEST,
                &e.to_string(),
            );
        }
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if is_init {
        let sid = resp
            .status()
            .is_success()
            .then(|| resp.headers().get(SESSION_HEADER))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        g.opened(&caller.key_id, sid, Instant::now());
    }
    resp
}

/// Is this one JSON-RPC 2.0 message rmcp can take? The reason if not.
fn check_message(v: &Value) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err(if v.is_array() {
            "invalid request: batches are not supported; send one JSON-RPC message per request"
                .into()
        } else {
            "invalid request: a JSON-RPC message is a JSON object".into()
        });
    };
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return Err("invalid request: \"jsonrpc\" must be \"2.0\"".into());
    }
    if let Some(m) = obj.get("method") {
        if !m.is_string() {
            return Err("invalid request: \"method\" must be a string".into());
        }
    }
    match obj.get("id") {
        None | Some(Value::String(_)) => {}
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        Some(_) => return Err("invalid request: \"id\" must be a string or an integer".into()),
    }
    serde_json::from_value::<ClientJsonRpcMessage>(v.clone())
        .map(|_| ())
        .map_err(|e| format!("invalid request: {e}"))
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message},
    });
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max: usize) -> Guard {
        Guard::new(
            Arc::new(LocalSessionManager::default()),
            max,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn sessions_belong_to_their_key_and_expire_when_idle() {
        let g = guard(4);
        let t0 = Instant::now();
        g.reserve("k1").unwrap();
        g.opened("k1", Some("s1".into()), t0);
        assert_eq!(g.touch("s1", "k1", t0), Ok(()));
        assert_eq!(g.touch("s1", "k2", t0), Err(GuardError::UnknownSession));
        assert_eq!(g.touch("nope", "k1", t0), Err(GuardError::UnknownSession));
        assert!(g.expire(t0 + Duration::from_secs(59)).is_empty());
        g.touch("s1", "k1", t0 + Duration::from_secs(59)).unwrap();
        assert!(
            g.expire(t0 + Duration::from_secs(100)).is_empty(),
            "touch renews"
        );
        assert_eq!(
            g.expire(t0 + Duration::from_secs(119)),
            vec!["s1".to_string()]
        );
        assert_eq!(g.touch("s1", "k1", t0), Err(GuardError::UnknownSession));
    }

    #[test]
    fn a_key_holds_at_most_max_sessions_pending_ones_included() {
        let g = guard(2);
        let now = Instant::now();
        g.reserve("k").unwrap();
        g.reserve("k").unwrap();
        assert_eq!(g.reserve("k"), Err(GuardError::TooManySessions(2)));
        g.reserve("other").unwrap();
        g.opened("k", Some("a".into()), now);
        g.opened("k", None, now); // a failed initialize frees its slot
        g.reserve("k").unwrap();
        g.opened("k", Some("b".into()), now);
        assert!(g.reserve("k").is_err());
        g.closed("a");
        g.reserve("k").unwrap();
    }

    #[test]
    fn frames_are_checked_before_rmcp() {
        let ok = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        check_message(&ok).unwrap();
        for bad in [
            json!([ok.clone()]),
            json!("x"),
            json!({"id": 1, "method": "tools/list"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 5}),
            json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}),
            json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}),
        ] {
            assert!(check_message(&bad).is_err(), "{bad}");
        }
    }
}

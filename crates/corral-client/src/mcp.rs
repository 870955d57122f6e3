//! The daemon's MCP endpoint (`/mcp`, streamable HTTP) at the message level, for
//! `corral mcp`'s stdio bridge: one JSON-RPC message posted, the messages of the
//! answer (a JSON body or a server-sent event stream) returned as they were sent.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Method;

use crate::{Client, ClientError};

/// The session header of the streamable HTTP transport.
const SESSION_HEADER: &str = "mcp-session-id";
/// The negotiated protocol version, sent on every request after initialize.
const VERSION_HEADER: &str = "mcp-protocol-version";

/// What /mcp answered to one posted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpAnswer {
    /// HTTP status (202 for an accepted notification).
    pub status: u16,
    /// The session the server opened (on initialize) or kept.
    pub session_id: Option<String>,
    /// The JSON-RPC messages of the answer, each one line of JSON, in order.
    pub messages: Vec<String>,
    /// The body when it held no JSON-RPC message (an HTTP-level error's text).
    pub other: String,
}

impl Client {
    /// Posts one JSON-RPC message to `/mcp`.
    pub async fn mcp_post(
        &self,
        session_id: Option<&str>,
        protocol_version: Option<&str>,
        message: &[u8],
    ) -> Result<McpAnswer, ClientError> {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if let Some(s) = session_id {
            headers.push((SESSION_HEADER, s));
        }
        if let Some(v) = protocol_version {
            headers.push((VERSION_HEADER, v));
        }
        let body = Full::new(Bytes::copy_from_slice(message))
            .map_err(|never| match never {})
            .boxed_unsync();
        let resp = self
            .t
            .send_any(Method::POST, "/mcp", &headers, body)
            .await?;
        let status = resp.status().as_u16();
        let session_id = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Connect {
                url: self.url().to_string(),
                message: format!("the answer was cut off: {e}"),
            })?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        let messages = if sse {
            sse_messages(&text)
        } else {
            json_message(&text).into_iter().collect()
        };
        let other = if messages.is_empty() {
            text.trim().to_string()
        } else {
            String::new()
        };
        Ok(McpAnswer {
            status,
            session_id,
            messages,
            other,
        })
    }

    /// Ends an MCP session (`DELETE /mcp`); best effort.
    pub async fn mcp_close(&self, session_id: &str) -> Result<(), ClientError> {
        let body = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync();
        self.t
            .send_any(
                Method::DELETE,
                "/mcp",
                &[(SESSION_HEADER, session_id)],
                body,
            )
            .await
            .map(|_| ())
    }
}

/// A body that is one JSON-RPC message, re-encoded on one line.
fn json_message(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    v.get("jsonrpc").is_some().then(|| v.to_string())
}

/// The JSON messages of a server-sent event stream: each event's `data:` lines
/// joined; events without JSON (keep-alives, priming events) skipped.
fn sse_messages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut data = String::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let Some(m) = json_message(&data) {
                out.push(m);
            }
            data.clear();
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_become_messages() {
        let text =
            "id: 0\nretry: 3000\ndata:\n\n: keep-alive\n\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\n\
                    data: \"id\":1,\"result\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}";
        let parsed: Vec<serde_json::Value> = sse_messages(text)
            .iter()
            .map(|m| {
                assert!(!m.contains('\n'), "one line: {m}");
                serde_json::from_str(m).unwrap()
            })
            .collect();
        assert_eq!(
            parsed,
            vec![
                serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
                serde_json::json!({"jsonrpc": "2.0", "method": "x"}),
            ]
        );
        assert!(sse_messages("").is_empty());
        assert_eq!(
            json_message(" {\"jsonrpc\": \"2.0\"}\n"),
            Some(r#"{"jsonrpc":"2.0"}"#.into())
        );
        assert_eq!(
            json_message(r#"{"error": {"code": "unauthenticated"}}"#),
            None
        );
        assert_eq!(json_message("Not Found"), None);
        assert_eq!(json_message("[1]"), None);
    }
}

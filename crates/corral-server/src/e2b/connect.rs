//! Connect protocol framing (JSON codec), as the E2B SDKs speak it: unary calls are
//! `application/json` bodies both ways; server-streaming calls send one enveloped
//! message (`application/connect+json`: a flags byte, a big-endian u32 length, the
//! JSON) and get enveloped messages back, the last one flagged 0x02 carrying
//! `{}` or `{"error": {...}}`. Binary protobuf (`application/proto`) is refused with
//! an error that says so.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::error::E2bError;

/// Largest request message accepted (requests are small: paths, commands, stdin).
const MAX_MESSAGE: usize = 4 << 20;

/// Which framing the request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Unary,
    Stream,
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .unwrap_or("")
}

/// Decodes a request message of the given framing.
pub(crate) fn decode<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    framing: Framing,
) -> Result<T, E2bError> {
    let ct = content_type(headers);
    let json = match (framing, ct) {
        (Framing::Unary, "application/json") => body,
        (Framing::Stream, "application/connect+json") => {
            if body.len() < 5 {
                return Err(E2bError::bad_request(
                    "malformed Connect request: the envelope is shorter than its 5-byte header",
                ));
            }
            if body[0] & 0x01 != 0 {
                return Err(E2bError::bad_request(
                    "compressed Connect messages are not supported; send them uncompressed",
                ));
            }
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            if len > MAX_MESSAGE || body.len() != 5 + len {
                return Err(E2bError::bad_request(format!(
                    "malformed Connect request: the envelope announces {len} bytes but carries {}",
                    body.len() - 5
                )));
            }
            &body[5..]
        }
        (_, ct) if ct.contains("proto") => {
            return Err(E2bError::unsupported(
                "the binary protobuf codec (application/proto); use the JSON codec",
            ))
        }
        (Framing::Unary, other) => {
            return Err(E2bError::bad_request(format!(
                "unary Connect calls take Content-Type application/json, not {other:?}"
            )))
        }
        (Framing::Stream, other) => {
            return Err(E2bError::bad_request(format!(
                "streaming Connect calls take Content-Type application/connect+json, not {other:?}"
            )))
        }
    };
    let json = if json.is_empty() { &b"{}"[..] } else { json };
    serde_json::from_slice(json)
        .map_err(|e| E2bError::bad_request(format!("malformed Connect message: {e}")))
}

/// A unary response.
pub(crate) fn unary<T: Serialize>(msg: &T) -> Response {
    axum::Json(msg).into_response()
}

fn envelope(flags: u8, json: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(5 + json.len());
    v.push(flags);
    v.extend_from_slice(&(json.len() as u32).to_be_bytes());
    v.extend_from_slice(json);
    Bytes::from(v)
}

/// One message of a stream.
pub(crate) fn message<T: Serialize>(msg: &T) -> Bytes {
    envelope(
        0,
        &serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

/// The end of a stream: success, or the error.
pub(crate) fn end(err: Option<&E2bError>) -> Bytes {
    let body = match err {
        None => json!({}),
        Some(e) => json!({"error": e.connect_json()}),
    };
    envelope(0x02, body.to_string().as_bytes())
}

/// A streaming response whose body is `frames` (each already enveloped).
pub(crate) fn stream_response<S>(frames: S) -> Response
where
    S: Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    let mut resp = Response::new(Body::from_stream(frames));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/connect+json"),
    );
    resp
}

/// A stream that fails before its first message: HTTP 200 and only the end message
/// (Connect's streaming error form).
pub(crate) fn stream_error(e: &E2bError) -> Response {
    let mut resp = (StatusCode::OK, end(Some(e))).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/connect+json"),
    );
    resp
}

/// The keepalive interval the client asked for (`Keepalive-Ping-Interval`, seconds).
pub(crate) fn keepalive(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// The call's deadline (`Connect-Timeout-Ms`).
pub(crate) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("connect-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

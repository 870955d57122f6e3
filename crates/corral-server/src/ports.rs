//! Exposed ports: HTTP (and WebSocket or any other upgrade) proxied to a service that
//! listens on a port inside a sandbox, and a raw TCP tunnel for
//! `corral sandbox port-forward`.
//!
//! - `ANY /v1/sandboxes/{id}/ports/{port}/{path...}` forwards the request to
//!   `127.0.0.1:PORT` inside the sandbox as `/{path...}?query`: method, body (streamed
//!   both ways) and headers, less the hop-by-hop ones and the caller's `Authorization`
//!   (the corral key never reaches the sandbox). `Host` becomes `127.0.0.1:PORT`; the
//!   original host and the prefix are in `X-Forwarded-Host` and `X-Forwarded-Prefix`.
//!   An upgrade request (WebSocket) is forwarded with its `Upgrade` header; when the
//!   service answers 101 the two connections are spliced.
//! - `GET /v1/sandboxes/{id}/tunnel/{port}` with `Connection: Upgrade` and
//!   `Upgrade: tcp` answers `101` and then carries raw bytes both ways.
//!
//! The connection into the sandbox is made by the Manager from inside the sandbox's
//! network namespace, so this works in every network mode, `none` included.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use corral_sandbox::PortError;
use hyper_util::rt::TokioIo;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Path};
use crate::AppState;

/// The `Upgrade` protocol of the raw tunnel.
pub(crate) const TUNNEL_PROTOCOL: &str = "tcp";

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), plus the
/// ones this proxy owns.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Sandbox(s) => s.into(),
            other => {
                let status =
                    StatusCode::from_u16(other.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
                ApiError::new(status, other.code(), other.to_string())
            }
        }
    }
}

fn bad_gateway(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "bad_gateway", message)
}

/// `{port}` as a TCP port.
pub(crate) fn parse_port(s: &str) -> ApiResult<u16> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ApiError::bad_request(format!(
            "port {s:?} is not a TCP port number: use 1-65535"
        ))),
    }
}

/// Whether the request asks to switch protocols (`Connection: upgrade` + `Upgrade`).
fn upgrade_protocol(h: &HeaderMap) -> Option<String> {
    let asks = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let proto = h.get(header::UPGRADE)?.to_str().ok()?.trim().to_string();
    (asks && !proto.is_empty()).then_some(proto)
}

/// The headers to pass on: all but hop-by-hop ones, those `Connection` names, and
/// `skip`.
fn end_to_end(h: &HeaderMap, skip: &[HeaderName]) -> HeaderMap {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(h.len());
    for (k, v) in h {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) || named.iter().any(|n| n == name) || skip.contains(k) {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

/// What follows `/v1/sandboxes/{id}/ports/{port}` in the raw (still percent-encoded)
/// request path, with the query: the path the service sees.
fn upstream_target(uri: &Uri) -> String {
    let rest = uri.path().splitn(7, '/').nth(6).unwrap_or("");
    match uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    }
}

/// `ANY /v1/sandboxes/{id}/ports/{port}/` and `.../{port}/{*path}`.
pub(crate) async fn proxy(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(params): Path<HashMap<String, String>>,
    mut req: Request,
) -> ApiResult<Response> {
    let id = params.get("id").cloned().unwrap_or_default();
    let port = parse_port(params.get("port").map(String::as_str).unwrap_or(""))?;
    let upgrade = upgrade_protocol(req.headers());
    let stream = st.manager.connect_port(&caller.tenant, &id, port).await?;

    let target = upstream_target(req.uri());
    let prefix = format!("/v1/sandboxes/{id}/ports/{port}");
    let mut headers = end_to_end(
        req.headers(),
        &[header::AUTHORIZATION, header::HOST, header::EXPECT],
    );
    let host = HeaderValue::from_str(&format!("127.0.0.1:{port}"))
        .map_err(|e| ApiError::internal(format!("a Host header: {e}")))?;
    if let Some(h) = req.headers().get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), h.clone());
    }
    if let Ok(p) = HeaderValue::from_str(&prefix) {
        headers.insert(HeaderName::from_static("x-forwarded-prefix"), p);
    }
    headers.insert(header::HOST, host);
    if let Some(proto) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_str(proto) {
            headers.insert(header::UPGRADE, v);
        }
    }
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let method = req.method().clone();
    let mut upreq = hyper::Request::builder()
        .method(method)
        .uri(&target)
        .body(req.into_body())
        .map_err(|e| ApiError::bad_request(format!("cannot forward {target:?}: {e}")))?;
    *upreq.headers_mut() = headers;

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| bad_gateway(format!("port {port} inside sandbox {id}: {e}")))?;
    tokio::spawn(async move {
        // Ends when the exchange (or the spliced upgrade) is over.
        let _ = conn.with_upgrades().await;
    });
    let mut resp = sender.send_request(upreq).await.map_err(|e| {
        bad_gateway(format!(
            "the service on port {port} inside sandbox {id} did not answer: {e}"
        ))
    })?;

    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(bad_gateway(format!(
                "the service on port {port} inside sandbox {id} switched protocols unasked"
            )));
        };
        let service_upgrade = hyper::upgrade::on(&mut resp);
        let mut out = Response::new(Body::empty());
        *out.status_mut() = status;
        *out.headers_mut() = end_to_end(resp.headers(), &[]);
        for name in [header::CONNECTION, header::UPGRADE] {
            if let Some(v) = resp.headers().get(&name) {
                out.headers_mut().insert(name, v.clone());
            }
        }
        tokio::spawn(splice(client_upgrade, service_upgrade));
        return Ok(out);
    }
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    *out.headers_mut() = end_to_end(&parts.headers, &[]);
    Ok(out)
}

/// Copies bytes both ways between two upgraded connections until either side ends.
async fn splice(a: hyper::upgrade::OnUpgrade, b: hyper::upgrade::OnUpgrade) {
    let (Ok(a), Ok(b)) = (a.await, b.await) else {
        return;
    };
    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

/// `GET /v1/sandboxes/{id}/tunnel/{port}` with `Connection: Upgrade`, `Upgrade: tcp`:
/// 101, then the connection carries raw bytes to and from the port.
pub(crate) async fn tunnel(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, port)): Path<(String, String)>,
    mut req: Request,
) -> ApiResult<Response> {
    let port = parse_port(&port)?;
    let asks =
        upgrade_protocol(req.headers()).is_some_and(|p| p.eq_ignore_ascii_case(TUNNEL_PROTOCOL));
    if !asks {
        return Err(ApiError::bad_request(format!(
            "this route switches to a raw TCP stream: send `Connection: Upgrade` and \
             `Upgrade: {TUNNEL_PROTOCOL}` (as `corral sandbox port-forward` does); for HTTP \
             use /v1/sandboxes/{id}/ports/{port}/"
        )));
    }
    let stream = st.manager.connect_port(&caller.tenant, &id, port).await?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let mut up = TokioIo::new(up);
        let mut stream = stream;
        let _ = tokio::io::copy_bidirectional(&mut up, &mut stream).await;
    });
    let mut out = StatusCode::SWITCHING_PROTOCOLS.into_response();
    out.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(TUNNEL_PROTOCOL));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        assert_eq!(parse_port("8080").ok(), Some(8080));
        assert_eq!(parse_port("65535").ok(), Some(65535));
        for bad in ["0", "65536", "-1", "http", ""] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_service_sees_the_rest_of_the_path_still_encoded() {
        let t = |u: &str| upstream_target(&u.parse::<Uri>().unwrap());
        assert_eq!(t("/v1/sandboxes/sb-1/ports/80/"), "/");
        assert_eq!(
            t("/v1/sandboxes/sb-1/ports/80/a/b%20c?x=1&y"),
            "/a/b%20c?x=1&y"
        );
        assert_eq!(t("/v1/sandboxes/sb-1/ports/80/a/"), "/a/");
    }

    #[test]
    fn hop_by_hop_and_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer crl_x"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        h.append("x-many", HeaderValue::from_static("a"));
        h.append("x-many", HeaderValue::from_static("b"));
        let out = end_to_end(&h, &[header::AUTHORIZATION]);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out.get(header::ACCEPT).unwrap(), "text/html");
        assert_eq!(out.get_all("x-many").iter().count(), 2);
    }

    #[test]
    fn upgrades_need_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_protocol(&h).as_deref(), Some("websocket"));
    }
}

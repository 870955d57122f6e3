//! The transport: a pooled HTTP/1 client (https with rustls and ring), requests with
//! the bearer key, and error bodies turned into [`ClientError::Api`].

use std::sync::Arc;

use corral_types::ErrorBody;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ClientError;

pub(crate) type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;
type Pool = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, ReqBody>;

/// How to reach the daemon.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    base: String,
    auth: HeaderValue,
    pool: Pool,
}

impl Transport {
    pub(crate) fn new(
        url: &str,
        key: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<Transport, ClientError> {
        let base = url.trim_end_matches('/').to_string();
        let ok_scheme = base.starts_with("http://") || base.starts_with("https://");
        if !ok_scheme || base.parse::<hyper::Uri>().is_err() {
            return Err(ClientError::InvalidUrl(url.to_string()));
        }
        let auth = HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| ClientError::InvalidUrl("the API key has invalid characters".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match ca_pem {
            Some(pem) => {
                use rustls::pki_types::pem::PemObject;
                use rustls::pki_types::CertificateDer;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| ClientError::Tls(format!("CA file: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Tls(format!("CA file: {e}")))?;
                }
                let cfg = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ClientError::Tls(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(cfg)
            }
            None => match builder.with_provider_and_native_roots(provider.clone()) {
                Ok(b) => b,
                // No system roots: plain http still works; https needs a CA file.
                Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .map_err(|e| ClientError::Tls(e.to_string()))?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                ),
            },
        };
        let connector = builder.https_or_http().enable_http1().build();
        let pool =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(Transport { base, auth, pool })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`].
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<&'static str>,
        accept: Option<&'static str>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        let req = req
            .body(body)
            .map_err(|e| ClientError::InvalidUrl(format!("{path}: {e}")))?;
        let resp = self
            .pool
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                message: error_chain(&e),
            })?;
        if resp.status().is_success() || resp.status().is_informational() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => ClientError::Api {
                status,
                code: b.error.code,
                message: b.error.message,
            },
            Err(_) => ClientError::Api {
                status,
                code: "http_error".into(),
                message: String::from_utf8_lossy(&bytes).trim().to_string(),
            },
        })
    }

    /// A request with extra headers whose answer comes back whatever its status (MCP's
    /// transport carries JSON-RPC errors in 4xx bodies); only a failed connection is an
    /// error.
    pub(crate) async fn send_any(
        &self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: ReqBody,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(AUTHORIZATION, self.auth.clone());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(body)
            .map_err(|e| ClientError::InvalidUrl(format!("{path}: {e}")))?;
        self.pool
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                message: error_chain(&e),
            })
    }

    /// A JSON request (or none) and a JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let resp = self.send_json(method, path, body, None).await?;
        read_json(resp).await
    }

    /// A JSON request (or none) and an answer without a body.
    pub(crate) async fn unit(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(), ClientError> {
        let resp = self.send_json(method, path, body, None).await?;
        // Drain it so the connection goes back to the pool.
        let _ = resp.into_body().collect().await;
        Ok(())
    }

    pub(crate) async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        accept: Option<&'static str>,
    ) -> Result<Response<Incoming>, ClientError> {
        match body {
            Some(b) => {
                let bytes =
                    serde_json::to_vec(b).map_err(|e| ClientError::Decode(e.to_string()))?;
                let body = Full::new(Bytes::from(bytes))
                    .map_err(|never| match never {})
                    .boxed_unsync();
                self.send(method, path, body, Some("application/json"), accept)
                    .await
            }
            None => self.send(method, path, empty(), None, accept).await,
        }
    }
}

pub(crate) fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub(crate) async fn read_json<T: DeserializeOwned>(
    resp: Response<Incoming>,
) -> Result<T, ClientError> {
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Percent-encodes a query value or path segment (everything but RFC 3986's
/// unreserved characters, and `/` where `keep_slash`).
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_queries_and_segments() {
        assert_eq!(
            encode("/home/sandbox/a b&c", true),
            "/home/sandbox/a%20b%26c"
        );
        assert_eq!(encode("a/b", false), "a%2Fb");
        assert_eq!(encode("é", false), "%C3%A9");
    }

    #[test]
    fn urls_are_checked() {
        assert!(Transport::new("http://127.0.0.1:7070/", "k", None).is_ok());
        assert!(Transport::new("ftp://x", "k", None).is_err());
        assert!(Transport::new("127.0.0.1:7070", "k", None).is_err());
    }
}

//! Ports inside a sandbox: a raw TCP stream through the daemon
//! (`GET /v1/sandboxes/{id}/tunnel/{port}` upgraded with `Upgrade: tcp`), what
//! `corral sandbox port-forward` carries each local connection over.

use std::pin::Pin;
use std::task::{Context, Poll};

use corral_types::ErrorBody;
use http_body_util::BodyExt;
use hyper::upgrade::Upgraded;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::empty;
use crate::{seg, Client, ClientError};

/// The `Upgrade` protocol of the daemon's tunnel route.
const TUNNEL_PROTOCOL: &str = "tcp";

/// A byte stream to a port inside a sandbox, from [`Client::open_port`].
#[derive(Debug)]
pub struct PortStream {
    io: TokioIo<Upgraded>,
}

impl Client {
    /// Connects to `127.0.0.1:port` inside sandbox `id` through the daemon. Fails
    /// with the daemon's error (404 no such sandbox, 409 paused or stopping, 502
    /// nothing listening) before any byte is carried.
    pub async fn open_port(&self, id: &str, port: u16) -> Result<PortStream, ClientError> {
        let path = format!("/v1/sandboxes/{}/tunnel/{port}", seg(id));
        let headers = [("connection", "upgrade"), ("upgrade", TUNNEL_PROTOCOL)];
        let resp = self
            .t
            .send_any(Method::GET, &path, &headers, empty())
            .await?;
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => ClientError::Api {
                    status: status.as_u16(),
                    code: b.error.code,
                    message: b.error.message,
                },
                Err(_) => ClientError::Decode(format!(
                    "the daemon answered {status} instead of switching to a TCP stream; \
                     is it a corral version with port tunnels?"
                )),
            });
        }
        let up = hyper::upgrade::on(resp)
            .await
            .map_err(|e| ClientError::Decode(format!("the tunnel upgrade failed: {e}")))?;
        Ok(PortStream {
            io: TokioIo::new(up),
        })
    }
}

impl AsyncRead for PortStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for PortStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

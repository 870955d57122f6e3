//! The broker as the egress proxy's [`Interceptor`]: it takes the allowed connections
//! of sandboxes registered with secrets, and nothing else.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Broker, ConnCtx, ConnSummary};
use crate::proxy::{
    ClientStream, ConnInfo, InterceptFuture, Intercepted, Interceptor, Upstream, Via,
};

/// The sandboxes with secrets: id -> (tenant, secret names).
#[derive(Debug, Default)]
pub(crate) struct Registry(RwLock<HashMap<String, (String, Vec<String>)>>);

impl Registry {
    pub(crate) fn set(&self, sandbox: &str, tenant: &str, secrets: Vec<String>) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        if secrets.is_empty() {
            m.remove(sandbox);
        } else {
            m.insert(sandbox.to_string(), (tenant.to_string(), secrets));
        }
    }

    pub(crate) fn remove(&self, sandbox: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sandbox);
    }

    fn get(&self, sandbox: &str) -> Option<(String, Vec<String>)> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(sandbox)
            .cloned()
    }
}

/// [`Broker`] behind an `Arc`, as the proxy holds it.
#[derive(Debug, Clone)]
pub struct BrokerInterceptor(pub Arc<Broker>);

impl Interceptor for BrokerInterceptor {
    fn wants(&self, conn: &ConnInfo) -> bool {
        self.0
            .sandboxes
            .get(&conn.sandbox)
            .is_some_and(|(tenant, _)| tenant == conn.tenant)
    }

    fn handle(&self, conn: ConnInfo, client: ClientStream, upstream: Upstream) -> InterceptFuture {
        let broker = self.0.clone();
        Box::pin(async move {
            let Some((tenant, secrets)) = broker.sandboxes.get(&conn.sandbox) else {
                return Intercepted::default();
            };
            let up = match upstream.connect().await {
                Ok(s) => s,
                Err(e) => {
                    return Intercepted {
                        note: Some(format!("credential broker: {e}")),
                        allowed: true,
                        ..Intercepted::default()
                    }
                }
            };
            let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
            let client = Counting {
                inner: client,
                counts: counts.clone(),
            };
            let ctx = ConnCtx {
                sandbox: conn.sandbox,
                tenant,
                secrets,
                host: conn.host,
                port: conn.port,
            };
            let served = match conn.via {
                Via::Connect | Via::Tls => broker.serve_tls(client, up, ctx).await,
                _ => broker.serve_plain(client, up, ctx).await,
            };
            let (note, s) = match served {
                Ok(s) => (
                    format!(
                        "credential broker: {} requests, {} with a secret injected, {} blocked",
                        s.requests, s.injected, s.blocked
                    ),
                    s,
                ),
                Err(e) => (format!("credential broker: {e}"), ConnSummary::default()),
            };
            Intercepted {
                bytes_up: counts.0.load(Ordering::Relaxed),
                bytes_down: counts.1.load(Ordering::Relaxed),
                note: Some(note),
                allowed: s.blocked == 0,
            }
        })
    }
}

/// Counts bytes read from (up) and written to (down) the sandbox.
struct Counting {
    inner: ClientStream,
    counts: Arc<(AtomicU64, AtomicU64)>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.counts.0.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.counts.1.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

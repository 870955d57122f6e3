//! Credential brokering at the boundary: the egress proxy hands the broker a
//! sandbox's connection (and one it opened to the allowed host); the broker terminates
//! TLS toward the sandbox with a leaf minted by the deployment's CA for that host,
//! opens TLS to the real host (system roots plus configured extra roots), and relays
//! HTTP/1.1 requests, swapping a bound secret's placeholder for its value in the
//! secret's header and blocking (with an [`Alert`]) a placeholder going anywhere its
//! secret is not bound. See docs/secrets.md.
//!
//! The seam with the proxy: [`BrokerInterceptor`] is the proxy's
//! [`crate::Interceptor`]; it takes the allowed connections of sandboxes
//! [registered](Broker::register) with secrets and serves them with
//! [`Broker::serve_tls`] (HTTPS: the sandbox's TLS bytes, from the ClientHello on) or
//! [`Broker::serve_plain`] (plain HTTP, where nothing is ever injected and any
//! placeholder is blocked). The proxy keeps deciding whether `host:port` is allowed at
//! all, resolving (with its rebinding checks) and connecting.

mod ca;
mod intercept;
mod rewrite;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

pub use self::intercept::BrokerInterceptor;
use self::rewrite::{BoxError, Mode, ScanBody, Scanner, Violation};
use crate::secrets::{Binding, SecretStore};

/// Where a sandbox with secrets finds the CA ([`Broker::sandbox_ca_dir`] bound
/// read-only): `ca.pem` (corral's CA alone) and `bundle.pem` (the host's system roots
/// and corral's CA).
pub const SANDBOX_CA_DIR: &str = "/etc/ssl/certs/corral";

/// The system root bundles looked for on the host (Debian/Ubuntu/Alpine, then
/// Fedora/RHEL), copied into the sandboxes' `bundle.pem`.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Alerts kept in memory for [`Broker::recent_alerts`].
const ALERTS_KEPT: usize = 256;
/// How long the two TLS handshakes may take together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the sandbox has to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the broker could not start or serve a connection.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The CA or a certificate could not be made or read.
    #[error("corral's egress CA: {0}")]
    Ca(String),
    /// A file operation failed.
    #[error("{what}")]
    Io {
        /// What corral was doing.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox's TLS handshake failed or named another host.
    #[error("TLS from the sandbox: {0}")]
    ClientTls(String),
    /// Relaying HTTP failed.
    #[error("relaying HTTP to {host}: {source}")]
    Http {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
}

/// Where a connection of a sandbox goes, as the proxy decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnCtx {
    /// The sandbox's id.
    pub sandbox: String,
    /// Its tenant.
    pub tenant: String,
    /// The names of the secrets it was created with.
    pub secrets: Vec<String>,
    /// The host the proxy allowed (CONNECT host, SNI or Host), without a port.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// A placeholder that went where its secret may not: the request was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The sandbox.
    pub sandbox: String,
    /// Its tenant.
    pub tenant: String,
    /// The secret whose placeholder it was (its name; never a value).
    pub secret: String,
    /// Where it was going.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The request's method.
    pub method: String,
    /// Where in the request: `url`, `header NAME` or `body`.
    pub location: String,
}

/// What one connection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnSummary {
    /// Requests relayed.
    pub requests: u64,
    /// Requests a secret was injected into.
    pub injected: u64,
    /// Requests blocked.
    pub blocked: u64,
}

/// How the broker is set up.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The daemon's data directory (the CA lives in DIR/ca).
    pub data_dir: PathBuf,
    /// Extra PEM roots trusted toward real hosts, besides the system's (a private
    /// CA; tests).
    pub extra_roots: Option<PathBuf>,
}

type AlertHook = Arc<dyn Fn(&Alert) + Send + Sync>;

/// The credential broker of one daemon.
pub struct Broker {
    ca: ca::Ca,
    public_dir: PathBuf,
    store: Arc<SecretStore>,
    upstream: Arc<ClientConfig>,
    alerts: Mutex<VecDeque<Alert>>,
    hook: Option<AlertHook>,
    sandboxes: intercept::Registry,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

type Body = BoxBody<Bytes, BoxError>;

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(msg + "\n"))
            .map_err(|e| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Broker {
    /// Loads (or makes, on first start) the CA in DIR/ca and the upstream trust roots.
    pub fn new(cfg: &BrokerConfig, store: Arc<SecretStore>) -> Result<Broker, BrokerError> {
        let ca = ca::Ca::load_or_create(&cfg.data_dir)?;
        let public_dir = write_public(&cfg.data_dir, ca.cert_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(p) = &cfg.extra_roots {
            roots.add_parsable_certificates(ca::read_roots(p)?);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BrokerError::Ca(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Broker {
            ca,
            public_dir,
            store,
            upstream: Arc::new(client),
            alerts: Mutex::new(VecDeque::new()),
            hook: None,
            sandboxes: intercept::Registry::default(),
        })
    }

    /// Also hands every alert to `hook` (the proxy's connection record, the audit).
    pub fn with_alert_hook(mut self, hook: impl Fn(&Alert) + Send + Sync + 'static) -> Broker {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The CA certificate (PEM) sandboxes trust.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The host directory bound read-only at [`SANDBOX_CA_DIR`] in sandboxes with
    /// secrets: the CA's certificate and a bundle, never its key.
    pub fn sandbox_ca_dir(&self) -> &std::path::Path {
        &self.public_dir
    }

    /// The environment that makes common tools trust the CA (OpenSSL, curl, Python's
    /// requests and pip, Node, git).
    pub fn sandbox_env() -> Vec<(String, String)> {
        let bundle = format!("{SANDBOX_CA_DIR}/bundle.pem");
        let mut v: Vec<(String, String)> = [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "PIP_CERT",
            "GIT_SSL_CAINFO",
        ]
        .iter()
        .map(|k| (k.to_string(), bundle.clone()))
        .collect();
        v.push((
            "NODE_EXTRA_CA_CERTS".into(),
            format!("{SANDBOX_CA_DIR}/ca.pem"),
        ));
        v
    }

    /// The secret store.
    pub fn store(&self) -> &Arc<SecretStore> {
        &self.store
    }

    /// Sends the connections of `sandbox` through the broker (when it has secrets);
    /// called when the sandbox is created or re-attached.
    pub fn register(&self, sandbox: &str, tenant: &str, secrets: Vec<String>) {
        self.sandboxes.set(sandbox, tenant, secrets);
    }

    /// Forgets a sandbox (it is gone).
    pub fn unregister(&self, sandbox: &str) {
        self.sandboxes.remove(sandbox);
    }

    /// The latest alerts, oldest first.
    pub fn recent_alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn alert(&self, ctx: &ConnCtx, method: &str, v: Violation) {
        let a = Alert {
            at_ms: now_ms(),
            sandbox: ctx.sandbox.clone(),
            tenant: ctx.tenant.clone(),
            secret: v.secret,
            host: ctx.host.clone(),
            port: ctx.port,
            method: method.to_string(),
            location: v.location,
        };
        eprintln!(
            "corral: alert: sandbox {} sent the placeholder of secret {} to {}:{} ({} {}); blocked",
            a.sandbox, a.secret, a.host, a.port, a.method, a.location
        );
        if let Some(h) = &self.hook {
            h(&a);
        }
        if let Ok(mut q) = self.alerts.lock() {
            if q.len() >= ALERTS_KEPT {
                q.pop_front();
            }
            q.push_back(a);
        }
    }

    /// Serves one HTTPS connection of a sandbox: `client` from its ClientHello on,
    /// `upstream` a connection the proxy opened to `ctx.host:ctx.port`. The client's
    /// SNI, when it sends one, must be `ctx.host`. The two handshakes run at once; an
    /// upstream that fails (say, an untrusted certificate) is answered with a 502
    /// that says why.
    pub async fn serve_tls<C, U>(
        self: &Arc<Self>,
        client: C,
        upstream: U,
        ctx: ConnCtx,
    ) -> Result<ConnSummary, BrokerError>
    where
        C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let name = ServerName::try_from(ctx.host.clone())
            .map_err(|e| BrokerError::ClientTls(format!("{}: {e}", ctx.host)))?;
        let client_side = async {
            let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), client)
                .await
                .map_err(|e| BrokerError::ClientTls(e.to_string()))?;
            if let Some(sni) = start.client_hello().server_name() {
                if !same_host(sni, &ctx.host) {
                    return Err(BrokerError::ClientTls(format!(
                        "the sandbox asked for {sni} on a connection to {}",
                        ctx.host
                    )));
                }
            }
            let cfg = self.ca.server_config(&ctx.host)?;
            start
                .into_stream(cfg)
                .await
                .map_err(|e| BrokerError::ClientTls(e.to_string()))
        };
        let upstream_side = TlsConnector::from(self.upstream.clone()).connect(name, upstream);
        let both = async { tokio::join!(client_side, upstream_side) };
        let (client, up) = tokio::time::timeout(HANDSHAKE_TIMEOUT, both)
            .await
            .map_err(|_| BrokerError::ClientTls("the TLS handshakes timed out".into()))?;
        let client = client?;
        match up {
            Ok(up) => self.relay(client, up, ctx, true).await,
            Err(e) => {
                let msg = format!("corral: TLS to {}:{} failed: {e}", ctx.host, ctx.port);
                answer_once(client, text(StatusCode::BAD_GATEWAY, msg), &ctx.host).await
            }
        }
    }

    /// Serves one plain-HTTP connection of a sandbox with secrets: nothing is
    /// injected (a value never travels in clear) and any placeholder is blocked.
    pub async fn serve_plain<C, U>(
        self: &Arc<Self>,
        client: C,
        upstream: U,
        ctx: ConnCtx,
    ) -> Result<ConnSummary, BrokerError>
    where
        C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.relay(client, upstream, ctx, false).await
    }

    async fn relay<C, U>(
        self: &Arc<Self>,
        client: C,
        upstream: U,
        ctx: ConnCtx,
        tls: bool,
    ) -> Result<ConnSummary, BrokerError>
    where
        C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let bindings =
            Arc::new(
                self.store
                    .bindings(&ctx.tenant, &ctx.secrets, &ctx.host, ctx.port),
            );
        let http_err = |source| BrokerError::Http {
            host: ctx.host.clone(),
            source,
        };
        let (sender, conn) =
            hyper::client::conn::http1::handshake::<_, ScanBody<Incoming>>(TokioIo::new(upstream))
                .await
                .map_err(http_err)?;
        let up_task = tokio::spawn(conn);
        let stats = Arc::new(Stats::default());
        let relay = Arc::new(Relay {
            broker: self.clone(),
            ctx: ctx.clone(),
            bindings,
            tls,
            sender: tokio::sync::Mutex::new(sender),
            stats: stats.clone(),
        });
        let svc = hyper::service::service_fn(move |req| {
            let relay = relay.clone();
            async move { Ok::<_, std::convert::Infallible>(relay.handle(req).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(client), svc)
            .await;
        up_task.abort();
        // How the connection ended (the sandbox closed it, a timeout) changes nothing
        // for the requests already answered.
        drop(served);
        Ok(stats.summary())
    }
}

/// Writes DIR/ca/public/{ca.pem,bundle.pem} (what sandboxes get; the key stays in
/// DIR/ca) and returns the directory.
fn write_public(data_dir: &std::path::Path, ca_pem: &str) -> Result<PathBuf, BrokerError> {
    let dir = data_dir.join("ca").join("public");
    let io = |what: String| move |source| BrokerError::Io { what, source };
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let system = SYSTEM_BUNDLES
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut bundle = system;
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str("# corral's egress CA (docs/secrets.md)\n");
    bundle.push_str(ca_pem);
    for (name, text) in [("ca.pem", ca_pem), ("bundle.pem", bundle.as_str())] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(dir)
}

/// Answers the first request of a connection with `resp`, then closes it.
async fn answer_once<C>(
    client: C,
    resp: Response<Body>,
    host: &str,
) -> Result<ConnSummary, BrokerError>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let resp = Mutex::new(Some(resp));
    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
        let r = resp
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or_else(|| {
                text(
                    StatusCode::BAD_GATEWAY,
                    "corral: upstream unavailable".into(),
                )
            });
        async move { Ok::<_, std::convert::Infallible>(r) }
    });
    hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(client), svc)
        .await
        .map_err(|source| BrokerError::Http {
            host: host.to_string(),
            source,
        })?;
    Ok(ConnSummary::default())
}

#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    injected: AtomicU64,
    blocked: AtomicU64,
}

impl Stats {
    fn summary(&self) -> ConnSummary {
        ConnSummary {
            requests: self.requests.load(Ordering::Relaxed),
            injected: self.injected.load(Ordering::Relaxed),
            blocked: self.blocked.load(Ordering::Relaxed),
        }
    }
}

/// One connection's relay.
struct Relay {
    broker: Arc<Broker>,
    ctx: ConnCtx,
    bindings: Arc<Vec<Binding>>,
    tls: bool,
    sender: tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<ScanBody<Incoming>>>,
    stats: Arc<Stats>,
}

impl Relay {
    fn blocked(&self, method: &str, v: Violation) -> Response<Body> {
        self.stats.blocked.fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "corral: blocked: this request carries the placeholder of secret {} in its {}, \
             and that secret may not go to {}:{}{} (see docs/secrets.md)",
            v.secret,
            v.location,
            self.ctx.host,
            self.ctx.port,
            if self.tls { "" } else { " over plain HTTP" },
        );
        self.broker.alert(&self.ctx, method, v);
        text(StatusCode::FORBIDDEN, msg)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let method = parts.method.to_string();
        // The Host header (or an absolute URI's authority) must be the host the proxy
        // allowed and the bindings were computed for.
        let host = parts.uri.host().map(str::to_string).or_else(|| {
            parts
                .headers
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    h.rsplit_once(':')
                        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                        .map_or(h, |(n, _)| n)
                        .trim_matches(['[', ']'])
                        .to_string()
                })
        });
        if !host
            .as_deref()
            .is_some_and(|h| same_host(h, &self.ctx.host))
        {
            return text(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "corral: this connection goes to {}; the request names {}",
                    self.ctx.host,
                    host.as_deref().unwrap_or("no host")
                ),
            );
        }
        if parts.headers.contains_key(hyper::header::UPGRADE) {
            return text(
                StatusCode::NOT_IMPLEMENTED,
                "corral: protocol upgrades (WebSocket) are not relayed for sandboxes with \
                 secrets yet"
                    .into(),
            );
        }
        let injected = match rewrite::rewrite_head(&mut parts, &self.bindings, self.tls) {
            Ok(i) => i,
            Err(v) => return self.blocked(&method, v),
        };
        // Origin-form toward the server, whatever form the sandbox used.
        if let Some(pq) = parts.uri.path_and_query() {
            if let Ok(u) = pq.as_str().parse() {
                parts.uri = u;
            }
        }
        parts.headers.remove("proxy-connection");
        parts.headers.remove(hyper::header::PROXY_AUTHORIZATION);
        let block: Vec<(String, Vec<u8>)> = self
            .bindings
            .iter()
            .filter(|b| !(b.bound && self.tls))
            .map(|b| (b.name.clone(), b.placeholder.as_bytes().to_vec()))
            .collect();
        let found = Arc::new(Mutex::new(None));
        let body = ScanBody::new(body, Scanner::new(Mode::Block, block), found.clone());
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if !injected.is_empty() {
            self.stats.injected.fetch_add(1, Ordering::Relaxed);
        }
        let sent = {
            let mut sender = self.sender.lock().await;
            match sender.ready().await {
                Ok(()) => sender.send_request(Request::from_parts(parts, body)).await,
                Err(e) => Err(e),
            }
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                if let Some(secret) = found.lock().ok().and_then(|mut f| f.take()) {
                    return self.blocked(
                        &method,
                        Violation {
                            secret,
                            location: "body".into(),
                        },
                    );
                }
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "corral: relaying to {}:{} failed: {e}",
                        self.ctx.host, self.ctx.port
                    ),
                );
            }
        };
        // A server echoing a credential back must not hand it to the sandbox.
        let values: Vec<(String, Vec<u8>)> = self
            .bindings
            .iter()
            .filter(|b| b.bound && self.tls)
            .filter_map(|b| {
                b.value()
                    .map(|v| (b.name.clone(), v.expose().as_bytes().to_vec()))
            })
            .collect();
        let (mut rparts, rbody) = resp.into_parts();
        rewrite::mask_headers(
            &mut rparts.headers,
            &values.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        );
        let scanner = Scanner::new(Mode::Mask, values);
        let rbody: Body = if scanner.is_empty() {
            rbody.map_err(BoxError::from).boxed()
        } else {
            ScanBody::new(rbody, scanner, Arc::new(Mutex::new(None))).boxed()
        };
        Response::from_parts(rparts, rbody)
    }
}

#[cfg(test)]
mod tests;

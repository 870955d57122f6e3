//! corral-server: the daemon's HTTP API. Handlers parse requests and call the
//! [`corral_sandbox::Manager`]; API keys and tenants live in DIR/auth.db.
//!
//! [`serve`] binds, prints `corral: listening on http://ADDR` to stderr, writes the
//! bound address to DIR/listen.addr and serves until the shutdown future completes.
#![forbid(unsafe_code)]

mod admin;
mod auth;
mod e2b;
mod egress;
mod error;
mod exec;
mod files;
mod govern_audit;
mod govern_policy;
mod govern_runner;
mod mcp;
mod metrics;
mod openapi;
mod ports;
mod routes;
mod sandboxes;
mod secrets;
mod snapshots;
mod templates;
#[cfg(test)]
mod tests;
mod time;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use auth::AuthError;
use corral_sandbox::Manager;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// How long open connections (streams, terminals) may finish after a shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free one (see DIR/listen.addr).
    pub listen: SocketAddr,
    /// The daemon's data directory (auth.db, admin-key, listen.addr).
    pub data_dir: PathBuf,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The E2B endpoint's token key could not be read or made.
    #[error("{0}")]
    TokenKey(String),
    /// The key store failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Governance (policy, audit log, approvals) could not be opened.
    #[error("{0}")]
    Govern(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; is another daemon running there?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// DIR/listen.addr could not be written.
    #[error("cannot write {path}: {source}")]
    AddrFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Shared by every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) manager: Arc<Manager>,
    pub(crate) auth: auth::AuthStore,
    pub(crate) http_metrics: metrics::HttpMetrics,
    /// Key of the E2B endpoint's per-sandbox access tokens (e2b/token.rs).
    pub(crate) envd_secret: [u8; 32],
    /// Governance: the call pipeline, approvals, audit log (govern_audit.rs).
    pub(crate) govern: Arc<corral_govern::Governance>,
    /// Governance's policy half: catalog, Cedar, kill switches, budgets (the policy
    /// routes use it).
    #[allow(dead_code)]
    pub(crate) policy: Arc<corral_govern::PolicyCore>,
}

/// Serves the API until `shutdown` completes; then stops accepting, gives open
/// connections a few seconds and returns. The caller shuts the Manager down.
pub async fn serve<F>(
    cfg: ServerConfig,
    manager: Arc<Manager>,
    shutdown: F,
) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let auth = auth::AuthStore::open(&cfg.data_dir)?;
    let envd_secret = e2b::load_token_secret(&cfg.data_dir)?;
    let (policy, govern, runner) =
        govern_audit::open(&cfg.data_dir, &manager).map_err(ServerError::Govern)?;
    let state = Arc::new(AppState {
        manager,
        auth,
        http_metrics: metrics::HttpMetrics::default(),
        envd_secret,
        govern,
        policy,
    });
    runner.set_state(&state);
    govern_audit::spawn_sweeper(&state.govern);
    govern_audit::spawn_egress_recorder(&state.manager, &state.govern);
    let app = routes::router(state);
    let tls = match &cfg.tls {
        Some(files) => Some(tls::load_config(&files.cert, &files.key)?),
        None => None,
    };
    let tcp = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local = tcp.local_addr().map_err(ServerError::Serve)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr_file = cfg.data_dir.join("listen.addr");
    // Written whole, then renamed: a reader never sees half an address.
    let tmp = cfg.data_dir.join("listen.addr.tmp");
    std::fs::write(&tmp, format!("{local}\n"))
        .and_then(|()| std::fs::rename(&tmp, &addr_file))
        .map_err(|source| ServerError::AddrFile {
            path: addr_file.display().to_string(),
            source,
        })?;
    eprintln!("corral: listening on {scheme}://{local}");

    // Shutdown: the signal stops accepting; connections still open after the grace
    // period (a watch, a terminal) are dropped.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut graceful = stop_rx.clone();
    let graceful = async move {
        let _ = graceful.wait_for(|s| *s).await;
    };
    let mut hard = stop_rx;
    let hard = async move {
        let _ = hard.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let served = async {
        match tls {
            Some(cfg) => {
                let listener = tls::TlsListener::new(tcp, cfg).map_err(ServerError::Serve)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
                    .map_err(ServerError::Serve)
            }
            // No Nagle: a streamed response's small frames (a command's start event,
            // its output) would otherwise wait for the client's delayed ACK (~40 ms).
            None => axum::serve(
                axum::serve::ListenerExt::tap_io(tcp, |s| {
                    let _ = s.set_nodelay(true);
                }),
                app,
            )
            .with_graceful_shutdown(graceful)
            .await
            .map_err(ServerError::Serve),
        }
    };
    tokio::select! {
        r = served => r,
        () = hard => Ok(()),
    }
}

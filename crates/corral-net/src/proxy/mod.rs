//! The egress proxy of mode `allow`: one TCP listener for every allow-mode sandbox of
//! a daemon (or of one run), reached only through nftables (see [`crate::rules`]):
//! every TCP connection a sandbox makes is redirected to it, and its original
//! destination is read back with SO_ORIGINAL_DST.
//!
//! - The first bytes decide how it is read, whatever address it was sent to: a TLS
//!   ClientHello is decided by its SNI, on the original destination port; `CONNECT
//!   host:port` (HTTPS_PROXY) and absolute-URI requests (HTTP_PROXY) by what they name
//!   (the explicit proxy protocol); an origin-form HTTP request by its Host header, on
//!   the original destination port; anything else is closed.
//! - TLS is spliced unchanged after the decision; plain HTTP is relayed request by
//!   request (`h1.rs`): each request on a connection is decided and recorded on its own,
//!   its body spliced by its framing.
//!
//! The sandbox is known by the connection's source address (a sandbox cannot change
//! its address: it holds no CAP_NET_ADMIN in its namespace), registered with
//! [`EgressProxy::register`]. The proxy resolves an allowed name itself (see
//! [`upstream`]) and never connects to the address the sandbox chose.
//!
//! # The interception seam (credential brokering)
//!
//! An [`Interceptor`] set with [`EgressProxy::set_interceptor`] is asked, for every
//! ALLOWED connection (after the rules, before any byte goes upstream), whether it
//! [`wants`](Interceptor::wants) it. If it does, the proxy hands it the client stream
//! and an [`Upstream`] to connect with, and records what it returns; otherwise bytes
//! are spliced unchanged. What the interceptor receives:
//! - [`ConnInfo`]: sandbox, tenant, host (normalized), port, how it came ([`Via`]);
//! - the client stream, positioned at the first byte the destination should see: for
//!   CONNECT after the proxy's `200` (so the TLS ClientHello comes next), for
//!   transparent TLS at the ClientHello (the bytes the proxy read to find the SNI are
//!   replayed first), for plain HTTP at the request head (in origin form, `Proxy-*`
//!   headers removed);
//! - [`Upstream::connect`]: a TCP connection to the allowed destination, resolved by
//!   the proxy with the same rebinding protection as its own connections.
//!
//! Denied connections never reach an interceptor.

mod conn;
mod h1;
#[cfg(test)]
mod h1_tests;
pub(crate) mod http;
pub(crate) mod policy;
mod records;
pub(crate) mod sni;
mod splice;
#[cfg(test)]
mod tests;
pub(crate) mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub(crate) use policy::normalize;
pub use policy::{parse_list, Policy, PolicyError, Rule, Verdict};
pub(crate) use records::now_ms;
pub use records::{EgressRecord, Via};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
pub use upstream::{Resolve, Upstream};

/// What went wrong starting the proxy or the resolver.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listening socket could not be made.
    #[error("binding the egress {what} on {addr}: {source}")]
    Bind {
        /// proxy or resolver.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("invalid egress setting: {0}")]
    Config(String),
}

/// A byte stream the proxy hands over: the client side of a connection.
pub trait ClientIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientIo for T {}

/// The client stream given to an [`Interceptor`].
pub type ClientStream = Box<dyn ClientIo>;

/// An allowed connection, as an [`Interceptor`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The sandbox.
    pub sandbox: String,
    /// Its tenant.
    pub tenant: String,
    /// The destination name, lowercase, no trailing dot.
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// How the connection came: [`Via::Connect`] and [`Via::Tls`] carry TLS,
    /// [`Via::HttpProxy`] and [`Via::Http`] plain HTTP.
    pub via: Via,
}

/// What an interceptor reports when it is done with a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intercepted {
    /// Bytes from the sandbox toward the destination.
    pub bytes_up: u64,
    /// Bytes from the destination toward the sandbox.
    pub bytes_down: u64,
    /// Put in the record's `reason` (e.g. `credential injected`; never a secret).
    pub note: Option<String>,
    /// False when the interceptor blocked the connection (recorded as denied).
    pub allowed: bool,
}

/// The future an interceptor returns.
pub type InterceptFuture = Pin<Box<dyn Future<Output = Intercepted> + Send>>;

/// A handler that takes over some allowed connections (credential brokering). See the
/// module documentation for exactly what it receives.
pub trait Interceptor: Send + Sync + std::fmt::Debug + 'static {
    /// Whether it takes this connection. Called on the proxy's task: keep it cheap.
    fn wants(&self, conn: &ConnInfo) -> bool;
    /// Handles the connection to its end.
    fn handle(&self, conn: ConnInfo, client: ClientStream, upstream: Upstream) -> InterceptFuture;
}

/// One allow-mode sandbox as the proxy and resolver know it.
#[derive(Debug, Clone)]
pub struct SandboxEgress {
    /// The sandbox id.
    pub sandbox: String,
    /// Its tenant.
    pub tenant: String,
    /// The host end of its veth (where the proxy and resolver are reached).
    pub host_addr: Ipv4Addr,
    /// Its rules (the daemon's deny rules included).
    pub policy: Policy,
}

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Deny rules applied to every sandbox (`[network] egress_deny`).
    pub deny: Vec<Rule>,
    /// Static name -> address map used instead of the system resolver for these
    /// names (`[network] resolve`; meant for tests and private registries: these
    /// addresses are trusted, the rebinding check does not apply to them).
    pub resolve: HashMap<String, Ipv4Addr>,
    /// Connections one sandbox may have open through the proxy at once
    /// (`[network] egress_max_connections`); more are refused and recorded. Each
    /// costs the daemon up to six descriptors, so without a cap one sandbox could
    /// exhaust the daemon's and stop its API and every other sandbox's egress.
    pub max_connections: usize,
}

/// [`EgressConfig::max_connections`] unless configured: far above what a package
/// manager or a browser opens at once (pip about 10, Chromium 6 per host).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            deny: Vec::new(),
            resolve: HashMap::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The ports the proxy and resolver listen on (on every host address; nftables lets
/// only allow-mode sandboxes reach them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressPorts {
    /// TCP: the proxy (explicit and transparent).
    pub proxy: u16,
    /// UDP: the DNS resolver.
    pub dns: u16,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: EgressConfig,
    pub(crate) ports: EgressPorts,
    sandboxes: RwLock<HashMap<Ipv4Addr, Arc<SandboxEgress>>>,
    /// Open connections per sandbox address (only those with any): each one's id and
    /// a duplicate of its client socket, to shut it down when the sandbox goes.
    open: Mutex<HashMap<Ipv4Addr, Vec<(u64, OwnedFd)>>>,
    /// The next connection id.
    next_conn: AtomicU64,
    pub(crate) records: records::Records,
    interceptor: RwLock<Option<Arc<dyn Interceptor>>>,
}

/// Why [`Shared::admit`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The sandbox has this many open: its limit.
    Full(usize),
    /// The sandbox is no longer served.
    Gone,
}

/// One of a sandbox's open connections, counted until dropped.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    shared: Arc<Shared>,
    addr: Ipv4Addr,
    id: u64,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conns) = open.get_mut(&self.addr) {
            conns.retain(|(id, _)| *id != self.id);
            if conns.is_empty() {
                open.remove(&self.addr);
            }
        }
    }
}

impl Shared {
    /// A slot for one more connection, `client`, from the sandbox at `addr`: `Full`
    /// with how many it has open when that is already
    /// [`EgressConfig::max_connections`] (or when no descriptor is left to duplicate
    /// the socket with: the daemon is out of them), `Gone` when the sandbox has been
    /// unregistered since the connection was accepted.
    pub(crate) fn admit(
        self: &Arc<Self>,
        addr: Ipv4Addr,
        client: &impl AsFd,
    ) -> Result<ConnSlot, Refused> {
        // Lock order: `open`, then `sandboxes` (as in `unregister`), so a sandbox
        // cannot go between this check and the slot being taken.
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if self.sandbox(addr).is_none() {
            return Err(Refused::Gone);
        }
        let conns = open.entry(addr).or_default();
        let n = conns.len();
        if n >= self.cfg.max_connections {
            return Err(Refused::Full(n));
        }
        // A duplicate, not the number: shutting it down later can only ever reach
        // this socket, even after the task has closed its own descriptor.
        let dup = client
            .as_fd()
            .try_clone_to_owned()
            .map_err(|_| Refused::Full(n))?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        conns.push((id, dup));
        Ok(ConnSlot {
            shared: self.clone(),
            addr,
            id,
        })
    }

    /// Stops serving `addr` and shuts down the sandbox side of every connection it
    /// has open: each one then ends as if the sandbox had closed it, and is recorded
    /// with its bytes.
    fn unregister(&self, addr: Ipv4Addr) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        self.sandboxes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
        for (_, fd) in open.get(&addr).into_iter().flatten() {
            let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
    }

    pub(crate) fn sandbox(&self, addr: Ipv4Addr) -> Option<Arc<SandboxEgress>> {
        self.sandboxes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
            .cloned()
    }

    pub(crate) fn interceptor(&self) -> Option<Arc<dyn Interceptor>> {
        self.interceptor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The running proxy and resolver; dropping it stops both.
#[derive(Debug)]
pub struct EgressProxy {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl EgressProxy {
    /// Binds the proxy (TCP) and the resolver (UDP) on `0.0.0.0`, ports chosen by the
    /// kernel, and serves them on the current tokio runtime.
    pub async fn start(cfg: EgressConfig) -> Result<EgressProxy, ProxyError> {
        let any: SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
        let tcp = TcpListener::bind(any)
            .await
            .map_err(|source| ProxyError::Bind {
                what: "proxy",
                addr: any,
                source,
            })?;
        let udp = tokio::net::UdpSocket::bind(any)
            .await
            .map_err(|source| ProxyError::Bind {
                what: "DNS resolver",
                addr: any,
                source,
            })?;
        let port = |a: std::io::Result<SocketAddr>, what| {
            a.map(|a| a.port()).map_err(|source| ProxyError::Bind {
                what,
                addr: any,
                source,
            })
        };
        let ports = EgressPorts {
            proxy: port(tcp.local_addr(), "proxy")?,
            dns: port(udp.local_addr(), "DNS resolver")?,
        };
        if cfg.max_connections == 0 {
            return Err(ProxyError::Config(
                "egress_max_connections must be at least 1".into(),
            ));
        }
        let mut cfg = cfg;
        cfg.resolve = cfg
            .resolve
            .into_iter()
            .map(|(k, v)| {
                normalize(&k).map(|n| (n, v)).ok_or_else(|| {
                    ProxyError::Config(format!("{k:?} in [network] resolve is not a valid name"))
                })
            })
            .collect::<Result<_, _>>()?;
        let shared = Arc::new(Shared {
            cfg,
            ports,
            sandboxes: RwLock::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            records: records::Records::new(),
            interceptor: RwLock::new(None),
        });
        let tasks = vec![
            tokio::spawn(conn::accept_loop(tcp, shared.clone())),
            tokio::spawn(crate::dns::serve(udp, shared.clone())),
        ];
        Ok(EgressProxy { shared, tasks })
    }

    /// The ports.
    pub fn ports(&self) -> EgressPorts {
        self.shared.ports
    }

    /// The daemon's deny rules (to build a sandbox's [`Policy`] with).
    pub fn deny_rules(&self) -> &[Rule] {
        &self.shared.cfg.deny
    }

    /// Serves the sandbox whose address is `addr` with `egress` from now on.
    pub fn register(&self, addr: Ipv4Addr, egress: SandboxEgress) {
        self.shared
            .sandboxes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, Arc::new(egress));
    }

    /// Stops serving the sandbox at `addr`: its next connections are closed unread,
    /// and the ones it has open are shut down now (a removed sandbox's connections
    /// would otherwise live on in the daemon until their upstream closed them).
    pub fn unregister(&self, addr: Ipv4Addr) {
        self.shared.unregister(addr);
    }

    /// Sets the interceptor consulted for every allowed connection.
    pub fn set_interceptor(&self, i: Arc<dyn Interceptor>) {
        *self
            .shared
            .interceptor
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(i);
    }

    /// The most recent records (oldest first), of one sandbox when named.
    pub fn records(&self, sandbox: Option<&str>, limit: usize) -> Vec<EgressRecord> {
        self.shared.records.recent(sandbox, limit)
    }

    /// Every record from now on (a receiver that falls behind skips records).
    pub fn subscribe(&self) -> broadcast::Receiver<EgressRecord> {
        self.shared.records.subscribe()
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The environment of an allow-mode sandbox: the explicit proxy for tools that honour
/// it (curl, pip, npm, python's urllib, Go, Node with a proxy agent).
pub fn proxy_env(host_addr: Ipv4Addr, ports: EgressPorts) -> Vec<(String, String)> {
    let url = format!("http://{host_addr}:{}", ports.proxy);
    let mut v = Vec::new();
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        v.push((k.to_string(), url.clone()));
    }
    for k in ["NO_PROXY", "no_proxy"] {
        v.push((k.to_string(), "localhost,127.0.0.1,::1".to_string()));
    }
    v
}

/// The /etc/resolv.conf of an allow-mode sandbox.
pub fn resolv_conf(host_addr: Ipv4Addr) -> String {
    format!(
        "# corral: mode allow; this resolver answers only allowed names (docs/network.md)\n\
         nameserver {host_addr}\noptions attempts:2 timeout:2\n"
    )
}

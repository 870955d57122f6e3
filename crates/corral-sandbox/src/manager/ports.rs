//! Reaching a port inside a sandbox (exposed services, `corral sandbox port-forward`):
//! a TCP connection to the sandbox's own loopback, made from inside its network
//! namespace.
//!
//! Every sandbox has a network namespace of its own, even in mode `none` (made by
//! `clone(CLONE_NEWNET)`; mode `open` joins a pooled one). A socket keeps the namespace
//! it was created in, so a short-lived thread of the daemon `setns`es into the
//! namespace of the sandbox's init (`/proc/PID/ns/net`, checked against the recorded
//! start time so a reused pid is never joined), creates and connects the socket, hands
//! it back and exits. That thread never returns to any pool: no later work of the
//! daemon can run in the sandbox's namespace. The daemon needs no route into the
//! sandbox and the sandbox no address; nothing inside can connect out this way.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use nix::sched::CloneFlags;

use super::{Manager, SandboxError};

/// How long a connect may wait for the service to accept (a full listen backlog).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a port inside a sandbox could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The sandbox is missing, another tenant's, paused or stopping.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Port 0.
    #[error("port {0} is not a TCP port: use 1-65535")]
    InvalidPort(u16),
    /// Nothing accepts connections on that port inside the sandbox.
    #[error(
        "nothing is listening on port {port} inside sandbox {id}; start the service first \
         (listening on 127.0.0.1, ::1 or all addresses inside the sandbox)"
    )]
    NotListening {
        /// The port.
        port: u16,
        /// The sandbox.
        id: String,
    },
    /// The service did not accept in time.
    #[error(
        "port {port} inside sandbox {id} did not accept a connection within {}s; \
         the service may be overloaded or stuck",
        CONNECT_TIMEOUT.as_secs()
    )]
    Timeout {
        /// The port.
        port: u16,
        /// The sandbox.
        id: String,
    },
    /// Joining the sandbox's namespace or connecting failed otherwise.
    #[error("cannot connect to port {port} inside sandbox {id}: {source}")]
    Connect {
        /// The port.
        port: u16,
        /// The sandbox.
        id: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl PortError {
    /// The HTTP status this maps to: 400 a bad port, 502 a service that does not
    /// answer, else the sandbox error's own.
    pub fn http_status(&self) -> u16 {
        match self {
            PortError::Sandbox(e) => e.http_status(),
            PortError::InvalidPort(_) => 400,
            PortError::NotListening { .. } | PortError::Timeout { .. } => 502,
            PortError::Connect { .. } => 502,
        }
    }

    /// The stable snake_case code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            PortError::Sandbox(e) => e.code(),
            PortError::InvalidPort(_) => "invalid_argument",
            PortError::NotListening { .. } => "not_listening",
            PortError::Timeout { .. } | PortError::Connect { .. } => "bad_gateway",
        }
    }
}

impl Manager {
    /// A TCP connection to `127.0.0.1:port` (or `[::1]:port` when nothing listens on
    /// IPv4) inside the tenant's sandbox `id`, which must be running.
    pub async fn connect_port(
        &self,
        tenant: &str,
        id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, PortError> {
        if port == 0 {
            return Err(PortError::InvalidPort(port));
        }
        let l = self.find(tenant, id)?;
        l.ensure_running()?;
        let row = l.row();
        let (Some(pid), Some(start)) = (row.init_pid, row.init_start) else {
            return Err(SandboxError::Conflict(format!(
                "sandbox {id} has no running init; it may be starting or stopping"
            ))
            .into());
        };
        let gone = || {
            PortError::Sandbox(SandboxError::Conflict(format!(
                "sandbox {id} is no longer running"
            )))
        };
        let ns = File::open(format!("/proc/{pid}/ns/net")).map_err(|_| gone())?;
        // Opened first, checked after: if the pid had been reused in between, the start
        // time would differ and the namespace is not used.
        if corral_isolate::process_start_time(pid) != Some(start) {
            return Err(gone());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A plain thread, never a pooled one: it ends in the sandbox's namespace.
        std::thread::Builder::new()
            .name("corral-port".into())
            .spawn(move || {
                let _ = tx.send(connect_inside(&ns, port));
            })
            .map_err(|e| SandboxError::Internal(format!("cannot start a thread: {e}")))?;
        let stream = match rx.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    io::ErrorKind::ConnectionRefused => PortError::NotListening {
                        port,
                        id: id.to_string(),
                    },
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => PortError::Timeout {
                        port,
                        id: id.to_string(),
                    },
                    _ => PortError::Connect {
                        port,
                        id: id.to_string(),
                        source: e,
                    },
                })
            }
            Err(_) => return Err(SandboxError::Internal("the connect thread died".into()).into()),
        };
        let _ = stream.set_nodelay(true);
        stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
            .map_err(|e| SandboxError::Internal(format!("registering a socket: {e}")).into())
    }
}

/// On a thread of its own: joins `ns` and connects to the loopback there.
fn connect_inside(ns: &File, port: u16) -> io::Result<TcpStream> {
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        // A service bound to ::1 only (`localhost` resolving to IPv6 first); when that
        // fails too, the IPv4 answer is the one to report.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e)
        }
        other => other,
    }
}

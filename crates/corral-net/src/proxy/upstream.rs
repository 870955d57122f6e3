//! Connecting to an allowed destination: the proxy resolves the name itself (the
//! static `[network] resolve` map first, else the system resolver) and refuses answers
//! that point inside (loopback, private, link-local and metadata, shared, multicast,
//! reserved: DNS rebinding protection). Static map entries are trusted as configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::Shared;

/// How long resolving plus connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upstream connection was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolve {
    /// The name does not resolve.
    NoAddress(String),
    /// Every address it resolves to is internal.
    Rebinding(String),
    /// Connecting failed or timed out.
    Connect(String),
}

impl std::fmt::Display for Resolve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolve::NoAddress(s) => write!(f, "the name does not resolve: {s}"),
            Resolve::Rebinding(s) => write!(
                f,
                "the name resolves only to internal addresses ({s}); refused (DNS rebinding protection)"
            ),
            Resolve::Connect(s) => write!(f, "connecting failed: {s}"),
        }
    }
}

/// Whether an address is internal and never a destination of a name from DNS.
pub(crate) fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => internal4(a),
        IpAddr::V6(a) => internal6(a),
    }
}

fn internal4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared (carrier NAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
        || o[0] >= 240 // reserved
}

fn internal6(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return internal4(v4);
    }
    let s = a.segments();
    a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 can reach v4 internals
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
}

/// A connection-to-be to one allowed destination, for an [`super::Interceptor`].
#[derive(Debug, Clone)]
pub struct Upstream {
    shared: Arc<Shared>,
    host: String,
    port: u16,
}

impl Upstream {
    pub(crate) fn new(shared: Arc<Shared>, host: String, port: u16) -> Upstream {
        Upstream { shared, host, port }
    }

    /// The destination name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The destination port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Resolves and connects (TCP_NODELAY set).
    pub async fn connect(&self) -> Result<TcpStream, Resolve> {
        let addrs = self.resolve().await?;
        let fut = async {
            let mut last = String::new();
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => last = format!("{a}: {e}"),
                }
            }
            Err(Resolve::Connect(last))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| Err(Resolve::Connect("timed out".into())))
    }

    /// The addresses to try: the static map's, else the system resolver's minus the
    /// internal ones.
    pub(crate) async fn resolve(&self) -> Result<Vec<SocketAddr>, Resolve> {
        if let Some(a) = self.shared.cfg.resolve.get(&self.host) {
            return Ok(vec![(*a, self.port).into()]);
        }
        let found: Vec<SocketAddr> = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::lookup_host((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| Resolve::NoAddress("timed out".into()))?
        .map_err(|e| Resolve::NoAddress(e.to_string()))?
        .collect();
        if found.is_empty() {
            return Err(Resolve::NoAddress("no address".into()));
        }
        let ok: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| !internal(a.ip()))
            .collect();
        if ok.is_empty() {
            let list: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
            return Err(Resolve::Rebinding(list.join(", ")));
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.170",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::",
            "64:ff9b::a00:1",
        ] {
            assert!(internal(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "151.101.0.223", "100.128.0.1", "2a04:4e42::223"] {
            assert!(!internal(a.parse().unwrap()), "{a}");
        }
    }
}

//! Every egress attempt, allowed or denied, as a record: kept in a ring of the most
//! recent [`RING`] and sent to every subscriber (the audit log subscribes; a slow
//! subscriber misses records, it never slows the proxy down).

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// How many records the ring keeps.
pub(crate) const RING: usize = 4096;

/// How a connection reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `CONNECT host:port` to the explicit proxy (HTTPS_PROXY).
    Connect,
    /// An absolute-URI request to the explicit proxy (HTTP_PROXY).
    HttpProxy,
    /// A TLS connection redirected by nftables, decided by its SNI.
    Tls,
    /// A plain HTTP connection redirected by nftables, decided by its Host.
    Http,
    /// A DNS query to corral's resolver.
    Dns,
    /// A redirected connection that was neither TLS nor HTTP, or one refused before
    /// its first bytes were read (over the sandbox's connection limit; the host is then
    /// the address it was sent to).
    Other,
}

impl Via {
    /// The name in records and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Connect => "connect",
            Via::HttpProxy => "http_proxy",
            Via::Tls => "tls",
            Via::Http => "http",
            Via::Dns => "dns",
            Via::Other => "other",
        }
    }
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRecord {
    /// When it started, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The sandbox.
    pub sandbox: String,
    /// Its tenant.
    pub tenant: String,
    /// The name asked for (empty when none was visible).
    pub host: String,
    /// The port.
    pub port: u16,
    /// How it came.
    pub via: Via,
    /// The method, for plain HTTP.
    pub method: Option<String>,
    /// The path without its query, for plain HTTP (first request of the connection).
    pub path: Option<String>,
    /// Bytes from the sandbox to the destination.
    pub bytes_up: u64,
    /// Bytes from the destination to the sandbox.
    pub bytes_down: u64,
    /// Whether it was allowed.
    pub allowed: bool,
    /// The deciding rule (the allow or deny rule that matched), if any.
    pub rule: Option<String>,
    /// Why it was denied or failed, or what handled it (e.g. `intercepted`).
    pub reason: Option<String>,
}

impl EgressRecord {
    /// This record completed with what an interceptor did with the connection.
    pub(crate) fn intercepted(mut self, out: super::Intercepted) -> EgressRecord {
        self.allowed = out.allowed;
        self.bytes_up = out.bytes_up;
        self.bytes_down = out.bytes_down;
        self.reason = out.note;
        self
    }
}

/// The ring and the subscribers.
#[derive(Debug)]
pub(crate) struct Records {
    ring: Mutex<VecDeque<EgressRecord>>,
    tx: broadcast::Sender<EgressRecord>,
}

impl Records {
    pub(crate) fn new() -> Records {
        let (tx, _) = broadcast::channel(1024);
        Records {
            ring: Mutex::new(VecDeque::with_capacity(256)),
            tx,
        }
    }

    pub(crate) fn push(&self, r: EgressRecord) {
        let _ = self.tx.send(r.clone());
        let mut g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() == RING {
            g.pop_front();
        }
        g.push_back(r);
    }

    /// The most recent records (newest last), of one sandbox when named.
    pub(crate) fn recent(&self, sandbox: Option<&str>, limit: usize) -> Vec<EgressRecord> {
        let g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<EgressRecord> = g
            .iter()
            .rev()
            .filter(|r| sandbox.is_none_or(|s| r.sandbox == s))
            .take(limit)
            .cloned()
            .collect();
        v.reverse();
        v
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<EgressRecord> {
        self.tx.subscribe()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sb: &str, n: u16) -> EgressRecord {
        EgressRecord {
            at_ms: 0,
            sandbox: sb.into(),
            tenant: "t".into(),
            host: "h".into(),
            port: n,
            via: Via::Tls,
            method: None,
            path: None,
            bytes_up: 0,
            bytes_down: 0,
            allowed: true,
            rule: None,
            reason: None,
        }
    }

    #[test]
    fn ring_keeps_the_newest_and_filters() {
        let r = Records::new();
        let mut sub = r.subscribe();
        for i in 0..(RING as u16 + 10) {
            r.push(rec(if i % 2 == 0 { "a" } else { "b" }, i));
        }
        let all = r.recent(None, usize::MAX);
        assert_eq!(all.len(), RING);
        assert_eq!(all.last().unwrap().port, RING as u16 + 9);
        let a = r.recent(Some("a"), 3);
        assert_eq!(
            a.iter().map(|r| r.port).collect::<Vec<_>>(),
            vec![4100, 4102, 4104]
        );
        assert_eq!(
            sub.try_recv().unwrap_err(),
            broadcast::error::TryRecvError::Lagged(3082)
        );
    }
}

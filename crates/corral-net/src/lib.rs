//! corral-net: the network of a sandbox that has one, seen from the host.
//!
//! - [`Cidr`]: the address pool; slot `n` is the n-th /30 of it (host side `.1`,
//!   sandbox `.2`).
//! - [`Network`]: one daemon's (or one run's) namespaces, veth pairs and nftables
//!   table, all named with a tag unique to that daemon, so parallel daemons and tests
//!   never touch each other's.
//! - [`NetPool`]: the daemon's pre-built namespaces, handed out as [`Lease`]s.
//! - [`RunNet`]: the short-lived network of one `corral run --net open|allow=...`.
//! - [`EgressProxy`]: mode allow's egress proxy and DNS resolver (one per daemon or
//!   run), its rules ([`Policy`], [`Rule`]), records ([`EgressRecord`]) and the
//!   [`Interceptor`] seam the credential broker plugs into.
//!
//! Everything is done with iproute2's `ip` and nftables' `nft` through the [`Exec`]
//! seam (see docs/network.md for why), so the command sequences are unit-tested without
//! root.
#![forbid(unsafe_code)]

mod addr;
mod broker;
mod dns;
mod error;
mod exec;
mod network;
mod pool;
mod proxy;
mod rules;
mod run;
mod secrets;

pub use addr::{Cidr, SlotAddrs};
pub use broker::{
    Alert, Broker, BrokerConfig, BrokerError, BrokerInterceptor, ConnCtx, ConnSummary,
    SANDBOX_CA_DIR,
};
pub use error::NetError;
pub use exec::{Exec, RealExec};
pub use network::{Lease, NetConfig, NetMode, Network, NETNS_DIR};
pub use pool::NetPool;
pub use proxy::{
    parse_list as parse_egress_rules, proxy_env, resolv_conf, ClientIo, ClientStream, ConnInfo,
    EgressConfig, EgressPorts, EgressProxy, EgressRecord, InterceptFuture, Intercepted,
    Interceptor, Policy, PolicyError, ProxyError, Resolve, Rule, SandboxEgress, Upstream, Verdict,
    Via, DEFAULT_MAX_CONNECTIONS,
};
pub use run::RunNet;
pub use secrets::{
    check_name as check_secret_name, Binding, HeaderTemplate, HostRule, SecretError, SecretMeta,
    SecretPut, SecretStore, SecretValue, DEFAULT_HEADER, PLACEHOLDER_PREFIX,
};

/// The default address pool of a daemon's sandboxes.
pub const DEFAULT_CIDR: &str = "10.203.0.0/16";
/// The default address pool of `corral run --net open` (kept apart from the daemon's).
pub const DEFAULT_RUN_CIDR: &str = "10.204.0.0/16";

/// A tag unique to a data directory: 5 hex digits of the SHA-256 of its path. Names
/// of everything corral-net makes for that daemon carry it.
pub fn tag_for(data_dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest
        .iter()
        .take(3)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..5]
        .to_string()
}

/// The parsers a sandbox's traffic reaches, for the fuzz targets in fuzz/ (built only
/// by `cargo fuzz`, which sets `--cfg fuzzing`; not part of the public API). Thin
/// wrappers: the parsers stay `pub(crate)` in the normal build.
#[cfg(fuzzing)]
#[doc(hidden)]
#[allow(missing_docs, missing_debug_implementations)]
pub mod fuzzing {
    use crate::proxy::{http, sni};

    /// The most bytes the proxy waits for before deciding on a ClientHello.
    pub const MAX_HELLO: usize = sni::MAX_HELLO;
    /// The longest request head the proxy reads.
    pub const MAX_HEAD: usize = http::MAX_HEAD;

    /// What the first bytes of a TLS connection say (`proxy::sni::Hello`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Hello {
        Sni(String),
        NoSni,
        NotTls,
        Incomplete,
    }

    /// The proxy's ClientHello reader.
    pub fn sni(buf: &[u8]) -> Hello {
        match sni::parse(buf) {
            sni::Hello::Sni(s) => Hello::Sni(s),
            sni::Hello::NoSni => Hello::NoSni,
            sni::Hello::NotTls => Hello::NotTls,
            sni::Hello::Incomplete => Hello::Incomplete,
        }
    }

    /// The proxy's name check (lowercase, one trailing dot stripped).
    pub fn normalize(name: &str) -> Option<String> {
        crate::proxy::normalize(name)
    }

    /// Everything the proxy derives from one request head.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        pub method: String,
        pub target: String,
        pub host_header: Option<String>,
        /// `Body` as Debug text, or the refusal.
        pub body: Result<String, &'static str>,
        pub keep_alive: bool,
        pub connect: Option<(String, u16)>,
        /// (host, port, path) from an absolute-form target.
        pub absolute: Option<(String, Option<u16>, String)>,
        /// (host, port, path) from the Host header.
        pub host: Option<(String, Option<u16>, String)>,
        /// The head as forwarded in origin form (path = the target).
        pub origin_form: Vec<u8>,
    }

    /// Where a request head ends, as the proxy finds it.
    pub fn head_end(buf: &[u8]) -> Option<usize> {
        http::head_end(buf)
    }

    /// The proxy's request-head parser and what it derives from a head.
    pub fn request(head: &[u8]) -> Option<Request> {
        let h = http::Head::parse(head)?;
        let dest = |d: Option<http::Dest>| d.map(|d| (d.host, d.port, d.path));
        Some(Request {
            body: h.body().map(|b| format!("{b:?}")),
            keep_alive: h.keep_alive(),
            connect: h.connect_dest(),
            absolute: dest(h.absolute_dest()),
            host: dest(h.host_dest()),
            origin_form: h.to_origin_form(&h.target),
            method: h.method,
            target: h.target,
            host_header: h.host_header,
        })
    }

    /// The proxy's response-head parser: (status, body framing for `method`, keep-alive).
    pub fn response(
        head: &[u8],
        method: &str,
    ) -> Option<(u16, Result<String, &'static str>, bool)> {
        let r = http::Response::parse(head)?;
        Some((
            r.status,
            r.body(method).map(|b| format!("{b:?}")),
            r.keep_alive(),
        ))
    }

    /// A chunk-size line.
    pub fn chunk_size(line: &[u8]) -> Option<u64> {
        http::chunk_size(line)
    }

    /// The path kept in egress records.
    pub fn record_path(path: &str) -> String {
        http::record_path(path)
    }

    /// What the resolver makes of one datagram.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Dns {
        /// A query, and the answer the resolver would write for it (an A record for
        /// 192.0.2.1).
        Query {
            id: u16,
            name: String,
            qtype: u16,
            qclass: u16,
            answer: Vec<u8>,
        },
        /// Answered with an error and no question.
        Error { id: u16, answer: Vec<u8> },
        /// Not answered.
        Drop,
    }

    /// The resolver's DNS message parser.
    pub fn dns(msg: &[u8]) -> Dns {
        use crate::dns::wire;
        match wire::parse(msg) {
            wire::Parsed::Query(q) => Dns::Query {
                answer: wire::answer(
                    &q,
                    wire::Rcode::NoError,
                    Some(std::net::Ipv4Addr::new(192, 0, 2, 1)),
                    30,
                ),
                id: q.id,
                name: q.name,
                qtype: q.qtype,
                qclass: q.qclass,
            },
            wire::Parsed::Error { id, flags, rcode } => Dns::Error {
                id,
                answer: wire::error(id, flags, rcode),
            },
            wire::Parsed::Drop => Dns::Drop,
        }
    }
}

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
    Via,
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

//! Sandboxes: create, get, list, extend.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A sandbox's lifecycle state. Transitions: creating -> running <-> paused ->
/// stopping -> stopped. Each is atomic: a failed create leaves nothing behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Being built.
    Creating,
    /// Ready for exec and files.
    Running,
    /// Frozen: its processes and memory are kept, it burns no CPU.
    Paused,
    /// Being torn down.
    Stopping,
    /// Gone (kept in listings for a while after deletion or expiry).
    Stopped,
}

impl SandboxState {
    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Creating => "creating",
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
            SandboxState::Stopping => "stopping",
            SandboxState::Stopped => "stopped",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<SandboxState> {
        [
            SandboxState::Creating,
            SandboxState::Running,
            SandboxState::Paused,
            SandboxState::Stopping,
            SandboxState::Stopped,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// Network mode of a sandbox (see docs/network.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Loopback only (the default).
    #[default]
    None,
    /// A network of its own with outbound access to anything except the host itself,
    /// other sandboxes, loopback, link-local (cloud metadata such as 169.254.169.254),
    /// multicast and the daemon's configured deny ranges; enforced by nftables on the
    /// host side. Nothing can connect in.
    Open,
    /// A network of its own whose every TCP connection and DNS query goes through the
    /// daemon's egress proxy and resolver, which let through only the names (and
    /// ports) in `allow`; everything else (direct IPs, other UDP, ICMP) is dropped.
    Allow,
}

/// The network part of a create request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkRequest {
    /// The mode; default `none`.
    #[serde(default)]
    pub mode: NetworkMode,
    /// Mode `allow` only (and required there): the destinations, each `NAME`,
    /// `NAME:PORT` or `*.NAME[:PORT]` (subdomains only); without a port 443 and 80.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// Requested resources; every field is optional and has the documented default.
/// Sizes accept numbers (bytes) or strings with units ("512M", "2G").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesRequest {
    /// Memory limit, e.g. "512M" (default 512M).
    pub memory: Option<String>,
    /// CPUs, e.g. "1" or "0.5" (default 1).
    pub cpus: Option<String>,
    /// Maximum number of processes and threads (default 256).
    pub pids: Option<u64>,
    /// Size cap of the writable layer, e.g. "1G" (default 1G).
    pub disk: Option<String>,
}

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxCreateRequest {
    /// Template name (default `host`). Mutually exclusive with `snapshot_id`.
    pub template: Option<String>,
    /// Create from this snapshot (a fork): its files on top of its template.
    pub snapshot_id: Option<String>,
    /// Time to live in seconds (default 300, at most 28800): at expiry the sandbox is
    /// killed and removed. Extend with `POST /v1/sandboxes/{id}/timeout`.
    pub timeout_s: Option<u64>,
    /// Resource limits.
    #[serde(default)]
    pub resources: ResourcesRequest,
    /// Network.
    #[serde(default)]
    pub network: NetworkRequest,
    /// Environment given to every command run in the sandbox (exec's own env wins).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets of the caller's tenant (by name) the sandbox may use: each becomes an
    /// environment variable holding only a placeholder, which corral's egress proxy
    /// swaps for the value on requests to the secret's hosts. Needs network mode
    /// `allow` (see docs/secrets.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Free-form labels to find the sandbox by (`GET /v1/sandboxes?metadata.k=v`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Effective resources of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit, bytes.
    pub memory_bytes: u64,
    /// CPU quota in thousandths of a CPU.
    pub cpu_millis: u64,
    /// Maximum number of tasks.
    pub pids: u64,
    /// Writable layer cap, bytes.
    pub disk_bytes: u64,
}

/// A sandbox as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// Its id, `sb-` followed by 20 lowercase hex digits.
    pub id: String,
    /// Lifecycle state.
    pub state: SandboxState,
    /// Template it was created from.
    pub template: String,
    /// Snapshot it was forked from, if any.
    pub snapshot_id: Option<String>,
    /// Owning tenant.
    pub tenant: String,
    /// Effective resources.
    pub resources: Resources,
    /// Network mode.
    pub network: NetworkMode,
    /// Mode `allow`: the destinations it may reach (normalized rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_allow: Vec<String>,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// When it stopped, if it has (RFC 3339).
    pub stopped_at: Option<String>,
    /// Why it stopped: `deleted`, `expired`, `died`, `daemon_restart`, `create_failed`.
    pub stop_reason: Option<String>,
}

/// `GET /v1/sandboxes`: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxList {
    /// This page, oldest first.
    pub sandboxes: Vec<Sandbox>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/sandboxes/{id}/timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutRequest {
    /// New time to live in seconds from now (at most 28800).
    pub timeout_s: u64,
}

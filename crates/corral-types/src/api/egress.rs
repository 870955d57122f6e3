//! Egress records of mode `allow` (`GET /v1/sandboxes/{id}/egress`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One attempt of a sandbox to reach something through corral's egress proxy or
/// resolver, allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressRecord {
    /// When it started (RFC 3339).
    pub at: String,
    /// The sandbox.
    pub sandbox_id: String,
    /// Its tenant.
    pub tenant: String,
    /// The name asked for (empty when none was visible).
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// How it came: `connect` (HTTPS_PROXY), `http_proxy` (HTTP_PROXY), `tls`
    /// (transparent, by SNI), `http` (transparent, by Host), `dns` (a query to corral's
    /// resolver), `other` (a redirected connection that was neither TLS nor HTTP).
    pub via: String,
    /// The method, for plain HTTP.
    pub method: Option<String>,
    /// The path without its query, for plain HTTP (first request of the connection).
    pub path: Option<String>,
    /// Bytes from the sandbox to the destination.
    pub bytes_up: u64,
    /// Bytes from the destination to the sandbox.
    pub bytes_down: u64,
    /// Whether it was let through.
    pub allowed: bool,
    /// The deciding rule: the allow or deny rule that matched, or `rebinding`.
    pub rule: Option<String>,
    /// Why it was denied or failed (or what handled it).
    pub reason: Option<String>,
}

/// `GET /v1/sandboxes/{id}/egress`: the most recent records, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressRecordList {
    /// The records.
    pub records: Vec<EgressRecord>,
}

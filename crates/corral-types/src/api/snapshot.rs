//! Snapshots: a sandbox's writable layer, frozen and content-addressed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A snapshot. Create sandboxes from it with `snapshot_id` (many children from one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// `snap-` followed by the first 32 hex digits of the layer's SHA-256.
    pub id: String,
    /// The sandbox it was taken from.
    pub source_sandbox_id: String,
    /// The template underneath.
    pub template: String,
    /// Owning tenant.
    pub tenant: String,
    /// Bytes of file data in the layer.
    pub size_bytes: u64,
    /// When it was taken (RFC 3339).
    pub created_at: String,
}

/// `GET /v1/snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotList {
    /// Snapshots, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Next page cursor.
    pub next_cursor: Option<String>,
}

//! Files inside a sandbox. Contents move as raw bytes (`PUT`/`GET .../files?path=`);
//! these are the JSON parts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Its name within the directory.
    pub name: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, e.g. 420 (0644).
    pub mode: u32,
    /// Last modification (RFC 3339).
    pub mtime: String,
    /// For symlinks: where it points (as written, not resolved).
    pub symlink_target: Option<String>,
}

/// `GET /v1/sandboxes/{id}/files/list?path=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileList {
    /// The directory listed.
    pub path: String,
    /// Entries, sorted by name.
    pub entries: Vec<FileEntry>,
    /// More entries exist than the listing limit (10000).
    pub truncated: bool,
}

/// `POST /v1/sandboxes/{id}/files/mkdir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MkdirRequest {
    /// Absolute path of the directory.
    pub path: String,
    /// Create missing parents too (default true); an existing directory is fine then.
    pub parents: Option<bool>,
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchEventKind {
    /// Created.
    Create,
    /// Written to.
    Write,
    /// Removed.
    Remove,
    /// Renamed away or into.
    Rename,
    /// Permissions or ownership changed.
    Chmod,
}

/// One line of `GET .../files/watch?path=` (`application/x-ndjson`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: WatchEventKind,
    /// Absolute path inside the sandbox.
    pub path: String,
}

/// `PUT /v1/sandboxes/{id}/files?path=` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWriteResponse {
    /// The file written (absolute path inside the sandbox).
    pub path: String,
    /// Bytes written.
    pub size_bytes: u64,
}

/// `POST /v1/sandboxes/{id}/files/rename`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// Existing path (absolute, inside the sandbox).
    pub from: String,
    /// New path; an existing file there is replaced.
    pub to: String,
}

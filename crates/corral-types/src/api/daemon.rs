//! The daemon itself: health, and the control messages of the PTY WebSocket.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::RunResult;

/// `GET /v1/health` (no authentication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthResponse {
    /// Always `ok` while the daemon answers.
    pub status: String,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PtySize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// A text frame a client sends on `GET /v1/sandboxes/{id}/pty` (binary frames are
/// keystrokes): `{"resize": {"rows": 40, "cols": 120}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PtyClientMessage {
    /// The window changed size.
    pub resize: PtySize,
}

/// The last text frame the server sends on the PTY WebSocket before closing it:
/// `{"exit": {...}}` with the process's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PtyServerMessage {
    /// The terminal's process ended.
    pub exit: RunResult,
}

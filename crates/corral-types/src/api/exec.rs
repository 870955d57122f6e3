//! Commands in a running sandbox: exec, run_code, background processes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::RunResult;

/// `POST /v1/sandboxes/{id}/exec`. Without `background`, the response is a
/// [`RunResult`] (the same object as `corral run --json`), or with
/// `Accept: application/x-ndjson` a stream of [`ExecEvent`]s. With `background`, a
/// [`ProcessInfo`] (201) and the process runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments (argv; no shell). `["sh", "-c", "..."]` for one.
    pub cmd: Vec<String>,
    /// Extra environment; wins over the sandbox's own env and the template's ENV.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute; default the template's WORKDIR, else the user's
    /// home).
    pub cwd: Option<String>,
    /// Text given to the command's standard input (default: none, stdin is empty).
    pub stdin: Option<String>,
    /// Kill the command after this many seconds (default 60; at most the sandbox's
    /// remaining time to live). Background processes have no default timeout.
    pub timeout_s: Option<u64>,
    /// Start it and return at once; see `/processes`.
    #[serde(default)]
    pub background: bool,
    /// `sandbox` (uid 1000) or `root` (root of the sandbox's own user namespace only);
    /// default the template's USER, else `sandbox`.
    pub user: Option<String>,
}

/// Languages `run_code` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunCodeLanguage {
    /// python3 -c CODE
    Python,
    /// node -e CODE
    Javascript,
    /// bash -c CODE
    Bash,
}

/// `POST /v1/sandboxes/{id}/run_code`: code in a language, same result as exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCodeRequest {
    /// The language.
    pub language: RunCodeLanguage,
    /// The program text.
    pub code: String,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Timeout in seconds (default 60).
    pub timeout_s: Option<u64>,
}

/// One line of a streamed exec (`application/x-ndjson`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecEvent {
    /// A chunk of standard output, as it happened (UTF-8, invalid bytes replaced).
    Stdout {
        /// The text.
        data: String,
    },
    /// A chunk of standard error.
    Stderr {
        /// The text.
        data: String,
    },
    /// The command ended; its stdout/stderr fields are empty (they were streamed).
    Exit {
        /// The result.
        result: RunResult,
    },
    /// corral failed to run the command.
    Error {
        /// Stable snake_case code.
        code: String,
        /// What failed.
        message: String,
    },
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// State of a background process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    /// Still running.
    Running,
    /// It ended; see `result`.
    Exited,
}

/// A background process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    /// corral's id for it, `p-` and a number, unique within the sandbox.
    pub process_id: String,
    /// Its pid inside the sandbox.
    pub pid: u32,
    /// The command.
    pub cmd: Vec<String>,
    /// Running or exited.
    pub state: ProcessState,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Once exited: the result (stdout/stderr empty: see `/output`).
    pub result: Option<RunResult>,
}

/// `GET /v1/sandboxes/{id}/processes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessList {
    /// Background processes, oldest first.
    pub processes: Vec<ProcessInfo>,
}

/// `GET /v1/sandboxes/{id}/processes/{pid}/output`: what a background process wrote
/// (the last 1 MiB of each stream is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessOutput {
    /// Standard output kept so far.
    pub stdout: String,
    /// Standard error kept so far.
    pub stderr: String,
    /// Older stdout was dropped to stay within the buffer.
    pub stdout_truncated: bool,
    /// Older stderr was dropped.
    pub stderr_truncated: bool,
    /// Running or exited.
    pub state: ProcessState,
}

/// `POST /v1/sandboxes/{id}/processes/{pid}/stdin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinWriteRequest {
    /// Text to write.
    #[serde(default)]
    pub data: String,
    /// Close standard input afterwards (the process sees end of file).
    #[serde(default)]
    pub eof: bool,
}

/// `POST /v1/sandboxes/{id}/processes/{pid}/signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// Signal name (`SIGTERM`, `TERM`) or number; default SIGTERM. Sent to the
    /// process's whole process group.
    pub signal: Option<String>,
}

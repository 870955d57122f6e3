//! The result of running one command in a sandbox (`corral run --json`, and later the
//! exec API).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a command did. Exit status rules: the command's own code; 128+N when signal N
/// killed it; 124 on timeout; 137 when the memory limit killed it; 127 when the command
/// was not found in the sandbox and 126 when it could not be executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunResult {
    /// The exit status (see the type's docs).
    pub exit_code: i32,
    /// The signal that ended the command, if one did.
    pub signal: Option<i32>,
    /// The timeout expired and the sandbox was killed.
    pub timed_out: bool,
    /// The memory limit's OOM killer killed a process in the sandbox.
    pub oom_killed: bool,
    /// Standard output, UTF-8 (invalid sequences replaced).
    pub stdout: String,
    /// Standard error, UTF-8 (invalid sequences replaced).
    pub stderr: String,
    /// stdout exceeded the output limit; the rest was dropped.
    pub stdout_truncated: bool,
    /// stderr exceeded the output limit; the rest was dropped.
    pub stderr_truncated: bool,
    /// Wall time of the sandbox, milliseconds.
    pub duration_ms: u64,
    /// Peak memory of the sandbox, bytes (null when not measured).
    pub peak_memory_bytes: Option<u64>,
    /// CPU time of every process in the sandbox, milliseconds.
    pub cpu_time_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_the_documented_field_names() {
        let r = RunResult {
            exit_code: 137,
            signal: Some(9),
            timed_out: false,
            oom_killed: true,
            stdout: "a".into(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: 12,
            peak_memory_bytes: Some(4096),
            cpu_time_ms: 3,
        };
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "cpu_time_ms",
                "duration_ms",
                "exit_code",
                "oom_killed",
                "peak_memory_bytes",
                "signal",
                "stderr",
                "stderr_truncated",
                "stdout",
                "stdout_truncated",
                "timed_out"
            ]
        );
        let back: RunResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}

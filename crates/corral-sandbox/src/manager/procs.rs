//! Background processes of a sandbox: what they are, the tail of their output, their
//! standard input and, once they end, their result.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use corral_types::api::{ProcessInfo, ProcessOutput, ProcessState};
use corral_types::RunResult;
use tokio::net::unix::pipe;

use super::clock::rfc3339;

/// How much of each output stream a background process keeps.
pub(crate) const KEEP_BYTES: usize = 1 << 20;

/// The last [`KEEP_BYTES`] of a stream.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    buf: VecDeque<u8>,
    pub truncated: bool,
}

impl Tail {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        if self.buf.len() > KEEP_BYTES {
            let drop = self.buf.len() - KEEP_BYTES;
            self.buf.drain(..drop);
            self.truncated = true;
        }
    }

    pub(crate) fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// One background process.
#[derive(Debug)]
pub(crate) struct Proc {
    pub exec_id: u64,
    pub pid: u32,
    pub cmd: Vec<String>,
    pub started_at_ms: u64,
    pub result: Option<RunResult>,
    pub stdout: Tail,
    pub stderr: Tail,
    pub stdin: Option<Arc<tokio::sync::Mutex<Option<pipe::Sender>>>>,
}

impl Proc {
    pub(crate) fn info(&self, process_id: &str) -> ProcessInfo {
        ProcessInfo {
            process_id: process_id.to_string(),
            pid: self.pid,
            cmd: self.cmd.clone(),
            state: self.state(),
            started_at: rfc3339(self.started_at_ms),
            result: self.result.clone(),
        }
    }

    pub(crate) fn state(&self) -> ProcessState {
        if self.result.is_some() {
            ProcessState::Exited
        } else {
            ProcessState::Running
        }
    }

    pub(crate) fn output(&self) -> ProcessOutput {
        ProcessOutput {
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
            stdout_truncated: self.stdout.truncated,
            stderr_truncated: self.stderr.truncated,
            state: self.state(),
        }
    }
}

/// The table, keyed by process id (`p-N`, N the exec id).
#[derive(Debug, Default)]
pub(crate) struct Procs {
    pub by_id: BTreeMap<u64, Proc>,
}

/// Most processes remembered per sandbox; the oldest exited ones are forgotten first.
const MAX_PROCS: usize = 256;

impl Procs {
    pub(crate) fn insert(&mut self, p: Proc) {
        if self.by_id.len() >= MAX_PROCS {
            if let Some(old) = self
                .by_id
                .iter()
                .find(|(_, p)| p.result.is_some())
                .map(|(k, _)| *k)
            {
                self.by_id.remove(&old);
            }
        }
        self.by_id.insert(p.exec_id, p);
    }

    /// Parses `p-N`.
    pub(crate) fn key(process_id: &str) -> Option<u64> {
        process_id.strip_prefix("p-")?.parse().ok()
    }
}

/// A process id as the API shows it.
pub(crate) fn process_id(exec_id: u64) -> String {
    format!("p-{exec_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_mebibyte() {
        let mut t = Tail::default();
        t.push(&vec![b'a'; KEEP_BYTES]);
        assert!(!t.truncated);
        t.push(b"xyz");
        assert!(t.truncated);
        let s = t.text();
        assert_eq!(s.len(), KEEP_BYTES);
        assert!(s.ends_with("axyz"));
    }

    #[test]
    fn process_ids_round_trip() {
        assert_eq!(Procs::key(&process_id(42)), Some(42));
        assert_eq!(Procs::key("42"), None);
        assert_eq!(Procs::key("p-x"), None);
    }
}

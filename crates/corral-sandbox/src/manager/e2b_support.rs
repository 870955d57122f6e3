//! What the E2B-compatible endpoint (corral-server's `e2b` module) needs beyond the
//! native API: a process that is listed and signalled like a background process
//! (E2B's commands are all addressable by pid) while its output is streamed live to
//! the caller that started it and to any caller that attaches later (E2B's
//! `Connect`). The process runs under the same checks, limits and table as
//! [`Manager::exec_background`]; only where its output goes differs.

use std::sync::{Arc, Mutex};

use corral_types::api::{ExecRequest, ProcessState};
use corral_types::RunResult;
use tokio::sync::{broadcast, mpsc};

use super::exec::{self, Sink};
use super::procs::{process_id, Proc, Procs, Tail};
use super::{Manager, SandboxError};

/// One piece of a live process's life, as E2B streams it.
#[derive(Debug, Clone)]
pub enum LiveOutput {
    /// Bytes the process wrote to standard output.
    Stdout(Vec<u8>),
    /// Bytes it wrote to standard error.
    Stderr(Vec<u8>),
    /// It ended.
    Exit(RunResult),
}

/// A process started by [`Manager::start_live`].
#[derive(Debug)]
pub struct LiveProcess {
    /// corral's process id (`p-N`), as in `/v1/sandboxes/{id}/processes`.
    pub process_id: String,
    /// Its pid inside the sandbox.
    pub pid: u32,
    /// Its output and, last, its exit; ends after `Exit`. Backpressured: a caller that
    /// reads slowly slows the process's output down, never loses it.
    pub output: mpsc::Receiver<LiveOutput>,
    /// Attach further readers (they see output from the moment they subscribe on).
    pub attach: broadcast::Sender<LiveOutput>,
}

/// Feeds the process table's tails, the starting caller and any attached readers.
struct Fanout {
    live: Arc<super::live::Live>,
    exec_id: u64,
    first: Option<mpsc::Sender<LiveOutput>>,
    attached: broadcast::Sender<LiveOutput>,
}

impl Fanout {
    async fn emit(&mut self, ev: LiveOutput) {
        if let Some(tx) = &self.first {
            if tx.send(ev.clone()).await.is_err() {
                // The starting caller hung up: the process runs on (E2B semantics).
                self.first = None;
            }
        }
        let _ = self.attached.send(ev);
    }

    fn tails(&self, f: impl FnOnce(&mut Proc)) {
        if let Ok(mut procs) = self.live.procs.lock() {
            if let Some(p) = procs.by_id.get_mut(&self.exec_id) {
                f(p);
            }
        }
    }
}

impl Sink for Fanout {
    async fn stdout(&mut self, data: &[u8]) -> bool {
        self.tails(|p| p.stdout.push(data));
        self.emit(LiveOutput::Stdout(data.to_vec())).await;
        true
    }
    async fn stderr(&mut self, data: &[u8]) -> bool {
        self.tails(|p| p.stderr.push(data));
        self.emit(LiveOutput::Stderr(data.to_vec())).await;
        true
    }
}

/// Readers attached to live processes, by sandbox and exec id.
type Attachments = Mutex<std::collections::HashMap<(String, u64), broadcast::Sender<LiveOutput>>>;

fn attachments() -> &'static Attachments {
    static A: std::sync::OnceLock<Attachments> = std::sync::OnceLock::new();
    A.get_or_init(Default::default)
}

impl Manager {
    /// Starts a process that is listed in the sandbox's process table (so it can be
    /// signalled and written to by pid) and whose output streams live. `req.timeout_s`
    /// of `None` means no timeout (the sandbox's own time to live still applies).
    pub async fn start_live(
        &self,
        tenant: &str,
        id: &str,
        req: ExecRequest,
    ) -> Result<LiveProcess, SandboxError> {
        let l = self.find(tenant, id)?;
        l.ensure_running()?;
        let mut req = req;
        req.background = true;
        let cmd = self.command(&l, &req)?;
        let mut s = exec::start(&l, &cmd, true).await?;
        let stdin_w = Arc::new(tokio::sync::Mutex::new(s.stdin.take()));
        let exec_id = s.exec_id;
        let pid = s.pid;
        if let Ok(mut procs) = l.procs.lock() {
            procs.insert(Proc {
                exec_id,
                pid,
                cmd: cmd.argv.clone(),
                started_at_ms: super::clock::now_ms(),
                result: None,
                stdout: Tail::default(),
                stderr: Tail::default(),
                stdin: Some(stdin_w),
            });
        }
        let (tx, rx) = mpsc::channel(64);
        let (attach, _) = broadcast::channel(1024);
        if let Ok(mut a) = attachments().lock() {
            a.insert((id.to_string(), exec_id), attach.clone());
        }
        let key = (id.to_string(), exec_id);
        let attached = attach.clone();
        tokio::spawn(async move {
            let mut sink = Fanout {
                live: l.clone(),
                exec_id,
                first: Some(tx),
                attached,
            };
            let ended = exec::supervise(&l, &mut s, cmd.timeout, &mut sink).await;
            let r = exec::result(&l, &s, &ended);
            if let Ok(mut procs) = l.procs.lock() {
                if let Some(p) = procs.by_id.get_mut(&exec_id) {
                    p.result = Some(r.clone());
                    p.stdin = None;
                }
            }
            if let Ok(mut a) = attachments().lock() {
                a.remove(&key);
            }
            sink.emit(LiveOutput::Exit(r)).await;
        });
        Ok(LiveProcess {
            process_id: process_id(exec_id),
            pid,
            output: rx,
            attach,
        })
    }

    /// The process id (`p-N`) of the running process with this pid inside the
    /// sandbox, among the processes corral started.
    pub fn process_by_pid(&self, tenant: &str, id: &str, pid: u32) -> Result<String, SandboxError> {
        let list = self.processes(tenant, id)?;
        list.processes
            .into_iter()
            .find(|p| p.pid == pid && p.state == ProcessState::Running)
            .map(|p| p.process_id)
            .ok_or_else(|| {
                SandboxError::NotFound(format!("no running process with pid {pid} in sandbox {id}"))
            })
    }

    /// Attaches to a running process's live output (from now on), by process id.
    pub fn attach_live(
        &self,
        tenant: &str,
        id: &str,
        process: &str,
    ) -> Result<broadcast::Receiver<LiveOutput>, SandboxError> {
        self.process(tenant, id, process)?;
        let key = Procs::key(process).ok_or_else(|| {
            SandboxError::NotFound(format!("no process {process} in sandbox {id}"))
        })?;
        attachments()
            .lock()
            .ok()
            .and_then(|a| a.get(&(id.to_string(), key)).map(|s| s.subscribe()))
            .ok_or_else(|| {
                SandboxError::NotFound(format!(
                    "process {process} in sandbox {id} has no live output to attach to (it was not started through the E2B endpoint, or it has exited)"
                ))
            })
    }
}

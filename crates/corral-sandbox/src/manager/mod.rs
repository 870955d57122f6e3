//! The Manager: every sandbox the daemon runs, their state in SQLite, their lifecycle
//! (create, TTL, health, pause, snapshot, delete) and the operations on them (exec,
//! files). HTTP handlers parse requests and call these methods; nothing else does the
//! work. Each method takes the caller's tenant: another tenant's sandbox is NotFound.

mod error;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_isolate::Layer;
use corral_types::api::{
    ExecEvent, ExecRequest, FileEntry, FileList, ProcessInfo, ProcessList, ProcessOutput, Sandbox,
    SandboxCreateRequest, SandboxList, SandboxState, Snapshot, SnapshotList, StdinWriteRequest,
    TenantQuota, WatchEvent,
};
use corral_types::RunResult;
use tokio::sync::{mpsc, oneshot};

pub use error::SandboxError;

/// How the Manager is set up (from corral.toml and the command line).
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The daemon's data directory: state.db, sockets/, snapshots/, templates/.
    pub data_dir: PathBuf,
    /// Runtime directory (holds the scratch mount point); default /run/corral.
    pub runtime_dir: PathBuf,
    /// The corral binary, run as `corral __spawn` for each create.
    pub corral_exe: PathBuf,
    /// Parent cgroup of the daemon's sandboxes (per controller on v1).
    pub cgroup_parent: String,
    /// First host uid/gid mapped into sandboxes.
    pub id_map_base: u32,
    /// Warm sandboxes kept ready for the `host` template.
    pub pool_size: usize,
    /// How often dead sandboxes are looked for.
    pub health_interval: Duration,
    /// Time to live when a create names none.
    pub default_timeout: Duration,
    /// The longest time to live a sandbox may have.
    pub max_timeout: Duration,
    /// Default memory limit, bytes.
    pub default_memory_bytes: u64,
    /// Default CPU quota, thousandths of a CPU.
    pub default_cpu_millis: u64,
    /// Default task limit.
    pub default_pids: u64,
    /// Default writable-layer cap, bytes.
    pub default_disk_bytes: u64,
    /// Isolation layers the operator allows to be missing (dangerously_skip_layers).
    pub skip_layers: Vec<Layer>,
    /// On shutdown, leave tenants' sandboxes running for the next daemon to re-attach
    /// (true) or stop them (false, the default: nothing outlives the daemon).
    pub keep_sandboxes_on_shutdown: bool,
}

/// Filters and paging of [`Manager::list`].
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this state (default: every state but stopped).
    pub state: Option<SandboxState>,
    /// Only sandboxes whose metadata has all of these pairs.
    pub metadata: BTreeMap<String, String>,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    /// Page size (1..=1000; default 100).
    pub limit: u32,
}

/// Input to an interactive terminal.
#[derive(Debug, Clone)]
pub enum PtyInput {
    /// Keystrokes.
    Data(Vec<u8>),
    /// The window changed size.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
}

/// What [`Manager::pty_open`] asks for.
#[derive(Debug, Clone, Default)]
pub struct PtyRequest {
    /// Command (default: /bin/bash, or /bin/sh when bash is absent).
    pub cmd: Vec<String>,
    /// Initial size.
    pub rows: u16,
    /// Initial size.
    pub cols: u16,
    /// Extra environment (TERM defaults to xterm-256color).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<String>,
}

/// An interactive terminal: bytes out, bytes (and resizes) in, and the exit.
#[derive(Debug)]
pub struct PtySession {
    /// The process's id (as in /processes).
    pub process_id: String,
    /// Terminal output; ends when the process exits.
    pub output: mpsc::Receiver<Vec<u8>>,
    /// Terminal input; dropping it hangs the terminal up.
    pub input: mpsc::Sender<PtyInput>,
    /// The result once the process has exited.
    pub exit: oneshot::Receiver<RunResult>,
}

/// The daemon's sandboxes.
#[derive(Debug)]
pub struct Manager {
    cfg: ManagerConfig,
}

impl Manager {
    /// Opens (or creates) the state in `cfg.data_dir`, repairs what a previous daemon
    /// left mid-transition, re-attaches live sandboxes and starts the background tasks
    /// (TTL, health check, warm pool).
    pub async fn start(cfg: ManagerConfig) -> Result<Arc<Manager>, SandboxError> {
        Ok(Arc::new(Manager { cfg }))
    }

    /// Graceful shutdown: stops the background tasks, removes the warm pool and (unless
    /// configured to keep them) every sandbox.
    pub async fn shutdown(&self) {}

    /// Creates a sandbox for `tenant` within `quota`.
    pub async fn create(
        &self,
        tenant: &str,
        quota: &TenantQuota,
        req: SandboxCreateRequest,
    ) -> Result<Sandbox, SandboxError> {
        let _ = (tenant, quota, req, &self.cfg);
        Err(unimplemented_yet())
    }

    /// One sandbox.
    pub fn get(&self, tenant: &str, id: &str) -> Result<Sandbox, SandboxError> {
        let _ = (tenant, id);
        Err(unimplemented_yet())
    }

    /// A page of the tenant's sandboxes, oldest first.
    pub fn list(&self, tenant: &str, q: &ListQuery) -> Result<SandboxList, SandboxError> {
        let _ = (tenant, q);
        Err(unimplemented_yet())
    }

    /// Kills and removes a sandbox.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), SandboxError> {
        let _ = (tenant, id);
        Err(unimplemented_yet())
    }

    /// Sets the time to live to `timeout_s` from now.
    pub async fn set_timeout(
        &self,
        tenant: &str,
        id: &str,
        timeout_s: u64,
    ) -> Result<Sandbox, SandboxError> {
        let _ = (tenant, id, timeout_s);
        Err(unimplemented_yet())
    }

    /// Freezes every process of the sandbox (no CPU burnt; memory and processes kept).
    pub async fn pause(&self, tenant: &str, id: &str) -> Result<Sandbox, SandboxError> {
        let _ = (tenant, id);
        Err(unimplemented_yet())
    }

    /// Thaws a paused sandbox.
    pub async fn resume(&self, tenant: &str, id: &str) -> Result<Sandbox, SandboxError> {
        let _ = (tenant, id);
        Err(unimplemented_yet())
    }

    /// Runs a command to completion and returns its collected result.
    pub async fn exec(
        &self,
        tenant: &str,
        id: &str,
        req: ExecRequest,
    ) -> Result<RunResult, SandboxError> {
        let _ = (tenant, id, req);
        Err(unimplemented_yet())
    }

    /// Runs a command and streams its output as it happens; the last event is `exit`
    /// (or `error`). Fails before any event when the command cannot be started.
    pub async fn exec_stream(
        &self,
        tenant: &str,
        id: &str,
        req: ExecRequest,
    ) -> Result<mpsc::Receiver<ExecEvent>, SandboxError> {
        let _ = (tenant, id, req);
        Err(unimplemented_yet())
    }

    /// Starts a background process.
    pub async fn exec_background(
        &self,
        tenant: &str,
        id: &str,
        req: ExecRequest,
    ) -> Result<ProcessInfo, SandboxError> {
        let _ = (tenant, id, req);
        Err(unimplemented_yet())
    }

    /// Background processes of a sandbox.
    pub fn processes(&self, tenant: &str, id: &str) -> Result<ProcessList, SandboxError> {
        let _ = (tenant, id);
        Err(unimplemented_yet())
    }

    /// One background process.
    pub fn process(&self, tenant: &str, id: &str, pid: &str) -> Result<ProcessInfo, SandboxError> {
        let _ = (tenant, id, pid);
        Err(unimplemented_yet())
    }

    /// What a background process has written (last 1 MiB per stream).
    pub fn process_output(
        &self,
        tenant: &str,
        id: &str,
        pid: &str,
    ) -> Result<ProcessOutput, SandboxError> {
        let _ = (tenant, id, pid);
        Err(unimplemented_yet())
    }

    /// Writes to a background process's stdin (and optionally closes it).
    pub async fn process_stdin(
        &self,
        tenant: &str,
        id: &str,
        pid: &str,
        req: StdinWriteRequest,
    ) -> Result<(), SandboxError> {
        let _ = (tenant, id, pid, req);
        Err(unimplemented_yet())
    }

    /// Sends a signal (number) to a process's process group.
    pub async fn process_signal(
        &self,
        tenant: &str,
        id: &str,
        pid: &str,
        signal: i32,
    ) -> Result<(), SandboxError> {
        let _ = (tenant, id, pid, signal);
        Err(unimplemented_yet())
    }

    /// Starts an interactive terminal.
    pub async fn pty_open(
        &self,
        tenant: &str,
        id: &str,
        req: PtyRequest,
    ) -> Result<PtySession, SandboxError> {
        let _ = (tenant, id, req);
        Err(unimplemented_yet())
    }

    /// Opens a file inside the sandbox for reading: the file and its size. The caller
    /// streams it (never whole in memory).
    pub async fn read_file(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
    ) -> Result<(tokio::fs::File, u64), SandboxError> {
        let _ = (tenant, id, path);
        Err(unimplemented_yet())
    }

    /// Writes `body` to a file inside the sandbox (created or truncated, owned by the
    /// sandbox user), streaming; returns the bytes written. A full writable layer is
    /// NoSpace, and the partial file is removed.
    pub async fn write_file<R>(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
        body: R,
    ) -> Result<u64, SandboxError>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        let _ = (tenant, id, path, body);
        Err(unimplemented_yet())
    }

    /// Lists a directory (symlinks not followed).
    pub async fn list_files(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
    ) -> Result<FileList, SandboxError> {
        let _ = (tenant, id, path);
        Err(unimplemented_yet())
    }

    /// Stats one path (not following a final symlink).
    pub async fn stat_file(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
    ) -> Result<FileEntry, SandboxError> {
        let _ = (tenant, id, path);
        Err(unimplemented_yet())
    }

    /// Creates a directory (with parents when asked).
    pub async fn mkdir(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
        parents: bool,
    ) -> Result<(), SandboxError> {
        let _ = (tenant, id, path, parents);
        Err(unimplemented_yet())
    }

    /// Removes a file, or a directory (recursively when asked).
    pub async fn remove_file(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<(), SandboxError> {
        let _ = (tenant, id, path, recursive);
        Err(unimplemented_yet())
    }

    /// Renames a path.
    pub async fn rename_file(
        &self,
        tenant: &str,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<(), SandboxError> {
        let _ = (tenant, id, from, to);
        Err(unimplemented_yet())
    }

    /// Watches a directory; events until the receiver is dropped or the sandbox ends.
    pub async fn watch(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<mpsc::Receiver<WatchEvent>, SandboxError> {
        let _ = (tenant, id, path, recursive);
        Err(unimplemented_yet())
    }

    /// Snapshots the sandbox's writable layer (content-addressed; the sandbox is paused
    /// meanwhile and resumed after).
    pub async fn snapshot(&self, tenant: &str, id: &str) -> Result<Snapshot, SandboxError> {
        let _ = (tenant, id);
        Err(unimplemented_yet())
    }

    /// The tenant's snapshots.
    pub fn snapshots(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<SnapshotList, SandboxError> {
        let _ = (tenant, cursor, limit);
        Err(unimplemented_yet())
    }

    /// One snapshot.
    pub fn get_snapshot(&self, tenant: &str, snap: &str) -> Result<Snapshot, SandboxError> {
        let _ = (tenant, snap);
        Err(unimplemented_yet())
    }

    /// Deletes a snapshot (its files go when no sandbox uses them).
    pub async fn delete_snapshot(&self, tenant: &str, snap: &str) -> Result<(), SandboxError> {
        let _ = (tenant, snap);
        Err(unimplemented_yet())
    }

    /// Appends the Manager's Prometheus metrics (sandboxes by state, pool depth,
    /// create/exec latency histograms, errors by kind) to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = out;
    }
}

fn unimplemented_yet() -> SandboxError {
    SandboxError::Unavailable("this operation is being built".into())
}

//! The Manager: every sandbox the daemon runs, their state in SQLite, their lifecycle
//! (create, TTL, health, pause, snapshot, delete) and the operations on them (exec,
//! files). HTTP handlers parse requests and call these methods; nothing else does the
//! work. Each method takes the caller's tenant: another tenant's sandbox is NotFound.

mod clock;
mod conn;
mod e2b_support;
pub use e2b_support::{LiveOutput, LiveProcess};
mod error;
mod exec;
mod files;
mod lifecycle;
mod live;
mod metrics;
mod network;
mod ports;
mod procs;
mod pty;
mod secrets;
mod snapshot;
mod spawn;
mod store;
mod template_builds;
mod templates;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use corral_isolate::Layer;
use corral_types::api::{
    ExecEvent, ExecRequest, FileEntry, FileList, ProcessInfo, ProcessList, ProcessOutput, Sandbox,
    SandboxCreateRequest, SandboxList, SandboxState, Snapshot, SnapshotList, StdinWriteRequest,
    TenantQuota, WatchEvent,
};
use corral_types::RunResult;
pub use error::SandboxError;
pub use network::NetSettings;
pub use ports::PortError;
pub use spawn::spawn_main;
pub use template_builds::TemplateSettings;
pub use templates::{remove_template, template_users};
use tokio::sync::{mpsc, oneshot, Notify};

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
    /// Sandbox networks (mode `open`): address pool, deny ranges, pre-built count.
    pub network: NetSettings,
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
    store: store::Store,
    /// Tenants' live sandboxes by id.
    live: RwLock<HashMap<String, Arc<live::Live>>>,
    /// Warm sandboxes of the `host` template, ready to hand out.
    pool: Mutex<Vec<Arc<live::Live>>>,
    /// Quota held by creates in flight, per tenant: (sandboxes, memory bytes).
    reserved: Mutex<HashMap<String, (u64, u64)>>,
    metrics: metrics::Metrics,
    shutting_down: AtomicBool,
    wake_pool: Notify,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Shared by creates from resolving their template to their row; exclusive while a
    /// template is removed (see templates.rs).
    template_lock: tokio::sync::RwLock<()>,
    /// corral-net's pool, set once after recovery; Err: networking is off (why).
    net: std::sync::OnceLock<Result<Arc<corral_net::NetPool>, String>>,
    /// The egress proxy and resolver of mode `allow`, set once at start (unset: the
    /// proxy could not start; mode allow is refused).
    egress: std::sync::OnceLock<Arc<corral_net::EgressProxy>>,
    /// The tenants' secrets (DIR/secrets.db, mode 0600).
    secrets: Arc<corral_net::SecretStore>,
    /// The credential broker, set once the egress proxy runs (unset: sandboxes with
    /// secrets are refused).
    broker: std::sync::OnceLock<Arc<corral_net::Broker>>,
    /// Template build jobs (template_builds.rs).
    template_builds: template_builds::Builds,
    me: Weak<Manager>,
}

impl Manager {
    /// Opens (or creates) the state in `cfg.data_dir`, repairs what a previous daemon
    /// left mid-transition, re-attaches live sandboxes and starts the background tasks
    /// (TTL, health check, warm pool).
    pub async fn start(cfg: ManagerConfig) -> Result<Arc<Manager>, SandboxError> {
        lifecycle::prepare_dirs(&cfg)?;
        // One control socket per sandbox plus pipes per running command: the usual
        // soft limit of 1024 descriptors would cap a host at a few hundred sandboxes.
        raise_nofile();
        // Sandbox inits outlive the short-lived spawner that forks them; as a child
        // subreaper the daemon becomes their parent and reaps them.
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| {
            SandboxError::Internal(format!("becoming a child subreaper failed: {e}"))
        })?;
        let store = store::Store::open(&cfg.data_dir.join("state.db"))?;
        let secrets = Arc::new(corral_net::SecretStore::open(&cfg.data_dir)?);
        let m = Arc::new_cyclic(|me| Manager {
            cfg,
            store,
            live: RwLock::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            reserved: Mutex::new(HashMap::new()),
            metrics: metrics::Metrics::default(),
            shutting_down: AtomicBool::new(false),
            wake_pool: Notify::new(),
            tasks: Mutex::new(Vec::new()),
            template_lock: tokio::sync::RwLock::new(()),
            net: std::sync::OnceLock::new(),
            egress: std::sync::OnceLock::new(),
            secrets,
            broker: std::sync::OnceLock::new(),
            template_builds: Default::default(),
            me: me.clone(),
        });
        m.clean_templates().await?;
        m.recover().await?;
        m.start_network().await;
        m.start_tasks();
        Ok(m)
    }

    /// Graceful shutdown: stops the background tasks, removes the warm pool and (unless
    /// configured to keep them) every sandbox.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        // Template builds end first: their RUN sandboxes clean up after themselves.
        self.cancel_template_builds().await;
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        // The TTL and health loops hold nothing; the pool loop may be in the middle of a
        // build, which must finish (or fail and clean up) rather than be cut off.
        self.wake_pool.notify_one();
        let pool_task = tasks
            .len()
            .checked_sub(1)
            .filter(|_| self.cfg.pool_size > 0);
        for (i, h) in tasks.into_iter().enumerate() {
            if Some(i) == pool_task {
                let _ = h.await;
            } else {
                h.abort();
            }
        }
        let pooled: Vec<_> = self
            .pool
            .lock()
            .map(|mut p| p.drain(..).collect())
            .unwrap_or_default();
        let mut all: Vec<Arc<live::Live>> = pooled;
        if !self.cfg.keep_sandboxes_on_shutdown {
            all.extend(self.live_list());
        }
        let jobs = all
            .into_iter()
            .map(|l| async move { self.teardown(&l, "daemon_shutdown").await });
        futures_join_all(jobs).await;
        self.net_shutdown().await;
        lifecycle::remove_cgroup_parent(&self.cfg);
    }

    fn live_list(&self) -> Vec<Arc<live::Live>> {
        self.live
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A tenant's live sandbox, or NotFound (also for another tenant's).
    fn find(&self, tenant: &str, id: &str) -> Result<Arc<live::Live>, SandboxError> {
        let l = self.live.read().ok().and_then(|m| m.get(id).cloned());
        match l {
            Some(l) if l.row().tenant.as_deref() == Some(tenant) => Ok(l),
            _ => match self.store.get(id)? {
                Some(r) if r.tenant.as_deref() == Some(tenant) => Err(SandboxError::Conflict(
                    format!("sandbox {id} is {}; create a new one", r.state.as_str()),
                )),
                _ => Err(not_found(id)),
            },
        }
    }

    /// Creates a sandbox for `tenant` within `quota`.
    pub async fn create(
        &self,
        tenant: &str,
        quota: &TenantQuota,
        req: SandboxCreateRequest,
    ) -> Result<Sandbox, SandboxError> {
        let t0 = std::time::Instant::now();
        let Some(me) = self.me.upgrade() else {
            return Err(SandboxError::Unavailable(
                "the daemon is shutting down".into(),
            ));
        };
        let (tenant, quota) = (tenant.to_string(), quota.clone());
        // In a task of its own: a client that hangs up mid-create must not cut a build
        // off half-way (the sandbox is then simply there, listed for its tenant).
        let r = tokio::spawn(async move { me.create_inner(&tenant, &quota, req).await })
            .await
            .unwrap_or_else(|e| Err(SandboxError::Internal(format!("create task failed: {e}"))));
        self.metrics.observe_create(t0.elapsed(), &r);
        r
    }

    /// One sandbox.
    pub fn get(&self, tenant: &str, id: &str) -> Result<Sandbox, SandboxError> {
        if let Some(l) = self.live.read().ok().and_then(|m| m.get(id).cloned()) {
            let row = l.row();
            if row.tenant.as_deref() == Some(tenant) {
                return Ok(live::to_api(&row));
            }
        }
        match self.store.get(id)? {
            Some(r) if r.tenant.as_deref() == Some(tenant) && !r.pooled => Ok(live::to_api(&r)),
            _ => Err(not_found(id)),
        }
    }

    /// A page of the tenant's sandboxes, oldest first.
    pub fn list(&self, tenant: &str, q: &ListQuery) -> Result<SandboxList, SandboxError> {
        let limit = match q.limit {
            0 => corral_types::api::PAGE_DEFAULT,
            n if n > corral_types::api::PAGE_MAX => {
                return Err(SandboxError::InvalidRequest(format!(
                    "limit {n} is above the maximum of {}",
                    corral_types::api::PAGE_MAX
                )))
            }
            n => n,
        };
        let after_seq = match &q.cursor {
            None => 0,
            Some(c) => c.parse::<i64>().map_err(|_| {
                SandboxError::InvalidRequest(format!(
                    "cursor {c:?} is not one this server gave out; start without a cursor"
                ))
            })?,
        };
        for k in q.metadata.keys() {
            lifecycle::check_metadata_key(k)?;
        }
        let rows = self.store.list(&store::ListFilter {
            tenant,
            state: q.state,
            metadata: &q.metadata,
            after_seq,
            limit: limit + 1,
        })?;
        let more = rows.len() > limit as usize;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let next_cursor = if more {
            rows.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        let live = self.live.read().ok();
        Ok(SandboxList {
            sandboxes: rows
                .iter()
                .map(|r| {
                    // The in-memory row is fresher (state changes land there first).
                    let fresh = live.as_ref().and_then(|m| m.get(&r.id)).map(|l| l.row());
                    live::to_api(fresh.as_ref().unwrap_or(r))
                })
                .collect(),
            next_cursor,
        })
    }

    /// Kills and removes a sandbox.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), SandboxError> {
        let l = match self.find(tenant, id) {
            Ok(l) => l,
            // Deleting what is already stopped is done.
            Err(SandboxError::Conflict(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        // In a task of its own, so a client hanging up cannot stop a teardown half-way.
        if let Some(me) = self.me.upgrade() {
            let _ = tokio::spawn(async move { me.teardown(&l, "deleted").await }).await;
        }
        Ok(())
    }

    /// Sets the time to live to `timeout_s` from now.
    pub async fn set_timeout(
        &self,
        tenant: &str,
        id: &str,
        timeout_s: u64,
    ) -> Result<Sandbox, SandboxError> {
        let l = self.find(tenant, id)?;
        let ttl = self.check_timeout(Some(timeout_s))?;
        let _op = l.op.lock().await;
        let expires = clock::now_ms() + ttl.as_millis() as u64;
        if l.state() == SandboxState::Running {
            l.conn
                .call(
                    corral_isolate::ctl::CtlOp::SetDeadline {
                        unix_ms: Some(expires),
                    },
                    &[],
                )
                .await?;
        }
        self.store.set_expiry(id, expires)?;
        l.update(|r| r.expires_at_ms = expires);
        Ok(live::to_api(&l.row()))
    }

    /// Freezes every process of the sandbox (no CPU burnt; memory and processes kept).
    pub async fn pause(&self, tenant: &str, id: &str) -> Result<Sandbox, SandboxError> {
        let l = self.find(tenant, id)?;
        lifecycle::pause(self, &l).await
    }

    /// Thaws a paused sandbox.
    pub async fn resume(&self, tenant: &str, id: &str) -> Result<Sandbox, SandboxError> {
        let l = self.find(tenant, id)?;
        lifecycle::resume(self, &l).await
    }

    fn remaining(&self, l: &live::Live) -> Duration {
        Duration::from_millis(l.row().expires_at_ms.saturating_sub(clock::now_ms()))
            .max(Duration::from_secs(1))
    }

    /// Runs a command to completion and returns its collected result.
    pub async fn exec(
        &self,
        tenant: &str,
        id: &str,
        req: ExecRequest,
    ) -> Result<RunResult, SandboxError> {
        let t0 = std::time::Instant::now();
        let l = self.find(tenant, id)?;
        l.ensure_running()?;
        let cmd = self.command(&l, &req)?;
        let r = exec::run_collect(&l, &cmd, req.stdin).await;
        self.metrics.observe_exec(t0.elapsed(), &r);
        r
    }

    /// Runs a command and streams its output as it happens; the last event is `exit`
    /// (or `error`). Fails before any event when the command cannot be started.
    pub async fn exec_stream(
        &self,
        tenant: &str,
        id: &str,
        req: ExecRequest,
    ) -> Result<mpsc::Receiver<ExecEvent>, SandboxError> {
        let l = self.find(tenant, id)?;
        l.ensure_running()?;
        let cmd = self.command(&l, &req)?;
        exec::run_stream(l, cmd, req.stdin).await
    }

    /// Starts a background process.
    pub async fn exec_background(
        &self,
        tenant: &str,
        id: &str,
        req: ExecRequest,
    ) -> Result<ProcessInfo, SandboxError> {
        let l = self.find(tenant, id)?;
        l.ensure_running()?;
        let mut req = req;
        req.background = true;
        let cmd = self.command(&l, &req)?;
        let exec_id = exec::run_background(l.clone(), cmd, req.stdin).await?;
        self.process(tenant, id, &procs::process_id(exec_id))
    }

    fn with_proc<T>(
        &self,
        tenant: &str,
        id: &str,
        pid: &str,
        f: impl FnOnce(&procs::Proc) -> T,
    ) -> Result<T, SandboxError> {
        let l = self.find(tenant, id)?;
        let key = procs::Procs::key(pid).ok_or_else(|| no_process(id, pid))?;
        let procs = l
            .procs
            .lock()
            .map_err(|_| SandboxError::Internal("process table lock poisoned".into()))?;
        procs
            .by_id
            .get(&key)
            .map(f)
            .ok_or_else(|| no_process(id, pid))
    }

    /// Background processes of a sandbox.
    pub fn processes(&self, tenant: &str, id: &str) -> Result<ProcessList, SandboxError> {
        let l = self.find(tenant, id)?;
        let procs = l
            .procs
            .lock()
            .map_err(|_| SandboxError::Internal("process table lock poisoned".into()))?;
        Ok(ProcessList {
            processes: procs
                .by_id
                .iter()
                .map(|(k, p)| p.info(&procs::process_id(*k)))
                .collect(),
        })
    }

    /// One background process.
    pub fn process(&self, tenant: &str, id: &str, pid: &str) -> Result<ProcessInfo, SandboxError> {
        self.with_proc(tenant, id, pid, |p| p.info(pid))
    }

    /// What a background process has written (last 1 MiB per stream).
    pub fn process_output(
        &self,
        tenant: &str,
        id: &str,
        pid: &str,
    ) -> Result<ProcessOutput, SandboxError> {
        self.with_proc(tenant, id, pid, |p| p.output())
    }

    /// Writes to a background process's stdin (and optionally closes it).
    pub async fn process_stdin(
        &self,
        tenant: &str,
        id: &str,
        pid: &str,
        req: StdinWriteRequest,
    ) -> Result<(), SandboxError> {
        self.with_proc(tenant, id, pid, |_| ())?;
        let l = self.find(tenant, id)?;
        l.ensure_running()?;
        let key = procs::Procs::key(pid).ok_or_else(|| no_process(id, pid))?;
        exec::write_stdin(&l, key, req.data.as_bytes(), req.eof).await
    }

    /// Sends a signal (number) to a process's process group.
    pub async fn process_signal(
        &self,
        tenant: &str,
        id: &str,
        pid: &str,
        signal: i32,
    ) -> Result<(), SandboxError> {
        let exited = self.with_proc(tenant, id, pid, |p| p.result.is_some())?;
        if exited {
            return Err(SandboxError::Conflict(format!(
                "process {pid} has already exited"
            )));
        }
        let l = self.find(tenant, id)?;
        l.ensure_running()?;
        let key = procs::Procs::key(pid).ok_or_else(|| no_process(id, pid))?;
        exec::signal(&l, key, signal).await
    }

    /// Starts an interactive terminal.
    pub async fn pty_open(
        &self,
        tenant: &str,
        id: &str,
        req: PtyRequest,
    ) -> Result<PtySession, SandboxError> {
        let l = self.find(tenant, id)?;
        l.ensure_running()?;
        let image = self.image_defaults(&l)?;
        pty::open(l, req, &image).await
    }

    /// Opens a file inside the sandbox for reading: the file and its size. The caller
    /// streams it (never whole in memory).
    pub async fn read_file(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
    ) -> Result<(tokio::fs::File, u64), SandboxError> {
        files::read(&*self.find(tenant, id)?, path).await
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
        files::write(&*self.find(tenant, id)?, path, body).await
    }

    /// Lists a directory (symlinks not followed).
    pub async fn list_files(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
    ) -> Result<FileList, SandboxError> {
        files::list(&*self.find(tenant, id)?, path).await
    }

    /// Stats one path (not following a final symlink).
    pub async fn stat_file(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
    ) -> Result<FileEntry, SandboxError> {
        files::stat(&*self.find(tenant, id)?, path).await
    }

    /// Creates a directory (with parents when asked).
    pub async fn mkdir(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
        parents: bool,
    ) -> Result<(), SandboxError> {
        files::mkdir(&*self.find(tenant, id)?, path, parents).await
    }

    /// Removes a file, or a directory (recursively when asked).
    pub async fn remove_file(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<(), SandboxError> {
        files::remove(&*self.find(tenant, id)?, path, recursive).await
    }

    /// Renames a path.
    pub async fn rename_file(
        &self,
        tenant: &str,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<(), SandboxError> {
        files::rename(&*self.find(tenant, id)?, from, to).await
    }

    /// Watches a directory; events until the receiver is dropped or the sandbox ends.
    pub async fn watch(
        &self,
        tenant: &str,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<mpsc::Receiver<WatchEvent>, SandboxError> {
        files::watch(&*self.find(tenant, id)?, path, recursive).await
    }

    /// Snapshots the sandbox's writable layer (content-addressed; the sandbox is paused
    /// meanwhile and resumed after).
    pub async fn snapshot(&self, tenant: &str, id: &str) -> Result<Snapshot, SandboxError> {
        let l = self.find(tenant, id)?;
        snapshot::take(self, &l).await
    }

    /// The tenant's snapshots.
    pub fn snapshots(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<SnapshotList, SandboxError> {
        snapshot::list(self, tenant, cursor, limit)
    }

    /// One snapshot.
    pub fn get_snapshot(&self, tenant: &str, snap: &str) -> Result<Snapshot, SandboxError> {
        self.store
            .get_snapshot(tenant, snap)?
            .map(|s| snapshot::to_api(&s))
            .ok_or_else(|| SandboxError::NotFound(format!("no snapshot {snap}")))
    }

    /// Deletes a snapshot (its files go when no sandbox uses them).
    pub async fn delete_snapshot(&self, tenant: &str, snap: &str) -> Result<(), SandboxError> {
        snapshot::delete(self, tenant, snap).await
    }

    /// Appends the Manager's Prometheus metrics (sandboxes by state, pool depth,
    /// create/exec latency histograms, errors by kind) to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        let mut by_state: BTreeMap<&'static str, u64> = BTreeMap::new();
        for l in self.live_list() {
            *by_state.entry(l.state().as_str()).or_default() += 1;
        }
        let pool = self.pool.lock().map(|p| p.len()).unwrap_or(0);
        self.metrics.render(out, &by_state, pool);
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (best effort).
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn not_found(id: &str) -> SandboxError {
    SandboxError::NotFound(format!("no sandbox {id}"))
}

fn no_process(id: &str, pid: &str) -> SandboxError {
    SandboxError::NotFound(format!("no process {pid} in sandbox {id}"))
}

async fn futures_join_all<F: std::future::Future<Output = ()>>(jobs: impl IntoIterator<Item = F>) {
    let mut set = Vec::new();
    for j in jobs {
        set.push(j);
    }
    // Teardowns are mostly waiting on the kernel; run them concurrently.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = set.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

//! Creating and ending sandboxes, the warm pool, TTLs, the health check, pause and
//! resume, and repairing what a previous daemon left behind.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use corral_isolate::ctl::{CtlOp, CtlReply};
use corral_isolate::{Cgroup, Layer, RealCgroupFs};
use corral_types::api::{
    NetworkMode, Resources, Sandbox, SandboxCreateRequest, SandboxState, TenantQuota,
};

use super::clock::now_ms;
use super::conn::Conn;
use super::live::{to_api, Live};
use super::spawn::{spawn, SpawnRequest};
use super::store::SandboxRow;
use super::{Manager, ManagerConfig, SandboxError};

/// Stopped sandboxes stay listable this long.
const KEEP_STOPPED_MS: u64 = 24 * 3600 * 1000;
/// How often expiries are checked.
const TTL_TICK: Duration = Duration::from_millis(250);
/// How long init gets to end everything itself before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Init's own deadline trails the daemon's expiry by this much: the daemon normally
/// ends a sandbox at expiry; init's deadline is the backstop for when no daemon runs.
pub(crate) const INIT_DEADLINE_GRACE_MS: u64 = 5_000;
/// Longest unix socket path (sun_path is 108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

pub(crate) fn prepare_dirs(cfg: &ManagerConfig) -> Result<(), SandboxError> {
    for dir in [
        cfg.data_dir.clone(),
        cfg.data_dir.join("sockets"),
        cfg.data_dir.join("snapshots"),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| {
            SandboxError::Internal(format!(
                "creating {} failed: {e}; check that the data directory is writable",
                dir.display()
            ))
        })?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    let probe = socket_path(cfg, "sb-00000000000000000000");
    if probe.as_os_str().len() > SUN_PATH_MAX {
        return Err(SandboxError::InvalidRequest(format!(
            "the data directory {} is too long a path for control sockets ({} bytes of at most {SUN_PATH_MAX}); choose a shorter --data-dir",
            cfg.data_dir.display(),
            probe.as_os_str().len()
        )));
    }
    Ok(())
}

pub(crate) fn socket_path(cfg: &ManagerConfig, id: &str) -> PathBuf {
    cfg.data_dir.join("sockets").join(format!("{id}.sock"))
}

/// Removes the daemon's own parent cgroup when nothing is left in it.
pub(crate) fn remove_cgroup_parent(cfg: &ManagerConfig) {
    if cfg.cgroup_parent.is_empty() || cfg.skip_layers.contains(&Layer::Cgroups) {
        return;
    }
    if let Ok(c) = Cgroup::<RealCgroupFs>::open_existing("", &cfg.cgroup_parent) {
        let _ = c.destroy();
    }
}

fn new_id() -> Result<String, SandboxError> {
    let mut b = [0u8; 10];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| SandboxError::Internal(format!("reading /dev/urandom failed: {e}")))?;
    Ok(format!(
        "sb-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

pub(crate) fn check_metadata_key(k: &str) -> Result<(), SandboxError> {
    let ok = !k.is_empty()
        && k.len() <= 128
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':'));
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InvalidRequest(format!(
            "metadata key {k:?} must be 1-128 characters of letters, digits and _ - . / :"
        )))
    }
}

fn parse_resources(m: &Manager, req: &SandboxCreateRequest) -> Result<Resources, SandboxError> {
    let r = &req.resources;
    let size = |v: &Option<String>, what: &str, default: u64| -> Result<u64, SandboxError> {
        match v {
            None => Ok(default),
            Some(s) => corral_types::parse_size(s)
                .map_err(|e| SandboxError::InvalidRequest(format!("resources.{what}: {e}"))),
        }
    };
    let memory_bytes = size(&r.memory, "memory", m.cfg.default_memory_bytes)?;
    let disk_bytes = size(&r.disk, "disk", m.cfg.default_disk_bytes)?;
    let cpu_millis = match &r.cpus {
        None => m.cfg.default_cpu_millis,
        Some(s) => match s.trim().parse::<f64>() {
            Ok(c) if (0.01..=1024.0).contains(&c) => (c * 1000.0).round() as u64,
            _ => {
                return Err(SandboxError::InvalidRequest(format!(
                "resources.cpus {s:?} must be a number of CPUs between 0.01 and 1024, e.g. \"0.5\""
            )))
            }
        },
    };
    let pids = r.pids.unwrap_or(m.cfg.default_pids);
    if memory_bytes < (4 << 20) {
        return Err(SandboxError::InvalidRequest(
            "resources.memory must be at least 4M".into(),
        ));
    }
    if disk_bytes < (1 << 20) {
        return Err(SandboxError::InvalidRequest(
            "resources.disk must be at least 1M".into(),
        ));
    }
    if !(2..=1 << 20).contains(&pids) {
        return Err(SandboxError::InvalidRequest(
            "resources.pids must be between 2 and 1048576".into(),
        ));
    }
    Ok(Resources {
        memory_bytes,
        cpu_millis,
        pids,
        disk_bytes,
    })
}

fn to_limits(r: &Resources) -> corral_isolate::Limits {
    corral_isolate::Limits {
        memory_bytes: r.memory_bytes,
        cpu_millis: r.cpu_millis,
        pids: r.pids,
        disk_bytes: r.disk_bytes,
        ..corral_isolate::Limits::default()
    }
}

impl Manager {
    pub(crate) fn check_timeout(&self, t: Option<u64>) -> Result<Duration, SandboxError> {
        match t {
            None => Ok(self.cfg.default_timeout),
            Some(0) => Err(SandboxError::InvalidRequest(
                "timeout_s must be at least 1".into(),
            )),
            Some(s) if Duration::from_secs(s) > self.cfg.max_timeout => {
                Err(SandboxError::InvalidRequest(format!(
                    "timeout_s {s} is above the maximum of {} s",
                    self.cfg.max_timeout.as_secs()
                )))
            }
            Some(s) => Ok(Duration::from_secs(s)),
        }
    }

    fn default_resources(&self) -> Resources {
        Resources {
            memory_bytes: self.cfg.default_memory_bytes,
            cpu_millis: self.cfg.default_cpu_millis,
            pids: self.cfg.default_pids,
            disk_bytes: self.cfg.default_disk_bytes,
        }
    }

    pub(crate) async fn create_inner(
        &self,
        tenant: &str,
        quota: &TenantQuota,
        req: SandboxCreateRequest,
    ) -> Result<Sandbox, SandboxError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(SandboxError::Unavailable(
                "the daemon is shutting down; retry against the next one".into(),
            ));
        }
        let ttl = self.check_timeout(req.timeout_s)?;
        let resources = parse_resources(self, &req)?;
        super::exec::check_env(&req.env)?;
        if req.metadata.len() > 64 {
            return Err(SandboxError::InvalidRequest(
                "at most 64 metadata entries".into(),
            ));
        }
        for (k, v) in &req.metadata {
            check_metadata_key(k)?;
            if v.len() > 1024 {
                return Err(SandboxError::InvalidRequest(format!(
                    "metadata value of {k:?} is longer than 1024 bytes"
                )));
            }
        }
        let mut req = req;
        self.secrets_for_create(tenant, &req.secrets, req.network.mode, &mut req.env)?;
        let mode = req.network.mode;
        let egress = self.egress_policy(mode, &req.network.allow)?;
        // Held until the sandbox's row exists: a template removal waits for it.
        let _template_guard = self.template_lock.read().await;
        let (template, layers, snapshot_id) =
            match (&req.template, &req.snapshot_id) {
                (Some(_), Some(_)) => return Err(SandboxError::InvalidRequest(
                    "give either template or snapshot_id, not both (a snapshot knows its template)"
                        .into(),
                )),
                (_, Some(snap)) => {
                    let s = self
                        .store
                        .get_snapshot(tenant, snap)?
                        .ok_or_else(|| SandboxError::NotFound(format!("no snapshot {snap}")))?;
                    let layer = self.cfg.data_dir.join("snapshots").join(&s.layer);
                    (s.template, vec![layer], Some(s.id))
                }
                (t, None) => {
                    let t = t.clone().unwrap_or_else(|| "host".into());
                    // `name` becomes the `name:version` it means now: a later import
                    // never changes this sandbox's files.
                    (self.pin_template(&t).await?, Vec::new(), None)
                }
            };
        // Held until the sandbox is in the live map (or the create failed): counted by
        // concurrent creates' quota checks, which need not wait for this build.
        let _reservation = self.reserve(tenant, quota, resources.memory_bytes)?;
        let now = now_ms();
        let mut row = SandboxRow {
            seq: 0,
            id: String::new(),
            tenant: Some(tenant.to_string()),
            pooled: false,
            state: SandboxState::Creating,
            template,
            snapshot_id,
            resources,
            env: req.env,
            metadata: req.metadata,
            init_pid: None,
            init_start: None,
            created_at_ms: now,
            expires_at_ms: now + ttl.as_millis() as u64,
            stopped_at_ms: None,
            stop_reason: None,
            net_slot: None,
            net_allow: egress.as_ref().map(|p| p.allow_text()),
        };
        let networked = mode != NetworkMode::None;
        let pooled = if !networked
            && row.template == "host"
            && layers.is_empty()
            && row.resources.disk_bytes == self.cfg.default_disk_bytes
        {
            self.take_pooled()
        } else {
            None
        };
        let live = match pooled {
            Some(l) => match self.assign(&l, &mut row).await {
                Ok(()) => l,
                Err(_) => {
                    let me = self.me.upgrade();
                    if let Some(me) = me {
                        tokio::spawn(async move { me.teardown(&l, "pool_failed").await });
                    }
                    self.build(row, layers).await?
                }
            },
            None => {
                if networked {
                    let slot = self.net_acquire(mode).await?;
                    row.net_slot = Some(slot);
                    if egress.is_some() {
                        self.egress_env(slot, &mut row.env)?;
                    }
                }
                let live = self.build(row, layers).await?;
                if let (Some(policy), Some(slot)) = (egress, live.row().net_slot) {
                    self.egress_register(slot, &live.id, tenant, policy);
                }
                live
            }
        };
        self.wake_pool.notify_one();
        let api = to_api(&live.row());
        if let Ok(mut m) = self.live.write() {
            m.insert(live.id.clone(), live);
        }
        Ok(api)
    }

    /// Checks the tenant's quota, counting live sandboxes and creates in flight, and
    /// reserves room for one more sandbox of `memory` bytes.
    fn reserve(
        &self,
        tenant: &str,
        q: &TenantQuota,
        memory: u64,
    ) -> Result<Reservation<'_>, SandboxError> {
        let mut reserved = self
            .reserved
            .lock()
            .map_err(|_| SandboxError::Internal("quota lock poisoned".into()))?;
        let (pending_n, pending_mem) = reserved.get(tenant).copied().unwrap_or((0, 0));
        let (n, mem) = self
            .live_list()
            .iter()
            .map(|l| l.row())
            .filter(|r| r.tenant.as_deref() == Some(tenant))
            .fold((pending_n, pending_mem), |(n, m), r| {
                (n + 1, m + r.resources.memory_bytes)
            });
        if let Some(max) = q.max_sandboxes {
            if n + 1 > max {
                return Err(SandboxError::QuotaExceeded(format!(
                    "tenant {tenant} already has {n} sandboxes, its quota is {max}; delete one first"
                )));
            }
        }
        if let Some(max) = q.max_memory_bytes {
            if mem + memory > max {
                return Err(SandboxError::QuotaExceeded(format!(
                    "tenant {tenant} would use {} bytes of memory, its quota is {max}; delete a sandbox or ask for less",
                    mem + memory
                )));
            }
        }
        let e = reserved.entry(tenant.to_string()).or_insert((0, 0));
        e.0 += 1;
        e.1 += memory;
        Ok(Reservation {
            m: self,
            tenant: tenant.to_string(),
            memory,
        })
    }

    fn take_pooled(&self) -> Option<Arc<Live>> {
        let mut pool = self.pool.lock().ok()?;
        while let Some(l) = pool.pop() {
            if !l.conn.is_closed() && !l.stopping.load(Ordering::Acquire) {
                return Some(l);
            }
        }
        None
    }

    /// Hands a pooled sandbox to the request: limits, deadline, owner.
    async fn assign(&self, l: &Arc<Live>, row: &mut SandboxRow) -> Result<(), SandboxError> {
        row.id = l.id.clone();
        row.seq = l.row().seq;
        row.init_pid = l.row().init_pid;
        row.init_start = l.row().init_start;
        row.state = SandboxState::Running;
        if row.resources != self.default_resources() {
            let limits = to_limits(&row.resources);
            if let Ok(g) = l.cgroup.lock() {
                if let Some(c) = g.as_ref() {
                    c.set_limits(&limits)
                        .map_err(|e| SandboxError::Internal(corral_isolate::error_chain(&e)))?;
                }
            }
        }
        l.conn
            .call(
                CtlOp::SetDeadline {
                    unix_ms: Some(row.expires_at_ms + INIT_DEADLINE_GRACE_MS),
                },
                &[],
            )
            .await?;
        self.store.assign(row)?;
        let r = row.clone();
        l.update(move |x| *x = r);
        Ok(())
    }

    /// Builds a sandbox from scratch. A failure leaves nothing: no row, no process, no
    /// cgroup, no socket.
    pub(crate) async fn build(
        &self,
        mut row: SandboxRow,
        layers: Vec<PathBuf>,
    ) -> Result<Arc<Live>, SandboxError> {
        let built = self.build_inner(&mut row, layers).await;
        if let (Err(_), Some(slot)) = (&built, row.net_slot) {
            self.net_release(slot).await;
        }
        built
    }

    async fn build_inner(
        &self,
        row: &mut SandboxRow,
        layers: Vec<PathBuf>,
    ) -> Result<Arc<Live>, SandboxError> {
        let netns = row.net_slot.map(|s| self.net_path(s)).transpose()?;
        let resolv_conf = match (row.net_slot, &row.net_allow) {
            (Some(slot), Some(_)) => Some(self.egress_resolv_conf(slot)?),
            _ => None,
        };
        let ca_dir = self.secrets_ca_dir(row.tenant.as_deref(), &row.env);
        row.id = new_id()?;
        row.seq = self.store.insert(row)?;
        let id = row.id.clone();
        let socket = socket_path(&self.cfg, &id);
        let req = SpawnRequest {
            id: id.clone(),
            template: row.template.clone(),
            layers,
            resources: row.resources.clone(),
            data_dir: self.cfg.data_dir.clone(),
            runtime_dir: self.cfg.runtime_dir.clone(),
            cgroup_parent: self.cfg.cgroup_parent.clone(),
            id_map_base: self.cfg.id_map_base,
            skip_layers: self
                .cfg
                .skip_layers
                .iter()
                .map(|l| l.name().to_string())
                .collect(),
            deadline_unix_ms: row.expires_at_ms + INIT_DEADLINE_GRACE_MS,
            socket: socket.clone(),
            daemon_pid: std::process::id(),
            netns,
            resolv_conf,
            ca_dir,
        };
        let attempt = async {
            let (pid, start) = spawn(&self.cfg.corral_exe, &req).await?;
            row.init_pid = Some(pid);
            row.init_start = Some(start);
            let conn = Conn::connect(&socket).map_err(|e| {
                SandboxError::Internal(format!("connecting to the new sandbox failed: {e}"))
            })?;
            match conn.call(CtlOp::Ping, &[]).await? {
                (CtlReply::Pong, _) => {}
                (other, _) => {
                    return Err(SandboxError::Internal(format!(
                        "the new sandbox answered a ping with {other:?}"
                    )))
                }
            }
            let cgroup = self.open_cgroup(&id)?;
            self.store.set_started(&id, pid, start)?;
            row.state = SandboxState::Running;
            Ok::<_, SandboxError>(Live::new(row.clone(), conn, cgroup, socket.clone()))
        };
        match attempt.await {
            Ok(live) => {
                self.watch_death(&live);
                self.broker_register(&live.id, row.tenant.as_deref(), &row.env);
                Ok(live)
            }
            Err(e) => {
                self.cleanup(&id, row.init_pid, row.init_start).await;
                let _ = self.store.delete(&id);
                Err(e)
            }
        }
    }

    fn open_cgroup(&self, id: &str) -> Result<Option<Cgroup<RealCgroupFs>>, SandboxError> {
        if self.cfg.skip_layers.contains(&Layer::Cgroups) {
            return Ok(None);
        }
        Cgroup::<RealCgroupFs>::open_existing(&self.cfg.cgroup_parent, id)
            .map(Some)
            .map_err(|e| SandboxError::Internal(corral_isolate::error_chain(&e)))
    }

    fn watch_death(&self, live: &Arc<Live>) {
        let Some(me) = self.me.upgrade() else { return };
        let l = live.clone();
        tokio::spawn(async move {
            l.conn.closed().await;
            if !l.stopping.load(Ordering::Acquire) && !me.shutting_down.load(Ordering::Acquire) {
                // Init ends itself at its deadline (a backstop set a little after the
                // daemon's own expiry); that is an expiry, not a death.
                let reason = if now_ms() >= l.row().expires_at_ms {
                    "expired"
                } else {
                    "died"
                };
                me.teardown(&l, reason).await;
            }
        });
    }

    /// Removes what a sandbox left by name: its init (only if pid and start time still
    /// match), everything in its cgroup, the cgroup, the socket. Blocking work runs off
    /// the async threads.
    async fn cleanup(&self, id: &str, pid: Option<i32>, start: Option<u64>) {
        let parent = self.cfg.cgroup_parent.clone();
        let skip_cg = self.cfg.skip_layers.contains(&Layer::Cgroups);
        let socket = socket_path(&self.cfg, id);
        let id = id.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            if let (Some(pid), Some(start)) = (pid, start) {
                kill_and_reap(pid, start);
            }
            if !skip_cg {
                if let Ok(c) = Cgroup::<RealCgroupFs>::open_existing(&parent, &id) {
                    // Whatever is still in it (an init whose pid was never recorded).
                    c.kill_all();
                    let _ = c.destroy();
                }
            }
            let _ = std::fs::remove_file(&socket);
        })
        .await;
    }

    /// Ends a live sandbox and records why. Safe to call more than once and from
    /// several tasks: the first does the work, the others wait for it.
    pub(crate) async fn teardown(&self, l: &Arc<Live>, reason: &str) {
        let _op = l.op.lock().await;
        if l.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.store.set_state(&l.id, SandboxState::Stopping);
        l.update(|r| r.state = SandboxState::Stopping);
        // A frozen init can neither hear nor die; thaw first.
        if let Ok(g) = l.cgroup.lock() {
            if let Some(c) = g.as_ref() {
                let _ = c.thaw();
            }
        }
        if !l.conn.is_closed() {
            let ask = l.conn.call(CtlOp::Shutdown, &[]);
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, ask).await;
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, l.conn.closed()).await;
        }
        let row = l.row();
        let cgroup = l.cgroup.lock().ok().and_then(|mut g| g.take());
        let socket = l.socket.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let (Some(pid), Some(start)) = (row.init_pid, row.init_start) {
                kill_and_reap(pid, start);
            }
            if let Some(c) = cgroup {
                c.kill_all();
                let _ = c.destroy();
            }
            let _ = std::fs::remove_file(&socket);
        })
        .await;
        self.broker_unregister(&l.id);
        // Init and everything in its cgroup are gone: nothing uses the network now.
        if let Some(slot) = row.net_slot {
            self.net_release(slot).await;
        }
        if let Ok(mut m) = self.live.write() {
            m.remove(&l.id);
        }
        if let Ok(mut p) = self.pool.lock() {
            p.retain(|x| !Arc::ptr_eq(x, l));
        }
        let now = now_ms();
        if row.pooled {
            let _ = self.store.delete(&l.id);
        } else {
            let _ = self.store.set_stopped(&l.id, reason, now);
        }
        l.update(|r| {
            r.state = SandboxState::Stopped;
            r.stopped_at_ms = Some(now);
            r.stop_reason = Some(reason.to_string());
        });
        self.metrics.count_stop(reason);
    }

    /// Repairs the rows a previous daemon left: see docs/daemon.md.
    pub(crate) async fn recover(&self) -> Result<(), SandboxError> {
        let _ = self
            .store
            .prune_stopped(now_ms().saturating_sub(KEEP_STOPPED_MS));
        for row in self.store.unfinished()? {
            let alive = match (row.init_pid, row.init_start) {
                (Some(pid), Some(start)) => corral_isolate::process_start_time(pid) == Some(start),
                _ => false,
            };
            let reattach = alive
                && !row.pooled
                && matches!(row.state, SandboxState::Running | SandboxState::Paused);
            if reattach {
                let socket = socket_path(&self.cfg, &row.id);
                let conn = Conn::connect(&socket);
                let cgroup = self.open_cgroup(&row.id);
                if let (Ok(conn), Ok(cgroup)) = (conn, cgroup) {
                    // A crash during a snapshot can leave a running sandbox frozen.
                    if row.state == SandboxState::Running {
                        if let Some(c) = &cgroup {
                            let _ = c.thaw();
                        }
                    }
                    let live = Live::new(row.clone(), conn, cgroup, socket);
                    // Exits of processes started by the previous daemon are not waited
                    // for; init's queue of them is simply drained by the reader.
                    live.next_exec.store(1 << 32, Ordering::Relaxed);
                    self.watch_death(&live);
                    if let Ok(mut m) = self.live.write() {
                        m.insert(row.id.clone(), live);
                    }
                    continue;
                }
            }
            self.cleanup(&row.id, row.init_pid, row.init_start).await;
            if row.pooled || row.state == SandboxState::Creating {
                let _ = self.store.delete(&row.id);
            } else {
                let reason = if alive { "daemon_restart" } else { "died" };
                let _ = self.store.set_stopped(&row.id, reason, now_ms());
            }
        }
        // Half-copied snapshots of a daemon that died mid-snapshot, and layers whose
        // record was never written (or whose last record was deleted).
        let layers = self.store.snapshot_layers()?;
        if let Ok(rd) = std::fs::read_dir(self.cfg.data_dir.join("snapshots")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") || !layers.contains(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        // Sockets no row accounts for (a create whose row was never written).
        let known: std::collections::HashSet<String> = self
            .live_list()
            .iter()
            .map(|l| format!("{}.sock", l.id))
            .collect();
        if let Ok(rd) = std::fs::read_dir(self.cfg.data_dir.join("sockets")) {
            for e in rd.flatten() {
                if !known.contains(&*e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn start_tasks(&self) {
        let Some(me) = self.me.upgrade() else { return };
        let mut tasks = Vec::new();
        let m = me.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(TTL_TICK).await;
                let now = now_ms();
                for l in m.live_list() {
                    if l.row().expires_at_ms <= now && !l.stopping.load(Ordering::Acquire) {
                        let m2 = m.clone();
                        tokio::spawn(async move { m2.teardown(&l, "expired").await });
                    }
                }
            }
        }));
        let m = me.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(m.cfg.health_interval).await;
                m.health_check().await;
            }
        }));
        if self.cfg.pool_size > 0 {
            let m = me.clone();
            tasks.push(tokio::spawn(async move { m.pool_loop().await }));
        }
        if let Ok(mut t) = self.tasks.lock() {
            t.extend(tasks);
        }
    }

    async fn health_check(self: &Arc<Self>) {
        let mut all = self.live_list();
        if let Ok(p) = self.pool.lock() {
            all.extend(p.iter().cloned());
        }
        for l in all {
            let row = l.row();
            let alive = match (row.init_pid, row.init_start) {
                (Some(pid), Some(start)) => corral_isolate::process_start_time(pid) == Some(start),
                _ => false,
            };
            if (!alive || l.conn.is_closed()) && !l.stopping.load(Ordering::Acquire) {
                let m = self.clone();
                tokio::spawn(async move { m.teardown(&l, "died").await });
            }
        }
        let _ = self
            .store
            .prune_stopped(now_ms().saturating_sub(KEEP_STOPPED_MS));
    }

    async fn pool_loop(self: Arc<Self>) {
        loop {
            if self.shutting_down.load(Ordering::Acquire) {
                return;
            }
            let depth = self.pool.lock().map(|p| p.len()).unwrap_or(usize::MAX);
            if depth >= self.cfg.pool_size {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.wake_pool.notified()).await;
                continue;
            }
            let now = now_ms();
            let row = SandboxRow {
                seq: 0,
                id: String::new(),
                tenant: None,
                pooled: true,
                state: SandboxState::Creating,
                template: "host".into(),
                snapshot_id: None,
                resources: self.default_resources(),
                env: Default::default(),
                metadata: Default::default(),
                init_pid: None,
                init_start: None,
                created_at_ms: now,
                expires_at_ms: now + self.cfg.max_timeout.as_millis() as u64,
                stopped_at_ms: None,
                stop_reason: None,
                net_slot: None,
                net_allow: None,
            };
            match self.build(row, Vec::new()).await {
                Ok(l) if self.shutting_down.load(Ordering::Acquire) => {
                    self.teardown(&l, "daemon_shutdown").await;
                    return;
                }
                Ok(l) => {
                    if let Ok(mut p) = self.pool.lock() {
                        p.push(l);
                    }
                }
                Err(e) => {
                    eprintln!(
                        "corral: warning: building a warm sandbox failed: {e}; retrying in 5 s"
                    );
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }
}

/// Room in a tenant's quota held for a create in flight; released on drop.
pub(crate) struct Reservation<'a> {
    m: &'a Manager,
    tenant: String,
    memory: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.m.reserved.lock() {
            if let Some(e) = r.get_mut(&self.tenant) {
                e.0 = e.0.saturating_sub(1);
                e.1 = e.1.saturating_sub(self.memory);
                if e.0 == 0 {
                    r.remove(&self.tenant);
                }
            }
        }
    }
}

/// SIGKILLs `pid` if it is still the process that started at `start`, then reaps it
/// if it is the daemon's child (as a subreaper, orphaned inits are).
fn kill_and_reap(pid: i32, start: u64) {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag};
    use nix::unistd::Pid;
    let p = Pid::from_raw(pid);
    if corral_isolate::process_start_time(pid) == Some(start) {
        let _ = kill(p, Signal::SIGKILL);
    }
    // Init is usually gone within a millisecond of the kill (or of its own exit after
    // `shutdown`); poll from 100 us, doubling up to 10 ms, for at most ~2 s.
    let mut step = Duration::from_micros(100);
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                std::thread::sleep(step);
                step = (step * 2).min(Duration::from_millis(10));
            }
            // Reaped, or not our child (the host's init reaps it).
            _ => return,
        }
    }
}

pub(crate) async fn pause(m: &Manager, l: &Arc<Live>) -> Result<Sandbox, SandboxError> {
    let _op = l.op.lock().await;
    match l.state() {
        SandboxState::Paused => return Ok(to_api(&l.row())),
        SandboxState::Running => {}
        other => {
            return Err(SandboxError::Conflict(format!(
                "sandbox {} is {}; only a running sandbox can be paused",
                l.id,
                other.as_str()
            )))
        }
    }
    freeze(l, true).await?;
    m.store.set_state(&l.id, SandboxState::Paused)?;
    l.update(|r| r.state = SandboxState::Paused);
    Ok(to_api(&l.row()))
}

pub(crate) async fn resume(m: &Manager, l: &Arc<Live>) -> Result<Sandbox, SandboxError> {
    let _op = l.op.lock().await;
    match l.state() {
        SandboxState::Running => return Ok(to_api(&l.row())),
        SandboxState::Paused => {}
        other => {
            return Err(SandboxError::Conflict(format!(
                "sandbox {} is {}; only a paused sandbox can be resumed",
                l.id,
                other.as_str()
            )))
        }
    }
    freeze(l, false).await?;
    m.store.set_state(&l.id, SandboxState::Running)?;
    l.update(|r| r.state = SandboxState::Running);
    // The deadline may have been extended while init was frozen.
    let expires = l.row().expires_at_ms;
    l.conn
        .call(
            CtlOp::SetDeadline {
                unix_ms: Some(expires),
            },
            &[],
        )
        .await?;
    Ok(to_api(&l.row()))
}

/// Freezes (true) or thaws the sandbox's cgroup.
pub(crate) async fn freeze(l: &Arc<Live>, on: bool) -> Result<(), SandboxError> {
    let l2 = l.clone();
    tokio::task::spawn_blocking(move || {
        let g = l2
            .cgroup
            .lock()
            .map_err(|_| SandboxError::Internal("cgroup lock poisoned".into()))?;
        let Some(c) = g.as_ref() else {
            return Err(SandboxError::Conflict(
                "pausing needs the cgroup layer, which this daemon runs without".into(),
            ));
        };
        let r = if on { c.freeze() } else { c.thaw() };
        r.map_err(|e| SandboxError::Internal(corral_isolate::error_chain(&e)))
    })
    .await
    .map_err(|e| SandboxError::Internal(format!("freezer task failed: {e}")))?
}

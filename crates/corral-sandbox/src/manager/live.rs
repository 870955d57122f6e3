//! A sandbox the daemon holds: its row, its control connection, its cgroup and its
//! background processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use corral_isolate::{Cgroup, CgroupStats, RealCgroupFs};
use corral_types::api::{Sandbox, SandboxState};

use super::clock::rfc3339;
use super::conn::Conn;
use super::procs::Procs;
use super::store::SandboxRow;
use super::SandboxError;

/// One live sandbox.
#[derive(Debug)]
pub(crate) struct Live {
    pub id: String,
    pub row: Mutex<SandboxRow>,
    pub conn: Arc<Conn>,
    /// None when the operator skipped the cgroup layer.
    pub cgroup: Mutex<Option<Cgroup<RealCgroupFs>>>,
    pub socket: PathBuf,
    pub next_exec: AtomicU64,
    pub procs: Mutex<Procs>,
    /// Serializes lifecycle transitions (pause, resume, snapshot, delete).
    pub op: tokio::sync::Mutex<()>,
    /// Set once teardown has begun: the death watcher then stays out of the way.
    pub stopping: AtomicBool,
}

impl Live {
    pub(crate) fn new(
        row: SandboxRow,
        conn: Arc<Conn>,
        cgroup: Option<Cgroup<RealCgroupFs>>,
        socket: PathBuf,
    ) -> Arc<Live> {
        Arc::new(Live {
            id: row.id.clone(),
            row: Mutex::new(row),
            conn,
            cgroup: Mutex::new(cgroup),
            socket,
            next_exec: AtomicU64::new(1),
            procs: Mutex::new(Procs::default()),
            op: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
        })
    }

    /// A copy of the row.
    pub(crate) fn row(&self) -> SandboxRow {
        match self.row.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Changes the in-memory row.
    pub(crate) fn update(&self, f: impl FnOnce(&mut SandboxRow)) {
        match self.row.lock() {
            Ok(mut r) => f(&mut r),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    pub(crate) fn state(&self) -> SandboxState {
        self.row().state
    }

    /// Fails unless the sandbox can run things now.
    pub(crate) fn ensure_running(&self) -> Result<(), SandboxError> {
        if self.stopping.load(Ordering::Acquire) || self.conn.is_closed() {
            return Err(SandboxError::Conflict(format!(
                "sandbox {} is stopping; create a new one",
                self.id
            )));
        }
        match self.state() {
            SandboxState::Running => Ok(()),
            SandboxState::Paused => Err(SandboxError::Conflict(format!(
                "sandbox {} is paused; resume it first (POST /v1/sandboxes/{}/resume)",
                self.id, self.id
            ))),
            other => Err(SandboxError::Conflict(format!(
                "sandbox {} is {}; it cannot run anything",
                self.id,
                other.as_str()
            ))),
        }
    }

    /// The next process id for the ctl protocol.
    pub(crate) fn exec_id(&self) -> u64 {
        self.next_exec.fetch_add(1, Ordering::Relaxed)
    }

    /// Current cgroup figures (zeroes without cgroups).
    pub(crate) fn stats(&self) -> CgroupStats {
        match self.cgroup.lock() {
            Ok(g) => g.as_ref().map(|c| c.stats()).unwrap_or_default(),
            Err(_) => CgroupStats::default(),
        }
    }
}

/// A row as the API shows it.
pub(crate) fn to_api(row: &SandboxRow) -> Sandbox {
    Sandbox {
        id: row.id.clone(),
        state: row.state,
        template: row.template.clone(),
        snapshot_id: row.snapshot_id.clone(),
        tenant: row.tenant.clone().unwrap_or_default(),
        resources: row.resources.clone(),
        network: match (row.net_slot, &row.net_allow) {
            (Some(_), Some(_)) => corral_types::api::NetworkMode::Allow,
            (Some(_), None) => corral_types::api::NetworkMode::Open,
            _ => corral_types::api::NetworkMode::None,
        },
        network_allow: row
            .net_allow
            .as_deref()
            .map(|a| a.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        metadata: row.metadata.clone(),
        created_at: rfc3339(row.created_at_ms),
        expires_at: rfc3339(row.expires_at_ms),
        stopped_at: row.stopped_at_ms.map(rfc3339),
        stop_reason: row.stop_reason.clone(),
    }
}

/// Environment defaults for a command, under the sandbox's env and the exec's own.
pub(crate) fn command_env(
    user: corral_isolate::SandboxUser,
    sandbox_env: &BTreeMap<String, String>,
    exec_env: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let path = match user {
        corral_isolate::SandboxUser::Root => {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        }
        corral_isolate::SandboxUser::Sandbox => "/usr/local/bin:/usr/bin:/bin",
    };
    let mut env: BTreeMap<String, String> = [
        ("PATH", path),
        ("HOME", user.home()),
        ("USER", user.name()),
        ("LOGNAME", user.name()),
        ("SHELL", "/bin/sh"),
        ("LANG", "C.UTF-8"),
        ("HOSTNAME", "corral"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(sandbox_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(exec_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.into_iter().collect()
}

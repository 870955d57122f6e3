//! Building a sandbox happens in a separate, single-threaded process (`corral __spawn`,
//! see docs/daemon.md): corral_isolate forks and must not be called from the daemon's
//! threads. The daemon writes a [`SpawnRequest`] to its stdin and reads a
//! [`SpawnResponse`] from its stdout; the spawner exits as soon as the sandbox's init
//! is serving its control socket.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use corral_isolate::{Layer, Limits, SessionSpec};
use corral_types::api::Resources;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::SandboxError;
use crate::resolve_template;

/// What to build.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpawnRequest {
    pub id: String,
    pub template: String,
    /// Snapshot layers above the template, topmost first.
    pub layers: Vec<PathBuf>,
    pub resources: Resources,
    pub data_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub cgroup_parent: String,
    pub id_map_base: u32,
    pub skip_layers: Vec<String>,
    pub deadline_unix_ms: u64,
    /// Where init's control socket is bound.
    pub socket: PathBuf,
    /// The daemon's pid: the spawner dies with it (and checks it is still there).
    pub daemon_pid: u32,
    /// The network namespace to join (mode `open`); None: loopback only.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// Mode `allow`: a file bound read-only at /etc/resolv.conf (names corral's
    /// resolver).
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
    /// A sandbox with secrets: corral's CA certificate and bundle, a host directory
    /// bound read-only at corral_net::SANDBOX_CA_DIR (never the CA's key).
    #[serde(default)]
    pub ca_dir: Option<PathBuf>,
}

/// What was built.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) enum SpawnResponse {
    /// Init is serving.
    Started { init_pid: i32, start_time: u64 },
    /// Nothing was left behind; this is why.
    Failed { message: String },
}

/// Limit on how long one spawn may take before the daemon gives up and cleans up.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The daemon side: runs `corral __spawn` and returns init's pid and start time. On
/// any failure the spawner has removed what it made (it cleans up before reporting);
/// the caller still sweeps the cgroup and socket by name, which covers a spawner that
/// was killed.
pub(crate) async fn spawn(exe: &Path, req: &SpawnRequest) -> Result<(i32, u64), SandboxError> {
    let input = serde_json::to_vec(req)
        .map_err(|e| SandboxError::Internal(format!("encoding the spawn request: {e}")))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("__spawn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_clear()
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            SandboxError::Internal(format!(
                "starting the sandbox builder {} failed: {e}",
                exe.display()
            ))
        })?;
    let work = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&input).await?;
        }
        let mut out = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_end(&mut out).await?;
        }
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((out, status))
    };
    let (out, status) = match tokio::time::timeout(SPAWN_TIMEOUT, work).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return Err(SandboxError::Internal(format!(
                "talking to the sandbox builder failed: {e}"
            )))
        }
        Err(_) => {
            return Err(SandboxError::Unavailable(
                "building the sandbox took longer than 30 s; the host may be overloaded".into(),
            ))
        }
    };
    match serde_json::from_slice::<SpawnResponse>(&out) {
        Ok(SpawnResponse::Started {
            init_pid,
            start_time,
        }) => Ok((init_pid, start_time)),
        Ok(SpawnResponse::Failed { message }) => Err(SandboxError::Internal(message)),
        Err(_) => Err(SandboxError::Internal(format!(
            "the sandbox builder ended with {status} and no answer"
        ))),
    }
}

/// The spawner side (`corral __spawn`): reads a request on stdin, builds the sandbox,
/// answers on stdout. Returns the process exit status. Must run single-threaded.
pub fn spawn_main() -> i32 {
    let mut input = Vec::new();
    let resp = match std::io::stdin().read_to_end(&mut input) {
        Err(e) => SpawnResponse::Failed {
            message: format!("reading the spawn request: {e}"),
        },
        Ok(_) => match serde_json::from_slice::<SpawnRequest>(&input) {
            Err(e) => SpawnResponse::Failed {
                message: format!("malformed spawn request: {e}"),
            },
            Ok(req) => match build(&req) {
                Ok(r) => r,
                Err(message) => SpawnResponse::Failed { message },
            },
        },
    };
    let code = match resp {
        SpawnResponse::Started { .. } => 0,
        SpawnResponse::Failed { .. } => 1,
    };
    let out = serde_json::to_vec(&resp).unwrap_or_default();
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(&out);
    let _ = stdout.flush();
    code
}

fn build(req: &SpawnRequest) -> Result<SpawnResponse, String> {
    // If the daemon dies mid-build, so does the spawner, before it can leave a sandbox
    // nobody knows of: a half-built init sees its setup pipe close and exits, a built
    // one is found by the next daemon through its `creating` row and cgroup.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("setting the parent-death signal: {e}"))?;
    if nix::unistd::getppid().as_raw() as u32 != req.daemon_pid {
        return Err("the daemon that asked for this sandbox is gone".into());
    }
    let mut rootfs = resolve_template(&req.data_dir, &req.template, req.id_map_base)
        .map_err(|e| corral_isolate::error_chain(&e))?;
    // Snapshot layers go above the template's own.
    let template_layers = std::mem::take(&mut rootfs.layers);
    rootfs.layers = req.layers.clone();
    rootfs.layers.extend(template_layers);
    let mut skip_layers = Vec::new();
    for name in &req.skip_layers {
        skip_layers.push(
            Layer::from_name(name).ok_or_else(|| format!("unknown isolation layer {name:?}"))?,
        );
    }
    let mounts = req
        .resolv_conf
        .iter()
        .map(|p| corral_isolate::Bind {
            source: p.clone(),
            target: PathBuf::from("/etc/resolv.conf"),
            writable: false,
        })
        .collect();
    let mut mounts: Vec<corral_isolate::Bind> = mounts;
    mounts.extend(req.ca_dir.iter().map(|p| corral_isolate::Bind {
        source: p.clone(),
        target: PathBuf::from(corral_net::SANDBOX_CA_DIR),
        writable: false,
    }));
    let spec = SessionSpec {
        rootfs,
        mounts,
        limits: Limits {
            memory_bytes: req.resources.memory_bytes,
            cpu_millis: req.resources.cpu_millis,
            pids: req.resources.pids,
            disk_bytes: req.resources.disk_bytes,
            ..Limits::default()
        },
        hostname: "corral".into(),
        skip_layers,
        runtime_dir: req.runtime_dir.clone(),
        cgroup_parent: req.cgroup_parent.clone(),
        cgroup_name: req.id.clone(),
        id_map_base: req.id_map_base,
        deadline_unix_ms: Some(req.deadline_unix_ms),
        netns: req.netns.clone(),
    };
    let _ = std::fs::remove_file(&req.socket);
    let listener = corral_isolate::ctl::listen(&req.socket)
        .map_err(|e| format!("binding the control socket {}: {e}", req.socket.display()))?;
    let result = corral_isolate::start_session(&spec, listener);
    match result {
        Ok(s) => Ok(SpawnResponse::Started {
            init_pid: s.init_pid,
            start_time: s.start_time,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&req.socket);
            Err(corral_isolate::error_chain(&e))
        }
    }
}

//! The corral side of a one-shot run: probe the kernel, prepare everything, clone the
//! sandbox, feed it, wait for it, measure it and remove every trace of it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::cgroup::{self, Cgroup, CgroupError, CgroupLayout, CgroupStats, RealCgroupFs};
use crate::child::{ChildCtx, CommandCtx, InitMode};
use crate::prepare::{self, ensure_single_threaded};
use crate::report::Decoder;
use crate::seccomp::{SeccompError, SeccompFilters};
use crate::spec::{Layer, SandboxSpec, SandboxUser, StdinMode};
use crate::supervise::{Captured, Supervisor};

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// The timeout expired and corral killed it.
    TimedOut,
    /// corral itself received this signal (SIGINT, SIGTERM, SIGHUP) and removed the
    /// sandbox.
    Interrupted(i32),
}

/// What a finished run produced and measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// How it ended.
    pub termination: Termination,
    /// The memory limit's OOM killer killed a process in the sandbox.
    pub oom_killed: bool,
    /// Captured stdout (empty in passthrough mode).
    pub stdout: Vec<u8>,
    /// Captured stderr (empty in passthrough mode).
    pub stderr: Vec<u8>,
    /// stdout went past the output limit; the rest was dropped.
    pub stdout_truncated: bool,
    /// stderr went past the output limit; the rest was dropped.
    pub stderr_truncated: bool,
    /// Wall time from sandbox start to its end.
    pub duration: Duration,
    /// Peak memory of the sandbox's cgroup (None when cgroups were skipped).
    pub peak_memory_bytes: Option<u64>,
    /// CPU time of every process in the sandbox.
    pub cpu_time: Duration,
}

impl RunOutcome {
    /// The exit status corral reports: the command's own, 128+N for signal N, 124 on
    /// timeout, 137 when the memory limit killed it.
    pub fn exit_code(&self) -> i32 {
        match self.termination {
            Termination::Exited(c) => c,
            Termination::Signaled(s) if self.oom_killed && s == libc::SIGKILL => 137,
            Termination::Signaled(s) | Termination::Interrupted(s) => 128 + s,
            Termination::TimedOut => 124,
        }
    }

    /// The signal that ended the command, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.termination {
            Termination::Signaled(s) => Some(s),
            Termination::TimedOut => Some(libc::SIGKILL),
            Termination::Interrupted(_) | Termination::Exited(_) => None,
        }
    }
}

/// Why a run could not be carried out (corral's failure, exit status 125).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The spec is unusable.
    #[error("{0}")]
    InvalidSpec(String),
    /// The kernel lacks an isolation layer that was not explicitly skipped.
    #[error("this host lacks {what}; corral will not run without it (pass --dangerously-skip-layer {} to accept the weaker sandbox)", .layer.name())]
    LayerMissing {
        /// The missing layer.
        layer: Layer,
        /// What exactly is missing.
        what: String,
    },
    /// corral must run as root (it builds namespaces, mounts and cgroups).
    #[error("corral run must be started as root (it creates namespaces, mounts and cgroups); the command itself runs unprivileged")]
    NotRoot,
    /// cgroup setup failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// seccomp compilation failed.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The sandbox failed while setting itself up.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// A host-side operation failed.
    #[error("{what} failed")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> RunError {
    let what = what.into();
    move |e| RunError::Io {
        what,
        source: io::Error::from_raw_os_error(e as i32),
    }
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// RLIMIT_FSIZE is the writable-layer cap plus this, so inside the layer a full disk is
/// ENOSPC (the tmpfs fills first), never SIGXFSZ.
const FSIZE_MARGIN: u64 = 1 << 20;

/// Checks a sandbox path: absolute, normalized, not a kernel file system.
pub fn validate_sandbox_path(p: &Path, what: &str) -> Result<(), RunError> {
    if !p.is_absolute() {
        return Err(RunError::InvalidSpec(format!(
            "{what} {} is relative; give an absolute path inside the sandbox, e.g. /work",
            p.display()
        )));
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(RunError::InvalidSpec(format!(
            "{what} {} contains '.' or '..'; give a normalized absolute path",
            p.display()
        )));
    }
    Ok(())
}

fn validate(spec: &SandboxSpec) -> Result<(), RunError> {
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return Err(RunError::InvalidSpec(
            "no command given; put it after --, e.g. corral run -- python3 -V".into(),
        ));
    }
    if let Some(w) = &spec.workdir {
        validate_sandbox_path(w, "--workdir")?;
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(RunError::InvalidSpec(format!(
                "invalid environment variable {k:?}; use --env NAME=VALUE"
            )));
        }
    }
    crate::prepare::validate_box(&spec.view())
}

pub(crate) fn cstring(s: &str, what: &str) -> Result<CString, RunError> {
    CString::new(s).map_err(|_| RunError::InvalidSpec(format!("{what} contains a NUL byte")))
}

/// The command's environment: defaults for names the caller did not set, then theirs.
fn environment(spec: &SandboxSpec) -> Vec<(String, String)> {
    let path = match spec.user {
        SandboxUser::Root => "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        SandboxUser::Sandbox => "/usr/local/bin:/usr/bin:/bin",
    };
    let mut env: Vec<(String, String)> = [
        ("PATH", path),
        ("HOME", spec.user.home()),
        ("USER", spec.user.name()),
        ("LOGNAME", spec.user.name()),
        ("SHELL", "/bin/sh"),
        ("LANG", "C.UTF-8"),
        ("HOSTNAME", spec.hostname.as_str()),
    ]
    .into_iter()
    .filter(|(k, _)| !spec.env.iter().any(|(uk, _)| uk == k))
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(spec.env.iter().cloned());
    env
}

pub(crate) fn exec_candidates(
    program: &str,
    env: &[(String, String)],
) -> Result<Vec<CString>, RunError> {
    if program.contains('/') {
        return Ok(vec![cstring(program, "the command")?]);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/bin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| cstring(&format!("{}/{program}", d.trim_end_matches('/')), "PATH"))
        .collect()
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io_err("creating a pipe"))
}

/// Runs `spec.argv` in a fresh sandbox and removes the sandbox afterwards, whatever
/// happens. Must be called from a single-threaded process, as root.
pub fn run(spec: &SandboxSpec) -> Result<RunOutcome, RunError> {
    validate(spec)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(RunError::NotRoot);
    }
    ensure_single_threaded()?;
    let view = spec.view();
    let landlock_abi = prepare::probe(&view)?;
    // Compiled here, before clone: the sandbox's init then only reads the program
    // (writing fresh memory there would take copy-on-write faults).
    let seccomp = if spec.skips(Layer::Seccomp) {
        None
    } else {
        Some(SeccompFilters::compile(spec.user)?)
    };
    let landlock = prepare::landlock_params(&view, landlock_abi);

    let env = environment(spec);
    let envp = env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}"), "an environment variable"))
        .collect::<Result<Vec<_>, _>>()?;
    let argv = spec
        .argv
        .iter()
        .map(|a| cstring(a, "an argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let exec_candidates = exec_candidates(&spec.argv[0], &env)?;
    let workdir = spec
        .workdir
        .clone()
        .unwrap_or_else(|| PathBuf::from(spec.user.home()));
    let workdir_c = cstring(&workdir.to_string_lossy(), "--workdir")?;

    let (_, plan) = prepare::mount_plan(&view, spec.workdir.as_deref(), spec.user.id())?;

    // Made just before clone (see make_cgroup); removed after the run on every path.
    let mut cgroup: Option<Cgroup<RealCgroupFs>> = None;
    let mut layout: Option<CgroupLayout> = None;
    let mut stats = CgroupStats::default();

    let (p2c_r, p2c_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let stdin_pipe = match spec.stdin {
        StdinMode::Forward => {
            let (r, w) = pipe()?;
            // corral's end is non-blocking: the supervisor buffers what the command has
            // not read yet instead of stalling its loop.
            fcntl(&w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(io_err("making the stdin pipe non-blocking"))?;
            Some((r, w))
        }
        StdinMode::Null => None,
    };

    // corral handles these through a signalfd so it can always clean up.
    // A signal the caller ignores (nohup: SIGHUP) stays ignored: corral neither
    // catches nor forwards it.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        if !ignored(s) {
            mask.add(s);
        }
    }
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .map_err(io_err("blocking signals"))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(io_err("creating a signalfd"));
    let result = sigfd.and_then(|sigfd| {
        let mut parent_fds = vec![
            p2c_w.as_raw_fd(),
            report_r.as_raw_fd(),
            stdout_r.as_raw_fd(),
            stderr_r.as_raw_fd(),
            sigfd.as_fd().as_raw_fd(),
        ];
        if let Some((_, w)) = &stdin_pipe {
            parent_fds.push(w.as_raw_fd());
        }
        let netns = prepare::open_netns(&view)?;
        let ctx = ChildCtx {
            p2c_r: p2c_r.as_raw_fd(),
            report_w: report_w.as_raw_fd(),
            parent_fds,
            netns: netns.as_ref().map(|f| f.as_raw_fd()),
            hostname: spec.hostname.clone(),
            plan,
            nofile: spec.limits.nofile,
            // No single file may outgrow the writable layer, here or on a :rw host
            // mount; the margin lets the layer's own cap (ENOSPC) come first there.
            fsize: spec.limits.disk_bytes + FSIZE_MARGIN,
            landlock,
            writable: prepare::writable(&view, spec.workdir.as_deref()),
            seccomp,
            mode: InitMode::Run(CommandCtx {
                stdin_r: stdin_pipe.as_ref().map(|(r, _)| r.as_raw_fd()),
                stdout_w: stdout_w.as_raw_fd(),
                stderr_w: stderr_w.as_raw_fd(),
                user: spec.user,
                argv,
                envp,
                exec_candidates,
                program: spec.argv[0].clone(),
                workdir: workdir_c,
            }),
        };
        let name = cgroup::run_name(
            &spec.cgroup_parent,
            std::process::id(),
            RUN_COUNTER.fetch_add(1, Ordering::Relaxed),
        );
        if let Some((cg, l)) = prepare::make_cgroup(&view, &name, false)? {
            cgroup = Some(cg);
            layout = Some(l);
        }
        let started = Instant::now();
        let pid = prepare::clone_sandbox(ctx)?;
        // The parent keeps only its own ends.
        drop(netns);
        drop(p2c_r);
        drop(report_w);
        drop(stdout_w);
        drop(stderr_w);
        let stdin_w = stdin_pipe.map(|(r, w)| {
            drop(r);
            w
        });
        let mut sup = Supervisor {
            pid,
            spec,
            p2c_w,
            report_r,
            stdout_r: Some(stdout_r),
            stderr_r: Some(stderr_r),
            stdin_w,
            sigfd,
            started,
            decoder: Decoder::default(),
            out: Captured::default(),
        };
        let result = sup.supervise(cgroup.as_ref(), layout.as_ref());
        // The command is dead: its accounting is final. Read it while init finishes
        // exiting on the other CPU.
        stats = cgroup.as_ref().map(|c| c.stats()).unwrap_or_default();
        // Whatever happened, the sandbox is gone once init is reaped.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let init_cpu = reap(pid);
        let duration = started.elapsed();
        result.map(|(termination, out)| (termination, out, duration, init_cpu))
    });
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);

    if let Some(cg) = cgroup {
        cg.destroy()?;
    }
    let (termination, out, duration, init_cpu) = result?;
    Ok(RunOutcome {
        termination,
        oom_killed: stats.oom_kills > 0,
        stdout: out.stdout,
        stderr: out.stderr,
        stdout_truncated: out.stdout_truncated,
        stderr_truncated: out.stderr_truncated,
        duration,
        peak_memory_bytes: stats.peak_memory_bytes,
        cpu_time: stats.cpu_time.unwrap_or(init_cpu),
    })
}

/// Waits for the sandbox's init and returns its CPU time, children included: the
/// sandbox's total, since init kills and reaps every process of the sandbox before it
/// exits (on v1 this is where `cpu_time_ms` comes from; v2 has the cgroup's figure).
fn reap(pid: i32) -> Duration {
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        #[allow(unsafe_code)]
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: status and usage are valid, writable locals.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            return tv(usage.ru_utime) + tv(usage.ru_stime);
        }
        if rc < 0 && nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            return Duration::ZERO;
        }
    }
}

/// Whether this process ignores `sig` (SIG_IGN inherited from its caller).
fn ignored(sig: Signal) -> bool {
    // SAFETY: a null new action only queries; `old` is a valid, writable sigaction.
    #[allow(unsafe_code)]
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig as libc::c_int, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

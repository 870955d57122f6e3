//! The corral side of a long-lived sandbox: build it as [`crate::run`] does, but let
//! its init serve a control socket (see [`crate::ctl`]) instead of running a command,
//! and return as soon as it is ready. The sandbox outlives the caller.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::MsgFlags;
use nix::unistd::Pid;

use crate::agent::SessionCtx;
use crate::cgroup::{Cgroup, RealCgroupFs};
use crate::child::{ChildCtx, InitMode};
use crate::prepare;
use crate::report::{Decoder, Frame};
use crate::run::{io_err, pipe, RunError};
use crate::seccomp::SeccompFilters;
use crate::spec::{Layer, SandboxUser, SessionSpec};

/// A started session sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The host pid of the sandbox's init.
    pub init_pid: i32,
    /// Its start time (field 22 of /proc/PID/stat, clock ticks since boot): with the
    /// pid, it identifies the process (a reused pid has another start time).
    pub start_time: u64,
}

/// How long init may take to build the sandbox before the start is abandoned.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Same as `corral run`'s margin (see run.rs).
const FSIZE_MARGIN: u64 = 1 << 20;

/// The start time (field 22 of /proc/PID/stat) of a live process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = crate::procfs::read_small(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name start at number 3; field 3 is
    // the state. A zombie (or dead) process is not alive, whatever its start time.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn validate(spec: &SessionSpec) -> Result<(), RunError> {
    prepare::validate_box(&spec.view())?;
    let name = &spec.cgroup_name;
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(RunError::InvalidSpec(format!(
            "cgroup name {name:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// Builds a sandbox whose init serves `control` (see docs/daemon.md), and returns once
/// init is ready. The sandbox's cgroup is `cgroup_parent/cgroup_name`. On error,
/// everything made is removed again (init killed and reaped, cgroup removed). Must be
/// called from a single-threaded process, as root; init does not die with the caller
/// (it is re-parented to the nearest subreaper).
pub fn start_session(spec: &SessionSpec, control: UnixListener) -> Result<Session, RunError> {
    validate(spec)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(RunError::NotRoot);
    }
    prepare::ensure_single_threaded()?;
    let view = spec.view();
    let landlock_abi = prepare::probe(&view)?;
    // Init holds sandbox root's filter; processes of the uid 1000 user stack theirs.
    let (seccomp, sandbox_seccomp) = if spec.skips(Layer::Seccomp) {
        (None, None)
    } else {
        (
            Some(SeccompFilters::compile(SandboxUser::Root)?),
            Some(SeccompFilters::compile(SandboxUser::Sandbox)?),
        )
    };
    let (scratch, plan) = prepare::mount_plan(&view, None, 0)?;
    // The go-ahead travels over a socket, not a pipe: MSG_NOSIGNAL keeps a caller that
    // does not ignore SIGPIPE alive if init has already died.
    let (p2c_r, p2c_w) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io_err("creating the sandbox's sync socket"))?;
    let (report_r, report_w) = pipe()?;
    let netns = prepare::open_netns(&view)?;
    let ctx = ChildCtx {
        p2c_r: p2c_r.as_raw_fd(),
        report_w: report_w.as_raw_fd(),
        parent_fds: vec![p2c_w.as_raw_fd(), report_r.as_raw_fd()],
        netns: netns.as_ref().map(|f| f.as_raw_fd()),
        hostname: spec.hostname.clone(),
        plan,
        nofile: spec.limits.nofile,
        fsize: spec.limits.disk_bytes + FSIZE_MARGIN,
        landlock: prepare::landlock_params(&view, landlock_abi),
        writable: prepare::writable(&view, None),
        seccomp,
        mode: InitMode::Session(SessionCtx {
            listener: control.as_raw_fd(),
            upper: scratch.join("upper"),
            deadline_unix_ms: spec.deadline_unix_ms,
            sandbox_seccomp,
        }),
    };
    let cgroup = prepare::make_cgroup(&view, &spec.cgroup_name, true)?.map(|(cg, _)| cg);
    let pid = prepare::clone_sandbox(ctx)?;
    drop(netns);
    drop(p2c_r);
    drop(report_w);
    drop(control);
    match handshake(spec, pid, cgroup.as_ref(), &p2c_w, &report_r) {
        Ok(()) => {
            let start_time = process_start_time(pid).ok_or_else(|| {
                RunError::Setup("the sandbox's init died right after starting".into())
            });
            match start_time {
                Ok(start_time) => {
                    // The cgroup now belongs to the session: it outlives this call.
                    if let Some(cg) = cgroup {
                        cg.keep();
                    }
                    Ok(Session {
                        init_pid: pid,
                        start_time,
                    })
                }
                Err(e) => Err(abandon(pid, cgroup, e)),
            }
        }
        Err(e) => Err(abandon(pid, cgroup, e)),
    }
}

/// Kills and reaps init, removes the cgroup, returns `e`.
fn abandon(pid: i32, cgroup: Option<Cgroup<RealCgroupFs>>, e: RunError) -> RunError {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let mut status = 0;
    // SAFETY: status is a valid, writable c_int for waitpid to fill.
    #[allow(unsafe_code)]
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && nix::errno::Errno::last() == nix::errno::Errno::EINTR
    {}
    if let Some(cg) = cgroup {
        let _ = cg.destroy();
    }
    e
}

/// Places init in its cgroup, writes the id maps when asked, and waits for "ready".
fn handshake(
    spec: &SessionSpec,
    pid: i32,
    cgroup: Option<&Cgroup<RealCgroupFs>>,
    p2c_w: &OwnedFd,
    report_r: &OwnedFd,
) -> Result<(), RunError> {
    if let Some(cg) = cgroup {
        cg.add_pid(pid)?;
    }
    let go = || -> Result<(), RunError> {
        nix::sys::socket::send(p2c_w.as_raw_fd(), b"g", MsgFlags::MSG_NOSIGNAL)
            .map_err(io_err("signalling the sandbox"))?;
        Ok(())
    };
    // A failed setup has already closed its end; its report (read below) says why.
    let _ = go();
    let until = Instant::now() + SETUP_TIMEOUT;
    let mut decoder = Decoder::default();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RunError::Setup(
                "the sandbox's init did not get ready within 30 s".into(),
            ));
        }
        let mut fds = [PollFd::new(report_r.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::from(left.as_millis().min(10_000) as u16),
        ) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(io_err("waiting for the sandbox (poll)")(e)),
        }
        let mut buf = [0u8; 4096];
        let n = match nix::unistd::read(report_r, &mut buf) {
            Ok(0) => {
                return Err(RunError::Setup(
                    "the sandbox's init exited during setup without a word".into(),
                ))
            }
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(io_err("reading the sandbox's report")(e)),
        };
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next_frame() {
            match frame {
                Frame::Userns => {
                    prepare::write_maps(pid, spec.id_map_base)?;
                    go()?;
                }
                Frame::Ready => return Ok(()),
                Frame::Error(m) => return Err(RunError::Setup(m)),
                Frame::Status(_) => {
                    return Err(RunError::Setup(
                        "the sandbox's init reported a status during setup".into(),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_time_of_self() {
        let t = super::process_start_time(std::process::id() as i32);
        assert!(t.is_some());
        assert_eq!(super::process_start_time(-5), None);
    }
}

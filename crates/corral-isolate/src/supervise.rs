//! The supervisor: corral's event loop while a sandbox runs. It completes the start
//! handshake (cgroup placement, id maps), moves output, forwards stdin and signals,
//! enforces the timeout and collects the command's status from init's report frames.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use crate::cgroup::{self, Cgroup, CgroupLayout, RealCgroupFs};
use crate::child;
use crate::report::{Decoder, Frame};
use crate::run::{io_err, RunError, Termination};
use crate::spec::{OutputMode, SandboxSpec};

#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) stdout_len: u64,
    pub(crate) stderr_len: u64,
    pub(crate) stdout_truncated: bool,
    pub(crate) stderr_truncated: bool,
}

pub(crate) struct Supervisor<'a> {
    pub(crate) pid: i32,
    pub(crate) spec: &'a SandboxSpec,
    pub(crate) p2c_w: OwnedFd,
    pub(crate) report_r: OwnedFd,
    pub(crate) stdout_r: Option<OwnedFd>,
    pub(crate) stderr_r: Option<OwnedFd>,
    pub(crate) stdin_w: Option<OwnedFd>,
    pub(crate) sigfd: SignalFd,
    pub(crate) started: Instant,
    pub(crate) decoder: Decoder,
    pub(crate) out: Captured,
}

/// How long the command may take to exit after corral forwards SIGINT/SIGTERM/SIGHUP/
/// SIGQUIT to it, before the sandbox is killed. A second signal kills at once.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);

/// After corral kills a sandbox, how long it waits for the pipes to close before giving
/// up on the rest of the output (the processes are dead; this only bounds a hang).
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(5);

impl Supervisor<'_> {
    fn write_maps(&self) -> Result<(), RunError> {
        crate::prepare::write_maps(self.pid, self.spec.id_map_base)
    }

    fn go(&self) -> Result<(), RunError> {
        nix::unistd::write(&self.p2c_w, b"g").map_err(io_err("signalling the sandbox"))?;
        Ok(())
    }

    pub(crate) fn supervise(
        &mut self,
        cgroup: Option<&Cgroup<RealCgroupFs>>,
        layout: Option<&CgroupLayout>,
    ) -> Result<(Termination, Captured), RunError> {
        if let Some(cg) = cgroup {
            cg.add_pid(self.pid)?;
        }
        // A sandbox whose setup already failed (e.g. a bad --workdir) has exited and
        // closed its end: its report, read below, says why, so EPIPE is no error here.
        let _ = self.go();
        // While the sandbox finishes its setup: remove cgroups a killed corral left.
        if let Some(layout) = layout {
            cgroup::sweep_stale(&RealCgroupFs, layout, &self.spec.cgroup_parent, |pid| {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            });
        }

        let deadline = self.started + self.spec.limits.timeout;
        let mut status: Option<i32> = None;
        let mut error: Option<String> = None;
        let mut report_open = true;
        // Set when corral ends the sandbox itself (timeout, interrupt): the outcome.
        let mut forced: Option<Termination> = None;
        // Set when the sandbox is over (forced, or init has exited): from then on only
        // the output is drained, for at most DRAIN_GRACE.
        let mut drain_from: Option<Instant> = None;
        let mut forwarded: Option<(i32, Instant)> = None;
        let mut stdin_src_open = self.stdin_w.is_some();
        let mut stdin_buf: Vec<u8> = Vec::new();

        while report_open || self.stdout_r.is_some() || self.stderr_r.is_some() {
            let now = Instant::now();
            let timeout = match drain_from {
                Some(at) => {
                    let left = (at + DRAIN_GRACE).saturating_duration_since(now);
                    if left.is_zero() {
                        break;
                    }
                    left
                }
                None => {
                    if now >= deadline {
                        self.kill_sandbox();
                        forced = Some(Termination::TimedOut);
                        drain_from = Some(now);
                        continue;
                    }
                    match forwarded {
                        Some((sig, grace_end)) if now >= grace_end => {
                            self.kill_sandbox();
                            forced = Some(Termination::Interrupted(sig));
                            drain_from = Some(now);
                            continue;
                        }
                        Some((_, grace_end)) => (deadline - now).min(grace_end - now),
                        None => deadline - now,
                    }
                }
            };
            let ms = timeout.as_millis().clamp(1, 60_000) as u16;

            // Order of fds: report, stdout, stderr, signals, caller stdin, sandbox stdin.
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(6);
            let mut which: Vec<u8> = Vec::with_capacity(6);
            if report_open {
                fds.push(PollFd::new(self.report_r.as_fd(), PollFlags::POLLIN));
                which.push(b'r');
            }
            if let Some(f) = &self.stdout_r {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(b'o');
            }
            if let Some(f) = &self.stderr_r {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(b'e');
            }
            fds.push(PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN));
            which.push(b's');
            let stdin = io::stdin();
            if stdin_src_open && stdin_buf.is_empty() && drain_from.is_none() {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                which.push(b'i');
            }
            if let (Some(w), false) = (&self.stdin_w, stdin_buf.is_empty()) {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
                which.push(b'w');
            }
            let ready = match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io_err("waiting for the sandbox (poll)")(e)),
            };
            if ready == 0 {
                continue;
            }
            let revents: Vec<(u8, PollFlags)> = fds
                .iter()
                .zip(which.iter())
                .map(|(f, w)| (*w, f.revents().unwrap_or(PollFlags::empty())))
                .collect();
            drop(fds);
            for (w, ev) in revents {
                if ev.is_empty() {
                    continue;
                }
                match w {
                    b'r' => {
                        let mut buf = [0u8; 4096];
                        match nix::unistd::read(&self.report_r, &mut buf) {
                            Ok(0) => report_open = false,
                            Ok(n) => {
                                self.decoder.push(&buf[..n]);
                                while let Some(frame) = self.decoder.next_frame() {
                                    match frame {
                                        Frame::Userns => {
                                            self.write_maps()?;
                                            self.go()?;
                                        }
                                        Frame::Error(m) => {
                                            error.get_or_insert(m);
                                        }
                                        Frame::Status(s) => status = Some(s),
                                        Frame::Ready => {}
                                    }
                                }
                            }
                            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                            Err(_) => report_open = false,
                        }
                    }
                    b'o' => self.pump(true),
                    b'e' => self.pump(false),
                    b's' => {
                        if let Ok(Some(info)) = self.sigfd.read_signal() {
                            let sig = info.ssi_signo as i32;
                            match (forwarded, drain_from) {
                                (_, Some(_)) => {}
                                // First signal: the command gets it (through init) and a
                                // grace period to exit on its own.
                                (None, None) => {
                                    if let Ok(s) = Signal::try_from(sig) {
                                        let _ = kill(Pid::from_raw(self.pid), s);
                                    }
                                    forwarded = Some((sig, Instant::now() + KILL_GRACE));
                                }
                                // A second one: no more waiting.
                                (Some((first, _)), None) => {
                                    self.kill_sandbox();
                                    forced = Some(Termination::Interrupted(first));
                                    drain_from = Some(Instant::now());
                                }
                            }
                        }
                    }
                    b'i' => {
                        let mut buf = vec![0u8; 65536];
                        match nix::unistd::read(&stdin, &mut buf) {
                            Ok(0) | Err(_) => {
                                stdin_src_open = false;
                                self.stdin_w = None; // EOF reaches the command
                            }
                            Ok(n) => {
                                buf.truncate(n);
                                stdin_buf = buf;
                            }
                        }
                    }
                    b'w' => {
                        if let Some(wfd) = &self.stdin_w {
                            match nix::unistd::write(wfd, &stdin_buf) {
                                Ok(n) => {
                                    stdin_buf.drain(..n);
                                }
                                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                                Err(_) => {
                                    // The command closed its stdin: stop forwarding.
                                    stdin_buf.clear();
                                    stdin_src_open = false;
                                    self.stdin_w = None;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if !report_open && drain_from.is_none() {
                // init has exited (with its report, or without a word if something
                // killed it): the processes are dead, only the output is left.
                drain_from = Some(Instant::now());
            }
        }
        let out = std::mem::take(&mut self.out);
        if let Some(t) = forced {
            return Ok((t, out));
        }
        if let Some(e) = error {
            return Err(RunError::Setup(e));
        }
        match status {
            Some(s) if libc::WIFEXITED(s) => Ok((Termination::Exited(libc::WEXITSTATUS(s)), out)),
            Some(s) if libc::WIFSIGNALED(s) => Ok((Termination::Signaled(libc::WTERMSIG(s)), out)),
            _ => Err(RunError::Setup(
                "the sandbox's init ended without reporting the command's status".into(),
            )),
        }
    }

    fn kill_sandbox(&self) {
        // Init kills and reaps every process, then reports and exits (so their CPU time
        // is accounted); if it does not, the SIGKILL after the drain grace ends it.
        let _ = kill(Pid::from_raw(self.pid), child::TERMINATE);
    }

    /// Moves available output from a pipe to the capture buffer or the caller's stream.
    fn pump(&mut self, is_stdout: bool) {
        let limit = self.spec.output_limit;
        let fd_slot = if is_stdout {
            &mut self.stdout_r
        } else {
            &mut self.stderr_r
        };
        let Some(fd) = fd_slot.as_ref() else { return };
        // 16 KiB: large outputs take a few more reads; a short or empty one does not
        // zero (and fault in) 64 KiB of stack per call.
        let mut buf = [0u8; 16 * 1024];
        let n = match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EBADF | nix::errno::Errno::EIO) => {
                *fd_slot = None;
                return;
            }
            Ok(n) => n,
            Err(_) => return,
        };
        let (len, truncated, store) = if is_stdout {
            (
                &mut self.out.stdout_len,
                &mut self.out.stdout_truncated,
                &mut self.out.stdout,
            )
        } else {
            (
                &mut self.out.stderr_len,
                &mut self.out.stderr_truncated,
                &mut self.out.stderr,
            )
        };
        let room = limit.saturating_sub(*len) as usize;
        let keep = n.min(room);
        if keep < n {
            *truncated = true;
        }
        *len += keep as u64;
        if keep == 0 {
            return;
        }
        match self.spec.output {
            OutputMode::Capture => store.extend_from_slice(&buf[..keep]),
            OutputMode::Passthrough => {
                let res = if is_stdout {
                    io::stdout()
                        .write_all(&buf[..keep])
                        .and_then(|_| io::stdout().flush())
                } else {
                    io::stderr().write_all(&buf[..keep])
                };
                // A closed reader (e.g. `| head`) just stops the copy; the run goes on.
                let _ = res;
            }
        }
    }
}

//! A session's init: PID 1 of the sandbox, serving the ctl protocol (docs/daemon.md).
//!
//! Single-threaded and poll-driven: the listening socket, at most one client (a new
//! connection replaces the old one), a signalfd for SIGCHLD and SIGTERM, and the
//! deadline as the poll timeout. Every process of the sandbox that ends is reaped here;
//! the exits of the ones init started are reported to the client (queued, up to
//! [`MAX_QUEUED_EVENTS`], while none is connected).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::child::{self, fd, ChildCtx};
use crate::ctl::{self, CtlErrorKind, CtlMessage, CtlOp, CtlReply, CtlRequest, MAX_MESSAGE};
use crate::report::{self, TAG_READY};
use crate::seccomp::SeccompFilters;
use crate::{caps, error_chain, ops};

/// What a session's init needs besides the sandbox itself.
#[derive(Debug)]
pub(crate) struct SessionCtx {
    /// The listening control socket (inherited from the caller).
    pub listener: RawFd,
    /// The overlay's upper dir (host path, valid in init's mount namespace until the
    /// pivot).
    pub upper: PathBuf,
    /// Initial deadline, ms since the epoch.
    pub deadline_unix_ms: Option<u64>,
    /// The uid 1000 user's extra seccomp filter (None: seccomp skipped).
    pub sandbox_seccomp: Option<SeccompFilters>,
}

/// Exit events kept while no client is connected; the oldest go first beyond it.
const MAX_QUEUED_EVENTS: usize = 1024;

/// Outgoing messages kept for a connected client before init stops reading its
/// requests (backpressure on a client that does not read).
const MAX_OUTGOING: usize = 256;

struct Outgoing {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
    event: bool,
}

/// A process init started for the client.
struct Proc {
    pid: i32,
    /// init's copy of its pty master (for resize).
    pty: Option<OwnedFd>,
}

struct Agent<'a> {
    env: ops::OpEnv<'a>,
    listener: BorrowedFd<'a>,
    upper: OwnedFd,
    sigfd: SignalFd,
    client: Option<OwnedFd>,
    out: VecDeque<Outgoing>,
    procs: HashMap<u64, Proc>,
    by_pid: HashMap<i32, u64>,
    deadline: Option<u64>,
    buf: Vec<u8>,
}

/// Finishes init's setup and serves until shutdown, deadline or SIGTERM. Never returns.
pub(crate) fn serve(
    ctx: &ChildCtx,
    session: &SessionCtx,
    landlock: Option<OwnedFd>,
    upper: OwnedFd,
) -> ! {
    let mut keep = vec![session.listener, upper.as_raw_fd(), ctx.report_w];
    keep.extend(landlock.as_ref().map(|l| l.as_raw_fd()));
    child::close_all_except(&mut keep);
    let sigfd = match prepare(session) {
        Ok(s) => s,
        Err(msg) => {
            report::send(fd(ctx.report_w), report::TAG_ERROR, msg.as_bytes());
            child::exit(125)
        }
    };
    // One Landlock domain for the whole session, entered by init itself, so every
    // process it starts shares it (none nests a domain of its own): a process of one
    // exec can signal, or connect to an abstract socket of, a process of another, as
    // on any machine, while nothing in the sandbox can signal out of it. Init stays
    // protected: uid 1000 may not signal it, and the kernel drops every signal from
    // inside a pid namespace to its init that init has no handler for (it has none).
    if let Some(ruleset) = &landlock {
        if let Err(e) = crate::landlock_layer::restrict_fd(ruleset.as_raw_fd()) {
            let msg = format!("entering the sandbox's Landlock domain: {e}");
            report::send(fd(ctx.report_w), report::TAG_ERROR, msg.as_bytes());
            child::exit(125)
        }
    }
    drop(landlock);
    // Ready: the caller returns and (normally) exits; init is on its own from here.
    report::send(fd(ctx.report_w), TAG_READY, &[]);
    let _ = nix::unistd::close(ctx.report_w);
    let mut agent = Agent {
        env: ops::OpEnv {
            ctx,
            // Entered above, inherited by every child.
            landlock: None,
            sandbox_seccomp: session.sandbox_seccomp.as_ref(),
        },
        listener: fd(session.listener),
        upper,
        sigfd,
        client: None,
        out: VecDeque::new(),
        procs: HashMap::new(),
        by_pid: HashMap::new(),
        deadline: session.deadline_unix_ms,
        buf: vec![0u8; MAX_MESSAGE],
    };
    agent.run()
}

fn prepare(session: &SessionCtx) -> Result<SignalFd, String> {
    caps::drop_to_session_set().map_err(|e| format!("dropping init's capabilities: {e}"))?;
    let listener = fd(session.listener);
    let flags = nix::fcntl::fcntl(listener, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| format!("reading the control socket's flags: {e}"))?;
    nix::fcntl::fcntl(
        listener,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .map_err(|e| format!("making the control socket non-blocking: {e}"))?;
    // SIGCHLD and SIGTERM were blocked in setup (with the others init blocks).
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGTERM);
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("creating init's signalfd: {e}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Agent<'_> {
    fn run(&mut self) -> ! {
        loop {
            let timeout = match self.deadline {
                Some(at) => {
                    let now = now_ms();
                    if now >= at {
                        self.finish();
                    }
                    PollTimeout::from((at - now).min(60_000) as u16)
                }
                None => PollTimeout::NONE,
            };
            let client_flags = {
                let mut f = PollFlags::empty();
                if self.out.len() < MAX_OUTGOING {
                    f |= PollFlags::POLLIN;
                }
                if !self.out.is_empty() {
                    f |= PollFlags::POLLOUT;
                }
                f
            };
            let (lr, sr, cr) = {
                let mut fds = vec![
                    PollFd::new(self.listener, PollFlags::POLLIN),
                    PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                ];
                if let Some(c) = &self.client {
                    fds.push(PollFd::new(c.as_fd(), client_flags));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => child::exit(125),
                }
                let ev = |i: usize| {
                    fds.get(i)
                        .and_then(|f| f.revents())
                        .unwrap_or(PollFlags::empty())
                };
                (ev(0), ev(1), ev(2))
            };
            if !sr.is_empty() {
                self.signals();
            }
            if !lr.is_empty() {
                self.accept();
            }
            if cr.contains(PollFlags::POLLIN) {
                self.read_requests();
            } else if cr.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                self.drop_client();
            }
            self.flush();
        }
    }

    fn signals(&mut self) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            // Only a SIGTERM from outside the sandbox (the host, the daemon) ends it:
            // a sender in another pid namespace shows as pid 0. The sandbox's own root
            // may signal init (same Landlock domain, CAP_KILL in its user namespace),
            // and is ignored.
            if info.ssi_signo == Signal::SIGTERM as u32 && info.ssi_pid == 0 {
                self.finish();
            }
        }
        self.reap();
    }

    /// Reaps every child that has ended; reports the ones started for the client.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
            #[allow(unsafe_code)]
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: status and usage are valid, writable locals.
            #[allow(unsafe_code)]
            let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
            if pid <= 0 {
                if pid < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                    continue;
                }
                return;
            }
            let Some(id) = self.by_pid.remove(&pid) else {
                continue;
            };
            self.procs.remove(&id);
            let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
            let msg = CtlMessage::Exited {
                id,
                status,
                cpu_us: us(usage.ru_utime) + us(usage.ru_stime),
            };
            self.push(&msg, Vec::new(), true);
        }
    }

    fn accept(&mut self) {
        let raw = nix::sys::socket::accept4(
            self.listener.as_raw_fd(),
            nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
        );
        let Ok(raw) = raw else { return };
        // SAFETY: accept4 just returned this descriptor; nothing else owns it.
        #[allow(unsafe_code)]
        let conn = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        ctl::size_send_buffer(conn.as_fd());
        // A new client replaces the old one (a restarted daemon takes over).
        self.drop_client();
        self.client = Some(conn);
    }

    /// Closes the client; replies meant for it are dropped, exit events are kept.
    fn drop_client(&mut self) {
        self.client = None;
        self.out.retain(|o| o.event);
    }

    fn read_requests(&mut self) {
        // A bounded batch per round, so exits and a new client are not starved.
        for _ in 0..32 {
            if self.out.len() >= MAX_OUTGOING {
                return;
            }
            let Some(client) = &self.client else { return };
            let res = ctl::recv_packet(client.as_fd(), &mut self.buf);
            match res {
                Ok(Some((len, fds))) => {
                    let bytes = self.buf[..len].to_vec();
                    self.handle(&bytes, fds);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Ok(None) | Err(_) => {
                    self.drop_client();
                    return;
                }
            }
        }
    }

    fn handle(&mut self, bytes: &[u8], fds: Vec<OwnedFd>) {
        let req = match serde_json::from_slice::<CtlRequest>(bytes) {
            Ok(r) => r,
            Err(e) => {
                let id = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .and_then(|v| v.get("req").and_then(|r| r.as_u64()))
                    .unwrap_or(0);
                let reply = error(CtlErrorKind::Invalid, 0, format!("malformed request: {e}"));
                return self.reply(id, reply, Vec::new());
            }
        };
        let (reply, out_fds) = match req.op {
            CtlOp::Ping => (CtlReply::Pong, Vec::new()),
            CtlOp::SetDeadline { unix_ms } => {
                self.deadline = unix_ms;
                (CtlReply::Ok, Vec::new())
            }
            CtlOp::UpperDir => match self.upper.try_clone() {
                Ok(f) => (CtlReply::Opened, vec![f]),
                Err(e) => (io_error("duplicating the upper dir fd", &e), Vec::new()),
            },
            CtlOp::Shutdown => {
                self.reply(req.req, CtlReply::Ok, Vec::new());
                self.flush();
                self.finish();
            }
            CtlOp::Signal { id, signal } => (self.signal(id, signal), Vec::new()),
            CtlOp::Resize { id, rows, cols } => (self.resize(id, rows, cols), Vec::new()),
            CtlOp::Exec {
                id,
                argv,
                env,
                cwd,
                user,
                stdio,
            } => {
                if self.procs.contains_key(&id) {
                    let msg = format!("process id {id} is already running");
                    (error(CtlErrorKind::Invalid, 0, msg), Vec::new())
                } else {
                    let spec = ops::ExecSpec {
                        argv: &argv,
                        env: &env,
                        cwd: cwd.as_deref(),
                        user,
                        stdio,
                    };
                    match ops::exec(&self.env, &spec, fds) {
                        Ok(started) => {
                            self.by_pid.insert(started.pid, id);
                            self.procs.insert(
                                id,
                                Proc {
                                    pid: started.pid,
                                    pty: started.pty_kept,
                                },
                            );
                            let back = started.pty_master.into_iter().collect();
                            (
                                CtlReply::Started {
                                    id,
                                    pid: started.pid,
                                },
                                back,
                            )
                        }
                        Err(reply) => (reply, Vec::new()),
                    }
                }
            }
            op => ops::file_op(&self.env, &op),
        };
        self.reply(req.req, reply, out_fds);
    }

    fn signal(&self, id: u64, signal: i32) -> CtlReply {
        let Some(p) = self.procs.get(&id) else {
            return error(
                CtlErrorKind::NotFound,
                0,
                format!("no running process {id}"),
            );
        };
        // The process is a session (and so process group) leader.
        // SAFETY: kill takes plain integers.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(-p.pid, signal) };
        if rc == 0 {
            CtlReply::Ok
        } else {
            io_error("sending the signal", &std::io::Error::last_os_error())
        }
    }

    fn resize(&self, id: u64, rows: u16, cols: u16) -> CtlReply {
        let Some(p) = self.procs.get(&id) else {
            return error(
                CtlErrorKind::NotFound,
                0,
                format!("no running process {id}"),
            );
        };
        let Some(pty) = &p.pty else {
            return error(
                CtlErrorKind::Invalid,
                0,
                format!("process {id} has no terminal"),
            );
        };
        match ops::set_winsize(pty.as_raw_fd(), rows, cols) {
            Ok(()) => CtlReply::Ok,
            Err(e) => io_error("resizing the terminal", &e),
        }
    }

    fn reply(&mut self, req: u64, reply: CtlReply, fds: Vec<OwnedFd>) {
        self.push(&CtlMessage::Reply { req, reply }, fds, false);
    }

    fn push(&mut self, msg: &CtlMessage, fds: Vec<OwnedFd>, event: bool) {
        let mut bytes = serde_json::to_vec(msg).unwrap_or_default();
        if bytes.len() > MAX_MESSAGE {
            // Only a listing can grow this large; ops keeps it well below.
            let req = match msg {
                CtlMessage::Reply { req, .. } => *req,
                CtlMessage::Exited { .. } => 0,
            };
            let e = CtlMessage::Reply {
                req,
                reply: error(CtlErrorKind::Failed, 0, "reply too large".into()),
            };
            bytes = serde_json::to_vec(&e).unwrap_or_default();
        }
        if self.client.is_none() && !event {
            return;
        }
        if event && self.out.iter().filter(|o| o.event).count() >= MAX_QUEUED_EVENTS {
            if let Some(i) = self.out.iter().position(|o| o.event) {
                self.out.remove(i);
            }
        }
        self.out.push_back(Outgoing { bytes, fds, event });
    }

    /// Sends queued messages until the socket is full.
    fn flush(&mut self) {
        let Some(client) = &self.client else { return };
        while let Some(o) = self.out.front() {
            let raw: Vec<RawFd> = o.fds.iter().map(|f| f.as_raw_fd()).collect();
            match ctl::send_packet(client.as_fd(), &o.bytes, &raw) {
                Ok(()) => {
                    self.out.pop_front();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.drop_client();
                    return;
                }
            }
        }
    }

    /// Kills every process of the sandbox, reaps them all and exits.
    fn finish(&mut self) -> ! {
        // kill(-1) from a pid namespace's init reaches every other process in it.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), Signal::SIGKILL);
        loop {
            let mut status = 0;
            // SAFETY: status is a valid, writable c_int for waitpid to fill.
            #[allow(unsafe_code)]
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid < 0 && nix::errno::Errno::last() != nix::errno::Errno::EINTR {
                break; // ECHILD: nothing left
            }
        }
        child::exit(0)
    }
}

/// An error reply.
pub(crate) fn error(kind: CtlErrorKind, errno: i32, message: String) -> CtlReply {
    CtlReply::Error {
        kind,
        errno,
        message,
    }
}

/// An error reply for a failed system call.
pub(crate) fn io_error(what: &str, e: &std::io::Error) -> CtlReply {
    let errno = e.raw_os_error().unwrap_or(0);
    error(
        CtlErrorKind::from_errno(errno),
        errno,
        format!("{what}: {}", error_chain(e)),
    )
}

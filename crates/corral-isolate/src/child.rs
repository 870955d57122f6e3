//! The sandbox side of a run: what the cloned child does to become the sandbox's init
//! (PID 1), and what the command process does between fork and execve.
//!
//! Runs in a process forked from a single-threaded corral, so allocating is fine, but
//! nothing here may return into the caller's code: every path ends in `_exit`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{chdir, execve, setsid, Gid, Uid};

use crate::mounts::{self, MountOp};
use crate::realsys::RealMountSys;
use crate::report::{self, TAG_STATUS, TAG_USERNS};
use crate::seccomp::SeccompFilters;
use crate::spec::SandboxUser;
use crate::{caps, error_chain, landlock_layer};

/// Everything the child needs, prepared by the parent before clone so the child does
/// as little as possible.
#[derive(Debug)]
pub(crate) struct ChildCtx {
    /// Read end of parent -> child sync pipe.
    pub p2c_r: RawFd,
    /// Write end of the report pipe (close-on-exec).
    pub report_w: RawFd,
    /// The parent's ends of every pipe, closed first thing in the child.
    pub parent_fds: Vec<RawFd>,
    /// A network namespace to join first thing (None: the clone made a new one).
    pub netns: Option<RawFd>,
    pub hostname: String,
    pub plan: Vec<MountOp>,
    pub nofile: u64,
    pub fsize: u64,
    /// Landlock ABI and whether to scope; None when the layer is skipped.
    pub landlock: Option<(i32, bool)>,
    /// Paths the command may write to (Landlock), computed by corral.
    pub writable: Vec<PathBuf>,
    /// The compiled seccomp program init installs (None: layer skipped).
    pub seccomp: Option<SeccompFilters>,
    /// One command, or a session.
    pub mode: InitMode,
}

/// What init does once the sandbox is built.
#[derive(Debug)]
pub(crate) enum InitMode {
    /// Start one command, wait for it, report its status (`corral run`).
    Run(CommandCtx),
    /// Serve the ctl protocol ([`crate::start_session`]).
    Session(crate::agent::SessionCtx),
}

/// The one command of a run.
#[derive(Debug)]
pub(crate) struct CommandCtx {
    /// Command stdin (None: /dev/null), stdout and stderr pipe ends.
    pub stdin_r: Option<RawFd>,
    pub stdout_w: RawFd,
    pub stderr_w: RawFd,
    pub user: SandboxUser,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Full paths to try with execve, in PATH order.
    pub exec_candidates: Vec<CString>,
    /// argv[0] as the user typed it, for error messages.
    pub program: String,
    pub workdir: CString,
}

impl ChildCtx {
    fn session(&self) -> bool {
        matches!(self.mode, InitMode::Session(_))
    }
}

pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process immediately without running the parent's atexit
    // handlers or flushing its stdio buffers, which belong to the corral parent.
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(code)
    }
}

pub(crate) fn fd(raw: RawFd) -> BorrowedFd<'static> {
    // SAFETY: every fd passed here was created by the parent before clone and stays open
    // in this process until it exits (only fds not used afterwards are closed).
    #[allow(unsafe_code)]
    unsafe {
        BorrowedFd::borrow_raw(raw)
    }
}

fn read_byte(raw: RawFd) -> bool {
    let mut b = [0u8; 1];
    matches!(nix::unistd::read(fd(raw), &mut b), Ok(1))
}

/// Entry point of the cloned child: it is PID 1 of new pid, mount, ipc, uts and net
/// namespaces, still host root. Never returns.
pub(crate) fn sandbox_main(ctx: ChildCtx) -> ! {
    for &f in &ctx.parent_fds {
        let _ = nix::unistd::close(f);
    }
    match setup(&ctx) {
        Ok(cmd_pid) => init_loop(&ctx, cmd_pid),
        Err(msg) => {
            report::send(fd(ctx.report_w), report::TAG_ERROR, msg.as_bytes());
            exit(125)
        }
    }
}

fn setup(ctx: &ChildCtx) -> Result<i32, String> {
    // The network namespace comes first, while init is still host root in the host's
    // user namespace: the namespace stays owned by the host, so nothing inside can
    // change its addresses, routes or firewall.
    if let Some(ns) = ctx.netns {
        nix::sched::setns(fd(ns), CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("joining the sandbox's network namespace: {e}"))?;
        let _ = nix::unistd::close(ns);
    }
    // A session's init outlives the process that starts it: no parent-death signal.
    if !ctx.session() {
        caps::die_with_parent().map_err(|e| format!("setting the parent-death signal: {e}"))?;
    }
    // If corral died before the death signal was armed, the read of the sync pipe
    // below sees EOF and the child exits; nothing it made outlives it.
    nix::unistd::sethostname(&ctx.hostname).map_err(|e| format!("setting the hostname: {e}"))?;
    loopback_up().map_err(|e| format!("bringing up loopback: {e}"))?;
    // 1. The root file system, then pivot into it (corral moves us into the cgroup
    //    meanwhile; no sandbox code runs before that is confirmed below).
    //    A session keeps an O_PATH fd of the overlay's upper dir, opened before the
    //    pivot (after it, the scratch tmpfs is reachable from no path).
    let (pivot, before) = ctx.plan.split_last().ok_or("empty mount plan")?;
    mounts::execute(before, &mut RealMountSys).map_err(|e| error_chain(&e))?;
    let upper = match &ctx.mode {
        InitMode::Session(s) => Some(
            nix::fcntl::open(
                &s.upper,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| format!("opening the writable layer's upper dir: {e}"))?,
        ),
        InitMode::Run(_) => None,
    };
    mounts::execute(std::slice::from_ref(pivot), &mut RealMountSys).map_err(|e| error_chain(&e))?;
    // 2. corral has put us in the cgroup (EOF: corral is gone, give up quietly); our
    //    cgroup becomes the root of our cgroup view.
    if !read_byte(ctx.p2c_r) {
        exit(125);
    }
    unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| format!("creating the cgroup namespace: {e}"))?;
    // 3. The user namespace comes last, so that every other namespace stays owned by
    //    the host's: root in the sandbox holds no capability over its mounts, network,
    //    hostname or IPC, and cannot undo anything above.
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("creating the user namespace: {e}"))?;
    report::send(fd(ctx.report_w), TAG_USERNS, &[]);
    // While corral writes the id maps: blank corral's command line in this copy, narrow
    // the bounding set and build the Landlock ruleset for the command (bound to this
    // root's inodes).
    scrub_command_line();
    caps::bound_to(init_caps(ctx)).map_err(|e| format!("dropping the bounding set: {e}"))?;
    let landlock = match ctx.landlock {
        Some((abi, scopes)) => Some(
            landlock_layer::prepare(abi, scopes, &ctx.writable)
                .map_err(|e| error_chain(&e))?
                .into_fd()
                .ok_or("Landlock ruleset without a file descriptor")?,
        ),
        None => None,
    };
    if !read_byte(ctx.p2c_r) {
        exit(125);
    }
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .map_err(|e| format!("switching to the sandbox's root group: {e}"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid)
        .map_err(|e| format!("switching to the sandbox's root user: {e}"))?;
    caps::set_not_dumpable().map_err(|e| format!("making init non-dumpable: {e}"))?;
    // Changing credentials cleared the parent-death signal: arm it again, then make
    // sure corral did not die in between (its end of the sync pipe would be closed).
    if !ctx.session() {
        caps::die_with_parent().map_err(|e| format!("setting the parent-death signal: {e}"))?;
        if parent_gone(ctx.p2c_r) {
            exit(125);
        }
    }
    // Init holds nothing of the caller's: its stdio becomes /dev/null.
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("opening /dev/null in the sandbox: {e}"))?;
    // Init takes SIGCHLD and the forwarded signals through sigwait; blocked before the
    // fork so no exit is missed (the command unblocks everything before execve).
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&init_signals()), None)
        .map_err(|e| format!("blocking init's signals: {e}"))?;
    // The syscall filter goes on init before the fork, so init and the command share
    // one installed program (installing costs ~1.7 us per instruction). Everything both
    // do from here to the command's execve is on the allowlist.
    caps::set_no_new_privs().map_err(|e| format!("no_new_privs for init: {e}"))?;
    if let Some(filters) = &ctx.seccomp {
        filters.apply().map_err(|e| error_chain(&e))?;
    }
    let cmd = match &ctx.mode {
        InitMode::Run(cmd) => cmd,
        InitMode::Session(session) => {
            for target in 0..3 {
                // SAFETY: null is an open fd owned by this process; dup2 onto 0-2
                // replaces init's inherited stdio.
                #[allow(unsafe_code)]
                unsafe {
                    libc::dup2(null.as_raw_fd(), target);
                }
            }
            drop(null);
            let upper = upper.ok_or("the upper dir was not opened")?;
            crate::agent::serve(ctx, session, landlock, upper)
        }
    };
    let child = spawn_command(ctx, cmd, landlock.as_ref().map(|l| l.as_raw_fd()))?;
    // Init's housekeeping, once the command runs.
    for target in 0..3 {
        // SAFETY: null is an open fd owned by this process; dup2 onto 0-2 replaces
        // init's inherited stdio.
        #[allow(unsafe_code)]
        unsafe {
            libc::dup2(null.as_raw_fd(), target);
        }
    }
    drop(null);
    drop(landlock);
    drop(upper);
    close_all_except(&mut [ctx.report_w]);
    caps::drop_to_init_set().map_err(|e| format!("dropping init's capabilities: {e}"))?;
    Ok(child)
}

/// The bounding set init keeps: the command's set plus CAP_KILL for a run; for a
/// session, sandbox root's set (it starts processes as either user).
fn init_caps(ctx: &ChildCtx) -> u64 {
    match &ctx.mode {
        InitMode::Run(cmd) => caps::command_set(cmd.user) | caps::mask(&[caps::CAP_KILL]),
        InitMode::Session(_) => caps::SESSION_INIT_CAPS,
    }
}

extern "C" fn clone_entry<F: FnMut() -> libc::c_int>(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the closure in clone_vfork's frame. CLONE_VFORK keeps the caller
    // suspended until this process execs or exits, so nothing else touches it (or any
    // of the memory this process shares with the caller) meanwhile.
    #[allow(unsafe_code)]
    let f = unsafe { &mut *(arg as *mut F) };
    f()
}

/// Starts a process with clone(CLONE_VM | CLONE_VFORK | `extra`) on a stack of its
/// own: no page tables are copied and no copy-on-write faults follow, and the caller
/// sleeps until the child has exec'd or exited, so the child runs first and may write
/// results into the caller's memory. `f` must exec or `_exit`; it never returns into
/// the caller's code. Returns the child's pid.
pub(crate) fn clone_vfork<F: FnMut() -> libc::c_int>(
    extra: libc::c_int,
    f: &mut F,
) -> std::io::Result<i32> {
    // Large enough for the file operations' directory walks; untouched pages cost
    // nothing.
    const STACK: usize = 8 << 20;
    const GUARD: usize = 1 << 16;
    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    #[allow(unsafe_code)]
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the lowest GUARD bytes of the mapping made above become inaccessible, so
    // a stack overflow faults instead of writing below the stack.
    #[allow(unsafe_code)]
    unsafe {
        libc::mprotect(base, GUARD, libc::PROT_NONE);
    }
    // SAFETY: the child runs clone_entry on its own stack (the top of the mapping,
    // 16-byte aligned), shares memory with this suspended process (CLONE_VFORK) and
    // never returns into it: `f` execs or _exits. `f` outlives the call.
    #[allow(unsafe_code)]
    let pid = unsafe {
        libc::clone(
            clone_entry::<F>,
            (base as *mut u8).add(STACK) as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD | extra,
            f as *mut F as *mut libc::c_void,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: the mapping made above; the child has exec'd or exited, so nothing runs
    // on it any more.
    #[allow(unsafe_code)]
    unsafe {
        libc::munmap(base, STACK);
    }
    if pid < 0 {
        return Err(err);
    }
    Ok(pid)
}

/// Starts the command process (see [`clone_vfork`]).
fn spawn_command(ctx: &ChildCtx, cmd: &CommandCtx, landlock: Option<RawFd>) -> Result<i32, String> {
    clone_vfork(0, &mut || command_main(ctx, cmd, landlock))
        .map_err(|e| format!("starting the command: {e}"))
}

/// Whether corral has gone away: its end of the sync pipe is closed.
fn parent_gone(p2c_r: RawFd) -> bool {
    let mut fds = [nix::poll::PollFd::new(
        fd(p2c_r),
        nix::poll::PollFlags::POLLIN,
    )];
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
        Ok(0) => false,
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP)),
        Err(_) => true,
    }
}

/// Blanks this process's copy of corral's command line and environment, which
/// /proc/1/cmdline would otherwise show inside the sandbox (host paths from --mount,
/// values from --env, the caller's variables). Only memory of this process is written:
/// the ranges come from the kernel's own record of where they are (/proc/self/stat
/// fields arg_start..arg_end and env_start..env_end), which lie in the stack mapping.
fn scrub_command_line() {
    let Ok(stat) = crate::procfs::read_small("/proc/self/stat") else {
        return;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    // After the ")" the fields start at number 3; arg_start is field 48.
    let fields: Vec<usize> = rest
        .split_whitespace()
        .skip(45)
        .take(4)
        .filter_map(|f| f.parse().ok())
        .collect();
    let [arg_start, arg_end, env_start, env_end] = fields[..] else {
        return;
    };
    const NAME: &[u8] = b"corral-init\0";
    for (start, end, name) in [
        (arg_start, arg_end, NAME),
        (env_start, env_end, b"" as &[u8]),
    ] {
        if end <= start || end - start > (1 << 24) {
            continue;
        }
        // SAFETY: [start, end) is this process's argument (or environment) area as
        // recorded by the kernel at execve: mapped, writable stack memory that nothing
        // in this (single-threaded, forked) process reads after this point; argv/env
        // strings there are only read by /proc readers.
        #[allow(unsafe_code)]
        unsafe {
            let region = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
            region.fill(0);
            let n = name.len().min(region.len());
            region[..n].copy_from_slice(&name[..n]);
        }
    }
}

/// Closes every fd from 3 up except those in `keep`.
pub(crate) fn close_all_except(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut from: RawFd = 3;
    for &k in keep.iter().filter(|&&k| k >= 3) {
        if k > from {
            // SAFETY: close_range only closes descriptors of this process; the range
            // lies between two descriptors that are kept.
            #[allow(unsafe_code)]
            unsafe {
                libc::syscall(libc::SYS_close_range, from as u32, (k - 1) as u32, 0u32);
            }
        }
        from = k + 1;
    }
    // SAFETY: as above, from the last kept descriptor up.
    #[allow(unsafe_code)]
    unsafe {
        libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, 0u32);
    }
}

/// Signals init forwards to the command (corral relays its own SIGINT, SIGTERM, SIGHUP
/// and SIGQUIT here), SIGCHLD, which init waits for, and [`TERMINATE`].
fn init_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        TERMINATE,
    ] {
        set.add(s);
    }
    set
}

/// corral's request to end the sandbox now (timeout, interrupt): init kills and reaps
/// everything, then reports. Sandbox processes cannot send it: Landlock scoping keeps
/// their signals inside the sandbox's own domain, which init is not part of.
pub(crate) const TERMINATE: Signal = Signal::SIGUSR1;

/// PID 1: reap every child and forward signals to the command's process group; when
/// the command ends (or corral asks with [`TERMINATE`]), kill every other process,
/// reap them all, report the command's status and exit. Reaping them here, rather than
/// leaving them to the kernel's teardown of the pid namespace, means their CPU time is
/// accounted to init, whose rusage corral reads.
fn init_loop(ctx: &ChildCtx, cmd_pid: i32) -> ! {
    let signals = init_signals();
    let mut cmd_status: Option<libc::c_int> = None;
    loop {
        // Reap whatever has exited (orphans re-parented to init included).
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: status is a valid, writable c_int for waitpid to fill.
            #[allow(unsafe_code)]
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == cmd_pid {
                cmd_status = Some(status);
                break;
            }
            if pid > 0 {
                continue;
            }
            if pid < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            if pid < 0 {
                report::send(
                    fd(ctx.report_w),
                    report::TAG_ERROR,
                    format!(
                        "sandbox init lost its command: {}",
                        std::io::Error::last_os_error()
                    )
                    .as_bytes(),
                );
                exit(125);
            }
            break;
        }
        if cmd_status.is_some() {
            break;
        }
        match signals.wait() {
            Ok(TERMINATE) => break,
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                // The command is a session (and so process group) leader.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-cmd_pid), sig);
            }
        }
    }
    // kill(-1) from a pid namespace's init reaches every other process in it.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), Signal::SIGKILL);
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a valid, writable c_int for waitpid to fill.
        #[allow(unsafe_code)]
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == cmd_pid {
            cmd_status = Some(status);
        } else if pid < 0 && nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            break; // ECHILD: nothing left
        }
    }
    match cmd_status {
        Some(status) => report::send(fd(ctx.report_w), TAG_STATUS, &status.to_le_bytes()),
        None => report::send(
            fd(ctx.report_w),
            report::TAG_ERROR,
            b"sandbox init lost its command",
        ),
    }
    exit(0)
}

/// The command process: from here to execve every step narrows what it can do.
fn command_main(ctx: &ChildCtx, cmd: &CommandCtx, landlock: Option<RawFd>) -> ! {
    if let Err((_, msg)) = prepare_command(ctx, cmd, landlock) {
        report::send(fd(ctx.report_w), report::TAG_ERROR, msg.as_bytes());
        exit(125);
    }
    exec_command(&cmd.exec_candidates, &cmd.argv, &cmd.envp, &cmd.program)
}

/// Tries each candidate path; if none can be executed, says why on stderr (fd 2) and
/// exits 127 (not found) or 126 (not executable), as a shell does.
pub(crate) fn exec_command(
    candidates: &[CString],
    argv: &[CString],
    envp: &[CString],
    program: &str,
) -> ! {
    let mut last = nix::errno::Errno::ENOENT;
    let mut denied = false;
    for path in candidates {
        let Err(e) = execve(path, argv, envp);
        match e {
            nix::errno::Errno::EACCES => denied = true,
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => {}
            other => last = other,
        }
    }
    let (code, msg) = if last != nix::errno::Errno::ENOENT {
        (
            126,
            format!("corral: cannot execute {program}: {}\n", last.desc()),
        )
    } else if denied {
        (
            126,
            format!("corral: cannot execute {program}: permission denied\n"),
        )
    } else {
        (
            127,
            format!("corral: command not found in the sandbox: {program}\n"),
        )
    };
    let _ = nix::unistd::write(fd(2), msg.as_bytes());
    exit(code)
}

/// A setup step that failed in a process init starts: errno (0 if none) and message.
pub(crate) type SetupError = (i32, String);

fn step(what: &'static str) -> impl Fn(nix::errno::Errno) -> SetupError {
    move |e| (e as i32, format!("{what}: {e}"))
}

fn step_io(what: &'static str) -> impl Fn(std::io::Error) -> SetupError {
    move |e| (e.raw_os_error().unwrap_or(0), format!("{what}: {e}"))
}

fn prepare_command(
    ctx: &ChildCtx,
    cmd: &CommandCtx,
    landlock: Option<RawFd>,
) -> Result<(), SetupError> {
    setsid().map_err(step("setsid"))?;
    // stdio: pipes to corral (never the caller's own fds: no host terminal reaches in).
    let stdin = match cmd.stdin_r {
        Some(r) => r,
        None => {
            use std::os::fd::IntoRawFd;
            nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDONLY,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(step("opening /dev/null"))?
            .into_raw_fd()
        }
    };
    dup_stdio([stdin, cmd.stdout_w, cmd.stderr_w])?;
    reset_signals()?;
    confine(
        &Confine {
            user: cmd.user,
            bounding: init_caps(ctx),
            nofile: ctx.nofile,
            fsize: ctx.fsize,
            landlock,
            seccomp: None,
        },
        Some(&cmd.workdir),
    )?;
    // Everything but 0-2 is closed at execve (the report pipe stays usable until then).
    cloexec_from_3();
    // The seccomp filter was installed by init before the fork and is inherited.
    Ok(())
}

/// dup2s the three fds onto 0, 1 and 2.
pub(crate) fn dup_stdio(fds: [RawFd; 3]) -> Result<(), SetupError> {
    for (to, from) in fds.into_iter().enumerate() {
        // SAFETY: `from` is an fd this process owns (inherited or just opened); dup2
        // onto 0-2 replaces them as intended.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::dup2(from, to as RawFd) };
        if rc < 0 {
            return Err(step_io("dup2")(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Marks every fd from 3 up close-on-exec.
pub(crate) fn cloexec_from_3() {
    // SAFETY: marks descriptors of this process close-on-exec; nothing is closed now.
    #[allow(unsafe_code)]
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// Signals: default dispositions, nothing blocked. execve resets handled signals but
/// keeps ignored ones (corral ignores SIGPIPE; its caller may ignore others, e.g. under
/// nohup), so every one is reset: a command always starts the same way.
pub(crate) fn reset_signals() -> Result<(), SetupError> {
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: SIG_DFL installs no Rust handler; resetting is always sound.
            #[allow(unsafe_code)]
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        }
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(step("sigprocmask"))
}

/// How a process that init starts is confined: a run's command, a session's exec and
/// file operations alike.
pub(crate) struct Confine<'a> {
    pub user: SandboxUser,
    /// The bounding set init holds, which become_user narrows.
    pub bounding: u64,
    pub nofile: u64,
    pub fsize: u64,
    /// The Landlock ruleset init prepared (None: layer skipped).
    pub landlock: Option<RawFd>,
    /// A further seccomp filter for this user, stacked on init's (a session's init
    /// holds sandbox root's filter; the uid 1000 user's adds its refusals).
    pub seccomp: Option<&'a SeccompFilters>,
}

/// Becomes `c.user` with the command's limits, capabilities, working directory,
/// Landlock domain and seccomp filter.
pub(crate) fn confine(c: &Confine<'_>, workdir: Option<&std::ffi::CStr>) -> Result<(), SetupError> {
    // Under memory pressure the OOM killer takes the command's processes, never init.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(step("RLIMIT_CORE"))?;
    setrlimit(Resource::RLIMIT_NOFILE, c.nofile, c.nofile).map_err(step("RLIMIT_NOFILE"))?;
    setrlimit(Resource::RLIMIT_FSIZE, c.fsize, c.fsize).map_err(step("RLIMIT_FSIZE"))?;
    caps::become_user(c.user, c.bounding).map_err(step_io("dropping privileges"))?;
    if let Some(dir) = workdir {
        chdir(dir).map_err(|e| {
            (
                e as i32,
                format!("working directory {}: {e}", dir.to_string_lossy()),
            )
        })?;
    }
    caps::set_no_new_privs().map_err(step_io("no_new_privs"))?;
    if let Some(ruleset) = c.landlock {
        landlock_layer::restrict_fd(ruleset).map_err(step_io("applying the Landlock ruleset"))?;
    }
    if let Some(filter) = c.seccomp {
        filter.apply().map_err(|e| (libc::EPERM, error_chain(&e)))?;
    }
    Ok(())
}

/// Sets the loopback interface up in the sandbox's new network namespace.
fn loopback_up() -> std::io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    #[allow(unsafe_code)]
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: sock is an open socket; req is a valid ifreq naming "lo" that the kernel
    // reads and (for SIOCGIFFLAGS) writes.
    #[allow(unsafe_code)]
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

//! The processes a session's init starts for the client: commands (exec) and file
//! operations. Each is a clone(CLONE_VM | CLONE_VFORK) child (file operations add
//! CLONE_FILES, so an fd it opens lands in init's table) that becomes the requested
//! user exactly as `corral run`'s command does (rlimits, capabilities, Landlock,
//! seccomp), then execs or performs the operation and `_exit`s. Paths are resolved by
//! the kernel in that child, with the sandbox user's rights; init never resolves one.
//!
//! A file operation's child writes its result into init's memory (shared through
//! CLONE_VM; init is suspended until the child exits) and exits.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{FileStat, Mode, SFlag};

use crate::agent::{error, io_error};
use crate::child::{self, Confine, SetupError};
use crate::ctl::{CtlEntry, CtlErrorKind, CtlOp, CtlReply, EntryKind, OpenAccess, Stdio};
use crate::seccomp::SeccompFilters;
use crate::spec::SandboxUser;

/// What processes started by a session's init share.
pub(crate) struct OpEnv<'a> {
    pub ctx: &'a child::ChildCtx,
    pub landlock: Option<RawFd>,
    pub sandbox_seccomp: Option<&'a SeccompFilters>,
}

impl OpEnv<'_> {
    fn confine(&self, user: SandboxUser) -> Confine<'_> {
        Confine {
            user,
            bounding: crate::caps::SESSION_INIT_CAPS,
            nofile: self.ctx.nofile,
            fsize: self.ctx.fsize,
            landlock: self.landlock,
            seccomp: match user {
                SandboxUser::Sandbox => self.sandbox_seccomp,
                SandboxUser::Root => None,
            },
        }
    }
}

/// An exec request.
pub(crate) struct ExecSpec<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a str>,
    pub user: SandboxUser,
    pub stdio: Stdio,
}

/// A started process.
pub(crate) struct Started {
    pub pid: i32,
    /// The pty master for the client.
    pub pty_master: Option<OwnedFd>,
    /// init's own copy of it (resize).
    pub pty_kept: Option<OwnedFd>,
}

fn invalid(msg: impl Into<String>) -> CtlReply {
    error(CtlErrorKind::Invalid, 0, msg.into())
}

fn cstr(s: &str, what: &str) -> Result<CString, CtlReply> {
    CString::new(s).map_err(|_| invalid(format!("{what} contains a NUL byte")))
}

fn setup_error(e: SetupError) -> CtlReply {
    error(CtlErrorKind::from_errno(e.0), e.0, e.1)
}

/// Opens a new pty: (master, slave), the slave owned by `user`.
fn open_pty(rows: u16, cols: u16, user: SandboxUser) -> std::io::Result<(OwnedFd, OwnedFd)> {
    // /dev/ptmx is corral's own symlink to the sandbox's private devpts, on the
    // read-only /dev that only corral writes: no sandbox process can redirect it.
    let master = nix::fcntl::open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from the valid pointer; master is an open pty.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    set_winsize(master.as_raw_fd(), rows, cols)?;
    // The slave from the master itself (TIOCGPTPEER): no path is looked up.
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags as an integer and returns a new fd.
    #[allow(unsafe_code)]
    let raw = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the ioctl just returned this new descriptor.
    #[allow(unsafe_code)]
    let slave = unsafe { OwnedFd::from_raw_fd(raw) };
    // The terminal belongs to its user (group tty), as login would arrange.
    let _ = nix::unistd::fchown(
        &slave,
        Some(nix::unistd::Uid::from_raw(user.id())),
        Some(nix::unistd::Gid::from_raw(5)),
    );
    Ok((master, slave))
}

/// TIOCSWINSZ.
pub(crate) fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Starts a command. Setup failures (bad cwd, ...) are error replies; a command that
/// is not found exits 127 with corral run's message on its stderr.
pub(crate) fn exec(
    env: &OpEnv<'_>,
    spec: &ExecSpec<'_>,
    fds: Vec<OwnedFd>,
) -> Result<Started, CtlReply> {
    let program = spec
        .argv
        .first()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid("exec needs a command (argv is empty)"))?;
    let argv = spec
        .argv
        .iter()
        .map(|a| cstr(a, "an argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut envp = Vec::with_capacity(spec.env.len());
    for (k, v) in spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(invalid(format!("invalid environment variable name {k:?}")));
        }
        envp.push(cstr(&format!("{k}={v}"), "an environment variable")?);
    }
    let candidates = crate::run::exec_candidates(program, spec.env)
        .map_err(|e| invalid(crate::error_chain(&e)))?;
    let cwd = cstr(spec.cwd.unwrap_or(spec.user.home()), "cwd")?;
    let (stdio, master, slave) = match spec.stdio {
        Stdio::Pipes => {
            let [i, o, e] = fds.as_slice() else {
                return Err(invalid(
                    "exec with pipes needs exactly three fds (stdin, stdout, stderr)",
                ));
            };
            ([i.as_raw_fd(), o.as_raw_fd(), e.as_raw_fd()], None, None)
        }
        Stdio::Pty { rows, cols } => {
            let (m, s) = open_pty(rows, cols, spec.user)
                .map_err(|e| io_error("opening a pseudo-terminal", &e))?;
            let r = s.as_raw_fd();
            ([r, r, r], Some(m), Some(s))
        }
    };
    let confine = env.confine(spec.user);
    let pty = slave.as_ref().map(|s| s.as_raw_fd());
    let mut failed: Option<SetupError> = None;
    let pid = child::clone_vfork(0, &mut || {
        let setup = || -> Result<(), SetupError> {
            nix::unistd::setsid().map_err(|e| (e as i32, format!("setsid: {e}")))?;
            if let Some(tty) = pty {
                // SAFETY: TIOCSCTTY takes an integer; tty is an open pty slave.
                #[allow(unsafe_code)]
                let rc = unsafe { libc::ioctl(tty, libc::TIOCSCTTY, 0) };
                if rc < 0 {
                    let e = std::io::Error::last_os_error();
                    return Err((e.raw_os_error().unwrap_or(0), format!("TIOCSCTTY: {e}")));
                }
            }
            child::dup_stdio(stdio)?;
            child::reset_signals()?;
            nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
            child::confine(&confine, Some(&cwd))?;
            child::cloexec_from_3();
            Ok(())
        };
        if let Err(e) = setup() {
            // Written into init's memory (CLONE_VM); init reads it once this exits.
            failed = Some(e);
            child::exit(125);
        }
        child::exec_command(&candidates, &argv, &envp, program)
    })
    .map_err(|e| io_error("starting the process", &e))?;
    drop(slave);
    if let Some(e) = failed {
        wait(pid);
        return Err(setup_error(e));
    }
    let kept = match &master {
        Some(m) => Some(
            m.try_clone()
                .map_err(|e| io_error("duplicating the pty master", &e))?,
        ),
        None => None,
    };
    Ok(Started {
        pid,
        pty_master: master,
        pty_kept: kept,
    })
}

/// Reaps one child that has exited (a file operation's, or a failed exec's).
fn wait(pid: i32) {
    let mut status = 0;
    // SAFETY: status is a valid, writable c_int for waitpid to fill.
    #[allow(unsafe_code)]
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && Errno::last() == Errno::EINTR {}
}

/// What a file operation produced (fds are numbers in init's table: CLONE_FILES).
enum FileOut {
    Ok,
    Fd(RawFd),
    Stat(CtlEntry),
    Listing(Vec<CtlEntry>, bool),
    Watching(RawFd, Vec<(i32, String)>),
}

/// Runs a file operation in a confined child. Returns the reply and the fds to send.
pub(crate) fn file_op(env: &OpEnv<'_>, op: &CtlOp) -> (CtlReply, Vec<OwnedFd>) {
    let user = match op {
        CtlOp::Open { user, .. }
        | CtlOp::Stat { user, .. }
        | CtlOp::List { user, .. }
        | CtlOp::Mkdir { user, .. }
        | CtlOp::Remove { user, .. }
        | CtlOp::Rename { user, .. }
        | CtlOp::Watch { user, .. } => *user,
        _ => return (invalid("not a file operation"), Vec::new()),
    };
    let confine = env.confine(user);
    let mut result: Option<Result<FileOut, SetupError>> = None;
    let started = child::clone_vfork(libc::CLONE_FILES, &mut || {
        let run = || -> Result<FileOut, SetupError> {
            nix::sys::stat::umask(Mode::empty());
            child::confine(&confine, None)?;
            perform(op)
        };
        // Written into init's memory (CLONE_VM); init reads it once this exits.
        result = Some(run());
        child::exit(0)
    });
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => return (io_error("starting the file operation", &e), Vec::new()),
    };
    wait(pid);
    let own = |fd: RawFd| {
        // SAFETY: the child opened this fd in init's table (CLONE_FILES) and handed
        // it over; nothing else owns it.
        #[allow(unsafe_code)]
        unsafe {
            OwnedFd::from_raw_fd(fd)
        }
    };
    match result {
        None => (
            error(CtlErrorKind::Failed, 0, "the file operation died".into()),
            Vec::new(),
        ),
        Some(Err(e)) => (setup_error(e), Vec::new()),
        Some(Ok(out)) => match out {
            FileOut::Ok => (CtlReply::Ok, Vec::new()),
            FileOut::Fd(fd) => (CtlReply::Opened, vec![own(fd)]),
            FileOut::Stat(entry) => (CtlReply::Stat { entry }, Vec::new()),
            FileOut::Listing(entries, truncated) => {
                (CtlReply::Listing { entries, truncated }, Vec::new())
            }
            FileOut::Watching(fd, watches) => (CtlReply::Watching { watches }, vec![own(fd)]),
        },
    }
}

fn path_c(p: &str) -> Result<CString, SetupError> {
    if !p.starts_with('/') {
        return Err((
            libc::EINVAL,
            format!("{p:?} is not an absolute path in the sandbox"),
        ));
    }
    CString::new(p).map_err(|_| (libc::EINVAL, "the path contains a NUL byte".into()))
}

fn err_at(what: &str, path: &str) -> impl Fn(Errno) -> SetupError {
    let label = format!("{what} {path}");
    move |e| (e as i32, format!("{label}: {}", e.desc()))
}

/// The operation itself, in the confined child.
fn perform(op: &CtlOp) -> Result<FileOut, SetupError> {
    match op {
        CtlOp::Open {
            path, access, mode, ..
        } => open(path, *access, *mode).map(FileOut::Fd),
        CtlOp::Stat { path, .. } => {
            let c = path_c(path)?;
            let st = nix::sys::stat::lstat(c.as_c_str()).map_err(err_at("stat", path))?;
            let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("/");
            Ok(FileOut::Stat(entry(name, &st, || {
                nix::fcntl::readlink(c.as_c_str()).ok()
            })))
        }
        CtlOp::List { path, limit, .. } => list(path, *limit),
        CtlOp::Mkdir {
            path,
            parents,
            mode,
            ..
        } => mkdir(path, *parents, *mode).map(|()| FileOut::Ok),
        CtlOp::Remove {
            path, recursive, ..
        } => remove(path, *recursive).map(|()| FileOut::Ok),
        CtlOp::Rename { from, to, .. } => {
            let (f, t) = (path_c(from)?, path_c(to)?);
            nix::fcntl::renameat(AT_FDCWD, f.as_c_str(), AT_FDCWD, t.as_c_str())
                .map_err(err_at("rename", from))?;
            Ok(FileOut::Ok)
        }
        CtlOp::Watch {
            path, recursive, ..
        } => watch(path, *recursive),
        _ => Err((libc::EINVAL, "not a file operation".into())),
    }
}

fn open(path: &str, access: OpenAccess, mode: u32) -> Result<RawFd, SetupError> {
    let c = path_c(path)?;
    let base = match access {
        OpenAccess::Read => libc::O_RDONLY,
        OpenAccess::Create => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        OpenAccess::Append => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
    };
    // O_NONBLOCK: opening a fifo must not hang (it is refused below anyway).
    let flags = base | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    // SAFETY: open_how is plain old data; all-zero is valid (and the kernel's default).
    #[allow(unsafe_code)]
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    if base & libc::O_CREAT != 0 {
        how.mode = (mode & 0o7777) as u64;
    }
    // /proc/*/fd/N and similar links would lead out of the path walk (to fds of this
    // process, which shares init's table): never followed.
    how.resolve = libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: c is a NUL-terminated path and how a valid open_how of the given size.
    #[allow(unsafe_code)]
    let raw = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if raw < 0 {
        return Err(err_at("open", path)(Errno::last()));
    }
    // SAFETY: openat2 just returned this descriptor.
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    let st = nix::sys::stat::fstat(&fd).map_err(err_at("stat", path))?;
    if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) != SFlag::S_IFREG {
        return Err((
            libc::EINVAL,
            format!("{path} is not a regular file; only regular files can be opened"),
        ));
    }
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFL(OFlag::from_bits_truncate(base & libc::O_APPEND)),
    )
    .map_err(err_at("fcntl", path))?;
    use std::os::fd::IntoRawFd;
    Ok(fd.into_raw_fd())
}

fn kind_of(st: &FileStat) -> EntryKind {
    match SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) {
        SFlag::S_IFREG => EntryKind::File,
        SFlag::S_IFDIR => EntryKind::Dir,
        SFlag::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

fn entry(name: &str, st: &FileStat, target: impl Fn() -> Option<std::ffi::OsString>) -> CtlEntry {
    let kind = kind_of(st);
    CtlEntry {
        name: name.to_string(),
        kind,
        size: st.st_size as u64,
        mode: st.st_mode & 0o7777,
        mtime_unix_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        uid: st.st_uid,
        gid: st.st_gid,
        symlink_target: (kind == EntryKind::Symlink)
            .then(target)
            .flatten()
            .map(|t| t.to_string_lossy().into_owned()),
    }
}

/// Most entries one listing returns (and so the largest reply, well below 256 KiB).
const MAX_LIST: usize = 1000;

fn dir_names(dir: &mut nix::dir::Dir) -> Vec<std::ffi::CString> {
    dir.iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect()
}

fn list(path: &str, limit: u32) -> Result<FileOut, SetupError> {
    let c = path_c(path)?;
    let mut dir = nix::dir::Dir::open(
        c.as_c_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err_at("list", path))?;
    let mut names = dir_names(&mut dir);
    names.sort();
    let limit = (limit as usize).min(MAX_LIST);
    let truncated = names.len() > limit;
    names.truncate(limit);
    let dfd = dir.as_raw_fd();
    let mut entries = Vec::with_capacity(names.len());
    for n in &names {
        // SAFETY: dfd is the open directory fd of `dir`, alive for this loop.
        #[allow(unsafe_code)]
        let d = unsafe { std::os::fd::BorrowedFd::borrow_raw(dfd) };
        let Ok(st) = nix::sys::stat::fstatat(d, n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue; // removed meanwhile
        };
        let name = n.to_string_lossy();
        entries.push(entry(&name, &st, || {
            nix::fcntl::readlinkat(d, n.as_c_str()).ok()
        }));
    }
    Ok(FileOut::Listing(entries, truncated))
}

fn mkdir(path: &str, parents: bool, mode: u32) -> Result<(), SetupError> {
    let c = path_c(path)?;
    let mode = Mode::from_bits_truncate(mode & 0o7777);
    if !parents {
        return nix::unistd::mkdir(c.as_c_str(), mode).map_err(err_at("mkdir", path));
    }
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        let p = path_c(&prefix)?;
        match nix::unistd::mkdir(p.as_c_str(), mode) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = nix::sys::stat::stat(p.as_c_str()).map_err(err_at("stat", &prefix))?;
                if kind_of(&st) != EntryKind::Dir {
                    return Err(err_at("mkdir", &prefix)(Errno::ENOTDIR));
                }
            }
            Err(e) => return Err(err_at("mkdir", &prefix)(e)),
        }
    }
    Ok(())
}

/// Deepest directory tree `remove` walks.
const MAX_DEPTH: usize = 1000;

fn remove(path: &str, recursive: bool) -> Result<(), SetupError> {
    let c = path_c(path)?;
    let st = nix::sys::stat::lstat(c.as_c_str()).map_err(err_at("remove", path))?;
    if kind_of(&st) != EntryKind::Dir {
        return nix::unistd::unlink(c.as_c_str()).map_err(err_at("remove", path));
    }
    if recursive {
        let dir = nix::fcntl::open(
            c.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(err_at("remove", path))?;
        empty_dir(dir, 0).map_err(err_at("remove", path))?;
    }
    nix::unistd::unlinkat(
        AT_FDCWD,
        c.as_c_str(),
        nix::unistd::UnlinkatFlags::RemoveDir,
    )
    .map_err(err_at("remove", path))
}

/// Removes everything in `dir`, never following a symlink (each level is opened with
/// O_NOFOLLOW relative to its parent's fd).
fn empty_dir(dir: OwnedFd, depth: usize) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::ELOOP);
    }
    let mut d = nix::dir::Dir::from_fd(dir)?;
    let names = dir_names(&mut d);
    let dfd = d.as_raw_fd();
    // SAFETY: dfd is the open directory fd of `d`, which outlives every use below.
    #[allow(unsafe_code)]
    let parent = unsafe { std::os::fd::BorrowedFd::borrow_raw(dfd) };
    for n in &names {
        let st = nix::sys::stat::fstatat(parent, n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if kind_of(&st) == EntryKind::Dir {
            let sub = nix::fcntl::openat(
                parent,
                n.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            empty_dir(sub, depth + 1)?;
            nix::unistd::unlinkat(parent, n.as_c_str(), nix::unistd::UnlinkatFlags::RemoveDir)?;
        } else {
            nix::unistd::unlinkat(
                parent,
                n.as_c_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )?;
        }
    }
    Ok(())
}

/// Most watches one `watch` sets.
const MAX_WATCHES: usize = 1000;

fn watch(path: &str, recursive: bool) -> Result<FileOut, SetupError> {
    path_c(path)?;
    // SAFETY: inotify_init1 takes flags only and returns a new descriptor.
    #[allow(unsafe_code)]
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if raw < 0 {
        return Err(err_at("inotify", path)(Errno::last()));
    }
    // SAFETY: inotify_init1 just returned this descriptor.
    #[allow(unsafe_code)]
    let ino = unsafe { OwnedFd::from_raw_fd(raw) };
    let mask = libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MODIFY
        | libc::IN_CLOSE_WRITE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO
        | libc::IN_ATTRIB
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF
        | libc::IN_ONLYDIR
        | libc::IN_DONT_FOLLOW;
    let mut watches = Vec::new();
    let top = match path.trim_end_matches('/') {
        "" => "/".to_string(),
        t => t.to_string(),
    };
    let mut pending = vec![top];
    while let Some(dir) = pending.pop() {
        if watches.len() >= MAX_WATCHES {
            break;
        }
        let Ok(c) = CString::new(dir.as_str()) else {
            continue;
        };
        // SAFETY: ino is an open inotify fd and c a NUL-terminated path.
        #[allow(unsafe_code)]
        let wd = unsafe { libc::inotify_add_watch(ino.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            // The top directory must be watchable; a subdirectory may have vanished.
            if watches.is_empty() {
                return Err(err_at("watch", &dir)(Errno::last()));
            }
            continue;
        }
        watches.push((wd, dir.clone()));
        if !recursive {
            break;
        }
        let Ok(mut d) = nix::dir::Dir::open(
            c.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let dfd = d.as_raw_fd();
        for n in dir_names(&mut d) {
            // SAFETY: dfd is the open directory fd of `d`, alive for this loop.
            #[allow(unsafe_code)]
            let parent = unsafe { std::os::fd::BorrowedFd::borrow_raw(dfd) };
            let is_dir =
                nix::sys::stat::fstatat(parent, n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map(|st| kind_of(&st) == EntryKind::Dir)
                    .unwrap_or(false);
            if is_dir {
                let base = if dir == "/" { "" } else { dir.as_str() };
                pending.push(format!("{base}/{}", n.to_string_lossy()));
            }
        }
    }
    use std::os::fd::IntoRawFd;
    Ok(FileOut::Watching(ino.into_raw_fd(), watches))
}

//! Session sandboxes end to end (root only): start_session from a forked,
//! single-threaded helper (cargo runs tests on threads; start_session refuses those),
//! then drive init over the ctl protocol as the daemon would.

// Test helpers panic on failure by design.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use corral_isolate::ctl::{
    CtlConn, CtlErrorKind, CtlMessage, CtlOp, CtlReply, CtlRequest, EntryKind, OpenAccess, Stdio,
};
use corral_isolate::{
    start_session, Bind, Cgroup, Limits, RealCgroupFs, RootfsSpec, SandboxUser, SessionSpec,
};

static N: AtomicU32 = AtomicU32::new(0);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A template root: users, groups and /usr-merged links; /usr is bound from the host.
fn template(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000::/home/sandbox:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\ntty:x:5:\nsandbox:x:1000:\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/shadow"), "root:sandbox-fake-shadow:1::::::\n").unwrap();
    for l in ["bin", "lib", "lib64", "sbin"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), dir.join(l)).unwrap();
    }
    std::fs::create_dir_all(dir.join("usr")).unwrap();
}

struct Sbx {
    dir: PathBuf,
    sock: PathBuf,
    conn: CtlConn,
    pid: i32,
    cgroup: String,
    req: u64,
    events: Vec<(u64, i32)>,
}

fn spawn(deadline: Option<u64>) -> Sbx {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("corral-session-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    template(&dir.join("root"));
    let sock = dir.join("ctl.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // UnixListener is SOCK_STREAM; the protocol needs SOCK_SEQPACKET.
    drop(listener);
    let _ = std::fs::remove_file(&sock);
    let listener = seqpacket_listener(&sock);
    let cgroup = format!("corral-test-{}-{n}", std::process::id());
    let spec = SessionSpec {
        rootfs: RootfsSpec {
            lower: dir.join("root"),
            ro_binds: vec![Bind {
                source: "/usr".into(),
                target: "/usr".into(),
                writable: false,
            }],
            layers: vec![],
        },
        mounts: vec![],
        limits: Limits::default(),
        hostname: "sbx".into(),
        skip_layers: vec![],
        runtime_dir: dir.join("run"),
        cgroup_parent: String::new(),
        cgroup_name: cgroup.clone(),
        id_map_base: 200_000,
        deadline_unix_ms: deadline,
        netns: None,
    };
    let (r, w) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only calls start_session, writes 4 bytes and _exits;
    // glibc's fork makes malloc usable in the child of a multi-threaded process.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let out = match start_session(&spec, listener) {
            Ok(s) => s.init_pid,
            Err(e) => {
                eprintln!("start_session: {}", corral_isolate::error_chain(&e));
                -1
            }
        };
        let _ = nix::unistd::write(&w, &out.to_le_bytes());
        // SAFETY: ends the forked helper without running the test harness's exit code.
        unsafe { libc::_exit(0) };
    }
    drop(w);
    drop(listener);
    let mut f = std::fs::File::from(r);
    let mut b = [0u8; 4];
    f.read_exact(&mut b).unwrap();
    let mut st = 0;
    // SAFETY: st is a valid, writable c_int.
    unsafe { libc::waitpid(child, &mut st, 0) };
    let pid = i32::from_le_bytes(b);
    assert!(pid > 0, "start_session failed");
    let conn = CtlConn::connect(&sock).unwrap();
    Sbx {
        dir,
        sock,
        conn,
        pid,
        cgroup,
        req: 0,
        events: vec![],
    }
}

fn seqpacket_listener(path: &Path) -> UnixListener {
    corral_isolate::ctl::listen(path).unwrap()
}

fn wait_readable(fd: BorrowedFd<'_>, ms: u16) -> bool {
    use nix::poll::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, ms).unwrap() > 0
}

impl Sbx {
    fn recv(&mut self) -> (CtlMessage, Vec<OwnedFd>) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match self.conn.recv() {
                Ok(m) => return m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < until, "no message from init");
                    wait_readable(self.conn.as_fd(), 1000);
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    fn call(&mut self, op: CtlOp, fds: &[BorrowedFd<'_>]) -> (CtlReply, Vec<OwnedFd>) {
        self.req += 1;
        let req = self.req;
        self.conn.send(&CtlRequest { req, op }, fds).unwrap();
        loop {
            match self.recv() {
                (CtlMessage::Reply { req: r, reply }, fds) if r == req => return (reply, fds),
                (CtlMessage::Exited { id, status, .. }, _) => self.events.push((id, status)),
                (other, _) => panic!("unexpected {other:?}"),
            }
        }
    }

    fn wait_exit(&mut self, id: u64) -> i32 {
        loop {
            if let Some(i) = self.events.iter().position(|(e, _)| *e == id) {
                return self.events.remove(i).1;
            }
            match self.recv() {
                (CtlMessage::Exited { id, status, .. }, _) => self.events.push((id, status)),
                (other, _) => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Starts argv with pipes; returns the read ends of stdout and stderr.
    fn start(
        &mut self,
        id: u64,
        argv: &[&str],
        user: SandboxUser,
        cwd: Option<&str>,
    ) -> Result<(OwnedFd, OwnedFd), CtlReply> {
        let (in_r, in_w) = nix::unistd::pipe().unwrap();
        drop(in_w);
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let (err_r, err_w) = nix::unistd::pipe().unwrap();
        let op = CtlOp::Exec {
            id,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: cwd.map(String::from),
            user,
            stdio: Stdio::Pipes,
        };
        let (reply, _) = self.call(op, &[in_r.as_fd(), out_w.as_fd(), err_w.as_fd()]);
        match reply {
            CtlReply::Started { id: i, pid } if i == id && pid > 1 => Ok((out_r, err_r)),
            other => Err(other),
        }
    }

    fn run(&mut self, argv: &[&str], user: SandboxUser) -> (i32, String, String) {
        self.req += 1000;
        let id = self.req;
        let (out, err) = self.start(id, argv, user, None).unwrap();
        let mut o = String::new();
        std::fs::File::from(out).read_to_string(&mut o).unwrap();
        let mut e = String::new();
        std::fs::File::from(err).read_to_string(&mut e).unwrap();
        let status = self.wait_exit(id);
        (status, o, e)
    }

    fn ok(&mut self, op: CtlOp) {
        let (r, _) = self.call(op, &[]);
        assert_eq!(r, CtlReply::Ok);
    }

    fn shutdown_and_clean(mut self) {
        self.ok(CtlOp::Shutdown);
        wait_gone(self.pid);
        if let Ok(cg) = Cgroup::<RealCgroupFs>::open_existing("", &self.cgroup) {
            cg.destroy().unwrap();
        }
        assert!(!Path::new("/sys/fs/cgroup/memory")
            .join(&self.cgroup)
            .exists());
    }
}

impl Drop for Sbx {
    /// A failed test still removes its sandbox (thawed first: a frozen one cannot die).
    fn drop(&mut self) {
        let cg = Cgroup::<RealCgroupFs>::open_existing("", &self.cgroup).ok();
        if let Some(cg) = &cg {
            let _ = cg.thaw();
        }
        let cmd = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        if cmd.starts_with(b"corral-init") {
            // SAFETY: kill takes plain integers; the pid is this test's sandbox init.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let until = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{}/cmdline", self.pid)).exists()
                && std::fs::read(format!("/proc/{}/cmdline", self.pid))
                    .map(|c| !c.is_empty())
                    .unwrap_or(false)
                && Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(cg) = cg {
            let _ = cg.destroy();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `pid` is gone (reaped by whoever its parent is now).
fn wait_gone(pid: i32) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z") {
            return;
        }
        assert!(Instant::now() < until, "init {pid} still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SB: SandboxUser = SandboxUser::Sandbox;

#[test]
fn exec_reports_output_status_and_errors() {
    if !is_root() {
        return;
    }
    let mut s = spawn(None);
    assert_eq!(s.call(CtlOp::Ping, &[]).0, CtlReply::Pong);
    let (st, out, err) = s.run(&["sh", "-c", "echo hi; echo err >&2; exit 3"], SB);
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 3, "{st}");
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", "err\n"));
    let (st, _, err) = s.run(&["no-such-command"], SB);
    assert_eq!(libc::WEXITSTATUS(st), 127);
    assert_eq!(
        err,
        "corral: command not found in the sandbox: no-such-command\n"
    );
    match s.start(77, &["true"], SB, Some("/no/such/dir")) {
        Err(CtlReply::Error { kind, .. }) => assert_eq!(kind, CtlErrorKind::NotFound),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(s.run(&["id", "-u"], SB).1, "1000\n");
    assert_eq!(s.run(&["id", "-u"], SandboxUser::Root).1, "0\n");
    assert_eq!(s.run(&["pwd"], SB).1, "/home/sandbox\n");
    // Two at once, and a signal to one of them.
    let (o1, _) = s.start(1, &["sleep", "100"], SB, None).unwrap();
    let (o2, _) = s.start(2, &["sh", "-c", "echo two"], SB, None).unwrap();
    let mut t = String::new();
    std::fs::File::from(o2).read_to_string(&mut t).unwrap();
    assert_eq!(t, "two\n");
    assert_eq!(s.wait_exit(2), 0);
    s.ok(CtlOp::Signal {
        id: 1,
        signal: libc::SIGKILL,
    });
    let st = s.wait_exit(1);
    assert!(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL);
    drop(o1);
    s.shutdown_and_clean();
}

fn open(s: &mut Sbx, path: &str, access: OpenAccess) -> Result<std::fs::File, CtlReply> {
    match s.call(
        CtlOp::Open {
            path: path.into(),
            access,
            mode: 0o644,
            user: SB,
        },
        &[],
    ) {
        (CtlReply::Opened, mut fds) => Ok(std::fs::File::from(fds.remove(0))),
        (other, _) => Err(other),
    }
}

#[test]
fn files_are_reached_only_inside_the_sandbox() {
    if !is_root() {
        return;
    }
    let mut s = spawn(None);
    let mut f = open(&mut s, "/home/sandbox/a.txt", OpenAccess::Create).unwrap();
    f.write_all(b"payload").unwrap();
    drop(f);
    let mut back = String::new();
    open(&mut s, "/home/sandbox/a.txt", OpenAccess::Read)
        .unwrap()
        .read_to_string(&mut back)
        .unwrap();
    assert_eq!(back, "payload");
    let CtlReply::Stat { entry } = s
        .call(
            CtlOp::Stat {
                path: "/home/sandbox/a.txt".into(),
                user: SB,
            },
            &[],
        )
        .0
    else {
        panic!("stat")
    };
    assert_eq!(
        (entry.uid, entry.kind, entry.size, entry.mode),
        (1000, EntryKind::File, 7, 0o644)
    );
    // The sandbox user cannot write outside its writable places.
    assert!(matches!(
        open(&mut s, "/etc/x", OpenAccess::Create),
        Err(CtlReply::Error {
            kind: CtlErrorKind::PermissionDenied,
            ..
        })
    ));
    // Non-regular files are refused (a fifo would hang).
    assert!(matches!(
        open(&mut s, "/dev/zero", OpenAccess::Read),
        Err(CtlReply::Error {
            kind: CtlErrorKind::Invalid,
            ..
        })
    ));
    // mkdir, list, rename, remove.
    s.ok(CtlOp::Mkdir {
        path: "/home/sandbox/d/e/f".into(),
        parents: true,
        mode: 0o755,
        user: SB,
    });
    s.ok(CtlOp::Rename {
        from: "/home/sandbox/a.txt".into(),
        to: "/home/sandbox/d/b.txt".into(),
        user: SB,
    });
    let CtlReply::Listing { entries, truncated } = s
        .call(
            CtlOp::List {
                path: "/home/sandbox/d".into(),
                user: SB,
                limit: 10,
            },
            &[],
        )
        .0
    else {
        panic!("list")
    };
    let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(names, [("b.txt", EntryKind::File), ("e", EntryKind::Dir)]);
    assert!(!truncated);
    let (r, _) = s.call(
        CtlOp::Remove {
            path: "/home/sandbox/d".into(),
            recursive: false,
            user: SB,
        },
        &[],
    );
    assert!(matches!(r, CtlReply::Error { .. }), "{r:?}");
    s.ok(CtlOp::Remove {
        path: "/home/sandbox/d".into(),
        recursive: true,
        user: SB,
    });
    let (r, _) = s.call(
        CtlOp::Stat {
            path: "/home/sandbox/d".into(),
            user: SB,
        },
        &[],
    );
    assert!(matches!(
        r,
        CtlReply::Error {
            kind: CtlErrorKind::NotFound,
            ..
        }
    ));
    // Watch sees a created file.
    let (r, fds) = s.call(
        CtlOp::Watch {
            path: "/tmp".into(),
            recursive: true,
            user: SB,
        },
        &[],
    );
    let CtlReply::Watching { watches } = r else {
        panic!("{r:?}")
    };
    assert_eq!(watches[0].1, "/tmp");
    let ino = fds.into_iter().next().unwrap();
    drop(open(&mut s, "/tmp/new", OpenAccess::Create).unwrap());
    assert!(wait_readable(ino.as_fd(), 5000));
    let mut buf = [0u8; 4096];
    let n = nix::unistd::read(&ino, &mut buf).unwrap();
    assert!(buf[..n].windows(3).any(|w| w == b"new"));
    // The upper dir fd is the writable layer: /tmp/new is not in it (tmpfs), the
    // renamed-away file's home directory is.
    let (r, fds) = s.call(CtlOp::UpperDir, &[]);
    assert_eq!(r, CtlReply::Opened);
    let upper = format!("/proc/self/fd/{}", fds[0].as_raw_fd());
    assert!(Path::new(&upper).join("home/sandbox").is_dir());
    s.shutdown_and_clean();
}

#[test]
fn host_files_are_out_of_reach_of_every_path() {
    if !is_root() {
        return;
    }
    let mut s = spawn(None);
    let secret = format!("host-secret-{}", std::process::id());
    let host_file = s.dir.join("secret.txt");
    std::fs::write(&host_file, &secret).unwrap();
    let hp = host_file.to_string_lossy().into_owned();
    // A symlink made inside the sandbox by its own user.
    let (st, _, _) = s.run(&["ln", "-s", &hp, "/tmp/link"], SB);
    assert_eq!(st, 0);
    let (st, _, _) = s.run(&["ln", "-s", "/etc/shadow", "/tmp/shadow"], SB);
    assert_eq!(st, 0);
    for p in [
        hp.clone(),
        format!("/proc/1/root{hp}"),
        format!("/../../..{hp}"),
        format!("/proc/{}/root{hp}", s.pid),
        "/tmp/link".into(),
        "/proc/self/fd/0".into(),
        "/proc/1/fd/3".into(),
        "/proc/1/cwd/etc/passwd".into(),
    ] {
        if let Ok(mut f) = open(&mut s, &p, OpenAccess::Read) {
            let mut got = String::new();
            let _ = f.read_to_string(&mut got);
            assert!(!got.contains(&secret), "{p} reached the host file");
        }
    }
    // The sandbox's own /etc/shadow (template) is what a symlink reaches, never the
    // host's; and the uid 1000 user can read it only if the template allows.
    if let Ok(mut f) = open(&mut s, "/tmp/shadow", OpenAccess::Read) {
        let mut got = String::new();
        f.read_to_string(&mut got).unwrap();
        assert!(got.contains("sandbox-fake-shadow"), "{got}");
    }
    s.shutdown_and_clean();
}

#[test]
fn pty_exec_gets_a_terminal() {
    if !is_root() {
        return;
    }
    let mut s = spawn(None);
    let op = CtlOp::Exec {
        id: 9,
        argv: vec!["sh".into(), "-c".into(), "tty; stty size".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: None,
        user: SB,
        stdio: Stdio::Pty {
            rows: 33,
            cols: 101,
        },
    };
    let (r, fds) = s.call(op, &[]);
    assert!(matches!(r, CtlReply::Started { id: 9, .. }), "{r:?}");
    let mut master = std::fs::File::from(fds.into_iter().next().unwrap());
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // EIO once the slave side is closed.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("/dev/pts/"), "{out}");
    assert!(out.contains("33 101"), "{out}");
    assert_eq!(s.wait_exit(9), 0);
    s.shutdown_and_clean();
}

#[test]
fn deadline_in_the_past_ends_init() {
    if !is_root() {
        return;
    }
    let mut s = spawn(None);
    let (_o, _e) = s.start(1, &["sleep", "100"], SB, None).unwrap();
    s.ok(CtlOp::SetDeadline { unix_ms: Some(1) });
    wait_gone(s.pid);
    Cgroup::<RealCgroupFs>::open_existing("", &s.cgroup)
        .unwrap()
        .destroy()
        .unwrap();
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[test]
fn a_new_client_replaces_the_old_and_gets_queued_exits() {
    if !is_root() {
        return;
    }
    let mut s = spawn(None);
    let (_o, _e) = s
        .start(5, &["sh", "-c", "sleep 0.3; exit 4"], SB, None)
        .unwrap();
    // A second connection replaces the first, which init closes.
    let second = CtlConn::connect(&s.sock).unwrap();
    assert!(wait_readable(s.conn.as_fd(), 5000));
    match s.conn.recv() {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        other => panic!("{other:?}"),
    }
    // No client at all while the process exits: the event is queued.
    drop(second);
    std::thread::sleep(Duration::from_millis(800));
    s.conn = CtlConn::connect(&s.sock).unwrap();
    let st = s.wait_exit(5);
    assert_eq!(libc::WEXITSTATUS(st), 4);
    s.shutdown_and_clean();
}

#[test]
fn a_session_can_be_frozen_and_thawed() {
    if !is_root() {
        return;
    }
    let mut s = spawn(None);
    let (_o, _e) = s.start(1, &["sleep", "100"], SB, None).unwrap();
    let cg = Cgroup::<RealCgroupFs>::open_existing("", &s.cgroup).unwrap();
    cg.freeze().unwrap();
    // Init is frozen too (it is in the cgroup): only the kernel's word here.
    let state = Path::new("/sys/fs/cgroup/freezer")
        .join(&s.cgroup)
        .join("freezer.state");
    assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "FROZEN");
    cg.thaw().unwrap();
    assert_eq!(s.call(CtlOp::Ping, &[]).0, CtlReply::Pong);
    s.shutdown_and_clean();
}

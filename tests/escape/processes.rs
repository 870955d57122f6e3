//! Host processes: not visible, not signallable; the sandbox's init is off limits too.

#[allow(unused_imports)]
use super::probe::*;

/// /proc inside lists only the sandbox's processes: pid 1 is corral's init and the probe
/// itself, nothing else; the test's own (host) pid does not exist there (ESRCH).
#[test]
fn host_processes_are_invisible() {
    let env = Env::new();
    let host_pid = std::process::id();
    assert!(
        host_pid > 2,
        "the host pid must not look like a sandbox pid"
    );
    let body = r#"
        host_pid = int(sys.argv[1])
        pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
        print('pids', pids == [1, os.getpid()], pids)
        print('init', open('/proc/1/comm').read().strip())
        print('ppid', os.getppid())
        print('host_pid_listed', os.path.exists('/proc/%d' % host_pid))
        t('kill0_host_pid', lambda: os.kill(host_pid, 0))
        t('kill9_host_pid', lambda: os.kill(host_pid, 9))
        t('pidfd_open_host_pid', lambda: os.pidfd_open(host_pid))
    "#;
    let v = py(&env, &[], body, &[&host_pid.to_string()]);
    let got = outcomes(&v);
    assert!(got["pids"].starts_with("True "), "{v}");
    expect(
        &v,
        &[
            ("init", "corral"),
            ("ppid", "1"),
            ("host_pid_listed", "False"),
            ("kill0_host_pid", "ESRCH"),
            ("kill9_host_pid", "ESRCH"),
            ("pidfd_open_host_pid", "ESRCH"),
        ],
    );
}

/// A host process running as the very host uid the sandbox user maps to can be neither
/// signalled by pid (ESRCH) nor reached by kill(-1, SIGKILL), which only kills the
/// sandbox's own child: it is still alive afterwards.
fn host_signal_probe(opts: &[&str], host_uid: u32) {
    let env = Env::new();
    let mut sleeper = HostChild(
        Command::new("/bin/sleep")
            .arg("30")
            .uid(host_uid)
            .gid(host_uid)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = sleeper.0.id().to_string();
    let body = r#"
        import subprocess
        host_pid = int(sys.argv[1])
        child = subprocess.Popen(['/bin/sleep', '30'])
        t('kill9_host_pid', lambda: os.kill(host_pid, 9))
        t('pidfd_open_host_pid', lambda: os.pidfd_open(host_pid))
        t('kill9_all', lambda: os.kill(-1, 9))
        t('own_child', lambda: child.wait(10))
    "#;
    let v = py(&env, opts, body, &[&pid]);
    expect(
        &v,
        &[
            ("kill9_host_pid", "ESRCH"),
            ("pidfd_open_host_pid", "ESRCH"),
            ("kill9_all", "ok"),
            ("own_child", "-9"),
        ],
    );
    assert!(
        sleeper.0.try_wait().unwrap().is_none(),
        "the host process (uid {host_uid}) was killed from inside the sandbox"
    );
}

#[test]
fn host_processes_cannot_be_signalled() {
    host_signal_probe(&[], HOST_UID_SANDBOX);
}

/// Root inside has CAP_KILL in its user namespace, and the host process runs as the
/// host uid root inside maps to: the pid namespace alone keeps it out of reach.
#[test]
fn host_processes_cannot_be_signalled_as_root() {
    host_signal_probe(ROOT, HOST_UID_ROOT);
}

const INIT_PROBE: &str = r#"
    import signal
    for s in (0, 9, 15, 19):
        t('kill_init_%d' % s, lambda: os.kill(1, s))
    t('pidfd_signal_init', lambda: signal.pidfd_send_signal(os.pidfd_open(1), 9))
    print('ptrace_attach_init', sc(101, 16, 1, 0, 0))
    t('init_environ', lambda: open('/proc/1/environ', 'rb').read())
    t('init_mem', lambda: open('/proc/1/mem', 'rb').read(1))
    t('init_root', lambda: os.listdir('/proc/1/root/'))
    t('init_cwd', lambda: os.listdir('/proc/1/cwd/'))
    t('init_exe', lambda: os.readlink('/proc/1/exe'))
    t('init_fd', lambda: os.listdir('/proc/1/fd'))
    t('init_ns', lambda: os.open('/proc/1/ns/user', os.O_RDONLY))
"#;

const INIT_EXPECTED: &[(&str, &str)] = &[
    ("kill_init_0", "EPERM"),
    ("kill_init_9", "EPERM"),
    ("kill_init_15", "EPERM"),
    ("kill_init_19", "EPERM"),
    ("pidfd_signal_init", "EPERM"),
    ("ptrace_attach_init", "EPERM"),
    ("init_environ", "EACCES"),
    ("init_mem", "EACCES"),
    ("init_root", "EACCES"),
    ("init_cwd", "EACCES"),
    ("init_exe", "EACCES"),
    ("init_fd", "EACCES"),
    ("init_ns", "EACCES"),
];

/// corral's init (pid 1) runs outside the command's seccomp/Landlock domain: the command
/// cannot signal it (Landlock signal scoping: EPERM, even signal 0), trace it (seccomp:
/// EPERM) or read its memory, environment, root, fds or namespaces (it is not
/// dumpable: EACCES).
#[test]
fn init_cannot_be_signalled_traced_or_read() {
    let v = py(&Env::new(), &[], INIT_PROBE, &[]);
    expect(&v, INIT_EXPECTED);
}

#[test]
fn init_cannot_be_signalled_traced_or_read_as_root() {
    let v = py(&Env::new(), ROOT, INIT_PROBE, &[]);
    expect(&v, INIT_EXPECTED);
}

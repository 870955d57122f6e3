//! Sandboxes next to each other.

#[allow(unused_imports)]
use super::probe::*;

/// Sandbox A holds a file in /tmp and /dev/shm, an abstract socket, a SysV shared memory
/// segment and a running process, all named by a marker; sandbox B, started while A
/// runs, finds none of them (ENOENT, ECONNREFUSED, no such process).
#[test]
fn concurrent_sandboxes_cannot_see_each_other() {
    let env = Env::new();
    let mark = marker("neighbour");
    let key = (0x5eed_0000 + (std::process::id() % 0xffff)).to_string();
    let body_a = r#"
        mark, key = sys.argv[1], int(sys.argv[2])
        open('/tmp/' + mark, 'w').write('a')
        open('/dev/shm/' + mark, 'w').write('a')
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind('\0' + mark)
        s.listen(1)
        shm = libc.shmget(key, 4096, 0o1000 | 0o600)
        print('ready', shm >= 0, flush=True)
        sys.stdin.read()
    "#;
    let code_a = format!("{PRELUDE}\n{}", dedent(body_a));
    let mut a = env.cmd();
    a.args([
        "run",
        "--stdin",
        "--timeout",
        "60s",
        "--",
        "/usr/bin/python3",
        "-c",
        &code_a,
        &mark,
        &key,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    let mut a = HostChild(a.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(a.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready True", "sandbox A did not get ready");
    assert!(
        !host_processes_with(&mark).is_empty(),
        "sandbox A is not running"
    );

    let body_b = r#"
        # The marker comes reversed so that B's own command line (which its init, pid 1,
        # shows too) does not contain it.
        mark, key = sys.argv[1][::-1], int(sys.argv[2])
        t('tmp_file', lambda: open('/tmp/' + mark).read())
        t('shm_file', lambda: open('/dev/shm/' + mark).read())
        t('abstract_socket', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect('\0' + mark))
        ctypes.set_errno(0)
        r = libc.shmget(key, 0, 0)
        print('sysv_shm', 'ok' if r >= 0 else en(ctypes.get_errno()))
        others = []
        for p in os.listdir('/proc'):
            if p.isdigit() and int(p) != os.getpid():
                try:
                    if mark.encode() in open('/proc/%s/cmdline' % p, 'rb').read():
                        others.append(p)
                except OSError:
                    pass
        print('processes', others)
    "#;
    let reversed: String = mark.chars().rev().collect();
    let v = py(&env, &[], body_b, &[&reversed, &key]);
    expect(
        &v,
        &[
            ("tmp_file", "ENOENT"),
            ("shm_file", "ENOENT"),
            ("abstract_socket", "ECONNREFUSED"),
            ("sysv_shm", "ENOENT"),
            ("processes", "[]"),
        ],
    );
    a.0.stdin.as_mut().unwrap().write_all(b"bye\n").unwrap();
    drop(a.0.stdin.take());
    assert!(a.0.wait().unwrap().success(), "sandbox A failed");
}

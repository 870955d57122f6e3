//! Devices.

#[allow(unused_imports)]
use super::probe::*;

const MKNOD_PROBE: &str = r#"
    t('chr_mem', lambda: os.mknod('/tmp/mem', 0o20666, os.makedev(1, 1)))
    t('chr_null', lambda: os.mknod('/tmp/null', 0o20666, os.makedev(1, 3)))
    t('chr_whiteout', lambda: os.mknod('/tmp/wh', 0o20000, os.makedev(0, 0)))
    t('blk_vda', lambda: os.mknod('/tmp/vda', 0o60666, os.makedev(254, 0)))
    t('chr_in_dev', lambda: os.mknod('/dev/mem', 0o20666, os.makedev(1, 1)))
    path = ctypes.create_string_buffer(b'/tmp/hi')
    # umode_t is 16 bits: bits above are dropped by the kernel and must not fool the filter.
    print('chr_highbits', sc(259, -100, A(path), (1 << 32) | 0o20666, os.makedev(1, 1)))
    t('fifo', lambda: os.mknod('/tmp/fifo', 0o10666))
    t('regular', lambda: os.mknod('/tmp/reg', 0o100644))
    t('socket', lambda: os.mknod('/tmp/sock', 0o140644))
    print('created', sorted(os.listdir('/tmp')))
"#;

const MKNOD_EXPECTED: &[(&str, &str)] = &[
    ("chr_mem", "EPERM"),
    ("chr_null", "EPERM"),
    ("chr_whiteout", "EPERM"),
    ("blk_vda", "EPERM"),
    ("chr_in_dev", "EPERM"),
    ("chr_highbits", "EPERM"),
    ("fifo", "ok"),
    ("regular", "ok"),
    ("socket", "ok"),
    ("created", "['fifo', 'reg', 'sock']"),
];

/// mknod of character and block devices (even with junk in the high mode bits) is EPERM
/// from the filter; FIFOs, regular files and sockets still work.
#[test]
fn device_nodes_cannot_be_created() {
    let v = py(&Env::new(), &[], MKNOD_PROBE, &[]);
    expect(&v, MKNOD_EXPECTED);
}

#[test]
fn device_nodes_cannot_be_created_as_root() {
    let v = py(&Env::new(), ROOT, MKNOD_PROBE, &[]);
    expect(&v, MKNOD_EXPECTED);
}

/// There is no /sys at all, and /dev holds exactly the minimal set: no /dev/mem, kmem,
/// port, kmsg, kvm, disks, loop, tun, fuse, console; /dev/pts is a fresh instance with
/// only ptmx; /dev is read-only (EROFS).
#[test]
fn sys_is_absent_and_dev_is_minimal() {
    let body = r#"
        t('sys', lambda: os.listdir('/sys'))
        print('dev', sorted(os.listdir('/dev')))
        print('pts', sorted(os.listdir('/dev/pts')))
        for d in ('mem', 'kmem', 'port', 'kmsg', 'kvm', 'vda', 'sda', 'loop0', 'loop-control',
                  'net/tun', 'fuse', 'console', 'tty0', 'tty1', 'vsock', 'vhost-vsock', 'dri', 'nvidia0'):
            t('open:' + d, lambda: os.close(os.open('/dev/' + d, os.O_RDONLY)))
        t('create_in_dev', lambda: os.close(os.open('/dev/evil', os.O_WRONLY | os.O_CREAT, 0o666)))
        st = os.stat('/dev/null')
        print('null', os.major(st.st_rdev), os.minor(st.st_rdev))
        t('tty', lambda: os.open('/dev/tty', os.O_RDWR))
    "#;
    let v = py(&Env::new(), &[], body, &[]);
    let mut want: Vec<(&str, &str)> = vec![
        ("sys", "ENOENT"),
        (
            "dev",
            "['fd', 'full', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']",
        ),
        ("pts", "['ptmx']"),
        ("create_in_dev", "EROFS"),
        ("null", "1 3"),
        ("tty", "ENXIO"),
    ];
    let devs = [
        "mem",
        "kmem",
        "port",
        "kmsg",
        "kvm",
        "vda",
        "sda",
        "loop0",
        "loop-control",
        "net/tun",
        "fuse",
        "console",
        "tty0",
        "tty1",
        "vsock",
        "vhost-vsock",
        "dri",
        "nvidia0",
    ];
    let keys: Vec<String> = devs.iter().map(|d| format!("open:{d}")).collect();
    want.extend(keys.iter().map(|k| (k.as_str(), "ENOENT")));
    expect(&v, &want);
}

/// TIOCSTI (push characters into a terminal's input: the classic way out to whatever
/// reads that terminal) and TIOCLINUX are EPERM from the filter, also with junk in the
/// upper 32 bits of the request, even on the process's own controlling terminal where
/// this kernel (legacy_tiocsti=1) would allow it, as the unfiltered run shows.
#[test]
fn tiocsti_and_tioclinux_are_denied() {
    let body = r#"
        m = os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY)
        libc.unlockpt(m)
        libc.ptsname.restype = ctypes.c_char_p
        pts = libc.ptsname(m).decode()
        pid = os.fork()
        if pid:
            _, status = os.waitpid(pid, 0)
            sys.exit(os.waitstatus_to_exitcode(status))
        os.setsid()
        s = os.open(pts, os.O_RDWR)  # becomes the controlling terminal
        print('ctty', os.tcgetpgrp(s) == os.getpgrp())
        libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_char_p]
        for name, req in (('tiocsti', 0x5412), ('tiocsti_highbits', (1 << 32) | 0x5412),
                          ('tiocsti_master', 0x5412), ('tioclinux', 0x541C)):
            ctypes.set_errno(0)
            r = libc.ioctl(m if name == 'tiocsti_master' else s, req, b'\x0b')
            print(name, en(ctypes.get_errno()) if r < 0 else 'ok', flush=True)
    "#;
    let env = Env::new();
    let v = py(&env, &[], body, &[]);
    expect(
        &v,
        &[
            ("ctty", "True"),
            ("tiocsti", "EPERM"),
            ("tiocsti_highbits", "EPERM"),
            ("tiocsti_master", "EPERM"),
            ("tioclinux", "EPERM"),
        ],
    );
    let u = outcomes(&py(
        &env,
        &["--dangerously-skip-layer", "seccomp"],
        body,
        &[],
    ));
    assert_ne!(u.get("tiocsti").map(String::as_str), Some("EPERM"), "{u:?}");
    assert!(u.contains_key("tiocsti"), "{u:?}");
}

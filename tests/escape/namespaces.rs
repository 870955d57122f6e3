//! Mounts and namespaces.

#[allow(unused_imports)]
use super::probe::*;

const MOUNT_CALLS: &[&str] = &[
    "mount",
    "mount_real",
    "umount2",
    "umount2_real",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
];

/// Every mount-related system call, old API and new, fails with EPERM from the filter.
#[test]
fn mount_is_denied() {
    let v = syscalls(&Env::new(), &[], MOUNT_CALLS);
    expect_all(&v, MOUNT_CALLS, "EPERM");
}

/// As root too, and the real attacks fail: mounting proc, sysfs, cgroup or a tmpfs,
/// bind-mounting /, remounting /usr read-write (EPERM each); nothing got mounted.
#[test]
fn mount_is_denied_as_root() {
    let env = Env::new();
    let v = syscalls(&env, ROOT, MOUNT_CALLS);
    expect_all(&v, MOUNT_CALLS, "EPERM");
    let body = r#"
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        os.makedirs('/tmp/m', exist_ok=True)
        def mount(src, dst, fs, flags):
            ctypes.set_errno(0)
            r = libc.mount(src, dst, fs, flags, None)
            return 'ok' if r == 0 else en(ctypes.get_errno())
        MS_BIND, MS_REMOUNT, MS_RDONLY, MS_REC = 4096, 32, 1, 16384
        print('proc', mount(b'proc', b'/tmp/m', b'proc', 0))
        print('sysfs', mount(b'sysfs', b'/tmp/m', b'sysfs', 0))
        print('cgroup2', mount(b'cgroup2', b'/tmp/m', b'cgroup2', 0))
        print('cgroup_v1', mount(b'cgroup', b'/tmp/m', b'cgroup', 0))
        print('tmpfs', mount(b'none', b'/tmp/m', b'tmpfs', 0))
        print('bind_root', mount(b'/', b'/tmp/m', None, MS_BIND | MS_REC))
        print('remount_usr_rw', mount(None, b'/usr', None, MS_REMOUNT | MS_BIND))
        print('mounts', len(open('/proc/self/mountinfo').read().splitlines()) == before)
    "#;
    let body = format!(
        "before = len(open('/proc/self/mountinfo').read().splitlines())\n{}",
        dedent(body)
    );
    let v = py(&env, ROOT, &body, &[]);
    expect(
        &v,
        &[
            ("proc", "EPERM"),
            ("sysfs", "EPERM"),
            ("cgroup2", "EPERM"),
            ("cgroup_v1", "EPERM"),
            ("tmpfs", "EPERM"),
            ("bind_root", "EPERM"),
            ("remount_usr_rw", "EPERM"),
            ("mounts", "True"),
        ],
    );
}

const UNSHARE_PROBE: &str = r#"
    flags = {'user': 0x10000000, 'mnt': 0x00020000, 'net': 0x40000000, 'pid': 0x20000000,
             'uts': 0x04000000, 'ipc': 0x08000000, 'cgroup': 0x02000000, 'time': 0x00000080}
    for n, f in flags.items():
        ctypes.set_errno(0)
        r = libc.unshare(f)
        print('unshare_' + n, 'ok' if r == 0 else en(ctypes.get_errno()))
    # clone(2) with a namespace flag: SIGCHLD | CLONE_NEWUSER (a fork into a new userns).
    print('clone_newuser', sc(56, 17 | 0x10000000, 0, 0, 0, 0))
    print('clone_newns', sc(56, 17 | 0x00020000, 0, 0, 0, 0))
    # Flag bits above 32 are ignored by the kernel; the filter looks at the low 32 only.
    print('unshare_user_highbits', sc(272, (1 << 32) | 0x10000000))
    print('clone3', sc(435, 0, 0))
    print('still_same_userns', os.readlink('/proc/self/ns/user') == before)
"#;

fn unshare_probe(opts: &[&str]) {
    let body = format!(
        "before = os.readlink('/proc/self/ns/user')\n{}",
        dedent(UNSHARE_PROBE)
    );
    let v = py(&Env::new(), opts, &body, &[]);
    expect(
        &v,
        &[
            ("unshare_user", "EPERM"),
            ("unshare_mnt", "EPERM"),
            ("unshare_net", "EPERM"),
            ("unshare_pid", "EPERM"),
            ("unshare_uts", "EPERM"),
            ("unshare_ipc", "EPERM"),
            ("unshare_cgroup", "EPERM"),
            ("unshare_time", "EPERM"),
            ("clone_newuser", "EPERM"),
            ("clone_newns", "EPERM"),
            ("unshare_user_highbits", "EPERM"),
            ("clone3", "ENOSYS"),
            ("still_same_userns", "True"),
        ],
    );
}

/// unshare(2) of every namespace type and clone(2) with a namespace flag fail with EPERM
/// (a nested user namespace would give back a full capability set); clone3, whose flags
/// live in memory the filter cannot read, gets ENOSYS so libcs fall back to clone.
#[test]
fn unshare_and_namespace_clone_are_denied() {
    unshare_probe(&[]);
}

#[test]
fn unshare_is_denied_as_root() {
    unshare_probe(ROOT);
}

const SETNS_PROBE: &str = r#"
    for ns in ('mnt', 'net', 'user', 'pid', 'uts', 'ipc', 'cgroup'):
        t('open_init_' + ns, lambda: os.open('/proc/1/ns/' + ns, os.O_RDONLY))
    own = os.open('/proc/self/ns/net', os.O_RDONLY)
    print('setns_own_net', sc(308, own, 0))
    user = os.open('/proc/self/ns/user', os.O_RDONLY)
    print('setns_own_user', sc(308, user, 0))
    pidfd = os.pidfd_open(os.getpid())
    print('setns_pidfd', sc(308, pidfd, 0x40000000 | 0x00020000))
    print('setns_badfd', sc(308, -1, 0))
"#;

const SETNS_EXPECTED: &[(&str, &str)] = &[
    ("open_init_mnt", "EACCES"),
    ("open_init_net", "EACCES"),
    ("open_init_user", "EACCES"),
    ("open_init_pid", "EACCES"),
    ("open_init_uts", "EACCES"),
    ("open_init_ipc", "EACCES"),
    ("open_init_cgroup", "EACCES"),
    ("setns_own_net", "EPERM"),
    ("setns_own_user", "EPERM"),
    ("setns_pidfd", "EPERM"),
    ("setns_badfd", "EPERM"),
];

/// The namespace files of init are closed (EACCES: init is not dumpable), and setns(2)
/// fails with EPERM from the filter for any fd, even the sandbox's own namespaces, a
/// pidfd, or -1 (which the kernel would answer with EBADF).
#[test]
fn setns_is_denied() {
    let v = py(&Env::new(), &[], SETNS_PROBE, &[]);
    expect(&v, SETNS_EXPECTED);
}

#[test]
fn setns_is_denied_as_root() {
    let v = py(&Env::new(), ROOT, SETNS_PROBE, &[]);
    expect(&v, SETNS_EXPECTED);
}

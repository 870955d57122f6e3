//! The seccomp filter: each denied class returns EPERM from the filter.

#[allow(unused_imports)]
use super::probe::*;

const PTRACE_PROBE: &str = r#"
    import time
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    print('ptrace_traceme', sc(101, 0, 0, 0, 0))
    print('ptrace_attach_child', sc(101, 16, child, 0, 0))
    print('ptrace_seize_child', sc(101, 0x4206, child, 0, 0))
    print('ptrace_attach_parent', sc(101, 16, os.getppid(), 0, 0))
    buf = ctypes.create_string_buffer(64)
    iov = struct.pack('QQ', A(buf), 64)
    liov = ctypes.create_string_buffer(iov)
    riov = ctypes.create_string_buffer(iov)
    print('process_vm_readv_self', sc(310, os.getpid(), A(liov), 1, A(riov), 1, 0))
    print('process_vm_writev_self', sc(311, os.getpid(), A(liov), 1, A(riov), 1, 0))
    print('process_vm_readv_child', sc(310, child, A(liov), 1, A(riov), 1, 0))
    print('kcmp_self', sc(312, os.getpid(), os.getpid(), 0, 0, 0))
    pidfd = os.pidfd_open(child)
    print('pidfd_getfd_child', sc(438, pidfd, 0, 0))
    print('process_madvise_child', sc(440, pidfd, A(liov), 1, 8, 0))
    t('child_mem_write', lambda: os.close(os.open('/proc/%d/mem' % child, os.O_RDWR)))
    os.kill(child, 9)
    os.waitpid(child, 0)
"#;

const PTRACE_EXPECTED: &[(&str, &str)] = &[
    ("ptrace_traceme", "EPERM"),
    ("ptrace_attach_child", "EPERM"),
    ("ptrace_seize_child", "EPERM"),
    ("ptrace_attach_parent", "EPERM"),
    ("process_vm_readv_self", "EPERM"),
    ("process_vm_writev_self", "EPERM"),
    ("process_vm_readv_child", "EPERM"),
    ("kcmp_self", "EPERM"),
    ("pidfd_getfd_child", "EPERM"),
    ("process_madvise_child", "EPERM"),
    ("child_mem_write", "EACCES"),
];

/// ptrace (TRACEME, ATTACH and SEIZE on its own child), process_vm_readv/writev even on
/// itself, kcmp, pidfd_getfd and process_madvise all get EPERM from the filter, although
/// the kernel would allow each of them here; /proc/<child>/mem cannot be opened for
/// writing (Landlock: EACCES).
#[test]
fn ptrace_and_cross_process_memory_are_denied() {
    let v = py(&Env::new(), &[], PTRACE_PROBE, &[]);
    expect(&v, PTRACE_EXPECTED);
}

#[test]
fn ptrace_is_denied_as_root() {
    let v = py(&Env::new(), ROOT, PTRACE_PROBE, &[]);
    expect(&v, PTRACE_EXPECTED);
}

const KERNEL_SURFACE: &[&str] = &[
    "bpf",
    "perf_event_open",
    "perf_event_open_real",
    "userfaultfd",
    "userfaultfd_real",
    "io_uring_setup",
    "io_uring_setup_real",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "keyctl_real",
    "add_key",
    "request_key",
];

/// The big kernel attack surfaces: bpf, perf_event_open (even self-monitoring, which
/// perf_event_paranoid=2 allows), userfaultfd (even user-mode-only), io_uring, and the
/// key management calls (the kernel keyring is not namespaced): EPERM each.
#[test]
fn kernel_attack_surface_syscalls_are_denied() {
    let v = syscalls(&Env::new(), &[], KERNEL_SURFACE);
    expect_all(&v, KERNEL_SURFACE, "EPERM");
}

const MODULE_CALLS: &[&str] = &[
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
];

/// Kernel module loading/unloading and kexec: EPERM from the filter (this kernel has
/// neither modules nor kexec, where it would answer ENOSYS).
#[test]
fn module_and_kexec_syscalls_are_denied() {
    let v = syscalls(&Env::new(), &[], MODULE_CALLS);
    expect_all(&v, MODULE_CALLS, "EPERM");
}

/// As root too, and with a real module file descriptor for finit_module.
#[test]
fn module_loading_is_denied_as_root() {
    let env = Env::new();
    let v = syscalls(&env, ROOT, MODULE_CALLS);
    expect_all(&v, MODULE_CALLS, "EPERM");
    let body = r#"
        open('/tmp/evil.ko', 'wb').write(b'\x7fELF' + b'\0' * 60)
        fd = os.open('/tmp/evil.ko', os.O_RDONLY)
        print('finit_module_fd', sc(313, fd, A(ctypes.create_string_buffer(b'')), 0))
        print('delete_module_name', sc(176, A(ctypes.create_string_buffer(b'ext4')), 0o4000))
    "#;
    let v = py(&env, ROOT, body, &[]);
    expect(
        &v,
        &[
            ("finit_module_fd", "EPERM"),
            ("delete_module_name", "EPERM"),
        ],
    );
}

const ADMIN_CALLS: &[&str] = &[
    "quotactl",
    "quotactl_fd",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "iopl",
    "ioperm",
    "sethostname",
    "setdomainname",
    "vhangup",
    "fanotify_init",
    "lookup_dcookie",
    "uselib",
    "ustat",
    "sysfs",
    "name_to_handle_at",
    "name_to_handle_at_real",
    "open_by_handle_at",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "migrate_pages",
    "move_pages",
    "lsm_list_modules",
];

/// System administration and legacy calls: quotas, swap, reboot, process accounting,
/// port I/O, host/domain name, vhangup, fanotify, file handles (the "shocker" escape
/// route, including name_to_handle_at of / which the kernel would allow), NUMA policy,
/// LSM introspection: EPERM each.
#[test]
fn system_administration_syscalls_are_denied() {
    let v = syscalls(&Env::new(), &[], ADMIN_CALLS);
    expect_all(&v, ADMIN_CALLS, "EPERM");
}

/// The clocks cannot be set or adjusted, not even read through adjtimex/clock_adjtime
/// (modes = 0 is a harmless query the kernel allows to anyone, so EPERM proves the
/// filter): EPERM each; the host's clock is untouched.
#[test]
fn clock_cannot_be_changed() {
    let body = r#"
        ts = ctypes.create_string_buffer(struct.pack('qq', 86400, 0))
        print('clock_settime_realtime', sc(227, 0, A(ts)))
        print('clock_settime_bogus', sc(227, 9999, 1))
        tv = ctypes.create_string_buffer(struct.pack('qq', 86400, 0))
        print('settimeofday', sc(164, A(tv), 0))
        timex = ctypes.create_string_buffer(512)
        print('adjtimex_query', sc(159, A(timex)))
        print('clock_adjtime_query', sc(305, 0, A(timex)))
        print('adjtimex_bad', sc(159, 1))
    "#;
    let v = py(&Env::new(), &[], body, &[]);
    expect_all(
        &v,
        &[
            "clock_settime_realtime",
            "clock_settime_bogus",
            "settimeofday",
            "adjtimex_query",
            "clock_adjtime_query",
            "adjtimex_bad",
        ],
        "EPERM",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now > 1_600_000_000, "the host clock was set back: {now}");
}

/// personality(2): the query (0xffffffff) and PER_LINUX are allowed and report 0;
/// ADDR_NO_RANDOMIZE (turning ASLR off), PER_LINUX32 and READ_IMPLIES_EXEC are EPERM,
/// and the persona is unchanged afterwards.
#[test]
fn personality_changes_are_denied() {
    let body = r#"
        print('query', sc(135, 0xffffffff))
        print('per_linux', sc(135, 0))
        print('addr_no_randomize', sc(135, 0x0040000))
        print('per_linux32', sc(135, 0x0008))
        print('read_implies_exec', sc(135, 0x0400000))
        print('highbits', sc(135, (1 << 32) | 0x0040000))
        print('after', sc(135, 0xffffffff))
    "#;
    let v = py(&Env::new(), &[], body, &[]);
    expect(
        &v,
        &[
            ("query", "0"),
            ("per_linux", "0"),
            ("addr_no_randomize", "EPERM"),
            ("per_linux32", "EPERM"),
            ("read_implies_exec", "EPERM"),
            ("highbits", "EPERM"),
            ("after", "0"),
        ],
    );
}

/// Probes whose arguments the kernel rejects with an errno other than EPERM (bad
/// pointer, fd -1, invalid flags) or that the kernel on this host would even allow.
/// The calls that check privilege before their arguments (reboot, swapon, syslog,
/// acct, sethostname, pivot_root, fsopen, ...) answer EPERM either way and are left
/// out here: host sysctls (dmesg_restrict, unprivileged_bpf_disabled, ...) can hide a
/// missing rule, these cannot.
const KERNEL_WOULD_NOT_SAY_EPERM: &[&str] = &[
    "mount",
    "umount2",
    "fsconfig",
    "open_tree",
    "mount_setattr",
    "setns",
    "unshare_user",
    "unshare_mnt",
    "unshare_net",
    "unshare_pid",
    "clone_newuser",
    "ptrace",
    "ptrace_traceme_real",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "bpf",
    "perf_event_open",
    "perf_event_open_real",
    "userfaultfd",
    "userfaultfd_real",
    "io_uring_setup",
    "io_uring_setup_real",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "keyctl_real",
    "add_key",
    "request_key",
    "name_to_handle_at",
    "name_to_handle_at_real",
    "open_by_handle_at",
    "quotactl",
    "quotactl_fd",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "adjtimex_real",
    "personality",
    "mknod_chr",
    "mknodat_blk",
    "chroot",
    "ustat",
    "sysfs",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "migrate_pages",
    "move_pages",
    "x32_mount",
    "x32_getpid",
    "socket_vsock",
    "lsm_list_modules",
];

/// DESIGN.md: test the filter itself. Each probe gets EPERM inside, and the same probe
/// run with `--dangerously-skip-layer seccomp` gets a different answer from the kernel
/// (EFAULT, EINVAL, EBADF, ESRCH, ENOSYS or success), so the EPERM came from the filter
/// and not from a host sysctl or a missing capability.
#[test]
fn denied_syscalls_are_refused_by_the_filter_not_the_kernel() {
    let env = Env::new();
    let filtered = outcomes(&syscalls(&env, &[], KERNEL_WOULD_NOT_SAY_EPERM));
    let unfiltered = outcomes(&syscalls(
        &env,
        &["--dangerously-skip-layer", "seccomp"],
        KERNEL_WOULD_NOT_SAY_EPERM,
    ));
    let mut bad = Vec::new();
    for n in KERNEL_WOULD_NOT_SAY_EPERM {
        let f = filtered.get(*n).map(String::as_str);
        let u = unfiltered.get(*n).map(String::as_str);
        if f != Some("EPERM") {
            bad.push(format!("  {n}: filtered {f:?}, expected EPERM"));
        }
        if u.is_none() || u == Some("EPERM") {
            bad.push(format!(
                "  {n}: unfiltered {u:?}, the probe cannot tell the filter apart"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Other syscall ABIs cannot be used to get around the x86_64 filter: x32 numbers (bit
/// 30 set, same audit arch) match no allowlist entry (EPERM), and a 32-bit `int 0x80`
/// call (i386 audit arch) kills the process with SIGSYS (exit 159).
#[test]
fn foreign_syscall_abis_are_blocked() {
    let body = r#"
        import mmap
        print('x32_mount', sc(0x40000000 | 165, 1, 1, 1, 0, 0), flush=True)
        print('x32_getpid', sc(0x40000000 | 39), flush=True)
        # mov eax, 21 (i386 mount); xor ebx, ebx; xor ecx, ecx; int 0x80; ret
        code = b'\xb8' + (21).to_bytes(4, 'little') + b'\x31\xdb\x31\xc9\xcd\x80\xc3'
        m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        m.write(code)
        f = ctypes.CFUNCTYPE(ctypes.c_int)(A(ctypes.c_char.from_buffer(m)))
        print('ia32_mount_calling', 'yes', flush=True)
        print('ia32_mount', f(), flush=True)
    "#;
    let v = py(&Env::new(), &[], body, &[]);
    assert_eq!(exit_code(&v), 159, "{v}");
    assert_eq!(v["signal"], 31, "{v}");
    let got = parse(&stdout(&v));
    assert_eq!(
        got.get("x32_mount").map(String::as_str),
        Some("EPERM"),
        "{v}"
    );
    assert_eq!(
        got.get("x32_getpid").map(String::as_str),
        Some("EPERM"),
        "{v}"
    );
    assert_eq!(
        got.get("ia32_mount_calling").map(String::as_str),
        Some("yes"),
        "{v}"
    );
    assert_eq!(
        got.get("ia32_mount"),
        None,
        "the i386 system call returned: {v}"
    );
}

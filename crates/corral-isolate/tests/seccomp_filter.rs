//! The seccomp filter itself, against the real kernel.
//!
//! Each case forks a child, installs the filters there and makes one raw syscall with
//! arguments that the kernel would reject with some other errno (EFAULT, EINVAL, EBADF,
//! ESRCH, ENOSYS, ...). The filter must answer EPERM (ENOSYS for clone3) first. A
//! control child makes the same call without the filter and must NOT get EPERM, which
//! proves the refusal came from the filter and not from this host's sysctls or missing
//! privileges (this host already refuses some calls, e.g. unprivileged_bpf_disabled=2).
//!
//! These tests must run as root (the controls need privileges so that the kernel's own
//! checks pass); as another user they fail with a message saying so.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use corral_isolate::{SandboxUser, SeccompFilters};
use libc::c_long;

/// What one raw syscall in a child returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The call succeeded with this return value.
    Returned(i64),
    /// The call failed with this errno.
    Errno(i32),
    /// The child was killed by this signal.
    Killed(i32),
    /// The child could not set up (exit code): 101 no_new_privs, 102 seccomp, 103 panic,
    /// 104 short write.
    SetupFailed(i32),
}

use Outcome::{Errno, Killed, Returned};

/// Fails the test with a clear message unless it runs as root.
fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the seccomp filter tests must run as root (the unfiltered control calls need \
         privileges so that only the filter can answer EPERM); run them with sudo"
    );
}

fn filters(user: SandboxUser) -> SeccompFilters {
    match SeccompFilters::compile(user) {
        Ok(filters) => filters,
        Err(err) => panic!("compiling the seccomp filters for {user:?} failed: {err}"),
    }
}

/// Runs `body` in a forked child, under `filters` when given, and reports what it
/// returned. `body` returns the raw syscall result and errno.
///
/// The child only makes raw syscalls: no allocation, no locks, so forking from the
/// multi-threaded test harness is safe.
fn in_child(filters: Option<&SeccompFilters>, body: impl FnOnce() -> (i64, i32)) -> Outcome {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    let [read_fd, write_fd] = fds;

    // SAFETY: the child only makes async-signal-safe calls (setsid, prctl, the seccomp
    // install, which allocates nothing, one raw syscall, write, _exit) before it exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: (child) read_fd is our copy of the pipe's read end, open until here.
        unsafe { libc::close(read_fd) };
        // A new session without a controlling terminal, so that vhangup and terminal
        // ioctls cannot reach the terminal the tests run in.
        // SAFETY: setsid has no memory-safety preconditions.
        unsafe { libc::setsid() };
        if let Some(filters) = filters {
            // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                // SAFETY: _exit ends the child without running the parent's destructors.
                unsafe { libc::_exit(101) };
            }
            if filters.apply().is_err() {
                // SAFETY: as above.
                unsafe { libc::_exit(102) };
            }
        }
        let Ok((ret, errno)) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) else {
            // SAFETY: as above.
            unsafe { libc::_exit(103) };
        };
        let mut report = [0u8; 16];
        report[..8].copy_from_slice(&ret.to_ne_bytes());
        report[8..].copy_from_slice(&i64::from(errno).to_ne_bytes());
        // SAFETY: report is a live 16-byte buffer; write_fd is the pipe's write end.
        let written = unsafe { libc::write(write_fd, report.as_ptr().cast(), report.len()) };
        // SAFETY: as above.
        unsafe { libc::_exit(if written == 16 { 0 } else { 104 }) };
    }

    // SAFETY: write_fd is the parent's copy of the write end, open until here.
    unsafe { libc::close(write_fd) };
    let mut report = Vec::new();
    {
        // SAFETY: read_fd is open and owned by nothing else; File takes ownership and
        // closes it at the end of this block.
        let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(read_fd) };
        let _ = reader.read_to_end(&mut report);
    }
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid int to fill.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());

    if libc::WIFSIGNALED(status) {
        return Killed(libc::WTERMSIG(status));
    }
    let code = libc::WEXITSTATUS(status);
    if code != 0 || report.len() < 16 {
        return Outcome::SetupFailed(code);
    }
    let ret = i64::from_ne_bytes(report[..8].try_into().unwrap_or_default());
    let errno = i64::from_ne_bytes(report[8..16].try_into().unwrap_or_default());
    if ret == -1 {
        Errno(i32::try_from(errno).unwrap_or(-1))
    } else {
        Returned(ret)
    }
}

/// A raw syscall, returning (result, errno).
fn raw(nr: c_long, args: [u64; 6]) -> (i64, i32) {
    let [a, b, c, d, e, f] = args;
    // SAFETY: the cases pass invalid pointers (-1, which is never mapped, or null) or
    // pointers to live buffers; the kernel validates every argument and only fails.
    let ret = unsafe { libc::syscall(nr, a, b, c, d, e, f) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    (ret, if ret == -1 { errno } else { 0 })
}

/// `raw` in a filtered child and in an unfiltered control child.
fn filtered_and_control(user: SandboxUser, nr: c_long, args: [u64; 6]) -> (Outcome, Outcome) {
    let filters = filters(user);
    (
        in_child(Some(&filters), || raw(nr, args)),
        in_child(None, || raw(nr, args)),
    )
}

/// Asserts the filter answers `expected` for this call and the kernel alone does not
/// answer EPERM.
fn assert_filtered(what: &str, user: SandboxUser, nr: c_long, args: [u64; 6], expected: i32) {
    let (filtered, control) = filtered_and_control(user, nr, args);
    assert_eq!(
        filtered,
        Errno(expected),
        "{what} under the {user:?} filter: expected errno {expected}"
    );
    assert_ne!(
        control,
        Errno(libc::EPERM),
        "{what} without the filter already fails with EPERM on this host, so the test \
         cannot tell the filter's refusal from the kernel's: pick other arguments"
    );
    assert!(
        !matches!(control, Killed(_) | Outcome::SetupFailed(_)),
        "{what} control child failed: {control:?}"
    );
}

/// Asserts the call is NOT refused by the filter: it reaches the kernel and gets the
/// same answer with and without the filter.
fn assert_passes_filter(what: &str, user: SandboxUser, nr: c_long, args: [u64; 6]) -> Outcome {
    let (filtered, control) = filtered_and_control(user, nr, args);
    assert_eq!(
        filtered, control,
        "{what} under the {user:?} filter should reach the kernel like the unfiltered call"
    );
    assert!(
        matches!(filtered, Returned(_) | Errno(_)) && filtered != Errno(libc::EPERM),
        "{what}: {filtered:?}"
    );
    filtered
}

const NEG: u64 = u64::MAX;
const ALL_NEG: [u64; 6] = [NEG; 6];

fn args(prefix: &[u64]) -> [u64; 6] {
    let mut all = [0; 6];
    all[..prefix.len()].copy_from_slice(prefix);
    all
}

macro_rules! sysno_table {
    ($($sys:ident),* $(,)?) => {
        &[$((stringify!($sys), libc::$sys)),*]
    };
}

/// Syscall numbers for every name the policy's denied sections may hold.
fn syscall_number(name: &str) -> Option<c_long> {
    #[rustfmt::skip]
    const COMMON: &[(&str, c_long)] = sysno_table![
        SYS_acct, SYS_add_key, SYS_adjtimex, SYS_bpf, SYS_clock_adjtime, SYS_clock_settime,
        SYS_delete_module, SYS_fanotify_init, SYS_finit_module, SYS_fsconfig, SYS_fsmount,
        SYS_fsopen, SYS_fspick, SYS_get_mempolicy, SYS_init_module, SYS_io_uring_enter,
        SYS_io_uring_register, SYS_io_uring_setup, SYS_kcmp, SYS_kexec_file_load,
        SYS_kexec_load, SYS_keyctl, SYS_lookup_dcookie, SYS_mbind, SYS_migrate_pages,
        SYS_mount, SYS_mount_setattr, SYS_move_mount, SYS_move_pages, SYS_name_to_handle_at,
        SYS_nfsservctl, SYS_open_by_handle_at, SYS_open_tree, SYS_perf_event_open,
        SYS_pidfd_getfd, SYS_pivot_root, SYS_process_madvise, SYS_process_vm_readv,
        SYS_process_vm_writev, SYS_ptrace, SYS_quotactl, SYS_quotactl_fd, SYS_reboot,
        SYS_request_key, SYS_set_mempolicy, SYS_set_mempolicy_home_node, SYS_setdomainname,
        SYS_sethostname, SYS_setns, SYS_settimeofday, SYS_swapoff, SYS_swapon, SYS_syslog,
        SYS_umount2, SYS_userfaultfd, SYS_vhangup,
    ];
    // Not in libc yet; these numbers are shared by x86_64 and aarch64 (Linux 6.8+).
    const NEWER: &[(&str, c_long)] = &[
        ("statmount", 457),
        ("listmount", 458),
        ("lsm_get_self_attr", 459),
        ("lsm_set_self_attr", 460),
        ("lsm_list_modules", 461),
    ];
    #[cfg(target_arch = "x86_64")]
    #[rustfmt::skip]
    const ARCH_ONLY: &[(&str, c_long)] = sysno_table![
        SYS_iopl, SYS_ioperm, SYS_uselib, SYS_ustat, SYS_sysfs, SYS__sysctl, SYS_getpmsg,
        SYS_putpmsg, SYS_afs_syscall, SYS_tuxcall, SYS_security, SYS_vserver,
    ];
    // Not in libc: removed from Linux long ago, numbers from arch/x86/entry/syscalls.
    #[cfg(target_arch = "x86_64")]
    const ARCH_REMOVED: &[(&str, c_long)] = &[
        ("create_module", 174),
        ("get_kernel_syms", 177),
        ("query_module", 178),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    const ARCH_ONLY: &[(&str, c_long)] = &[];
    #[cfg(not(target_arch = "x86_64"))]
    const ARCH_REMOVED: &[(&str, c_long)] = &[];

    COMMON
        .iter()
        .chain(ARCH_ONLY)
        .map(|(sys, nr)| (sys.trim_start_matches("SYS_"), *nr))
        .chain(NEWER.iter().chain(ARCH_REMOVED).copied())
        .find(|(candidate, _)| *candidate == name)
        .map(|(_, nr)| nr)
}

/// Syscalls the issue requires refused with EPERM to everyone.
#[rustfmt::skip]
const MUST_DENY: &[&str] = &[
    "mount", "umount2", "pivot_root", "setns", "ptrace", "process_vm_readv",
    "process_vm_writev", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key", "kexec_load",
    "kexec_file_load", "init_module", "finit_module", "delete_module", "open_by_handle_at",
    "name_to_handle_at", "quotactl", "quotactl_fd", "swapon", "swapoff", "reboot",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog", "acct", "fsopen",
    "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "pidfd_getfd",
    "kcmp", "lookup_dcookie", "nfsservctl", "vhangup", "fanotify_init",
    #[cfg(target_arch = "x86_64")] "iopl",
    #[cfg(target_arch = "x86_64")] "ioperm",
    #[cfg(target_arch = "x86_64")] "uselib",
];

/// The names in the policy's `denied` section and its companion for this arch.
fn denied_syscalls() -> Vec<String> {
    let policy: serde_json::Value =
        match serde_json::from_str(include_str!("../../../resources/seccomp/default.json")) {
            Ok(policy) => policy,
            Err(err) => panic!("resources/seccomp/default.json: {err}"),
        };
    let arch = std::env::consts::ARCH;
    ["denied".to_owned(), format!("denied_{arch}")]
        .iter()
        .filter_map(|section| policy[section.as_str()]["filter"].as_array())
        .flatten()
        .filter_map(|rule| rule["syscall"].as_str().map(str::to_owned))
        .collect()
}

/// Every syscall of the denied list gets EPERM from the filter, for both users, and not
/// from the kernel. Arguments are all -1: invalid pointers, fds, flags and commands that
/// the kernel rejects without side effects (reboot's magic, kexec's flags, ...).
#[test]
fn every_denied_syscall_gets_eperm_from_the_filter() {
    require_root();
    let denied = denied_syscalls();
    assert!(denied.len() > 50, "denied list looks truncated: {denied:?}");
    let missing: Vec<_> = MUST_DENY
        .iter()
        .filter(|required| !denied.iter().any(|name| name == *required))
        .collect();
    assert!(missing.is_empty(), "not in the denied list: {missing:?}");

    let sandbox = filters(SandboxUser::Sandbox);
    let root = filters(SandboxUser::Root);
    let mut failures = Vec::new();
    for name in &denied {
        let Some(nr) = syscall_number(name) else {
            failures.push(format!(
                "{name}: no syscall number in this test's table; add it"
            ));
            continue;
        };
        let control = in_child(None, || raw(nr, ALL_NEG));
        for (user, filters) in [("Sandbox", &sandbox), ("Root", &root)] {
            let filtered = in_child(Some(filters), || raw(nr, ALL_NEG));
            if filtered != Errno(libc::EPERM) {
                failures.push(format!(
                    "{name} ({user}): filter gave {filtered:?}, want EPERM"
                ));
            }
        }
        if control == Errno(libc::EPERM) || !matches!(control, Errno(_) | Returned(_)) {
            failures.push(format!(
                "{name}: the unfiltered control gave {control:?}; it must reach the kernel \
                 and fail otherwise than EPERM"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Named cases from the issue, with arguments chosen for each call.
#[test]
fn issue_cases_get_eperm_from_the_filter() {
    require_root();
    let user = SandboxUser::Sandbox;
    const AT_FDCWD: u64 = libc::AT_FDCWD as u64;
    const CLOCK_REALTIME: u64 = libc::CLOCK_REALTIME as u64;
    const AF_VSOCK: u64 = libc::AF_VSOCK as u64;
    #[rustfmt::skip]
    let cases: &[(&str, c_long, [u64; 6])] = &[
        // type = -1: copying the filesystem type faults.
        ("mount", libc::SYS_mount, ALL_NEG),
        // Unknown umount flags: EINVAL.
        ("umount2", libc::SYS_umount2, args(&[NEG, 0x100])),
        ("pivot_root", libc::SYS_pivot_root, args(&[NEG, NEG])),
        ("setns", libc::SYS_setns, args(&[NEG, 0])),
        // PTRACE_ATTACH to a pid that cannot exist: ESRCH.
        ("ptrace", libc::SYS_ptrace, args(&[16, i32::MAX as u64])),
        // flags = 1: EINVAL.
        ("process_vm_readv", libc::SYS_process_vm_readv, args(&[0, 0, 0, 0, 0, 1])),
        ("process_vm_writev", libc::SYS_process_vm_writev, args(&[0, 0, 0, 0, 0, 1])),
        // Unknown command: EINVAL.
        ("bpf", libc::SYS_bpf, args(&[9999, 0, 0])),
        // attr = NULL: EFAULT.
        ("perf_event_open", libc::SYS_perf_event_open, args(&[0, 0, NEG, NEG, 0])),
        ("userfaultfd", libc::SYS_userfaultfd, args(&[0x7fff_0000])),
        // params = NULL: EFAULT.
        ("io_uring_setup", libc::SYS_io_uring_setup, args(&[1, 0])),
        ("io_uring_enter", libc::SYS_io_uring_enter, args(&[NEG, 0, 0, 0, 0, 0])),
        ("io_uring_register", libc::SYS_io_uring_register, args(&[NEG, 0, 0, 0])),
        // Unknown keyctl command: EOPNOTSUPP.
        ("keyctl", libc::SYS_keyctl, args(&[9999])),
        ("add_key", libc::SYS_add_key, args(&[NEG, NEG, 0, 0, 0])),
        ("request_key", libc::SYS_request_key, args(&[NEG, NEG, 0, 0])),
        // Unknown flags: EINVAL (ENOSYS without kexec support).
        ("kexec_load", libc::SYS_kexec_load, args(&[0, 0, 0, NEG])),
        ("kexec_file_load", libc::SYS_kexec_file_load, args(&[NEG, NEG, 0, 0, NEG])),
        // Zero-length image: ENOEXEC (ENOSYS without module support).
        ("init_module", libc::SYS_init_module, args(&[0, 0, 0])),
        ("finit_module", libc::SYS_finit_module, args(&[NEG, 0, 0])),
        ("delete_module", libc::SYS_delete_module, args(&[NEG, 0])),
        ("open_by_handle_at", libc::SYS_open_by_handle_at, args(&[NEG, NEG, 0])),
        ("name_to_handle_at", libc::SYS_name_to_handle_at, args(&[AT_FDCWD, NEG, NEG, NEG, 0])),
        // No device: ENODEV.
        ("quotactl", libc::SYS_quotactl, args(&[0, 0, 0, 0])),
        ("quotactl_fd", libc::SYS_quotactl_fd, args(&[NEG, 0, 0, 0])),
        ("swapon", libc::SYS_swapon, args(&[NEG, 0])),
        ("swapoff", libc::SYS_swapoff, args(&[NEG])),
        // Bad magic: EINVAL. Never pass the real magic here.
        ("reboot", libc::SYS_reboot, args(&[0xdead, 0xbeef, 0, 0])),
        ("settimeofday", libc::SYS_settimeofday, args(&[NEG, 0])),
        ("clock_settime", libc::SYS_clock_settime, args(&[CLOCK_REALTIME, NEG])),
        ("clock_adjtime", libc::SYS_clock_adjtime, args(&[CLOCK_REALTIME, NEG])),
        ("adjtimex", libc::SYS_adjtimex, args(&[NEG])),
        // SYSLOG_ACTION_READ_ALL with no buffer: EINVAL.
        ("syslog", libc::SYS_syslog, args(&[3, 0, 0])),
        ("acct", libc::SYS_acct, args(&[NEG])),
        ("fsopen", libc::SYS_fsopen, args(&[NEG, 0])),
        ("fsmount", libc::SYS_fsmount, args(&[NEG, 0, 0])),
        ("move_mount", libc::SYS_move_mount, args(&[NEG, NEG, NEG, NEG, 0])),
        ("open_tree", libc::SYS_open_tree, args(&[NEG, NEG, 0])),
        ("pidfd_getfd", libc::SYS_pidfd_getfd, args(&[NEG, 0, 0])),
        ("kcmp", libc::SYS_kcmp, args(&[i32::MAX as u64, i32::MAX as u64, 0, 0, 0])),
        ("sethostname", libc::SYS_sethostname, args(&[NEG, 1])),
        // Invalid flags: EINVAL.
        ("fanotify_init", libc::SYS_fanotify_init, args(&[0xffff_ffff, 0])),
        // vsock is refused at socket creation.
        ("socket(AF_VSOCK)", libc::SYS_socket, args(&[AF_VSOCK, libc::SOCK_STREAM as u64, 0])),
    ];
    for (what, nr, call_args) in cases {
        assert_filtered(what, user, *nr, *call_args, libc::EPERM);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // Level 4 does not exist: EINVAL.
        assert_filtered("iopl", user, libc::SYS_iopl, args(&[4]), libc::EPERM);
        // Beyond the 65536 ports: EINVAL.
        assert_filtered(
            "ioperm",
            user,
            libc::SYS_ioperm,
            args(&[65536, 1, 1]),
            libc::EPERM,
        );
    }
}

#[test]
fn root_is_refused_mounts_too() {
    require_root();
    let user = SandboxUser::Root;
    assert_filtered("mount", user, libc::SYS_mount, ALL_NEG, libc::EPERM);
    assert_filtered(
        "umount2",
        user,
        libc::SYS_umount2,
        args(&[NEG, 0x100]),
        libc::EPERM,
    );
    assert_filtered(
        "pivot_root",
        user,
        libc::SYS_pivot_root,
        args(&[NEG, NEG]),
        libc::EPERM,
    );
    assert_filtered("setns", user, libc::SYS_setns, args(&[NEG, 0]), libc::EPERM);
}

#[test]
fn chroot_is_refused_to_the_sandbox_user_and_reaches_the_kernel_for_root() {
    require_root();
    let missing = CString::new("/nonexistent-corral-seccomp-test").unwrap_or_default();
    let chroot_args = args(&[missing.as_ptr() as u64]);
    assert_filtered(
        "chroot",
        SandboxUser::Sandbox,
        libc::SYS_chroot,
        chroot_args,
        libc::EPERM,
    );
    let root = assert_passes_filter("chroot", SandboxUser::Root, libc::SYS_chroot, chroot_args);
    assert_eq!(
        root,
        Errno(libc::ENOENT),
        "chroot for Root should reach the path lookup"
    );
}

const NAMESPACE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
];

#[test]
fn unshare_into_namespaces_is_refused_but_plain_unshare_works() {
    require_root();
    let user = SandboxUser::Sandbox;
    for (name, flag) in NAMESPACE_FLAGS.iter().chain(&[("CLONE_NEWTIME", 0x80)]) {
        let (filtered, control) = filtered_and_control(user, libc::SYS_unshare, args(&[*flag]));
        assert_eq!(
            filtered,
            Errno(libc::EPERM),
            "unshare({name}) under the filter"
        );
        // As root without the filter this succeeds (in a throwaway child).
        assert_ne!(
            control,
            Errno(libc::EPERM),
            "unshare({name}) without the filter"
        );
    }
    // High bits cannot hide a namespace flag: the kernel rejects unknown bits anyway, and
    // the filter still sees CLONE_NEWUSER in the low word.
    let sneaky = (1 << 40) | libc::CLONE_NEWUSER as u64;
    let filters = filters(user);
    assert_eq!(
        in_child(Some(&filters), || raw(libc::SYS_unshare, args(&[sneaky]))),
        Errno(libc::EPERM)
    );
    assert_eq!(
        assert_passes_filter("unshare(0)", user, libc::SYS_unshare, args(&[0])),
        Returned(0)
    );
    assert_eq!(
        assert_passes_filter(
            "unshare(CLONE_FILES)",
            user,
            libc::SYS_unshare,
            args(&[libc::CLONE_FILES as u64])
        ),
        Returned(0)
    );
}

#[test]
fn clone_with_namespace_flags_is_refused_but_fork_works() {
    require_root();
    let user = SandboxUser::Sandbox;
    let filters = filters(user);
    let sigchld = libc::SIGCHLD as u64;
    let clone_child_exits = |flags: u64| {
        move || {
            let result = raw(libc::SYS_clone, args(&[flags]));
            if result.0 == 0 {
                // SAFETY: we are a child created by a clone that should have been
                // refused; leave at once.
                unsafe { libc::_exit(0) };
            }
            result
        }
    };
    assert_eq!(
        in_child(
            Some(&filters),
            clone_child_exits(libc::CLONE_NEWNS as u64 | sigchld)
        ),
        Errno(libc::EPERM),
        "clone(CLONE_NEWNS|SIGCHLD)"
    );
    // CLONE_SIGHAND without CLONE_VM makes the kernel answer EINVAL, so the control
    // creates nothing; the filter must answer EPERM before that.
    for (name, flag) in NAMESPACE_FLAGS {
        let flags = flag | libc::CLONE_SIGHAND as u64 | sigchld;
        assert_filtered(
            &format!("clone({name})"),
            user,
            libc::SYS_clone,
            args(&[flags]),
            libc::EPERM,
        );
    }

    // fork (glibc: clone with CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD) still works.
    let forked = in_child(Some(&filters), || {
        // SAFETY: the grandchild only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: leave the grandchild at once.
            unsafe { libc::_exit(7) };
        }
        if pid < 0 {
            return (
                -1,
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            );
        }
        let mut status = 0;
        // SAFETY: pid is our child; status is a valid int.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        (i64::from(libc::WEXITSTATUS(status)), 0)
    });
    assert_eq!(forked, Returned(7), "fork under the filter");
}

#[test]
fn clone3_gets_enosys_so_libc_falls_back_to_clone() {
    require_root();
    for user in [SandboxUser::Sandbox, SandboxUser::Root] {
        // size 0: the kernel alone answers EINVAL.
        assert_filtered(
            "clone3",
            user,
            libc::SYS_clone3,
            args(&[0, 0]),
            libc::ENOSYS,
        );
    }
}

#[test]
fn personality_may_be_queried_but_not_changed() {
    require_root();
    let user = SandboxUser::Sandbox;
    const ADDR_NO_RANDOMIZE: u64 = 0x0040000;
    assert_filtered(
        "personality(ADDR_NO_RANDOMIZE)",
        user,
        libc::SYS_personality,
        args(&[ADDR_NO_RANDOMIZE]),
        libc::EPERM,
    );
    assert_filtered(
        "personality(READ_IMPLIES_EXEC)",
        user,
        libc::SYS_personality,
        args(&[0x0400000]),
        libc::EPERM,
    );
    // High bits do not turn a change into a query: the kernel reads 32 bits, and so does
    // the filter.
    let (filtered, _) = filtered_and_control(
        user,
        libc::SYS_personality,
        args(&[(1 << 32) | ADDR_NO_RANDOMIZE]),
    );
    assert_eq!(filtered, Errno(libc::EPERM));
    assert!(matches!(
        assert_passes_filter(
            "personality(0xffffffff)",
            user,
            libc::SYS_personality,
            args(&[0xffff_ffff])
        ),
        Returned(_)
    ));
    assert!(matches!(
        assert_passes_filter(
            "personality(PER_LINUX)",
            user,
            libc::SYS_personality,
            args(&[0])
        ),
        Returned(_)
    ));
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("corral-seccomp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        if let Err(err) = std::fs::create_dir(&path) {
            panic!("creating {}: {err}", path.display());
        }
        Self(path)
    }

    fn c_path(&self, name: &str) -> CString {
        CString::new(self.0.join(name).into_os_string().into_encoded_bytes()).unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn device_nodes_are_refused_but_fifos_and_files_are_not() {
    require_root();
    let user = SandboxUser::Sandbox;
    let at_fdcwd = libc::AT_FDCWD as u64;
    let dev = libc::makedev(1, 3);
    // Path -1: the kernel alone answers EFAULT, creating nothing.
    for (name, kind) in [("S_IFCHR", libc::S_IFCHR), ("S_IFBLK", libc::S_IFBLK)] {
        let mode = u64::from(kind | 0o600);
        assert_filtered(
            &format!("mknodat({name})"),
            user,
            libc::SYS_mknodat,
            args(&[at_fdcwd, NEG, mode, dev]),
            libc::EPERM,
        );
        #[cfg(target_arch = "x86_64")]
        assert_filtered(
            &format!("mknod({name})"),
            user,
            libc::SYS_mknod,
            args(&[NEG, mode, dev]),
            libc::EPERM,
        );
    }

    let dir = TempDir::new("mknod");
    let filters = filters(user);
    for (name, kind) in [
        ("fifo", libc::S_IFIFO),
        ("file", libc::S_IFREG),
        ("socket", libc::S_IFSOCK),
        ("plain", 0),
    ] {
        let path = dir.c_path(name);
        let mode = u64::from(kind | 0o600);
        let made = in_child(Some(&filters), || {
            raw(
                libc::SYS_mknodat,
                args(&[at_fdcwd, path.as_ptr() as u64, mode, 0]),
            )
        });
        assert_eq!(made, Returned(0), "mknodat({name}) under the filter");
    }
    let fifo = std::fs::symlink_metadata(dir.0.join("fifo")).map(|meta| {
        use std::os::unix::fs::FileTypeExt;
        meta.file_type().is_fifo()
    });
    assert!(
        matches!(fifo, Ok(true)),
        "the FIFO was not created: {fifo:?}"
    );
}

#[test]
// libc::Ioctl is c_ulong on glibc but c_int on musl: keep the casts.
#[allow(clippy::unnecessary_cast)]
fn terminal_injection_ioctls_are_refused_but_others_work() {
    require_root();
    let user = SandboxUser::Sandbox;
    let tiocsti = libc::TIOCSTI as u64;
    // fd -1: the kernel alone answers EBADF.
    assert_filtered(
        "ioctl(TIOCSTI)",
        user,
        libc::SYS_ioctl,
        args(&[NEG, tiocsti, 0]),
        libc::EPERM,
    );
    // The kernel truncates the request to 32 bits; high bits must not slip past.
    assert_filtered(
        "ioctl(TIOCSTI | 1 << 32)",
        user,
        libc::SYS_ioctl,
        args(&[NEG, (1 << 32) | tiocsti, 0]),
        libc::EPERM,
    );
    assert_filtered(
        "ioctl(TIOCLINUX)",
        user,
        libc::SYS_ioctl,
        args(&[NEG, libc::TIOCLINUX as u64, 0]),
        libc::EPERM,
    );

    let filters = filters(user);
    let fionread = in_child(Some(&filters), || {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return (
                -1,
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            );
        }
        // SAFETY: fds[1] is the pipe's open write end; the buffer is 3 live bytes.
        unsafe { libc::write(fds[1], b"abc".as_ptr().cast(), 3) };
        let mut pending: libc::c_int = 0;
        let (ret, errno) = raw(
            libc::SYS_ioctl,
            args(&[
                fds[0] as u64,
                libc::FIONREAD as u64,
                &mut pending as *mut libc::c_int as u64,
            ]),
        );
        if ret == 0 {
            (i64::from(pending), 0)
        } else {
            (ret, errno)
        }
    });
    assert_eq!(
        fionread,
        Returned(3),
        "ioctl(FIONREAD) on a pipe under the filter"
    );
}

/// x32 syscalls carry the x86_64 audit arch with bit 30 set in the number; they match no
/// allowlist entry.
#[cfg(target_arch = "x86_64")]
#[test]
fn x32_syscall_numbers_are_refused() {
    require_root();
    const X32_BIT: c_long = 0x4000_0000;
    assert_filtered(
        "x32 getpid",
        SandboxUser::Sandbox,
        X32_BIT | libc::SYS_getpid,
        [0; 6],
        libc::EPERM,
    );
}

/// seccompiler's architecture check: an i386 syscall (int 0x80) on x86_64 does not match
/// AUDIT_ARCH_X86_64, and the filter kills the process (fails closed) rather than read
/// the i386 number as an x86_64 one.
#[cfg(target_arch = "x86_64")]
#[test]
fn foreign_architecture_syscalls_kill_the_process() {
    require_root();
    fn int80_getpid() -> (i64, i32) {
        let ret: i32;
        // SAFETY: i386 getpid (20) via int 0x80 takes no arguments and touches no
        // memory; without IA32 emulation the kernel raises SIGSEGV instead.
        unsafe {
            std::arch::asm!("int 0x80", inlateout("eax") 20i32 => ret, options(nostack));
        }
        (i64::from(ret), 0)
    }
    let control = in_child(None, int80_getpid);
    if control == Killed(libc::SIGSEGV) {
        eprintln!("skipping the filtered half: this kernel has no IA32 emulation");
        return;
    }
    assert!(
        matches!(control, Returned(pid) if pid > 0),
        "control: {control:?}"
    );
    let filters = filters(SandboxUser::Sandbox);
    assert_eq!(in_child(Some(&filters), int80_getpid), Killed(libc::SIGSYS));
}

/// Runs `program args` with the filter installed just before exec, like the runtime
/// does, and returns (exit code, stdout, stderr).
fn run_filtered(user: SandboxUser, program: &str, argv: &[&str]) -> (Option<i32>, String, String) {
    let filters = filters(user);
    let mut command = Command::new(program);
    command
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the hook runs between fork and exec; prctl and SeccompFilters::apply make
    // raw syscalls only and allocate nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            filters
                .apply()
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))
        });
    }
    match command.output() {
        Ok(out) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(err) => panic!("running {program} under the filter: {err}"),
    }
}

#[test]
fn a_shell_pipeline_runs_under_the_filter() {
    require_root();
    for user in [SandboxUser::Sandbox, SandboxUser::Root] {
        let (code, stdout, stderr) = run_filtered(user, "/bin/sh", &["-c", "echo ok | cat"]);
        assert_eq!(
            (code, stdout.as_str()),
            (Some(0), "ok\n"),
            "{user:?} stderr: {stderr}"
        );
    }
}

const PYTHON_WORKLOAD: &str = r#"
import os, socket, subprocess, sys, tempfile, threading

results = []
def work(i):
    results.append(sum(range(10000)) + i)
threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert len(results) == 4, results

out = subprocess.run(["/bin/sh", "-c", "echo sub; ls / >/dev/null"], capture_output=True, text=True, check=True).stdout
assert out == "sub\n", out

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "f")
    with open(path, "w") as f: f.write("x")
    with open(path) as f: assert f.read() == "x"
    os.mkfifo(os.path.join(d, "fifo"))
    os.symlink(path, os.path.join(d, "link"))
    os.rename(path, path + ".moved")

a, b = socket.socketpair()
a.sendall(b"hi")
assert b.recv(2) == b"hi"
os.urandom(16)
print("python ok")
"#;

#[test]
fn python_with_threads_and_subprocesses_runs_under_the_filter() {
    require_root();
    let (code, stdout, stderr) = run_filtered(
        SandboxUser::Sandbox,
        "/usr/bin/python3",
        &["-c", PYTHON_WORKLOAD],
    );
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "python ok\n"),
        "stderr: {stderr}"
    );
}

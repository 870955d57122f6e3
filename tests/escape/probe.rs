//! Helpers shared by the escape tests: Python probes run inside the sandbox, their
//! `name outcome` lines, and host-side checks.
#![allow(unreachable_pub, dead_code)]

pub(crate) use std::collections::BTreeMap;
pub(crate) use std::io::{BufRead, BufReader, ErrorKind, Write};
pub(crate) use std::net::{TcpListener, UdpSocket};
pub(crate) use std::os::linux::net::SocketAddrExt;
pub(crate) use std::os::unix::fs::PermissionsExt;
pub(crate) use std::os::unix::net::{SocketAddr, UnixListener};
pub(crate) use std::os::unix::process::CommandExt;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Child, Command, Stdio};

pub(crate) use serde_json::Value;

pub(crate) use super::common::*;

/// The host uid that uid 1000 ("sandbox") inside maps to.
pub(crate) const HOST_UID_SANDBOX: u32 = 1_000_001_000;
/// The host uid that uid 0 (`--user root`) inside maps to.
pub(crate) const HOST_UID_ROOT: u32 = 1_000_000_000;

pub(crate) const ROOT: &[&str] = &["--user", "root"];

/// Helpers every probe starts with. `sc` is a raw system call that returns the result
/// as a string (its return value, or the errno name); `t` runs a Python callable and
/// prints `ok` (or what it returned) or the errno name of the OSError it raised.
pub(crate) const PRELUDE: &str = r#"
import ctypes, errno, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
A = ctypes.addressof
def en(e):
    return errno.errorcode.get(e, str(e))
def sc(nr, *a):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
    return en(ctypes.get_errno()) if r == -1 else str(r)
def t(name, f):
    try:
        r = f()
        print(name, 'ok' if r is None else r, flush=True)
    except OSError as e:
        print(name, en(e.errno), flush=True)
"#;

/// Raw system call probes by name (x86_64 numbers). Most use arguments the kernel
/// itself would reject with an errno other than EPERM (a bad pointer, fd -1, an invalid
/// flag) so that an EPERM can only have come from the seccomp filter; the `*_real`
/// entries are the calls an attacker would actually make and that the unfiltered kernel
/// on this host would let through.
pub(crate) const SYSCALLS: &str = r#"
BAD = 1  # an unmapped user address
_perf_attr = ctypes.create_string_buffer(struct.pack('IIQ', 1, 128, 0), 128)  # SW CPU clock
_uring_params = ctypes.create_string_buffer(120)
_handle = ctypes.create_string_buffer(struct.pack('Ii', 128, 0), 8 + 128)
_mount_id = ctypes.c_int(0)
_buf = ctypes.create_string_buffer(4096)
_tmpfs, _none, _tmp = b'tmpfs', b'none', b'/tmp'
P = {
 'mount': (165, BAD, BAD, BAD, 0, 0),
 'mount_real': (165, ctypes.cast(ctypes.c_char_p(_none), ctypes.c_void_p).value,
                ctypes.cast(ctypes.c_char_p(_tmp), ctypes.c_void_p).value,
                ctypes.cast(ctypes.c_char_p(_tmpfs), ctypes.c_void_p).value, 0, 0),
 'umount2': (166, BAD, -1),
 'umount2_real': (166, ctypes.cast(ctypes.c_char_p(_tmp), ctypes.c_void_p).value, 2),
 'pivot_root': (155, BAD, BAD),
 'fsopen': (430, BAD, -1),
 'fsconfig': (431, -1, 99, 0, 0, 0),
 'fsmount': (432, -1, -1, 0),
 'fspick': (433, -1, BAD, -1),
 'move_mount': (429, -1, BAD, -1, BAD, -1),
 'open_tree': (428, -1, BAD, -1),
 'mount_setattr': (442, -1, BAD, -1, 0, 0),
 'setns': (308, -1, 0),
 'unshare_user': (272, 0x10000000 | 1),
 'unshare_mnt': (272, 0x00020000 | 1),
 'unshare_net': (272, 0x40000000 | 1),
 'unshare_pid': (272, 0x20000000 | 1),
 'clone_newuser': (56, 0x10000000 | 0x00010000, 0, 0, 0, 0),
 'clone3': (435, 0, 0),
 'ptrace': (101, 16, 0x7fffffff, 0, 0),
 'ptrace_traceme_real': (101, 0, 0, 0, 0),
 'process_vm_readv': (310, os.getpid(), 0, 0, 0, 0, 1),
 'process_vm_writev': (311, os.getpid(), 0, 0, 0, 0, 1),
 'kcmp': (312, 0x7fffffff, 0x7fffffff, 0, 0, 0),
 'pidfd_getfd': (438, -1, 0, 0),
 'process_madvise': (440, -1, 0, 0, 0, 0),
 'bpf': (321, 9999, 0, 0),
 'perf_event_open': (298, 0, 0, -1, -1, -1),
 'perf_event_open_real': (298, A(_perf_attr), 0, -1, -1, 0),
 'userfaultfd': (323, 1 | 2),
 'userfaultfd_real': (323, 1),
 'io_uring_setup': (425, 0, BAD),
 'io_uring_setup_real': (425, 1, A(_uring_params)),
 'io_uring_enter': (426, -1, 0, 0, 0, 0, 0),
 'io_uring_register': (427, -1, 0, 0, 0),
 'keyctl': (250, 9999, 0, 0, 0, 0),
 'keyctl_real': (250, 0, -3, 0),
 'add_key': (248, BAD, BAD, 0, 0, 0),
 'request_key': (249, BAD, BAD, 0, 0),
 'kexec_load': (246, 0, 0, 0, -1),
 'kexec_file_load': (320, -1, -1, 0, 0, -1),
 'init_module': (175, 0, 0, BAD),
 'finit_module': (313, -1, BAD, -1),
 'delete_module': (176, BAD, 0),
 'name_to_handle_at': (303, -1, BAD, 0, 0, -1),
 'name_to_handle_at_real': (303, -100, ctypes.cast(ctypes.c_char_p(b'/'), ctypes.c_void_p).value,
                            A(_handle), A(_mount_id), 0),
 'open_by_handle_at': (304, -1, BAD, -1),
 'quotactl': (179, 0, BAD, 0, 0),
 'quotactl_fd': (443, -1, 0, 0, 0),
 'swapon': (167, BAD, 0),
 'swapoff': (168, BAD),
 'reboot': (169, 0, 0, 0, 0),
 'settimeofday': (164, BAD, 0),
 'clock_settime': (227, 9999, BAD),
 'clock_adjtime': (305, 9999, BAD),
 'adjtimex': (159, BAD),
 'adjtimex_real': (159, A(_buf)),
 'syslog': (103, 3, 0, 0),
 'syslog_size': (103, 10, 0, 0),
 'acct': (163, BAD),
 'iopl': (172, 4),
 'ioperm': (173, 0xffffffff, 16, 1),
 'personality': (135, 0x0040000),
 'mknod_chr': (133, BAD, 0o20666, 0x103),
 'mknodat_blk': (259, -100, BAD, 0o60666, 0x800),
 'chroot': (161, BAD),
 'sethostname': (170, BAD, 999),
 'setdomainname': (171, BAD, 999),
 'vhangup': (153,),
 'fanotify_init': (300, 0xffffffff, 0),
 'lookup_dcookie': (212, 0, 0, 0),
 'uselib': (134, BAD),
 'ustat': (136, 0, BAD),
 'sysfs': (139, 99, 0, 0),
 'mbind': (237, 0, 0, 99, 0, 0, 0),
 'set_mempolicy': (238, 99, 0, 0),
 'get_mempolicy': (239, 0, 0, 0, 0, -1),
 'migrate_pages': (256, 0x7fffffff, 0, 0, 0),
 'move_pages': (279, 0, 0, 0, 0, 0, -1),
 'x32_mount': (0x40000000 | 165, BAD, BAD, BAD, 0, 0),
 'x32_getpid': (0x40000000 | 39,),
 'socket_vsock': (41, 40, 1, 0),
 'lsm_list_modules': (461, BAD, BAD, 0),
}
"#;

/// Strips the common indentation of an indented Python snippet.
pub(crate) fn dedent(s: &str) -> String {
    let indent = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    s.lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the prelude plus `body` in python3 inside a sandbox; `args` become sys.argv[1:].
pub(crate) fn py(env: &Env, opts: &[&str], body: &str, args: &[&str]) -> Value {
    let code = format!("{PRELUDE}\n{}", dedent(body));
    let mut argv = vec!["/usr/bin/python3", "-c", code.as_str()];
    argv.extend_from_slice(args);
    env.json(opts, &argv).0
}

/// Runs the named raw system call probes and prints `name outcome` for each.
pub(crate) fn syscalls(env: &Env, opts: &[&str], names: &[&str]) -> Value {
    let body = format!("{SYSCALLS}\nfor n in sys.argv[1:]:\n    print(n, sc(*P[n]), flush=True)\n");
    py(env, opts, &body, names)
}

/// The `name outcome` lines of a probe that must have exited 0.
pub(crate) fn outcomes(v: &Value) -> BTreeMap<String, String> {
    assert_eq!(exit_code(v), 0, "the probe itself failed: {v}");
    parse(&stdout(v))
}

pub(crate) fn parse(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect()
}

/// Asserts every expected `name outcome` pair, reporting all mismatches at once.
pub(crate) fn expect(v: &Value, want: &[(&str, &str)]) {
    let got = outcomes(v);
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, w)| got.get(*k).map(String::as_str) != Some(*w))
        .map(|(k, w)| format!("  {k}: expected {w}, got {:?}", got.get(*k)))
        .collect();
    assert!(
        bad.is_empty(),
        "unexpected outcomes:\n{}\nresult: {v}",
        bad.join("\n")
    );
}

/// Asserts that every named probe got `want`.
pub(crate) fn expect_all(v: &Value, names: &[&str], want: &str) {
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, want)).collect();
    expect(v, &pairs);
}

/// A name unique to this test run, usable as a file name, socket name or argument.
pub(crate) fn marker(tag: &str) -> String {
    unique_host_path(tag)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Host processes whose command line contains `marker`.
pub(crate) fn host_processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&c).replace('\0', " ");
            if line.contains(marker) {
                found.push(format!("pid {name}: {line}"));
            }
        }
    }
    found
}

/// Every path under `dir` (recursively, not following symlinks) whose name is `name`.
pub(crate) fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy() == name {
            found.push(p.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(find_named(&p, name));
        }
    }
    found
}

/// A host process ended when the test ends, pass or fail. One with a piped stdin (a
/// `corral run --stdin` waiting for input) is asked to finish by closing its stdin, so
/// that corral tears its sandbox down itself; anything else, or a corral that does not
/// finish within 10 s, is killed.
pub(crate) struct HostChild(pub(crate) Child);

impl Drop for HostChild {
    fn drop(&mut self) {
        if let Some(stdin) = self.0.stdin.take() {
            drop(stdin);
            for _ in 0..100 {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A host path removed when the test ends, pass or fail.
pub(crate) struct HostPath(pub(crate) PathBuf);

impl Drop for HostPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether the host kernel has this path (for files corral masks only where present).
pub(crate) fn host_has(p: &str) -> bool {
    Path::new(p).exists()
}

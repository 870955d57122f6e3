//! The red-team escape suite: every test is an attempt to get out of, or past, a
//! `corral run` sandbox, and asserts the exact secure outcome the attempt meets inside
//! (the errno, usually) and, where the attempt aims at the host, that nothing changed
//! on the host. It only grows: a new escape idea becomes a new test here.
//!
//! The probes are Python (`/usr/bin/python3` inside, from the host's read-only /usr)
//! with ctypes for raw system calls. Each probe prints one `name outcome` line per
//! attempt, where the outcome is `ok`, a return value or an errno name, and the test
//! compares the lines with the outcomes it expects.
//!
//! Tests run in parallel: every name, path, port and socket a test creates is unique,
//! and everything a test creates on the host it removes again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value;

/// The host uid that uid 1000 ("sandbox") inside maps to.
const HOST_UID_SANDBOX: u32 = 1_000_001_000;
/// The host uid that uid 0 (`--user root`) inside maps to.
const HOST_UID_ROOT: u32 = 1_000_000_000;

const ROOT: &[&str] = &["--user", "root"];

/// Helpers every probe starts with. `sc` is a raw system call that returns the result
/// as a string (its return value, or the errno name); `t` runs a Python callable and
/// prints `ok` (or what it returned) or the errno name of the OSError it raised.
const PRELUDE: &str = r#"
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
const SYSCALLS: &str = r#"
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
fn dedent(s: &str) -> String {
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
fn py(env: &Env, opts: &[&str], body: &str, args: &[&str]) -> Value {
    let code = format!("{PRELUDE}\n{}", dedent(body));
    let mut argv = vec!["/usr/bin/python3", "-c", code.as_str()];
    argv.extend_from_slice(args);
    env.json(opts, &argv).0
}

/// Runs the named raw system call probes and prints `name outcome` for each.
fn syscalls(env: &Env, opts: &[&str], names: &[&str]) -> Value {
    let body = format!("{SYSCALLS}\nfor n in sys.argv[1:]:\n    print(n, sc(*P[n]), flush=True)\n");
    py(env, opts, &body, names)
}

/// The `name outcome` lines of a probe that must have exited 0.
fn outcomes(v: &Value) -> BTreeMap<String, String> {
    assert_eq!(exit_code(v), 0, "the probe itself failed: {v}");
    parse(&stdout(v))
}

fn parse(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect()
}

/// Asserts every expected `name outcome` pair, reporting all mismatches at once.
fn expect(v: &Value, want: &[(&str, &str)]) {
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
fn expect_all(v: &Value, names: &[&str], want: &str) {
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, want)).collect();
    expect(v, &pairs);
}

/// A name unique to this test run, usable as a file name, socket name or argument.
fn marker(tag: &str) -> String {
    unique_host_path(tag)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Host processes whose command line contains `marker`.
fn host_processes_with(marker: &str) -> Vec<String> {
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
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
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
struct HostChild(Child);

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
struct HostPath(PathBuf);

impl Drop for HostPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether the host kernel has this path (for files corral masks only where present).
fn host_has(p: &str) -> bool {
    Path::new(p).exists()
}

// ---------------------------------------------------------------------------------
// Host files: nothing of the host's file system is visible or writable.
// ---------------------------------------------------------------------------------

const HOST_READS: &str = r#"
    host_file, state, runtime = sys.argv[1:4]
    t('host_file', lambda: open(host_file).read())
    t('host_file_listed', lambda: os.path.basename(host_file) in os.listdir('/tmp'))
    t('etc_shadow', lambda: open('/etc/shadow').read())
    t('etc_gshadow', lambda: open('/etc/gshadow').read())
    t('etc_machine_id', lambda: open('/etc/machine-id').read())
    t('etc_ssh', lambda: os.listdir('/etc/ssh'))
    t('root_home', lambda: os.listdir('/root'))
    t('var_lib', lambda: os.listdir('/var/lib'))
    t('work', lambda: os.listdir('/work'))
    t('state_dir', lambda: os.listdir(state))
    t('runtime_dir', lambda: os.listdir(runtime))
    t('host_root_files', lambda: sorted(os.listdir('/')))
"#;

const SANDBOX_ROOT_LISTING: &str =
    "['bin', 'dev', 'etc', 'home', 'lib', 'lib64', 'mnt', 'opt', 'proc', 'root', 'run', 'sbin', 'tmp', 'usr', 'var']";

fn host_files_probe(env: &Env, opts: &[&str], root_home: &str) {
    let host_file = HostPath(unique_host_path("host-secret"));
    std::fs::write(&host_file.0, "host secret").unwrap();
    let v = py(
        env,
        opts,
        HOST_READS,
        &[
            host_file.0.to_str().unwrap(),
            env.state.path().to_str().unwrap(),
            env.runtime.path().to_str().unwrap(),
        ],
    );
    expect(
        &v,
        &[
            ("host_file", "ENOENT"),
            ("host_file_listed", "False"),
            ("etc_shadow", "ENOENT"),
            ("etc_gshadow", "ENOENT"),
            ("etc_machine_id", "ENOENT"),
            ("etc_ssh", "ENOENT"),
            ("root_home", root_home),
            ("var_lib", "ENOENT"),
            ("work", "ENOENT"),
            ("state_dir", "ENOENT"),
            ("runtime_dir", "ENOENT"),
            ("host_root_files", SANDBOX_ROOT_LISTING),
        ],
    );
}

/// A file the test puts in the host's /tmp, /etc/shadow, the host's /root, /work and
/// corral's own state and runtime dirs are all absent inside (ENOENT); the sandbox's
/// /root is the template's, closed to uid 1000 (EACCES).
#[test]
fn host_files_are_invisible() {
    host_files_probe(&Env::new(), &[], "EACCES");
}

/// The same as root inside: nothing of the host, and the sandbox's own /root is empty.
#[test]
fn host_files_are_invisible_as_root() {
    host_files_probe(&Env::new(), ROOT, "[]");
}

const HOST_WRITE_DIRS: &[&str] = &[
    "/",
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/dev",
    "/proc",
    "/run",
    "/home",
    "/home/sandbox",
    "/root",
    "/mnt",
    "/opt",
    "/etc",
    "/usr",
    "/usr/bin",
    "/usr/local",
    "/lib",
    "/bin",
];

/// Tries to create `name` in every top-level directory and a few more, by open(O_CREAT),
/// mkdir, symlink and mknod(S_IFREG); then checks on the host that no such name appeared
/// anywhere the sandbox's paths could map to (the host's own directories, corral's state
/// dir with the template, its runtime dir).
fn host_writes_probe(opts: &[&str], expected: &[(&str, &str)]) {
    let env = Env::new();
    let name = marker("write");
    let body = r#"
        name = sys.argv[1]
        dirs = sys.argv[2:]
        for d in dirs:
            p = os.path.join(d, name)
            t('create:' + d, lambda: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)))
        t('mkdir:/usr', lambda: os.mkdir('/usr/' + name))
        t('symlink:/usr/bin', lambda: os.symlink('/tmp', '/usr/bin/' + name))
        t('mknod:/etc', lambda: os.mknod('/etc/' + name, 0o100644))
        t('link:/usr', lambda: os.link('/tmp/' + name, '/usr/' + name))
    "#;
    let mut args = vec![name.as_str()];
    args.extend_from_slice(HOST_WRITE_DIRS);
    let v = py(&env, opts, body, &args);

    // On the host: nothing named `name` anywhere.
    let mut leaked: Vec<PathBuf> = [
        "/",
        "/tmp",
        "/var/tmp",
        "/dev/shm",
        "/dev",
        "/run",
        "/home",
        "/root",
        "/mnt",
        "/opt",
        "/etc",
        "/usr",
        "/usr/bin",
        "/usr/local",
        "/usr/lib",
        "/bin",
        "/var/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join(&name))
    .filter(|p| p.symlink_metadata().is_ok())
    .collect();
    leaked.extend(find_named(env.state.path(), &name));
    leaked.extend(find_named(env.runtime.path(), &name));
    for p in &leaked {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_dir(p);
    }
    assert!(
        leaked.is_empty(),
        "sandbox writes reached the host: {leaked:?}"
    );
    expect(&v, expected);
}

/// uid 1000 can create files only in its own writable places (/tmp, /var/tmp, /dev/shm,
/// its home), none of which is the host's; the template's directories are closed
/// (EACCES), /usr and /dev are read-only mounts (EROFS, also for mkdir, symlink and a
/// hard link into /usr), /proc takes no new files (ENOENT). Nothing appears on the host.
#[test]
fn writes_never_reach_the_host() {
    host_writes_probe(
        &[],
        &[
            ("create:/", "EACCES"),
            ("create:/tmp", "ok"),
            ("create:/var/tmp", "ok"),
            ("create:/dev/shm", "ok"),
            ("create:/dev", "EROFS"),
            ("create:/proc", "ENOENT"),
            ("create:/run", "EACCES"),
            ("create:/home", "EACCES"),
            ("create:/home/sandbox", "ok"),
            ("create:/root", "EACCES"),
            ("create:/mnt", "EACCES"),
            ("create:/opt", "EACCES"),
            ("create:/etc", "EACCES"),
            ("create:/usr", "EROFS"),
            ("create:/usr/bin", "EROFS"),
            ("create:/usr/local", "EROFS"),
            ("create:/lib", "EROFS"),
            ("create:/bin", "EROFS"),
            ("mkdir:/usr", "EROFS"),
            ("symlink:/usr/bin", "EROFS"),
            ("mknod:/etc", "EACCES"),
            ("link:/usr", "EROFS"),
        ],
    );
}

/// The same as root inside: the template's directories belong to the sandbox's root
/// (its mapped host id), so root writes them in the writable layer (the mknod probe
/// then finds the name the create probe made: EEXIST); / itself is closed by Landlock
/// (EACCES); /usr and /dev stay read-only. Nothing appears on the host.
#[test]
fn writes_never_reach_the_host_as_root() {
    host_writes_probe(
        ROOT,
        &[
            ("create:/", "EACCES"),
            ("create:/tmp", "ok"),
            ("create:/var/tmp", "ok"),
            ("create:/dev/shm", "ok"),
            ("create:/dev", "EROFS"),
            ("create:/proc", "ENOENT"),
            ("create:/run", "ok"),
            ("create:/home", "ok"),
            ("create:/home/sandbox", "ok"),
            ("create:/root", "ok"),
            ("create:/mnt", "ok"),
            ("create:/opt", "ok"),
            ("create:/etc", "ok"),
            ("create:/usr", "EROFS"),
            ("create:/usr/bin", "EROFS"),
            ("create:/usr/local", "EROFS"),
            ("create:/lib", "EROFS"),
            ("create:/bin", "EROFS"),
            ("mkdir:/usr", "EROFS"),
            ("symlink:/usr/bin", "EROFS"),
            ("mknod:/etc", "EEXIST"),
            ("link:/usr", "EROFS"),
        ],
    );
}

/// What one run writes into the writable layer is gone in the next run of the same
/// template, and the template on the host never holds it.
#[test]
fn the_template_is_not_modified_by_a_run() {
    let env = Env::new();
    let name = marker("persist");
    let body = r#"
        name = sys.argv[2]
        paths = ['/root/' + name, '/home/sandbox/' + name, '/tmp/' + name, '/var/tmp/' + name]
        if sys.argv[1] == 'write':
            for p in paths:
                t('write:' + p.replace(name, 'X'), lambda: open(p, 'w').write('persist?') and None)
        else:
            for p in paths:
                t('read:' + p.replace(name, 'X'), lambda: open(p).read())
    "#;
    let v = py(&env, ROOT, body, &["write", &name]);
    expect(
        &v,
        &[
            ("write:/root/X", "ok"),
            ("write:/home/sandbox/X", "ok"),
            ("write:/tmp/X", "ok"),
            ("write:/var/tmp/X", "ok"),
        ],
    );
    let v = py(&env, ROOT, body, &["read", &name]);
    expect(
        &v,
        &[
            ("read:/root/X", "ENOENT"),
            ("read:/home/sandbox/X", "ENOENT"),
            ("read:/tmp/X", "ENOENT"),
            ("read:/var/tmp/X", "ENOENT"),
        ],
    );
    let found = find_named(env.state.path(), &name);
    assert!(
        found.is_empty(),
        "the template on the host changed: {found:?}"
    );
}

/// Root inside cannot change the host's /usr by any route: it is a read-only bind
/// (EROFS for chown, chmod, utime, rename, unlink, mkdir, setxattr), the files belong
/// to the unmapped host root (EACCES to open for writing or truncate, whose permission
/// check comes first) and /usr is another mount (EXDEV for a hard link to it from /tmp).
#[test]
fn usr_cannot_be_modified_as_root() {
    let env = Env::new();
    let before = std::fs::metadata("/usr/bin/python3").unwrap();
    let body = r#"
        f = '/usr/bin/python3'
        t('open_write', lambda: os.close(os.open(f, os.O_WRONLY)))
        t('truncate', lambda: os.truncate(f, 0))
        t('chown', lambda: os.chown(f, 0, 0))
        t('chmod', lambda: os.chmod(f, 0o4777))
        t('utime', lambda: os.utime(f, (0, 0)))
        t('rename', lambda: os.rename(f, '/usr/bin/p'))
        t('unlink', lambda: os.unlink(f))
        t('mkdir', lambda: os.mkdir('/usr/newdir'))
        t('setxattr', lambda: os.setxattr(f, 'user.x', b'1'))
        t('link_to_tmp', lambda: os.link(f, '/tmp/py'))
    "#;
    let v = py(&env, ROOT, body, &[]);
    expect(
        &v,
        &[
            ("open_write", "EACCES"),
            ("truncate", "EACCES"),
            ("chown", "EROFS"),
            ("chmod", "EROFS"),
            ("utime", "EROFS"),
            ("rename", "EROFS"),
            ("unlink", "EROFS"),
            ("mkdir", "EROFS"),
            ("setxattr", "EROFS"),
            ("link_to_tmp", "EXDEV"),
        ],
    );
    let after = std::fs::metadata("/usr/bin/python3").unwrap();
    assert_eq!(before.permissions().mode(), after.permissions().mode());
    assert_eq!(before.len(), after.len());
}

// ---------------------------------------------------------------------------------
// Host processes: not visible, not signallable; the sandbox's init is off limits too.
// ---------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------
// Network: the sandbox has its own loopback and nothing else.
// ---------------------------------------------------------------------------------

/// A TCP listener on the host's 127.0.0.1 is unreachable: 127.0.0.1 inside is the
/// sandbox's own loopback, where nothing listens (ECONNREFUSED), and the host listener
/// never sees a connection.
#[test]
fn host_loopback_tcp_is_unreachable() {
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let body = r#"
        port = int(sys.argv[1])
        t('connect_v4', lambda: socket.create_connection(('127.0.0.1', port), timeout=5).close())
        t('connect_v4_other', lambda: socket.create_connection(('127.0.0.2', port), timeout=5).close())
        t('connect_v6', lambda: socket.create_connection(('::1', port), timeout=5).close())
    "#;
    let v = py(&env, &[], body, &[&port]);
    expect(
        &v,
        &[
            ("connect_v4", "ECONNREFUSED"),
            ("connect_v4_other", "ECONNREFUSED"),
            ("connect_v6", "ECONNREFUSED"),
        ],
    );
    let err = listener.accept().map(|_| ()).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::WouldBlock,
        "the host listener got a connection"
    );
}

/// A UDP socket on the host's 127.0.0.1 receives nothing from the sandbox; inside, the
/// datagram goes to the sandbox's own loopback where no one listens, and the port
/// unreachable that comes back surfaces as ECONNREFUSED.
#[test]
fn host_loopback_udp_is_unreachable() {
    let env = Env::new();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let body = r#"
        port = int(sys.argv[1])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.connect(('127.0.0.1', port))
        t('send', lambda: s.send(b'escape'))
        t('recv', lambda: s.recv(100))
    "#;
    let v = py(&env, &[], body, &[&port]);
    expect(&v, &[("send", "6"), ("recv", "ECONNREFUSED")]);
    let mut buf = [0u8; 64];
    let err = sock.recv_from(&mut buf).map(|_| ()).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::WouldBlock,
        "the host UDP socket got a datagram"
    );
}

/// An abstract unix socket bound on the host is not found from the sandbox (abstract
/// names belong to the network namespace): ECONNREFUSED for stream and datagram.
#[test]
fn host_abstract_unix_socket_is_unreachable() {
    let env = Env::new();
    let name = marker("abstract");
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let body = r#"
        name = '\0' + sys.argv[1]
        t('stream', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(name))
        t('seqpacket', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).connect(name))
        t('dgram', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'x', name))
    "#;
    for opts in [&[][..], ROOT] {
        let v = py(&env, opts, body, &[&name]);
        expect(
            &v,
            &[
                ("stream", "ECONNREFUSED"),
                ("seqpacket", "ECONNREFUSED"),
                ("dgram", "ECONNREFUSED"),
            ],
        );
    }
    let err = listener.accept().map(|_| ()).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::WouldBlock,
        "the host socket got a connection"
    );
}

/// The only interface is lo; any other address has no route (ENETUNREACH, so no packet
/// leaves); raw and packet sockets need CAP_NET_RAW (EPERM); AF_VSOCK, a way to the
/// hypervisor host, is refused by the seccomp filter (EPERM).
#[test]
fn network_has_only_loopback() {
    let env = Env::new();
    let body = r#"
        devs = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
        print('interfaces', devs)
        t('connect_testnet_v4', lambda: socket.create_connection(('192.0.2.1', 80), timeout=5))
        t('connect_testnet_v6', lambda: socket.create_connection(('2001:db8::1', 80), timeout=5))
        t('udp_testnet', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.1', 53)))
        t('raw', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        t('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
        t('vsock', lambda: socket.socket(40, socket.SOCK_STREAM, 0))
    "#;
    let v = py(&env, &[], body, &[]);
    expect(
        &v,
        &[
            ("interfaces", "['lo']"),
            ("connect_testnet_v4", "ENETUNREACH"),
            ("connect_testnet_v6", "ENETUNREACH"),
            ("udp_testnet", "ENETUNREACH"),
            ("raw", "EPERM"),
            ("packet", "EPERM"),
            ("vsock", "EPERM"),
        ],
    );
}

/// Root inside has no CAP_NET_ADMIN/CAP_NET_RAW over the network namespace (it belongs
/// to the host's user namespace): it cannot reconfigure lo, add an address or a route,
/// or open raw/packet sockets (EPERM each).
#[test]
fn network_cannot_be_reconfigured_as_root() {
    let env = Env::new();
    let body = r#"
        import fcntl
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        SIOCSIFMTU, SIOCSIFADDR, SIOCSIFFLAGS, SIOCADDRT = 0x8922, 0x8916, 0x8914, 0x890B
        t('set_mtu', lambda: fcntl.ioctl(s, SIOCSIFMTU, struct.pack('16si20x', b'lo', 1400)))
        addr = struct.pack('HH4s8x', socket.AF_INET, 0, socket.inet_aton('10.99.0.1'))
        t('set_addr', lambda: fcntl.ioctl(s, SIOCSIFADDR, struct.pack('16s', b'lo') + addr))
        t('set_flags', lambda: fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack('16sh22x', b'lo', 0)))
        t('add_route', lambda: fcntl.ioctl(s, SIOCADDRT, b'\0' * 120))
        t('raw', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        t('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
    "#;
    let v = py(&env, ROOT, body, &[]);
    expect(
        &v,
        &[
            ("set_mtu", "EPERM"),
            ("set_addr", "EPERM"),
            ("set_flags", "EPERM"),
            ("add_route", "EPERM"),
            ("raw", "EPERM"),
            ("packet", "EPERM"),
        ],
    );
}

// ---------------------------------------------------------------------------------
// Mounts and namespaces.
// ---------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------
// The seccomp filter: each denied class returns EPERM from the filter.
// ---------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------
// Devices.
// ---------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------
// /proc.
// ---------------------------------------------------------------------------------

const PROC_SYS_FILES: &[&str] = &[
    "/proc/sys/kernel/hostname",
    "/proc/sys/kernel/domainname",
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/kernel/sysrq",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/kernel/randomize_va_space",
    "/proc/sys/vm/drop_caches",
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/fs/binfmt_misc/register",
    "/proc/sys/net/ipv4/ip_forward",
];

/// Writes to /proc/sys files (hostname, core_pattern, modprobe, drop_caches, ...) fail,
/// with an errno that shows which layer answered first:
/// - open(O_WRONLY), as `dd`/`tee` do: EACCES. The files belong to the host's root
///   (unmapped inside), so the permission check in may_open() fails before the
///   read-only mount is consulted (and Landlock denies writes under /proc anyway);
///   the one world-writable file, ns_last_pid, gets EROFS from the read-only mount.
/// - open(O_WRONLY|O_CREAT|O_TRUNC), as a shell's `>` and Python's open('w') do: EROFS.
///   With O_CREAT/O_TRUNC the kernel takes mnt_want_write() before the permission
///   check, and /proc/sys is a read-only bind.
///
/// Files the host kernel lacks are ENOENT either way. The mount is read-only, and the
/// host's hostname and core_pattern are unchanged.
fn proc_sys_probe(opts: &[&str]) {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let body = r#"
        def write(p, flags):
            fd = os.open(p, flags)
            try:
                os.write(fd, b'|/tmp/evil')
            finally:
                os.close(fd)
        for p in sys.argv[1:]:
            t('wronly:' + p, lambda: write(p, os.O_WRONLY))
            t('trunc:' + p, lambda: write(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
        for l in open('/proc/self/mountinfo'):
            f = l.split()
            if f[4] == '/proc/sys':
                print('mount:/proc/sys', f[5].split(',')[0])
    "#;
    let v = py(&Env::new(), opts, body, PROC_SYS_FILES);
    let keys: Vec<(String, String)> = PROC_SYS_FILES
        .iter()
        .map(|p| (format!("wronly:{p}"), format!("trunc:{p}")))
        .collect();
    let mut want: Vec<(&str, &str)> = Vec::new();
    for ((wronly, trunc), p) in keys.iter().zip(PROC_SYS_FILES) {
        let present = host_has(p);
        // ns_last_pid is mode 0666 (its handler checks capabilities itself), so the
        // permission check passes and the read-only mount answers.
        let dac = if p.ends_with("/ns_last_pid") {
            "EROFS"
        } else {
            "EACCES"
        };
        want.push((wronly, if present { dac } else { "ENOENT" }));
        want.push((trunc, if present { "EROFS" } else { "ENOENT" }));
    }
    want.push(("mount:/proc/sys", "ro"));
    expect(&v, &want);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
}

#[test]
fn proc_sys_is_not_writable() {
    proc_sys_probe(&[]);
}

/// As root inside the same: proc's sysctl permission check compares with the host's
/// root uid, which root inside (host uid 1000000000) is not, so EACCES / EROFS again.
#[test]
fn proc_sys_is_not_writable_as_root() {
    proc_sys_probe(ROOT);
}

/// The kernel-internals files of /proc reveal nothing: the masked ones (keys, kmsg,
/// kpage*, timer_list, vmallocinfo, and kcore/sysrq-trigger/sched_debug where the host
/// has them) read empty, the ones the host kernel lacks are ENOENT; /proc/acpi is an
/// empty read-only directory; /proc/sysrq-trigger, where present, is /dev/null;
/// /proc/kallsyms (kernel addresses: a KASLR bypass where kptr_restrict is 0) is masked.
#[test]
fn masked_proc_files_reveal_nothing() {
    let files = [
        "/proc/kcore",
        "/proc/sysrq-trigger",
        "/proc/keys",
        "/proc/key-users",
        "/proc/kmsg",
        "/proc/kpagecgroup",
        "/proc/kpagecount",
        "/proc/kpageflags",
        "/proc/timer_list",
        "/proc/vmallocinfo",
        "/proc/sched_debug",
        "/proc/latency_stats",
        "/proc/timer_stats",
        "/proc/kallsyms",
    ];
    let body = r#"
        for p in sys.argv[1:]:
            t('read:' + p, lambda: len(open(p, 'rb').read(65536)))
        t('acpi', lambda: os.listdir('/proc/acpi'))
        t('acpi_write', lambda: open('/proc/acpi/evil', 'w'))
        if os.path.exists('/proc/sysrq-trigger'):
            st = os.stat('/proc/sysrq-trigger')
            print('sysrq_trigger', os.major(st.st_rdev), os.minor(st.st_rdev))
        else:
            print('sysrq_trigger', 'absent')
    "#;
    let v = py(&Env::new(), &[], body, &files);
    let keys: Vec<String> = files.iter().map(|p| format!("read:{p}")).collect();
    let mut want: Vec<(&str, &str)> = keys
        .iter()
        .zip(files)
        .map(|(k, p)| (k.as_str(), if host_has(p) { "0" } else { "ENOENT" }))
        .collect();
    want.push((
        "acpi",
        if host_has("/proc/acpi") {
            "[]"
        } else {
            "ENOENT"
        },
    ));
    want.push((
        "acpi_write",
        if host_has("/proc/acpi") {
            "EROFS"
        } else {
            "ENOENT"
        },
    ));
    want.push((
        "sysrq_trigger",
        if host_has("/proc/sysrq-trigger") {
            "1 3"
        } else {
            "absent"
        },
    ));
    expect(&v, &want);
}

/// The kernel log is closed: syslog(2) READ_ALL and SIZE_BUFFER are EPERM from the
/// filter, /dev/kmsg does not exist, /proc/kmsg is masked (reads empty).
#[test]
fn kernel_log_is_not_readable() {
    let env = Env::new();
    let v = syscalls(&env, &[], &["syslog", "syslog_size"]);
    expect(&v, &[("syslog", "EPERM"), ("syslog_size", "EPERM")]);
    let body = r#"
        t('dev_kmsg', lambda: open('/dev/kmsg', 'rb').read(100))
        t('proc_kmsg', lambda: len(open('/proc/kmsg', 'rb').read(100)))
    "#;
    let v = py(&env, &[], body, &[]);
    expect(
        &v,
        &[
            ("dev_kmsg", "ENOENT"),
            (
                "proc_kmsg",
                if host_has("/proc/kmsg") {
                    "0"
                } else {
                    "ENOENT"
                },
            ),
        ],
    );
}

const SELF_WRITE_PROBE: &str = r#"
    t('exe_wronly', lambda: os.close(os.open('/proc/self/exe', os.O_WRONLY)))
    t('exe_rdwr', lambda: os.close(os.open('/proc/self/exe', os.O_RDWR)))
    t('exe_trunc', lambda: os.close(os.open('/proc/self/exe', os.O_WRONLY | os.O_TRUNC)))
    t('python_binary', lambda: os.close(os.open(os.path.realpath('/proc/self/exe'), os.O_WRONLY)))
    ro = os.open('/usr/bin/python3', os.O_RDONLY)
    t('reopen_fd_rw', lambda: os.close(os.open('/proc/self/fd/%d' % ro, os.O_RDWR)))
    t('self_mem_rdwr', lambda: os.close(os.open('/proc/self/mem', os.O_RDWR)))
    t('exe_path', lambda: os.path.realpath('/proc/self/exe').startswith('/usr/bin/python3'))
"#;

const SELF_WRITE_EXPECTED: &[(&str, &str)] = &[
    ("exe_wronly", "EACCES"),
    ("exe_rdwr", "EACCES"),
    ("exe_trunc", "EROFS"),
    ("python_binary", "EACCES"),
    ("reopen_fd_rw", "EACCES"),
    ("self_mem_rdwr", "EACCES"),
    ("exe_path", "True"),
];

/// The running binary cannot be opened for writing through /proc/self/exe, its path, or
/// a reopened read-only fd (EACCES: host-root-owned file, and Landlock denies writes to
/// /usr), nor /proc/self/mem (Landlock: no writes under /proc) — as uid 1000 and root.
#[test]
fn proc_self_exe_and_mem_cannot_be_written() {
    let env = Env::new();
    let size = std::fs::metadata("/usr/bin/python3").unwrap().len();
    expect(&py(&env, &[], SELF_WRITE_PROBE, &[]), SELF_WRITE_EXPECTED);
    expect(&py(&env, ROOT, SELF_WRITE_PROBE, &[]), SELF_WRITE_EXPECTED);
    assert_eq!(std::fs::metadata("/usr/bin/python3").unwrap().len(), size);
}

/// The sandbox's cgroup view is namespaced: every hierarchy reads as "/" and nothing of
/// the host's cgroup layout (this test's parent cgroup) shows.
#[test]
fn cgroup_view_is_namespaced() {
    let env = Env::new();
    let body = r#"
        lines = open('/proc/self/cgroup').read().splitlines()
        print('all_root', all(l.rsplit(':', 1)[1] == '/' for l in lines), len(lines) > 0)
        print('parent_named', sys.argv[1] in open('/proc/self/cgroup').read() + open('/proc/self/mountinfo').read())
    "#;
    let v = py(&env, &[], body, &[&env.cgroup_parent]);
    expect(&v, &[("all_root", "True True"), ("parent_named", "False")]);
}

// ---------------------------------------------------------------------------------
// Resource exhaustion.
// ---------------------------------------------------------------------------------

/// A fork bomb under `--pids 64` stops at the cap with EAGAIN, the run ends on its own
/// long before the timeout, every forked process dies with it, and the host can still
/// start processes.
#[test]
fn fork_bomb_is_contained() {
    let env = Env::new();
    let mark = marker("forkbomb");
    let body = r#"
        import time
        n = 0
        while True:
            try:
                pid = os.fork()
            except OSError as e:
                print('fork', n, en(e.errno), flush=True)
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            n += 1
    "#;
    let v = py(&env, &["--pids", "64", "--timeout", "30s"], body, &[&mark]);
    let got = outcomes(&v);
    let (n, err) = got["fork"].split_once(' ').unwrap();
    let n: u32 = n.parse().unwrap();
    assert_eq!(err, "EAGAIN", "{v}");
    assert!(
        (32..64).contains(&n),
        "forked {n} processes under --pids 64: {v}"
    );
    assert_eq!(v["timed_out"], false, "{v}");
    assert!(v["duration_ms"].as_u64().unwrap() < 20_000, "{v}");
    let left = host_processes_with(&mark);
    assert!(left.is_empty(), "fork bomb processes survived: {left:?}");
    assert!(Command::new("/bin/true").status().unwrap().success());
}

/// A memory bomb under `--memory 64M` is OOM-killed: exit 137, oom_killed, SIGKILL.
#[test]
fn memory_bomb_is_oom_killed() {
    let v = py(
        &Env::new(),
        &["--memory", "64M", "--timeout", "30s"],
        "a = []\nwhile True:\n    a.append(b'\\x01' * (1 << 20))\n",
        &[],
    );
    assert_eq!(exit_code(&v), 137, "{v}");
    assert_eq!(v["oom_killed"], true, "{v}");
    assert_eq!(v["signal"], 9, "{v}");
    assert_eq!(v["timed_out"], false, "{v}");
}

const FILL: &str = r#"
    def fill(d, limit=64):
        total = 0
        for i in range(limit):
            try:
                with open('%s/fill%d' % (d, i), 'wb') as f:
                    for _ in range(4):
                        f.write(b'x' * (1 << 20))
                        total += 1 << 20
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                return '%d %s' % (total >> 20, en(e.errno))
        return '%d none' % (total >> 20)
    def clear(d):
        for n in os.listdir(d):
            if n.startswith('fill'):
                os.unlink(os.path.join(d, n))
"#;

/// `--disk 16M`: filling /tmp with 4 MiB files stops with ENOSPC at the cap (between 12
/// and 16 MiB written), and so does filling the root file system (the writable layer).
#[test]
fn disk_fill_hits_enospc_at_the_cap() {
    let body = format!(
        "{}\nprint('tmp', fill('/tmp'))\nclear('/tmp')\nprint('home', fill('/home/sandbox'))\n",
        dedent(FILL)
    );
    let v = py(&Env::new(), &["--disk", "16M"], &body, &[]);
    let got = outcomes(&v);
    for k in ["tmp", "home"] {
        let (mib, err) = got[k].split_once(' ').unwrap();
        let mib: u32 = mib.parse().unwrap();
        assert_eq!(err, "ENOSPC", "{k}: {v}");
        assert!(
            (12..=16).contains(&mib),
            "{k}: wrote {mib} MiB under --disk 16M: {v}"
        );
    }
}

/// /, /tmp and /dev/shm share the one cap: with 12 MiB in /tmp, /dev/shm and the home
/// directory take at most the remaining 4 MiB before ENOSPC.
#[test]
fn root_tmp_and_shm_share_one_disk_cap() {
    let body = format!(
        "{}\nprint('tmp', fill('/tmp', 3))\nprint('shm', fill('/dev/shm'))\nprint('home', fill('/home/sandbox'))\n",
        dedent(FILL)
    );
    let v = py(&Env::new(), &["--disk", "16M"], &body, &[]);
    let got = outcomes(&v);
    assert_eq!(got["tmp"], "12 none", "{v}");
    let (shm, err) = got["shm"].split_once(' ').unwrap();
    assert_eq!(err, "ENOSPC", "{v}");
    assert!(shm.parse::<u32>().unwrap() <= 4, "{v}");
    let (home, err) = got["home"].split_once(' ').unwrap();
    assert_eq!(err, "ENOSPC", "{v}");
    assert_eq!(home, "0", "{v}");
}

/// `--cpus 0.5`: two processes spinning for 2 s of wall time get about 1 s of CPU
/// between them (asserted < 0.65 x wall + 150 ms of slack), while `--cpus 2` lets the
/// same load use more than the 0.5 cap would (asserted > 0.55 x wall, tolerant of the
/// other tests running on the same 2 cores).
#[test]
fn cpu_cap_limits_cpu_time() {
    let env = Env::new();
    let body = r#"
        import time
        end = time.monotonic() + 2
        pid = os.fork()
        while time.monotonic() < end:
            pass
        if pid:
            os.waitpid(pid, 0)
        else:
            os._exit(0)
    "#;
    let capped = py(&env, &["--cpus", "0.5"], body, &[]);
    assert_eq!(exit_code(&capped), 0, "{capped}");
    let wall = capped["duration_ms"].as_u64().unwrap();
    let cpu = capped["cpu_time_ms"].as_u64().unwrap();
    assert!(wall >= 2000, "{capped}");
    assert!(
        cpu * 100 < wall * 65 + 15_000,
        "--cpus 0.5 used {cpu} ms CPU in {wall} ms: {capped}"
    );
    let free = py(&env, &["--cpus", "2"], body, &[]);
    assert_eq!(exit_code(&free), 0, "{free}");
    let wall2 = free["duration_ms"].as_u64().unwrap();
    let cpu2 = free["cpu_time_ms"].as_u64().unwrap();
    // Alone on 2 cores this is ~2 x wall; with the other tests competing for the cores
    // it can drop to ~0.7 x wall, still well above what a 0.5 cap lets through.
    assert!(
        cpu2 * 100 > wall2 * 55,
        "--cpus 2 used only {cpu2} ms CPU in {wall2} ms with 2 spinners: {free}"
    );
}

/// `--timeout 1s` with a double-forked survivor: exit 124, timed_out, and once corral
/// has returned no host process carries the survivor's marker.
#[test]
fn timeout_kills_double_forked_survivors() {
    let env = Env::new();
    let mark = marker("survivor");
    let script = format!(
        "(/usr/bin/python3 -c 'import time; time.sleep(100)' {mark} &) ; \
         /usr/bin/python3 -c 'import os, time\nif os.fork() == 0:\n  os.setsid()\n  if os.fork() == 0: time.sleep(100)\n  os._exit(0)\ntime.sleep(100)' {mark}"
    );
    let v = env.sh(&["--timeout", "1s"], &script);
    assert_eq!(exit_code(&v), 124, "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert!(v["duration_ms"].as_u64().unwrap() < 10_000, "{v}");
    let left = host_processes_with(&mark);
    assert!(left.is_empty(), "processes survived the timeout: {left:?}");
}

/// The command exits 0 while a setsid'd child (still holding stdout) lives on: corral
/// returns at once with exit 0, and no host process carries the child's marker.
#[test]
fn exited_command_leaves_no_daemon_behind() {
    let env = Env::new();
    let mark = marker("daemon");
    let script = format!(
        "setsid /usr/bin/python3 -c 'import time; time.sleep(1000)' {mark} & \
         /usr/bin/python3 -c 'import os\nif os.fork() == 0:\n  os.setsid()\n  if os.fork() == 0:\n    os.execv(\"/bin/sleep\", [\"sleep\", \"1000\", \"{mark}\"])\n  os._exit(0)' {mark}; \
         exit 0"
    );
    let v = env.sh(&["--timeout", "30s"], &script);
    assert_eq!(exit_code(&v), 0, "{v}");
    assert_eq!(v["timed_out"], false, "{v}");
    assert!(v["duration_ms"].as_u64().unwrap() < 10_000, "{v}");
    let left = host_processes_with(&mark);
    assert!(left.is_empty(), "daemons outlived the command: {left:?}");
}

// ---------------------------------------------------------------------------------
// What corral's caller has: fds, environment.
// ---------------------------------------------------------------------------------

/// corral is started with fd 7 open (no CLOEXEC) on a secret host file: inside, only
/// fds 0, 1 and 2 exist (fd 7 is EBADF), stdin is /dev/null and stdout/stderr are
/// corral's pipes, not any host file.
#[test]
fn host_fds_do_not_leak_inside() {
    let env = Env::new();
    let secret = HostPath(unique_host_path("fd-secret"));
    std::fs::write(&secret.0, "fd secret").unwrap();
    let body = r#"
        valid = []
        for fd in range(1024):
            try:
                os.fstat(fd)
                valid.append(fd)
            except OSError:
                pass
        print('fds', valid)
        t('fd7', lambda: os.fstat(7))
        print('listing', sorted(os.listdir('/proc/self/fd'), key=int))
        print('stdin', os.readlink('/proc/self/fd/0'))
        print('stdout_pipe', os.readlink('/proc/self/fd/1').startswith('pipe:'))
        print('stderr_pipe', os.readlink('/proc/self/fd/2').startswith('pipe:'))
    "#;
    let code = format!("{PRELUDE}\n{}", dedent(body));
    let base = env.cmd();
    let mut c = Command::new("/bin/sh");
    c.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.arg("-c")
        .arg("exec 7<\"$0\" || exit 99; exec \"$@\"")
        .arg(&secret.0)
        .arg(env!("CARGO_BIN_EXE_corral"))
        .args(["run", "--json", "--", "/usr/bin/python3", "-c", &code])
        .stdin(Stdio::null());
    let out = c.output().unwrap();
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {out:?}"));
    expect(
        &v,
        &[
            ("fds", "[0, 1, 2]"),
            ("fd7", "EBADF"),
            ("listing", "['0', '1', '2', '3']"),
            ("stdin", "/dev/null"),
            ("stdout_pipe", "True"),
            ("stderr_pipe", "True"),
        ],
    );
    assert!(!stdout(&v).contains("fd secret"), "{v}");
}

/// A secret in corral's own environment does not get in: not in the command's
/// environment, not in a shell's `env`, and init's /proc/1/environ is closed (EACCES).
/// The inside environment holds only corral's own variables.
#[test]
fn host_environment_does_not_leak() {
    let env = Env::new();
    let name = format!("CORRAL_ESCAPE_SECRET_{}", std::process::id());
    let value = marker("env-secret-value");
    let body = r#"
        import subprocess
        print('keys', sorted(os.environ))
        print('shell_env', ' '.join(sorted(l.split('=')[0] for l in subprocess.run(['env'], capture_output=True, text=True).stdout.splitlines())))
        t('init_environ', lambda: open('/proc/1/environ', 'rb').read())
        print('self_environ', open('/proc/self/environ', 'rb').read().replace(b'\0', b' ').decode())
    "#;
    let code = format!("{PRELUDE}\n{}", dedent(body));
    let mut c = env.cmd();
    c.env(&name, &value)
        .env("LD_PRELOAD", "/nonexistent/corral-evil.so")
        .env("HOME", "/root")
        .args(["run", "--json", "--", "/usr/bin/python3", "-c", &code]);
    let out = c.output().unwrap();
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {out:?}"));
    let all = format!("{}{}", stdout(&v), stderr(&v));
    assert!(
        !all.contains(&name) && !all.contains(&value),
        "the secret leaked: {v}"
    );
    assert!(
        !all.contains("CORRAL_STATE_DIR") && !all.contains("LD_PRELOAD"),
        "{v}"
    );
    let got = outcomes(&v);
    assert_eq!(got["init_environ"], "EACCES", "{v}");
    let allowed = [
        "HOME", "HOSTNAME", "LANG", "LOGNAME", "PATH", "PWD", "SHELL", "SHLVL", "TERM", "USER",
    ];
    for k in got["shell_env"].split(' ') {
        assert!(allowed.contains(&k), "unexpected variable {k} inside: {v}");
    }
    assert!(got["self_environ"].contains("HOME=/home/sandbox"), "{v}");
}

// ---------------------------------------------------------------------------------
// Sandboxes next to each other.
// ---------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------
// Privilege: setuid, uid changes, rlimits, chroot.
// ---------------------------------------------------------------------------------

/// A host directory mounted in with two setuid copies of `id`: one owned by the host's
/// root (unmapped inside), one setuid+setgid to the host uid that root inside maps to
/// (so root inside, were the bit honoured). Run by uid 1000, both report uid 1000 and
/// no euid: the mount is nosuid and no_new_privs is set.
#[test]
fn setuid_root_binary_on_a_mount_does_not_elevate() {
    let env = Env::new();
    let dir = HostPath(unique_host_path("suid"));
    std::fs::create_dir(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host_root = dir.0.join("id-host-root");
    let sandbox_root = dir.0.join("id-sandbox-root");
    for (p, uid, mode) in [
        (&host_root, 0, 0o4755),
        (&sandbox_root, HOST_UID_ROOT, 0o6755),
    ] {
        std::fs::copy("/usr/bin/id", p).unwrap();
        std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mount = format!("{}:/mnt/suid:rw", dir.0.display());
    let body = r#"
        import subprocess
        for n in ('id-host-root', 'id-sandbox-root'):
            p = '/mnt/suid/' + n
            st = os.stat(p)
            print(n + ':mode', oct(st.st_mode & 0o7777), st.st_uid)
            print(n + ':id', subprocess.run([p], capture_output=True, text=True).stdout.strip())
        for l in open('/proc/self/mountinfo'):
            f = l.split()
            if f[4] == '/mnt/suid':
                print('mount_nosuid', 'nosuid' in f[5].split(','))
        print('no_new_privs', [l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0])
    "#;
    let v = py(&env, &["--mount", &mount], body, &[]);
    let id = "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)";
    expect(
        &v,
        &[
            ("id-host-root:mode", "0o4755 65534"),
            ("id-host-root:id", id),
            ("id-sandbox-root:mode", "0o6755 0"),
            ("id-sandbox-root:id", id),
            ("mount_nosuid", "True"),
            ("no_new_privs", "1"),
        ],
    );
}

/// The host's own setuid-root binaries (in the bound /usr) run without privilege: the
/// bit is there, but `mount` says "must be superuser" (exit 32) and nothing is mounted;
/// setuid/setgid/setgroups to root are EPERM.
#[test]
fn host_setuid_binaries_do_not_elevate() {
    let env = Env::new();
    let mount_is_suid = std::fs::metadata("/usr/bin/mount")
        .map(|m| m.permissions().mode() & 0o4000 != 0)
        .unwrap_or(false);
    let body = r#"
        import subprocess
        before = open('/proc/self/mountinfo').read()
        if os.path.exists('/usr/bin/mount') and os.stat('/usr/bin/mount').st_mode & 0o4000:
            os.makedirs('/tmp/m', exist_ok=True)
            r = subprocess.run(['/usr/bin/mount', '-t', 'tmpfs', 'none', '/tmp/m'], capture_output=True, text=True)
            print('mount_exit', r.returncode)
            print('mount_says_superuser', 'must be superuser' in r.stderr)
        print('mounts_unchanged', open('/proc/self/mountinfo').read() == before)
        t('setuid0', lambda: os.setuid(0))
        t('setresuid0', lambda: os.setresuid(0, 0, 0))
        t('setgid0', lambda: os.setgid(0))
        t('setgroups0', lambda: os.setgroups([0]))
        for l in open('/proc/self/mountinfo'):
            f = l.split()
            if f[4] == '/usr':
                print('usr_nosuid', 'nosuid' in f[5].split(','))
    "#;
    let v = py(&env, &[], body, &[]);
    let mut want = vec![
        ("mounts_unchanged", "True"),
        ("setuid0", "EPERM"),
        ("setresuid0", "EPERM"),
        ("setgid0", "EPERM"),
        ("setgroups0", "EPERM"),
        ("usr_nosuid", "True"),
    ];
    if mount_is_suid {
        want.push(("mount_exit", "32"));
        want.push(("mount_says_superuser", "True"));
    }
    expect(&v, &want);
}

/// Root inside makes setuid-root copies of `id` in /tmp and in the home directory and
/// runs them after dropping to uid 1000: they still report uid 1000 (nosuid mounts,
/// no_new_privs).
#[test]
fn setuid_bit_set_by_sandbox_root_is_ignored() {
    let body = r#"
        import shutil, subprocess
        def drop():
            os.setgroups([])
            os.setgid(1000)
            os.setuid(1000)
        for d in ('/tmp', '/home/sandbox', '/dev/shm'):
            p = d + '/id'
            shutil.copy('/usr/bin/id', p)
            os.chown(p, 0, 0)
            os.chmod(p, 0o6755)
            st = os.stat(p)
            print(d + ':mode', oct(st.st_mode & 0o7777), st.st_uid)
            print(d + ':id', subprocess.run([p], capture_output=True, text=True, preexec_fn=drop).stdout.strip())
    "#;
    let v = py(&Env::new(), ROOT, body, &[]);
    let id = "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)";
    expect(
        &v,
        &[
            ("/tmp:mode", "0o6755 0"),
            ("/tmp:id", id),
            ("/home/sandbox:mode", "0o6755 0"),
            ("/home/sandbox:id", id),
            ("/dev/shm:mode", "0o6755 0"),
            ("/dev/shm:id", id),
        ],
    );
}

/// Root inside lacks CAP_SYS_RESOURCE: the hard limits corral set (nofile 1024, fsize =
/// --disk, core 0) cannot be raised (EPERM), and core dumps stay off.
#[test]
fn rlimits_cannot_be_raised_as_root() {
    let body = r#"
        def setrl(res, soft, hard):
            lim = (ctypes.c_ulong * 2)(soft, hard)
            ctypes.set_errno(0)
            r = libc.setrlimit(res, lim)
            return 'ok' if r == 0 else en(ctypes.get_errno())
        def getrl(res):
            lim = (ctypes.c_ulong * 2)()
            libc.getrlimit(res, lim)
            return '%d %d' % (lim[0], lim[1])
        INF = (1 << 64) - 1
        print('nofile', setrl(7, 4096, 4096))
        print('fsize', setrl(1, INF, INF))
        print('core', setrl(4, INF, INF))
        print('nofile_now', getrl(7))
        print('core_now', getrl(4))
    "#;
    let v = py(&Env::new(), &["--user", "root", "--disk", "64M"], body, &[]);
    expect(
        &v,
        &[
            ("nofile", "EPERM"),
            ("fsize", "EPERM"),
            ("core", "EPERM"),
            ("nofile_now", "1024 1024"),
            ("core_now", "0 0"),
        ],
    );
}

/// chroot(2) is EPERM for uid 1000 (the filter denies it to the sandbox user).
#[test]
fn chroot_is_denied_for_the_sandbox_user() {
    let body = r#"
        t('chroot_tmp', lambda: os.chroot('/tmp'))
        t('chroot_root', lambda: os.chroot('/'))
        print('chroot_bad', sc(161, 1))
    "#;
    let v = py(&Env::new(), &[], body, &[]);
    expect(
        &v,
        &[
            ("chroot_tmp", "EPERM"),
            ("chroot_root", "EPERM"),
            ("chroot_bad", "EPERM"),
        ],
    );
}

/// Root inside may chroot, and the classic chroot breakout (chroot into a subdir, keep a
/// directory fd outside it, climb `..`) works, but only leads back to the sandbox's own
/// root (pivot_root, not chroot, confines it): the host is not there.
#[test]
fn chroot_breakout_as_root_stays_in_the_sandbox() {
    let env = Env::new();
    let host_file = HostPath(unique_host_path("chroot"));
    std::fs::write(&host_file.0, "host").unwrap();
    let body = r#"
        os.makedirs('/tmp/jail', exist_ok=True)
        out = os.open('/', os.O_RDONLY)
        os.chroot('/tmp/jail')
        print('jailed', os.listdir('/'))
        os.fchdir(out)
        for _ in range(64):
            os.chdir('..')
        os.chroot('.')
        print('root', sorted(os.listdir('/')))
        print('home_sandbox', os.path.isdir('/home/sandbox'))
        t('host_file', lambda: open(sys.argv[1]).read())
        t('work', lambda: os.listdir('/work'))
    "#;
    let v = py(&env, ROOT, body, &[host_file.0.to_str().unwrap()]);
    expect(
        &v,
        &[
            ("jailed", "[]"),
            ("root", SANDBOX_ROOT_LISTING),
            ("home_sandbox", "True"),
            ("host_file", "ENOENT"),
            ("work", "ENOENT"),
        ],
    );
}

//! /proc.

#[allow(unused_imports)]
use super::probe::*;

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

//! `corral run`: options, defaults, exit statuses, JSON output, bad input, signals to
//! corral itself and the sweep of stale cgroups. Each test uses its own `Env` (state
//! dir, runtime dir, cgroup parent), so the tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------
// helpers

static MARK: AtomicU32 = AtomicU32::new(0);

/// A string no other process on the host has in its argv or environment.
fn marker(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "corralmark{tag}{}x{}x{nanos}",
        std::process::id(),
        MARK.fetch_add(1, Ordering::Relaxed)
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Host processes (other than this test process) whose cmdline or environment holds
/// `marker`.
fn marker_procs(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        for f in ["cmdline", "environ"] {
            if let Ok(b) = std::fs::read(e.path().join(f)) {
                if contains(&b, marker.as_bytes()) {
                    out.push((pid, String::from_utf8_lossy(&b).replace('\0', " ")));
                    break;
                }
            }
        }
    }
    out
}

/// Host processes whose *environment* holds `marker`: the sandboxed command and its
/// children (corral's own argv may hold the marker too, its environment does not).
fn marker_procs_in_env(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(b) = std::fs::read(e.path().join("environ")) {
            if contains(&b, marker.as_bytes()) {
                out.push(pid);
            }
        }
    }
    out
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Waits for `child` at most `limit`; None if it is still running.
fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills the corral child on drop (a failed assertion must not leave it running).
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// `corral` with raw arguments (no `--` added).
fn raw(env: &Env, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Result of one `corral run` fed with `input` on its stdin.
struct Fed {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    elapsed: Duration,
}

/// Runs `corral run opts -- argv` with `input` on its stdin. With `keep_open`, corral's
/// stdin stays open (after `input`) until corral exits. Panics if corral does not exit
/// within 20 s.
fn run_fed(env: &Env, opts: &[&str], argv: &[&str], input: Vec<u8>, keep_open: bool) -> Fed {
    let mut c = env.cmd();
    c.arg("run")
        .args(opts)
        .arg("--")
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = Reaper(c.spawn().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        // EPIPE is expected when the command does not read everything.
        let _ = stdin.write_all(&input);
        if keep_open {
            let _ = done_rx.recv();
        }
        drop(stdin);
    });
    let out = drain(child.0.stdout.take());
    let err = drain(child.0.stderr.take());
    let status = wait_deadline(&mut child.0, Duration::from_secs(20));
    let elapsed = t.elapsed();
    let _ = done_tx.send(());
    let status = status.unwrap_or_else(|| panic!("corral run {opts:?} -- {argv:?} hung"));
    writer.join().unwrap();
    Fed {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed,
    }
}

/// The non-empty lines of a stream.
fn lines(b: &[u8]) -> Vec<String> {
    s(b).lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Asserts: exit 125, nothing on stdout, exactly one non-empty line on stderr that
/// holds every keyword (case-insensitive), and no cgroup left behind.
fn assert_bad_input(args: &[&str], keywords: &[&str]) {
    let env = Env::new();
    let out = raw(&env, args);
    let err = s(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(125),
        "corral {args:?}: expected exit 125; stderr={err:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "corral {args:?}: stdout should be empty, got {:?}",
        s(&out.stdout)
    );
    let l: Vec<&str> = err.lines().collect();
    assert_eq!(
        l.len(),
        1,
        "corral {args:?}: expected exactly one line on stderr, got {err:?}"
    );
    assert!(!l[0].trim().is_empty(), "corral {args:?}: empty error line");
    for k in keywords {
        assert!(
            l[0].to_lowercase().contains(&k.to_lowercase()),
            "corral {args:?}: the error line should name the problem ({k:?}): {:?}",
            l[0]
        );
    }
    assert!(
        env.leftover_cgroups().is_empty(),
        "corral {args:?} left cgroups: {:?}",
        env.leftover_cgroups()
    );
}

/// Asserts that `corral run --json <args>` fails with 125 and prints exactly one
/// `{"error":{"code","message"}}` object on stdout.
fn assert_json_error(args: &[&str], code: Option<&str>) {
    let env = Env::new();
    let mut all = vec!["run", "--json"];
    all.extend_from_slice(args);
    let out = raw(&env, &all);
    assert_eq!(
        out.status.code(),
        Some(125),
        "corral {all:?}: stderr={:?}",
        s(&out.stderr)
    );
    let vals: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!(
                "corral {all:?}: stdout is not JSON ({e}): {:?}; stderr={:?}",
                s(&out.stdout),
                s(&out.stderr)
            )
        });
    assert_eq!(
        vals.len(),
        1,
        "corral {all:?}: expected exactly one JSON object on stdout, got {:?} (stderr={:?})",
        s(&out.stdout),
        s(&out.stderr)
    );
    let v = &vals[0];
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "only the error key: {v}");
    let e = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error: {v}"));
    let c = e["code"].as_str().expect("error.code is a string");
    let m = e["message"].as_str().expect("error.message is a string");
    assert!(!c.is_empty() && !m.is_empty(), "{v}");
    if let Some(want) = code {
        assert_eq!(c, want, "{v}");
    }
    assert!(env.leftover_cgroups().is_empty());
}

/// A host directory for mounts, world-accessible (host root shows up as `nobody` in
/// the sandbox, so only the "other" permission bits apply); removed on drop.
fn host_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("corral-mnt-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

// ---------------------------------------------------------------------------------
// the basics: template contents, sh, python

#[test]
fn hello_from_the_host_template() {
    let env = Env::new();
    let v = env.sh(&[], "echo hello; id -u");
    assert_eq!(ok_stdout(&v), "hello\n1000");
}

#[test]
fn sh_and_python3_run() {
    let env = Env::new();
    assert_eq!(ok_stdout(&env.sh(&[], "echo $((6 * 7))")), "42");
    let v = env.py(&[], "import sys; print(sys.version_info[0], 6 * 7)");
    assert_eq!(ok_stdout(&v), "3 42");
}

#[test]
fn passwd_hostname_and_ca_bundle() {
    let env = Env::new();
    let v = env.sh(
        &[],
        "grep '^sandbox:' /etc/passwd; cat /proc/sys/kernel/hostname; hostname; \
         test -s /etc/ssl/certs/ca-certificates.crt && grep -c 'BEGIN CERTIFICATE' \
         /etc/ssl/certs/ca-certificates.crt",
    );
    let out = ok_stdout(&v);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 4, "{out}");
    let f: Vec<&str> = l[0].split(':').collect();
    assert_eq!(f[0], "sandbox", "{out}");
    assert_eq!(f[2], "1000", "uid: {out}");
    assert_eq!(f[3], "1000", "gid: {out}");
    assert_eq!(f[5], "/home/sandbox", "home: {out}");
    assert_eq!(l[1], "sandbox");
    assert_eq!(l[2], "sandbox");
    let certs: u32 = l[3].parse().unwrap();
    assert!(certs > 10, "the CA bundle holds {certs} certificates");
}

// ---------------------------------------------------------------------------------
// exit statuses

#[test]
fn exit_codes_propagate() {
    let env = Env::new();
    for code in [0, 3, 255] {
        let v = env.sh(&[], &format!("exit {code}"));
        assert_eq!(exit_code(&v), code, "{v}");
        assert_eq!(v["signal"], Value::Null, "{v}");
        assert_eq!(v["timed_out"], false);
        assert_eq!(v["oom_killed"], false);
        // and without --json, as corral's own status
        let out = env.run(&[], &["/bin/sh", "-c", &format!("exit {code}")]);
        assert_eq!(out.status.code(), Some(code as i32), "{out:?}");
    }
}

#[test]
fn signal_death_is_128_plus_n() {
    let env = Env::new();
    let v = env.sh(&[], "kill -TERM $$");
    assert_eq!(exit_code(&v), 143, "{v}");
    assert_eq!(v["signal"], 15, "{v}");
    assert_eq!(v["timed_out"], false);
    assert_eq!(v["oom_killed"], false);

    let v = env.sh(&[], "kill -KILL $$");
    assert_eq!(exit_code(&v), 137, "{v}");
    assert_eq!(v["signal"], 9, "{v}");
    assert_eq!(
        v["oom_killed"], false,
        "SIGKILL by the command is no OOM: {v}"
    );
    assert_eq!(v["timed_out"], false);

    let v = env.sh(&[], "kill -INT $$");
    assert_eq!(exit_code(&v), 130, "{v}");
    assert_eq!(v["signal"], 2, "{v}");

    let out = env.run(&[], &["/bin/sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    let out = env.run(&[], &["/bin/sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert!(
        !s(&out.stderr).contains("memory"),
        "a plain SIGKILL must not be reported as OOM: {:?}",
        s(&out.stderr)
    );
    assert!(env.leftover_cgroups().is_empty());
}

#[test]
fn missing_command_is_127_with_one_line() {
    let env = Env::new();
    for cmd in ["no-such-command-corral", "/no/such/bin/corral"] {
        let out = env.run(&[], &[cmd, "arg"]);
        assert_eq!(out.status.code(), Some(127), "{cmd}: {out:?}");
        assert!(out.stdout.is_empty());
        let l = lines(&out.stderr);
        assert_eq!(l.len(), 1, "{cmd}: one line expected: {l:?}");
        assert!(
            l[0].contains(cmd),
            "{cmd}: the line names the command: {l:?}"
        );
        assert!(l[0].contains("not found"), "{l:?}");

        let (v, code) = env.json(&[], &[cmd]);
        assert_eq!(code, 127);
        assert_eq!(exit_code(&v), 127, "{v}");
        assert_eq!(v["signal"], Value::Null);
        let l = lines(stderr(&v).as_bytes());
        assert_eq!(l.len(), 1, "{v}");
        assert!(l[0].contains(cmd), "{v}");
    }
    assert!(env.leftover_cgroups().is_empty());
}

#[test]
fn non_executable_is_126() {
    let env = Env::new();
    for cmd in ["/etc/passwd", "/tmp"] {
        let out = env.run(&[], &[cmd]);
        assert_eq!(out.status.code(), Some(126), "{cmd}: {out:?}");
        let l = lines(&out.stderr);
        assert_eq!(l.len(), 1, "{cmd}: {l:?}");
        assert!(l[0].contains(cmd), "{l:?}");
        let (v, code) = env.json(&[], &[cmd]);
        assert_eq!((code, exit_code(&v)), (126, 126), "{v}");
    }
}

// ---------------------------------------------------------------------------------
// environment and identity

#[test]
fn default_environment_and_no_caller_leak() {
    let env = Env::new();
    let mark = marker("envleak");
    let out = env
        .cmd()
        .env("CORRAL_TEST_CALLER_MARKER", &mark)
        .env("HOME", "/root/caller-home")
        .args(["run", "--json", "--", "/usr/bin/env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = stdout(&v);
    let vars: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    assert!(
        vars.get("PATH").is_some_and(|p| p.contains("/usr/bin")),
        "{text}"
    );
    assert_eq!(vars.get("HOME"), Some(&"/home/sandbox"), "{text}");
    assert_eq!(vars.get("USER"), Some(&"sandbox"), "{text}");
    assert!(
        !text.contains(&mark),
        "the caller's environment leaked: {text}"
    );
    assert!(
        !text.contains("CORRAL_"),
        "corral's own settings leaked: {text}"
    );
    assert!(!text.contains("caller-home"), "{text}");
}

#[test]
fn env_option_sets_variables() {
    let env = Env::new();
    let v = env.json(
        &[
            "--env",
            "FOO=bar",
            "--env",
            "SPACED=a b  c",
            "--env",
            "EQ=x=y",
            "--env",
            "EMPTY=",
        ],
        &["/usr/bin/env"],
    );
    let text = ok_stdout(&v.0);
    let l: Vec<&str> = text.lines().collect();
    for want in ["FOO=bar", "SPACED=a b  c", "EQ=x=y", "EMPTY="] {
        assert!(l.contains(&want), "{want} missing in {text}");
    }
}

#[test]
fn user_root_and_sandbox() {
    let env = Env::new();
    let v = env.sh(&["--user", "root"], "id -u; id -g; echo $HOME; pwd");
    assert_eq!(ok_stdout(&v), "0\n0\n/root\n/root");
    let v = env.sh(
        &["--user", "sandbox"],
        "id -u; id -g; echo $HOME; echo $USER; pwd",
    );
    assert_eq!(
        ok_stdout(&v),
        "1000\n1000\n/home/sandbox\nsandbox\n/home/sandbox"
    );
}

#[test]
fn workdir_existing_and_created() {
    let env = Env::new();
    let v = env.sh(&["--workdir", "/tmp"], "pwd");
    assert_eq!(ok_stdout(&v), "/tmp");
    let v = env.sh(
        &["--workdir", "/srv/corral/a/b"],
        "pwd; stat -c %u:%g .; touch f && echo writable",
    );
    assert_eq!(ok_stdout(&v), "/srv/corral/a/b\n1000:1000\nwritable");
    let v = env.sh(
        &["--workdir", "/srv/corral/r", "--user", "root"],
        "pwd; stat -c %u:%g .",
    );
    assert_eq!(ok_stdout(&v), "/srv/corral/r\n0:0");
}

// ---------------------------------------------------------------------------------
// mounts

#[test]
fn mount_ro_is_readable_and_erofs() {
    let env = Env::new();
    let d = host_dir();
    std::fs::write(d.path().join("in.txt"), "from the host\n").unwrap();
    std::fs::set_permissions(
        d.path().join("in.txt"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let spec = format!("{}:/srv/data", d.path().display());
    let code = "import os\n\
        print(open('/srv/data/in.txt').read(), end='')\n\
        for p, m in (('/srv/data/in.txt', 'a'), ('/srv/data/new.txt', 'w')):\n\
        \x20   try:\n\
        \x20       open(p, m).write('x')\n\
        \x20       print('wrote', p)\n\
        \x20   except OSError as e:\n\
        \x20       print(e.errno)\n";
    let ro = format!("{spec}:ro");
    for m in [spec.as_str(), ro.as_str()] {
        let opts = ["--mount", m];
        let v = env.py(&opts, code);
        assert_eq!(ok_stdout(&v), "from the host\n30\n30", "{opts:?}: {v}");
    }
    assert_eq!(
        std::fs::read_to_string(d.path().join("in.txt")).unwrap(),
        "from the host\n"
    );
    assert!(!d.path().join("new.txt").exists());
    assert!(env.leftover_cgroups().is_empty());
}

#[test]
fn mount_rw_writes_reach_the_host() {
    let env = Env::new();
    let d = host_dir();
    std::fs::write(d.path().join("log"), "host\n").unwrap();
    std::fs::set_permissions(d.path().join("log"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let spec = format!("{}:/srv/rw:rw", d.path().display());
    let v = env.sh(
        &["--mount", &spec],
        "echo sandbox >> /srv/rw/log && echo made > /srv/rw/new && mkdir /srv/rw/sub && echo ok",
    );
    assert_eq!(ok_stdout(&v), "ok");
    assert_eq!(
        std::fs::read_to_string(d.path().join("log")).unwrap(),
        "host\nsandbox\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("new")).unwrap(),
        "made\n"
    );
    assert!(d.path().join("sub").is_dir());
}

#[test]
fn file_mounts_ro_and_rw() {
    let env = Env::new();
    let d = host_dir();
    let f = d.path().join("conf.txt");
    std::fs::write(&f, "v1\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ro = format!("{}:/etc/corral-test.conf", f.display());
    let v = env.sh(
        &["--mount", &ro],
        "cat /etc/corral-test.conf; echo x >> /etc/corral-test.conf 2>/dev/null || echo refused",
    );
    assert_eq!(ok_stdout(&v), "v1\nrefused");
    let v = env.py(
        &["--mount", &ro],
        "import errno\ntry:\n open('/etc/corral-test.conf','a')\n print('opened')\n\
         except OSError as e:\n print(errno.errorcode[e.errno])",
    );
    assert_eq!(ok_stdout(&v), "EROFS");
    let rw = format!("{}:/srv/one/file.txt:rw", f.display());
    let v = env.sh(&["--mount", &rw], "echo v2 >> /srv/one/file.txt && echo ok");
    assert_eq!(ok_stdout(&v), "ok");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "v1\nv2\n");
}

// ---------------------------------------------------------------------------------
// stdin

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn stdin_forwards_one_mib_exactly() {
    let env = Env::new();
    let input = pattern(1 << 20);
    let r = run_fed(&env, &["--stdin"], &["/bin/cat"], input.clone(), false);
    assert_eq!(r.status.code(), Some(0), "stderr={:?}", s(&r.stderr));
    assert_eq!(r.stdout.len(), input.len());
    assert!(r.stdout == input, "stdin bytes were altered on the way");

    let r = run_fed(
        &env,
        &["--stdin", "--json"],
        &["/usr/bin/wc", "-c"],
        input,
        false,
    );
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(ok_stdout(&v), "1048576");
}

#[test]
fn stdin_not_read_does_not_hang() {
    let env = Env::new();
    // 4 MiB is far more than a pipe holds; the caller keeps stdin open afterwards.
    let r = run_fed(&env, &["--stdin"], &["/bin/true"], pattern(4 << 20), true);
    assert_eq!(r.status.code(), Some(0), "stderr={:?}", s(&r.stderr));
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    // Reads a little, then exits.
    let r = run_fed(
        &env,
        &["--stdin"],
        &["/usr/bin/head", "-c", "5"],
        b"abcdefghij".repeat(100_000),
        true,
    );
    assert_eq!(r.status.code(), Some(0), "stderr={:?}", s(&r.stderr));
    assert_eq!(r.stdout, b"abcde");
    assert!(env.leftover_cgroups().is_empty());
}

#[test]
fn stdin_forward_of_empty_input() {
    let env = Env::new();
    let r = run_fed(&env, &["--stdin"], &["/bin/cat"], Vec::new(), false);
    assert_eq!(r.status.code(), Some(0));
    assert!(r.stdout.is_empty());
}

#[test]
fn without_stdin_the_command_reads_eof() {
    let env = Env::new();
    // corral's own stdin has data and stays open: the command must not see it.
    let r = run_fed(&env, &[], &["/bin/cat"], b"secret\n".to_vec(), true);
    assert_eq!(r.status.code(), Some(0), "stderr={:?}", s(&r.stderr));
    assert!(r.stdout.is_empty(), "{:?}", s(&r.stdout));
    assert!(r.elapsed < Duration::from_secs(10));
    let r = run_fed(
        &env,
        &["--json"],
        &["/bin/sh", "-c", "read x; echo \"rc=$? x=$x\""],
        b"secret\n".to_vec(),
        true,
    );
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(ok_stdout(&v), "rc=1 x=");
}

// ---------------------------------------------------------------------------------
// output

#[test]
fn streaming_binary_output_is_byte_exact() {
    let env = Env::new();
    let out = env.run(
        &[],
        &[
            "/usr/bin/python3",
            "-c",
            "import sys\n\
             sys.stdout.buffer.write(bytes(range(256)) * 4096)\n\
             sys.stderr.buffer.write(bytes(range(255, -1, -1)) * 16)\n",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", s(&out.stderr));
    let want: Vec<u8> = (0..4096).flat_map(|_| 0..=255u8).collect();
    assert_eq!(out.stdout.len(), want.len());
    assert!(out.stdout == want, "stdout bytes differ");
    let want_err: Vec<u8> = (0..16).flat_map(|_| (0..=255u8).rev()).collect();
    assert!(out.stderr == want_err, "stderr bytes differ");
}

#[test]
fn streams_stay_apart() {
    let env = Env::new();
    let out = env.run(&[], &["/bin/sh", "-c", "echo out; echo err >&2; echo out2"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(s(&out.stdout), "out\nout2\n");
    assert_eq!(s(&out.stderr), "err\n");
    let v = env.sh(&[], "echo out; echo err >&2");
    assert_eq!(stdout(&v), "out\n");
    assert_eq!(stderr(&v), "err\n");
}

#[test]
fn output_limit_truncates_at_exactly_the_limit() {
    let env = Env::new();
    let code = "import sys\n\
        sys.stdout.write('a' * 5000); sys.stdout.flush()\n\
        sys.stderr.write('b' * 3000); sys.stderr.flush()\n";
    let v = env.py(&["--output-limit", "1K"], code);
    assert_eq!(
        exit_code(&v),
        0,
        "the rest is dropped, the command goes on: {v}"
    );
    assert_eq!(stdout(&v), "a".repeat(1024));
    assert_eq!(stderr(&v), "b".repeat(1024));
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stderr_truncated"], true);

    // Exactly the limit is not truncation.
    let v = env.py(
        &["--output-limit", "1K"],
        "import sys; sys.stdout.write('c' * 1024)",
    );
    assert_eq!(stdout(&v).len(), 1024);
    assert_eq!(v["stdout_truncated"], false, "{v}");
    assert_eq!(v["stderr_truncated"], false, "{v}");
}

#[test]
fn output_limit_in_streaming_mode() {
    let env = Env::new();
    let out = env.run(
        &["--output-limit", "1K"],
        &[
            "/usr/bin/python3",
            "-c",
            "import sys; sys.stdout.write('a' * 5000)",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", s(&out.stderr));
    assert_eq!(out.stdout, b"a".repeat(1024));
    let l = lines(&out.stderr);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].contains("stdout") && l[0].contains("output-limit"),
        "{l:?}"
    );
}

#[test]
fn default_output_limit_is_8m() {
    let env = Env::new();
    let v = env.py(
        &[],
        "import sys; sys.stdout.write('z' * (9 << 20)); print('tail', file=sys.stderr)",
    );
    assert_eq!(exit_code(&v), 0, "stderr={:?}", stderr(&v));
    assert_eq!(stdout(&v).len(), 8 << 20);
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(stderr(&v), "tail\n");
    assert_eq!(v["stderr_truncated"], false);
}

#[test]
fn json_is_one_object_with_all_fields() {
    let env = Env::new();
    let out = env.run(
        &["--json"],
        &["/bin/sh", "-c", "echo hi; echo there >&2; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4));
    let vals: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(vals.len(), 1, "{:?}", s(&out.stdout));
    let v = &vals[0];
    let o = v.as_object().unwrap();
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cpu_time_ms",
            "duration_ms",
            "exit_code",
            "oom_killed",
            "peak_memory_bytes",
            "signal",
            "stderr",
            "stderr_truncated",
            "stdout",
            "stdout_truncated",
            "timed_out",
        ]
    );
    assert_eq!(v["exit_code"].as_i64(), Some(4));
    assert!(v["signal"].is_null());
    for b in [
        "timed_out",
        "oom_killed",
        "stdout_truncated",
        "stderr_truncated",
    ] {
        assert_eq!(v[b], false, "{b}: {v}");
    }
    assert_eq!(v["stdout"], "hi\n");
    assert_eq!(v["stderr"], "there\n");
    for n in ["duration_ms", "peak_memory_bytes", "cpu_time_ms"] {
        assert!(v[n].is_u64(), "{n} is a non-negative integer: {v}");
    }
    assert!(v["peak_memory_bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["duration_ms"].as_u64().unwrap() < 10_000,
        "a trivial run takes well under 10 s: {v}"
    );
    // Non-UTF-8 output is converted lossily, the object stays valid JSON.
    let v = env.py(&[], "import sys; sys.stdout.buffer.write(b'ok\\xff\\xfe!')");
    assert_eq!(stdout(&v), "ok\u{fffd}\u{fffd}!");
}

#[test]
fn usage_stats_are_plausible() {
    let env = Env::new();
    let v = env.py(
        &[],
        "import time\n\
         b = b'x' * (100 << 20)\n\
         t = time.process_time()\n\
         while time.process_time() - t < 0.4: pass\n\
         print(len(b))",
    );
    assert_eq!(ok_stdout(&v), (100u64 << 20).to_string());
    let peak = v["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak >= 100 << 20, "peak {peak} < 100 MiB: {v}");
    assert!(peak <= 512 << 20, "peak {peak} above the limit: {v}");
    let cpu = v["cpu_time_ms"].as_u64().unwrap();
    let wall = v["duration_ms"].as_u64().unwrap();
    assert!(cpu >= 350, "at least the 0.4 s busy loop: {v}");
    assert!(
        cpu <= wall + 100,
        "one process, one CPU: cpu {cpu} ms > wall {wall} ms"
    );
}

// ---------------------------------------------------------------------------------
// limits

#[test]
fn default_memory_limit_allows_100m_not_600m() {
    let env = Env::new();
    let v = env.py(&[], "b = b'x' * (100 << 20); print(len(b) >> 20)");
    assert_eq!(ok_stdout(&v), "100");
    let v = env.py(&[], "b = b'x' * (600 << 20); print('survived')");
    assert_eq!(exit_code(&v), 137, "600 MiB under the default 512M: {v}");
    assert_eq!(v["oom_killed"], true, "{v}");
    assert!(!stdout(&v).contains("survived"));
}

#[test]
fn memory_option_oom_kills() {
    let env = Env::new();
    let v = env.py(
        &["--memory", "32M"],
        "b = b'x' * (100 << 20); print('survived')",
    );
    assert_eq!(exit_code(&v), 137, "{v}");
    assert_eq!(v["oom_killed"], true, "{v}");
    assert_eq!(v["signal"], 9, "{v}");
    assert_eq!(v["timed_out"], false, "{v}");
    let out = env.run(
        &["--memory", "32M"],
        &["/usr/bin/python3", "-c", "b = b'x' * (100 << 20)"],
    );
    assert_eq!(out.status.code(), Some(137));
    assert!(
        s(&out.stderr).contains("--memory"),
        "streaming mode says the memory limit killed it: {:?}",
        s(&out.stderr)
    );
    assert!(env.leftover_cgroups().is_empty());
}

/// Python that starts up to `n` `sleep` processes and prints how many started and the
/// errno of the first failure.
fn spawner(n: u32) -> String {
    format!(
        "import os\n\
         ok, err = 0, 0\n\
         for i in range({n}):\n\
         \x20   try:\n\
         \x20       os.posix_spawn('/bin/sleep', ['sleep', '30'], {{}})\n\
         \x20       ok += 1\n\
         \x20   except OSError as e:\n\
         \x20       err = e.errno\n\
         \x20       break\n\
         print(ok, err)\n"
    )
}

#[test]
fn pids_limit() {
    let env = Env::new();
    let v = env.py(&["--pids", "16"], &spawner(40));
    let out = ok_stdout(&v);
    let (ok, err) = out.split_once(' ').unwrap();
    let ok: u32 = ok.parse().unwrap();
    assert!(
        (5..16).contains(&ok),
        "--pids 16 let {ok} processes start: {out}"
    );
    assert_eq!(err, "11", "EAGAIN: {out}");
    assert!(
        env.leftover_cgroups().is_empty(),
        "the sleepers are gone with the sandbox"
    );
}

#[test]
fn default_pids_limit_is_256() {
    let env = Env::new();
    let v = env.py(&[], &spawner(300));
    let out = ok_stdout(&v);
    let (ok, err) = out.split_once(' ').unwrap();
    let ok: u32 = ok.parse().unwrap();
    assert!(
        (240..256).contains(&ok),
        "the default --pids 256 let {ok} processes start: {out}"
    );
    assert_eq!(err, "11", "{out}");
}

/// Two busy processes for about 2 s; returns (cpu_time_ms, duration_ms).
fn burn(env: &Env, opts: &[&str]) -> (u64, u64) {
    let v = env.sh(
        opts,
        "yes > /dev/null & yes > /dev/null & sleep 2; kill $! 2>/dev/null; echo done",
    );
    assert_eq!(ok_stdout(&v), "done");
    (
        v["cpu_time_ms"].as_u64().unwrap(),
        v["duration_ms"].as_u64().unwrap(),
    )
}

#[test]
fn cpus_limit_caps_cpu_time() {
    // Upper bounds only: a loaded host can lower cpu time, never raise it above the cap.
    let env = Env::new();
    let (cpu, wall) = burn(&env, &["--cpus", "0.5"]);
    assert!(cpu > 100, "cpu time is measured: {cpu}");
    assert!(
        cpu as f64 <= wall as f64 * 0.5 * 1.2 + 150.0,
        "--cpus 0.5: {cpu} ms of CPU in {wall} ms"
    );
    let (cpu, wall) = burn(&env, &[]);
    assert!(
        cpu as f64 <= wall as f64 * 1.2 + 150.0,
        "default --cpus 1: {cpu} ms of CPU in {wall} ms"
    );
}

#[test]
fn disk_limit_gives_enospc() {
    let env = Env::new();
    // /tmp, / and /dev/shm share one cap.
    let code = "import errno\n\
        def fill(p, mib):\n\
        \x20   try:\n\
        \x20       with open(p, 'wb') as f:\n\
        \x20           for _ in range(mib): f.write(b'x' * (1 << 20))\n\
        \x20       return 'ok'\n\
        \x20   except OSError as e:\n\
        \x20       return errno.errorcode[e.errno]\n\
        print(fill('/tmp/a', 10), fill('/home/sandbox/b', 10), fill('/dev/shm/c', 10))\n";
    let v = env.py(&["--disk", "16M"], code);
    assert_eq!(ok_stdout(&v), "ok ENOSPC ENOSPC", "{v}");
    // The default 1G holds 3 x 64 MiB.
    let v = env.py(&[], code.replace("10)", "64)").as_str());
    assert_eq!(ok_stdout(&v), "ok ok ok", "{v}");
}

#[test]
fn disk_limit_single_big_file_is_enospc() {
    // One file larger than --disk: the write fails with ENOSPC like on a full disk;
    // the writer is not killed (e.g. by SIGXFSZ from an RLIMIT_FSIZE).
    let env = Env::new();
    let v = env.sh(
        &["--disk", "16M"],
        "dd if=/dev/zero of=/tmp/big bs=1M count=32 2>&1; echo rc=$?",
    );
    let out = ok_stdout(&v);
    assert!(out.contains("No space left on device"), "{out}");
    assert!(
        out.ends_with("rc=1"),
        "dd fails with ENOSPC, not a signal: {out}"
    );
}

#[test]
fn disk_limit_caps_single_files_on_rw_mounts_too() {
    // --disk caps the writable layer (/, /tmp, /dev/shm) through the tmpfs size, and no
    // single file anywhere, a :rw host mount included, may outgrow it: RLIMIT_FSIZE is
    // the cap plus 1 MiB (so inside the layer ENOSPC always comes first). dd gets
    // SIGXFSZ at that size; the host file stops there.
    let env = Env::new();
    let d = host_dir();
    let spec = format!("{}:/srv/out:rw", d.path().display());
    let v = env.sh(
        &["--disk", "16M", "--mount", &spec],
        "dd if=/dev/zero of=/srv/out/big bs=1M count=32 2>/dev/null; echo rc=$?",
    );
    assert_eq!(ok_stdout(&v), "rc=153", "128 + SIGXFSZ: {v}");
    assert_eq!(
        std::fs::metadata(d.path().join("big")).unwrap().len(),
        17 << 20
    );
    // A file within the cap is written whole.
    let v = env.sh(
        &["--disk", "16M", "--mount", &spec],
        "dd if=/dev/zero of=/srv/out/ok bs=1M count=12 2>/dev/null; echo rc=$?",
    );
    assert_eq!(ok_stdout(&v), "rc=0", "{v}");
    assert_eq!(
        std::fs::metadata(d.path().join("ok")).unwrap().len(),
        12 << 20
    );
}

#[test]
fn timeout_is_124() {
    let env = Env::new();
    let t = Instant::now();
    let v = env.json(&["--timeout", "500ms"], &["/bin/sleep", "30"]).0;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "{:?}: {v}",
        t.elapsed()
    );
    assert_eq!(exit_code(&v), 124, "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["oom_killed"], false, "{v}");
    let d = v["duration_ms"].as_u64().unwrap();
    assert!(
        (450..5000).contains(&d),
        "duration {d} ms for a 500 ms timeout"
    );

    // A command that ignores SIGTERM is still stopped, and corral says why.
    let t = Instant::now();
    let out = env.run(
        &["--timeout", "300ms"],
        &["/bin/sh", "-c", "trap '' TERM INT HUP; sleep 30; sleep 30"],
    );
    let took = t.elapsed();
    let l = lines(&out.stderr);
    assert!(took < Duration::from_secs(10), "{took:?}: {l:?}");
    assert_eq!(out.status.code(), Some(124), "{l:?}");
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].contains("timed out"), "{l:?}");
    assert!(
        env.leftover_cgroups().is_empty(),
        "{:?}",
        env.leftover_cgroups()
    );
}

#[test]
fn defaults_do_not_cut_short_runs() {
    let env = Env::new();
    let v = env.sh(&[], "sleep 1; echo slept");
    assert_eq!(ok_stdout(&v), "slept");
    assert_eq!(v["timed_out"], false);
}

// ---------------------------------------------------------------------------------
// bad input: 125, one line naming the problem, nothing left behind

#[test]
fn bad_unknown_template() {
    assert_bad_input(
        &["run", "--template", "no-such-template", "--", "true"],
        &["template", "no-such-template"],
    );
}

#[test]
fn bad_memory_size() {
    assert_bad_input(
        &["run", "--memory", "12X", "--", "true"],
        &["--memory", "12X"],
    );
    assert_bad_input(&["run", "--memory", "0", "--", "true"], &["--memory"]);
}

#[test]
fn bad_disk_size() {
    assert_bad_input(&["run", "--disk", "0", "--", "true"], &["--disk"]);
}

#[test]
fn bad_output_limit_attached() {
    assert_bad_input(
        &["run", "--output-limit=-1", "--", "true"],
        &["output-limit"],
    );
}

#[test]
fn bad_output_limit_negative() {
    // `--output-limit -1`: the line must say which option is wrong, not only
    // "unexpected argument '-1'".
    assert_bad_input(
        &["run", "--output-limit", "-1", "--", "true"],
        &["output-limit"],
    );
}

#[test]
fn bad_timeout() {
    assert_bad_input(
        &["run", "--timeout", "5x", "--", "true"],
        &["--timeout", "5x"],
    );
    assert_bad_input(&["run", "--timeout", "0", "--", "true"], &["--timeout"]);
}

#[test]
fn bad_cpus() {
    for c in ["abc", "0", "0.001", "5000", "nan", "inf"] {
        assert_bad_input(&["run", "--cpus", c, "--", "true"], &["cpu"]);
    }
}

#[test]
fn bad_cpus_negative() {
    assert_bad_input(&["run", "--cpus", "-1", "--", "true"], &["cpu"]);
}

#[test]
fn bad_pids() {
    assert_bad_input(&["run", "--pids", "1", "--", "true"], &["--pids"]);
    assert_bad_input(&["run", "--pids", "many", "--", "true"], &["--pids"]);
}

#[test]
fn bad_mount_source_missing() {
    let p = unique_host_path("missing-src");
    let spec = format!("{}:/data", p.display());
    assert_bad_input(
        &["run", "--mount", &spec, "--", "true"],
        &["does not exist", &p.display().to_string()],
    );
}

#[test]
fn bad_mount_relative_paths() {
    assert_bad_input(
        &["run", "--mount", "/tmp:data", "--", "true"],
        &["relative"],
    );
    assert_bad_input(
        &["run", "--mount", "tmp:/data", "--", "true"],
        &["relative"],
    );
    assert_bad_input(&["run", "--mount", "/tmp:/a/../b", "--", "true"], &[".."]);
}

#[test]
fn bad_mount_mode_and_shape() {
    assert_bad_input(&["run", "--mount", "/tmp:/data:xx", "--", "true"], &["xx"]);
    assert_bad_input(&["run", "--mount", "/tmp", "--", "true"], &["mount"]);
}

#[test]
fn bad_mount_under_proc() {
    assert_bad_input(
        &["run", "--mount", "/tmp:/proc/x", "--", "true"],
        &["/proc"],
    );
    assert_bad_input(&["run", "--mount", "/tmp:/proc", "--", "true"], &["/proc"]);
}

#[test]
fn bad_mount_onto_root() {
    assert_bad_input(&["run", "--mount", "/tmp:/", "--", "true"], &["/"]);
    assert_bad_input(&["run", "--mount", "/tmp:/:rw", "--", "true"], &["root"]);
}

#[test]
fn bad_workdir_relative() {
    assert_bad_input(
        &["run", "--workdir", "rel/dir", "--", "true"],
        &["--workdir", "relative"],
    );
}

#[test]
fn bad_workdir_under_proc() {
    assert_bad_input(&["run", "--workdir", "/proc/x", "--", "true"], &["/proc/x"]);
}

#[test]
fn bad_unknown_option() {
    assert_bad_input(
        &["run", "--bogus-option", "--", "true"],
        &["--bogus-option"],
    );
}

#[test]
fn bad_missing_separator() {
    assert_bad_input(&["run", "true"], &["true"]);
}

#[test]
fn bad_missing_command() {
    // The line must say what is missing (the command), not end in "not provided:".
    assert_bad_input(&["run"], &["cmd"]);
    assert_bad_input(&["run", "--"], &["cmd"]);
}

#[test]
fn bad_net_mode() {
    assert_bad_input(&["run", "--net", "open", "--", "true"], &["net", "open"]);
}

#[test]
fn bad_env_without_equals() {
    assert_bad_input(&["run", "--env", "FOO", "--", "true"], &["--env", "FOO"]);
    assert_bad_input(&["run", "--env", "=x", "--", "true"], &["--env"]);
}

#[test]
fn bad_skip_layer() {
    assert_bad_input(
        &["run", "--dangerously-skip-layer", "firewall", "--", "true"],
        &["layer", "firewall"],
    );
}

#[test]
fn bad_user() {
    assert_bad_input(
        &["run", "--user", "admin", "--", "true"],
        &["--user", "admin"],
    );
}

// --json turns a corral failure into an {"error":{...}} object on stdout.

#[test]
fn json_error_unknown_template() {
    assert_json_error(&["--template", "nope", "--", "true"], Some("not_found"));
}

#[test]
fn json_error_net_mode() {
    assert_json_error(&["--net", "open", "--", "true"], None);
}

#[test]
fn json_error_relative_workdir() {
    assert_json_error(&["--workdir", "rel", "--", "true"], None);
}

#[test]
fn json_error_malformed_size() {
    assert_json_error(&["--memory", "12X", "--", "true"], None);
}

#[test]
fn json_error_bad_mount() {
    let p = unique_host_path("json-missing-src");
    let spec = format!("{}:/data", p.display());
    assert_json_error(&["--mount", &spec, "--", "true"], None);
}

#[test]
fn json_error_unknown_option() {
    assert_json_error(&["--bogus", "--", "true"], None);
}

// ---------------------------------------------------------------------------------
// signals to corral itself

/// kill(2) through the `kill` utility: the workspace denies `unsafe` outside
/// corral-isolate, tests included. A negative `pid` names a process group.
fn send_signal(pid: i32, sig: i32) -> bool {
    std::process::Command::new("/bin/kill")
        .args(["-s", &sig.to_string(), "--", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Starts `corral run` of a marked sleeper and waits until the command runs.
fn start_sleeper(env: &Env, mark: &str, json: bool, own_group: bool) -> Reaper {
    let mut c = env.cmd();
    c.arg("run");
    if json {
        c.arg("--json");
    }
    c.args(["--env", &format!("CORRAL_TEST_MARK={mark}"), "--"])
        .args(["/bin/sh", "-c", &format!("sleep 100 & sleep 100; : {mark}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
    }
    let child = Reaper(c.spawn().unwrap());
    assert!(
        wait_until(Duration::from_secs(15), || marker_procs_in_env(mark).len()
            >= 2),
        "the sandboxed sleepers never showed up"
    );
    assert!(
        !env.leftover_cgroups().is_empty(),
        "a running sandbox has its cgroup under {:?}",
        env.cgroup_dirs()
    );
    child
}

fn signal_corral(sig: i32, json: bool, to_group: bool) {
    let env = Env::new();
    let mark = marker("sig");
    let mut child = start_sleeper(&env, &mark, json, to_group);
    let pid = child.0.id() as i32;
    let out = drain(child.0.stdout.take());
    let err = drain(child.0.stderr.take());
    let t = Instant::now();
    assert!(send_signal(if to_group { -pid } else { pid }, sig));
    let status = wait_deadline(&mut child.0, Duration::from_secs(5));
    let took = t.elapsed();
    let status = status.unwrap_or_else(|| panic!("corral did not exit within 5 s of signal {sig}"));
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        status.code(),
        Some(128 + sig),
        "corral should exit 128+{sig}; status={status:?} stderr={:?}",
        s(&err)
    );
    let left = marker_procs(&mark);
    assert!(left.is_empty(), "processes survived corral: {left:?}");
    assert!(
        env.leftover_cgroups().is_empty(),
        "cgroups left: {:?}",
        env.leftover_cgroups()
    );
    if json && !out.is_empty() {
        let vals: Vec<Value> = serde_json::Deserializer::from_slice(&out)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", s(&out)));
        assert_eq!(vals.len(), 1, "{:?}", s(&out));
    }
    if !json {
        assert!(out.is_empty(), "{:?}", s(&out));
    }
}

#[test]
fn sigint_to_corral_removes_the_sandbox() {
    signal_corral(libc::SIGINT, false, false);
}

#[test]
fn sigterm_to_corral_removes_the_sandbox() {
    signal_corral(libc::SIGTERM, false, false);
}

#[test]
fn sigterm_to_corral_with_json() {
    signal_corral(libc::SIGTERM, true, false);
}

#[test]
fn ctrl_c_to_the_process_group() {
    signal_corral(libc::SIGINT, false, true);
}

#[test]
fn sighup_to_corral_removes_the_sandbox() {
    signal_corral(libc::SIGHUP, false, false);
}

#[test]
fn kill_9_of_corral_then_next_run_sweeps() {
    let env = Env::new();
    let mark = marker("kill9");
    let mut child = start_sleeper(&env, &mark, false, false);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // The sandbox dies with corral (parent-death signal), so nothing keeps running.
    if !wait_until(Duration::from_secs(5), || marker_procs(&mark).is_empty()) {
        let left = marker_procs(&mark);
        // Do not leave them running on the host: SIGKILL each (the sandbox's init
        // first, which takes its pid namespace with it).
        for (pid, _) in &left {
            let _ = send_signal(*pid, libc::SIGKILL);
        }
        wait_until(Duration::from_secs(5), || marker_procs(&mark).is_empty());
        for d in env.leftover_cgroups() {
            let _ = std::fs::remove_dir(d);
        }
        panic!("sandbox processes outlived a kill -9'd corral: {left:?}");
    }
    // The next run sweeps the stale cgroup.
    assert_eq!(ok_stdout(&env.sh(&[], "echo next")), "next");
    assert!(
        env.leftover_cgroups().is_empty(),
        "stale cgroups: {:?}",
        env.leftover_cgroups()
    );
}

// ---------------------------------------------------------------------------------
// sweep of stale cgroups

#[test]
fn next_run_sweeps_stale_cgroups() {
    let env = Env::new();
    let live = format!("run-{}-0", std::process::id());
    for d in env.cgroup_dirs() {
        for name in [
            "run-4000000-0",
            "run-4000000-7",
            live.as_str(),
            "not-corral",
        ] {
            std::fs::create_dir_all(d.join(name)).unwrap();
        }
    }
    let v = env.sh(&[], "echo swept");
    assert_eq!(ok_stdout(&v), "swept");
    for d in env.cgroup_dirs() {
        assert!(!d.join("run-4000000-0").exists(), "{d:?}: stale dir stays");
        assert!(!d.join("run-4000000-7").exists(), "{d:?}: stale dir stays");
        assert!(
            d.join(&live).exists(),
            "{d:?}: a cgroup whose owner pid is alive was removed"
        );
        assert!(
            d.join("not-corral").exists(),
            "{d:?}: a foreign dir was removed"
        );
    }
    // Our own dirs: remove them so Env's drop can remove the parent.
    for d in env.cgroup_dirs() {
        for name in [live.as_str(), "not-corral"] {
            let _ = std::fs::remove_dir(d.join(name));
        }
    }
    let left: Vec<_> = env.leftover_cgroups();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn state_and_runtime_dirs_stay_clean() {
    let env = Env::new();
    for _ in 0..3 {
        assert_eq!(ok_stdout(&env.sh(&[], "echo x")), "x");
    }
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(env.runtime.path()), ["mnt"]);
    assert!(names(&env.runtime.path().join("mnt")).is_empty());
    assert_eq!(names(env.state.path()), ["templates"]);
    let t = names(&env.state.path().join("templates"));
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].starts_with("host-"), "{t:?}");
}

//! Helpers shared by the `corral run` tests.
#![allow(unreachable_pub, dead_code)]

pub(crate) use std::io::{Read, Write};
pub(crate) use std::os::unix::fs::PermissionsExt;
pub(crate) use std::path::Path;
pub(crate) use std::process::{Child, ExitStatus, Output, Stdio};
pub(crate) use std::sync::atomic::{AtomicU32, Ordering};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use serde_json::Value;

pub(crate) use super::common::*;

// ---------------------------------------------------------------------------------
// helpers

pub(crate) static MARK: AtomicU32 = AtomicU32::new(0);

/// A string no other process on the host has in its argv or environment.
pub(crate) fn marker(tag: &str) -> String {
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

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Host processes (other than this test process) whose cmdline or environment holds
/// `marker`.
pub(crate) fn marker_procs(marker: &str) -> Vec<(i32, String)> {
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
pub(crate) fn marker_procs_in_env(marker: &str) -> Vec<i32> {
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

pub(crate) fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
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
pub(crate) fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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
pub(crate) struct Reaper(pub(crate) Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub(crate) fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// `corral` with raw arguments (no `--` added).
pub(crate) fn raw(env: &Env, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

pub(crate) fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Result of one `corral run` fed with `input` on its stdin.
pub(crate) struct Fed {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) elapsed: Duration,
}

/// Runs `corral run opts -- argv` with `input` on its stdin. With `keep_open`, corral's
/// stdin stays open (after `input`) until corral exits. Panics if corral does not exit
/// within 20 s.
pub(crate) fn run_fed(
    env: &Env,
    opts: &[&str],
    argv: &[&str],
    input: Vec<u8>,
    keep_open: bool,
) -> Fed {
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
pub(crate) fn lines(b: &[u8]) -> Vec<String> {
    s(b).lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Asserts: exit 125, nothing on stdout, exactly one non-empty line on stderr that
/// holds every keyword (case-insensitive), and no cgroup left behind.
pub(crate) fn assert_bad_input(args: &[&str], keywords: &[&str]) {
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
pub(crate) fn assert_json_error(args: &[&str], code: Option<&str>) {
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
pub(crate) fn host_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("corral-mnt-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

//! 200 `corral run`s of every kind through one environment, four at a time; afterwards
//! nothing of them may be left on the host: no cgroup, mount, process, mount namespace
//! or temp dir. Only things that are exclusively this test's are checked (other test
//! binaries and threads run sandboxes of their own meanwhile).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

const RUNS: usize = 200;
const WORKERS: usize = 4;
const KINDS: usize = 8;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Host processes (not this one) whose cmdline or environment holds `marker`.
fn marker_procs(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for pid in pids() {
        if pid == me {
            continue;
        }
        for f in ["cmdline", "environ"] {
            if let Ok(b) = std::fs::read(format!("/proc/{pid}/{f}")) {
                if contains(&b, marker.as_bytes()) {
                    out.push((pid, String::from_utf8_lossy(&b).replace('\0', " ")));
                    break;
                }
            }
        }
    }
    out
}

/// Mount namespace of a process, e.g. "mnt:[4026531841]".
fn mnt_ns(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// kill(2) through the `kill` utility (the workspace denies `unsafe` in tests).
fn sigterm(pid: u32) {
    let _ = std::process::Command::new("/bin/kill")
        .args(["-s", "TERM", "--", &pid.to_string()])
        .status();
}

/// One run of kind `i % KINDS`; returns a failure description, if any.
fn one_run(env: &Env, mark: &str, i: usize, sigterm_raced: &AtomicUsize) -> Option<String> {
    let run_mark = format!("{mark}-{i}-end");
    let env_opt = format!("CORRAL_LEAK_MARK={run_mark}");
    let base = ["--env", env_opt.as_str()];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let kind = i % KINDS;
    let (opts, argv, want): (Vec<String>, Vec<String>, i32) = match kind {
        // success (JSON)
        0 => (
            with(&["--json"]),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo ok; : {run_mark}"),
            ],
            0,
        ),
        // non-zero exit (streaming)
        1 => (
            with(&[]),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("exit 7; : {run_mark}"),
            ],
            7,
        ),
        // killed by the timeout
        2 => (
            with(&["--timeout", "200ms"]),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("sleep 30; : {run_mark}"),
            ],
            124,
        ),
        // OOM
        3 => (
            with(&["--memory", "32M", "--json"]),
            vec![
                "/usr/bin/python3".into(),
                "-c".into(),
                format!("b = b'x' * (100 << 20); '{run_mark}'"),
            ],
            137,
        ),
        // command not found
        4 => (with(&[]), vec![format!("no-such-command-{run_mark}")], 127),
        // a double-forked survivor that tries to outlive the run
        5 => (
            with(&[]),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "(setsid sleep 1000 &) ; (sleep 1000 & ) ; \
                     (sh -c 'trap \"\" TERM HUP INT; sleep 1000' &) ; echo forked; : {run_mark}"
                ),
            ],
            0,
        ),
        // bad input (the problem only shows after parsing)
        6 => {
            let bad: &[&str] = match (i / KINDS) % 3 {
                0 => &["--template", "no-such-template"],
                1 => &["--workdir", "relative/dir"],
                _ => &["--mount", "/tmp:/proc/x"],
            };
            (
                with(bad),
                vec!["/bin/sh".into(), "-c".into(), format!(": {run_mark}")],
                125,
            )
        }
        // corral gets SIGTERM mid-run, at a different moment each time
        _ => {
            let mut c = env.cmd();
            c.arg("run")
                .args(with(&[]))
                .args(["--", "/bin/sh", "-c", &format!("sleep 100; : {run_mark}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = c.spawn().unwrap();
            let delay = [0u64, 2, 5, 10, 20, 40, 80, 150, 300][(i / KINDS) % 9];
            std::thread::sleep(Duration::from_millis(delay));
            sigterm(child.id());
            let Some(st) = wait_deadline(&mut child, Duration::from_secs(5)) else {
                return Some(format!("run {i}: corral ignored SIGTERM for 5 s"));
            };
            if st.code() != Some(143) {
                use std::os::unix::process::ExitStatusExt;
                if st.signal() == Some(15) {
                    // Died before its handler was installed; must have left nothing.
                    sigterm_raced.fetch_add(1, Ordering::Relaxed);
                } else {
                    return Some(format!("run {i}: SIGTERM gave {st:?}, want 143"));
                }
            }
            return check_gone(&run_mark, i);
        }
    };
    let mut c = env.cmd();
    c.arg("run").args(&opts).arg("--").args(&argv);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let code = out.status.code();
    if code != Some(want) {
        return Some(format!(
            "run {i} (kind {kind}): exit {code:?}, want {want}; stdout={:?} stderr={:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if kind == 3 {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["oom_killed"] != true {
            return Some(format!("run {i}: OOM not reported: {v}"));
        }
    }
    check_gone(&run_mark, i)
}

/// Nothing of run `i` may still be running once corral returned.
fn check_gone(run_mark: &str, i: usize) -> Option<String> {
    let left = marker_procs(run_mark);
    (!left.is_empty()).then(|| format!("run {i}: processes outlived corral: {left:?}"))
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn two_hundred_runs_leave_nothing_behind() {
    let env = Env::new();
    let mark = format!(
        "corralleak{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let ns_before: BTreeSet<String> = pids().into_iter().filter_map(mnt_ns).collect();

    let next = AtomicUsize::new(0);
    let raced = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= RUNS {
                    break;
                }
                if let Some(f) = one_run(&env, &mark, i, &raced) {
                    failures.lock().unwrap().push(f);
                }
            });
        }
    });
    let took = t.elapsed();
    eprintln!(
        "{RUNS} runs in {took:?}; {} SIGTERMs arrived before corral's handler",
        raced.load(Ordering::Relaxed)
    );

    let mut problems = failures.into_inner().unwrap();

    // cgroups: none under our parent, in any hierarchy.
    let cg = env.leftover_cgroups();
    if !cg.is_empty() {
        problems.push(format!("cgroups left: {cg:?}"));
    }
    // processes: none with our marker, none in a cgroup under our parent.
    let left = marker_procs(&mark);
    if !left.is_empty() {
        problems.push(format!("processes left: {left:?}"));
    }
    for pid in pids() {
        if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            if c.contains(&env.cgroup_parent) {
                problems.push(format!("process {pid} is still in our cgroups: {c}"));
            }
        }
    }
    // mount namespaces: none held by a process of ours (a new one that is still
    // around must belong to someone else's sandbox, i.e. carry no marker).
    for pid in pids() {
        let Some(ns) = mnt_ns(pid) else { continue };
        if !ns_before.contains(&ns) && !marker_procs_of(pid, &mark).is_empty() {
            problems.push(format!("process {pid} holds mount namespace {ns}"));
        }
    }
    // mounts: the host sees none under our state or runtime dir.
    let state = env.state.path().to_string_lossy().into_owned();
    let runtime = env.runtime.path().to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mountinfo.lines() {
        if l.contains(&state) || l.contains(&runtime) {
            problems.push(format!("host mount left: {l}"));
        }
    }
    // files: runtime holds only an empty mnt/, state only one template skeleton.
    let rt = names(env.runtime.path());
    if rt != ["mnt"] {
        problems.push(format!("runtime dir holds {rt:?}"));
    } else if !names(&env.runtime.path().join("mnt")).is_empty() {
        problems.push(format!(
            "runtime mnt/ holds {:?}",
            names(&env.runtime.path().join("mnt"))
        ));
    }
    let st = names(env.state.path());
    if st != ["templates"] {
        problems.push(format!("state dir holds {st:?}"));
    } else {
        let t = names(&env.state.path().join("templates"));
        if t.len() != 1 || !t[0].starts_with("host-") {
            problems.push(format!("templates/ holds {t:?}"));
        }
    }

    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// `marker_procs` for one pid.
fn marker_procs_of(pid: i32, marker: &str) -> Vec<String> {
    ["cmdline", "environ"]
        .iter()
        .filter_map(|f| std::fs::read(format!("/proc/{pid}/{f}")).ok())
        .filter(|b| contains(b, marker.as_bytes()))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

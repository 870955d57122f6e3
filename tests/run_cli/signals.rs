//! Signals to corral itself.

#[allow(unused_imports)]
use super::helpers::*;

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
    let mut c = env.cmd_default_signals();
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
    // Bounded, not timed: the 2 s grace plus cleanup takes well under a second on a
    // quiet machine; the bound only catches a corral that never exits.
    let status = wait_deadline(&mut child.0, Duration::from_secs(30));
    let took = t.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("corral did not exit within 30 s of signal {sig}"));
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(took < Duration::from_secs(30), "{took:?}");
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

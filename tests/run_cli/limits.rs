//! Limits.

#[allow(unused_imports)]
use super::helpers::*;

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

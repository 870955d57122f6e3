//! Resource exhaustion.

#[allow(unused_imports)]
use super::probe::*;

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

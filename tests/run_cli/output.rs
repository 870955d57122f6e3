//! Output.

#[allow(unused_imports)]
use super::helpers::*;

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

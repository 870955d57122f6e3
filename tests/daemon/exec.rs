//! exec: results, streaming, background processes, stdin, timeouts, run_code.

use serde_json::{json, Value};

use crate::harness::{stream_lines, Daemon};

#[test]
fn exec_results_match_corral_run() {
    let d = Daemon::start(0);
    let id = d.create(json!({"env": {"GREETING": "hi"}}));
    let e = |body: Value| d.call("POST", &format!("/v1/sandboxes/{id}/exec"), Some(&body));
    let r = e(json!({"cmd": ["sh", "-c", "echo $GREETING $X; echo err >&2; exit 3"], "env": {"X": "there"}})).json();
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stdout"], "hi there\n");
    assert_eq!(r["stderr"], "err\n");
    assert_eq!(r["timed_out"], false);
    for k in [
        "signal",
        "oom_killed",
        "stdout_truncated",
        "stderr_truncated",
        "duration_ms",
        "peak_memory_bytes",
        "cpu_time_ms",
    ] {
        assert!(r.get(k).is_some(), "missing {k}: {r}");
    }
    let r = e(json!({"cmd": ["cat"], "stdin": "from stdin"})).json();
    assert_eq!(r["stdout"], "from stdin");
    let r = e(json!({"cmd": ["no-such-command"]})).json();
    assert_eq!(r["exit_code"], 127);
    assert!(
        r["stderr"].as_str().unwrap().contains("command not found"),
        "{r}"
    );
    let r = e(json!({"cmd": ["sleep", "30"], "timeout_s": 1})).json();
    assert_eq!(r["exit_code"], 124);
    assert_eq!(r["timed_out"], true);
    let r = e(json!({"cmd": ["pwd"], "cwd": "/tmp"})).json();
    assert_eq!(r["stdout"], "/tmp\n");
    e(json!({"cmd": ["pwd"], "cwd": "/nonexistent"})).assert_error(400);
    e(json!({"cmd": []})).assert_error(400);
    e(json!({"cmd": ["id", "-u"], "user": "admin"})).assert_error(400);
    let r = e(json!({"cmd": ["id", "-u"], "user": "root"})).json();
    assert_eq!(r["stdout"], "0\n");
    let r = e(json!({"cmd": ["sh", "-c", "kill -9 $$"]})).json();
    assert_eq!(r["exit_code"], 137);
    assert_eq!(r["signal"], 9);
    // Output of a background grandchild that keeps the pipe open does not hold exec.
    let r = e(json!({"cmd": ["sh", "-c", "sleep 20 & echo done"], "timeout_s": 10})).json();
    assert_eq!(r["stdout"], "done\n");
    assert!(r["duration_ms"].as_u64().unwrap() < 5000, "{r}");
}

#[test]
fn run_code_runs_python_and_bash() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let r = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/run_code"),
        Some(&json!({"language": "python", "code": "print(6*7)"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stdout"], "42\n");
    let r = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/run_code"),
        Some(&json!({"language": "bash", "code": "echo $((2+3))"})),
    );
    assert_eq!(r.json()["stdout"], "5\n");
    d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/run_code"),
        Some(&json!({"language": "cobol", "code": "x"})),
    )
    .assert_error(400);
}

#[test]
fn streamed_exec_delivers_output_while_the_command_runs() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let mut events: Vec<(Value, std::time::Instant)> = Vec::new();
    let status = stream_lines(
        &d,
        &format!("/v1/sandboxes/{id}/exec"),
        &json!({"cmd": ["sh", "-c", "echo first; sleep 1; echo second >&2; exit 4"]}),
        |l, t| events.push((serde_json::from_str(l).unwrap(), t)),
    );
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events
        .iter()
        .map(|(e, _)| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["stdout", "stderr", "exit"], "{events:?}");
    assert_eq!(events[0].0["data"], "first\n");
    assert_eq!(events[1].0["data"], "second\n");
    assert_eq!(events[2].0["result"]["exit_code"], 4);
    let gap = events[2].1.duration_since(events[0].1);
    assert!(
        gap.as_millis() >= 500,
        "the first line arrived before the command ended: {gap:?}"
    );
}

#[test]
fn background_processes_list_output_stdin_and_signal() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let r = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({"cmd": ["sh", "-c", "while read l; do echo got:$l; done; echo bye"], "background": true})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let p = r.json();
    let pid = p["process_id"].as_str().unwrap().to_string();
    assert_eq!(p["state"], "running");
    let list = d
        .call("GET", &format!("/v1/sandboxes/{id}/processes"), None)
        .json();
    assert_eq!(list["processes"].as_array().unwrap().len(), 1);
    let w = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/processes/{pid}/stdin"),
        Some(&json!({"data": "one\ntwo\n", "eof": true})),
    );
    assert!(w.status == 200 || w.status == 204, "{}", w.text());
    d.wait_for("the process to finish", || {
        d.call("GET", &format!("/v1/sandboxes/{id}/processes/{pid}"), None)
            .json()["state"]
            == "exited"
    });
    let out = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{id}/processes/{pid}/output"),
            None,
        )
        .json();
    assert_eq!(out["stdout"], "got:one\ngot:two\nbye\n");
    d.call("GET", &format!("/v1/sandboxes/{id}/processes/p-999"), None)
        .assert_error(404);
    d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/processes/garbage"),
        None,
    )
    .assert_error(404);
    let sl = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(&json!({"cmd": ["sleep", "100"], "background": true})),
        )
        .json();
    let spid = sl["process_id"].as_str().unwrap();
    let s = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/processes/{spid}/signal"),
        Some(&json!({"signal": "SIGTERM"})),
    );
    assert!(s.status == 200 || s.status == 204, "{}", s.text());
    d.wait_for("SIGTERM to end sleep", || {
        d.call("GET", &format!("/v1/sandboxes/{id}/processes/{spid}"), None)
            .json()["result"]["exit_code"]
            == 143
    });
    d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/processes/{spid}/signal"),
        Some(&json!({"signal": "NOPE"})),
    )
    .assert_error(400);
}

#[test]
fn processes_of_separate_execs_can_signal_each_other() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let bg = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(&json!({"cmd": ["sleep", "300"], "background": true})),
        )
        .json();
    let pid = bg["process_id"].as_str().unwrap().to_string();
    // The everyday pattern: start a server in one call, stop it from another.
    let r = d.exec(&id, &["pkill", "-TERM", "-x", "sleep"]);
    assert_eq!(r["exit_code"], 0, "{r}");
    d.wait_for("sleep to end", || {
        d.call("GET", &format!("/v1/sandboxes/{id}/processes/{pid}"), None)
            .json()["result"]["exit_code"]
            == 143
    });
    // Sharing a domain with init does not let anything inside kill or trace it, not
    // even the sandbox's root.
    for user in ["sandbox", "root"] {
        let r = d
            .call(
                "POST",
                &format!("/v1/sandboxes/{id}/exec"),
                Some(&json!({"cmd": ["sh", "-c", "kill -KILL 1; kill -TERM 1; kill -USR1 1; echo sent"], "user": user})),
            )
            .json();
        assert!(r["stdout"].as_str().unwrap().contains("sent"), "{r}");
        let t = d
            .call(
                "POST",
                &format!("/v1/sandboxes/{id}/exec"),
                Some(&json!({"cmd": ["python3", "-c", "import ctypes;l=ctypes.CDLL(None);print(l.ptrace(16,1,0,0))"], "user": user})),
            )
            .json();
        assert_eq!(t["stdout"], "-1\n", "PTRACE_ATTACH to init must fail: {t}");
        assert_eq!(
            d.exec(&id, &["true"])["exit_code"],
            0,
            "init survived signals from {user}"
        );
    }
}

//! Crash recovery: `kill -9` of the daemon with live sandboxes, and bad input.

use serde_json::json;

use crate::harness::Daemon;

#[test]
fn restart_after_kill9_reattaches_live_sandboxes_and_cleans_dead_ones() {
    let mut d = Daemon::start(1);
    let keep = d.create(json!({"metadata": {"k": "keep"}}));
    let doomed = d.create(json!({}));
    d.exec(&keep, &["sh", "-c", "echo persisted > /tmp/mark"]);
    let doomed_row = d
        .call("GET", &format!("/v1/sandboxes/{doomed}"), None)
        .json();
    assert_eq!(doomed_row["state"], "running");
    d.kill9();
    // While the daemon is down, one sandbox dies: kill everything in its cgroup.
    for root in crate::harness::cgroup_roots() {
        let procs = root
            .join(&d.env.cgroup_parent)
            .join(&doomed)
            .join("cgroup.procs");
        if let Ok(p) = std::fs::read_to_string(&procs) {
            for pid in p.split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
        }
    }
    // Leftovers of a snapshot cut short by the crash.
    let stray = d.data_dir().join("snapshots").join(".tmp-sb-x-1");
    std::fs::create_dir_all(stray.join("home")).unwrap();
    let orphan = d.data_dir().join("snapshots").join("0".repeat(64));
    std::fs::create_dir_all(&orphan).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.restart();
    assert!(
        !stray.exists() && !orphan.exists(),
        "half-made snapshots are removed at start"
    );
    let r = d.exec(&keep, &["cat", "/tmp/mark"]);
    assert_eq!(r["stdout"], "persisted\n", "re-attached with its files");
    let g = d
        .call("GET", &format!("/v1/sandboxes/{doomed}"), None)
        .json();
    assert_eq!(g["state"], "stopped", "{g}");
    assert_eq!(g["stop_reason"], "died", "{g}");
    let live = d.call("GET", "/v1/sandboxes", None).json();
    assert_eq!(live["sandboxes"].as_array().unwrap().len(), 1);
    d.call("DELETE", &format!("/v1/sandboxes/{keep}"), None);
    let st = d.stop();
    assert!(st.success());
    assert!(
        d.leftover_cgroups().is_empty(),
        "{:?}",
        d.leftover_cgroups()
    );
    assert!(d.leftover_sockets().is_empty());
}

#[test]
fn bad_input_gets_json_4xx_never_500() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let auth = format!("Bearer {}", d.key);
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let post = |path: &str, body: &[u8]| d.raw("POST", path, &h, Some(body)).unwrap();
    post("/v1/sandboxes", b"{not json").assert_error(400);
    post("/v1/sandboxes", br#"{"template": "host", "bogus": 1}"#).assert_error(400);
    post("/v1/sandboxes", br#"{"timeout_s": "soon"}"#).assert_error(400);
    post("/v1/sandboxes", br#"{"template": "nope"}"#).assert_error(404);
    post("/v1/sandboxes", br#"{"resources": {"memory": "lots"}}"#).assert_error(400);
    post("/v1/sandboxes", br#"{"resources": {"cpus": "-1"}}"#).assert_error(400);
    post("/v1/sandboxes", br#"{"metadata": {"bad key!": "x"}}"#).assert_error(400);
    post("/v1/sandboxes", br#"{"env": {"A=B": "x"}}"#).assert_error(400);
    let huge = vec![b'a'; 3 << 20];
    let r = post("/v1/sandboxes", &huge);
    assert_eq!(r.status, 413, "{}", r.text());
    post(
        "/v1/sandboxes/sb-00000000000000000000/exec",
        br#"{"cmd":["true"]}"#,
    )
    .assert_error(404);
    post("/v1/sandboxes/../../etc/exec", br#"{"cmd":["true"]}"#);
    post(&format!("/v1/sandboxes/{id}/exec"), br#"{"cmd":"true"}"#).assert_error(400);
    // Wrong states: a stopped sandbox can be neither paused nor run.
    let gone = d.create(json!({}));
    d.call("DELETE", &format!("/v1/sandboxes/{gone}"), None);
    post(&format!("/v1/sandboxes/{gone}/pause"), b"").assert_error(409);
    post(
        &format!("/v1/sandboxes/{gone}/exec"),
        br#"{"cmd":["true"]}"#,
    )
    .assert_error(409);
    d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/files?path=/no/such/file"),
        None,
    )
    .assert_error(404);
    d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/files?path=/a%00b"),
        None,
    )
    .assert_error(400);
    d.call("GET", &format!("/v1/sandboxes/{id}/files"), None)
        .assert_error(400);
    // The daemon is still healthy.
    assert_eq!(d.exec(&id, &["true"])["exit_code"], 0);
}

//! Create, list, get, delete, timeouts, pause/resume, snapshots, tenants, quotas.

use std::time::Duration;

use serde_json::json;

use crate::harness::Daemon;

#[test]
fn create_exec_delete_leaves_nothing() {
    let d = Daemon::start(0);
    let r = d.call(
        "POST",
        "/v1/sandboxes",
        Some(&json!({"metadata": {"app": "t1"}})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let sb = r.json();
    let id = sb["id"].as_str().unwrap().to_string();
    assert_eq!(sb["state"], "running");
    assert_eq!(sb["template"], "host");
    assert!(id.starts_with("sb-") && id.len() == 23, "{id}");
    let out = d.exec(&id, &["sh", "-c", "echo hello; id -u"]);
    assert_eq!(out["exit_code"], 0);
    assert_eq!(out["stdout"], "hello\n1000\n");
    let got = d.call("GET", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["metadata"]["app"], "t1");
    let list = d.call("GET", "/v1/sandboxes?metadata.app=t1", None).json();
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 1);
    let none = d
        .call("GET", "/v1/sandboxes?metadata.app=other", None)
        .json();
    assert!(none["sandboxes"].as_array().unwrap().is_empty());
    assert!(
        !d.leftover_cgroups().is_empty(),
        "a live sandbox has cgroups"
    );
    let del = d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(del.status, 204, "{}", del.text());
    let after = d.call("GET", &format!("/v1/sandboxes/{id}"), None).json();
    assert_eq!(after["state"], "stopped");
    assert_eq!(after["stop_reason"], "deleted");
    let exec = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({"cmd": ["true"]})),
    );
    exec.assert_error(409);
    d.assert_clean(0);
    assert!(
        d.leftover_cgroups().is_empty(),
        "{:?}",
        d.leftover_cgroups()
    );
    assert!(d.leftover_sockets().is_empty());
}

#[test]
fn list_pages_with_a_cursor_and_filters_by_state() {
    let d = Daemon::start(0);
    let ids: Vec<String> = (0..3).map(|_| d.create(json!({}))).collect();
    let p1 = d.call("GET", "/v1/sandboxes?limit=2", None).json();
    assert_eq!(p1["sandboxes"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let p2 = d
        .call(
            "GET",
            &format!("/v1/sandboxes?limit=2&cursor={cursor}"),
            None,
        )
        .json();
    let rest: Vec<&str> = p2["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(rest, [ids[2].as_str()]);
    assert!(p2["next_cursor"].is_null());
    d.call("DELETE", &format!("/v1/sandboxes/{}", ids[0]), None);
    let stopped = d.call("GET", "/v1/sandboxes?state=stopped", None).json();
    assert_eq!(stopped["sandboxes"].as_array().unwrap().len(), 1);
    d.call("GET", "/v1/sandboxes?state=bogus", None)
        .assert_error(400);
    d.call("GET", "/v1/sandboxes?cursor=zzz", None)
        .assert_error(400);
}

#[test]
fn ttl_expiry_kills_and_removes_and_timeout_extends() {
    let d = Daemon::start(0);
    let short = d.create(json!({"timeout_s": 1}));
    let long = d.create(json!({"timeout_s": 1}));
    let r = d.call(
        "POST",
        &format!("/v1/sandboxes/{long}/timeout"),
        Some(&json!({"timeout_s": 60})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    d.wait_for("expiry", || {
        d.call("GET", &format!("/v1/sandboxes/{short}"), None)
            .json()["state"]
            == "stopped"
    });
    let s = d
        .call("GET", &format!("/v1/sandboxes/{short}"), None)
        .json();
    assert_eq!(s["stop_reason"], "expired");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        d.exec(&long, &["true"])["exit_code"],
        0,
        "the extended sandbox lives on"
    );
    d.call(
        "POST",
        &format!("/v1/sandboxes/{long}/timeout"),
        Some(&json!({"timeout_s": 0})),
    )
    .assert_error(400);
    d.call("POST", "/v1/sandboxes", Some(&json!({"timeout_s": 999999})))
        .assert_error(400);
    d.call("DELETE", &format!("/v1/sandboxes/{long}"), None);
    d.assert_clean(0);
}

#[test]
fn pause_keeps_processes_and_refuses_work_until_resumed() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let bg = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({"cmd": ["sh", "-c", "while :; do :; done"], "background": true})),
    );
    assert_eq!(bg.status, 201, "{}", bg.text());
    let pid = bg.json()["process_id"].as_str().unwrap().to_string();
    let p = d.call("POST", &format!("/v1/sandboxes/{id}/pause"), None);
    assert_eq!(p.status, 200, "{}", p.text());
    assert_eq!(p.json()["state"], "paused");
    let frozen = crate::harness::cgroup_roots().first().map(|r| {
        r.parent()
            .unwrap()
            .join("freezer")
            .join(&d.env.cgroup_parent)
            .join(&id)
            .join("freezer.state")
    });
    if let Some(f) = frozen.filter(|f| f.exists()) {
        assert_eq!(std::fs::read_to_string(f).unwrap().trim(), "FROZEN");
    }
    d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({"cmd": ["true"]})),
    )
    .assert_error(409);
    let r = d.call("POST", &format!("/v1/sandboxes/{id}/resume"), None);
    assert_eq!(r.json()["state"], "running");
    let proc = d
        .call("GET", &format!("/v1/sandboxes/{id}/processes/{pid}"), None)
        .json();
    assert_eq!(proc["state"], "running", "the busy loop survived the pause");
    let k = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/processes/{pid}/signal"),
        Some(&json!({"signal": "KILL"})),
    );
    assert!(k.status == 200 || k.status == 204, "{}", k.text());
    d.wait_for("the killed process to be reported", || {
        d.call("GET", &format!("/v1/sandboxes/{id}/processes/{pid}"), None)
            .json()["state"]
            == "exited"
    });
    let proc = d
        .call("GET", &format!("/v1/sandboxes/{id}/processes/{pid}"), None)
        .json();
    assert_eq!(proc["result"]["exit_code"], 137);
    d.call("POST", &format!("/v1/sandboxes/{id}/resume"), None);
    // Deleting a paused sandbox works too.
    d.call("POST", &format!("/v1/sandboxes/{id}/pause"), None);
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        204
    );
    d.assert_clean(0);
}

#[test]
fn snapshot_forks_many_children_with_the_files() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    d.exec(
        &id,
        &[
            "sh",
            "-c",
            "mkdir -p /home/sandbox/proj && echo v1 > /home/sandbox/proj/state && rm -f /etc/motd",
        ],
    );
    let s = d.call("POST", &format!("/v1/sandboxes/{id}/snapshot"), None);
    assert_eq!(s.status, 201, "{}", s.text());
    let snap = s.json();
    let snap_id = snap["id"].as_str().unwrap().to_string();
    assert!(snap_id.starts_with("snap-"));
    assert_eq!(
        d.exec(&id, &["true"])["exit_code"],
        0,
        "the source runs on after a snapshot"
    );
    let a = d.create(json!({"snapshot_id": snap_id}));
    let b = d.create(json!({"snapshot_id": snap_id}));
    for child in [&a, &b] {
        let out = d.exec(child, &["cat", "/home/sandbox/proj/state"]);
        assert_eq!(out["stdout"], "v1\n", "{out}");
    }
    d.exec(&a, &["sh", "-c", "echo changed > /home/sandbox/proj/state"]);
    assert_eq!(
        d.exec(&b, &["cat", "/home/sandbox/proj/state"])["stdout"],
        "v1\n",
        "children are independent"
    );
    let again = d
        .call("POST", &format!("/v1/sandboxes/{id}/snapshot"), None)
        .json();
    assert_eq!(
        again["id"],
        snap_id.as_str(),
        "content-addressed: the same files, the same id"
    );
    let listed = d.call("GET", "/v1/snapshots", None).json();
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 1);
    d.call("DELETE", &format!("/v1/snapshots/{snap_id}"), None)
        .assert_error(409);
    for sb in [&id, &a, &b] {
        d.call("DELETE", &format!("/v1/sandboxes/{sb}"), None);
    }
    assert_eq!(
        d.call("DELETE", &format!("/v1/snapshots/{snap_id}"), None)
            .status,
        204
    );
    d.call("GET", &format!("/v1/snapshots/{snap_id}"), None)
        .assert_error(404);
    let left: Vec<_> = std::fs::read_dir(d.data_dir().join("snapshots"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "snapshot files removed: {left:?}");
    d.assert_clean(0);
}

#[test]
fn tenants_never_see_each_other() {
    let d = Daemon::start(0);
    let alice = d.tenant_key("alice");
    let bob = d.tenant_key("bob");
    let r = d.call_as(&alice, "POST", "/v1/sandboxes", Some(&json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    d.call_as(&bob, "GET", &format!("/v1/sandboxes/{id}"), None)
        .assert_error(404);
    d.call_as(&bob, "DELETE", &format!("/v1/sandboxes/{id}"), None)
        .assert_error(404);
    d.call_as(
        &bob,
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({"cmd": ["true"]})),
    )
    .assert_error(404);
    d.call_as(
        &bob,
        "GET",
        &format!("/v1/sandboxes/{id}/files?path=/etc/hostname"),
        None,
    )
    .assert_error(404);
    let list = d.call_as(&bob, "GET", "/v1/sandboxes", None).json();
    assert!(list["sandboxes"].as_array().unwrap().is_empty());
    assert_eq!(
        d.call_as(&alice, "GET", &format!("/v1/sandboxes/{id}"), None)
            .status,
        200
    );
}

#[test]
fn quotas_limit_concurrent_sandboxes() {
    let d = Daemon::start(0);
    let r = d.call(
        "POST",
        "/v1/tenants",
        Some(&json!({"name": "small", "quota": {"max_sandboxes": 1}})),
    );
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    let key = d
        .call(
            "POST",
            "/v1/keys",
            Some(&json!({"tenant": "small", "role": "agent"})),
        )
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let first = d.call_as(&key, "POST", "/v1/sandboxes", Some(&json!({})));
    assert_eq!(first.status, 201);
    d.call_as(&key, "POST", "/v1/sandboxes", Some(&json!({})))
        .assert_error(429);
    let id = first.json()["id"].as_str().unwrap().to_string();
    d.call_as(&key, "DELETE", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(
        d.call_as(&key, "POST", "/v1/sandboxes", Some(&json!({})))
            .status,
        201
    );
}

#[test]
fn warm_pool_hands_out_and_refills_and_shutdown_removes_everything() {
    let mut d = Daemon::start(2);
    d.wait_for("the pool to fill", || {
        d.call("GET", "/metrics", None)
            .text()
            .contains("corral_pool_depth{template=\"host\"} 2")
    });
    let id = d.create(json!({"resources": {"memory": "256M"}}));
    assert_eq!(d.exec(&id, &["true"])["exit_code"], 0);
    let got = d.call("GET", &format!("/v1/sandboxes/{id}"), None).json();
    assert_eq!(got["resources"]["memory_bytes"], 256u64 << 20);
    d.wait_for("the pool to refill", || {
        d.call("GET", "/metrics", None)
            .text()
            .contains("corral_pool_depth{template=\"host\"} 2")
    });
    let st = d.stop();
    assert!(st.success(), "graceful shutdown exits 0: {st}");
    assert!(
        d.leftover_cgroups().is_empty(),
        "{:?}",
        d.leftover_cgroups()
    );
    assert!(d.leftover_sockets().is_empty());
}

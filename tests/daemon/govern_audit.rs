//! Governance end to end through a real daemon: capability calls (HTTP target on a
//! loopback server this test starts, sandbox target), idempotency, approvals, the
//! audit trail and its export, verify (API and CLI) and tamper detection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::Daemon;

/// A loopback HTTP server answering each request with JSON describing it; counts hits.
fn echo_server() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        // Bounded: a test makes a handful of calls.
        for s in l.incoming().take(200) {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let mut len = 0usize;
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = h.trim().to_string();
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let answer = json!({
                "request": line.trim(),
                "body": String::from_utf8_lossy(&body),
                "authorization": auth,
            })
            .to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (addr, hits)
}

fn catalog(addr: &str) -> String {
    format!(
        r#"
[[capability]]
name = "echo_read"
description = "Read something."
side_effect = "read_only"
category = "test"
input_schema = {{ type = "object", required = ["id"], additionalProperties = false, properties = {{ id = {{ type = "string" }} }} }}
target = {{ kind = "http", method = "GET", url = "http://{addr}/read/{{{{id}}}}" }}

[[capability]]
name = "echo_write"
description = "Write something."
side_effect = "write_limited"
category = "test"
input_schema = {{ type = "object", required = ["n"], additionalProperties = false, properties = {{ n = {{ type = "integer" }} }} }}
compensation = {{ rollback = "none", owner = "tests" }}
target = {{ kind = "http", method = "POST", url = "http://{addr}/write", body = '{{"n": {{{{n}}}}}}' }}

[[capability]]
name = "pay"
description = "Pay (privileged: needs approval)."
side_effect = "privileged"
category = "test"
input_schema = {{ type = "object", required = ["amount", "card"], additionalProperties = false, properties = {{ amount = {{ type = "integer" }}, card = {{ type = "string", "x-sensitive" = true }} }} }}
compensation = {{ rollback = "refund", owner = "tests" }}
target = {{ kind = "http", method = "POST", url = "http://{addr}/pay", body = '{{"amount": {{{{amount}}}}, "card": "{{{{card}}}}"}}' }}

[[capability]]
name = "say"
description = "Echo a word in a fresh sandbox."
side_effect = "write_limited"
category = "test"
input_schema = {{ type = "object", required = ["word"], additionalProperties = false, properties = {{ word = {{ type = "string", maxLength = 50 }} }} }}
compensation = {{ rollback = "none", owner = "tests" }}
target = {{ kind = "sandbox", template = "host", command = ["/bin/echo", "said", "{{{{word}}}}"] }}
"#
    )
}

fn call(d: &Daemon, body: Value) -> (u16, Value) {
    let r = d.call("POST", "/v1/calls", Some(&body));
    (r.status, r.json())
}

/// The catalog file is re-read within about a second.
fn wait_catalog(d: &Daemon) {
    d.wait_for("the catalog to load", || {
        let (st, v) = call(d, json!({"capability": "echo_read", "args": {"id": "x"}}));
        st == 200 || v["error"]["code"] != "unknown_capability"
    });
}

#[test]
fn governed_calls_approvals_and_a_verifiable_trail() {
    let d = Daemon::start(0);
    let (addr, hits) = echo_server();
    std::fs::write(d.data_dir().join("capabilities.toml"), catalog(&addr)).unwrap();
    wait_catalog(&d);
    let task = "task-e2e-1";

    // read_only: runs; arguments are validated first.
    let (st, v) = call(
        &d,
        json!({"capability": "echo_read", "args": {"id": "a b"}, "task_id": task}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"]["status"], 200);
    assert_eq!(v["output"]["body"]["request"], "GET /read/a%20b HTTP/1.1");
    let (st, v) = call(
        &d,
        json!({"capability": "echo_read", "args": {"id": 5}, "task_id": task}),
    );
    assert_eq!(st, 403, "{v}");
    assert!(
        v["error"]["code"]
            .as_str()
            .unwrap()
            .starts_with("invalid_arguments"),
        "{v}"
    );
    assert_eq!(v["error"]["pointer"], "/id");

    // write_limited: a key is required; a repeat replays; other args conflict.
    let (st, v) = call(
        &d,
        json!({"capability": "echo_write", "args": {"n": 1}, "task_id": task}),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("idempotency_key_required")),
        "{v}"
    );
    let w = json!({"capability": "echo_write", "args": {"n": 1}, "task_id": task, "idempotency_key": "w-1"});
    let (st, first) = call(&d, w.clone());
    assert_eq!(st, 200, "{first}");
    let before = hits.load(Ordering::SeqCst);
    let (_, again) = call(&d, w);
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(again["output"], first["output"]);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "a replay must not reach the target"
    );
    let (st, v) = call(
        &d,
        json!({"capability": "echo_write", "args": {"n": 2}, "task_id": task, "idempotency_key": "w-1"}),
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("idempotency_conflict")),
        "{v}"
    );

    // privileged: pending until an operator approves; then runs once.
    let pay = json!({"capability": "pay", "args": {"amount": 30, "card": "4111-2222-3333"}, "task_id": task, "idempotency_key": "p-1"});
    let (st, p) = call(&d, pay.clone());
    assert_eq!(st, 202, "{p}");
    assert_eq!(p["status"], "pending_approval");
    let id = p["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(p["approval"]["args"]["card"], "[redacted]");
    // An agent key cannot see or decide approvals.
    let agent = d.tenant_key("other");
    d.call_as(&agent, "GET", "/v1/approvals", None)
        .assert_error(403);
    let r = d.call_as(&agent, "GET", &format!("/v1/calls/{id}"), None);
    assert_eq!(r.status, 404, "another tenant's call: {}", r.text());
    let list = d.call("GET", "/v1/approvals?status=pending", None).json();
    assert_eq!(list["approvals"].as_array().unwrap().len(), 1, "{list}");
    let polled = d.call("GET", &format!("/v1/calls/{id}"), None).json();
    assert_eq!(polled["status"], "pending_approval");
    // Approve with the CLI.
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["approvals", "approve", &id, "--reason", "checked", "--url"])
        .arg(format!("http://{}", d.addr))
        .args(["--key", &d.key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = d.call("GET", &format!("/v1/approvals/{id}"), None).json();
    assert_eq!(
        (a["status"].as_str(), a["reason"].as_str()),
        (Some("approved"), Some("checked"))
    );
    // The approval binds to the arguments.
    let mut other = pay.clone();
    other["args"]["amount"] = json!(3000);
    other["idempotency_key"] = json!("p-2");
    other["approval_id"] = json!(id);
    let (st, v) = call(&d, other);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("approval_mismatch")),
        "{v}"
    );
    let (st, done) = call(&d, pay.clone());
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["output"]["body"]["body"],
        r#"{"amount": 30, "card": "4111-2222-3333"}"#
    );
    let polled = d.call("GET", &format!("/v1/calls/{id}"), None).json();
    assert_eq!(
        (polled["status"].as_str(), polled["replayed"].as_bool()),
        (Some("completed"), Some(true))
    );
    let mut reuse = pay.clone();
    reuse["approval_id"] = json!(id);
    let (st, v) = call(&d, reuse);
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("approval_used")),
        "{v}"
    );

    // A sandbox target runs in a fresh sandbox that is removed afterwards.
    let (st, v) = call(
        &d,
        json!({"capability": "say", "args": {"word": "$(id)"}, "task_id": task, "idempotency_key": "s-1"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["output"]["stdout"], "said $(id)\n");
    let live = d.call("GET", "/v1/sandboxes", None).json();
    assert!(live["sandboxes"].as_array().unwrap().is_empty(), "{live}");

    // Sandbox lifecycle is recorded too.
    let sb = d.create(json!({}));
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{sb}"), None)
            .status,
        204
    );

    // The trail: every step, in order, nothing sensitive.
    let trail = d
        .call("GET", &format!("/v1/audit?task={task}&limit=1000"), None)
        .json();
    let recs = trail["records"].as_array().unwrap();
    let kinds: Vec<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for k in [
        "tool_call",
        "decision",
        "outcome",
        "approval_requested",
        "approval_approved",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let text = trail.to_string();
    assert!(
        !text.contains("4111"),
        "a sensitive argument reached the audit log"
    );
    let export = d
        .raw(
            "GET",
            &format!("/v1/audit/export?task={task}"),
            &[("Authorization", &format!("Bearer {}", d.key))],
            None,
        )
        .unwrap();
    assert_eq!(export.status, 200);
    let lines: Vec<Value> = export
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), recs.len());
    assert!(lines.iter().all(|r| r["task_id"] == task));
    assert!(lines
        .windows(2)
        .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    let all = d.call("GET", "/v1/audit?limit=1000", None).json();
    let lifecycle = all["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "sandbox_lifecycle" && r["payload"]["sandbox_id"] == sb.as_str())
        .count();
    assert_eq!(lifecycle, 2, "create and delete of {sb}");
    let v = d.call("GET", "/v1/audit/verify", None).json();
    assert_eq!(v["ok"], true, "{v}");
    d.call_as(&agent, "GET", "/v1/audit/verify", None)
        .assert_error(403);

    // Offline verify, then tampering is found.
    let dir = d.data_dir();
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["audit", "verify", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // An outcome record of the task (it holds "completed").
    let victim = recs
        .iter()
        .find(|r| r["kind"] == "outcome" && r["payload"]["status"] == "completed")
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    tamper(&dir.join("audit.db"), victim);
    let bad = verify();
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(&format!("record {victim}")), "{err}");
}

/// Edits one record behind corral's back (drops the append-only trigger first, as an
/// attacker with file access would).
fn tamper(db: &std::path::Path, seq: u64) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    let n = c
        .execute(
            "UPDATE audit SET record = replace(record, 'completed', 'c0mpleted') WHERE seq = ?1",
            [seq as i64],
        )
        .unwrap();
    assert_eq!(n, 1);
}

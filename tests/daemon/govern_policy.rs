//! Governance policy through a real daemon: the catalog file (hot reload, a bad file
//! refused), publishing capabilities, Cedar bundles (publish, refusal, diff, shadow,
//! rollback), plan review, kill switches (a tenant switch pauses its sandboxes), budgets
//! and the CLI.

use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::harness::Daemon;

const CATALOG: &str = r#"
[[capability]]
name = "refund"
description = "Refund an invoice."
side_effect = "privileged"
category = "billing"
input_schema = { type = "object", required = ["amount"], additionalProperties = false, properties = { amount = { type = "integer", minimum = 1 } } }
compensation = { rollback = "charge again", owner = "billing" }
target = { kind = "http", method = "POST", url = "http://127.0.0.1:9/refund" }

[[capability]]
name = "lookup"
description = "Look an invoice up."
side_effect = "read_only"
category = "billing"
input_schema = { type = "object" }
target = { kind = "http", method = "GET", url = "http://127.0.0.1:9/lookup" }
"#;

fn corral(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CORRAL_URL", format!("http://{}", d.addr))
        .env("CORRAL_API_KEY", &d.key)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn names(d: &Daemon, key: &str) -> Vec<String> {
    let r = d.call_as(key, "GET", "/v1/capabilities", None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn plan(d: &Daemon, key: &str, steps: Value) -> Value {
    let r = d.call_as(
        key,
        "POST",
        "/v1/plans",
        Some(&json!({"steps": steps, "task_id": "t1"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn effect(p: &Value, i: usize) -> String {
    p["steps"][i]["decision"]["effect"]
        .as_str()
        .unwrap()
        .to_string()
}

fn with_catalog(d: &Daemon) {
    std::fs::write(d.data_dir().join("capabilities.toml"), CATALOG).unwrap();
    d.wait_for("the catalog file to load", || {
        names(d, &d.key).contains(&"refund".to_string())
    });
}

#[test]
fn catalog_policies_versions_shadow_rollback_and_plans() {
    let d = Daemon::start(0);
    with_catalog(&d);
    let agent = d.tenant_key("acme");

    // The shipped default: read_only permitted, privileged needs approval.
    let steps = json!([
        {"tool": "lookup", "args": {}},
        {"tool": "refund", "args": {"amount": 5}, "expected_side_effect": "write_limited"},
        {"tool": "refund", "args": {"amount": "five"}},
        {"tool": "nope"}
    ]);
    let p = plan(&d, &agent, steps.clone());
    assert_eq!(effect(&p, 0), "permit", "{p}");
    assert_eq!(effect(&p, 1), "needs_approval", "{p}");
    assert_eq!(
        p["steps"][1]["decision"]["policies"],
        json!(["privileged-needs-approval"])
    );
    assert!(p["steps"][1]["decision"]["reasons"]
        .to_string()
        .contains("expects write_limited"));
    assert_eq!(p["steps"][2]["decision"]["stage"], "arguments");
    assert_eq!(p["steps"][3]["decision"]["stage"], "catalog");
    assert_eq!(p["all_permitted"], false);

    // A bundle that does not validate is refused with Cedar's message; nothing changes.
    let r = d.call(
        "POST",
        "/v1/policies",
        Some(&json!({"text": "permit (principal, action, resource) when { context.input.zzz == 1 };"})),
    );
    assert_eq!(r.assert_error(400), "invalid_policy");
    assert!(r.text().contains("zzz"), "{}", r.text());
    let l = d.call("GET", "/v1/policies", None).json();
    assert_eq!(
        (
            l["active"].as_u64(),
            l["versions"].as_array().unwrap().len()
        ),
        (Some(1), 1)
    );
    // Agents cannot publish.
    let r = d.call_as(&agent, "POST", "/v1/policies", Some(&json!({"text": ""})));
    r.assert_error(403);

    // Version 2: no refunds at all.
    let v2 = r#"@id("lookups") permit (principal, action == Action::"call", resource == Capability::"lookup");
@id("no-refunds") forbid (principal, action, resource == Capability::"refund");"#;
    let r = d.call(
        "POST",
        "/v1/policies",
        Some(&json!({"text": v2, "note": "freeze"})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    let p = plan(&d, &agent, steps.clone());
    assert_eq!(effect(&p, 1), "forbid");
    assert_eq!(p["steps"][1]["decision"]["policies"], json!(["no-refunds"]));
    assert_eq!(p["steps"][1]["decision"]["policy_version"], 2);
    // tools/list visibility: refund is hidden from the agent now.
    assert!(!names(&d, &agent).contains(&"refund".to_string()));
    assert!(names(&d, &agent).contains(&"lookup".to_string()));

    let diff = d.call("GET", "/v1/policies/diff?from=1&to=2", None).json();
    assert_eq!(diff["added"].as_array().unwrap().len(), 2, "{diff}");
    assert_eq!(diff["removed"].as_array().unwrap().len(), 3, "{diff}");
    let show = d.call("GET", "/v1/policies/2", None).json();
    assert!(show["text"].as_str().unwrap().contains("no-refunds"));

    // Shadow: version 1 evaluated and reported, version 2 enforced.
    let r = d.call("PUT", "/v1/policies/shadow", Some(&json!({"version": 1})));
    assert_eq!(r.status, 200, "{}", r.text());
    let p = plan(&d, &agent, steps.clone());
    assert_eq!(effect(&p, 1), "forbid");
    assert_eq!(
        p["steps"][1]["decision"]["shadow"]["effect"],
        "needs_approval"
    );
    assert_eq!(d.call("DELETE", "/v1/policies/shadow", None).status, 204);

    // One-step rollback, then nothing further back.
    let r = d.call("POST", "/v1/policies/rollback", None);
    assert_eq!(r.json()["version"], 1, "{}", r.text());
    assert_eq!(
        effect(&plan(&d, &agent, steps.clone()), 1),
        "needs_approval"
    );
    d.call("POST", "/v1/policies/rollback", None)
        .assert_error(409);
    assert_eq!(d.call("POST", "/v1/policies/2/activate", None).status, 200);
    d.call("POST", "/v1/policies/9/activate", None)
        .assert_error(404);

    // A broken catalog file is refused; the last good catalog stays.
    std::fs::write(
        d.data_dir().join("capabilities.toml"),
        "[[capability]]\nname = 3\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(names(&d, &d.key).contains(&"refund".to_string()));

    // Publishing a capability via the API applies at once; a bad one is a 400.
    let cap = json!({"name": "notify", "description": "Send a note.", "side_effect": "write_limited",
        "category": "comms", "input_schema": {"type": "object"},
        "compensation": {"rollback": "none", "owner": "ops"},
        "target": {"kind": "sandbox", "template": "host", "command": ["true"]}});
    let r = d.call("PUT", "/v1/capabilities/notify", Some(&cap));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["idempotency_key_required"], true);
    let mut bad = cap.clone();
    bad["input_schema"] = json!({"type": "object", "properties": {"x": {"type": "nonsense"}}});
    d.call("PUT", "/v1/capabilities/notify", Some(&bad))
        .assert_error(400);
    d.call_as(&agent, "PUT", "/v1/capabilities/notify", Some(&cap))
        .assert_error(403);
    assert_eq!(
        d.call("GET", "/v1/capabilities/notify", None).json()["category"],
        "comms"
    );

    // The CLI.
    let o = corral(&d, &["policy", "ls"]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("active") && out.contains("freeze"), "{out}");
    let o = corral(&d, &["policy", "diff", "1", "2"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("+ no-refunds"),
        "{o:?}"
    );
    let file = d.data_dir().join("bad.cedar");
    std::fs::write(&file, "permit (principal, action, resource) when {").unwrap();
    let o = corral(&d, &["policy", "publish", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not parse"),
        "{o:?}"
    );
    let o = corral(&d, &["policy", "rollback"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("policy version 1 is active"),
        "{o:?}"
    );
    d.assert_clean(0);
}

#[test]
fn kill_switches_and_budgets() {
    let d = Daemon::start(0);
    with_catalog(&d);
    let agent = d.tenant_key("acme");
    let one = json!([{"tool": "lookup", "args": {}}]);

    // A capability switch hides it and denies it, from the next call on.
    let r = d.call(
        "PUT",
        "/v1/kill-switches",
        Some(&json!({"scope": "capability", "target": "lookup", "reason": "incident 42"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let p = plan(&d, &agent, one.clone());
    assert_eq!(p["steps"][0]["decision"]["stage"], "kill_switch");
    assert!(p["steps"][0]["decision"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("incident 42"));
    assert!(!names(&d, &agent).contains(&"lookup".to_string()));
    let ls = d.call("GET", "/v1/kill-switches", None).json();
    assert_eq!(ls["kill_switches"][0]["target"], "lookup");
    let r = d.call(
        "DELETE",
        "/v1/kill-switches?scope=capability&target=lookup",
        None,
    );
    assert_eq!(r.status, 204);
    d.call(
        "DELETE",
        "/v1/kill-switches?scope=capability&target=lookup",
        None,
    )
    .assert_error(404);
    assert_eq!(effect(&plan(&d, &agent, one.clone()), 0), "permit");
    // Agents cannot set switches.
    d.call_as(
        &agent,
        "PUT",
        "/v1/kill-switches",
        Some(&json!({"scope": "tenant", "target": "acme"})),
    )
    .assert_error(403);

    // A tenant switch pauses the tenant's running sandboxes.
    let r = d.call_as(&agent, "POST", "/v1/sandboxes", Some(&json!({})));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = d.call(
        "PUT",
        "/v1/kill-switches",
        Some(&json!({"scope": "tenant", "target": "acme"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["paused_sandboxes"], json!([id]));
    let sb = d
        .call_as(&agent, "GET", &format!("/v1/sandboxes/{id}"), None)
        .json();
    assert_eq!(sb["state"], "paused");
    assert_eq!(
        plan(&d, &agent, one.clone())["steps"][0]["decision"]["stage"],
        "kill_switch"
    );
    let o = corral(&d, &["kill-switch", "ls"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tenant"),
        "{o:?}"
    );
    let o = corral(&d, &["kill-switch", "clear", "tenant", "acme"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(effect(&plan(&d, &agent, one.clone()), 0), "permit");
    let r = d.call_as(&agent, "DELETE", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(r.status, 204, "{}", r.text());

    // Budgets: tokens reported past the task's limit deny with the reason.
    let r = d.call(
        "PUT",
        "/v1/budgets/acme",
        Some(&json!({"limits": {"task_tokens": 100, "tenant_calls_per_day": 1000}})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    d.call(
        "PUT",
        "/v1/budgets/acme",
        Some(&json!({"limits": {"degrade_at_percent": 0}})),
    )
    .assert_error(400);
    d.call_as(
        &agent,
        "PUT",
        "/v1/budgets/acme",
        Some(&json!({"limits": {}})),
    )
    .assert_error(403);
    let r = d.call_as(
        &agent,
        "POST",
        "/v1/tasks/t1/usage",
        Some(&json!({"tokens": 150})),
    );
    assert_eq!(r.json()["tokens"], 150, "{}", r.text());
    let p = plan(&d, &agent, one.clone());
    assert_eq!(p["steps"][0]["decision"]["stage"], "budget");
    assert_eq!(
        p["steps"][0]["decision"]["reasons"][0],
        "budget exhausted: task t1 used 150/100 tokens"
    );
    let b = d.call("GET", "/v1/budgets", None).json();
    assert_eq!(b["tenants"][0]["tenant"], "acme", "{b}");
    assert_eq!(b["tenants"][0]["limits"]["tenant_calls_per_day"], 1000);
    d.assert_clean(0);
}

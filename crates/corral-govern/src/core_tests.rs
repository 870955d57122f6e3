use std::time::Instant;

use corral_types::api::{BudgetLimits, PlanRequest, PlanStep};

use super::*;

const CATALOG: &str = r#"
[[capability]]
name = "refund"
description = "Refund."
side_effect = "privileged"
category = "billing"
input_schema = { type = "object", required = ["amount"], properties = { amount = { type = "integer", minimum = 1 } } }
compensation = { rollback = "charge again", owner = "billing" }
target = { kind = "http", method = "POST", url = "http://127.0.0.1:9/refund" }

[[capability]]
name = "lookup"
description = "Look up."
side_effect = "read_only"
category = "billing"
input_schema = { type = "object" }
target = { kind = "http", method = "GET", url = "http://127.0.0.1:9/lookup" }
"#;

fn open() -> (tempfile::TempDir, Arc<PolicyCore>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("capabilities.toml"), CATALOG).unwrap();
    let core = PolicyCore::open(dir.path(), PolicyConfig::default()).unwrap();
    (dir, core)
}

fn call<'a>(cap: &'a str, args: &'a Value) -> CallCheck<'a> {
    CallCheck {
        tenant: "acme",
        agent: "bot",
        capability: cap,
        args,
        task_id: Some("task-1"),
    }
}

#[test]
fn stages_decide_in_order() {
    let (_d, core) = open();
    let ok = json!({"amount": 5});
    let e = core.evaluate(&call("nope", &ok));
    assert_eq!(
        (e.decision.effect, e.decision.stage.as_str()),
        (DecisionEffect::Forbid, "catalog")
    );
    let bad = json!({"amount": "x"});
    let e = core.evaluate(&call("refund", &bad));
    assert_eq!(e.decision.stage, "arguments");
    assert_eq!(e.args_error.unwrap().pointer, "/amount");
    // The default bundle: privileged needs approval, read_only is permitted.
    let e = core.evaluate(&call("refund", &ok));
    assert_eq!(
        e.decision.effect,
        DecisionEffect::NeedsApproval,
        "{:?}",
        e.decision
    );
    assert_eq!(e.decision.policies, ["privileged-needs-approval"]);
    assert_eq!(e.decision.policy_version, Some(1));
    let empty = json!({});
    assert_eq!(
        core.evaluate(&call("lookup", &empty)).decision.effect,
        DecisionEffect::Permit
    );
    // Kill switches: category, then cleared.
    core.set_kill_switch(
        KillSwitchScope::Category,
        "billing",
        Some("incident 7".into()),
        "key-a",
    )
    .unwrap();
    let e = core.evaluate(&call("lookup", &empty));
    assert_eq!(e.decision.stage, "kill_switch");
    assert!(e.decision.reasons[0].contains("incident 7"));
    assert!(!core.visible("acme", "bot", "lookup"));
    assert!(core.visible("acme", "bot", "read_file"));
    core.clear_kill_switch(KillSwitchScope::Category, "billing", "key-a")
        .unwrap();
    core.set_kill_switch(KillSwitchScope::Agent, "acme/bot", None, "key-a")
        .unwrap();
    assert_eq!(
        core.evaluate(&call("read_file", &empty)).decision.stage,
        "kill_switch"
    );
    core.clear_kill_switch(KillSwitchScope::Agent, "acme/bot", "key-a")
        .unwrap();
    assert!(core
        .clear_kill_switch(KillSwitchScope::Agent, "acme/bot", "key-a")
        .is_err());
    assert!(core.visible("acme", "bot", "lookup"));
}

#[test]
fn budget_degrades_then_denies() {
    let (_d, core) = open();
    core.set_budget_limits(
        "acme",
        BudgetLimits {
            tenant_calls_per_day: Some(5),
            degrade_at_percent: Some(60),
            ..BudgetLimits::default()
        },
        "key-a",
    )
    .unwrap();
    for _ in 0..3 {
        core.record_call("acme", Some("task-1")).unwrap();
    }
    let empty = json!({});
    let e = core.evaluate(&call("write_file", &empty));
    assert_eq!(e.decision.stage, "budget", "{:?}", e.decision);
    assert!(e.decision.reasons[0].contains("degraded"));
    assert_eq!(
        core.evaluate(&call("read_file", &empty)).decision.effect,
        DecisionEffect::Permit
    );
    core.record_call("acme", Some("task-1")).unwrap();
    core.record_call("acme", Some("task-1")).unwrap();
    let e = core.evaluate(&call("read_file", &empty));
    assert_eq!(
        e.decision.reasons,
        ["budget exhausted: tenant acme used 5/5 calls today; resets at 00:00 UTC"]
    );
    let list = core.budget_list(None).unwrap();
    assert!(list.tenants[0].exhausted);
    assert_eq!(core.task_usage("acme", "task-1").unwrap().calls, 5);
    assert_eq!(
        core.report_tokens("acme", "task-1", 70, "k")
            .unwrap()
            .tokens,
        70
    );
}

#[test]
fn versions_rollback_shadow_and_refusals() {
    let (_d, core) = open();
    let strict = r#"@id("only-lookup") permit (principal, action == Action::"call", resource == Capability::"lookup");"#;
    let v2 = core
        .publish_policy(strict, true, Some("tighten"), "key-a")
        .unwrap();
    assert_eq!(v2.version, 2);
    let ok = json!({"amount": 5});
    assert_eq!(
        core.evaluate(&call("refund", &ok)).decision.effect,
        DecisionEffect::Forbid
    );
    // Invalid bundles are refused and change nothing.
    let err = core
        .publish_policy(
            "permit (principal, action, resource) when { context.input.zzz == 1 };",
            true,
            None,
            "k",
        )
        .unwrap_err();
    assert!(err.to_string().contains("does not validate"), "{err}");
    assert_eq!(core.active_versions(), (Some(2), None));
    // Shadow: v1 evaluated next to v2.
    core.set_shadow(Some(1), "k").unwrap();
    let d = core.evaluate(&call("refund", &ok)).decision;
    assert_eq!(d.effect, DecisionEffect::Forbid);
    let sh = d.shadow.unwrap();
    assert_eq!((sh.version, sh.effect), (1, DecisionEffect::NeedsApproval));
    core.set_shadow(None, "k").unwrap();
    // Diff and rollback.
    let diff = core.policy_diff(1, 2).unwrap();
    assert_eq!(diff.added[0].id, "only-lookup");
    assert_eq!(diff.removed.len(), 3);
    assert_eq!(core.rollback_policy("k").unwrap().version, 1);
    assert_eq!(
        core.evaluate(&call("refund", &ok)).decision.effect,
        DecisionEffect::NeedsApproval
    );
    assert!(matches!(
        core.rollback_policy("k"),
        Err(PolicyCoreError::NoRollback)
    ));
    core.activate_policy(2, "k").unwrap();
    assert_eq!(core.policy_list().unwrap().active, Some(2));
    // A catalog change that would break the active bundle is refused.
    let uses_amount = r#"@id("a") permit (principal, action, resource) when { context.input has amount && context.input.amount < 9 };"#;
    core.publish_policy(uses_amount, true, None, "k").unwrap();
    let mut c = core.catalog().get("refund").unwrap().capability.clone();
    c.input_schema = json!({"type": "object", "properties": {"amount": {"type": "string"}}});
    assert!(matches!(
        core.publish_capability(c, "k"),
        Err(PolicyCoreError::BreaksPolicy { .. })
    ));
}

#[test]
fn catalog_file_hot_reload_keeps_last_good() {
    let (dir, core) = open();
    let path = dir.path().join("capabilities.toml");
    assert!(core.catalog().get("lookup").is_some());
    std::fs::write(&path, format!("{CATALOG}\n[[capability]]\nname = 3\n")).unwrap();
    assert!(core.reload_catalog().is_err());
    assert!(core.catalog().get("lookup").is_some());
    let added = CATALOG.replace("\"lookup\"", "\"lookup2\"");
    std::fs::write(&path, added).unwrap();
    // Force a different mtime on coarse file systems.
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert!(core.reload_catalog().unwrap());
    assert!(core.catalog().get("lookup2").is_some() && core.catalog().get("lookup").is_none());
}

#[test]
fn plans_are_reviewed_not_run() {
    let (_d, core) = open();
    let plan = PlanRequest {
        task_id: Some("t".into()),
        steps: vec![
            PlanStep {
                tool: "lookup".into(),
                args: json!({}),
                expected_side_effect: Some(SideEffect::ReadOnly),
            },
            PlanStep {
                tool: "refund".into(),
                args: json!({"amount": 3}),
                expected_side_effect: Some(SideEffect::WriteLimited),
            },
            PlanStep {
                tool: "ghost".into(),
                args: Value::Null,
                expected_side_effect: None,
            },
        ],
    };
    let r = core.review_plan("acme", "bot", &plan).unwrap();
    let effects: Vec<_> = r.steps.iter().map(|s| s.decision.effect).collect();
    assert_eq!(
        effects,
        [
            DecisionEffect::Permit,
            DecisionEffect::NeedsApproval,
            DecisionEffect::Forbid
        ]
    );
    assert!(r.steps[1]
        .decision
        .reasons
        .iter()
        .any(|m| m.contains("expects write_limited")));
    assert!(!r.all_permitted);
    assert_eq!(core.task_usage("acme", "t").unwrap().calls, 0);
}

/// `cargo test -p corral-govern --release decide_bench -- --ignored --nocapture`
#[test]
#[ignore = "a benchmark; run by hand"]
fn decide_bench() {
    let (_d, core) = open();
    let mut text = String::new();
    for i in 0..48 {
        text.push_str(&format!(
            "@id(\"p{i}\") permit (principal in Tenant::\"t{i}\", action == Action::\"call\", resource in Category::\"billing\") when {{ context.input has amount && context.input.amount < {i} }};\n"
        ));
    }
    text.push_str("@id(\"refunds\") @approval(\"required\") permit (principal, action == Action::\"call\", resource == Capability::\"refund\");\n");
    text.push_str("@id(\"cap\") forbid (principal, action, resource) when { context.input has amount && context.input.amount > 1000 };\n");
    core.publish_policy(&text, true, None, "bench").unwrap();
    let args = json!({"amount": 50});
    let c = call("refund", &args);
    for _ in 0..1000 {
        core.evaluate(&c);
    }
    let mut t: Vec<f64> = (0..20_000)
        .map(|_| {
            let s = Instant::now();
            let e = core.evaluate(&c);
            assert_eq!(e.decision.effect, DecisionEffect::NeedsApproval);
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    println!(
        "decide() with 50 policies: p50 {:.1} us, p99 {:.1} us, max {:.1} us (n={})",
        t[t.len() / 2],
        t[t.len() * 99 / 100],
        t[t.len() - 1],
        t.len()
    );
}

#[test]
fn catalog_file_that_breaks_the_active_bundle_waits_for_one_that_fits() {
    let (dir, core) = open();
    let uses_amount = r#"@id("a") permit (principal, action, resource) when { context.input has amount && context.input.amount < 9 };"#;
    core.publish_policy(uses_amount, true, None, "k").unwrap();
    let path = dir.path().join("capabilities.toml");
    // `amount` becomes a string: the active bundle would not validate.
    std::fs::write(
        &path,
        CATALOG.replace(
            "amount = { type = \"integer\", minimum = 1 }",
            "amount = { type = \"string\" }",
        ),
    )
    .unwrap();
    let e = core.reload_catalog().unwrap_err();
    assert!(
        matches!(e, PolicyCoreError::BreaksPolicy { version: 2, .. }),
        "{e}"
    );
    let ok = json!({"amount": 5});
    assert_eq!(
        core.evaluate(&call("refund", &ok)).decision.effect,
        DecisionEffect::Permit
    );
    // A bundle that does not use the field: the same file applies on the next poll.
    core.publish_policy(
        r#"@id("b") permit (principal, action, resource);"#,
        true,
        None,
        "k",
    )
    .unwrap();
    assert!(core.reload_catalog().unwrap());
    let s = json!({"amount": "five"});
    assert_eq!(
        core.evaluate(&call("refund", &s)).decision.effect,
        DecisionEffect::Permit
    );
}

use corral_types::api::{Capability, Compensation, SideEffect};
use serde_json::json;

use super::*;

pub(crate) fn cap(name: &str, cat: &str, se: SideEffect, schema: Value) -> Capability {
    Capability {
        name: name.into(),
        description: "test".into(),
        input_schema: schema,
        side_effect: se,
        category: cat.into(),
        idempotency_key_required: false,
        compensation: Some(Compensation {
            rollback: "r".into(),
            owner: "o".into(),
        }),
        target: Some(corral_types::api::CapabilityTarget::Sandbox {
            template: "host".into(),
            command: vec!["true".into()],
        }),
    }
}

fn catalog() -> Catalog {
    Catalog::build(
        vec![
            cap(
                "refund",
                "billing",
                SideEffect::Privileged,
                json!({"type": "object", "properties": {"amount": {"type": "integer"}}}),
            ),
            cap(
                "lookup",
                "billing",
                SideEffect::ReadOnly,
                json!({"type": "object"}),
            ),
        ],
        "test",
    )
    .unwrap()
}

fn input<'a>(budget: &'a Value) -> PolicyInput<'a> {
    PolicyInput {
        tenant: "acme",
        agent: "bot",
        task_id: "t1",
        budget,
        now_unix: 1_700_000_000,
    }
}

fn budget() -> Value {
    json!({"degraded": false, "tenant_calls_today": 0, "task_calls": 0, "task_tokens": 0})
}

#[test]
fn permit_forbid_approval_and_default_deny() {
    let cat = catalog();
    let eng = Engine::new(&cat).unwrap();
    let text = r#"
@id("lookups") permit (principal in Tenant::"acme", action == Action::"call", resource == Capability::"lookup");
@id("refunds") @approval("required")
permit (principal == Agent::"acme/bot", action == Action::"call", resource in Category::"billing")
when { context.side_effect == "privileged" };
@id("big") forbid (principal, action, resource) when { context.input has amount && context.input.amount > 100 };
"#;
    let b = CompiledBundle::compile(1, text, &eng.schema).unwrap();
    assert_eq!(b.ids(), ["lookups", "refunds", "big"]);
    let bud = budget();
    let lookup = cat.get("lookup").unwrap();
    let refund = cat.get("refund").unwrap();
    let o = eng.decide(&b, lookup, &json!({}), &input(&bud));
    assert_eq!(o.effect, DecisionEffect::Permit, "{o:?}");
    assert_eq!(o.policies, ["lookups"]);
    let o = eng.decide(&b, refund, &json!({"amount": 50}), &input(&bud));
    assert_eq!(o.effect, DecisionEffect::NeedsApproval, "{o:?}");
    let o = eng.decide(&b, refund, &json!({"amount": 500}), &input(&bud));
    assert_eq!(o.effect, DecisionEffect::Forbid);
    assert_eq!(o.policies, ["big"]);
    let mut other = input(&bud);
    other.agent = "eve";
    let o = eng.decide(&b, refund, &json!({}), &other);
    assert_eq!(o.effect, DecisionEffect::Forbid);
    assert!(o.reasons[0].contains("default deny"), "{o:?}");
    // Visibility: bot sees refund, eve does not; a blanket forbid hides it.
    assert!(could_permit(&b, "acme", "bot", "refund", "billing").unwrap());
    assert!(!could_permit(&b, "acme", "eve", "refund", "billing").unwrap());
    assert!(could_permit(&b, "acme", "eve", "lookup", "billing").unwrap());
    let b2 = CompiledBundle::compile(
        2,
        &format!("{text}\nforbid (principal, action, resource in Category::\"billing\");"),
        &eng.schema,
    )
    .unwrap();
    assert!(!could_permit(&b2, "acme", "bot", "lookup", "billing").unwrap());
}

#[test]
fn strict_validation_refuses_unknown_names() {
    let eng = Engine::new(&catalog()).unwrap();
    for bad in [
        // An input field no capability has.
        r#"permit (principal, action, resource) when { context.input.nope == 1 };"#,
        // An optional field used without `has`.
        r#"permit (principal, action, resource) when { context.input.amount == 1 };"#,
        // An unknown entity type.
        r#"permit (principal == User::"x", action, resource);"#,
        // Syntax.
        r#"permit (principal, action, resource) when {"#,
        // Approval on a forbid.
        r#"@approval("required") forbid (principal, action, resource);"#,
    ] {
        assert!(
            CompiledBundle::compile(1, bad, &eng.schema).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn default_bundle_validates_and_decides() {
    let cat = catalog();
    let eng = Engine::new(&cat).unwrap();
    let b = CompiledBundle::compile(1, crate::DEFAULT_POLICY, &eng.schema).unwrap();
    let bud = budget();
    let o = eng.decide(&b, cat.get("refund").unwrap(), &json!({}), &input(&bud));
    assert_eq!(o.effect, DecisionEffect::NeedsApproval);
    let o = eng.decide(&b, cat.get("read_file").unwrap(), &json!({}), &input(&bud));
    assert_eq!(o.effect, DecisionEffect::Permit);
    let o = eng.decide(&b, cat.get("write_file").unwrap(), &json!({}), &input(&bud));
    assert_eq!(o.effect, DecisionEffect::Permit);
}

#[test]
fn shipped_sample_catalog_and_bundle_validate() {
    let text = include_str!("../../../../resources/govern/capabilities.sample.toml");
    let cat = Catalog::build(Catalog::parse(text, "sample").unwrap(), "sample").unwrap();
    let eng = Engine::new(&cat).unwrap();
    let b = CompiledBundle::compile(
        1,
        include_str!("../../../../resources/govern/sample-policy.cedar"),
        &eng.schema,
    )
    .unwrap();
    let bud = budget();
    let refund = cat.get("refund_invoice").unwrap();
    let mut at_noon = input(&bud);
    at_noon.now_unix = 1_700_000_000 - 1_700_000_000 % 86_400 + 12 * 3600;
    let o = eng.decide(
        &b,
        refund,
        &json!({"invoice_id": "inv_1", "amount_cents": 500}),
        &at_noon,
    );
    assert_eq!(o.effect, DecisionEffect::NeedsApproval, "{o:?}");
    let o = eng.decide(
        &b,
        refund,
        &json!({"invoice_id": "inv_1", "amount_cents": 20000}),
        &at_noon,
    );
    assert_eq!(
        (o.effect, o.policies),
        (DecisionEffect::Forbid, vec!["no-large-refunds".to_string()])
    );
    let mut at_night = at_noon.clone();
    at_night.now_unix -= 10 * 3600;
    let o = eng.decide(
        &b,
        refund,
        &json!({"invoice_id": "inv_1", "amount_cents": 500}),
        &at_night,
    );
    assert_eq!(o.policies, ["office-hours-only"]);
    // The default catalog file is valid and empty.
    let empty = include_str!("../../../../resources/govern/capabilities.toml");
    assert!(Catalog::parse(empty, "default").unwrap().is_empty());
}

/// Every prefix of the shipped catalog and bundle, and byte-flipped copies, parse to a
/// value or an error: never a panic (what an operator or an admin key can send).
#[test]
fn truncated_and_mangled_inputs_never_panic() {
    let cat_text = include_str!("../../../../resources/govern/capabilities.sample.toml");
    let pol_text = include_str!("../../../../resources/govern/sample-policy.cedar");
    let cat = Catalog::build(Catalog::parse(cat_text, "s").unwrap(), "s").unwrap();
    let eng = Engine::new(&cat).unwrap();
    let cuts = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = (0..s.len())
            .step_by(7)
            .filter(|i| s.is_char_boundary(*i))
            .map(|i| s[..i].to_string())
            .collect();
        for (i, c) in s.char_indices().step_by(11) {
            let repl = if c == '"' { '{' } else { '"' };
            let mut m = s.to_string();
            m.replace_range(i..i + c.len_utf8(), &repl.to_string());
            v.push(m);
        }
        v
    };
    for t in cuts(cat_text) {
        if let Ok(caps) = Catalog::parse(&t, "fuzz") {
            let _ = Catalog::build(caps, "fuzz");
        }
    }
    for t in cuts(pol_text) {
        let _ = CompiledBundle::compile(1, &t, &eng.schema);
    }
}

//! The gateway's added latency per call: a trivial in-process target called directly
//! vs through `Governance::call` (catalog, schema validation, kill switches, budget,
//! Cedar with 50 policies, idempotency, three audit records in two transactions).
//!
//! `cargo test -p corral-govern --release gateway_overhead -- --ignored --nocapture`

use std::sync::Arc;
use std::time::Instant;

use corral_types::api::{CallRequest, CallStatus};
use serde_json::json;

use super::*;
use crate::core::{PolicyConfig, PolicyCore};

/// Answers at once: what is left is the gateway's own cost.
#[derive(Debug)]
struct Trivial;

impl TargetRunner for Trivial {
    fn run<'a>(
        &'a self,
        _tenant: &'a str,
        _req: TargetRequest,
        _secret: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<TargetOutput, String>> {
        Box::pin(async {
            Ok(TargetOutput {
                output: json!({"status": 200, "body": {"ok": true}}),
                cpu_ms: 0,
                success: true,
            })
        })
    }
}

const CATALOG: &str = r#"
[[capability]]
name = "bump"
description = "Bump a counter."
side_effect = "write_limited"
category = "billing"
input_schema = { type = "object", required = ["amount"], additionalProperties = false, properties = { amount = { type = "integer", minimum = 0, maximum = 100000 }, note = { type = "string", maxLength = 200 } } }
compensation = { rollback = "bump back", owner = "bench" }
target = { kind = "http", method = "POST", url = "http://127.0.0.1:9/bump", body = '{"amount": {{amount}}}' }

[[capability]]
name = "peek"
description = "Read a counter."
side_effect = "read_only"
category = "billing"
input_schema = { type = "object", properties = { id = { type = "string" } } }
target = { kind = "http", method = "GET", url = "http://127.0.0.1:9/peek/{{id}}" }
"#;

fn percentiles(mut t: Vec<f64>) -> (f64, f64, f64) {
    t.sort_by(|a, b| a.total_cmp(b));
    (t[t.len() / 2], t[t.len() * 99 / 100], t[t.len() - 1])
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "a benchmark; run by hand"]
async fn gateway_overhead() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("capabilities.toml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let core = PolicyCore::open(
        dir.path(),
        PolicyConfig {
            catalog_path: Some(catalog),
        },
    )
    .unwrap();
    // 50 policies: 47 that never match this caller, two permits, one forbid.
    let mut text = String::new();
    for i in 0..47 {
        text.push_str(&format!(
            "@id(\"p{i}\") permit (principal in Tenant::\"t{i}\", action == Action::\"call\", resource in Category::\"billing\") when {{ context.input has amount && context.input.amount < {i} }};\n"
        ));
    }
    text.push_str("@id(\"ro\") permit (principal, action == Action::\"call\", resource) when { context.side_effect == \"read_only\" };\n");
    text.push_str("@id(\"wl\") permit (principal, action == Action::\"call\", resource) when { context.side_effect == \"write_limited\" };\n");
    text.push_str("@id(\"cap\") forbid (principal, action, resource) when { context.input has amount && context.input.amount > 50000 };\n");
    core.publish_policy(&text, true, None, "bench").unwrap();
    let runner = Arc::new(Trivial);
    let gov = Governance::open(
        dir.path(),
        GovernConfig::default(),
        core,
        runner.clone(),
        Arc::new(NoSecrets),
    )
    .unwrap();
    let ctx = CallContext {
        tenant: "acme".into(),
        agent: "bench".into(),
        trace_id: None,
    };
    let req = |cap: &str, i: usize| CallRequest {
        capability: cap.into(),
        args: if cap == "bump" {
            json!({"amount": 42, "note": "bench"})
        } else {
            json!({"id": "c1"})
        },
        task_id: Some("bench-task".into()),
        idempotency_key: (cap == "bump").then(|| format!("k-{i}")),
        approval_id: None,
        wait_s: None,
    };
    // Warm up.
    for i in 0..500 {
        let r = gov.call(&ctx, req("bump", n + i)).await.unwrap();
        assert_eq!(r.status, CallStatus::Completed, "{r:?}");
    }
    // Interleaved: direct, then through the gateway.
    let mut direct = Vec::with_capacity(n);
    let mut bump = Vec::with_capacity(n);
    let mut peek = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let _ = runner
            .run(
                "acme",
                TargetRequest::Http {
                    method: "POST".into(),
                    url: "http://127.0.0.1:9/bump".into(),
                    headers: vec![],
                    body: Some("{\"amount\": 42}".into()),
                },
                None,
            )
            .await
            .unwrap();
        direct.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        let r = gov.call(&ctx, req("bump", i)).await.unwrap();
        bump.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r.status, CallStatus::Completed);
        let t = Instant::now();
        let r = gov.call(&ctx, req("peek", i)).await.unwrap();
        peek.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r.status, CallStatus::Completed);
    }
    let (d50, d99, _) = percentiles(direct);
    let (b50, b99, bmax) = percentiles(bump);
    let (p50, p99, pmax) = percentiles(peek);
    println!("direct trivial target: p50 {d50:.1} us, p99 {d99:.1} us (n={n})");
    println!(
        "through the gateway, write_limited with idempotency key: p50 {b50:.1} us, p99 {b99:.1} us, max {bmax:.1} us"
    );
    println!("through the gateway, read_only: p50 {p50:.1} us, p99 {p99:.1} us, max {pmax:.1} us");
    println!(
        "gateway overhead (write_limited): p50 {:.1} us, p99 {:.1} us; audit records: {}",
        b50 - d50,
        b99 - d99,
        gov.audit().head().0
    );
}

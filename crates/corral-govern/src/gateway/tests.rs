use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use corral_types::api::{AuditRecord, CapabilityTarget, Compensation};
use serde_json::json;

use super::*;
use crate::audit::AuditQuery;
use crate::catalog::ArgsRejection;

#[derive(Debug, Default)]
pub(crate) struct FakePolicy {
    caps: HashMap<String, Capability>,
    effects: HashMap<String, DecisionEffect>,
    calls: AtomicU64,
}

impl PolicyPoint for FakePolicy {
    fn capability(&self, name: &str) -> Option<Capability> {
        self.caps.get(name).cloned()
    }

    fn decide(
        &self,
        _t: &str,
        _a: &str,
        _task: Option<&str>,
        name: &str,
        _args: &Value,
    ) -> (DecisionRecord, Option<ArgsRejection>) {
        let (effect, stage, reasons) = match (self.caps.get(name), self.effects.get(name)) {
            (None, _) => (
                DecisionEffect::Forbid,
                "catalog",
                vec![format!("unknown capability {name}")],
            ),
            (_, Some(e)) => (*e, "policy", vec![]),
            (_, None) => (
                DecisionEffect::Forbid,
                "policy",
                vec!["default deny".to_string()],
            ),
        };
        let d = DecisionRecord {
            effect,
            stage: stage.into(),
            reasons,
            policies: vec![format!("p-{name}")],
            policy_version: Some(1),
            shadow: None,
        };
        (d, None)
    }

    fn record_call(&self, _t: &str, _task: Option<&str>, _cpu: u64) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

/// Echoes the request (and the secret it got, as a careless target would).
#[derive(Debug, Default)]
pub(crate) struct Echo {
    runs: AtomicU64,
}

impl TargetRunner for Echo {
    fn run<'a>(
        &'a self,
        _tenant: &'a str,
        req: TargetRequest,
        secret: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<TargetOutput, String>> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let TargetRequest::Http { url, body, .. } = req else {
                return Err("no sandboxes here".to_string());
            };
            Ok(TargetOutput {
                output: json!({"status": 200, "body": {"url": url, "body": body,
                    "auth": secret.map(|s| format!("Bearer {}", s.0))}}),
                cpu_ms: 0,
                success: true,
            })
        })
    }
}

#[derive(Debug)]
struct OneSecret;

impl SecretSource for OneSecret {
    fn secret(&self, _tenant: &str, name: &str, host: &str) -> Result<Option<Secret>, String> {
        assert_eq!(host, "127.0.0.1");
        Ok((name == "TOKEN").then(|| Secret("tok-very-secret-1".into())))
    }
}

pub(crate) fn cap(name: &str, side_effect: SideEffect) -> Capability {
    Capability {
        name: name.into(),
        description: "d".into(),
        input_schema: json!({"type": "object", "properties": {"card": {"type": "string", "x-sensitive": true}}}),
        side_effect,
        category: "billing".into(),
        idempotency_key_required: side_effect != SideEffect::ReadOnly,
        compensation: Some(Compensation {
            rollback: "r".into(),
            owner: "o".into(),
        }),
        target: Some(CapabilityTarget::Http {
            method: "POST".into(),
            url: "http://127.0.0.1:9/x/{{n}}".into(),
            headers: Default::default(),
            body: Some(r#"{"n": {{n}}}"#.into()),
            secret: Some("TOKEN".into()),
        }),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    gov: Arc<Governance>,
    echo: Arc<Echo>,
    policy: Arc<FakePolicy>,
}

fn fixture(ttl: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = FakePolicy::default();
    for (n, se, eff) in [
        ("read", SideEffect::ReadOnly, DecisionEffect::Permit),
        ("write", SideEffect::WriteLimited, DecisionEffect::Permit),
        (
            "refund",
            SideEffect::Privileged,
            DecisionEffect::NeedsApproval,
        ),
        ("nuke", SideEffect::Privileged, DecisionEffect::Forbid),
    ] {
        policy.caps.insert(n.into(), cap(n, se));
        policy.effects.insert(n.into(), eff);
    }
    let policy = Arc::new(policy);
    let echo = Arc::new(Echo::default());
    let cfg = GovernConfig {
        approval_ttl: ttl,
        ..GovernConfig::default()
    };
    let audit = Governance::open_audit(dir.path(), &cfg).unwrap();
    let gov = Governance::with_parts(
        dir.path(),
        cfg,
        audit,
        policy.clone(),
        echo.clone(),
        Arc::new(OneSecret),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        gov: Arc::new(gov),
        echo,
        policy,
    }
}

fn ctx() -> CallContext {
    CallContext {
        tenant: "acme".into(),
        agent: "bot".into(),
        trace_id: Some("trace-1".into()),
    }
}

fn req(capability: &str, args: Value, key: Option<&str>) -> CallRequest {
    CallRequest {
        capability: capability.into(),
        args,
        task_id: Some("task-1".into()),
        idempotency_key: key.map(String::from),
        approval_id: None,
        wait_s: None,
    }
}

fn trail(f: &Fixture) -> Vec<AuditRecord> {
    f.gov
        .audit()
        .list(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .records
}

#[tokio::test]
async fn a_permitted_call_runs_and_leaves_three_records() {
    let f = fixture(Duration::from_secs(60));
    let r = f
        .gov
        .call(
            &ctx(),
            req("read", json!({"n": 7, "card": "4111-1111"}), None),
        )
        .await
        .unwrap();
    assert_eq!(r.status, CallStatus::Completed, "{r:?}");
    let out = r.output.unwrap().to_string();
    assert!(out.contains("/x/7"), "{out}");
    // The secret went to the target, never back to the agent.
    assert!(!out.contains("tok-very-secret"), "{out}");
    assert!(out.contains("[redacted]"), "{out}");
    let recs = trail(&f);
    let kinds: Vec<AuditKind> = recs.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [AuditKind::ToolCall, AuditKind::Decision, AuditKind::Outcome]
    );
    assert!(recs
        .iter()
        .all(|x| x.correlation_id.as_deref() == Some(r.call_id.as_str())));
    assert!(recs
        .iter()
        .all(|x| x.trace_id.as_deref() == Some("trace-1")));
    let all = serde_json::to_string(&recs).unwrap();
    assert!(
        !all.contains("4111") && !all.contains("tok-very-secret"),
        "{all}"
    );
    assert_eq!(recs[0].payload["args"]["card"], "[redacted]");
    assert_eq!(f.policy.calls.load(Ordering::SeqCst), 1);
    assert!(crate::audit::verify_file(f.gov.audit().path()).unwrap().ok);
}

#[tokio::test]
async fn refusals_name_their_reason_and_run_nothing() {
    let f = fixture(Duration::from_secs(60));
    let r = f
        .gov
        .call(&ctx(), req("nuke", json!({}), Some("k")))
        .await
        .unwrap();
    assert_eq!(r.status, CallStatus::Denied);
    assert_eq!(r.error.unwrap().code, "policy_denied");
    assert_eq!(r.policies, ["p-nuke"]);
    let r = f
        .gov
        .call(&ctx(), req("nope", json!({}), Some("k")))
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, "unknown_capability");
    let r = f
        .gov
        .call(&ctx(), req("write", json!({"n": 1}), None))
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, "idempotency_key_required");
    assert_eq!(f.echo.runs.load(Ordering::SeqCst), 0);
    // Each refusal is still three records.
    assert_eq!(trail(&f).len(), 9);
}

#[tokio::test]
async fn a_repeated_key_replays_and_other_args_conflict() {
    let f = fixture(Duration::from_secs(60));
    let first = f
        .gov
        .call(&ctx(), req("write", json!({"n": 1}), Some("k1")))
        .await
        .unwrap();
    assert_eq!(first.status, CallStatus::Completed);
    let again = f
        .gov
        .call(&ctx(), req("write", json!({"n": 1}), Some("k1")))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.output, first.output);
    assert_eq!(again.call_id, first.call_id);
    let other = f
        .gov
        .call(&ctx(), req("write", json!({"n": 2}), Some("k1")))
        .await
        .unwrap();
    assert_eq!(other.error.unwrap().code, "idempotency_conflict");
    assert_eq!(f.echo.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn approval_binds_to_args_and_is_used_once() {
    let f = fixture(Duration::from_secs(60));
    let args = json!({"n": 50});
    let p = f
        .gov
        .call(&ctx(), req("refund", args.clone(), Some("r1")))
        .await
        .unwrap();
    assert_eq!(p.status, CallStatus::PendingApproval, "{p:?}");
    let id = p.approval.as_ref().unwrap().id.clone();
    assert_eq!(p.call_id, id);
    // Asking again does not create a second request.
    let p2 = f
        .gov
        .call(&ctx(), req("refund", args.clone(), Some("r1")))
        .await
        .unwrap();
    assert_eq!(p2.approval.unwrap().id, id);
    assert_eq!(f.gov.approvals(Some("acme"), None, 10).unwrap().len(), 1);
    assert_eq!(
        f.gov.call_status(&ctx(), &id).unwrap().status,
        CallStatus::PendingApproval
    );
    f.gov
        .decide_approval(Some("acme"), &id, true, "op", Some("fine"))
        .unwrap();
    assert_eq!(
        f.gov.call_status(&ctx(), &id).unwrap().status,
        CallStatus::Approved
    );
    // Other args with this approval: refused.
    let mut other = req("refund", json!({"n": 5000}), Some("r2"));
    other.approval_id = Some(id.clone());
    let r = f.gov.call(&ctx(), other).await.unwrap();
    assert_eq!(r.error.unwrap().code, "approval_mismatch");
    // The same call runs now.
    let done = f
        .gov
        .call(&ctx(), req("refund", args.clone(), Some("r1")))
        .await
        .unwrap();
    assert_eq!(done.status, CallStatus::Completed, "{done:?}");
    assert_eq!(done.approval.unwrap().status, ApprovalStatus::Used);
    // Polling gives the result; a repeat is the stored result; the id again: refused.
    let polled = f.gov.call_status(&ctx(), &id).unwrap();
    assert_eq!(
        (polled.status, polled.replayed),
        (CallStatus::Completed, true)
    );
    let again = f
        .gov
        .call(&ctx(), req("refund", args.clone(), Some("r1")))
        .await
        .unwrap();
    assert!(again.replayed);
    let mut reuse = req("refund", args.clone(), Some("r1"));
    reuse.approval_id = Some(id.clone());
    let r = f.gov.call(&ctx(), reuse).await.unwrap();
    assert_eq!(r.error.unwrap().code, "approval_used");
    assert_eq!(f.echo.runs.load(Ordering::SeqCst), 1);
    let kinds: Vec<AuditKind> = trail(&f).iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&AuditKind::ApprovalRequested));
    assert!(kinds.contains(&AuditKind::ApprovalApproved));
}

#[tokio::test]
async fn denial_and_expiry_refuse_the_call() {
    let f = fixture(Duration::from_secs(60));
    let p = f
        .gov
        .call(&ctx(), req("refund", json!({"n": 1}), Some("d1")))
        .await
        .unwrap();
    let id = p.approval.unwrap().id;
    f.gov
        .decide_approval(Some("acme"), &id, false, "op", Some("too much"))
        .unwrap();
    let r = f
        .gov
        .call(&ctx(), req("refund", json!({"n": 1}), Some("d1")))
        .await
        .unwrap();
    let e = r.error.unwrap();
    assert_eq!(e.code, "approval_denied");
    assert!(e.message.contains("too much"), "{}", e.message);

    let f = fixture(Duration::from_millis(1));
    let p = f
        .gov
        .call(&ctx(), req("refund", json!({"n": 1}), Some("e1")))
        .await
        .unwrap();
    let id = p.approval.unwrap().id;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(f
        .gov
        .decide_approval(Some("acme"), &id, true, "op", None)
        .is_err());
    let r = f
        .gov
        .call(&ctx(), req("refund", json!({"n": 1}), Some("e1")))
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, "approval_expired");
    assert!(trail(&f)
        .iter()
        .any(|r| r.kind == AuditKind::ApprovalExpired));
    assert_eq!(f.echo.runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_call_may_wait_for_the_decision() {
    let f = fixture(Duration::from_secs(60));
    let gov = f.gov.clone();
    let approver = tokio::spawn(async move {
        for _ in 0..200 {
            if let Some(a) = gov
                .approvals(Some("acme"), Some(ApprovalStatus::Pending), 1)
                .unwrap()
                .pop()
            {
                gov.decide_approval(Some("acme"), &a.id, true, "op", None)
                    .unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut r = req("refund", json!({"n": 3}), Some("w1"));
    r.wait_s = Some(10);
    let done = f.gov.call(&ctx(), r).await.unwrap();
    approver.await.unwrap();
    assert_eq!(done.status, CallStatus::Completed, "{done:?}");
}

#[tokio::test]
async fn builtin_tools_are_gated_and_recorded() {
    let f = fixture(Duration::from_secs(60));
    let mut policy = FakePolicy::default();
    let mut c = cap("exec_command", SideEffect::WriteLimited);
    c.target = None;
    policy.caps.insert("exec_command".into(), c);
    policy
        .effects
        .insert("exec_command".into(), DecisionEffect::Permit);
    let gov = Governance::with_parts(
        f._dir.path(),
        GovernConfig::default(),
        f.gov.audit().clone(),
        Arc::new(policy),
        f.echo.clone(),
        Arc::new(NoSecrets),
    )
    .unwrap();
    let a = gov
        .authorize_builtin(
            &ctx(),
            "exec_command",
            SideEffect::WriteLimited,
            &json!({"cmd": "ls"}),
            None,
        )
        .await
        .unwrap();
    let BuiltinAuth::Allowed { call_id } = a else {
        panic!("{a:?}")
    };
    gov.record_builtin_outcome(
        &ctx(),
        &call_id,
        "exec_command",
        None,
        Ok(&json!({"exit_code": 0})),
    )
    .unwrap();
    let r = gov
        .authorize_builtin(
            &ctx(),
            "kill_sandbox",
            SideEffect::WriteLimited,
            &json!({}),
            None,
        )
        .await
        .unwrap();
    assert!(
        matches!(r, BuiltinAuth::Refused(ref c) if c.status == CallStatus::Denied),
        "{r:?}"
    );
    // A builtin cannot be called as a capability.
    let r = gov
        .call(&ctx(), req("exec_command", json!({}), None))
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, "not_a_capability");
    assert_eq!(trail(&f).len(), 3 + 3 + 3);
}

#[test]
fn secrets_never_show_in_debug() {
    assert_eq!(format!("{:?}", Secret("x".into())), "Secret([redacted])");
    let _unused: &Mutex<()> = &Mutex::new(());
}

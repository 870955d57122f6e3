//! The seams of the pipeline: the policy point, the secret source and the target
//! runner the daemon implements (fakes in tests), and the policy core and audit log
//! behind the first two in production.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use corral_types::api::{AuditKind, Capability, DecisionRecord};
use serde_json::{json, Value};

use crate::audit::{AuditEvent, AuditLog, AuditSink};
use crate::catalog::ArgsRejection;
use crate::core::{CallCheck, PolicyAuditHook, PolicyCore, PolicyEvent};

/// The policy side of the pipeline: catalog, argument validation, kill switches,
/// budgets and Cedar. Implemented by the policy engine; a fake in tests.
pub trait PolicyPoint: Send + Sync + Debug {
    /// The catalog entry of `name` (a capability or a builtin tool), if any.
    fn capability(&self, name: &str) -> Option<Capability>;
    /// Decides one call: unknown capability, invalid arguments (the rejection too),
    /// kill switch, budget and Cedar (with the shadow bundle's decision attached), in
    /// that order; fails closed.
    fn decide(
        &self,
        tenant: &str,
        agent: &str,
        task_id: Option<&str>,
        name: &str,
        args: &Value,
    ) -> (DecisionRecord, Option<ArgsRejection>);
    /// Counts a call that ran against the tenant's and task's budgets.
    fn record_call(&self, tenant: &str, task_id: Option<&str>, cpu_ms: u64);
}

/// A secret's value. Its Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where injected secrets come from (the daemon's secret store).
pub trait SecretSource: Send + Sync + Debug {
    /// The value of secret `name` of `tenant` for a request to `host`; `Ok(None)` when
    /// there is none, or it may not go to that host.
    fn secret(&self, tenant: &str, name: &str, host: &str) -> Result<Option<Secret>, String>;
}

/// No secrets at all: a target that names one is refused.
#[derive(Debug, Default)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _tenant: &str, _name: &str, _host: &str) -> Result<Option<Secret>, String> {
        Ok(None)
    }
}

/// A target with its templates filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRequest {
    /// An HTTP request; the runner adds `Authorization: Bearer SECRET` when a secret is
    /// given.
    Http {
        /// Method.
        method: String,
        /// URL (the host is the catalog's fixed text; arguments are percent-encoded).
        url: String,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Option<String>,
    },
    /// A command in a fresh sandbox of the tenant, removed afterwards.
    Sandbox {
        /// Template.
        template: String,
        /// argv (never a shell).
        argv: Vec<String>,
    },
}

/// What a target gave back.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOutput {
    /// The result shown to the agent: `{status, body}` for HTTP, `{exit_code, stdout,
    /// stderr}` for a sandbox command.
    pub output: Value,
    /// Sandbox CPU milliseconds used (budgets), 0 for HTTP.
    pub cpu_ms: u64,
    /// False when the target reported failure (HTTP status >= 400, exit code != 0): the
    /// call is `failed`, its output still returned and stored.
    pub success: bool,
}

/// A boxed future, as [`TargetRunner::run`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs targets; the daemon implements it (hyper for HTTP, the Manager for sandboxes).
pub trait TargetRunner: Send + Sync + Debug {
    /// Runs `req` for `tenant`. `Err` is a failure to run at all (connection refused,
    /// no such template), as a sentence without secrets.
    fn run<'a>(
        &'a self,
        tenant: &'a str,
        req: TargetRequest,
        secret: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<TargetOutput, String>>;
}

/// The policy core as the pipeline's policy point.
#[derive(Debug)]
pub(super) struct CorePoint(pub(super) Arc<PolicyCore>);

impl PolicyPoint for CorePoint {
    fn capability(&self, name: &str) -> Option<Capability> {
        self.0.catalog().get(name).map(|e| e.capability.clone())
    }

    fn decide(
        &self,
        tenant: &str,
        agent: &str,
        task_id: Option<&str>,
        name: &str,
        args: &Value,
    ) -> (DecisionRecord, Option<ArgsRejection>) {
        let ev = self.0.evaluate(&CallCheck {
            tenant,
            agent,
            capability: name,
            args,
            task_id,
        });
        (ev.decision, ev.args_error)
    }

    fn record_call(&self, tenant: &str, task_id: Option<&str>, cpu_ms: u64) {
        // The call ran; a failure to count it is logged, never hidden as a failed call.
        if let Err(e) = self.0.record_call(tenant, task_id) {
            eprintln!("corral: governance: cannot count a call of tenant {tenant}: {e}");
        }
        if let (Some(task), true) = (task_id, cpu_ms > 0) {
            if let Err(e) = self.0.record_cpu(tenant, task, cpu_ms) {
                eprintln!("corral: governance: cannot count CPU time of task {task}: {e}");
            }
        }
    }
}

/// The audit log as the policy core's change recorder.
#[derive(Debug)]
pub(super) struct AuditHook(pub(super) Arc<AuditLog>);

impl PolicyAuditHook for AuditHook {
    fn record(&self, ev: PolicyEvent) -> Result<(), String> {
        let kind = AuditKind::parse(ev.kind).unwrap_or(AuditKind::PolicyPublish);
        let mut payload = ev.payload;
        if kind == AuditKind::PolicyPublish && ev.kind != "policy_publish" {
            // An event kind this build does not know: keep its name.
            payload = json!({"event": ev.kind, "details": payload});
        }
        self.0
            .append(AuditEvent::new(kind, ev.tenant, payload).agent(ev.actor))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

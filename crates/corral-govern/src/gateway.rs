//! The call pipeline: every capability call (MCP `tools/call`, `POST /v1/calls`) and
//! every builtin sandbox tool goes through [`Governance`].
//!
//! `call`: catalog lookup → argument validation → kill switch → budget → Cedar decision
//! (and shadow) [these five are the [`PolicyPoint`]'s] → idempotency key check →
//! approval (find, create, wait, consume) → idempotency claim → target (through the
//! [`TargetRunner`] the daemon implements, the secret from a [`SecretSource`]) →
//! usage recorded → result stored for the key. The call and its decision are one audit
//! transaction before anything runs; the outcome is another after. Arguments are
//! redacted before they are recorded; outputs have injected secrets scrubbed before
//! anyone sees them.

use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_types::api::{
    Approval, ApprovalStatus, AuditKind, CallError, CallRequest, CallResponse, CallStatus,
    Capability, DecisionEffect, DecisionRecord, SideEffect,
};
use serde_json::{json, Value};

use crate::approvals::{random_id, ApprovalError, Approvals, NewApproval};
use crate::audit::{sha256_hex, AuditError, AuditEvent, AuditLog, AuditSink};
use crate::catalog::ArgsRejection;
use crate::core::{CallCheck, PolicyAuditHook, PolicyCore, PolicyEvent};
use crate::idempotency::{Claim, IdempotencyError, IdempotencyStore};
use crate::redact::{redact_args, scrub, sensitive_values};

/// Failures of governance itself (not refusals: those are [`CallResponse`]s).
#[derive(Debug, thiserror::Error)]
pub enum GovernError {
    /// The audit log failed: nothing runs without its record.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The approval store failed.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// The idempotency store failed.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// The policy side could not be set up.
    #[error("governance policy: {0}")]
    Policy(String),
    /// No randomness for a call id.
    #[error("cannot get random bytes for a call id: {0}")]
    Random(String),
}

/// Settings of the pipeline (`[govern]` of the daemon's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernConfig {
    /// How long an approval request waits for a decision before it expires (a denial).
    pub approval_ttl: Duration,
    /// The longest a call may wait for an operator's decision (`wait_s` is capped).
    pub approval_wait_max: Duration,
    /// How long a repeat waits for the same key's first call before answering
    /// `in_progress`.
    pub idempotency_wait: Duration,
    /// How long finished idempotency records are kept (their keys are refused or
    /// replayed until then).
    pub idempotency_ttl: Duration,
    /// fsync each audit append (see [`AuditLog::open`]).
    pub audit_fsync: bool,
}

impl Default for GovernConfig {
    fn default() -> GovernConfig {
        GovernConfig {
            approval_ttl: Duration::from_secs(15 * 60),
            approval_wait_max: Duration::from_secs(60),
            idempotency_wait: Duration::from_secs(2),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            audit_fsync: false,
        }
    }
}

/// Who calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// Tenant of the API key.
    pub tenant: String,
    /// Agent (the key's name, else its id): the policy principal.
    pub agent: String,
    /// The caller's trace id, if it sent one (recorded in the audit log).
    pub trace_id: Option<String>,
}

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

/// The answer to [`Governance::authorize_builtin`].
#[derive(Debug, Clone, PartialEq)]
pub enum BuiltinAuth {
    /// Go ahead; report the result with [`Governance::record_builtin_outcome`] and this
    /// call id.
    Allowed {
        /// The call's id (audit correlation id).
        call_id: String,
    },
    /// Not now: denied, or pending approval. Give this to the agent.
    Refused(Box<CallResponse>),
}

/// The governance of a daemon: audit log, approvals, idempotency and the policy point.
#[derive(Debug)]
pub struct Governance {
    audit: Arc<AuditLog>,
    approvals: Approvals,
    idem: IdempotencyStore,
    policy: Arc<dyn PolicyPoint>,
    runner: Arc<dyn TargetRunner>,
    secrets: Arc<dyn SecretSource>,
    cfg: GovernConfig,
}

fn deny(call_id: &str, code: &str, message: impl Into<String>) -> CallResponse {
    CallResponse {
        call_id: call_id.to_string(),
        status: CallStatus::Denied,
        output: None,
        replayed: false,
        approval: None,
        error: Some(CallError {
            code: code.to_string(),
            message: message.into(),
            pointer: None,
        }),
        policies: Vec::new(),
    }
}

/// The machine-readable code of a refusal by `decision`.
fn decision_code(d: &DecisionRecord) -> String {
    match d.stage.as_str() {
        "catalog" => "unknown_capability".into(),
        "arguments" => d
            .reasons
            .first()
            .and_then(|r| r.split_whitespace().next())
            .filter(|c| c.starts_with("invalid_arguments"))
            .unwrap_or("invalid_arguments")
            .to_string(),
        "kill_switch" => "kill_switch".into(),
        "budget" => "budget_exhausted".into(),
        "policy" => "policy_denied".into(),
        _ => "denied".into(),
    }
}

fn approval_refusal(call_id: &str, e: &ApprovalError) -> Option<CallResponse> {
    let code = match e {
        ApprovalError::Mismatch { .. } => "approval_mismatch",
        ApprovalError::NotFound(_) => "approval_not_found",
        ApprovalError::Unusable { status, .. } => match status {
            ApprovalStatus::Used => "approval_used",
            ApprovalStatus::Expired => "approval_expired",
            ApprovalStatus::Pending => "approval_pending",
            ApprovalStatus::Denied | ApprovalStatus::Approved => "approval_denied",
        },
        _ => return None,
    };
    Some(deny(call_id, code, e.to_string()))
}

impl Governance {
    /// Opens the audit log (DIR/audit.db), approvals and idempotency records
    /// (DIR/govern.db) around a policy point, a target runner and a secret source.
    pub fn with_parts(
        data_dir: &Path,
        cfg: GovernConfig,
        audit: Arc<AuditLog>,
        policy: Arc<dyn PolicyPoint>,
        runner: Arc<dyn TargetRunner>,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Governance, GovernError> {
        let db = data_dir.join("govern.db");
        let approvals = Approvals::open(&db, cfg.approval_ttl)?;
        let idem = IdempotencyStore::open(&db)?;
        // policy.db (the budget counters) too: its writers keep SQLite's default inline
        // checkpoints, which this thread makes rare.
        let mut wal = vec![audit.path().to_path_buf(), db];
        wal.extend(Some(data_dir.join("policy.db")).filter(|p| p.exists()));
        crate::audit::spawn_checkpointer(Arc::downgrade(&audit), wal);
        Ok(Governance {
            approvals,
            idem,
            audit,
            policy,
            runner,
            secrets,
            cfg,
        })
    }

    /// The daemon's governance: the audit log (DIR/audit.db) receiving the policy
    /// core's change events too, approvals and idempotency (DIR/govern.db), around the
    /// policy core.
    pub fn open(
        data_dir: &Path,
        cfg: GovernConfig,
        core: Arc<PolicyCore>,
        runner: Arc<dyn TargetRunner>,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Governance, GovernError> {
        let audit = Governance::open_audit(data_dir, &cfg)?;
        core.set_audit_hook(Arc::new(AuditHook(audit.clone())));
        Governance::with_parts(
            data_dir,
            cfg,
            audit,
            Arc::new(CorePoint(core)),
            runner,
            secrets,
        )
    }

    /// Opens the audit log the way [`Governance::with_parts`] expects it.
    pub fn open_audit(data_dir: &Path, cfg: &GovernConfig) -> Result<Arc<AuditLog>, GovernError> {
        Ok(Arc::new(AuditLog::open(
            &data_dir.join("audit.db"),
            cfg.audit_fsync,
        )?))
    }

    /// The audit log (for sandbox lifecycle events, listing, export).
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The policy point.
    pub fn policy(&self) -> &Arc<dyn PolicyPoint> {
        &self.policy
    }

    /// The settings.
    pub fn config(&self) -> &GovernConfig {
        &self.cfg
    }

    /// Expires overdue approval requests (each recorded as `approval_expired`) and
    /// forgets old idempotency records. Cheap; called before every approval read and
    /// by the daemon's periodic sweep.
    pub fn sweep(&self) -> Result<(), GovernError> {
        let expired = self.approvals.expire_due()?;
        let events: Vec<AuditEvent> = expired.iter().map(approval_event).collect();
        if !events.is_empty() {
            self.audit.append_all(&events)?;
        }
        Ok(())
    }

    /// Forgets idempotency records older than the configured TTL.
    pub fn prune(&self) -> Result<usize, GovernError> {
        Ok(self.idem.prune(self.cfg.idempotency_ttl)?)
    }

    /// Approval requests of `tenant` (None: all tenants), optionally by status.
    pub fn approvals(
        &self,
        tenant: Option<&str>,
        status: Option<ApprovalStatus>,
        limit: u32,
    ) -> Result<Vec<Approval>, GovernError> {
        self.sweep()?;
        Ok(self.approvals.list(tenant, status, limit)?)
    }

    /// One approval request of `tenant` (None: any).
    pub fn approval(&self, tenant: Option<&str>, id: &str) -> Result<Approval, GovernError> {
        self.sweep()?;
        Ok(self.approvals.get(tenant, id)?)
    }

    /// An operator's decision on a pending request, recorded in the audit log.
    pub fn decide_approval(
        &self,
        tenant: Option<&str>,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Approval, GovernError> {
        self.sweep()?;
        let a = self.approvals.decide(tenant, id, approve, by, reason)?;
        self.audit.append(approval_event(&a))?;
        Ok(a)
    }

    /// Where a call stands, by the id a pending answer gave (an approval id): pending,
    /// approved (repeat the call to run it), denied, expired, or the stored result once
    /// the approved call ran.
    pub fn call_status(&self, ctx: &CallContext, id: &str) -> Result<CallResponse, GovernError> {
        let a = self.approval(Some(&ctx.tenant), id)?;
        let mut r = match a.status {
            ApprovalStatus::Pending => pending(id, &a),
            ApprovalStatus::Approved => CallResponse {
                status: CallStatus::Approved,
                ..pending(id, &a)
            },
            ApprovalStatus::Denied => deny(id, "approval_denied", denied_message(&a)),
            ApprovalStatus::Expired => deny(id, "approval_expired", expired_message(&a)),
            ApprovalStatus::Used => {
                let stored = a
                    .idempotency_key
                    .as_deref()
                    .map(|k| self.idem.result(&a.tenant, &a.capability, k))
                    .transpose()?
                    .flatten()
                    .and_then(|v| serde_json::from_value::<CallResponse>(v).ok());
                match stored {
                    Some(mut r) => {
                        r.replayed = true;
                        r
                    }
                    None => CallResponse {
                        status: CallStatus::InProgress,
                        ..pending(id, &a)
                    },
                }
            }
        };
        r.approval = Some(a);
        Ok(r)
    }

    /// Runs one capability call through the whole pipeline. Refusals, pending
    /// approvals and target failures are answers; `Err` only when governance itself
    /// failed (the call did not run, or its outcome could not be recorded).
    pub async fn call(
        &self,
        ctx: &CallContext,
        req: CallRequest,
    ) -> Result<CallResponse, GovernError> {
        let started = Instant::now();
        let call_id = random_id("call-").map_err(GovernError::Random)?;
        let cap = self.policy.capability(&req.capability);
        let schema = cap.as_ref().map_or(Value::Null, |c| c.input_schema.clone());
        let args_hash = sha256_hex(&req.args);
        let call_event = self
            .event(ctx, &call_id, req.task_id.as_deref(), AuditKind::ToolCall)
            .payload(json!({
                "capability": req.capability,
                "args": redact_args(&req.args, &schema),
                "args_sha256": args_hash,
                "idempotency_key": req.idempotency_key,
                "approval_id": req.approval_id,
            }));
        let (decision, args_error) = self.policy.decide(
            &ctx.tenant,
            &ctx.agent,
            req.task_id.as_deref(),
            &req.capability,
            &req.args,
        );
        let decision_event = self
            .event(ctx, &call_id, req.task_id.as_deref(), AuditKind::Decision)
            .payload(json!({ "capability": req.capability, "decision": decision }));
        self.audit.append_all(&[call_event, decision_event])?;

        let mut resp = self
            .gate_and_run(ctx, &call_id, &req, cap, &args_hash, &decision)
            .await?;
        if let (Some(rej), Some(err)) = (args_error, resp.error.as_mut()) {
            err.code = rej.code;
            err.pointer = Some(rej.pointer);
        }
        let mut outcome = json!({
            "capability": req.capability,
            "status": resp.status,
            "replayed": resp.replayed,
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        if let Some(o) = &resp.output {
            // An output echoing a sensitive argument must not put it in the log.
            let mut o = redact_args(o, &Value::Null);
            let hidden = sensitive_values(&req.args, &schema);
            scrub(
                &mut o,
                &hidden.iter().map(String::as_str).collect::<Vec<_>>(),
            );
            outcome["output"] = o;
        }
        if let Some(e) = &resp.error {
            outcome["error"] = json!(e);
        }
        if let Some(a) = &resp.approval {
            outcome["approval_id"] = json!(a.id);
        }
        self.audit.append(
            self.event(ctx, &call_id, req.task_id.as_deref(), AuditKind::Outcome)
                .payload(outcome),
        )?;
        Ok(resp)
    }

    async fn gate_and_run(
        &self,
        ctx: &CallContext,
        call_id: &str,
        req: &CallRequest,
        cap: Option<Capability>,
        args_hash: &str,
        decision: &DecisionRecord,
    ) -> Result<CallResponse, GovernError> {
        let with_policies = |mut r: CallResponse| {
            r.policies = decision.policies.clone();
            r
        };
        let cap = match (cap, decision.effect) {
            (_, DecisionEffect::Forbid) | (None, _) => {
                let message = if decision.reasons.is_empty() {
                    format!("{} is not permitted", req.capability)
                } else {
                    decision.reasons.join("; ")
                };
                return Ok(with_policies(deny(
                    call_id,
                    &decision_code(decision),
                    message,
                )));
            }
            (Some(cap), _) => cap,
        };
        let Some(target) = cap.target.clone() else {
            return Ok(deny(
                call_id,
                "not_a_capability",
                format!(
                    "{} is a builtin sandbox tool: call it over MCP or its /v1/sandboxes route",
                    cap.name
                ),
            ));
        };
        let needs_key = cap.idempotency_key_required || cap.side_effect != SideEffect::ReadOnly;
        let key = req.idempotency_key.as_deref().filter(|k| !k.is_empty());
        if needs_key && key.is_none() {
            return Ok(deny(
                call_id,
                "idempotency_key_required",
                format!(
                    "{} is {}: send an idempotency_key (any unique string; repeat it to retry \
                     safely)",
                    cap.name,
                    cap.side_effect.as_str()
                ),
            ));
        }
        // The key's state first: a finished call is replayed (no new approval), a key
        // used with other arguments is refused before an operator is asked.
        if let Some(k) = key {
            if let Some(r) = self.peek_key(call_id, ctx, &cap.name, k, args_hash)? {
                if req.approval_id.is_none() || r.status == CallStatus::Denied {
                    return Ok(r);
                }
            }
        }
        let mut approval = None;
        if decision.effect == DecisionEffect::NeedsApproval {
            match self
                .approve(ctx, call_id, req, &cap, args_hash, decision)
                .await?
            {
                Ok(a) => approval = Some(a),
                Err(r) => return Ok(with_policies(r)),
            }
        }
        let claimed = match key {
            None => false,
            Some(k) => match self.claim(ctx, call_id, &cap.name, k, args_hash).await? {
                None => true,
                Some(r) => return Ok(r),
            },
        };
        let resp = self.run_target(ctx, call_id, req, &cap, target).await;
        let mut resp = match resp {
            Ok(r) => r,
            Err(r) => {
                // Nothing ran: the key may be retried.
                if let (true, Some(k)) = (claimed, key) {
                    self.idem.release(&ctx.tenant, &cap.name, k)?;
                }
                return Ok(with_policies(r));
            }
        };
        resp.approval = approval;
        resp.policies = decision.policies.clone();
        if let (true, Some(k)) = (claimed, key) {
            let stored = serde_json::to_value(&resp).unwrap_or(Value::Null);
            self.idem.finish(&ctx.tenant, &cap.name, k, &stored)?;
        }
        Ok(resp)
    }

    /// A finished or conflicting key's answer, without claiming it.
    fn peek_key(
        &self,
        call_id: &str,
        ctx: &CallContext,
        cap: &str,
        key: &str,
        args_hash: &str,
    ) -> Result<Option<CallResponse>, GovernError> {
        match self.idem.peek(&ctx.tenant, cap, key, args_hash)? {
            Some(Claim::Done(v)) => Ok(Some(replay(v, call_id))),
            Some(Claim::Conflict(_)) => Ok(Some(conflict(call_id, key))),
            Some(Claim::Running | Claim::Claimed) | None => Ok(None),
        }
    }

    async fn claim(
        &self,
        ctx: &CallContext,
        call_id: &str,
        cap: &str,
        key: &str,
        args_hash: &str,
    ) -> Result<Option<CallResponse>, GovernError> {
        let deadline = Instant::now() + self.cfg.idempotency_wait;
        loop {
            match self.idem.claim(&ctx.tenant, cap, key, args_hash)? {
                Claim::Claimed => return Ok(None),
                Claim::Done(v) => return Ok(Some(replay(v, call_id))),
                Claim::Conflict(_) => return Ok(Some(conflict(call_id, key))),
                Claim::Running if Instant::now() >= deadline => {
                    let mut r = deny(
                        call_id,
                        "in_progress",
                        format!("a call with idempotency key {key:?} is still running; ask again"),
                    );
                    r.status = CallStatus::InProgress;
                    return Ok(Some(r));
                }
                Claim::Running => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The approval step: `Ok(approval used)` to go on, `Err(answer)` to stop here.
    async fn approve(
        &self,
        ctx: &CallContext,
        call_id: &str,
        req: &CallRequest,
        cap: &Capability,
        args_hash: &str,
        decision: &DecisionRecord,
    ) -> Result<Result<Approval, CallResponse>, GovernError> {
        self.sweep()?;
        let task = req.task_id.as_deref();
        let existing = match &req.approval_id {
            Some(id) => {
                // An explicit id must be this call's: consume checks tenant,
                // capability and arguments.
                return match self
                    .approvals
                    .consume(&ctx.tenant, id, &cap.name, args_hash)
                {
                    Ok(a) => Ok(Ok(a)),
                    Err(e) => match approval_refusal(call_id, &e) {
                        Some(r) => Ok(Err(r)),
                        None => Err(e.into()),
                    },
                };
            }
            None => self.approvals.find_for_call(
                &ctx.tenant,
                &ctx.agent,
                &cap.name,
                args_hash,
                req.idempotency_key.as_deref(),
            )?,
        };
        let a = match existing {
            Some(a) => a,
            None => {
                let a = self.approvals.create(NewApproval {
                    tenant: ctx.tenant.clone(),
                    agent: ctx.agent.clone(),
                    task_id: req.task_id.clone(),
                    capability: cap.name.clone(),
                    side_effect: cap.side_effect,
                    args_redacted: redact_args(&req.args, &cap.input_schema),
                    args_sha256: args_hash.to_string(),
                    idempotency_key: req.idempotency_key.clone(),
                    policies: decision.policies.clone(),
                })?;
                self.audit.append(
                    approval_event(&a)
                        .correlation(call_id)
                        .task(task.map(String::from)),
                )?;
                a
            }
        };
        let a = if a.status == ApprovalStatus::Pending {
            let wait = Duration::from_secs(req.wait_s.unwrap_or(0)).min(self.cfg.approval_wait_max);
            let a = self
                .approvals
                .wait_decided(&ctx.tenant, &a.id, wait)
                .await?;
            self.sweep()?;
            a
        } else {
            a
        };
        match a.status {
            ApprovalStatus::Approved => {
                match self
                    .approvals
                    .consume(&ctx.tenant, &a.id, &cap.name, args_hash)
                {
                    Ok(a) => Ok(Ok(a)),
                    Err(e) => match approval_refusal(call_id, &e) {
                        Some(r) => Ok(Err(r)),
                        None => Err(e.into()),
                    },
                }
            }
            ApprovalStatus::Pending => {
                let mut r = pending(call_id, &a);
                r.approval = Some(a);
                Ok(Err(r))
            }
            ApprovalStatus::Denied => Ok(Err(deny(call_id, "approval_denied", denied_message(&a)))),
            ApprovalStatus::Expired => {
                Ok(Err(deny(call_id, "approval_expired", expired_message(&a))))
            }
            ApprovalStatus::Used => Ok(Err(deny(
                call_id,
                "approval_used",
                format!(
                    "approval {} was already used; an approval runs one call",
                    a.id
                ),
            ))),
        }
    }

    async fn run_target(
        &self,
        ctx: &CallContext,
        call_id: &str,
        req: &CallRequest,
        cap: &Capability,
        target: corral_types::api::CapabilityTarget,
    ) -> Result<CallResponse, CallResponse> {
        let (treq, secret_name) = crate::render::render(&target, &req.args)
            .map_err(|m| deny(call_id, "invalid_arguments", m))?;
        let secret = match secret_name {
            None => None,
            Some(name) => match self.secrets.secret(&ctx.tenant, &name, target_host(&treq)) {
                Ok(Some(s)) => Some(s),
                Ok(None) => {
                    return Err(deny(
                        call_id,
                        "secret_missing",
                        format!(
                            "capability {} needs secret {name:?}, which tenant {} does not \
                             have for this target's host; an admin must add it (`corral \
                             secret`)",
                            cap.name, ctx.tenant
                        ),
                    ))
                }
                Err(e) => {
                    return Err(deny(
                        call_id,
                        "secret_unavailable",
                        format!("secret {name:?} could not be read: {e}"),
                    ))
                }
            },
        };
        let secrets: Vec<&str> = secret.iter().map(|s| s.0.as_str()).collect();
        match self.runner.run(&ctx.tenant, treq, secret.as_ref()).await {
            Ok(mut out) => {
                scrub(&mut out.output, &secrets);
                self.policy
                    .record_call(&ctx.tenant, req.task_id.as_deref(), out.cpu_ms);
                let mut r = CallResponse {
                    call_id: call_id.to_string(),
                    status: if out.success {
                        CallStatus::Completed
                    } else {
                        CallStatus::Failed
                    },
                    output: Some(out.output),
                    replayed: false,
                    approval: None,
                    error: None,
                    policies: Vec::new(),
                };
                if !out.success {
                    r.error = Some(CallError {
                        code: "target_failed".into(),
                        message: format!("{} ran and reported a failure; see output", cap.name),
                        pointer: None,
                    });
                }
                Ok(r)
            }
            Err(mut message) => {
                for s in &secrets {
                    message = message.replace(s, crate::redact::REDACTED);
                }
                // It may have run partly (a request sent, the answer lost): counted,
                // and the key is kept.
                self.policy
                    .record_call(&ctx.tenant, req.task_id.as_deref(), 0);
                Ok(CallResponse {
                    call_id: call_id.to_string(),
                    status: CallStatus::Failed,
                    output: None,
                    replayed: false,
                    approval: None,
                    error: Some(CallError {
                        code: "target_failed".into(),
                        message: format!("{} could not complete: {message}", cap.name),
                        pointer: None,
                    }),
                    policies: Vec::new(),
                })
            }
        }
    }

    /// Checks a builtin sandbox tool call (create_sandbox, exec_command, ...) against
    /// kill switches, budgets and policy, and records the call and decision. The
    /// stricter of `side_effect` and the catalog's class is the one that counts.
    /// Approvals work as for capabilities (the agent repeats the call once approved).
    pub async fn authorize_builtin(
        &self,
        ctx: &CallContext,
        tool: &str,
        side_effect: SideEffect,
        args: &Value,
        task_id: Option<&str>,
    ) -> Result<BuiltinAuth, GovernError> {
        let call_id = random_id("call-").map_err(GovernError::Random)?;
        let mut cap = self.policy.capability(tool).unwrap_or(Capability {
            name: tool.to_string(),
            description: String::new(),
            input_schema: Value::Null,
            side_effect,
            category: "sandbox".into(),
            idempotency_key_required: false,
            compensation: None,
            target: None,
        });
        cap.side_effect = cap.side_effect.max(side_effect);
        let args_hash = sha256_hex(args);
        let (decision, _) = self
            .policy
            .decide(&ctx.tenant, &ctx.agent, task_id, tool, args);
        self.audit.append_all(&[
            self.event(ctx, &call_id, task_id, AuditKind::ToolCall)
                .payload(json!({
                    "tool": tool,
                    "builtin": true,
                    "side_effect": cap.side_effect,
                    "args": redact_args(args, &cap.input_schema),
                    "args_sha256": args_hash,
                })),
            self.event(ctx, &call_id, task_id, AuditKind::Decision)
                .payload(json!({ "tool": tool, "decision": decision })),
        ])?;
        let refused = |r: CallResponse| -> Result<BuiltinAuth, GovernError> {
            self.audit.append(
                self.event(ctx, &call_id, task_id, AuditKind::Outcome)
                    .payload(json!({ "tool": tool, "status": r.status, "error": r.error })),
            )?;
            Ok(BuiltinAuth::Refused(Box::new(r)))
        };
        match decision.effect {
            DecisionEffect::Forbid => {
                let message = decision.reasons.join("; ");
                let mut r = deny(&call_id, &decision_code(&decision), message);
                r.policies = decision.policies.clone();
                refused(r)
            }
            DecisionEffect::Permit => {
                self.policy.record_call(&ctx.tenant, task_id, 0);
                Ok(BuiltinAuth::Allowed { call_id })
            }
            DecisionEffect::NeedsApproval => {
                let req = CallRequest {
                    capability: tool.to_string(),
                    args: args.clone(),
                    task_id: task_id.map(String::from),
                    idempotency_key: None,
                    approval_id: None,
                    wait_s: None,
                };
                match self
                    .approve(ctx, &call_id, &req, &cap, &args_hash, &decision)
                    .await?
                {
                    Ok(_) => {
                        self.policy.record_call(&ctx.tenant, task_id, 0);
                        Ok(BuiltinAuth::Allowed { call_id })
                    }
                    Err(r) => refused(r),
                }
            }
        }
    }

    /// Records how an allowed builtin call ended (`Ok(result)`, redacted here, or
    /// `Err(message)`).
    pub fn record_builtin_outcome(
        &self,
        ctx: &CallContext,
        call_id: &str,
        tool: &str,
        task_id: Option<&str>,
        result: Result<&Value, &str>,
    ) -> Result<(), GovernError> {
        let payload = match result {
            Ok(v) => {
                json!({"tool": tool, "status": "completed", "output": redact_args(v, &Value::Null)})
            }
            Err(m) => json!({"tool": tool, "status": "failed", "error": m}),
        };
        self.audit.append(
            self.event(ctx, call_id, task_id, AuditKind::Outcome)
                .payload(payload),
        )?;
        Ok(())
    }

    fn event(
        &self,
        ctx: &CallContext,
        call_id: &str,
        task_id: Option<&str>,
        kind: AuditKind,
    ) -> AuditEvent {
        AuditEvent {
            kind,
            tenant: ctx.tenant.clone(),
            agent: Some(ctx.agent.clone()),
            task_id: task_id.map(String::from),
            correlation_id: Some(call_id.to_string()),
            trace_id: ctx.trace_id.clone(),
            payload: Value::Null,
        }
    }
}

impl AuditEvent {
    fn payload(mut self, payload: Value) -> AuditEvent {
        self.payload = payload;
        self
    }
}

/// The policy core as the pipeline's policy point.
#[derive(Debug)]
struct CorePoint(Arc<PolicyCore>);

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
struct AuditHook(Arc<AuditLog>);

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

/// The host an HTTP target goes to (`""` for a sandbox).
fn target_host(req: &TargetRequest) -> &str {
    match req {
        TargetRequest::Http { url, .. } => {
            let rest = url.split_once("://").map_or("", |(_, r)| r);
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => authority.split(':').next().unwrap_or(""),
            }
        }
        TargetRequest::Sandbox { .. } => "",
    }
}

fn replay(stored: Value, call_id: &str) -> CallResponse {
    match serde_json::from_value::<CallResponse>(stored) {
        Ok(mut r) => {
            r.replayed = true;
            r
        }
        Err(_) => deny(
            call_id,
            "idempotency_unreadable",
            "the stored result of this idempotency key is unreadable; use a new key",
        ),
    }
}

fn conflict(call_id: &str, key: &str) -> CallResponse {
    deny(
        call_id,
        "idempotency_conflict",
        format!(
            "idempotency key {key:?} was already used with other arguments; use a new key for \
             a different call"
        ),
    )
}

fn pending(call_id: &str, a: &Approval) -> CallResponse {
    CallResponse {
        call_id: a.id.clone(),
        status: CallStatus::PendingApproval,
        output: None,
        replayed: false,
        approval: None,
        error: Some(CallError {
            code: "approval_pending".into(),
            message: format!(
                "{} needs an operator's approval (request {}, expires {}); poll GET \
                 /v1/calls/{} and repeat the call with the same arguments and key once \
                 approved (call {call_id})",
                a.capability, a.id, a.expires_at, a.id
            ),
            pointer: None,
        }),
        policies: a.policies.clone(),
    }
}

fn denied_message(a: &Approval) -> String {
    format!(
        "approval {} was denied by {}{}",
        a.id,
        a.decided_by.as_deref().unwrap_or("an operator"),
        a.reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    )
}

fn expired_message(a: &Approval) -> String {
    format!(
        "approval {} expired undecided at {}; an expiry is a denial (call again with a new \
         idempotency key to ask again)",
        a.id, a.expires_at
    )
}

fn approval_event(a: &Approval) -> AuditEvent {
    let kind = match a.status {
        ApprovalStatus::Pending => AuditKind::ApprovalRequested,
        ApprovalStatus::Approved | ApprovalStatus::Used => AuditKind::ApprovalApproved,
        ApprovalStatus::Denied => AuditKind::ApprovalDenied,
        ApprovalStatus::Expired => AuditKind::ApprovalExpired,
    };
    AuditEvent {
        kind,
        tenant: a.tenant.clone(),
        agent: Some(match (&a.status, &a.decided_by) {
            (ApprovalStatus::Pending, _) | (_, None) => a.agent.clone(),
            (_, Some(by)) => format!("operator:{by}"),
        }),
        task_id: a.task_id.clone(),
        correlation_id: Some(a.id.clone()),
        trace_id: None,
        payload: json!({
            "approval_id": a.id,
            "capability": a.capability,
            "side_effect": a.side_effect,
            "args": a.args,
            "args_sha256": a.args_sha256,
            "idempotency_key": a.idempotency_key,
            "policies": a.policies,
            "status": a.status,
            "expires_at": a.expires_at,
            "reason": a.reason,
        }),
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "gateway_bench.rs"]
mod bench;

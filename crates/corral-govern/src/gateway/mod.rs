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
//!
//! Here: the pipeline itself (`call`, its gate and idempotency). Beside it: `seams`
//! (the traits the daemon implements), `approval` (the approval step and the approval
//! API), `target` (running a permitted call's target) and `builtin` (builtin sandbox
//! tools through the same checks).

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_types::api::{
    ApprovalStatus, AuditKind, CallError, CallRequest, CallResponse, CallStatus, Capability,
    DecisionEffect, DecisionRecord, SideEffect,
};
use serde_json::{json, Value};

use crate::approvals::{random_id, ApprovalError, Approvals};
use crate::audit::{sha256_hex, AuditError, AuditEvent, AuditLog, AuditSink};
use crate::core::PolicyCore;
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

mod approval;
mod builtin;
mod seams;
mod target;

use approval::{approval_event, denied_message, expired_message, pending};
use seams::{AuditHook, CorePoint};
pub use seams::{
    BoxFuture, NoSecrets, PolicyPoint, Secret, SecretSource, TargetOutput, TargetRequest,
    TargetRunner,
};

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

    pub(super) fn event(
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
    pub(super) fn payload(mut self, payload: Value) -> AuditEvent {
        self.payload = payload;
        self
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bench;

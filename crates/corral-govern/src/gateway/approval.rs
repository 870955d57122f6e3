//! The approval step of a call, approval requests for the API, and how approvals
//! are answered and recorded.

use std::time::Duration;

use corral_types::api::{
    Approval, ApprovalStatus, AuditKind, CallError, CallRequest, CallResponse, CallStatus,
    Capability, DecisionRecord,
};
use serde_json::json;

use super::{deny, CallContext, GovernError, Governance};
use crate::approvals::{ApprovalError, NewApproval};
use crate::audit::{AuditEvent, AuditSink};
use crate::redact::redact_args;

pub(super) fn approval_refusal(call_id: &str, e: &ApprovalError) -> Option<CallResponse> {
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

    /// The approval step: `Ok(approval used)` to go on, `Err(answer)` to stop here.
    pub(super) async fn approve(
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
}

pub(super) fn pending(call_id: &str, a: &Approval) -> CallResponse {
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

pub(super) fn denied_message(a: &Approval) -> String {
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

pub(super) fn expired_message(a: &Approval) -> String {
    format!(
        "approval {} expired undecided at {}; an expiry is a denial (call again with a new \
         idempotency key to ask again)",
        a.id, a.expires_at
    )
}

pub(super) fn approval_event(a: &Approval) -> AuditEvent {
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

//! Builtin sandbox tools (create_sandbox, exec_command, ...) through the same
//! checks and audit as capabilities.

use corral_types::api::{
    AuditKind, CallRequest, CallResponse, Capability, DecisionEffect, SideEffect,
};
use serde_json::{json, Value};

use super::{decision_code, deny, BuiltinAuth, CallContext, GovernError, Governance};
use crate::approvals::random_id;
use crate::audit::{sha256_hex, AuditSink};
use crate::redact::redact_args;

impl Governance {
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
}

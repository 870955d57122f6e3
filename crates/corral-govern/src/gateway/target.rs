//! Running a permitted call's target, with its secret, and recording the outcome.

use corral_types::api::{CallError, CallRequest, CallResponse, CallStatus, Capability};

use super::{deny, CallContext, Governance, TargetRequest};
use crate::redact::scrub;

impl Governance {
    pub(super) async fn run_target(
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
}

/// The host an HTTP target goes to (`""` for a sandbox).
pub(super) fn target_host(req: &TargetRequest) -> &str {
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

//! Governance at the MCP edge: which tools an agent is shown (the builtins and catalog
//! capabilities it could ever be permitted; kill-switched ones vanish), and every call
//! through corral-govern's pipeline: a builtin is authorized before the Manager runs
//! it and its outcome recorded after; a capability goes through `Governance::call`.
//! Governance failing is a refusal: nothing runs unrecorded.

use std::sync::Arc;

use corral_govern::{ApprovalError, BuiltinAuth, CallContext, GovernError};
use corral_types::api::{CallRequest, CallResponse, CallStatus, Capability, SideEffect};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde_json::{json, Value};

use super::handler::tool_error;
use super::tools::{annotations, class_meta, Builtin, BUILTINS};
use crate::auth::Caller;
use crate::AppState;

/// The tool that polls a pending call (read-only, the caller's tenant only).
pub(crate) const STATUS_TOOL: &str = "get_call_status";
/// `_meta` keys of tools/call a harness may set.
const META_TASK: &str = "corral/task_id";
const META_KEY: &str = "corral/idempotency_key";
/// The argument a capability's idempotency key travels in (taken out of the
/// arguments before they are validated against the capability's schema).
const ARG_KEY: &str = "idempotency_key";

/// Who calls, for the audit log and policy.
pub(crate) fn context(caller: &Caller, trace_id: Option<String>) -> CallContext {
    CallContext {
        tenant: caller.tenant.clone(),
        agent: caller.agent.clone(),
        trace_id,
    }
}

/// A string from the request's `_meta`.
pub(crate) fn meta_str(meta: Option<&JsonObject>, key: &str) -> Option<String> {
    meta.and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

pub(crate) fn task_id(meta: Option<&JsonObject>) -> Option<String> {
    meta_str(meta, META_TASK)
}

/// tools/list for `caller`.
pub(crate) fn visible_tools(st: &AppState, caller: &Caller) -> Vec<Tool> {
    let (tenant, agent) = (caller.tenant.as_str(), caller.agent.as_str());
    let mut out: Vec<Tool> = BUILTINS
        .into_iter()
        .filter(|b| st.policy.visible(tenant, agent, b.name()))
        .map(Builtin::tool)
        .collect();
    for entry in st.policy.visible_capabilities(tenant, agent) {
        let cap = &entry.capability;
        if entry.builtin || Builtin::from_name(&cap.name).is_some() || cap.name == STATUS_TOOL {
            continue;
        }
        out.push(capability_tool(cap));
    }
    out.push(status_tool());
    out
}

/// A catalog capability as an MCP tool: its schema plus the idempotency key argument
/// (required where governance requires it), hints from its class.
fn capability_tool(cap: &Capability) -> Tool {
    let mut schema = match &cap.input_schema {
        Value::Object(o) => o.clone(),
        _ => JsonObject::new(),
    };
    schema.insert("type".into(), "object".into());
    let needs_key = cap.idempotency_key_required || cap.side_effect != SideEffect::ReadOnly;
    let props = schema.entry("properties").or_insert_with(|| json!({}));
    if let Some(props) = props.as_object_mut() {
        props.entry(ARG_KEY).or_insert_with(|| {
            json!({
                "type": "string",
                "description": "Any unique string for this action; repeat it (with the same \
                                arguments) to retry safely or to run the call once approved."
            })
        });
    }
    if needs_key {
        let req = schema.entry("required").or_insert_with(|| json!([]));
        if let Some(req) = req.as_array_mut() {
            if !req.iter().any(|r| r == ARG_KEY) {
                req.push(ARG_KEY.into());
            }
        }
    }
    Tool::new(cap.name.clone(), cap.description.clone(), Arc::new(schema))
        .with_annotations(annotations(cap.side_effect, false))
        .with_meta(class_meta(cap.side_effect))
}

fn status_tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {"id": {
            "type": "string",
            "description": "The approval id a pending call answered with."
        }},
        "required": ["id"],
        "additionalProperties": false
    });
    let schema = schema.as_object().cloned().unwrap_or_default();
    Tool::new(
        STATUS_TOOL,
        "Where a call that needed approval stands: pending_approval, approved (repeat the \
         call with the same arguments and idempotency_key to run it), denied, expired, or \
         its result once it ran.",
        Arc::new(schema),
    )
    .with_annotations(annotations(SideEffect::ReadOnly, false))
    .with_meta(class_meta(SideEffect::ReadOnly))
}

/// What governance says about a builtin call.
pub(crate) enum Gate {
    /// Run it, then [`record`] the outcome under this call id.
    Run(String),
    /// Do not run it; give the agent this.
    Refused(CallToolResult),
}

pub(crate) async fn authorize(
    st: &AppState,
    ctx: &CallContext,
    tool: Builtin,
    args: &JsonObject,
    task_id: Option<&str>,
) -> Gate {
    let args = Value::Object(args.clone());
    match st
        .govern
        .authorize_builtin(ctx, tool.name(), tool.side_effect(), &args, task_id)
        .await
    {
        Ok(BuiltinAuth::Allowed { call_id }) => Gate::Run(call_id),
        Ok(BuiltinAuth::Refused(r)) => Gate::Refused(call_result(&r)),
        Err(e) => Gate::Refused(governance_failed(&e)),
    }
}

/// Records how an authorized builtin call ended. The action already happened, so a
/// failure to record is logged, not answered.
pub(crate) fn record(
    st: &AppState,
    ctx: &CallContext,
    call_id: &str,
    tool: Builtin,
    task_id: Option<&str>,
    result: &CallToolResult,
) {
    let outcome = if result.is_error == Some(true) {
        let text = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
            .collect::<Vec<_>>()
            .join("\n");
        Err(text)
    } else {
        Ok(result.structured_content.clone().unwrap_or(Value::Null))
    };
    let r = st.govern.record_builtin_outcome(
        ctx,
        call_id,
        tool.name(),
        task_id,
        outcome.as_ref().map_err(String::as_str),
    );
    if let Err(e) = r {
        eprintln!("corral: cannot record the outcome of MCP call {call_id}: {e}");
    }
}

/// A catalog capability through the whole pipeline.
pub(crate) async fn call_capability(
    st: &AppState,
    ctx: &CallContext,
    name: &str,
    mut args: JsonObject,
    meta: Option<&JsonObject>,
) -> CallToolResult {
    let key = match args.remove(ARG_KEY) {
        Some(Value::String(k)) => Some(k),
        Some(_) => return tool_error("invalid_arguments", "idempotency_key must be a string"),
        None => meta_str(meta, META_KEY),
    };
    let req = CallRequest {
        capability: name.to_string(),
        args: Value::Object(args),
        task_id: task_id(meta),
        idempotency_key: key,
        approval_id: None,
        wait_s: None,
    };
    match st.govern.call(ctx, req).await {
        Ok(r) => call_result(&r),
        Err(e) => governance_failed(&e),
    }
}

/// `get_call_status`.
pub(crate) fn call_status(st: &AppState, ctx: &CallContext, id: &str) -> CallToolResult {
    match st.govern.call_status(ctx, id) {
        Ok(r) => call_result(&r),
        Err(GovernError::Approval(ApprovalError::NotFound(_))) => tool_error(
            "not_found",
            &format!("no approval request or pending call {id} in your tenant"),
        ),
        Err(e) => governance_failed(&e),
    }
}

/// A pipeline answer as a tool result: completed → success with the output; pending
/// or approved → not an error, with what to do next; denied or failed → a tool error
/// with the code and reason. The whole answer is the structured content.
pub(crate) fn call_result(r: &CallResponse) -> CallToolResult {
    let structured = serde_json::to_value(r).unwrap_or(Value::Null);
    let why = r
        .error
        .as_ref()
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or_default();
    let (text, is_error) = match r.status {
        CallStatus::Completed => {
            let out = r.output.as_ref().map(Value::to_string).unwrap_or_default();
            let replay = if r.replayed {
                " (replayed: the first result for this idempotency key)"
            } else {
                ""
            };
            (format!("completed{replay}: {out}"), false)
        }
        CallStatus::PendingApproval => (
            format!(
                "pending approval {}: {why}. Poll {STATUS_TOOL} with this id.",
                r.call_id
            ),
            false,
        ),
        CallStatus::Approved => (
            format!(
                "approved ({}): repeat the call with the same arguments and idempotency_key \
                 to run it",
                r.call_id
            ),
            false,
        ),
        CallStatus::InProgress => (
            format!("in progress ({}): ask again shortly", r.call_id),
            false,
        ),
        CallStatus::Denied | CallStatus::Failed => (why, true),
    };
    let mut out = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    out.structured_content = Some(structured);
    out
}

/// Governance itself failed (its store, its audit log): the call did not run.
fn governance_failed(e: &GovernError) -> CallToolResult {
    eprintln!("corral: governance failed on an MCP call: {e}");
    tool_error(
        "unavailable",
        "corral's governance could not check or record this call, so it did not run; the \
         daemon's log has the cause",
    )
}

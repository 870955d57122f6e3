//! Governance evidence and calls over HTTP: approvals (`/v1/approvals`), the audit log
//! (`/v1/audit`) and capability calls (`/v1/calls`). Handlers parse; `Governance`
//! executes.
//!
//! Who may do what: any key may call capabilities and poll its tenant's calls;
//! operators and admins list and decide approvals and read the audit log of their
//! tenant; admins see every tenant and verify the whole chain.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use corral_govern::{
    ApprovalError, AuditQuery, CallContext, GovernConfig, GovernError, Governance, PolicyConfig,
    PolicyCore,
};
use corral_sandbox::Manager;
use corral_types::api::{
    Approval, ApprovalDecisionRequest, ApprovalList, ApprovalStatus, AuditList,
    AuditVerifyResponse, CallRequest, CallResponse, CallStatus, Role, PAGE_DEFAULT,
};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::govern_runner::{DaemonRunner, StoreSecrets};
use crate::sandboxes::parse_limit;
use crate::AppState;

/// How often overdue approvals are expired and old idempotency records pruned.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// What [`open`] makes: the policy core, the pipeline, and the runner it uses (which
/// needs the daemon's state once it exists).
pub(crate) type Opened = (Arc<PolicyCore>, Arc<Governance>, Arc<DaemonRunner>);

/// Governance of a daemon: the policy core, the pipeline and the runner it uses.
pub(crate) fn open(data_dir: &std::path::Path, manager: &Arc<Manager>) -> Result<Opened, String> {
    let core = PolicyCore::open(data_dir, PolicyConfig::default())
        .map_err(|e| format!("governance policy: {e}"))?;
    core.spawn_catalog_watcher();
    let runner = Arc::new(DaemonRunner::new(manager.clone()));
    let gov = Governance::open(
        data_dir,
        GovernConfig::default(),
        core.clone(),
        runner.clone(),
        Arc::new(StoreSecrets(manager.clone())),
    )
    .map_err(|e| format!("governance: {e}"))?;
    Ok((core, Arc::new(gov), runner))
}

/// Records a sandbox lifecycle event (after the Manager's call succeeded or failed).
/// A failure to record is logged: the action already happened and stands.
pub(crate) fn record_lifecycle(
    st: &AppState,
    caller: &Caller,
    action: &str,
    sandbox_id: &str,
    result: Result<(), &str>,
) {
    let payload = match result {
        Ok(()) => serde_json::json!({"action": action, "sandbox_id": sandbox_id, "ok": true}),
        Err(e) => {
            serde_json::json!({"action": action, "sandbox_id": sandbox_id, "ok": false, "error": e})
        }
    };
    let ev = corral_govern::AuditEvent::new(
        corral_types::api::AuditKind::SandboxLifecycle,
        caller.tenant.clone(),
        payload,
    )
    .agent(caller.agent.clone());
    if let Err(e) = corral_govern::AuditSink::append(st.govern.audit().as_ref(), ev) {
        eprintln!("corral: audit: cannot record {action} of {sandbox_id}: {e}");
    }
}

/// Records every egress decision of mode allow (allowed or denied, with the deciding
/// rule and bytes; credential-broker alerts are denied records) in the audit log, from
/// the proxy's record stream, on a thread of its own so a burst never stalls the
/// runtime. Records the stream dropped because the log fell behind are themselves
/// recorded (with how many), so the trail shows the gap instead of hiding it.
pub(crate) fn spawn_egress_recorder(manager: &Manager, gov: &Arc<Governance>) {
    let Some(proxy) = manager.egress_proxy() else {
        return;
    };
    let mut rx = proxy.subscribe();
    let audit = gov.audit().clone();
    let spawned = std::thread::Builder::new()
        // A vital thread: a panic on it stops the process (crates/corral/src/panics.rs).
        .name("corral-egress-audit".into())
        .spawn(move || loop {
            use tokio::sync::broadcast::error::RecvError;
            let ev = match rx.blocking_recv() {
                Ok(r) => corral_govern::AuditEvent::new(
                    corral_types::api::AuditKind::Egress,
                    r.tenant.clone(),
                    serde_json::json!({
                        "sandbox_id": r.sandbox,
                        "host": r.host,
                        "port": r.port,
                        "via": r.via.as_str(),
                        "method": r.method,
                        "path": r.path,
                        "bytes_up": r.bytes_up,
                        "bytes_down": r.bytes_down,
                        "allowed": r.allowed,
                        "rule": r.rule,
                        "reason": r.reason,
                    }),
                )
                .agent("corral"),
                Err(RecvError::Lagged(n)) => corral_govern::AuditEvent::new(
                    corral_types::api::AuditKind::Egress,
                    "",
                    serde_json::json!({"records_lost": n, "why": "the audit log fell behind the egress proxy"}),
                )
                .agent("corral"),
                Err(RecvError::Closed) => return,
            };
            if let Err(e) = corral_govern::AuditSink::append(audit.as_ref(), ev) {
                eprintln!("corral: audit: cannot record an egress decision: {e}");
            }
        });
    if let Err(e) = spawned {
        eprintln!("corral: warning: egress decisions are not audited: {e}");
    }
}

/// Expires overdue approvals (a denial, recorded) while the daemon runs.
pub(crate) fn spawn_sweeper(gov: &Arc<Governance>) {
    let weak: Weak<Governance> = Arc::downgrade(gov);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let Some(gov) = weak.upgrade() else { return };
            if let Err(e) = gov.sweep().and_then(|()| gov.prune().map(|_| ())) {
                eprintln!("corral: governance sweep: {e}");
            }
        }
    });
}

impl From<GovernError> for ApiError {
    fn from(e: GovernError) -> Self {
        match e {
            GovernError::Approval(ApprovalError::NotFound(id)) => ApiError::not_found(format!(
                "no approval request or pending call {id} in your tenant"
            )),
            GovernError::Approval(e @ ApprovalError::NotPending { .. }) => {
                ApiError::conflict(e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

fn ctx(caller: &Caller, headers: &HeaderMap) -> CallContext {
    CallContext {
        tenant: caller.tenant.clone(),
        agent: caller.agent.clone(),
        trace_id: trace_id(headers),
    }
}

/// The trace id of a W3C `traceparent` header (`00-TRACEID-SPANID-FLAGS`).
fn trace_id(headers: &HeaderMap) -> Option<String> {
    let tp = headers.get("traceparent")?.to_str().ok()?;
    let id = tp.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The tenant scope of an operator route: an admin's is every tenant (None), an
/// operator's its own; agents are refused.
fn operator_scope(caller: &Caller) -> ApiResult<Option<String>> {
    match caller.role {
        Role::Admin => Ok(None),
        Role::Operator => Ok(Some(caller.tenant.clone())),
        Role::Agent => Err(ApiError::forbidden(
            "this route needs an operator or admin key of the tenant",
        )),
    }
}

fn status_code(r: &CallResponse) -> StatusCode {
    match r.status {
        CallStatus::Completed | CallStatus::Failed => StatusCode::OK,
        CallStatus::PendingApproval | CallStatus::Approved | CallStatus::InProgress => {
            StatusCode::ACCEPTED
        }
        CallStatus::Denied => StatusCode::FORBIDDEN,
    }
}

/// `POST /v1/calls`.
pub(crate) async fn call(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(req): Json<CallRequest>,
) -> ApiResult<Response> {
    if req.capability.is_empty() {
        return Err(ApiError::bad_request(
            "capability is empty; GET /v1/capabilities lists them",
        ));
    }
    let r = st.govern.call(&ctx(&caller, &headers), req).await?;
    Ok((status_code(&r), Json(r)).into_response())
}

/// `GET /v1/calls/{id}`: a pending call's state, by the approval id it answered.
pub(crate) async fn get_call(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<CallResponse>> {
    Ok(Json(st.govern.call_status(&ctx(&caller, &headers), &id)?))
}

/// `GET /v1/approvals?status=&limit=`.
pub(crate) async fn list_approvals(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<ApprovalList>> {
    let scope = operator_scope(&caller)?;
    let (mut status, mut limit) = (None, PAGE_DEFAULT);
    for (k, v) in &pairs {
        match k.as_str() {
            "status" => {
                status = Some(ApprovalStatus::parse(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown status {v:?}: one of pending, approved, denied, expired, used"
                    ))
                })?)
            }
            "limit" => limit = parse_limit(v)?,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?}: use status, limit"
                )))
            }
        }
    }
    Ok(Json(ApprovalList {
        approvals: st.govern.approvals(scope.as_deref(), status, limit)?,
    }))
}

/// `GET /v1/approvals/{id}`.
pub(crate) async fn get_approval(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Approval>> {
    let scope = operator_scope(&caller)?;
    Ok(Json(st.govern.approval(scope.as_deref(), &id)?))
}

fn decision_body(body: &Bytes) -> ApiResult<ApprovalDecisionRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ApprovalDecisionRequest::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

async fn decide(
    st: &AppState,
    caller: &Caller,
    id: &str,
    approve: bool,
    body: &Bytes,
) -> ApiResult<Json<Approval>> {
    let scope = operator_scope(caller)?;
    let req = decision_body(body)?;
    if req.reason.as_ref().is_some_and(|r| r.len() > 1000) {
        return Err(ApiError::bad_request("reason is over 1000 bytes"));
    }
    let a = st.govern.decide_approval(
        scope.as_deref(),
        id,
        approve,
        &caller.agent,
        req.reason.as_deref(),
    )?;
    Ok(Json(a))
}

/// `POST /v1/approvals/{id}/approve`.
pub(crate) async fn approve(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Approval>> {
    decide(&st, &caller, &id, true, &body).await
}

/// `POST /v1/approvals/{id}/deny`.
pub(crate) async fn deny(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Approval>> {
    decide(&st, &caller, &id, false, &body).await
}

/// `GET /v1/audit?task=&tenant=&since=&cursor=&limit=`.
pub(crate) async fn list_audit(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<AuditList>> {
    let scope = operator_scope(&caller)?;
    let mut q = AuditQuery {
        tenant: scope.clone(),
        limit: PAGE_DEFAULT,
        ..AuditQuery::default()
    };
    for (k, v) in &pairs {
        match k.as_str() {
            "task" => q.task_id = Some(v.clone()),
            "tenant" => match &scope {
                Some(own) if own != v => {
                    return Err(ApiError::forbidden(
                        "an operator reads its own tenant's audit log only",
                    ))
                }
                _ => q.tenant = Some(v.clone()),
            },
            "since" => q.since = Some(v.clone()),
            "cursor" => {
                q.after_seq = Some(v.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid cursor {v:?}: use next_cursor"))
                })?)
            }
            "limit" => q.limit = parse_limit(v)?,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?}: use task, tenant, since, cursor, limit"
                )))
            }
        }
    }
    let gov = st.govern.clone();
    let list = tokio::task::spawn_blocking(move || gov.audit().list(&q))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(list))
}

/// `GET /v1/audit/export?task=ID`: the task's whole trail as JSON lines.
pub(crate) async fn export_audit(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let scope = operator_scope(&caller)?;
    let task = match pairs.as_slice() {
        [(k, v)] if k == "task" && !v.is_empty() => v.clone(),
        _ => return Err(ApiError::bad_request("give exactly one parameter: task=ID")),
    };
    let gov = st.govern.clone();
    let body = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        gov.audit()
            .export_task(scope.as_deref(), &task, &mut out)
            .map(|_| out)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `GET /v1/audit/verify` (admin): the whole chain checked.
pub(crate) async fn verify_audit(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<AuditVerifyResponse>> {
    caller.require_admin()?;
    let path = st.govern.audit().path().to_path_buf();
    let r = tokio::task::spawn_blocking(move || corral_govern::verify_file(&path))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(r))
}

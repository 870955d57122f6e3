//! Governance policy routes: the capability catalog, Cedar bundles, kill switches,
//! budgets and plan review. Handlers check the caller's role and call
//! [`corral_govern::PolicyCore`]; a tenant kill switch also pauses the tenant's
//! running sandboxes through the Manager.
//!
//! Roles: catalog and bundle changes are daemon-wide (admin). Operators read bundles,
//! set kill switches and read budgets within their own tenant. Any key lists the
//! capabilities it could be permitted, reviews plans and reports its tasks' tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_govern::{BudgetError, KillSwitchError, PolicyCoreError, PolicyError};
use corral_sandbox::ListQuery;
use corral_types::api::{
    BudgetLimitsRequest, BudgetList, Capability, CapabilityList, KillSwitch, KillSwitchClearQuery,
    KillSwitchList, KillSwitchRequest, KillSwitchScope, KillSwitchSetResponse, PlanRequest,
    PlanResponse, PolicyDiff, PolicyList, PolicyPublishRequest, PolicyVersion, Role, SandboxState,
    ShadowRequest, TaskUsage, TaskUsageRequest,
};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

impl From<PolicyCoreError> for ApiError {
    fn from(e: PolicyCoreError) -> Self {
        use PolicyCoreError as E;
        let msg = e.to_string();
        match &e {
            E::Policy(PolicyError::Parse(_) | PolicyError::Invalid(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_policy", msg)
            }
            E::Catalog(_) | E::BreaksPolicy { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_capability", msg)
            }
            E::Policy(_)
            | E::PlanTooLong(_)
            | E::KillSwitch(KillSwitchError::BadTarget | KillSwitchError::BadAgent)
            | E::Budget(BudgetError::BadPercent | BudgetError::BadTask) => {
                ApiError::bad_request(msg)
            }
            E::NoVersion(_) | E::KillSwitch(KillSwitchError::NotSet { .. }) => {
                ApiError::not_found(msg)
            }
            E::NoRollback => ApiError::conflict(msg),
            E::Store(_)
            | E::KillSwitch(KillSwitchError::Store(_))
            | E::Budget(BudgetError::Store(_))
            | E::CatalogFile { .. }
            | E::Audit(_) => ApiError::internal(msg),
        }
    }
}

fn require_operator(caller: &Caller) -> ApiResult<()> {
    match caller.role {
        Role::Admin | Role::Operator => Ok(()),
        Role::Agent => Err(ApiError::forbidden(
            "this route needs an operator or admin key; create one with `corral key create --role operator`",
        )),
    }
}

// ---- catalog ----

/// `GET /v1/capabilities`: admins and operators see the whole catalog; an agent key
/// sees what it could ever be permitted (what tools/list shows it).
pub(crate) async fn list_capabilities(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<CapabilityList>> {
    let catalog = st.policy.catalog();
    let capabilities = match caller.role {
        Role::Admin | Role::Operator => catalog.entries().map(|e| e.capability.clone()).collect(),
        Role::Agent => st
            .policy
            .visible_capabilities(&caller.tenant, &caller.agent)
            .iter()
            .map(|e| e.capability.clone())
            .collect(),
    };
    Ok(Json(CapabilityList {
        capabilities,
        source: catalog.source.clone(),
    }))
}

pub(crate) async fn get_capability(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Capability>> {
    let not_found = || {
        ApiError::not_found(format!(
            "no capability {name:?}; GET /v1/capabilities lists them"
        ))
    };
    if caller.role == Role::Agent && !st.policy.visible(&caller.tenant, &caller.agent, &name) {
        return Err(not_found());
    }
    let catalog = st.policy.catalog();
    let entry = catalog.get(&name).ok_or_else(not_found)?;
    Ok(Json(entry.capability.clone()))
}

/// `PUT /v1/capabilities/{name}` (admin): add or replace one; applied at once.
pub(crate) async fn put_capability(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(cap): Json<Capability>,
) -> ApiResult<Json<Capability>> {
    caller.require_admin()?;
    if cap.name != name {
        return Err(ApiError::bad_request(format!(
            "the body's name {:?} differs from the path's {name:?}",
            cap.name
        )));
    }
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    let stored = blocking(move || policy.publish_capability(cap, &actor)).await?;
    Ok(Json(stored))
}

// ---- policies ----

pub(crate) async fn publish_policy(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<PolicyPublishRequest>,
) -> ApiResult<(StatusCode, Json<PolicyVersion>)> {
    caller.require_admin()?;
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    let v = blocking(move || {
        policy.publish_policy(
            &req.text,
            req.activate.unwrap_or(true),
            req.note.as_deref(),
            &actor,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

pub(crate) async fn list_policies(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<PolicyList>> {
    require_operator(&caller)?;
    Ok(Json(st.policy.policy_list()?))
}

pub(crate) async fn get_policy(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(version): Path<u64>,
) -> ApiResult<Json<PolicyVersion>> {
    require_operator(&caller)?;
    Ok(Json(st.policy.version(version)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    from: u64,
    to: u64,
}

pub(crate) async fn diff_policies(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<PolicyDiff>> {
    require_operator(&caller)?;
    Ok(Json(st.policy.policy_diff(q.from, q.to)?))
}

pub(crate) async fn rollback_policy(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<PolicyVersion>> {
    caller.require_admin()?;
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    Ok(Json(
        blocking(move || policy.rollback_policy(&actor)).await?,
    ))
}

pub(crate) async fn activate_policy(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(version): Path<u64>,
) -> ApiResult<Json<PolicyVersion>> {
    caller.require_admin()?;
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    Ok(Json(
        blocking(move || policy.activate_policy(version, &actor)).await?,
    ))
}

pub(crate) async fn set_shadow(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<ShadowRequest>,
) -> ApiResult<Json<PolicyList>> {
    caller.require_admin()?;
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    let p = policy.clone();
    blocking(move || policy.set_shadow(Some(req.version), &actor)).await?;
    Ok(Json(p.policy_list()?))
}

pub(crate) async fn clear_shadow(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    blocking(move || policy.set_shadow(None, &actor)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- kill switches ----

/// Operators may stop their own tenant and its agents; capabilities and categories
/// are daemon-wide (admin).
fn may_switch(caller: &Caller, scope: KillSwitchScope, target: &str) -> ApiResult<()> {
    if caller.role == Role::Admin {
        return Ok(());
    }
    require_operator(caller)?;
    let own = match scope {
        KillSwitchScope::Tenant => target == caller.tenant,
        KillSwitchScope::Agent => target
            .split_once('/')
            .is_some_and(|(t, _)| t == caller.tenant),
        KillSwitchScope::Capability | KillSwitchScope::Category => false,
    };
    if own {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "an operator key may stop only its own tenant (scope tenant) or its agents (scope agent, TENANT/AGENT); capability and category switches need an admin key",
        ))
    }
}

pub(crate) async fn list_kill_switches(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<KillSwitchList>> {
    require_operator(&caller)?;
    Ok(Json(KillSwitchList {
        kill_switches: st.policy.kill_switches(),
    }))
}

pub(crate) async fn set_kill_switch(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<KillSwitchRequest>,
) -> ApiResult<Json<KillSwitchSetResponse>> {
    may_switch(&caller, req.scope, &req.target)?;
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    let (scope, target) = (req.scope, req.target.clone());
    let ks: KillSwitch =
        blocking(move || policy.set_kill_switch(scope, &target, req.reason, &actor)).await?;
    let paused_sandboxes = if ks.scope == KillSwitchScope::Tenant {
        pause_tenant(&st, &ks.target).await
    } else {
        Vec::new()
    };
    Ok(Json(KillSwitchSetResponse {
        kill_switch: ks,
        paused_sandboxes,
    }))
}

/// Pauses every running sandbox of `tenant` (isolation mode). A sandbox that cannot be
/// paused is logged and skipped: the kill switch already stops every governed call.
async fn pause_tenant(st: &AppState, tenant: &str) -> Vec<String> {
    let mut paused = Vec::new();
    let mut cursor = None;
    // Bounded: at most 100 pages of 1000.
    for _ in 0..100 {
        let q = ListQuery {
            state: Some(SandboxState::Running),
            cursor: cursor.take(),
            limit: 1000,
            ..ListQuery::default()
        };
        let page = match st.manager.list(tenant, &q) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("corral: kill switch: cannot list tenant {tenant}'s sandboxes: {e}");
                break;
            }
        };
        for sb in &page.sandboxes {
            match st.manager.pause(tenant, &sb.id).await {
                Ok(_) => paused.push(sb.id.clone()),
                Err(e) => eprintln!("corral: kill switch: cannot pause {}: {e}", sb.id),
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    paused
}

pub(crate) async fn clear_kill_switch(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<KillSwitchClearQuery>,
) -> ApiResult<StatusCode> {
    may_switch(&caller, q.scope, &q.target)?;
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    blocking(move || policy.clear_kill_switch(q.scope, &q.target, &actor)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- budgets ----

pub(crate) async fn list_budgets(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<BudgetList>> {
    require_operator(&caller)?;
    let only = (caller.role != Role::Admin).then_some(caller.tenant.as_str());
    Ok(Json(st.policy.budget_list(only)?))
}

/// `PUT /v1/budgets/{tenant}` (admin; `*` is the default for tenants without their
/// own).
pub(crate) async fn put_budget(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
    Json(req): Json<BudgetLimitsRequest>,
) -> ApiResult<Json<BudgetList>> {
    caller.require_admin()?;
    let policy = st.policy.clone();
    let actor = caller.key_id.clone();
    let t = tenant.clone();
    blocking(move || policy.set_budget_limits(&t, req.limits, &actor)).await?;
    let only = (tenant != corral_govern::DEFAULT_TENANT).then_some(tenant.as_str());
    Ok(Json(st.policy.budget_list(only)?))
}

/// `POST /v1/tasks/{task}/usage`: tokens reported by the harness, for the caller's
/// tenant.
pub(crate) async fn report_usage(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(task): Path<String>,
    Json(req): Json<TaskUsageRequest>,
) -> ApiResult<Json<TaskUsage>> {
    let policy = st.policy.clone();
    Ok(Json(
        blocking(move || policy.report_tokens(&caller.tenant, &task, req.tokens, &caller.key_id))
            .await?,
    ))
}

// ---- plans ----

/// `POST /v1/plans`: each step decided for the caller; nothing runs.
pub(crate) async fn review_plan(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<PlanRequest>,
) -> ApiResult<Json<PlanResponse>> {
    Ok(Json(st.policy.review_plan(
        &caller.tenant,
        &caller.agent,
        &req,
    )?))
}

/// Runs a store-writing policy operation off the async workers.
async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    F: FnOnce() -> Result<T, PolicyCoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("policy task failed: {e}"))),
    }
}

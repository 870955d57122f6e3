//! The router: which handler answers which route, and the layers around them.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use corral_types::api::HealthResponse;

use crate::error::{method_not_allowed, not_found};
use crate::{
    admin, auth, egress, exec, files, metrics, openapi, ports, sandboxes, snapshots, templates,
    AppState,
};

/// JSON bodies larger than this are refused with 413 (file uploads are streamed and
/// have no limit but the sandbox's disk).
pub(crate) const JSON_BODY_LIMIT: usize = 1 << 20;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let public = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi::serve_document))
        .method_not_allowed_fallback(method_not_allowed);

    let authed = Router::new()
        .route(
            "/v1/tenants",
            post(admin::create_tenant).get(admin::list_tenants),
        )
        .route("/v1/keys", post(admin::create_key).get(admin::list_keys))
        .route("/v1/keys/{id}", delete(admin::revoke_key))
        .route(
            "/v1/sandboxes",
            post(sandboxes::create).get(sandboxes::list),
        )
        .route(
            "/v1/sandboxes/{id}",
            get(sandboxes::get).delete(sandboxes::delete),
        )
        .route("/v1/sandboxes/{id}/timeout", post(sandboxes::timeout))
        .route("/v1/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/v1/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/v1/sandboxes/{id}/snapshot", post(sandboxes::snapshot))
        .route("/v1/sandboxes/{id}/egress", get(egress::records))
        .route("/v1/sandboxes/{id}/exec", post(exec::exec))
        .route("/v1/sandboxes/{id}/run_code", post(exec::run_code))
        .route("/v1/sandboxes/{id}/processes", get(exec::processes))
        .route("/v1/sandboxes/{id}/processes/{pid}", get(exec::process))
        .route(
            "/v1/sandboxes/{id}/processes/{pid}/output",
            get(exec::process_output),
        )
        .route(
            "/v1/sandboxes/{id}/processes/{pid}/stdin",
            post(exec::process_stdin),
        )
        .route(
            "/v1/sandboxes/{id}/processes/{pid}/signal",
            post(exec::process_signal),
        )
        .route("/v1/sandboxes/{id}/pty", get(exec::pty))
        .route(
            "/v1/sandboxes/{id}/files",
            get(files::read).put(files::write).delete(files::remove),
        )
        .route("/v1/sandboxes/{id}/files/list", get(files::list))
        .route("/v1/sandboxes/{id}/files/stat", get(files::stat))
        .route("/v1/sandboxes/{id}/files/mkdir", post(files::mkdir))
        .route("/v1/sandboxes/{id}/files/rename", post(files::rename))
        .route("/v1/sandboxes/{id}/files/watch", get(files::watch))
        .route("/v1/sandboxes/{id}/ports/{port}/", any(ports::proxy))
        .route("/v1/sandboxes/{id}/ports/{port}/{*path}", any(ports::proxy))
        .route("/v1/sandboxes/{id}/tunnel/{port}", get(ports::tunnel))
        .route("/v1/snapshots", get(snapshots::list))
        .route(
            "/v1/snapshots/{id}",
            get(snapshots::get).delete(snapshots::delete),
        )
        .route(
            "/v1/templates",
            post(templates::import).get(templates::list),
        )
        .route("/v1/templates/build", post(templates::build))
        .route(
            "/v1/templates/builds",
            post(templates::start_build).get(templates::list_builds),
        )
        .route(
            "/v1/templates/builds/{id}",
            get(templates::get_build).delete(templates::cancel_build),
        )
        .route(
            "/v1/templates/builds/{id}/events",
            get(templates::build_events),
        )
        .route(
            "/v1/templates/{name}",
            get(templates::get).delete(templates::delete),
        )
        .route("/v1/secrets", get(crate::secrets::list))
        .route(
            "/v1/secrets/{name}",
            get(crate::secrets::get)
                .put(crate::secrets::put)
                .delete(crate::secrets::delete),
        )
        .route("/v1/calls", post(crate::govern_audit::call))
        .route("/v1/calls/{id}", get(crate::govern_audit::get_call))
        .route("/v1/approvals", get(crate::govern_audit::list_approvals))
        .route("/v1/approvals/{id}", get(crate::govern_audit::get_approval))
        .route(
            "/v1/approvals/{id}/approve",
            post(crate::govern_audit::approve),
        )
        .route("/v1/approvals/{id}/deny", post(crate::govern_audit::deny))
        .route("/v1/audit", get(crate::govern_audit::list_audit))
        .route("/v1/audit/export", get(crate::govern_audit::export_audit))
        .route("/v1/audit/verify", get(crate::govern_audit::verify_audit))
        .route(
            "/v1/capabilities",
            get(crate::govern_policy::list_capabilities),
        )
        .route(
            "/v1/capabilities/{name}",
            get(crate::govern_policy::get_capability).put(crate::govern_policy::put_capability),
        )
        .route(
            "/v1/policies",
            post(crate::govern_policy::publish_policy).get(crate::govern_policy::list_policies),
        )
        .route(
            "/v1/policies/diff",
            get(crate::govern_policy::diff_policies),
        )
        .route(
            "/v1/policies/rollback",
            post(crate::govern_policy::rollback_policy),
        )
        .route(
            "/v1/policies/shadow",
            axum::routing::put(crate::govern_policy::set_shadow)
                .delete(crate::govern_policy::clear_shadow),
        )
        .route(
            "/v1/policies/{version}",
            get(crate::govern_policy::get_policy),
        )
        .route(
            "/v1/policies/{version}/activate",
            post(crate::govern_policy::activate_policy),
        )
        .route(
            "/v1/kill-switches",
            get(crate::govern_policy::list_kill_switches)
                .put(crate::govern_policy::set_kill_switch)
                .delete(crate::govern_policy::clear_kill_switch),
        )
        .route("/v1/budgets", get(crate::govern_policy::list_budgets))
        .route(
            "/v1/budgets/{tenant}",
            axum::routing::put(crate::govern_policy::put_budget),
        )
        .route(
            "/v1/tasks/{task}/usage",
            post(crate::govern_policy::report_usage),
        )
        .route("/v1/plans", post(crate::govern_policy::review_plan))
        .route("/metrics", get(metrics::render))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(from_fn_with_state(state.clone(), auth::require_key));

    public
        .merge(authed)
        .merge(crate::e2b::router())
        .merge(crate::mcp::router(state.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::error::catch_panics))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
    })
}

//! Templates: list and get (any key), import, build and delete (admin only: templates
//! are shared by every tenant, and an import or a build reads a path on the daemon's
//! host). Build jobs: started and cancelled by an admin; an admin sees every job,
//! other keys only shipped recipes' builds (their creates may wait on one).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use corral_types::api::{
    Template, TemplateBuild, TemplateBuildCreateRequest, TemplateBuildList, TemplateBuildRequest,
    TemplateImportRequest, TemplateList, PAGE_DEFAULT,
};

use crate::auth::Caller;
use crate::error::{ApiResult, Json, Path, Query};
use crate::exec::ndjson_response;
use crate::sandboxes::parse_limit;
use crate::snapshots::PageQuery;
use crate::AppState;

pub(crate) async fn import(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<TemplateImportRequest>,
) -> ApiResult<(StatusCode, Json<Template>)> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(st.manager.import_template(req).await?),
    ))
}

pub(crate) async fn build(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<TemplateBuildRequest>,
) -> ApiResult<(StatusCode, Json<Template>)> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(st.manager.build_template(req).await?),
    ))
}

pub(crate) async fn list(State(st): State<Arc<AppState>>) -> ApiResult<Json<TemplateList>> {
    Ok(Json(st.manager.templates().await?))
}

pub(crate) async fn get(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Template>> {
    Ok(Json(st.manager.template(&name).await?))
}

pub(crate) async fn delete(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    st.manager.remove_template(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/templates/builds` (admin): starts a build job, 202 at once.
pub(crate) async fn start_build(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<TemplateBuildCreateRequest>,
) -> ApiResult<(StatusCode, Json<TemplateBuild>)> {
    caller.require_admin()?;
    Ok((
        StatusCode::ACCEPTED,
        Json(st.manager.start_template_build(req).await?),
    ))
}

pub(crate) async fn list_builds(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<TemplateBuildList>> {
    let limit = match &q.limit {
        Some(v) => parse_limit(v)?,
        None => PAGE_DEFAULT,
    };
    Ok(Json(st.manager.template_builds(
        caller.require_admin().is_ok(),
        q.cursor.as_deref(),
        limit,
    )?))
}

pub(crate) async fn get_build(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TemplateBuild>> {
    let admin = caller.require_admin().is_ok();
    Ok(Json(st.manager.template_build(&id, admin)?))
}

/// The job's events as JSON lines: replayed from the start, then followed to the end.
pub(crate) async fn build_events(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let admin = caller.require_admin().is_ok();
    let rx = st.manager.template_build_events(&id, admin)?;
    Ok(ndjson_response(rx))
}

/// `DELETE /v1/templates/builds/{id}` (admin): cancels; answers the job once it ended.
pub(crate) async fn cancel_build(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TemplateBuild>> {
    caller.require_admin()?;
    Ok(Json(st.manager.cancel_template_build(&id).await?))
}

//! Templates: list and get (any key), import, build and delete (admin only: templates
//! are shared by every tenant, and an import or a build reads a path on the daemon's
//! host).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_types::api::{Template, TemplateBuildRequest, TemplateImportRequest, TemplateList};

use crate::auth::Caller;
use crate::error::{ApiResult, Json, Path};
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

//! Snapshots: list, get, delete (taking one is `POST /v1/sandboxes/{id}/snapshot`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_types::api::{Snapshot, SnapshotList, PAGE_DEFAULT};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiResult, Json, Path, Query};
use crate::sandboxes::parse_limit;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    pub(crate) cursor: Option<String>,
    pub(crate) limit: Option<String>,
}

pub(crate) async fn list(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<SnapshotList>> {
    let limit = match &q.limit {
        Some(v) => parse_limit(v)?,
        None => PAGE_DEFAULT,
    };
    Ok(Json(st.manager.snapshots(
        &caller.tenant,
        q.cursor.as_deref(),
        limit,
    )?))
}

pub(crate) async fn get(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Snapshot>> {
    Ok(Json(st.manager.get_snapshot(&caller.tenant, &id)?))
}

pub(crate) async fn delete(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.manager.delete_snapshot(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

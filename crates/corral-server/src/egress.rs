//! `GET /v1/sandboxes/{id}/egress`: the sandbox's recent egress records (mode allow).

use std::sync::Arc;

use axum::extract::State;
use axum::Extension;
use corral_types::api::EgressRecordList;
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiResult, Json, Path, Query};
use crate::AppState;

/// `?limit=N` (default 1000, at most 4096).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EgressQuery {
    limit: Option<usize>,
}

pub(crate) async fn records(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<EgressQuery>,
) -> ApiResult<Json<EgressRecordList>> {
    let limit = q.limit.unwrap_or(1000);
    Ok(Json(st.manager.egress_records(
        &caller.tenant,
        &id,
        limit,
    )?))
}

//! Sandbox lifecycle: create, list, get, delete, timeout, pause, resume, snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_sandbox::ListQuery;
use corral_types::api::{
    Sandbox, SandboxCreateRequest, SandboxList, SandboxState, Snapshot, TimeoutRequest,
    PAGE_DEFAULT, PAGE_MAX,
};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::{govern_audit, AppState};

pub(crate) async fn create(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<SandboxCreateRequest>,
) -> ApiResult<(StatusCode, Json<Sandbox>)> {
    let r = st.manager.create(&caller.tenant, &caller.quota, req).await;
    let id = r.as_ref().map(|sb| sb.id.clone()).unwrap_or_default();
    lifecycle(&st, &caller, "create", &id, &r);
    Ok((StatusCode::CREATED, Json(r?)))
}

/// `GET /v1/sandboxes?state=&metadata.KEY=VALUE&cursor=&limit=`: the pairs come as a
/// list so `metadata.*` may repeat.
pub(crate) async fn list(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<SandboxList>> {
    let q = parse_list_query(&pairs)?;
    Ok(Json(st.manager.list(&caller.tenant, &q)?))
}

pub(crate) fn parse_list_query(pairs: &[(String, String)]) -> ApiResult<ListQuery> {
    let mut q = ListQuery {
        limit: PAGE_DEFAULT,
        metadata: BTreeMap::new(),
        ..ListQuery::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "state" => {
                q.state = Some(SandboxState::parse(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown state {v:?}: one of creating, running, paused, stopping, stopped"
                    ))
                })?)
            }
            "cursor" => q.cursor = Some(v.clone()),
            "limit" => q.limit = parse_limit(v)?,
            _ => match k.strip_prefix("metadata.") {
                Some(key) if !key.is_empty() => {
                    q.metadata.insert(key.to_string(), v.clone());
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {k:?}: use state, metadata.KEY, cursor, limit"
                    )))
                }
            },
        }
    }
    Ok(q)
}

pub(crate) fn parse_limit(v: &str) -> ApiResult<u32> {
    match v.parse::<u32>() {
        Ok(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "invalid limit {v:?}: a number from 1 to {PAGE_MAX}"
        ))),
    }
}

pub(crate) async fn get(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Sandbox>> {
    Ok(Json(st.manager.get(&caller.tenant, &id)?))
}

pub(crate) async fn delete(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let r = st.manager.delete(&caller.tenant, &id).await;
    lifecycle(&st, &caller, "delete", &id, &r);
    r?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn timeout(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<TimeoutRequest>,
) -> ApiResult<Json<Sandbox>> {
    Ok(Json(
        st.manager
            .set_timeout(&caller.tenant, &id, req.timeout_s)
            .await?,
    ))
}

pub(crate) async fn pause(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Sandbox>> {
    let r = st.manager.pause(&caller.tenant, &id).await;
    lifecycle(&st, &caller, "pause", &id, &r);
    Ok(Json(r?))
}

pub(crate) async fn resume(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Sandbox>> {
    let r = st.manager.resume(&caller.tenant, &id).await;
    lifecycle(&st, &caller, "resume", &id, &r);
    Ok(Json(r?))
}

pub(crate) async fn snapshot(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Snapshot>)> {
    let snap = st.manager.snapshot(&caller.tenant, &id).await?;
    Ok((StatusCode::CREATED, Json(snap)))
}

/// The audit record of a lifecycle action's result.
fn lifecycle<T, E: std::fmt::Display>(
    st: &AppState,
    caller: &Caller,
    action: &str,
    id: &str,
    r: &Result<T, E>,
) {
    let err = r.as_ref().err().map(ToString::to_string);
    govern_audit::record_lifecycle(st, caller, action, id, err.as_deref().map_or(Ok(()), Err));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn list_query_takes_repeated_metadata_and_checks_the_rest() {
        let q = parse_list_query(&pairs(&[
            ("state", "paused"),
            ("metadata.a", "1"),
            ("metadata.b", "2"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(q.state, Some(SandboxState::Paused));
        assert_eq!(q.metadata.len(), 2);
        assert_eq!(q.limit, 5);
        assert_eq!(parse_list_query(&[]).unwrap().limit, PAGE_DEFAULT);
        for bad in [
            ("state", "nope"),
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "x"),
            ("metadata.", "x"),
            ("other", "x"),
        ] {
            assert!(parse_list_query(&pairs(&[bad])).is_err(), "{bad:?}");
        }
    }
}

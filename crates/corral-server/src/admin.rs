//! Tenants and keys (admin only).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_types::api::{
    KeyCreateRequest, KeyCreateResponse, KeyList, Tenant, TenantCreateRequest, TenantList,
};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::AppState;

pub(crate) async fn create_tenant(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<TenantCreateRequest>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    caller.require_admin()?;
    let tenant = st
        .auth
        .create_tenant(&req.name, &req.quota)
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(tenant)))
}

pub(crate) async fn list_tenants(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<TenantList>> {
    caller.require_admin()?;
    let tenants = st
        .auth
        .tenants()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(TenantList { tenants }))
}

pub(crate) async fn create_key(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<KeyCreateRequest>,
) -> ApiResult<(StatusCode, Json<KeyCreateResponse>)> {
    caller.require_admin()?;
    let created = st
        .auth
        .create_key(&req.tenant, req.role, req.name.as_deref())
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(created)))
}

pub(crate) async fn list_keys(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<KeyList>> {
    caller.require_admin()?;
    let keys = st
        .auth
        .keys()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(KeyList { keys }))
}

pub(crate) async fn revoke_key(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if st
        .auth
        .revoke_key(&id)
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no key {id}")))
    }
}

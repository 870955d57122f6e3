//! Secrets (docs/secrets.md): put and delete (operator or admin), list and get (any
//! key of the tenant). Every answer is metadata: no route ever returns a value.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use corral_types::api::{Role, Secret, SecretList, SecretPutRequest};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::AppState;

fn require_operator(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Agent {
        return Err(ApiError::forbidden(
            "storing or removing secrets needs an operator or admin key; agents only use them \
             (create a sandbox with `secrets`)",
        ));
    }
    Ok(())
}

pub(crate) async fn put(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(req): Json<SecretPutRequest>,
) -> ApiResult<(StatusCode, Json<Secret>)> {
    require_operator(&caller)?;
    let (secret, new) = st.manager.secret_put(&caller.tenant, &name, req)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(secret)))
}

pub(crate) async fn list(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<SecretList>> {
    Ok(Json(st.manager.secret_list(&caller.tenant)?))
}

pub(crate) async fn get(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Secret>> {
    Ok(Json(st.manager.secret_get(&caller.tenant, &name)?))
}

pub(crate) async fn delete(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    require_operator(&caller)?;
    st.manager.secret_delete(&caller.tenant, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

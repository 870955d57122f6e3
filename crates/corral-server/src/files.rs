//! Files inside a sandbox. Contents stream both ways (never whole in memory); the
//! rest is JSON.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use corral_types::api::{FileEntry, FileList, FileWriteResponse, MkdirRequest, RenameRequest};
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::auth::Caller;
use crate::error::{ApiResult, Json, Path, Query};
use crate::exec::ndjson_response;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathQuery {
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecursiveQuery {
    path: String,
    #[serde(default)]
    recursive: bool,
}

/// `PUT .../files?path=`: the body, streamed into the file.
pub(crate) async fn write(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
    req: Request,
) -> ApiResult<Json<FileWriteResponse>> {
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let reader = StreamReader::new(stream);
    let size_bytes = st
        .manager
        .write_file(&caller.tenant, &id, &q.path, reader)
        .await?;
    Ok(Json(FileWriteResponse {
        path: q.path,
        size_bytes,
    }))
}

/// `GET .../files?path=`: the file's bytes, streamed, with its length.
pub(crate) async fn read(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Response> {
    let (file, size) = st.manager.read_file(&caller.tenant, &id, &q.path).await?;
    let mut resp = Body::from_stream(ReaderStream::with_capacity(file, 64 * 1024)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(resp)
}

pub(crate) async fn list(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<FileList>> {
    Ok(Json(
        st.manager.list_files(&caller.tenant, &id, &q.path).await?,
    ))
}

pub(crate) async fn stat(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<FileEntry>> {
    Ok(Json(
        st.manager.stat_file(&caller.tenant, &id, &q.path).await?,
    ))
}

pub(crate) async fn mkdir(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<MkdirRequest>,
) -> ApiResult<StatusCode> {
    st.manager
        .mkdir(&caller.tenant, &id, &req.path, req.parents.unwrap_or(true))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn remove(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<RecursiveQuery>,
) -> ApiResult<StatusCode> {
    st.manager
        .remove_file(&caller.tenant, &id, &q.path, q.recursive)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn rename(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<RenameRequest>,
) -> ApiResult<StatusCode> {
    st.manager
        .rename_file(&caller.tenant, &id, &req.from, &req.to)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../files/watch?path=&recursive=`: change events as JSON lines until the
/// client hangs up or the sandbox ends.
pub(crate) async fn watch(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<RecursiveQuery>,
) -> ApiResult<Response> {
    let rx = st
        .manager
        .watch(&caller.tenant, &id, &q.path, q.recursive)
        .await?;
    Ok(ndjson_response(rx))
}

//! E2B's control plane (the REST API behind `E2B_API_URL`): create, get, list, kill,
//! timeout, connect, pause, resume, over the Manager's own lifecycle calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use corral_sandbox::ListQuery;
use corral_types::api::{Sandbox, SandboxCreateRequest, SandboxState};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::E2bError;
use super::{api_caller, envd_token};
use crate::AppState;

/// The envd version corral's endpoint speaks (the SDKs gate features on it): default
/// user (0.4.0), stdin close (0.5.2), octet-stream uploads (0.5.7).
pub(crate) const ENVD_VERSION: &str = "0.5.7";

/// E2B's default template; corral's default is `host`.
const E2B_DEFAULT_TEMPLATE: &str = "base";

type E2bResult<T> = Result<T, E2bError>;

fn body<T: for<'de> Deserialize<'de> + Default>(raw: &[u8]) -> E2bResult<T> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(raw)
        .map_err(|e| E2bError::bad_request(format!("invalid JSON body: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: Option<String>,
    timeout: Option<u64>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
    auto_pause: Option<bool>,
    mcp: Option<Value>,
    volume_mounts: Option<Vec<Value>>,
    network: Option<Value>,
}

fn template_name(t: Option<&str>) -> String {
    match t {
        None | Some("") | Some(E2B_DEFAULT_TEMPLATE) => "host".to_string(),
        Some(t) => t.to_string(),
    }
}

fn millis_to_mb(bytes: u64) -> u64 {
    bytes / (1 << 20)
}

/// E2B's `Sandbox` (create/connect/resume answers).
fn created(sb: &Sandbox, token: &str) -> Value {
    json!({
        "templateID": sb.template,
        "sandboxID": sb.id,
        "clientID": "corral",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": token,
        "domain": null,
    })
}

fn state(s: SandboxState) -> &'static str {
    match s {
        SandboxState::Paused => "paused",
        _ => "running",
    }
}

/// E2B's `ListedSandbox` / `SandboxDetail`.
fn detail(sb: &Sandbox, token: Option<&str>) -> Value {
    let mut v = json!({
        "templateID": sb.template,
        "sandboxID": sb.id,
        "clientID": "corral",
        "startedAt": sb.created_at,
        "endAt": sb.expires_at,
        "envdVersion": ENVD_VERSION,
        "cpuCount": (sb.resources.cpu_millis / 1000).max(1),
        "memoryMB": millis_to_mb(sb.resources.memory_bytes),
        "diskSizeMB": millis_to_mb(sb.resources.disk_bytes),
        "state": state(sb.state),
        "metadata": sb.metadata,
    });
    if let (Some(k), Some(o)) = (token, v.as_object_mut()) {
        o.insert("envdAccessToken".into(), json!(k));
        o.insert("domain".into(), Value::Null);
    }
    v
}

pub(crate) async fn create(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> E2bResult<Response> {
    let (caller, _) = api_caller(&st, &headers)?;
    let req: NewSandbox = body(&raw)?;
    if req.auto_pause == Some(true) {
        return Err(E2bError::unsupported(
            "autoPause (pausing at timeout instead of killing)",
        ));
    }
    if req.mcp.as_ref().is_some_and(|m| !m.is_null()) {
        return Err(E2bError::unsupported("the MCP gateway (mcp)"));
    }
    if req.volume_mounts.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(E2bError::unsupported("volume mounts (volumeMounts)"));
    }
    if req
        .network
        .as_ref()
        .is_some_and(|n| n.as_object().is_some_and(|o| !o.is_empty()))
    {
        return Err(E2bError::unsupported(
            "network rules (network); corral sandboxes have no network (loopback only)",
        ));
    }
    let sb = st
        .manager
        .create(
            &caller.tenant,
            &caller.quota,
            SandboxCreateRequest {
                template: Some(template_name(req.template_id.as_deref())),
                timeout_s: req.timeout,
                env: req.env_vars.unwrap_or_default(),
                metadata: req.metadata.unwrap_or_default(),
                ..SandboxCreateRequest::default()
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(created(&sb, &envd_token(&st, &caller, &sb.id))),
    )
        .into_response())
}

pub(crate) async fn get(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> E2bResult<Response> {
    let (caller, _) = api_caller(&st, &headers)?;
    let sb = live(&st, &caller.tenant, &id)?;
    Ok(axum::Json(detail(&sb, Some(&envd_token(&st, &caller, &sb.id)))).into_response())
}

/// A sandbox that still exists (a stopped one is "not found" to E2B's SDKs).
fn live(st: &AppState, tenant: &str, id: &str) -> E2bResult<Sandbox> {
    match st.manager.get(tenant, id) {
        Ok(sb) if !matches!(sb.state, SandboxState::Stopped | SandboxState::Stopping) => Ok(sb),
        Ok(_) | Err(corral_sandbox::SandboxError::NotFound(_)) => {
            Err(E2bError::not_found(format!("sandbox {id} not found")))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListParams {
    metadata: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    next_token: Option<String>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                Some(Ok(v)) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /sandboxes` and `/v2/sandboxes`: `metadata` is itself a query string
/// (`k=v&k2=v2`), `state` a comma list, paging by `limit` and `nextToken` (the next
/// token comes back in the `x-next-token` header).
pub(crate) async fn list(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> E2bResult<Response> {
    let (caller, _) = api_caller(&st, &headers)?;
    let mut q = ListQuery {
        limit: p.limit.unwrap_or(100).clamp(1, 1000),
        cursor: p.next_token.clone(),
        ..ListQuery::default()
    };
    if let Some(m) = p.metadata.as_deref().filter(|m| !m.is_empty()) {
        for pair in m.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            q.metadata.insert(percent_decode(k), percent_decode(v));
        }
    }
    let mut only: Option<SandboxState> = None;
    if let Some(s) = p.state.as_deref().filter(|s| !s.is_empty()) {
        let states: Vec<&str> = s.split(',').map(str::trim).collect();
        for s in &states {
            if !matches!(*s, "running" | "paused") {
                return Err(E2bError::bad_request(format!(
                    "unknown state {s:?}: one of running, paused"
                )));
            }
        }
        if states.len() == 1 {
            only = Some(if states[0] == "paused" {
                SandboxState::Paused
            } else {
                SandboxState::Running
            });
        }
    }
    q.state = only;
    let page = st.manager.list(&caller.tenant, &q)?;
    let items: Vec<Value> = page
        .sandboxes
        .iter()
        .filter(|sb| matches!(sb.state, SandboxState::Running | SandboxState::Paused))
        .map(|sb| detail(sb, None))
        .collect();
    let mut resp = axum::Json(items).into_response();
    if let Some(next) = page
        .next_cursor
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        resp.headers_mut().insert("x-next-token", next);
    }
    Ok(resp)
}

pub(crate) async fn kill(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> E2bResult<StatusCode> {
    let (caller, _) = api_caller(&st, &headers)?;
    live(&st, &caller.tenant, &id)?;
    st.manager.delete(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TimeoutBody {
    timeout: Option<u64>,
}

pub(crate) async fn timeout(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> E2bResult<StatusCode> {
    let (caller, _) = api_caller(&st, &headers)?;
    let b: TimeoutBody = body(&raw)?;
    let t = b
        .timeout
        .ok_or_else(|| E2bError::bad_request("timeout (seconds) is required"))?;
    live(&st, &caller.tenant, &id)?;
    st.manager
        .set_timeout(&caller.tenant, &id, t.max(1))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/connect`: resumes a paused sandbox (201) or extends a running
/// one's timeout when the new one is later (200).
pub(crate) async fn connect(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> E2bResult<Response> {
    let (caller, _) = api_caller(&st, &headers)?;
    let b: TimeoutBody = body(&raw)?;
    let mut sb = live(&st, &caller.tenant, &id)?;
    let mut status = StatusCode::OK;
    if sb.state == SandboxState::Paused {
        sb = st.manager.resume(&caller.tenant, &id).await?;
        status = StatusCode::CREATED;
    }
    if let Some(t) = b.timeout {
        sb = st
            .manager
            .set_timeout(&caller.tenant, &id, t.max(1))
            .await?;
    }
    Ok((
        status,
        axum::Json(created(&sb, &envd_token(&st, &caller, &sb.id))),
    )
        .into_response())
}

pub(crate) async fn pause(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> E2bResult<StatusCode> {
    let (caller, _) = api_caller(&st, &headers)?;
    let sb = live(&st, &caller.tenant, &id)?;
    if sb.state == SandboxState::Paused {
        return Err(E2bError::new(
            StatusCode::CONFLICT,
            format!("sandbox {id} is already paused"),
        ));
    }
    st.manager.pause(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn resume(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> E2bResult<Response> {
    let (caller, _) = api_caller(&st, &headers)?;
    let b: TimeoutBody = body(&raw)?;
    let sb = live(&st, &caller.tenant, &id)?;
    if sb.state != SandboxState::Paused {
        return Err(E2bError::new(
            StatusCode::CONFLICT,
            format!("sandbox {id} is not paused"),
        ));
    }
    let mut sb = st.manager.resume(&caller.tenant, &id).await?;
    if let Some(t) = b.timeout {
        sb = st
            .manager
            .set_timeout(&caller.tenant, &id, t.max(1))
            .await?;
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(created(&sb, &envd_token(&st, &caller, &sb.id))),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RefreshBody {
    duration: Option<u64>,
}

/// `POST /sandboxes/{id}/refreshes`: keeps the sandbox alive `duration` more seconds.
pub(crate) async fn refresh(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> E2bResult<StatusCode> {
    let (caller, _) = api_caller(&st, &headers)?;
    let b: RefreshBody = body(&raw)?;
    live(&st, &caller.tenant, &id)?;
    st.manager
        .set_timeout(&caller.tenant, &id, b.duration.unwrap_or(60).max(1))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everything else under `/e2b`: templates, snapshots, fork, metrics, logs, volumes,
/// teams... answered in E2B's error shape, naming the route.
pub(crate) async fn unsupported(uri: Uri) -> E2bError {
    E2bError::unsupported(&format!("the E2B route {}", uri.path()))
}

//! Commands in a sandbox: exec (collected, streamed or in the background), run_code,
//! background processes, and the interactive terminal over WebSocket.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use corral_sandbox::{PtyInput, PtyRequest, PtySession};
use corral_types::api::{
    ExecEvent, ExecRequest, ProcessInfo, ProcessList, ProcessOutput, PtyClientMessage,
    PtyServerMessage, RunCodeLanguage, RunCodeRequest, SignalRequest, StdinWriteRequest,
};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

const NDJSON: &str = "application/x-ndjson";

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(NDJSON)))
}

pub(crate) async fn exec(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ExecRequest>,
) -> ApiResult<Response> {
    run(&st, &caller, &id, wants_ndjson(&headers), req).await
}

pub(crate) async fn run_code(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(req): Json<RunCodeRequest>,
) -> ApiResult<Response> {
    run(
        &st,
        &caller,
        &id,
        wants_ndjson(&headers),
        run_code_to_exec(req),
    )
    .await
}

async fn run(
    st: &AppState,
    caller: &Caller,
    id: &str,
    stream: bool,
    req: ExecRequest,
) -> ApiResult<Response> {
    if req.background {
        let info = st.manager.exec_background(&caller.tenant, id, req).await?;
        return Ok((StatusCode::CREATED, Json(info)).into_response());
    }
    if stream {
        let rx = st.manager.exec_stream(&caller.tenant, id, req).await?;
        return Ok(ndjson_response(rx));
    }
    Ok(Json(st.manager.exec(&caller.tenant, id, req).await?).into_response())
}

/// `run_code` is exec of the language's one-liner form.
pub(crate) fn run_code_to_exec(req: RunCodeRequest) -> ExecRequest {
    let (prog, flag) = match req.language {
        RunCodeLanguage::Python => ("python3", "-c"),
        RunCodeLanguage::Javascript => ("node", "-e"),
        RunCodeLanguage::Bash => ("bash", "-c"),
    };
    ExecRequest {
        cmd: vec![prog.into(), flag.into(), req.code],
        env: req.env,
        cwd: req.cwd,
        stdin: None,
        timeout_s: req.timeout_s,
        background: false,
        user: None,
    }
}

/// A stream of JSON lines from a channel; the body ends when the sender does.
pub(crate) fn ndjson_response<T: Serialize + Send + 'static>(rx: mpsc::Receiver<T>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        let mut line = serde_json::to_vec(&item).unwrap_or_else(|e| {
            serde_json::to_vec(&ExecEvent::Error {
                code: "internal".into(),
                message: format!("cannot encode an event: {e}"),
            })
            .unwrap_or_default()
        });
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(Bytes::from(line)), rx))
    });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    resp
}

pub(crate) async fn processes(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProcessList>> {
    Ok(Json(st.manager.processes(&caller.tenant, &id)?))
}

pub(crate) async fn process(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, pid)): Path<(String, String)>,
) -> ApiResult<Json<ProcessInfo>> {
    Ok(Json(st.manager.process(&caller.tenant, &id, &pid)?))
}

pub(crate) async fn process_output(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, pid)): Path<(String, String)>,
) -> ApiResult<Json<ProcessOutput>> {
    Ok(Json(st.manager.process_output(
        &caller.tenant,
        &id,
        &pid,
    )?))
}

pub(crate) async fn process_stdin(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, pid)): Path<(String, String)>,
    Json(req): Json<StdinWriteRequest>,
) -> ApiResult<StatusCode> {
    st.manager
        .process_stdin(&caller.tenant, &id, &pid, req)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn process_signal(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, pid)): Path<(String, String)>,
    Json(req): Json<SignalRequest>,
) -> ApiResult<StatusCode> {
    let signal = match req.signal.as_deref() {
        None => 15,
        Some(s) => parse_signal(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown signal {s:?}: a name (SIGTERM, TERM) or a number from 1 to 64"
            ))
        })?,
    };
    st.manager
        .process_signal(&caller.tenant, &id, &pid, signal)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Linux signal numbers by name (x86_64 and aarch64 agree on these).
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// `SIGTERM`, `TERM`, `term` or `15`.
pub(crate) fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PtyQuery {
    /// The command as one string, split on whitespace (`cmd=python3 -q`); default a
    /// shell.
    cmd: Option<String>,
    rows: Option<u16>,
    cols: Option<u16>,
}

/// `GET /v1/sandboxes/{id}/pty`: binary frames are terminal bytes both ways; a text
/// frame `{"resize": {"rows", "cols"}}` resizes; the server's last text frame is
/// `{"exit": RunResult}`.
pub(crate) async fn pty(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<PtyQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("this route is a WebSocket: {}", e.body_text()))
    })?;
    let req = PtyRequest {
        cmd: q
            .cmd
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        rows: q.rows.unwrap_or(24),
        cols: q.cols.unwrap_or(80),
        ..PtyRequest::default()
    };
    let session = st.manager.pty_open(&caller.tenant, &id, req).await?;
    Ok(ws.on_upgrade(move |socket| bridge(socket, session)))
}

async fn bridge(mut socket: WebSocket, mut session: PtySession) {
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let input = match msg {
                    Some(Ok(Message::Binary(b))) => PtyInput::Data(b.to_vec()),
                    Some(Ok(Message::Text(t))) => {
                        match serde_json::from_str::<PtyClientMessage>(t.as_str()) {
                            Ok(m) => PtyInput::Resize { rows: m.resize.rows, cols: m.resize.cols },
                            Err(_) => continue,
                        }
                    }
                    Some(Ok(_)) => continue,
                    // The client went away: dropping the session hangs the terminal up.
                    Some(Err(_)) | None => return,
                };
                if session.input.send(input).await.is_err() {
                    break;
                }
            }
            out = session.output.recv() => match out {
                Some(bytes) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
        }
    }
    if let Ok(result) = session.exit.await {
        if let Ok(text) = serde_json::to_string(&PtyServerMessage { exit: result }) {
            let _ = socket.send(Message::Text(text.into())).await;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("kill"), Some(9));
        assert_eq!(parse_signal("15"), Some(15));
        assert_eq!(parse_signal("64"), Some(64));
        for bad in ["0", "65", "-1", "SIGNOPE", ""] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
    }

    #[test]
    fn run_code_maps_to_the_interpreters() {
        let r = run_code_to_exec(RunCodeRequest {
            language: RunCodeLanguage::Javascript,
            code: "1".into(),
            env: Default::default(),
            cwd: None,
            timeout_s: Some(3),
        });
        assert_eq!(r.cmd, ["node", "-e", "1"]);
        assert_eq!(r.timeout_s, Some(3));
    }

    #[test]
    fn accept_header_picks_streaming() {
        let mut h = HeaderMap::new();
        assert!(!wants_ndjson(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, application/x-ndjson"),
        );
        assert!(wants_ndjson(&h));
    }
}

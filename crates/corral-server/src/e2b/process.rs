//! envd's `process.Process` Connect service over the Manager: Start (streamed
//! output and the end event), Connect (attach to a running process), List,
//! SendInput, CloseStdin, SendSignal. PTYs, Update and StreamInput answer
//! `unimplemented` with a message naming them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use corral_sandbox::LiveOutput;
use corral_types::api::{ExecRequest, ProcessState, StdinWriteRequest};
use corral_types::RunResult;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::connect::{self, Framing};
use super::error::E2bError;
use super::{base64, envd_user, sandbox_caller};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessConfig {
    #[serde(default)]
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    cwd: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartRequest {
    process: Option<ProcessConfig>,
    pty: Option<Value>,
    tag: Option<String>,
    #[serde(default)]
    stdin: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    pid: Option<u32>,
    tag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Selected {
    process: Option<Selector>,
    input: Option<Input>,
    signal: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    stdin: Option<String>,
    pty: Option<String>,
}

#[derive(Debug, Serialize)]
struct Empty {}

/// `POST /e2b/sandbox/process.Process/{method}`.
pub(crate) async fn dispatch(
    State(st): State<Arc<AppState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let streaming = matches!(method.as_str(), "Start" | "Connect");
    let r = match method.as_str() {
        "Start" => start(&st, &headers, &body).await,
        "Connect" => attach(&st, &headers, &body).await,
        "List" => list(&st, &headers, &body),
        "SendInput" => send_input(&st, &headers, &body, false).await,
        "CloseStdin" => send_input(&st, &headers, &body, true).await,
        "SendSignal" => send_signal(&st, &headers, &body).await,
        "Update" => Err(E2bError::unsupported("process.Process/Update (PTY resize)")),
        "StreamInput" => Err(E2bError::unsupported(
            "process.Process/StreamInput (client streaming); use SendInput",
        )),
        other => Err(E2bError::not_found(format!(
            "process.Process has no method {other:?}"
        ))),
    };
    match r {
        Ok(resp) => resp,
        Err(e) if streaming => connect::stream_error(&e),
        Err(e) => e.connect_response(),
    }
}

fn event(ev: Value) -> Bytes {
    connect::message(&json!({ "event": ev }))
}

fn end_event(r: &RunResult) -> Value {
    let status = match r.signal {
        Some(sig) if !r.timed_out => format!("signal: {}", signal_name(sig)),
        _ if r.timed_out => "timed out".to_string(),
        _ => format!("exit status {}", r.exit_code),
    };
    let mut end = json!({
        "exitCode": r.exit_code,
        "exited": r.signal.is_none(),
        "status": status,
    });
    if r.timed_out {
        end["error"] = json!("the command ran past its timeout and was killed");
    }
    json!({ "end": end })
}

fn signal_name(sig: i32) -> String {
    match sig {
        9 => "killed".into(),
        15 => "terminated".into(),
        2 => "interrupt".into(),
        n => format!("signal {n}"),
    }
}

fn data_event(out: &LiveOutput) -> Option<Value> {
    match out {
        LiveOutput::Stdout(d) => Some(json!({"data": {"stdout": base64::encode(d)}})),
        LiveOutput::Stderr(d) => Some(json!({"data": {"stderr": base64::encode(d)}})),
        LiveOutput::Exit(r) => Some(end_event(r)),
    }
}

async fn start(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, E2bError> {
    let (caller, id) = sandbox_caller(st, headers)?;
    let req: StartRequest = connect::decode(headers, body, Framing::Stream)?;
    if req.pty.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(E2bError::unsupported(
            "PTY processes (commands started with a pty); use corral's /v1/sandboxes/{id}/pty",
        ));
    }
    if req.tag.is_some() {
        return Err(E2bError::unsupported("process tags"));
    }
    let p = req.process.unwrap_or_default();
    if p.cmd.is_empty() {
        return Err(E2bError::bad_request("process.cmd is empty"));
    }
    let _ = req.stdin;
    let mut cmd = vec![p.cmd];
    cmd.extend(p.args);
    let timeout_s = connect::timeout(headers).map(|t| t.as_secs().max(1));
    let lp = st
        .manager
        .start_live(
            &caller.tenant,
            &id,
            ExecRequest {
                cmd,
                env: p.envs,
                cwd: p.cwd.filter(|c| !c.is_empty()),
                stdin: None,
                timeout_s,
                background: true,
                user: envd_user(headers),
            },
        )
        .await?;
    Ok(stream_events(headers, lp.pid, lp.output))
}

/// Where a streamed process's output comes from: the starter's own channel, or a
/// subscription of a client that connected later.
trait Source: Send + 'static {
    /// The next output: `None` when there is no more, `Some(None)` to skip (a
    /// subscriber that fell behind).
    fn next(&mut self) -> impl std::future::Future<Output = Option<Option<LiveOutput>>> + Send;
}

impl Source for mpsc::Receiver<LiveOutput> {
    async fn next(&mut self) -> Option<Option<LiveOutput>> {
        self.recv().await.map(Some)
    }
}

impl Source for tokio::sync::broadcast::Receiver<LiveOutput> {
    async fn next(&mut self) -> Option<Option<LiveOutput>> {
        match self.recv().await {
            Ok(out) => Some(Some(out)),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(None),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Streams a process to an envd client: `start`, then its output and its end as they
/// come (with keepalives when the client asked for them), then end-of-stream.
fn stream_events<P, S>(headers: &HeaderMap, pid: P, mut src: S) -> Response
where
    P: serde::Serialize + Send + 'static,
    S: Source,
{
    let keepalive = connect::keepalive(headers);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        if tx
            .send(event(json!({"start": {"pid": pid}})))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let got = match keepalive {
                Some(k) => match tokio::time::timeout(k, src.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        if tx.send(event(json!({"keepalive": {}}))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                },
                None => src.next().await,
            };
            match got {
                Some(Some(out)) => {
                    let last = matches!(out, LiveOutput::Exit(_));
                    if let Some(ev) = data_event(&out) {
                        if tx.send(event(ev)).await.is_err() {
                            return;
                        }
                    }
                    if last {
                        break;
                    }
                }
                Some(None) => continue,
                None => break,
            }
        }
        let _ = tx.send(connect::end(None)).await;
    });
    connect::stream_response(tokio_stream_from(rx).map(Ok::<_, Infallible>))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Bytes> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn selected_pid(
    st: &AppState,
    tenant: &str,
    id: &str,
    sel: Option<&Selector>,
) -> Result<String, E2bError> {
    let sel = sel.ok_or_else(|| E2bError::bad_request("process selector is missing"))?;
    if sel.tag.is_some() {
        return Err(E2bError::unsupported("selecting processes by tag"));
    }
    let pid = sel
        .pid
        .ok_or_else(|| E2bError::bad_request("process selector has no pid"))?;
    Ok(st.manager.process_by_pid(tenant, id, pid)?)
}

async fn attach(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, E2bError> {
    let (caller, id) = sandbox_caller(st, headers)?;
    let req: Selected = connect::decode(headers, body, Framing::Stream)?;
    let process = selected_pid(st, &caller.tenant, &id, req.process.as_ref())?;
    let pid = req.process.as_ref().and_then(|p| p.pid).unwrap_or(0);
    let sub = st.manager.attach_live(&caller.tenant, &id, &process)?;
    Ok(stream_events(headers, pid, sub))
}

fn list(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, E2bError> {
    let (caller, id) = sandbox_caller(st, headers)?;
    let _: Value = connect::decode(headers, body, Framing::Unary)?;
    let procs = st.manager.processes(&caller.tenant, &id)?;
    let items: Vec<Value> = procs
        .processes
        .iter()
        .filter(|p| p.state == ProcessState::Running)
        .map(|p| {
            json!({
                "config": {
                    "cmd": p.cmd.first().cloned().unwrap_or_default(),
                    "args": p.cmd.iter().skip(1).collect::<Vec<_>>(),
                    "envs": {},
                },
                "pid": p.pid,
            })
        })
        .collect();
    Ok(connect::unary(&json!({ "processes": items })))
}

async fn send_input(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    close: bool,
) -> Result<Response, E2bError> {
    let (caller, id) = sandbox_caller(st, headers)?;
    let req: Selected = connect::decode(headers, body, Framing::Unary)?;
    let process = selected_pid(st, &caller.tenant, &id, req.process.as_ref())?;
    let data = match req.input {
        None => Vec::new(),
        Some(Input { pty: Some(_), .. }) => {
            return Err(E2bError::unsupported("PTY input"));
        }
        Some(Input { stdin, .. }) => base64::decode(stdin.as_deref().unwrap_or(""))
            .map_err(|e| E2bError::bad_request(format!("input.stdin: {e}")))?,
    };
    st.manager
        .process_stdin(
            &caller.tenant,
            &id,
            &process,
            StdinWriteRequest {
                data: String::from_utf8_lossy(&data).into_owned(),
                eof: close,
            },
        )
        .await?;
    Ok(connect::unary(&Empty {}))
}

async fn send_signal(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, E2bError> {
    let (caller, id) = sandbox_caller(st, headers)?;
    let req: Selected = connect::decode(headers, body, Framing::Unary)?;
    let process = selected_pid(st, &caller.tenant, &id, req.process.as_ref())?;
    let sig = match req.signal {
        Some(Value::String(s)) if s == "SIGNAL_SIGKILL" => 9,
        Some(Value::String(s)) if s == "SIGNAL_SIGTERM" => 15,
        Some(Value::Number(n)) if n.as_i64() == Some(9) || n.as_i64() == Some(15) => {
            n.as_i64().unwrap_or(15) as i32
        }
        other => {
            return Err(E2bError::bad_request(format!(
                "signal {other:?} is not one of SIGNAL_SIGTERM, SIGNAL_SIGKILL"
            )))
        }
    };
    st.manager
        .process_signal(&caller.tenant, &id, &process, sig)
        .await?;
    Ok(connect::unary(&Empty {}))
}

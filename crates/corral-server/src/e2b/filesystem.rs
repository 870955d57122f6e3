//! envd's `filesystem.Filesystem` Connect service over the Manager's file calls:
//! Stat, ListDir, MakeDir, Move, Remove, WatchDir (streamed) and the polled watcher
//! trio (CreateWatcher, GetWatcherEvents, RemoveWatcher) the sync Python SDK uses.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use corral_types::api::{FileEntry, FileKind, WatchEvent, WatchEventKind};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::connect::{self, Framing};
use super::error::E2bError;
use super::sandbox_caller;
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Req {
    #[serde(default)]
    path: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    destination: String,
    #[serde(default)]
    depth: u32,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    watcher_id: String,
}

/// Watchers of CreateWatcher: id -> (tenant, sandbox, events).
type Watchers = Mutex<
    HashMap<
        String,
        (
            String,
            String,
            Arc<tokio::sync::Mutex<mpsc::Receiver<WatchEvent>>>,
        ),
    >,
>;

fn watchers() -> &'static Watchers {
    static W: OnceLock<Watchers> = OnceLock::new();
    W.get_or_init(Default::default)
}

pub(crate) async fn dispatch(
    State(st): State<Arc<AppState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let streaming = method == "WatchDir";
    let r = call(&st, &method, &headers, &body).await;
    match r {
        Ok(resp) => resp,
        Err(e) if streaming => connect::stream_error(&e),
        Err(e) => e.connect_response(),
    }
}

fn entry(e: &FileEntry) -> Value {
    let kind = match e.kind {
        FileKind::File => "FILE_TYPE_FILE",
        FileKind::Dir => "FILE_TYPE_DIRECTORY",
        FileKind::Symlink => "FILE_TYPE_SYMLINK",
        FileKind::Other => "FILE_TYPE_UNSPECIFIED",
    };
    let mut v = json!({
        "name": e.name,
        "type": kind,
        "path": e.path,
        "size": e.size.to_string(),
        "mode": e.mode,
        "permissions": permissions(e),
        "owner": "",
        "group": "",
        "modifiedTime": e.mtime,
        "isSymlink": e.kind == FileKind::Symlink,
    });
    if let Some(t) = &e.symlink_target {
        v["symlinkTarget"] = json!(t);
    }
    v
}

fn permissions(e: &FileEntry) -> String {
    let mut s = String::with_capacity(10);
    s.push(match e.kind {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        _ => '-',
    });
    for shift in [6u32, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn event_type(k: WatchEventKind) -> &'static str {
    match k {
        WatchEventKind::Create => "EVENT_TYPE_CREATE",
        WatchEventKind::Write => "EVENT_TYPE_WRITE",
        WatchEventKind::Remove => "EVENT_TYPE_REMOVE",
        WatchEventKind::Rename => "EVENT_TYPE_RENAME",
        WatchEventKind::Chmod => "EVENT_TYPE_CHMOD",
    }
}

/// E2B names events relative to the watched directory.
fn fs_event(root: &str, ev: &WatchEvent) -> Value {
    let root = root.trim_end_matches('/');
    let name = ev
        .path
        .strip_prefix(root)
        .map(|s| s.trim_start_matches('/'))
        .unwrap_or(&ev.path);
    json!({"name": name, "type": event_type(ev.kind)})
}

async fn call(
    st: &AppState,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, E2bError> {
    let (caller, id) = sandbox_caller(st, headers)?;
    let t = &caller.tenant;
    let m = &st.manager;
    let framing = if method == "WatchDir" {
        Framing::Stream
    } else {
        Framing::Unary
    };
    let req: Req = connect::decode(headers, body, framing)?;
    match method {
        "Stat" => {
            let e = m.stat_file(t, &id, &req.path).await?;
            Ok(connect::unary(&json!({"entry": entry(&e)})))
        }
        "ListDir" => {
            let depth = req.depth.max(1);
            let mut out = Vec::new();
            let mut dirs = vec![(req.path.clone(), 1u32)];
            while let Some((dir, d)) = dirs.pop() {
                let list = m.list_files(t, &id, &dir).await?;
                for e in &list.entries {
                    out.push(entry(e));
                    if e.kind == FileKind::Dir && d < depth {
                        dirs.push((e.path.clone(), d + 1));
                    }
                }
            }
            Ok(connect::unary(&json!({"entries": out})))
        }
        "MakeDir" => {
            if m.stat_file(t, &id, &req.path).await.is_ok() {
                return Err(E2bError::new(
                    axum::http::StatusCode::CONFLICT,
                    format!("{} already exists", req.path),
                ));
            }
            m.mkdir(t, &id, &req.path, true).await?;
            let e = m.stat_file(t, &id, &req.path).await?;
            Ok(connect::unary(&json!({"entry": entry(&e)})))
        }
        "Move" => {
            m.rename_file(t, &id, &req.source, &req.destination).await?;
            let e = m.stat_file(t, &id, &req.destination).await?;
            Ok(connect::unary(&json!({"entry": entry(&e)})))
        }
        "Remove" => {
            m.remove_file(t, &id, &req.path, true).await?;
            Ok(connect::unary(&json!({})))
        }
        "WatchDir" => {
            let mut rx = m.watch(t, &id, &req.path, req.recursive).await?;
            let root = req.path.clone();
            let keepalive = connect::keepalive(headers);
            let (tx, out) = mpsc::channel::<Bytes>(64);
            tokio::spawn(async move {
                if tx
                    .send(connect::message(&json!({"start": {}})))
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    let next = match keepalive {
                        Some(k) => match tokio::time::timeout(k, rx.recv()).await {
                            Ok(n) => n,
                            Err(_) => {
                                if tx
                                    .send(connect::message(&json!({"keepalive": {}})))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                                continue;
                            }
                        },
                        None => rx.recv().await,
                    };
                    let Some(ev) = next else { break };
                    let msg = connect::message(&json!({"filesystem": fs_event(&root, &ev)}));
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(connect::end(None)).await;
            });
            let mut out = out;
            Ok(connect::stream_response(
                futures_util::stream::poll_fn(move |cx| out.poll_recv(cx)).map(Ok::<_, Infallible>),
            ))
        }
        "CreateWatcher" => {
            let rx = m.watch(t, &id, &req.path, req.recursive).await?;
            let wid = format!("w-{}-{}", id, watcher_seq());
            if let Ok(mut w) = watchers().lock() {
                w.insert(
                    wid.clone(),
                    (
                        t.clone(),
                        format!("{}\n{}", id, req.path),
                        Arc::new(tokio::sync::Mutex::new(rx)),
                    ),
                );
            }
            Ok(connect::unary(&json!({"watcherId": wid})))
        }
        "GetWatcherEvents" | "RemoveWatcher" => {
            let found = watchers()
                .lock()
                .ok()
                .and_then(|w| w.get(&req.watcher_id).cloned());
            let Some((owner, where_, rx)) =
                found.filter(|(o, w, _)| o == t && w.starts_with(&format!("{id}\n")))
            else {
                return Err(E2bError::not_found(format!(
                    "no watcher {}",
                    req.watcher_id
                )));
            };
            let _ = owner;
            if method == "RemoveWatcher" {
                if let Ok(mut w) = watchers().lock() {
                    w.remove(&req.watcher_id);
                }
                return Ok(connect::unary(&json!({})));
            }
            let root = where_
                .split_once('\n')
                .map(|(_, p)| p.to_string())
                .unwrap_or_default();
            let mut rx = rx.lock().await;
            let mut events = Vec::new();
            while let Ok(ev) = rx.try_recv() {
                events.push(fs_event(&root, &ev));
            }
            Ok(connect::unary(&json!({"events": events})))
        }
        other => Err(E2bError::not_found(format!(
            "filesystem.Filesystem has no method {other:?}"
        ))),
    }
}

fn watcher_seq() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

//! `corral mcp`: MCP over stdio for local agents (Claude Code, Codex, Cursor), as a
//! thin bridge to the daemon's /mcp endpoint. Each JSON-RPC line read from stdin is
//! posted to the daemon and each message of its answer written to stdout as one line;
//! the tools, policy and audit all live in the daemon, so a local agent is governed
//! exactly like a remote one.
//!
//! The daemon must be running: at start the bridge checks that it answers and takes
//! the key, and exits 125 with one line on stderr if not. If the daemon goes away
//! later, the request in flight gets a JSON-RPC error and the bridge exits 125. If the
//! daemon forgot the session (it restarted, or the session idled out), the bridge
//! opens a new one by replaying the client's initialize and retries once.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use clap::Args;
use corral_client::{Client, ClientError, McpAnswer, SandboxListParams};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

use crate::client_conn::{run_client, Conn};

/// JSON-RPC error codes the bridge answers with itself.
const PARSE_ERROR: i64 = -32700;
const INTERNAL_ERROR: i64 = -32603;

/// Speak MCP on stdin/stdout, backed by the daemon's /mcp endpoint.
#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    #[command(flatten)]
    conn: Conn,
}

pub(crate) fn main(args: McpArgs) -> ExitCode {
    run_client(bridge(args))
}

/// The daemon's session, and what opens a new one.
#[derive(Debug, Default)]
struct Session {
    id: Option<String>,
    version: Option<String>,
    /// The client's initialize request and initialized notification, replayed when
    /// the daemon no longer knows the session.
    initialize: Option<String>,
    initialized: Option<String>,
}

#[derive(Debug)]
struct Bridge {
    client: Client,
    session: Mutex<Session>,
    out: mpsc::UnboundedSender<String>,
    /// A connection failure ends the bridge: the message says why.
    fatal: mpsc::UnboundedSender<String>,
}

async fn bridge(args: McpArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    // Fail at once, before the agent's initialize, if the daemon is not there or
    // refuses the key: an agent host shows a server that exits with its stderr.
    let probe = SandboxListParams {
        limit: Some(1),
        ..SandboxListParams::default()
    };
    client.list_sandboxes(&probe).await.map_err(|e| match e {
        ClientError::Api { status: 401, .. } => anyhow!(
            "the daemon at {} refused the API key: pass --key or set CORRAL_API_KEY",
            client.url()
        ),
        other => anyhow!(other).context("corral mcp needs a running daemon (`corral serve`)"),
    })?;

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel::<String>();
    // stdio on threads of their own (plain blocking I/O): a slow reader of our stdout
    // then never stalls the runtime.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        while let Some(line) = out_rx.blocking_recv() {
            let ok = stdout.write_all(line.as_bytes()).is_ok()
                && stdout.write_all(b"\n").is_ok()
                && stdout.flush().is_ok();
            if !ok {
                break;
            }
        }
    });
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<std::io::Result<String>>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let stop = line.is_err();
            if in_tx.send(line).is_err() || stop {
                break;
            }
        }
    });
    let b = Arc::new(Bridge {
        client,
        session: Mutex::new(Session::default()),
        out: out_tx,
        fatal: fatal_tx,
    });
    let result = loop {
        let line = tokio::select! {
            line = in_rx.recv() => line,
            Some(why) = fatal_rx.recv() => break Err(anyhow!(why)),
        };
        let line = match line.transpose() {
            Err(e) => break Err(anyhow!(e).context("cannot read stdin")),
            Ok(Some(l)) if l.trim().is_empty() => continue,
            Ok(Some(l)) => l,
            Ok(None) => break Ok(ExitCode::SUCCESS),
        };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            b.reply_error(
                Value::Null,
                PARSE_ERROR,
                "parse error: the line is not JSON",
            );
            continue;
        };
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let is_request = msg.get("id").is_some() && !method.is_empty();
        if method == "initialize" || !is_request {
            // The handshake and notifications keep their order; requests run
            // concurrently so a cancellation can reach a long tool call.
            b.forward(&msg, &line).await;
        } else {
            let b = b.clone();
            tokio::spawn(async move { b.forward(&msg, &line).await });
        }
    };
    let id = b.session.lock().await.id.clone();
    if let (Ok(_), Some(id)) = (&result, id) {
        let _ = b.client.mcp_close(&id).await;
    }
    drop(b);
    let _ = writer.join();
    result
}

impl Bridge {
    fn reply_error(&self, id: Value, code: i64, message: &str) {
        let v = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
        let _ = self.out.send(v.to_string());
    }

    async fn post(&self, line: &str) -> Result<(McpAnswer, Option<String>), ClientError> {
        let (id, version) = {
            let s = self.session.lock().await;
            (s.id.clone(), s.version.clone())
        };
        let ans = self
            .client
            .mcp_post(id.as_deref(), version.as_deref(), line.as_bytes())
            .await?;
        Ok((ans, id))
    }

    async fn forward(&self, msg: &Value, line: &str) {
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let id = msg.get("id").cloned();
        {
            let mut s = self.session.lock().await;
            match method {
                "initialize" => {
                    *s = Session {
                        initialize: Some(line.to_string()),
                        ..Session::default()
                    }
                }
                "notifications/initialized" => s.initialized = Some(line.to_string()),
                _ => {}
            }
        }
        let mut answer = self.post(line).await;
        if let Ok((ans, Some(old))) = &answer {
            if ans.status == 404 && method != "initialize" {
                answer = match self.reopen(old).await {
                    Ok(()) => self.post(line).await,
                    Err(e) => Err(e),
                };
            }
        }
        let ans = match answer {
            Ok((ans, _)) => ans,
            Err(e) => {
                let why = format!("lost the corral daemon: {e}");
                if let Some(id) = id {
                    self.reply_error(id, INTERNAL_ERROR, &why);
                }
                let _ = self.fatal.send(why);
                return;
            }
        };
        if method == "initialize" {
            let version = ans
                .messages
                .first()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
                .and_then(|v| v["result"]["protocolVersion"].as_str().map(str::to_string));
            let mut s = self.session.lock().await;
            s.id = ans.session_id.clone();
            s.version = version;
        }
        let empty = ans.messages.is_empty();
        for m in ans.messages {
            let _ = self.out.send(m);
        }
        if let (true, Some(id)) = (empty && !(200..300).contains(&ans.status), id) {
            let why = if ans.other.is_empty() {
                format!("the daemon answered HTTP {}", ans.status)
            } else {
                format!("the daemon answered HTTP {}: {}", ans.status, ans.other)
            };
            self.reply_error(id, INTERNAL_ERROR, &why);
        }
    }

    /// The daemon does not know session `old`: open a new one with the client's own
    /// handshake (unless another request already did).
    async fn reopen(&self, old: &str) -> Result<(), ClientError> {
        let mut s = self.session.lock().await;
        if s.id.as_deref() != Some(old) {
            return Ok(());
        }
        let Some(init) = s.initialize.clone() else {
            return Ok(());
        };
        let ans = self.client.mcp_post(None, None, init.as_bytes()).await?;
        s.id = ans.session_id;
        if let (Some(id), Some(done)) = (&s.id, &s.initialized) {
            self.client
                .mcp_post(Some(id), s.version.as_deref(), done.as_bytes())
                .await?;
        }
        eprintln!("corral mcp: the daemon had lost the MCP session; opened a new one");
        Ok(())
    }
}

//! The MCP server: tools/list and tools/call for one caller. The caller is the API key
//! that the /mcp request was authenticated with (auth.rs put it in the HTTP request's
//! extensions; rmcp hands those to every request it serves). Every call goes through
//! [`McpHandler::gate`] before it runs, then to the same Manager calls the HTTP
//! handlers make, within the caller's tenant.

use std::sync::Arc;

use axum::http::request::Parts;
use corral_types::api::{
    ExecRequest, NetworkRequest, ResourcesRequest, RunCodeRequest, SandboxCreateRequest,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::tools::{self, Builtin, CommandLine, SideEffect};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::exec::run_code_to_exec;
use crate::AppState;

/// `read_file` returns at most this much unless asked for less.
const READ_DEFAULT_BYTES: u64 = 256 << 10;
/// ... and never more than this: a tool result goes into a model's context.
const READ_MAX_BYTES: u64 = 1 << 20;

/// One per MCP session (rmcp makes one per session from the factory).
#[derive(Debug, Clone)]
pub(crate) struct McpHandler {
    st: Arc<AppState>,
}

impl McpHandler {
    pub(crate) fn new(st: Arc<AppState>) -> McpHandler {
        McpHandler { st }
    }

    /// Governance: decides whether `caller` may call `tool` (class `class`) with
    /// `args`. Every tool call passes here, and only here, before it runs.
    ///
    /// The builtin tools act only inside the caller's own tenant through the same
    /// Manager calls as the HTTP API, which the same key may already make; the
    /// governance pipeline (policy, kill switches, budgets, audit) plugs in here.
    async fn gate(
        &self,
        _caller: &Caller,
        _tool: Builtin,
        _class: SideEffect,
        _args: &JsonObject,
    ) -> Result<(), CallToolResult> {
        Ok(())
    }

    async fn run_builtin(
        &self,
        caller: &Caller,
        tool: Builtin,
        args: Option<&JsonObject>,
    ) -> Result<CallToolResult, McpError> {
        let m = &self.st.manager;
        let t = caller.tenant.as_str();
        let invalid = |e: String| McpError::invalid_params(e, None);
        let out = match tool {
            Builtin::CreateSandbox => {
                let i: tools::CreateSandboxInput = tools::parse(args).map_err(invalid)?;
                // Only the mode over MCP; any other network setting keeps its default.
                #[allow(clippy::needless_update)]
                let network = NetworkRequest {
                    mode: i.network.unwrap_or_default(),
                    ..NetworkRequest::default()
                };
                let req = SandboxCreateRequest {
                    template: i.template,
                    timeout_s: i.timeout_s,
                    resources: ResourcesRequest {
                        memory: i.memory,
                        cpus: i.cpus,
                        ..ResourcesRequest::default()
                    },
                    network,
                    env: i.env,
                    metadata: i.metadata,
                    ..SandboxCreateRequest::default()
                };
                m.create(t, &caller.quota, req).await.map(|sb| {
                    let text = format!(
                        "sandbox {} is {} (template {}, expires {})",
                        sb.id,
                        sb.state.as_str(),
                        sb.template,
                        sb.expires_at
                    );
                    structured(text, &sb)
                })
            }
            Builtin::RunCode => {
                let i: tools::RunCodeInput = tools::parse(args).map_err(invalid)?;
                let req = run_code_to_exec(RunCodeRequest {
                    language: i.language,
                    code: i.code,
                    env: i.env,
                    cwd: i.cwd,
                    timeout_s: i.timeout_s,
                });
                m.exec(t, &i.sandbox_id, req).await.map(run_result)
            }
            Builtin::ExecCommand => {
                let i: tools::ExecCommandInput = tools::parse(args).map_err(invalid)?;
                let cmd = match i.cmd {
                    CommandLine::Argv(v) if v.is_empty() => {
                        return Err(invalid("invalid arguments: cmd is an empty list".into()))
                    }
                    CommandLine::Argv(v) => v,
                    CommandLine::Shell(s) => vec!["sh".into(), "-c".into(), s],
                };
                let req = ExecRequest {
                    cmd,
                    env: i.env,
                    cwd: i.cwd,
                    stdin: i.stdin,
                    timeout_s: i.timeout_s,
                    ..ExecRequest::default()
                };
                m.exec(t, &i.sandbox_id, req).await.map(run_result)
            }
            Builtin::ReadFile => {
                let i: tools::ReadFileInput = tools::parse(args).map_err(invalid)?;
                let limit = i.max_bytes.unwrap_or(READ_DEFAULT_BYTES);
                if limit == 0 || limit > READ_MAX_BYTES {
                    return Err(invalid(format!(
                        "invalid arguments: max_bytes must be from 1 to {READ_MAX_BYTES}"
                    )));
                }
                match m.read_file(t, &i.sandbox_id, &i.path).await {
                    Ok((file, size)) => {
                        let mut buf = Vec::new();
                        match file.take(limit).read_to_end(&mut buf).await {
                            Ok(_) => Ok(file_text(&i.path, size, &buf)),
                            Err(e) => Ok(tool_error(
                                "io_error",
                                &format!("cannot read {}: {e}", i.path),
                            )),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Builtin::WriteFile => {
                let i: tools::WriteFileInput = tools::parse(args).map_err(invalid)?;
                m.write_file(t, &i.sandbox_id, &i.path, i.content.as_bytes())
                    .await
                    .map(|n| {
                        structured(
                            format!("wrote {n} bytes to {}", i.path),
                            &json!({"path": i.path, "size_bytes": n}),
                        )
                    })
            }
            Builtin::ListFiles => {
                let i: tools::ListFilesInput = tools::parse(args).map_err(invalid)?;
                let path = i.path.unwrap_or_else(|| "/".into());
                m.list_files(t, &i.sandbox_id, &path).await.map(|list| {
                    let mut text = String::new();
                    for e in &list.entries {
                        let kind = serde_json::to_value(e.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        text.push_str(&format!("{kind}\t{}\t{}\n", e.size, e.name));
                    }
                    if text.is_empty() {
                        text = format!("{} is empty", list.path);
                    }
                    structured(text, &list)
                })
            }
            Builtin::KillSandbox => {
                let i: tools::KillSandboxInput = tools::parse(args).map_err(invalid)?;
                m.delete(t, &i.sandbox_id).await.map(|()| {
                    structured(
                        format!("sandbox {} killed", i.sandbox_id),
                        &json!({"sandbox_id": i.sandbox_id, "killed": true}),
                    )
                })
            }
        };
        Ok(out.unwrap_or_else(|e| {
            // Same code and message as the HTTP API; internal causes go to the log only.
            let e = ApiError::from(e);
            tool_error(e.code, &e.message)
        }))
    }
}

/// The key this request came with; /mcp is behind the key middleware, so a request
/// without one never gets here (fail closed if it somehow does).
fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    ctx.extensions
        .get::<Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| McpError::invalid_request("no authenticated caller for this request", None))
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("corral", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "corral runs code in isolated, disposable Linux sandboxes. Call \
                 create_sandbox first, pass its id to run_code, exec_command and the file \
                 tools, and kill_sandbox when done (sandboxes also expire on their own).",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        caller(&ctx)?;
        Ok(ListToolsResult::with_all_items(
            tools::BUILTINS.into_iter().map(Builtin::tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(&ctx)?;
        let Some(tool) = Builtin::from_name(&request.name) else {
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool {:?}; tools/list shows the tools",
                    request.name
                ),
                None,
            ));
        };
        let args = request.arguments.unwrap_or_default();
        if let Err(denied) = self.gate(&caller, tool, tool.side_effect(), &args).await {
            return Ok(denied.into());
        }
        Ok(self.run_builtin(&caller, tool, Some(&args)).await?.into())
    }
}

/// A result with the object as structured content and `text` for the model.
fn structured<T: serde::Serialize>(text: String, value: &T) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(serde_json::to_value(value).unwrap_or(Value::Null));
    r
}

/// exec and run_code: the RunResult as structured content; the text leads with the
/// exit status, then each non-empty stream.
fn run_result(r: corral_types::RunResult) -> CallToolResult {
    let mut text = if r.timed_out {
        format!(
            "timed out after {} ms (exit_code {})",
            r.duration_ms, r.exit_code
        )
    } else if r.oom_killed {
        format!("killed: out of memory (exit_code {})", r.exit_code)
    } else {
        format!("exit_code: {}", r.exit_code)
    };
    for (name, s, cut) in [
        ("stdout", &r.stdout, r.stdout_truncated),
        ("stderr", &r.stderr, r.stderr_truncated),
    ] {
        if !s.is_empty() {
            let more = if cut { " (truncated)" } else { "" };
            text.push_str(&format!("\n--- {name}{more} ---\n{s}"));
        }
    }
    structured(text, &r)
}

fn file_text(path: &str, size: u64, bytes: &[u8]) -> CallToolResult {
    let content = String::from_utf8_lossy(bytes).into_owned();
    let truncated = (bytes.len() as u64) < size;
    let mut r = CallToolResult::success(vec![ContentBlock::text(content.clone())]);
    r.structured_content = Some(json!({
        "path": path,
        "size_bytes": size,
        "content": content,
        "truncated": truncated,
        "lossy_utf8": std::str::from_utf8(bytes).is_err(),
    }));
    r
}

/// A tool error: the model sees `code: message`; structured content is the same
/// `{"error": {"code", "message"}}` shape as the HTTP API.
pub(crate) fn tool_error(code: &str, message: &str) -> CallToolResult {
    let mut r = CallToolResult::error(vec![ContentBlock::text(format!("{code}: {message}"))]);
    r.structured_content = Some(json!({"error": {"code": code, "message": message}}));
    r
}

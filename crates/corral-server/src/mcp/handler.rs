//! The MCP server: tools/list and tools/call for one caller. The caller is the API key
//! that the /mcp request was authenticated with (auth.rs put it in the HTTP request's
//! extensions; rmcp hands those to every request it serves). A call's arguments are
//! checked against the tool's type first (a violation is a JSON-RPC error), then
//! governance decides (govern.rs), then the same Manager calls as the HTTP handlers
//! run it, within the caller's tenant.

use std::sync::Arc;

use axum::http::request::Parts;
use corral_types::api::{
    ExecRequest, NetworkRequest, ResourcesRequest, RunCodeRequest, SandboxCreateRequest,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::govern::{self, Gate, STATUS_TOOL};
use super::tools::{self, Builtin, BuiltinCall, CommandLine, READ_DEFAULT_BYTES};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::exec::run_code_to_exec;
use crate::AppState;

/// One per MCP session (rmcp makes one per session from the factory).
#[derive(Debug, Clone)]
pub(crate) struct McpHandler {
    st: Arc<AppState>,
}

impl McpHandler {
    pub(crate) fn new(st: Arc<AppState>) -> McpHandler {
        McpHandler { st }
    }

    /// Runs a checked, authorized builtin call.
    async fn run_builtin(&self, caller: &Caller, call: BuiltinCall) -> CallToolResult {
        let m = &self.st.manager;
        let t = caller.tenant.as_str();
        let out = match call {
            BuiltinCall::CreateSandbox(i) => {
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
            BuiltinCall::RunCode(i) => {
                let req = run_code_to_exec(RunCodeRequest {
                    language: i.language,
                    code: i.code,
                    env: i.env,
                    cwd: i.cwd,
                    timeout_s: i.timeout_s,
                });
                m.exec(t, &i.sandbox_id, req).await.map(run_result)
            }
            BuiltinCall::ExecCommand(i) => {
                let cmd = match i.cmd {
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
            BuiltinCall::ReadFile(i) => {
                let limit = i.max_bytes.unwrap_or(READ_DEFAULT_BYTES);
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
            BuiltinCall::WriteFile(i) => m
                .write_file(t, &i.sandbox_id, &i.path, i.content.as_bytes())
                .await
                .map(|n| {
                    structured(
                        format!("wrote {n} bytes to {}", i.path),
                        &json!({"path": i.path, "size_bytes": n}),
                    )
                }),
            BuiltinCall::ListFiles(i) => {
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
            BuiltinCall::KillSandbox(i) => m.delete(t, &i.sandbox_id).await.map(|()| {
                structured(
                    format!("sandbox {} killed", i.sandbox_id),
                    &json!({"sandbox_id": i.sandbox_id, "killed": true}),
                )
            }),
        };
        out.unwrap_or_else(|e| {
            // Same code and message as the HTTP API; internal causes go to the log only.
            let e = ApiError::from(e);
            tool_error(e.code, &e.message)
        })
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

/// The trace id of the HTTP request's W3C `traceparent` header, for the audit log.
fn trace_id(ctx: &RequestContext<RoleServer>) -> Option<String> {
    let tp = ctx
        .extensions
        .get::<Parts>()?
        .headers
        .get("traceparent")?
        .to_str()
        .ok()?;
    let id = tp.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("corral", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "corral runs code in isolated, disposable Linux sandboxes and calls approved \
                 actions (capabilities) under policy. Call create_sandbox first, pass its id \
                 to run_code, exec_command and the file tools, and kill_sandbox when done \
                 (sandboxes also expire on their own). A call that needs an operator's \
                 approval answers pending with an id: poll get_call_status, then repeat \
                 the same call.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = caller(&ctx)?;
        Ok(ListToolsResult::with_all_items(govern::visible_tools(
            &self.st, &caller,
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(&ctx)?;
        let gctx = govern::context(&caller, trace_id(&ctx));
        // rmcp moves a request's `_meta` into the context; take either.
        let mut meta_obj = (ctx.meta.0).0.clone();
        if let Some(m) = &request.meta {
            for (k, v) in &(m.0).0 {
                meta_obj.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let meta = Some(&meta_obj);
        let task = govern::task_id(meta);
        let args = request.arguments.unwrap_or_default();
        let invalid = |e: String| McpError::invalid_params(e, None);
        if request.name == STATUS_TOOL {
            let id = match args.get("id") {
                Some(Value::String(id)) if args.len() == 1 => id.clone(),
                _ => {
                    return Err(invalid(
                        "invalid arguments: give exactly {\"id\": STRING}".into(),
                    ))
                }
            };
            return Ok(govern::call_status(&self.st, &gctx, &id).into());
        }
        let Some(tool) = Builtin::from_name(&request.name) else {
            // A capability: governance decides and records, visible to this agent or
            // not. A name the catalog does not have is an unknown tool.
            if self.st.policy.catalog().get(&request.name).is_none() {
                return Err(invalid(format!(
                    "unknown tool {:?}; tools/list shows the tools",
                    request.name
                )));
            }
            return Ok(
                govern::call_capability(&self.st, &gctx, &request.name, args, meta)
                    .await
                    .into(),
            );
        };
        let call = tools::parse_call(tool, Some(&args)).map_err(invalid)?;
        match govern::authorize(&self.st, &gctx, tool, &args, task.as_deref()).await {
            Gate::Refused(r) => Ok(r.into()),
            Gate::Run(call_id) => {
                let r = self.run_builtin(&caller, call).await;
                govern::record(&self.st, &gctx, &call_id, tool, task.as_deref(), &r);
                Ok(r.into())
            }
        }
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

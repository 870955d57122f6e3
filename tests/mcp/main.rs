//! MCP end to end: the official SDK's client (rmcp) against a real `corral serve`,
//! over stdio through `corral mcp` and over streamable HTTP at /mcp; plus frames no
//! SDK would send, wrong keys, session limits and a daemon that is not there.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub, dead_code)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../daemon/harness.rs"]
mod harness;

mod frames;
mod govern;
mod killswitch;

use std::process::Stdio;

use harness::Daemon;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

pub(crate) type Mcp = RunningService<RoleClient, ()>;

/// `corral mcp` against `d` with `key`, as an agent host would start it.
async fn stdio(d: &Daemon, key: &str) -> Mcp {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["mcp", "--url", &format!("http://{}", d.addr), "--key", key])
        .stderr(Stdio::inherit());
    ().serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap()
}

/// The daemon's /mcp over streamable HTTP.
pub(crate) async fn http(d: &Daemon, key: &str) -> Mcp {
    let cfg = StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", d.addr))
        .auth_header(key.to_string());
    ().serve(StreamableHttpClientTransport::from_config(cfg))
        .await
        .unwrap()
}

pub(crate) async fn call(c: &Mcp, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
    let args = args.as_object().cloned().unwrap_or_default();
    c.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
}

/// A successful call's structured content.
pub(crate) async fn ok(c: &Mcp, tool: &str, args: Value) -> Value {
    let r = call(c, tool, args.clone()).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{tool} {args}: {r:?}");
    assert!(!r.content.is_empty(), "{tool}: a text part for the model");
    r.structured_content.unwrap()
}

pub(crate) fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tool<'a>(tools: &'a [Tool], name: &str) -> &'a Tool {
    tools
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

/// Every builtin tool through one client, end to end.
async fn every_tool(c: &Mcp) {
    let tools = c.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "create_sandbox",
            "exec_command",
            "get_call_status",
            "kill_sandbox",
            "list_files",
            "read_file",
            "run_code",
            "write_file"
        ]
    );
    // Schemas are typed objects; hints come from corral's side-effect classes.
    let run = tool(&tools, "run_code");
    assert_eq!(run.input_schema["type"], "object");
    let required = run.input_schema["required"].as_array().unwrap();
    for f in ["sandbox_id", "language", "code"] {
        assert!(required.contains(&json!(f)), "run_code requires {f}");
    }
    let read = tool(&tools, "read_file").annotations.clone().unwrap();
    assert_eq!(read.read_only_hint, Some(true));
    let exec = tool(&tools, "exec_command").annotations.clone().unwrap();
    assert_eq!(
        (
            exec.read_only_hint,
            exec.destructive_hint,
            exec.idempotent_hint
        ),
        (Some(false), Some(false), None)
    );
    let kill = tool(&tools, "kill_sandbox").annotations.clone().unwrap();
    assert_eq!(kill.idempotent_hint, Some(true));
    assert_eq!(
        tool(&tools, "write_file").meta.as_ref().unwrap().0["corral/side_effect"],
        "write_limited"
    );

    let sb = ok(c, "create_sandbox", json!({"timeout_s": 120})).await;
    let id = sb["id"].as_str().unwrap().to_string();
    assert_eq!(sb["state"], "running");

    for (language, code, want) in [
        ("python", "print(6*7)", "42\n"),
        ("javascript", "console.log(6*7)", "42\n"),
        ("bash", "echo $((6*7)); echo oops >&2; exit 3", "42\n"),
    ] {
        let r = ok(
            c,
            "run_code",
            json!({"sandbox_id": id, "language": language, "code": code}),
        )
        .await;
        assert_eq!(r["stdout"], want, "{language}: {r}");
        if language == "bash" {
            assert_eq!(r["exit_code"], 3);
            assert_eq!(r["stderr"], "oops\n");
        } else {
            assert_eq!(r["exit_code"], 0, "{language}: {r}");
        }
    }

    let r = ok(
        c,
        "exec_command",
        json!({"sandbox_id": id, "cmd": ["sh", "-c", "echo \"$A\"; pwd"], "env": {"A": "x"}, "cwd": "/tmp"}),
    )
    .await;
    assert_eq!(r["stdout"], "x\n/tmp\n");
    let r = ok(
        c,
        "exec_command",
        json!({"sandbox_id": id, "cmd": "cat | tr a-z A-Z", "stdin": "hello"}),
    )
    .await;
    assert_eq!(r["stdout"], "HELLO");
    let r = ok(
        c,
        "exec_command",
        json!({"sandbox_id": id, "cmd": "sleep 5", "timeout_s": 1}),
    )
    .await;
    assert_eq!(r["timed_out"], true);

    let w = ok(
        c,
        "write_file",
        json!({"sandbox_id": id, "path": "/tmp/a.txt", "content": "hello\nworld"}),
    )
    .await;
    assert_eq!(w["size_bytes"], 11);
    let f = ok(
        c,
        "read_file",
        json!({"sandbox_id": id, "path": "/tmp/a.txt"}),
    )
    .await;
    assert_eq!(
        (&f["content"], &f["truncated"]),
        (&json!("hello\nworld"), &json!(false))
    );
    let f = ok(
        c,
        "read_file",
        json!({"sandbox_id": id, "path": "/tmp/a.txt", "max_bytes": 5}),
    )
    .await;
    assert_eq!(
        (&f["content"], &f["truncated"]),
        (&json!("hello"), &json!(true))
    );
    let l = ok(c, "list_files", json!({"sandbox_id": id, "path": "/tmp"})).await;
    let names: Vec<&str> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"a.txt"), "{l}");

    // A failing tool is a tool error the model can read, not a protocol error.
    let r = call(
        c,
        "write_file",
        json!({"sandbox_id": id, "path": "/tmp/no/such/dir", "content": ""}),
    )
    .await
    .unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let r = call(
        c,
        "run_code",
        json!({"sandbox_id": "sb-00000000000000000000", "language": "bash", "code": "true"}),
    )
    .await
    .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("not_found: "), "{}", text(&r));
    assert_eq!(r.structured_content.unwrap()["error"]["code"], "not_found");

    // Arguments that break the schema, and unknown tools, are JSON-RPC errors.
    for (name, args) in [
        (
            "run_code",
            json!({"sandbox_id": id, "language": "cobol", "code": "x"}),
        ),
        ("exec_command", json!({"sandbox_id": id})),
        ("exec_command", json!({"sandbox_id": id, "cmd": []})),
        ("kill_sandbox", json!({"sandbox_id": id, "force": true})),
        (
            "read_file",
            json!({"sandbox_id": id, "path": "/tmp/a.txt", "max_bytes": 0}),
        ),
        ("format_disk", json!({})),
    ] {
        match call(c, name, args.clone()).await {
            Err(ServiceError::McpError(e)) => {
                assert_eq!(e.code.0, -32602, "{name} {args}: {e:?}");
                assert!(!e.message.is_empty());
            }
            other => panic!("{name} {args}: {other:?}"),
        }
    }

    let k = ok(c, "kill_sandbox", json!({"sandbox_id": id})).await;
    assert_eq!(k["killed"], true);
    ok(c, "kill_sandbox", json!({"sandbox_id": id})).await;
    let r = call(
        c,
        "exec_command",
        json!({"sandbox_id": id, "cmd": ["true"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.is_error, Some(true), "a killed sandbox runs nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_bridge_serves_every_tool() {
    let d = Daemon::start(0);
    let c = stdio(&d, &d.key).await;
    let info = c.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "corral");
    every_tool(&c).await;
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoint_serves_every_tool_within_the_tenant() {
    let d = Daemon::start(0);
    let c = http(&d, &d.key).await;
    every_tool(&c).await;

    // Another tenant's key sees none of this tenant's sandboxes.
    let sb = ok(&c, "create_sandbox", json!({})).await;
    let id = sb["id"].as_str().unwrap();
    let other = http(&d, &d.tenant_key("other")).await;
    let r = call(
        &other,
        "exec_command",
        json!({"sandbox_id": id, "cmd": ["true"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("not_found: "), "{}", text(&r));
    let r = call(&other, "kill_sandbox", json!({"sandbox_id": id}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    ok(
        &c,
        "exec_command",
        json!({"sandbox_id": id, "cmd": ["true"]}),
    )
    .await;
    ok(&c, "kill_sandbox", json!({"sandbox_id": id})).await;
    other.cancel().await.unwrap();
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_bridge_without_a_daemon_or_with_a_bad_key_exits_125() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .args([
            "mcp",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--key",
            "crl_x",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corral serve"), "{err}");
    assert!(out.stdout.is_empty());

    let d = Daemon::start(0);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .args([
            "mcp",
            "--url",
            &format!("http://{}", d.addr),
            "--key",
            "crl_wrong",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the API key"), "{err}");
}

//! What no SDK sends: bytes that are not JSON, messages that are not JSON-RPC, wrong
//! keys, other keys' sessions, too many sessions; over HTTP and through `corral mcp`.
//! Every one gets a JSON-RPC error (or 401), and the daemon keeps serving.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::{Daemon, Resp};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"frames","version":"1"}}}"#;

fn post(d: &Daemon, key: &str, session: Option<&str>, body: &[u8]) -> Resp {
    let auth = format!("Bearer {key}");
    let mut h = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        h.push(("Mcp-Session-Id", s));
    }
    d.raw("POST", "/mcp", &h, Some(body))
        .expect("POST /mcp: connection failed")
}

/// The JSON-RPC messages of an answer (a JSON body or an event stream).
fn messages(r: &Resp) -> Vec<Value> {
    let text = r.text();
    if r.header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        vec![serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))]
    }
}

fn rpc_error(r: &Resp) -> (Value, i64) {
    let m = messages(r);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0]["jsonrpc"], "2.0", "{}", m[0]);
    let code = m[0]["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {}", m[0]));
    assert!(m[0]["error"]["message"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    (m[0]["id"].clone(), code)
}

/// Opens a session; returns its id.
fn initialize(d: &Daemon, key: &str) -> String {
    let r = post(d, key, None, INIT.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let m = messages(&r);
    assert!(m[0]["result"]["protocolVersion"].is_string(), "{m:?}");
    let sid = r
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let r = post(
        d,
        key,
        Some(&sid),
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    sid
}

#[test]
fn http_frames_keys_and_sessions_are_checked() {
    let d = Daemon::start(0);
    // Keys first: none, wrong, revoked-looking.
    let r = d
        .raw(
            "POST",
            "/mcp",
            &[("Content-Type", "application/json")],
            Some(INIT.as_bytes()),
        )
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(post(&d, "crl_wrong", None, INIT.as_bytes()).status, 401);

    // Not JSON, not JSON-RPC, not one message: JSON-RPC errors, 400.
    let cases: [(&[u8], i64, Value); 7] = [
        (b"{not json", -32700, Value::Null),
        (b"", -32700, Value::Null),
        (
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            -32600,
            Value::Null,
        ),
        (br#""hello""#, -32600, Value::Null),
        (
            br#"{"jsonrpc":"1.0","id":5,"method":"ping"}"#,
            -32600,
            json!(5),
        ),
        (br#"{"jsonrpc":"2.0","id":6,"method":7}"#, -32600, json!(6)),
        (
            br#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
            -32600,
            json!({"x": 1}),
        ),
    ];
    for (body, code, id) in cases {
        let r = post(&d, &d.key, None, body);
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert_eq!(
            rpc_error(&r),
            (id, code),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    let r = post(&d, &d.key, None, big.as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(rpc_error(&r).1, -32600);

    // Inside a session: unknown methods and malformed params are JSON-RPC errors.
    let sid = initialize(&d, &d.key);
    let r = post(
        &d,
        &d.key,
        Some(&sid),
        br#"{"jsonrpc":"2.0","id":2,"method":"no/such"}"#,
    );
    assert_eq!(rpc_error(&r), (json!(2), -32601), "{}", r.text());
    let r = post(
        &d,
        &d.key,
        Some(&sid),
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":"run_code"}"#,
    );
    assert_eq!(rpc_error(&r).1, -32600, "{}", r.text());
    let r = post(
        &d,
        &d.key,
        Some(&sid),
        br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"run_code","arguments":{"code":1}}}"#,
    );
    assert_eq!(rpc_error(&r), (json!(4), -32602), "{}", r.text());
    let r = post(
        &d,
        &d.key,
        Some(&sid),
        br#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
    );
    assert_eq!(
        messages(&r)[0]["result"]["tools"].as_array().unwrap().len(),
        8
    );

    // A session belongs to its key; unknown ones are 404 (the client re-initializes).
    let other = d.tenant_key("other");
    let r = post(
        &d,
        &other,
        Some(&sid),
        br#"{"jsonrpc":"2.0","id":6,"method":"tools/list"}"#,
    );
    assert_eq!(r.status, 404);
    assert_eq!(rpc_error(&r).1, -32600);
    let r = post(
        &d,
        &d.key,
        Some("nope"),
        br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    );
    assert_eq!(r.status, 404);

    // At most 16 sessions per key; closing one frees a slot; other keys unaffected.
    let mut open = vec![sid];
    while open.len() < 16 {
        open.push(initialize(&d, &d.key));
    }
    let r = post(&d, &d.key, None, INIT.as_bytes());
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(rpc_error(&r), (json!(1), -32600));
    initialize(&d, &other);
    let auth = format!("Bearer {}", d.key);
    let gone = open.pop().unwrap();
    let r = d
        .raw(
            "DELETE",
            "/mcp",
            &[("Authorization", &auth), ("Mcp-Session-Id", &gone)],
            None,
        )
        .unwrap();
    assert!(r.status < 300, "{} {}", r.status, r.text());
    initialize(&d, &d.key);

    assert_eq!(d.raw("GET", "/v1/health", &[], None).unwrap().status, 200);
}

#[test]
fn stdio_bridge_answers_bad_lines_and_keeps_going() {
    let d = Daemon::start(0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .args([
            "mcp",
            "--url",
            &format!("http://{}", d.addr),
            "--key",
            &d.key,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    {
        let mut send = |line: &str| -> Option<Value> {
            writeln!(stdin, "{line}").unwrap();
            stdin.flush().unwrap();
            if !line.contains("\"id\"") && serde_json::from_str::<Value>(line).is_ok() {
                return None; // a notification: no answer
            }
            let mut out = String::new();
            stdout.read_line(&mut out).unwrap();
            Some(serde_json::from_str(&out).unwrap_or_else(|_| panic!("not JSON: {out:?}")))
        };
        let e = send("this is not json").unwrap();
        assert_eq!(
            (&e["id"], &e["error"]["code"]),
            (&Value::Null, &json!(-32700))
        );
        let init = send(INIT).unwrap();
        assert_eq!(init["id"], 1);
        assert_eq!(init["result"]["serverInfo"]["name"], "corral", "{init}");
        send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let e = send(r#"[{"jsonrpc":"2.0","id":2,"method":"ping"}]"#).unwrap();
        assert_eq!(e["error"]["code"], -32600, "{e}");
        let e = send(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run_code","arguments":{"language":"cobol"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (&e["id"], &e["error"]["code"]),
            (&json!(3), &json!(-32602)),
            "{e}"
        );
        let e = send(r#"{"jsonrpc":"2.0","id":"four","method":"no/such"}"#).unwrap();
        assert_eq!(
            (&e["id"], &e["error"]["code"]),
            (&json!("four"), &json!(-32601)),
            "{e}"
        );
        let ok = send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#).unwrap();
        assert_eq!(ok["result"]["tools"].as_array().unwrap().len(), 8, "{ok}");
    }
    drop(stdin);
    let st = child.wait().unwrap();
    assert!(st.success(), "EOF on stdin ends the bridge cleanly: {st}");
}

#[test]
fn stdio_bridge_reports_a_daemon_that_went_away_and_exits_125() {
    let mut d = Daemon::start(0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .args([
            "mcp",
            "--url",
            &format!("http://{}", d.addr),
            "--key",
            &d.key,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "{INIT}").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"result\""), "{line}");
    d.stop();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}"#).unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&e["id"], &e["error"]["code"]),
        (&json!(2), &json!(-32603)),
        "{e}"
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("lost the corral daemon"));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lost the corral daemon"));
}

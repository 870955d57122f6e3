//! The interactive terminal: `GET /v1/sandboxes/{id}/pty` over WebSocket. Binary
//! frames carry terminal bytes both ways, a text frame `{"resize": {rows, cols}}`
//! resizes, and the server's last text frame is `{"exit": RunResult}` before it closes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::Message;

use crate::harness::{ws_connect, Daemon, Ws};

/// What the terminal printed and the server's text frames.
#[derive(Default)]
struct Screen {
    bytes: String,
    texts: Vec<Value>,
    closed: bool,
}

impl Screen {
    /// Reads frames until `pred` holds on what arrived (or the socket closes).
    fn read_until(&mut self, ws: &mut Ws, what: &str, pred: impl Fn(&Screen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pred(self) {
            assert!(
                !self.closed,
                "socket closed before {what}; terminal output: {:?}",
                self.bytes
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; terminal output: {:?}",
                self.bytes
            );
            match ws.read() {
                Ok(Message::Binary(b)) => self.bytes.push_str(&String::from_utf8_lossy(&b)),
                Ok(Message::Text(t)) => self.texts.push(
                    serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("text frame is not JSON ({e}): {t}")),
                ),
                Ok(Message::Close(_)) => self.closed = true,
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => self.closed = true,
                Err(e) => panic!("reading the terminal before {what}: {e}"),
            }
        }
    }
}

fn send(ws: &mut Ws, s: &str) {
    ws.send(Message::Binary(s.as_bytes().to_vec().into()))
        .unwrap();
}

fn resize(ws: &mut Ws, rows: u16, cols: u16) {
    let m = json!({"resize": {"rows": rows, "cols": cols}}).to_string();
    ws.send(Message::Text(m.into())).unwrap();
}

#[test]
fn pty_runs_a_shell_on_a_terminal_resizes_and_closes_at_exit() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let mut ws = ws_connect(
        &d,
        &format!("/v1/sandboxes/{id}/pty?rows=30&cols=90"),
        Some(&d.key),
    )
    .unwrap_or_else(|(s, b)| panic!("pty refused: {s} {b}"));
    let mut scr = Screen::default();
    // Markers built by the shell, so the terminal's echo of the input never matches.
    send(&mut ws, "echo R=$((6*7)); tty; echo S=$(stty size)=S\n");
    scr.read_until(&mut ws, "the arithmetic", |s| s.bytes.contains("R=42"));
    scr.read_until(&mut ws, "the initial size", |s| {
        s.bytes.contains("S=30 90=S")
    });
    assert!(
        scr.bytes.contains("/dev/pts/"),
        "tty did not name a pty: {:?}",
        scr.bytes
    );
    assert!(!scr.bytes.contains("not a tty"), "{:?}", scr.bytes);

    resize(&mut ws, 40, 120);
    send(&mut ws, "echo T=$(stty size)=T\n");
    scr.read_until(&mut ws, "the new size", |s| s.bytes.contains("T=40 120=T"));
    // A text frame that is not a resize is ignored, not fatal.
    ws.send(Message::Text("{\"nonsense\": 1}".into())).unwrap();
    send(&mut ws, "echo U=$((1+1))=U\n");
    scr.read_until(&mut ws, "output after a bad frame", |s| {
        s.bytes.contains("U=2=U")
    });

    send(&mut ws, "exit 7\n");
    scr.read_until(&mut ws, "the socket to close", |s| s.closed);
    assert_eq!(
        scr.texts.len(),
        1,
        "one text frame (the exit) expected: {:?}",
        scr.texts
    );
    let exit = &scr.texts[0]["exit"];
    assert_eq!(exit["exit_code"], 7, "{exit}");
    assert!(exit["signal"].is_null(), "{exit}");

    // The sandbox is still usable afterwards and nothing of the shell is left.
    let r = d.exec(&id, &["sh", "-c", "echo still-here"]);
    assert_eq!(r["stdout"], "still-here\n");
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
    d.assert_clean(0);
}

#[test]
fn pty_runs_the_requested_command() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let mut ws = ws_connect(
        &d,
        &format!("/v1/sandboxes/{id}/pty?cmd=sh%20-c%20tty;false"),
        Some(&d.key),
    )
    .unwrap_or_else(|(s, b)| panic!("pty refused: {s} {b}"));
    let mut scr = Screen::default();
    scr.read_until(&mut ws, "the command to end", |s| s.closed);
    assert!(scr.bytes.contains("/dev/pts/"), "{:?}", scr.bytes);
    assert_eq!(scr.texts.len(), 1, "{:?}", scr.texts);
    // cmd is split on whitespace: `sh -c tty;false`, whose status is false's.
    assert_eq!(scr.texts[0]["exit"]["exit_code"], 1, "{:?}", scr.texts);
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn pty_client_going_away_hangs_the_terminal_up() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let mut ws = ws_connect(&d, &format!("/v1/sandboxes/{id}/pty"), Some(&d.key))
        .unwrap_or_else(|(s, b)| panic!("pty refused: {s} {b}"));
    let mut scr = Screen::default();
    send(&mut ws, "echo V=$((2+3))=V; exec sleep 4242\n");
    scr.read_until(&mut ws, "the shell", |s| s.bytes.contains("V=5=V"));
    let sleeping = || {
        let r = d.exec(
            &id,
            &[
                "sh",
                "-c",
                "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done",
            ],
        );
        r["stdout"].as_str().unwrap().contains("sleep 4242")
    };
    d.wait_for("the terminal's sleep to start", sleeping);
    drop(ws);
    d.wait_for("the hung-up terminal's process to end", || !sleeping());
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn pty_refusals_are_json_errors() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let path = format!("/v1/sandboxes/{id}/pty");

    let (status, body) = ws_connect(&d, &path, None).expect_err("upgraded without a key");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unauthenticated"), "{body}");
    let (status, body) =
        ws_connect(&d, &path, Some("crl_nope")).expect_err("upgraded with a wrong key");
    assert_eq!(status, 401, "{body}");

    let ghost = "/v1/sandboxes/sb-00000000000000000000/pty";
    let (status, body) =
        ws_connect(&d, ghost, Some(&d.key)).expect_err("upgraded for an unknown sandbox");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not_found"), "{body}");

    // Another tenant's sandbox does not exist for it.
    let agent = d.tenant_key("other");
    let (status, body) =
        ws_connect(&d, &path, Some(&agent)).expect_err("upgraded for another tenant's sandbox");
    assert_eq!(status, 404, "{body}");

    // A bad query and a plain GET (no upgrade) are 400s in the JSON shape.
    let (status, body) = ws_connect(&d, &format!("{path}?rows=lots"), Some(&d.key))
        .expect_err("upgraded with rows=lots");
    assert_eq!(status, 400, "{body}");
    let (status, body) = ws_connect(&d, &format!("{path}?bogus=1"), Some(&d.key))
        .expect_err("upgraded with an unknown query parameter");
    assert_eq!(status, 400, "{body}");
    d.call("GET", &path, None).assert_error(400);

    // A paused sandbox cannot start a terminal: a conflict, not a hang or a 500.
    let p = d.call("POST", &format!("/v1/sandboxes/{id}/pause"), None);
    assert_eq!(p.status, 200, "{}", p.text());
    let (status, body) =
        ws_connect(&d, &path, Some(&d.key)).expect_err("upgraded on a paused sandbox");
    assert_eq!(status, 409, "{body}");
    d.call("POST", &format!("/v1/sandboxes/{id}/resume"), None);

    // A deleted one: 409 (it exists, stopped), as for exec.
    d.call("DELETE", &path[..path.len() - 4], None);
    let (status, body) =
        ws_connect(&d, &path, Some(&d.key)).expect_err("upgraded on a deleted sandbox");
    assert_eq!(status, 409, "{body}");
}

#[test]
fn pty_of_a_missing_command_reports_127() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let path = format!("/v1/sandboxes/{id}/pty?cmd=no-such-command-xyz");
    // It starts, says so on the terminal and ends at once with 127, as exec reports a
    // missing command.
    let mut ws = ws_connect(&d, &path, Some(&d.key)).unwrap_or_else(|(s, b)| panic!("{s} {b}"));
    let mut scr = Screen::default();
    scr.read_until(&mut ws, "the terminal to close", |s| s.closed);
    assert!(scr.bytes.contains("no-such-command-xyz"), "{:?}", scr.bytes);
    assert_eq!(scr.texts.len(), 1, "{:?} {:?}", scr.texts, scr.bytes);
    assert_eq!(scr.texts[0]["exit"]["exit_code"], 127, "{:?}", scr.texts);
    // The sandbox is unharmed.
    assert_eq!(d.exec(&id, &["true"])["exit_code"], 0);
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn deleting_the_sandbox_closes_its_terminal() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    let mut ws = ws_connect(&d, &format!("/v1/sandboxes/{id}/pty"), Some(&d.key))
        .unwrap_or_else(|(s, b)| panic!("pty refused: {s} {b}"));
    let mut scr = Screen::default();
    send(&mut ws, "echo W=$((3*3))=W\n");
    scr.read_until(&mut ws, "the shell", |s| s.bytes.contains("W=9=W"));
    let del = d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(del.status, 204, "{}", del.text());
    // The socket ends (a hang would time out in read_until).
    scr.read_until(&mut ws, "the socket to close after the delete", |s| {
        s.closed
    });
    d.assert_clean(0);
}

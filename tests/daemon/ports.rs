//! Exposed ports: a service listening inside a sandbox reached through the daemon
//! (`/v1/sandboxes/{id}/ports/{port}/...`, HTTP and WebSocket) and through
//! `corral sandbox port-forward` (the raw tunnel route). The service is a small
//! python server the test starts inside the sandbox; every connection stays on the
//! host's loopback and the sandbox's own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::Message;

use crate::harness::{ws_connect, Daemon, Resp};

/// The port the service listens on inside the sandbox (its own network namespace, so
/// a fixed number collides with nothing).
pub const PORT: u16 = 8000;

/// An HTTP/1.1 server for any method: it answers JSON describing the request (method,
/// path, headers, body length and SHA-256), `/big?n=N` with N bytes, `/status/N` with
/// that status, and upgrades `Upgrade: websocket` to an echo (`echo:` + each message).
pub const SERVICE: &str = r#"
import base64, hashlib, json, struct, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def answer(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/big?n="):
            size = int(self.path.split("=")[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            while size:
                k = min(size, len(chunk))
                self.wfile.write(chunk[:k])
                size -= k
            return
        status = 200
        if self.path.startswith("/status/"):
            status = int(self.path.split("/")[2])
        out = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("X-Service", "inside")
        self.end_headers()
        self.wfile.write(out)
    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        r = self.rfile
        while True:
            h = r.read(2)
            if len(h) < 2:
                return
            op, n = h[0] & 15, h[1] & 127
            if n == 126:
                n = struct.unpack(">H", r.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", r.read(8))[0]
            mask = r.read(4) if h[1] & 128 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
            if op == 8:
                self.wfile.write(b"\x88\x00")
                return
            if op in (1, 2):
                data = b"echo:" + data
                head = bytes([0x80 | op])
                if len(data) < 126:
                    head += bytes([len(data)])
                else:
                    head += bytes([126]) + struct.pack(">H", len(data))
                self.wfile.write(head + data)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Starts [`SERVICE`] in sandbox `id` on [`PORT`] and waits until it answers through
/// the daemon.
pub fn start_service(d: &Daemon, id: &str) {
    let r = d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({"cmd": ["python3", "-c", SERVICE, PORT.to_string()], "background": true})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let path = format!("/v1/sandboxes/{id}/ports/{PORT}/ready");
    d.wait_for("the service inside the sandbox to listen", || {
        d.call("GET", &path, None).status == 200
    });
}

fn get(d: &Daemon, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let auth = format!("Bearer {}", d.key);
    let mut h = vec![("Authorization", auth.as_str())];
    h.extend_from_slice(headers);
    d.raw(if body.is_some() { "POST" } else { "GET" }, path, &h, body)
        .unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn http_reaches_a_service_inside_a_sandbox_without_network() {
    let d = Daemon::start(0);
    let id = d.create(json!({"network": {"mode": "none"}}));
    start_service(&d, &id);
    let base = format!("/v1/sandboxes/{id}/ports/{PORT}");

    // GET: the service sees its own path and query, the caller's headers but not the
    // corral key, Host rewritten, the prefix it is served under.
    let r = get(
        &d,
        &format!("{base}/hello/w%20x?q=1&r"),
        &[("X-Custom", "abc")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-service"), Some("inside"));
    let v = r.json();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/hello/w%20x?q=1&r");
    let h = &v["headers"];
    assert_eq!(h["x-custom"], "abc", "{v}");
    assert!(
        h.get("authorization").is_none(),
        "the key reached the sandbox: {v}"
    );
    assert_eq!(h["host"], format!("127.0.0.1:{PORT}"));
    assert_eq!(h["x-forwarded-prefix"], base);
    assert_eq!(h["x-forwarded-host"], d.addr);
    assert!(!d.key.is_empty() && !r.text().contains(&d.key));

    // The bare prefix is the service's root.
    let r = get(&d, &format!("{base}/"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/");

    // A 3 MiB body up, an 8 MiB body down, both streamed.
    let up: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let r = get(
        &d,
        &format!("{base}/upload"),
        &[("Content-Type", "application/octet-stream")],
        Some(&up),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["method"], "POST");
    assert_eq!(r.json()["body_len"], up.len());
    assert_eq!(r.json()["body_sha256"], sha256_hex(&up));
    let r = get(&d, &format!("{base}/big?n={}", 8 << 20), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 8 << 20);
    assert!(r.body.iter().all(|b| *b == b'x'));

    // Every method, and the service's own status codes, pass through.
    let auth = format!("Bearer {}", d.key);
    for m in ["PUT", "PATCH", "DELETE"] {
        let r = d
            .raw(
                m,
                &format!("{base}/m"),
                &[("Authorization", &auth)],
                Some(b"b"),
            )
            .unwrap();
        assert_eq!(r.status, 200, "{m}: {}", r.text());
        assert_eq!(r.json()["method"], m);
        assert_eq!(r.json()["body_len"], 1);
    }
    let r = get(&d, &format!("{base}/status/418"), &[], None);
    assert_eq!(r.status, 418);
    assert_eq!(r.json()["path"], "/status/418");

    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
    d.assert_clean(0);
}

#[test]
fn websockets_errors_and_pause_through_the_port_route() {
    let d = Daemon::start(0);
    let id = d.create(json!({}));
    start_service(&d, &id);
    let base = format!("/v1/sandboxes/{id}/ports/{PORT}");

    // A WebSocket round trip, text and binary, then a clean close.
    let mut ws = ws_connect(&d, &format!("{base}/ws"), Some(&d.key)).unwrap();
    ws.send(Message::Text("hi".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("echo:hi".into()));
    let blob: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    ws.send(Message::Binary(blob.clone().into())).unwrap();
    let mut want = b"echo:".to_vec();
    want.extend_from_slice(&blob);
    assert_eq!(ws.read().unwrap(), Message::Binary(want.into()));
    ws.close(None).unwrap();
    let t0 = Instant::now();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => assert!(t0.elapsed() < Duration::from_secs(10)),
        }
    }

    // Another tenant's key: the sandbox does not exist for it.
    let other = d.tenant_key("t-ports");
    let r = d.call_as(&other, "GET", &format!("{base}/x"), None);
    r.assert_error(404);
    assert_eq!(
        ws_connect(&d, &format!("{base}/ws"), Some(&other))
            .err()
            .map(|(s, _)| s),
        Some(404)
    );
    // No key at all.
    let r = d.raw("GET", &format!("{base}/x"), &[], None).unwrap();
    r.assert_error(401);

    // Nothing listening: 502 that says so.
    let r = d.call("GET", &format!("/v1/sandboxes/{id}/ports/8001/x"), None);
    r.assert_error(502);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&format!(
            "nothing is listening on port 8001 inside sandbox {id}"
        )),
        "{msg}"
    );
    // Bad ports: 400.
    for bad in ["0", "65536", "http"] {
        let r = d.call("GET", &format!("/v1/sandboxes/{id}/ports/{bad}/"), None);
        assert_eq!(r.assert_error(400), "invalid_argument", "{bad}");
    }
    // The tunnel route refuses a request that does not ask to upgrade.
    let r = d.call("GET", &format!("/v1/sandboxes/{id}/tunnel/{PORT}"), None);
    r.assert_error(400);

    // Paused: 409 that says to resume; resumed: served again.
    let r = d.call("POST", &format!("/v1/sandboxes/{id}/pause"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.call("GET", &format!("{base}/x"), None);
    r.assert_error(409);
    assert!(r.text().contains("paused"), "{}", r.text());
    d.call("POST", &format!("/v1/sandboxes/{id}/resume"), None);
    assert_eq!(d.call("GET", &format!("{base}/x"), None).status, 200);

    // Deleted: no longer reachable.
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
    let r = d.call("GET", &format!("{base}/x"), None);
    assert!(r.status == 404 || r.status == 409, "{}", r.text());
    d.assert_clean(0);
}

#[test]
fn a_service_in_an_open_sandbox_is_reachable_too() {
    let d = Daemon::start(0);
    let id = d.create(json!({"network": {"mode": "open"}}));
    start_service(&d, &id);
    let r = d.call(
        "GET",
        &format!("/v1/sandboxes/{id}/ports/{PORT}/open"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/open");
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
    d.assert_clean(0);
}

/// `corral sandbox port-forward ID 0:PORT` against `d`, its stdout's first line read:
/// the child and the local address it listens on.
fn port_forward(
    d: &Daemon,
    id: &str,
    remote: u16,
) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CORRAL_URL", format!("http://{}", d.addr))
        .env("CORRAL_API_KEY", &d.key)
        .args(["sandbox", "port-forward", id, &format!("0:{remote}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // "Forwarding from 127.0.0.1:PORT -> ID:REMOTE"
    let addr = line
        .strip_prefix("Forwarding from ")
        .and_then(|l| l.split(" -> ").next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    assert!(
        line.trim_end().ends_with(&format!("-> {id}:{remote}")),
        "{line}"
    );
    (child, addr, out)
}

/// Waits (bounded) for `child` to exit; its status and stderr.
fn wait_exit(child: &mut Child, within: Duration) -> (std::process::ExitStatus, String) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st, err);
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            panic!("port-forward did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.0 GET over a plain connection to `addr`.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn port_forward_carries_connections_until_ctrl_c_or_the_sandbox_goes() {
    let d = Daemon::start(0);
    let id = d.create(json!({"network": {"mode": "none"}}));
    start_service(&d, &id);

    let (mut child, addr, _out) = port_forward(&d, &id, PORT);
    // Several connections, two at once.
    let a = std::thread::spawn({
        let addr = addr.clone();
        move || http_get(&addr, "/pf-a")
    });
    let b = http_get(&addr, "/pf-b");
    let a = a.join().unwrap();
    for (resp, path) in [(&a, "/pf-a"), (&b, "/pf-b")] {
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains(&format!("\"path\": \"{path}\"")), "{resp}");
    }
    // Ctrl-C ends it cleanly.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let (st, err) = wait_exit(&mut child, Duration::from_secs(10));
    assert!(st.success(), "{st}: {err}");

    // Nothing listening on the remote port: the local connection is closed and the
    // reason printed; forwarding goes on. Then the sandbox is deleted: port-forward
    // ends with an error that says so.
    let (mut child, addr, _out) = port_forward(&d, &id, 8001);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    assert!(child.try_wait().unwrap().is_none(), "port-forward exited");
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
    let (st, err) = wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(st.code(), Some(125), "{err}");
    assert!(
        err.contains("nothing is listening on port 8001"),
        "the refused connection was not explained: {err}"
    );
    assert!(
        err.contains(&format!("sandbox {id}")) && err.contains("port-forward stopped"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // A sandbox that is not there: one clean line, nothing bound.
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .env("CORRAL_URL", format!("http://{}", d.addr))
        .env("CORRAL_API_KEY", &d.key)
        .args(["sandbox", "port-forward", "sb-00000000000000000000", "0:80"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("corral: ") && err.contains("not_found"),
        "{err}"
    );
    d.assert_clean(0);
}

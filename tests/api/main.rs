//! The API's auth, tenants, keys, errors and OpenAPI document against a real
//! `corral serve` on loopback (port 0, its own data dir). No sandbox is created here:
//! sandbox operations are covered by tests/daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Daemon {
    child: Child,
    addr: String,
    admin: String,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM, as a service manager would; then make sure.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Daemon {
    start_in(tempfile::tempdir().unwrap())
}

impl Daemon {
    /// Stops this daemon (SIGTERM) and starts another on the same data dir.
    fn restart(mut self) -> Daemon {
        let dir = self.dir.take().unwrap();
        drop(self);
        start_in(dir)
    }
}

fn start_in(dir: tempfile::TempDir) -> Daemon {
    let data = dir.path().join("data");
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\npool_size = 0\ncgroup_parent = \"corral-api-test-{}\"\nruntime_dir = \"{}\"\n",
            std::process::id(),
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr_file = data.join("listen.addr");
    // A previous daemon's address is stale.
    let _ = std::fs::remove_file(&addr_file);
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Ok(s) = std::fs::read_to_string(&addr_file) {
            if s.ends_with('\n') {
                break s.trim().to_string();
            }
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let admin = read_admin_key(&data);
    Daemon {
        child,
        addr,
        admin,
        dir: Some(dir),
    }
}

fn read_admin_key(data: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = data.join("admin-key");
    if !file.exists() {
        return String::new();
    }
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::read_to_string(file).unwrap().trim().to_string()
}

struct Resp {
    status: u16,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A JSON error with this status; returns its code.
    fn error(&self, status: u16) -> String {
        let v = self.json();
        assert_eq!(self.status, status, "{v}");
        assert!(
            !v["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{v}"
        );
        v["error"]["code"].as_str().unwrap().to_string()
    }
}

/// One request on its own connection (`Connection: close`); the raw way, so tests
/// can send what no typed client would.
fn req(
    d: &Daemon,
    method: &str,
    path: &str,
    key: Option<&str>,
    ct: Option<&str>,
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        d.addr,
        body.len()
    );
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(ct) = ct {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading everything.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Resp { status, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 4 + n..];
    }
}

fn post_json(d: &Daemon, path: &str, key: Option<&str>, v: Value) -> Resp {
    req(
        d,
        "POST",
        path,
        key,
        Some("application/json"),
        v.to_string().as_bytes(),
    )
}

#[test]
fn auth_tenants_keys_and_errors() {
    let d = start();
    let admin = Some(d.admin.as_str());

    // Health and the document need no key.
    let r = req(&d, "GET", "/v1/health", None, None, b"");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    let r = req(&d, "GET", "/v1/openapi.json", None, None, b"");
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let checked_in: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(doc, checked_in, "the served document is the checked-in one");

    // Everything else does.
    for key in [None, Some("crl_0000"), Some("")] {
        let r = req(&d, "GET", "/v1/sandboxes", key, None, b"");
        assert_eq!(r.error(401), "unauthenticated");
    }
    assert_eq!(
        req(&d, "GET", "/metrics", None, None, b"").error(401),
        "unauthenticated"
    );

    // Tenants.
    let r = post_json(&d, "/v1/tenants", admin, json!({"name": "team-a"}));
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(r.json()["name"], "team-a");
    assert_eq!(
        post_json(&d, "/v1/tenants", admin, json!({"name": "team-a"})).error(409),
        "conflict"
    );
    assert_eq!(
        post_json(&d, "/v1/tenants", admin, json!({"name": "Bad_Name"})).error(400),
        "invalid_argument"
    );
    let r = req(&d, "GET", "/v1/tenants", admin, None, b"");
    assert_eq!(r.json()["tenants"].as_array().unwrap().len(), 2);

    // Keys: create, use, role checks, revoke.
    let r = post_json(
        &d,
        "/v1/keys",
        admin,
        json!({"tenant": "team-a", "role": "agent", "name": "bot"}),
    );
    assert_eq!(r.status, 201);
    let secret = r.json()["secret"].as_str().unwrap().to_string();
    let id = r.json()["key"]["id"].as_str().unwrap().to_string();
    let agent = Some(secret.as_str());
    assert_eq!(req(&d, "GET", "/metrics", agent, None, b"").status, 200);
    assert_eq!(
        req(&d, "GET", "/v1/keys", agent, None, b"").error(403),
        "permission_denied"
    );
    assert_eq!(
        post_json(&d, "/v1/tenants", agent, json!({"name": "x"})).error(403),
        "permission_denied"
    );
    let r = req(&d, "GET", "/v1/keys", admin, None, b"");
    assert!(
        !String::from_utf8_lossy(&r.body).contains(&secret),
        "no secret in listings"
    );
    assert_eq!(
        post_json(
            &d,
            "/v1/keys",
            admin,
            json!({"tenant": "nope", "role": "agent"})
        )
        .error(404),
        "not_found"
    );
    assert_eq!(
        req(&d, "DELETE", &format!("/v1/keys/{id}"), admin, None, b"").status,
        204
    );
    assert_eq!(
        req(&d, "GET", "/metrics", agent, None, b"").error(401),
        "unauthenticated"
    );
    assert_eq!(
        req(
            &d,
            "DELETE",
            "/v1/keys/key-0000000000000000",
            admin,
            None,
            b""
        )
        .error(404),
        "not_found"
    );

    // Bad input: JSON errors, never a 500.
    let bad: &[(Option<&str>, &[u8])] = &[
        (Some("application/json"), b"{nope"),
        (Some("application/json"), br#"{"name": "x", "extra": 1}"#),
        (Some("application/json"), br#"{"name": 1}"#),
        (Some("application/json"), b""),
        (None, br#"{"name": "x"}"#),
        (Some("text/plain"), br#"{"name": "x"}"#),
    ];
    for (ct, body) in bad {
        let r = req(&d, "POST", "/v1/tenants", admin, *ct, body);
        assert_eq!(
            r.error(400),
            "invalid_argument",
            "{ct:?} {:?}",
            String::from_utf8_lossy(body)
        );
    }
    let huge = format!(r#"{{"name": "{}"}}"#, "a".repeat(2 << 20));
    let r = req(
        &d,
        "POST",
        "/v1/tenants",
        admin,
        Some("application/json"),
        huge.as_bytes(),
    );
    assert_eq!(r.error(413), "payload_too_large");
    assert_eq!(
        req(&d, "GET", "/v1/nope", admin, None, b"").error(404),
        "not_found"
    );
    assert_eq!(
        req(&d, "GET", "/nope", None, None, b"").error(404),
        "not_found"
    );
    assert_eq!(
        req(&d, "PATCH", "/v1/sandboxes", admin, None, b"").error(405),
        "method_not_allowed"
    );
    assert_eq!(
        req(&d, "POST", "/v1/health", None, None, b"").error(405),
        "method_not_allowed"
    );
    assert_eq!(
        req(&d, "GET", "/v1/sandboxes?limit=0", admin, None, b"").error(400),
        "invalid_argument"
    );
    assert_eq!(
        req(
            &d,
            "GET",
            "/v1/sandboxes/sb-00000000000000000000",
            admin,
            None,
            b""
        )
        .error(404),
        "not_found"
    );

    // The HTTP layer counts by route template.
    let r = req(&d, "GET", "/metrics", admin, None, b"");
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains(r#"route="/v1/keys/{id}""#), "{text}");
}

#[test]
fn a_restart_keeps_keys_and_makes_no_second_admin_key() {
    let d = start();
    let first = d.admin.clone();
    let data = d.dir.as_ref().unwrap().path().join("data");
    std::fs::remove_file(data.join("admin-key")).unwrap();
    let d = d.restart();
    assert!(d.admin.is_empty(), "no second admin key on a used data dir");
    let r = req(&d, "GET", "/v1/keys", Some(&first), None, b"");
    assert_eq!(r.status, 200, "the first admin key still works");
}

//! A real `corral serve` per test: its own data dir, runtime dir, cgroup parent and
//! loopback port; a small blocking HTTP/1.1 client (so bad-input tests can send bytes
//! no typed client would); and leak checks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::common::{cgroup_roots, Env};

/// A running daemon.
pub struct Daemon {
    pub env: Env,
    pub child: Option<Child>,
    pub addr: String,
    pub key: String,
    pub config: PathBuf,
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[allow(dead_code)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a JSON error body with a code and a non-empty message.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {v}"));
        assert!(
            !v["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{v}"
        );
        code.to_string()
    }
}

impl Daemon {
    /// Starts a daemon with a warm pool of `pool` sandboxes.
    pub fn start(pool: usize) -> Daemon {
        Self::start_with(pool, "")
    }

    /// Starts a daemon with extra corral.toml lines.
    pub fn start_with(pool: usize, extra: &str) -> Daemon {
        let env = Env::new();
        let config = env.state.path().join("corral.toml");
        std::fs::write(
            &config,
            format!(
                "pool_size = {pool}\ncgroup_parent = \"{}\"\nruntime_dir = \"{}\"\nhealth_interval_s = 1\n{extra}\n",
                env.cgroup_parent,
                env.runtime.path().display()
            ),
        )
        .unwrap();
        let mut d = Daemon {
            env,
            child: None,
            addr: String::new(),
            key: String::new(),
            config,
        };
        d.spawn();
        d.key = std::fs::read_to_string(d.data_dir().join("admin-key"))
            .unwrap()
            .trim()
            .to_string();
        d
    }

    pub fn data_dir(&self) -> PathBuf {
        self.env.state.path().join("data")
    }

    fn spawn(&mut self) {
        let addr_file = self.data_dir().join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(["serve", "--data-dir"])
            .arg(self.data_dir())
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                if !a.trim().is_empty() {
                    self.addr = a.trim().to_string();
                    break;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("corral serve exited early: {st}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "corral serve did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The listener is up once the address is written; wait for health anyway.
        for _ in 0..100 {
            if self.raw("GET", "/v1/health", &[], None).map(|r| r.status) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("corral serve never answered /v1/health");
    }

    /// `kill -9` the daemon (its sandboxes live on).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again on the same data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM and wait: a graceful shutdown.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "daemon ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request; None when the connection failed.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Option<Resp> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).ok()?;
        if let Some(b) = body {
            // A server may answer (413) before reading everything.
            let _ = s.write_all(b);
        }
        read_response(BufReader::new(s))
    }

    /// An authenticated request with the admin key (or `key`).
    pub fn call_as(&self, key: &str, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let auth = format!("Bearer {key}");
        let mut h = vec![("Authorization", auth.as_str())];
        if bytes.is_some() {
            h.push(("Content-Type", "application/json"));
        }
        self.raw(method, path, &h, bytes.as_deref())
            .unwrap_or_else(|| panic!("{method} {path}: connection failed"))
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        self.call_as(&self.key.clone(), method, path, body)
    }

    /// Creates a sandbox and returns its id.
    pub fn create(&self, body: Value) -> String {
        let r = self.call("POST", "/v1/sandboxes", Some(&body));
        assert_eq!(r.status, 201, "create: {}", r.text());
        r.json()["id"].as_str().unwrap().to_string()
    }

    /// Runs a command to completion.
    pub fn exec(&self, id: &str, cmd: &[&str]) -> Value {
        let r = self.call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(&serde_json::json!({ "cmd": cmd })),
        );
        assert_eq!(r.status, 200, "exec {cmd:?}: {}", r.text());
        r.json()
    }

    /// Creates a tenant with an agent key; returns the key's secret.
    pub fn tenant_key(&self, name: &str) -> String {
        let r = self.call(
            "POST",
            "/v1/tenants",
            Some(&serde_json::json!({ "name": name })),
        );
        assert!(r.status == 201 || r.status == 200, "tenant: {}", r.text());
        let r = self.call(
            "POST",
            "/v1/keys",
            Some(&serde_json::json!({ "tenant": name, "role": "agent" })),
        );
        assert_eq!(r.status, 201, "key: {}", r.text());
        r.json()["secret"].as_str().unwrap().to_string()
    }

    /// Waits until `f` holds (bounded).
    pub fn wait_for(&self, what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Cgroups of this daemon's sandboxes still present.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for root in cgroup_roots()
            .into_iter()
            .chain([PathBuf::from("/sys/fs/cgroup/freezer")])
        {
            let parent = root.join(&self.env.cgroup_parent);
            if let Ok(rd) = std::fs::read_dir(&parent) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        out.push(e.path());
                    }
                }
            }
        }
        out
    }

    /// Control sockets left in the data dir.
    pub fn leftover_sockets(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.data_dir().join("sockets"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Asserts nothing of this daemon's sandboxes is left, allowing `live` sandboxes
    /// (the warm pool's, say) to remain.
    pub fn assert_clean(&self, live: usize) {
        self.wait_for("sandbox resources to be released", || {
            let cg = self.leftover_cgroups();
            let per_controller = cgroup_roots().len().max(1);
            cg.len() <= live * (per_controller + 1) && self.leftover_sockets().len() <= live
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

fn read_response(mut r: BufReader<TcpStream>) -> Option<Resp> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                let _ = r.read_line(&mut end);
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).ok()?;
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else {
        r.read_to_end(&mut body).ok()?;
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// Reads a streamed (chunked) response line by line, calling `f` with each line and
/// the time it arrived.
pub fn stream_lines(d: &Daemon, path: &str, body: &Value, mut f: impl FnMut(&str, Instant)) -> u16 {
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let b = serde_json::to_vec(body).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nAccept: application/x-ndjson\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        d.key,
        b.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(&b).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
    }
    let mut pending = String::new();
    loop {
        let mut size = String::new();
        if r.read_line(&mut size).unwrap_or(0) == 0 {
            break;
        }
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        let mut chunk = vec![0; n];
        r.read_exact(&mut chunk).unwrap();
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).unwrap();
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = pending.find('\n') {
            let l: String = pending.drain(..=i).collect();
            if !l.trim().is_empty() {
                f(l.trim(), Instant::now());
            }
        }
    }
    status
}

/// A WebSocket through the daemon.
pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Opens a WebSocket at `path` with `key` (None: no Authorization header); the
/// handshake's HTTP status and error body when the server refused to upgrade.
pub fn ws_connect(d: &Daemon, path: &str, key: Option<&str>) -> Result<Ws, (u16, String)> {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}{path}", d.addr)
        .into_client_request()
        .unwrap();
    if let Some(k) = key {
        req.headers_mut().insert(
            "authorization",
            tungstenite::http::HeaderValue::from_str(&format!("Bearer {k}")).unwrap(),
        );
    }
    let stream = TcpStream::connect(&d.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    match tungstenite::client(req, stream) {
        Ok((ws, resp)) => {
            assert_eq!(resp.status().as_u16(), 101);
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

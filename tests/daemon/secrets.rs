//! Secrets against a real daemon: the API never returns a value; a sandbox created
//! with a secret holds only its placeholder (env, /proc/self/environ) and trusts
//! corral's CA; its HTTPS request to the secret's host reaches the test's own server
//! (in a network namespace the test created, with its own test CA the daemon trusts
//! upstream) with the real value, while the same placeholder toward another allowed
//! host is blocked and recorded.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::egress_fixture::{wait_tcp, Upstream};
use crate::harness::Daemon;

const VALUE: &str = "sk-live-7c1d0e5f-the-real-value";

/// An HTTPS echo server for api.test/web.test on port 8444 in the upstream's
/// namespace: it appends `path|authorization` to DIR/seen.log and answers with the
/// Authorization it saw (body and X-Echo-Auth), as a careless API would.
const ECHO: &str = r#"
import http.server, ssl, sys
d, addr = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        a = self.headers.get("Authorization", "")
        with open(d + "/seen.log", "a") as f: f.write(self.path + "|" + a + "\n")
        b = ("auth=" + a + "\n").encode()
        self.send_response(200); self.send_header("X-Echo-Auth", a)
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer((addr, 8444), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(d + "/srv.pem", d + "/srv.key")
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#;

struct Echo(Child);

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo(up: &Upstream) -> Echo {
    let child = Command::new("ip")
        .args(["netns", "exec", &up.ns, "python3", "-c", ECHO])
        .arg(up.dir())
        .arg(up.addr())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let e = Echo(child);
    wait_tcp(&format!("{}:8444", up.addr()));
    e
}

fn start(up: &Upstream) -> Daemon {
    let k = up.addr().split('.').nth(2).unwrap().to_string();
    Daemon::start_with(
        0,
        &format!(
            "[network]\ncidr = \"10.206.{k}.0/24\"\npool_size = 0\nupstream_ca = \"{}\"\n{}\n",
            up.ca_path().display(),
            up.resolve_toml()
        ),
    )
}

fn sh(d: &Daemon, id: &str, script: &str) -> (i64, String, String) {
    let v = d.exec(id, &["sh", "-c", script]);
    (
        v["exit_code"].as_i64().unwrap_or(-1),
        v["stdout"].as_str().unwrap_or("").to_string(),
        v["stderr"].as_str().unwrap_or("").to_string(),
    )
}

fn put(d: &Daemon, key: &str, name: &str, body: Value) -> crate::harness::Resp {
    d.call_as(key, "PUT", &format!("/v1/secrets/{name}"), Some(&body))
}

#[test]
fn the_api_stores_secrets_but_never_returns_a_value() {
    let d = Daemon::start(0);
    let body = json!({"value": VALUE, "hosts": ["api.test:8444", "*.example.com"]});
    let r = put(&d, &d.key, "API", body.clone());
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(created["name"], "API");
    assert_eq!(created["hosts"], json!(["api.test:8444", "*.example.com"]));
    assert_eq!(created["header"], "authorization: Bearer {value}");
    let ph = created["placeholder"].as_str().unwrap().to_string();
    assert!(ph.starts_with("corral-secret-API-"), "{ph}");
    // Replacing keeps the placeholder (running sandboxes keep working).
    let r = put(
        &d,
        &d.key,
        "API",
        json!({"value": VALUE, "hosts": ["api.test:8444"], "header": "x-api-key: {value}"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["placeholder"], ph.as_str());
    assert_eq!(r.json()["header"], "x-api-key: {value}");
    // No answer carries the value.
    for path in ["/v1/secrets", "/v1/secrets/API"] {
        let r = d.call("GET", path, None);
        assert_eq!(r.status, 200);
        assert!(!r.text().contains(VALUE), "{path}: {}", r.text());
    }
    assert!(!created.to_string().contains(VALUE));
    let list = d.call("GET", "/v1/secrets", None).json();
    assert_eq!(list["secrets"].as_array().unwrap().len(), 1, "{list}");
    // Errors: unknown (404), bad input (400), with messages that say what to do.
    assert_eq!(
        d.call("GET", "/v1/secrets/NOPE", None).assert_error(404),
        "not_found"
    );
    assert_eq!(
        d.call("DELETE", "/v1/secrets/NOPE", None).assert_error(404),
        "not_found"
    );
    for (name, bad) in [
        ("bad-name", json!({"value": "v", "hosts": ["a.test"]})),
        ("B", json!({"value": "v", "hosts": []})),
        ("B", json!({"value": "v", "hosts": ["not a host"]})),
        ("B", json!({"value": "", "hosts": ["a.test"]})),
        ("B", json!({"value": "a\nb", "hosts": ["a.test"]})),
        (
            "B",
            json!({"value": "v", "hosts": ["a.test"], "header": "Authorization: none"}),
        ),
        (
            "B",
            json!({"value": "v", "hosts": ["a.test"], "surprise": 1}),
        ),
    ] {
        let r = put(&d, &d.key, name, bad.clone());
        assert_eq!(r.assert_error(400), "invalid_argument", "{bad}");
    }
    // Tenants are apart; agents use secrets but do not store or remove them.
    let agent = d.tenant_key("other");
    let r = d.call_as(&agent, "GET", "/v1/secrets", None);
    assert_eq!(r.json()["secrets"], json!([]));
    assert_eq!(
        d.call_as(&agent, "GET", "/v1/secrets/API", None)
            .assert_error(404),
        "not_found"
    );
    assert_eq!(
        put(&d, &agent, "MINE", body.clone()).assert_error(403),
        "permission_denied"
    );
    // The store is the daemon's alone.
    let mode = std::fs::metadata(d.data_dir().join("secrets.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Secrets only with mode allow (open would bypass the proxy).
    for net in [json!({"mode": "none"}), json!({"mode": "open"})] {
        let r = d.call(
            "POST",
            "/v1/sandboxes",
            Some(&json!({"network": net, "secrets": ["API"]})),
        );
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert_eq!(r.assert_error(400), "invalid_argument");
        assert!(msg.contains("mode allow"), "{msg}");
    }
    assert_eq!(d.call("DELETE", "/v1/secrets/API", None).status, 204);
    assert_eq!(
        d.call("GET", "/v1/secrets/API", None).assert_error(404),
        "not_found"
    );
}

#[test]
fn a_sandbox_holds_only_the_placeholder_and_the_bound_host_gets_the_value() {
    let up = Upstream::new(0);
    let _echo = echo(&up);
    let d = start(&up);
    let r = put(
        &d,
        &d.key,
        "API",
        json!({"value": VALUE, "hosts": ["api.test:8444"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let ph = r.json()["placeholder"].as_str().unwrap().to_string();
    // An unknown secret is refused before anything is built.
    let r = d.call(
        "POST",
        "/v1/sandboxes",
        Some(
            &json!({"network": {"mode": "allow", "allow": ["api.test:8444"]}, "secrets": ["NOPE"]}),
        ),
    );
    r.assert_error(404);
    let id = d.create(json!({
        "network": {"mode": "allow", "allow": ["api.test:8444", "web.test:8444"]},
        "secrets": ["API"],
    }));

    // Inside: the placeholder, never the value; corral's CA, never its key.
    let (_, env, _) = sh(
        &d,
        &id,
        "echo \"$API\"; tr '\\0' '\\n' < /proc/self/environ",
    );
    assert!(env.starts_with(&format!("{ph}\n")), "{env}");
    assert!(!env.contains(VALUE), "{env}");
    assert!(
        env.contains("SSL_CERT_FILE=/etc/ssl/certs/corral/bundle.pem"),
        "{env}"
    );
    let (code, files, err) = sh(
        &d,
        &id,
        "ls /etc/ssl/certs/corral; cat /etc/ssl/certs/corral/*; touch /etc/ssl/certs/corral/x",
    );
    assert_ne!(code, 0, "the CA directory is read-only: {files}");
    assert!(files.starts_with("bundle.pem\nca.pem\n"), "{files} {err}");
    assert!(files.contains("BEGIN CERTIFICATE") && !files.contains("PRIVATE KEY"));

    // To the bound host: the server sees the value; its echo comes back masked.
    let (code, out, err) = sh(
        &d,
        &id,
        "curl -sS -m 10 -D - -H \"Authorization: Bearer $API\" https://api.test:8444/v1/models",
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("auth=Bearer ****"), "{out}");
    assert!(!out.contains(VALUE) && !err.contains(VALUE), "{out} {err}");
    let seen = std::fs::read_to_string(up.dir().join("seen.log")).unwrap();
    assert_eq!(seen, format!("/v1/models|Bearer {VALUE}\n"));

    // Python's urllib trusts the CA through SSL_CERT_FILE too.
    let (code, out, err) = sh(
        &d,
        &id,
        "python3 -c \"import os, urllib.request as u; r = u.Request('https://api.test:8444/py', \
         headers={'Authorization': 'Bearer ' + os.environ['API']}); \
         print(u.urlopen(r, timeout=10).read().decode())\"",
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("auth=Bearer ****"), "{out}");

    // The same placeholder toward another allowed host: blocked, nothing sent, alerted.
    let (_, out, err) = sh(
        &d,
        &id,
        "curl -sS -m 10 -w '%{http_code}' -H \"Authorization: Bearer $API\" https://web.test:8444/steal",
    );
    assert!(out.ends_with("403"), "{out} {err}");
    assert!(out.contains("placeholder of secret API"), "{out}");
    let seen = std::fs::read_to_string(up.dir().join("seen.log")).unwrap();
    assert_eq!(seen.lines().count(), 2, "{seen}");
    assert!(!seen.contains("/steal"));
    let recs: Value = d
        .call("GET", &format!("/v1/sandboxes/{id}/egress"), None)
        .json();
    let recs = recs["records"].as_array().cloned().unwrap_or_default();
    assert!(
        recs.iter()
            .any(|r| r["host"] == "web.test" && r["allowed"] == false),
        "{recs:?}"
    );
    assert!(!serde_json::to_string(&recs).unwrap().contains(VALUE));
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn a_sandbox_keeps_its_secrets_across_a_daemon_restart() {
    let up = Upstream::new(0);
    let _echo = echo(&up);
    let mut d = start(&up);
    let r = put(
        &d,
        &d.key,
        "API",
        json!({"value": VALUE, "hosts": ["api.test:8444"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = d.create(json!({
        "network": {"mode": "allow", "allow": ["api.test:8444", "web.test:8444"]},
        "secrets": ["API"],
    }));
    // kill -9: the sandbox lives on; the next daemon finds its secret again (from the
    // placeholder in its stored environment) before its proxy serves it.
    d.restart();
    let curl = "curl -sS -m 10 -w ' %{http_code}' -H \"Authorization: Bearer $API\"";
    let (_, out, err) = sh(&d, &id, &format!("{curl} https://api.test:8444/after"));
    assert!(out.ends_with(" 200"), "{out} {err}");
    let (_, out, err) = sh(&d, &id, &format!("{curl} https://web.test:8444/after"));
    assert!(out.ends_with(" 403"), "{out} {err}");
    let seen = std::fs::read_to_string(up.dir().join("seen.log")).unwrap();
    assert_eq!(seen, format!("/after|Bearer {VALUE}\n"));
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

/// `corral secret ...` against `d` with `stdin` fed to it.
fn cli(d: &Daemon, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_corral"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CORRAL_URL", format!("http://{}", d.addr))
        .env("CORRAL_API_KEY", &d.key)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn the_cli_reads_values_from_stdin_or_a_file_never_argv_and_never_prints_them() {
    let d = Daemon::start(0);
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let o = cli(
        &d,
        &[
            "secret",
            "set",
            "GH",
            "--host",
            "api.github.com",
            "--value-stdin",
        ],
        &format!("{VALUE}\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("corral-secret-GH-") && !text(&o).contains(VALUE));
    let file = d.data_dir().join("../gh-token");
    std::fs::write(&file, format!("{VALUE}\n")).unwrap();
    let o = cli(
        &d,
        &[
            "secret",
            "set",
            "GH2",
            "--host",
            "*.github.com:443",
            "--header",
            "Authorization: token {value}",
            "--value-file",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&d, &["secret", "ls"], "");
    let out = text(&o);
    assert!(o.status.success() && out.contains("GH2") && out.contains("*.github.com:443"));
    assert!(!out.contains(VALUE), "{out}");
    // The trailing newline of stdin and of the file was not stored: the value is
    // usable in a header (a newline would have been refused).
    let o = cli(&d, &["secret", "get", "GH", "--json"], "");
    assert!(o.status.success(), "{}", text(&o));
    // No value source, or a value on the command line: refused, nothing stored.
    let o = cli(&d, &["secret", "set", "X", "--host", "a.test"], "");
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(text(&o).contains("--value-stdin"), "{}", text(&o));
    let o = cli(
        &d,
        &["secret", "set", "X", "--host", "a.test", "--value", "v"],
        "",
    );
    assert!(!o.status.success());
    assert_eq!(d.call("GET", "/v1/secrets/X", None).status, 404);
    let o = cli(&d, &["secret", "rm", "GH2"], "");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(d.call("GET", "/v1/secrets/GH2", None).status, 404);
}

//! The official E2B SDKs, unmodified, against a real `corral serve` on loopback:
//! scripts/e2b-sdks.sh installs Python `e2b` 2.x and JS `e2b` from the registries
//! (once; cached under target/), then each SDK runs its scenario file from this
//! directory. Plus bad input the SDKs never send (a malformed Connect RPC).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub, dead_code)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../daemon/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::process::Command;

use harness::Daemon;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn install_sdks() {
    // Once per test process; the script itself also holds a lock across processes.
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| {
        Command::new(root().join("scripts/e2b-sdks.sh"))
            .status()
            .expect("running scripts/e2b-sdks.sh")
            .success()
    });
    assert!(ok, "installing the E2B SDKs failed");
}

/// The SDK's environment: only this daemon (E2B_DOMAIN too, so nothing resolves to
/// e2b.app), and no inherited E2B settings.
fn sdk(cmd: &str, script: &str, d: &Daemon) -> Command {
    let mut c = Command::new(cmd);
    c.arg(root().join("tests/e2b").join(script));
    for (k, _) in std::env::vars() {
        if k.starts_with("E2B_") {
            c.env_remove(k);
        }
    }
    c.env("E2B_API_URL", format!("http://{}/e2b", d.addr))
        .env("E2B_SANDBOX_URL", format!("http://{}/e2b/sandbox", d.addr))
        .env("E2B_API_KEY", &d.key)
        .env("E2B_DOMAIN", &d.addr)
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy");
    c
}

fn run_scenario(mut c: Command) {
    let out = c.output().expect("running the SDK scenario");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("SCENARIO PASSED"),
        "scenario failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

#[test]
fn python_sdk_scenario() {
    install_sdks();
    let d = Daemon::start(2);
    let py = root().join("target/e2b-venv/bin/python");
    run_scenario(sdk(py.to_str().unwrap(), "scenario.py", &d));
}

#[test]
fn js_sdk_scenario() {
    install_sdks();
    let d = Daemon::start(2);
    let mut c = sdk("node", "scenario.cjs", &d);
    c.env("NODE_PATH", root().join("target/e2b-node/node_modules"));
    run_scenario(c);
}

#[test]
fn malformed_rpc_and_bad_headers_get_e2b_errors() {
    let d = Daemon::start(0);
    let created = d
        .raw(
            "POST",
            "/e2b/v2/sandboxes",
            &[("X-API-Key", &d.key), ("Content-Type", "application/json")],
            Some(br#"{"templateID":"base"}"#),
        )
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let v = created.json();
    let id = v["sandboxID"].as_str().unwrap().to_string();
    assert_eq!(v["templateID"], "host");
    let token = v["envdAccessToken"].as_str().unwrap().to_string();
    let hdrs = |ct: &'static str| {
        vec![
            ("X-Access-Token", token.clone()),
            ("E2b-Sandbox-Id", id.clone()),
            ("Content-Type", ct.to_string()),
        ]
    };
    let call = |path: &str, h: Vec<(&'static str, String)>, body: &[u8]| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        d.raw("POST", path, &h, Some(body)).unwrap()
    };
    // Unary: invalid JSON -> invalid_argument.
    let r = call(
        "/e2b/sandbox/filesystem.Filesystem/Stat",
        hdrs("application/json"),
        b"{nope",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid_argument");
    // Binary protobuf is named as unsupported.
    let r = call(
        "/e2b/sandbox/filesystem.Filesystem/Stat",
        hdrs("application/proto"),
        b"\x0a\x01/",
    );
    assert_eq!(r.status, 501);
    assert_eq!(r.json()["code"], "unimplemented");
    assert!(r.json()["message"].as_str().unwrap().contains("protobuf"));
    // Streaming: an envelope whose length lies -> end-of-stream error, HTTP 200.
    let r = call(
        "/e2b/sandbox/process.Process/Start",
        hdrs("application/connect+json"),
        b"\x00\x00\x00\x00\x50{}",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0], 2, "end-of-stream flag");
    let end: serde_json::Value = serde_json::from_slice(&r.body[5..]).unwrap();
    assert_eq!(end["error"]["code"], "invalid_argument");
    // Unknown method, unknown sandbox, unknown route, wrong token.
    let r = call(
        "/e2b/sandbox/process.Process/Nope",
        hdrs("application/json"),
        b"{}",
    );
    assert_eq!(r.json()["code"], "not_found");
    // The sandbox token is scoped: not the API key, and good for its sandbox only
    // (for any other id, known or not, it is simply not a valid token).
    assert!(
        !token.contains(&d.key) && token.starts_with("e2bt_"),
        "{token}"
    );
    let mut h = hdrs("application/json");
    h[1].1 = "sb-00000000000000000000".into();
    let r = call("/e2b/sandbox/process.Process/List", h, b"{}");
    assert_eq!(r.status, 401);
    let mut h = hdrs("application/json");
    h[0].1 = d.key.clone();
    let r = call("/e2b/sandbox/process.Process/List", h, b"{}");
    assert_eq!(r.status, 401, "the API key itself is not a sandbox token");
    let mut h = hdrs("application/json");
    h[0].1 = "crl_wrong".into();
    let r = call("/e2b/sandbox/process.Process/List", h, b"{}");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "unauthenticated");
    let r = d
        .raw("GET", "/e2b/templates", &[("X-API-Key", &d.key)], None)
        .unwrap();
    assert_eq!(r.status, 501);
    assert_eq!(r.json()["code"], 501);
    // Unsupported create options are named.
    let r = d
        .raw(
            "POST",
            "/e2b/v2/sandboxes",
            &[("X-API-Key", &d.key), ("Content-Type", "application/json")],
            Some(br#"{"templateID":"base","autoPause":true}"#),
        )
        .unwrap();
    assert_eq!(r.status, 501);
    assert!(r.json()["message"].as_str().unwrap().contains("autoPause"));
    let r = d
        .raw(
            "DELETE",
            &format!("/e2b/sandboxes/{id}"),
            &[("X-API-Key", &d.key)],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 204);

    // Revoking a key revokes the sandbox tokens issued to it.
    let agent = d.tenant_key("e2b-revoke");
    let c = d
        .raw(
            "POST",
            "/e2b/v2/sandboxes",
            &[("X-API-Key", &agent), ("Content-Type", "application/json")],
            Some(br#"{"templateID":"base"}"#),
        )
        .unwrap();
    assert_eq!(c.status, 201, "{}", c.text());
    let sid = c.json()["sandboxID"].as_str().unwrap().to_string();
    let tok = c.json()["envdAccessToken"].as_str().unwrap().to_string();
    let list = |tok: &str| {
        d.raw(
            "POST",
            "/e2b/sandbox/process.Process/List",
            &[
                ("X-Access-Token", tok),
                ("E2b-Sandbox-Id", &sid),
                ("Content-Type", "application/json"),
            ],
            Some(b"{}"),
        )
        .unwrap()
    };
    assert_eq!(list(&tok).status, 200);
    let keys = d.call("GET", "/v1/keys", None).json();
    let kid = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["tenant"] == "e2b-revoke")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        d.call("DELETE", &format!("/v1/keys/{kid}"), None).status,
        204
    );
    assert_eq!(
        list(&tok).status,
        401,
        "a revoked key's sandbox token still worked"
    );
}

//! Mode `allow` against a real daemon: sandboxes reach the test's own upstream (see
//! egress_fixture.rs) only through corral's egress proxy and resolver, only for the
//! allowed names; every bypass (direct IP, other UDP, ICMP, DNS of a denied name) fails.

use serde_json::{json, Value};

use crate::egress_fixture::Upstream;
use crate::harness::Daemon;

fn start(up: &Upstream, extra: &str) -> Daemon {
    // A pool of the test's own (10.205.K.0/24) so parallel daemons never share one.
    let k = up.addr().split('.').nth(2).unwrap().to_string();
    Daemon::start_with(
        1,
        &format!(
            "[network]\ncidr = \"10.205.{k}.0/24\"\npool_size = 1\n{}\n{extra}",
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

fn allow_sandbox(d: &Daemon, up: &Upstream, allow: &[&str]) -> String {
    let id = d.create(json!({"network": {"mode": "allow", "allow": allow}}));
    let v = d.exec(
        &id,
        &["sh", "-c", "printf '%s' \"$0\" > /tmp/ca.pem", &up.ca_pem()],
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    id
}

#[test]
fn allowed_names_work_with_curl_urllib_and_pip() {
    let up = Upstream::new(1);
    let d = start(&up, "");
    let id = allow_sandbox(&d, &up, &["api.test:8443", "web.test:8080"]);
    let sb: Value = d.call("GET", &format!("/v1/sandboxes/{id}"), None).json();
    assert_eq!(sb["network"], "allow", "{sb}");
    assert_eq!(
        sb["network_allow"],
        json!(["api.test:8443", "web.test:8080"])
    );
    let hello = "hello from upstream";
    for (what, script) in [
        // HTTPS_PROXY: CONNECT api.test:8443.
        (
            "curl explicit https",
            "curl -fsS -m 10 --cacert /tmp/ca.pem https://api.test:8443/",
        ),
        // No proxy: corral's resolver, then transparent interception by SNI.
        (
            "curl transparent https",
            "curl -fsS -m 10 --noproxy '*' --cacert /tmp/ca.pem https://api.test:8443/",
        ),
        (
            "curl explicit http",
            "curl -fsS -m 10 http://web.test:8080/",
        ),
        (
            "curl transparent http",
            "curl -fsS -m 10 --noproxy '*' http://web.test:8080/",
        ),
        (
            "python urllib",
            "SSL_CERT_FILE=/tmp/ca.pem python3 -c \"import urllib.request; \
             print(urllib.request.urlopen('https://api.test:8443/', timeout=10).read().decode())\"",
        ),
    ] {
        let (code, out, err) = sh(&d, &id, script);
        assert_eq!((code, out.trim()), (0, hello), "{what}: {err}");
    }
    // pip-style HTTPS: an index and a wheel through the proxy.
    let (_, out, err) = sh(
        &d,
        &id,
        "cd /tmp && python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check \
         --cert /tmp/ca.pem --index-url https://api.test:8443/simple/ -d /tmp/dl demo==1.0 \
         >/tmp/pip.log 2>&1; echo $?; ls /tmp/dl; tail -3 /tmp/pip.log",
    );
    assert!(
        out.starts_with("0\n") && out.contains("demo-1.0-py3-none-any.whl"),
        "{out} {err}"
    );
    // Every attempt is on the record, with bytes both ways and the deciding rule.
    let recs: Value = d
        .call("GET", &format!("/v1/sandboxes/{id}/egress"), None)
        .json();
    let recs = recs["records"].as_array().cloned().unwrap_or_default();
    assert!(
        recs.iter().any(|r| r["host"] == "api.test"
            && r["via"] == "tls"
            && r["allowed"] == true
            && r["rule"] == "api.test:8443"
            && r["bytes_down"].as_u64().unwrap_or(0) > 0),
        "{recs:?}"
    );
    assert!(
        recs.iter().any(|r| r["host"] == "web.test"
            && r["via"] == "http_proxy"
            && r["method"] == "GET"
            && r["path"] == "/"),
        "{recs:?}"
    );
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn denied_names_and_every_bypass_fail() {
    let up = Upstream::new(1);
    let d = start(&up, "egress_deny = [\"web.test\"]");
    let id = allow_sandbox(
        &d,
        &up,
        &["api.test:8443", "web.test:8080", "localhost:8080"],
    );
    let a = up.addr();
    // A denied name through the explicit proxy: a 403 that says why.
    let (_, out, err) = sh(
        &d,
        &id,
        "curl -sS -m 10 --cacert /tmp/ca.pem https://denied.test:8443/",
    );
    assert!(err.contains("403"), "{out} {err}");
    let (_, out, _) = sh(&d, &id, "curl -sS -m 10 http://denied.test:8080/");
    assert!(out.contains("is not allowed for this sandbox"), "{out}");
    // Deny wins over allow.
    let (_, out, _) = sh(&d, &id, "curl -sS -m 10 http://web.test:8080/");
    assert!(out.contains("denied by the rule web.test"), "{out}");
    // An allowed name on another port.
    let (_, out, _) = sh(&d, &id, "curl -sS -m 10 http://api.test:8080/");
    assert!(out.contains("is not allowed"), "{out}");
    // Rebinding: an allowed name resolving to loopback is refused by the proxy.
    let (_, out, _) = sh(
        &d,
        &id,
        "curl -sS -m 10 --noproxy '' -x \"$HTTP_PROXY\" http://localhost:8080/",
    );
    assert!(out.contains("DNS rebinding protection"), "{out}");
    // Without the proxy: DNS answers only allowed names; direct IPs, UDP and ICMP fail.
    let probe = format!(
        r#"
import json, socket, subprocess
out = {{}}
def t(name, f):
    try: out[name] = f()
    except Exception as e: out[name] = "ERR " + type(e).__name__
t("dns_allowed", lambda: socket.gethostbyname("api.test"))
t("dns_denied", lambda: socket.gethostbyname("denied.test"))
def tcp():
    s = socket.create_connection(("{a}", 9000), timeout=3); s.settimeout(3)
    return s.recv(100).decode() or "empty"
t("tcp_direct", tcp)
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(b"x", ("{a}", 9000)); return s.recv(100).decode()
t("udp_direct", udp)
t("icmp", lambda: subprocess.run(["ping", "-c1", "-W1", "{a}"], capture_output=True).returncode)
print(json.dumps(out))
"#
    );
    let (_, out, err) = sh(
        &d,
        &id,
        &format!("python3 -c '{}'", probe.replace('\'', "'\\''")),
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out} {err}"));
    eprintln!("bypass probes: {v}");
    let host = v["dns_allowed"].as_str().unwrap();
    assert!(
        host.starts_with("10.205."),
        "api.test resolves to the proxy: {v}"
    );
    assert!(v["dns_denied"].as_str().unwrap().starts_with("ERR"), "{v}");
    assert_ne!(v["tcp_direct"], "tcp-ok", "{v}");
    assert!(v["udp_direct"].as_str().unwrap().starts_with("ERR"), "{v}");
    assert_ne!(v["icmp"], 0, "{v}");
    let recs: Value = d
        .call("GET", &format!("/v1/sandboxes/{id}/egress"), None)
        .json();
    let recs = recs["records"].as_array().cloned().unwrap_or_default();
    for (host, via) in [
        ("denied.test", "connect"),
        ("denied.test", "dns"),
        ("localhost", "http_proxy"),
    ] {
        assert!(
            recs.iter()
                .any(|r| r["host"] == host && r["via"] == via && r["allowed"] == false),
            "{host} {via}: {recs:?}"
        );
    }
    // The same decisions are in the audit log (written by a thread of the daemon's, so
    // wait for them), and the chain still verifies.
    let audited = |host: &str, via: &str| {
        let all = d.call("GET", "/v1/audit?limit=1000", None).json();
        all["records"].as_array().unwrap().iter().any(|r| {
            r["kind"] == "egress"
                && r["payload"]["sandbox_id"] == id.as_str()
                && r["payload"]["host"] == host
                && r["payload"]["via"] == via
                && r["payload"]["allowed"] == false
                && r["payload"]["reason"].is_string()
        })
    };
    d.wait_for("egress decisions in the audit log", || {
        audited("denied.test", "connect") && audited("localhost", "http_proxy")
    });
    let v = d.call("GET", "/v1/audit/verify", None).json();
    assert_eq!(v["ok"], true, "{v}");
    // Bad rules are refused with 400.
    let r = d.call(
        "POST",
        "/v1/sandboxes",
        Some(&json!({"network": {"mode": "allow", "allow": ["a.*.com"]}})),
    );
    assert_eq!(r.assert_error(400), "invalid_argument");
    let r = d.call(
        "POST",
        "/v1/sandboxes",
        Some(&json!({"network": {"mode": "allow"}})),
    );
    assert_eq!(r.assert_error(400), "invalid_argument");
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn allow_mode_survives_a_daemon_restart() {
    let up = Upstream::new(1);
    let mut d = start(&up, "");
    let id = allow_sandbox(&d, &up, &["web.test:8080"]);
    let ok = "curl -fsS -m 10 http://web.test:8080/ && curl -fsS -m 10 --noproxy '*' http://web.test:8080/";
    let denied = "curl -sS -m 10 http://api.test:8080/; \
                  python3 -c \"import socket; print(socket.gethostbyname('api.test'))\" 2>&1 | tail -1";
    let (code, out, err) = sh(&d, &id, ok);
    assert_eq!(
        (code, out.matches("hello from upstream").count()),
        (0, 2),
        "{err}"
    );
    // kill -9: the sandbox lives on and the next daemon takes it over, rules included
    // (a new proxy port: the sandbox's HTTP_PROXY still works, as every connection is
    // redirected and the explicit protocol is recognised by its first bytes).
    d.restart();
    let sb: Value = d.call("GET", &format!("/v1/sandboxes/{id}"), None).json();
    assert_eq!(
        (&sb["state"], &sb["network"]),
        (&json!("running"), &json!("allow")),
        "{sb}"
    );
    let (code, out, err) = sh(&d, &id, ok);
    assert_eq!(
        (code, out.matches("hello from upstream").count()),
        (0, 2),
        "{err}"
    );
    let (_, out, _) = sh(&d, &id, denied);
    assert!(
        out.contains("is not allowed") && out.contains("gaierror"),
        "{out}"
    );
    d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
}

#[test]
fn sandboxes_reach_neither_each_other_nor_the_hosts_services() {
    let up = Upstream::new(1);
    let d = start(&up, "");
    let a = allow_sandbox(&d, &up, &["web.test:8080"]);
    let b = allow_sandbox(&d, &up, &["web.test:8080"]);
    // A service in B, and one on every address of the host (loopback and the
    // sandboxes' gateway addresses included).
    let v = d.exec(
        &b,
        &["sh", "-c", "cd /tmp && echo in-b > index.html && (python3 -m http.server 7000 >/dev/null 2>&1 &) ; sleep 0.5"],
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    let host = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let hport = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in host.incoming().flatten() {
            let mut c = c;
            let _ = std::io::Write::write_all(&mut c, b"HTTP/1.0 200 OK\r\n\r\nhost-service");
        }
    });
    let b_addr = sh(
        &d,
        &b,
        "ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1",
    )
    .1;
    let b_addr = b_addr.trim();
    let gw = sh(&d, &a, "ip route show default | awk '{print $3}'").1;
    let gw = gw.trim().to_string();
    for (what, url) in [
        ("the other sandbox", format!("http://{b_addr}:7000/")),
        (
            "the host's gateway address",
            format!("http://{gw}:{hport}/"),
        ),
    ] {
        for proxy in ["", "--noproxy '*'"] {
            let (_, out, err) = sh(&d, &a, &format!("curl -sS -m 5 {proxy} {url}"));
            assert!(
                !out.contains("in-b")
                    && !out.contains("host-service")
                    && out.contains("is not allowed"),
                "{what} {proxy}: {out} {err}"
            );
        }
    }
    // The sandbox's own 127.0.0.1 is its own loopback, never the host's.
    let (_, out, _) = sh(
        &d,
        &a,
        &format!("curl -sS -m 5 http://127.0.0.1:{hport}/ 2>&1"),
    );
    assert!(!out.contains("host-service"), "{out}");
    for id in [a, b] {
        d.call("DELETE", &format!("/v1/sandboxes/{id}"), None);
    }
}

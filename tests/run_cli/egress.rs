//! `corral run --net allow=...`: the run's own egress proxy (a `corral __egress`
//! helper for the run's duration) lets the sandbox reach only the allowed names of
//! the test's upstream (tests/daemon/egress_fixture.rs); bypasses fail.

use crate::common::Env;
use crate::egress_fixture::Upstream;

fn opts(up: &Upstream) -> Vec<String> {
    let a = up.addr();
    vec![
        "--net".into(),
        "allow=api.test:8443,web.test:8080".into(),
        "--egress-resolve".into(),
        format!("api.test={a}"),
        "--egress-resolve".into(),
        format!("web.test={a}"),
        "--egress-resolve".into(),
        format!("denied.test={a}"),
        "--mount".into(),
        format!("{}:/mnt/ca.pem", up.ca_path().display()),
    ]
}

#[test]
fn allow_reaches_allowed_names_only() {
    let up = Upstream::new(1);
    let env = Env::new();
    let a = up.addr();
    let script = format!(
        "curl -fsS -m 10 --cacert /mnt/ca.pem https://api.test:8443/; \
         curl -fsS -m 10 --noproxy '*' --cacert /mnt/ca.pem https://api.test:8443/; \
         curl -fsS -m 10 --noproxy '*' http://web.test:8080/; \
         SSL_CERT_FILE=/mnt/ca.pem python3 -c \"import urllib.request; \
         print(urllib.request.urlopen('https://api.test:8443/', timeout=10).read().decode())\"; \
         curl -sS -m 10 --cacert /mnt/ca.pem https://denied.test:8443/ 2>&1 | grep -q 403 && echo DENIED-403; \
         curl -sS -m 10 --noproxy '*' http://denied.test:8080/ 2>&1 | grep -q 'resolve' && echo DENIED-DNS; \
         python3 -c \"
import socket
try:
    s = socket.create_connection(('{a}', 9000), timeout=3); s.settimeout(3); print('TCP', s.recv(10))
except Exception as e: print('TCP-FAIL', type(e).__name__)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
try:
    u.sendto(b'x', ('{a}', 9000)); print('UDP', u.recv(10))
except Exception as e: print('UDP-FAIL', type(e).__name__)
\""
    );
    let o = opts(&up);
    let mut args: Vec<&str> = o.iter().map(String::as_str).collect();
    args.push("--json");
    let out = env.run(&args, &["/bin/sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{stdout} {stderr}"));
    let inner = v["stdout"].as_str().unwrap_or("");
    assert_eq!(
        inner.matches("hello from upstream").count(),
        4,
        "{v} {stderr}"
    );
    assert!(
        inner.contains("DENIED-403") && inner.contains("DENIED-DNS"),
        "{v}"
    );
    assert!(
        !inner.contains("tcp-ok") && inner.contains("UDP-FAIL"),
        "{v}"
    );
    // The helper reports denials on corral's stderr as they happen.
    assert!(
        stderr.contains("corral: egress denied: denied.test:8443"),
        "{stderr}"
    );
}

#[test]
fn bad_allow_rules_are_refused_before_anything_is_built() {
    let env = Env::new();
    for (net, want) in [
        ("allow=", "at least one destination"),
        ("allow=a.*.com", "invalid egress rule"),
        ("allow=a.com:0", "invalid egress rule"),
    ] {
        let (v, code) = env.json(&["--net", net], &["true"]);
        assert_eq!(code, 125, "{net}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{net}: {msg}");
    }
    let (v, code) = env.json(&["--egress-resolve", "a.test=10.0.0.1"], &["true"]);
    assert_eq!(code, 125, "{v}");
}

//! Real responses of a live daemon checked against the checked-in OpenAPI document
//! (docs/openapi.json): every route and status a response uses must be declared, the
//! content type must be one the document names, and a JSON body must validate against
//! the declared schema. The validator covers the JSON Schema subset schemars emits and
//! refuses any keyword it does not know, so a schema it cannot check fails loudly
//! instead of passing.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{Daemon, Resp};

/// Keywords that carry no constraint on the instance.
const ANNOTATIONS: &[&str] = &[
    "description",
    "default",
    "format",
    "title",
    "examples",
    "contentMediaType",
    "$schema",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// Validates `v` against `schema`, resolving `$ref`s into `doc`; every violation is
/// pushed to `errs` with a JSON-pointer-like location.
pub fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let obj = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            errs.push(format!("{at}: the schema is `false`; nothing is allowed"));
            return;
        }
        Value::Object(o) => o,
        other => {
            errs.push(format!("{at}: not a schema: {other}"));
            return;
        }
    };
    for (kw, arg) in obj {
        match kw.as_str() {
            "$ref" => {
                let r = arg.as_str().unwrap_or_default();
                let Some(name) = r.strip_prefix("#/components/schemas/") else {
                    errs.push(format!("{at}: unsupported $ref {r}"));
                    continue;
                };
                match doc["components"]["schemas"].get(name) {
                    Some(target) => validate(doc, target, v, at, errs),
                    None => errs.push(format!("{at}: dangling $ref {r}")),
                }
            }
            "type" => {
                let types: Vec<&str> = match arg {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !types.iter().any(|t| has_type(v, t)) {
                    errs.push(format!("{at}: expected type {types:?}, got {}", short(v)));
                }
            }
            "properties" => {
                let (Some(props), Some(o)) = (arg.as_object(), v.as_object()) else {
                    continue;
                };
                for (k, sub) in props {
                    if let Some(val) = o.get(k) {
                        validate(doc, sub, val, &format!("{at}/{k}"), errs);
                    }
                }
            }
            "required" => {
                let Some(o) = v.as_object() else { continue };
                for k in arg.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if !o.contains_key(k) {
                        errs.push(format!("{at}: missing required property {k:?}"));
                    }
                }
            }
            "additionalProperties" => {
                let Some(o) = v.as_object() else { continue };
                let declared = obj.get("properties").and_then(Value::as_object);
                for (k, val) in o {
                    if declared.is_some_and(|p| p.contains_key(k)) {
                        continue;
                    }
                    if arg == &Value::Bool(false) {
                        errs.push(format!("{at}: property {k:?} is not in the schema"));
                    } else {
                        validate(doc, arg, val, &format!("{at}/{k}"), errs);
                    }
                }
            }
            "items" => {
                let Some(a) = v.as_array() else { continue };
                for (i, item) in a.iter().enumerate() {
                    validate(doc, arg, item, &format!("{at}/{i}"), errs);
                }
            }
            "enum" => {
                if !arg.as_array().is_some_and(|a| a.contains(v)) {
                    errs.push(format!("{at}: {} is not one of {arg}", short(v)));
                }
            }
            "const" => {
                if arg != v {
                    errs.push(format!("{at}: expected {arg}, got {}", short(v)));
                }
            }
            "oneOf" | "anyOf" | "allOf" => {
                let subs = arg.as_array().cloned().unwrap_or_default();
                let mut passing = 0;
                let mut why = Vec::new();
                for (i, sub) in subs.iter().enumerate() {
                    let mut e = Vec::new();
                    validate(doc, sub, v, &format!("{at}({kw}[{i}])"), &mut e);
                    if e.is_empty() {
                        passing += 1;
                    } else {
                        why.extend(e);
                    }
                }
                let ok = match kw.as_str() {
                    "oneOf" => passing == 1,
                    "anyOf" => passing >= 1,
                    _ => passing == subs.len(),
                };
                if !ok {
                    errs.push(format!(
                        "{at}: {kw} matched {passing} of {} schemas: {}",
                        subs.len(),
                        why.join("; ")
                    ));
                }
            }
            "minimum" | "maximum" => {
                let (Some(n), Some(limit)) = (v.as_f64(), arg.as_f64()) else {
                    continue;
                };
                let bad = if kw == "minimum" { n < limit } else { n > limit };
                if bad {
                    errs.push(format!("{at}: {n} is outside {kw} {limit}"));
                }
            }
            k if ANNOTATIONS.contains(&k) => {}
            k => errs.push(format!(
                "{at}: the validator does not know the keyword {k:?}; teach it before trusting a pass"
            )),
        }
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}...", &s[..80])
    } else {
        s
    }
}

/// The checked-in document (or the file CORRAL_TEST_OPENAPI names: a way to see this
/// check fail against a doctored copy).
fn document() -> Value {
    let path = std::env::var("CORRAL_TEST_OPENAPI").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json").to_string()
    });
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The path template of the document that a request path matches.
fn template_for(doc: &Value, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, String)> = None;
    for t in doc["paths"].as_object()?.keys() {
        let tsegs: Vec<&str> = t.split('/').collect();
        if tsegs.len() != segs.len() {
            continue;
        }
        let mut literal = 0;
        let fits = tsegs.iter().zip(&segs).all(|(a, b)| {
            if a.starts_with('{') && a.ends_with('}') {
                !b.is_empty()
            } else {
                literal += 1;
                a == b
            }
        });
        if fits && best.as_ref().is_none_or(|(n, _)| literal > *n) {
            best = Some((literal, t.clone()));
        }
    }
    best.map(|(_, t)| t)
}

/// Collects real responses and checks each against the document.
struct Checker {
    doc: Value,
    errors: Vec<String>,
    /// (method, template, status) of every checked response.
    seen: BTreeSet<(String, String, String)>,
    checked: usize,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            doc: document(),
            errors: Vec::new(),
            seen: BTreeSet::new(),
            checked: 0,
        }
    }

    /// The declared response object for a route and status (`default` answers
    /// errors only: a success status must be listed itself).
    fn declared(&mut self, method: &str, path: &str, status: u16) -> Option<(String, Value)> {
        let what = format!("{method} {path} -> {status}");
        let Some(template) = template_for(&self.doc, path) else {
            // An unknown route: a 404 in the API's error shape is the right answer.
            if status == 404 {
                return self.default_error(&what, "/v1/health", status);
            }
            self.errors
                .push(format!("{what}: the document has no path for it"));
            return None;
        };
        let m = method.to_ascii_lowercase();
        let op = &self.doc["paths"][&template][&m];
        if op.is_null() {
            // A 404/405 for a route or method the API does not have is fine; anything
            // else answered there is undocumented.
            if status == 404 || status == 405 {
                return self.default_error(&what, &template, status);
            }
            self.errors
                .push(format!("{what}: {m} {template} is not in the document"));
            return None;
        }
        let responses = &op["responses"];
        let key = status.to_string();
        if let Some(r) = responses.get(&key) {
            self.seen.insert((m, template.clone(), key));
            return Some((template, r.clone()));
        }
        if status >= 400 {
            let r = responses.get("default").cloned();
            if r.is_none() {
                self.errors
                    .push(format!("{what}: neither {status} nor default is declared"));
            }
            self.seen.insert((m, template.clone(), "default".into()));
            return r.map(|r| (template, r));
        }
        self.errors.push(format!(
            "{what}: status {status} is not declared for {m} {template} (declared: {:?})",
            responses.as_object().map(|o| o.keys().collect::<Vec<_>>())
        ));
        None
    }

    fn default_error(
        &mut self,
        what: &str,
        template: &str,
        status: u16,
    ) -> Option<(String, Value)> {
        let _ = status;
        // Any operation's `default` error response (they are all ErrorBody).
        let any = self.doc["paths"][template]
            .as_object()
            .and_then(|ops| ops.values().next())
            .map(|op| op["responses"]["default"].clone());
        match any {
            Some(r) if !r.is_null() => Some((template.to_string(), r)),
            _ => {
                self.errors
                    .push(format!("{what}: no default error response"));
                None
            }
        }
    }

    /// Checks one response to `method path`. Returns the response for chaining.
    fn check(&mut self, method: &str, path: &str, r: Resp) -> Resp {
        self.checked += 1;
        let what = format!("{method} {path} -> {}", r.status);
        if r.status >= 500 {
            self.errors
                .push(format!("{what}: a server error: {}", r.text()));
        }
        let Some((_, declared)) = self.declared(method, path, r.status) else {
            return r;
        };
        let ctype = r.header("content-type").map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let content = declared.get("content").and_then(Value::as_object).cloned();
        match (content, ctype) {
            (None, None) if r.body.is_empty() => {}
            (None, _) => self.errors.push(format!(
                "{what}: the document declares no body, the response has {:?} ({} bytes)",
                r.header("content-type"),
                r.body.len()
            )),
            (Some(_), None) => self.errors.push(format!(
                "{what}: a body is declared, the response has no content type"
            )),
            // `*/*`: any content type (a service's own answer through an exposed port).
            (Some(c), Some(ct)) => match c.get(&ct).or_else(|| c.get("*/*")) {
                None => self.errors.push(format!(
                    "{what}: content type {ct} is not among the declared {:?}",
                    c.keys().collect::<Vec<_>>()
                )),
                Some(media) => {
                    let schema = media["schema"].clone();
                    match ct.as_str() {
                        "application/json" => match serde_json::from_slice::<Value>(&r.body) {
                            Ok(v) => self.validate(&what, &schema, &v),
                            Err(e) => self.errors.push(format!("{what}: not JSON: {e}")),
                        },
                        "application/x-ndjson" => {
                            let text = r.text();
                            for (i, line) in text.lines().filter(|l| !l.is_empty()).enumerate() {
                                match serde_json::from_str::<Value>(line) {
                                    Ok(v) => {
                                        self.validate(&format!("{what} line {i}"), &schema, &v)
                                    }
                                    Err(e) => {
                                        self.errors.push(format!("{what} line {i}: not JSON: {e}"))
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            },
        }
        r
    }

    fn validate(&mut self, what: &str, schema: &Value, v: &Value) {
        let mut errs = Vec::new();
        validate(&self.doc, schema, v, "", &mut errs);
        for e in errs {
            self.errors.push(format!("{what}: {e}; body {}", short(v)));
        }
    }

    /// A JSON request with `key` (None: no Authorization), checked.
    fn call(
        &mut self,
        d: &Daemon,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Resp {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut h = Vec::new();
        if let Some(a) = &auth {
            h.push(("Authorization", a.as_str()));
        }
        if bytes.is_some() {
            h.push(("Content-Type", "application/json"));
        }
        let r = d
            .raw(method, path, &h, bytes.as_deref())
            .unwrap_or_else(|| panic!("{method} {path}: connection failed"));
        self.check(method, path, r)
    }

    /// Raw bytes and headers, with the admin key, checked.
    fn raw(
        &mut self,
        d: &Daemon,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let auth = format!("Bearer {}", d.key);
        let mut h = vec![("Authorization", auth.as_str())];
        h.extend_from_slice(headers);
        let r = d
            .raw(method, path, &h, body)
            .unwrap_or_else(|| panic!("{method} {path}: connection failed"));
        self.check(method, path, r)
    }

    fn finish(&self) {
        assert!(
            self.errors.is_empty(),
            "{} of {} responses disagree with docs/openapi.json:\n  {}",
            self.errors.len(),
            self.checked,
            self.errors.join("\n  ")
        );
    }
}

fn expect(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
}

#[test]
fn live_responses_match_the_openapi_document() {
    let d = Daemon::start(0);
    let mut c = Checker::new();
    let k = Some(d.key.as_str());

    // Public routes.
    expect(&c.call(&d, None, "GET", "/v1/health", None), 200);
    expect(&c.call(&d, None, "GET", "/v1/openapi.json", None), 200);

    // Tenants and keys.
    expect(
        &c.call(
            &d,
            k,
            "POST",
            "/v1/tenants",
            Some(&json!({"name": "t-one", "quota": {"max_sandboxes": 5}})),
        ),
        201,
    );
    expect(
        &c.call(
            &d,
            k,
            "POST",
            "/v1/tenants",
            Some(&json!({"name": "t-two"})),
        ),
        201,
    );
    expect(&c.call(&d, k, "GET", "/v1/tenants", None), 200);
    let key = c.call(
        &d,
        k,
        "POST",
        "/v1/keys",
        Some(&json!({"tenant": "t-one", "role": "agent", "name": "n"})),
    );
    expect(&key, 201);
    let agent = key.json()["secret"].as_str().unwrap().to_string();
    let kid = key.json()["key"]["id"].as_str().unwrap().to_string();
    let key2 = c.call(
        &d,
        k,
        "POST",
        "/v1/keys",
        Some(&json!({"tenant": "t-two", "role": "operator"})),
    );
    expect(&key2, 201);
    let kid2 = key2.json()["key"]["id"].as_str().unwrap().to_string();
    expect(
        &c.call(&d, k, "DELETE", &format!("/v1/keys/{kid2}"), None),
        204,
    );
    // Listed after a revoke: revoked_at is set for one.
    expect(&c.call(&d, k, "GET", "/v1/keys", None), 200);

    // Sandboxes.
    let sb = c.call(
        &d,
        k,
        "POST",
        "/v1/sandboxes",
        Some(&json!({"timeout_s": 600, "resources": {"memory": "256M", "cpus": "0.5", "pids": 64, "disk": "64M"}, "network": {"mode": "none"}, "env": {"A": "1"}, "metadata": {"m": "x"}})),
    );
    expect(&sb, 201);
    let id = sb.json()["id"].as_str().unwrap().to_string();
    let s = format!("/v1/sandboxes/{id}");
    expect(&c.call(&d, k, "GET", "/v1/sandboxes", None), 200);
    expect(
        &c.call(
            &d,
            k,
            "GET",
            "/v1/sandboxes?metadata.m=x&state=running&limit=1",
            None,
        ),
        200,
    );
    expect(&c.call(&d, k, "GET", &s, None), 200);
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{s}/timeout"),
            Some(&json!({"timeout_s": 900})),
        ),
        200,
    );
    expect(&c.call(&d, k, "POST", &format!("{s}/pause"), None), 200);
    expect(&c.call(&d, k, "POST", &format!("{s}/resume"), None), 200);

    // Exec: collected, failing, streamed, run_code, background processes.
    expect(&c.call(&d, k, "POST", &format!("{s}/exec"), Some(&json!({"cmd": ["sh", "-c", "echo o; echo e >&2"], "env": {"B": "2"}, "cwd": "/tmp", "stdin": "in", "timeout_s": 10}))), 200);
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{s}/exec"),
            Some(&json!({"cmd": ["sh", "-c", "kill -9 $$"]})),
        ),
        200,
    );
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{s}/exec"),
            Some(&json!({"cmd": ["sleep", "5"], "timeout_s": 1})),
        ),
        200,
    );
    let body =
        serde_json::to_vec(&json!({"cmd": ["sh", "-c", "echo a; echo b >&2; exit 2"]})).unwrap();
    let st = c.raw(
        &d,
        "POST",
        &format!("{s}/exec"),
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/x-ndjson"),
        ],
        Some(&body),
    );
    expect(&st, 200);
    assert!(st.text().lines().count() >= 3, "{}", st.text());
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{s}/run_code"),
            Some(&json!({"language": "bash", "code": "echo $((1+1))"})),
        ),
        200,
    );
    let bg = c.call(
        &d,
        k,
        "POST",
        &format!("{s}/exec"),
        Some(&json!({"cmd": ["cat"], "background": true})),
    );
    expect(&bg, 201);
    let pid = bg.json()["process_id"].as_str().unwrap().to_string();
    let p = format!("{s}/processes/{pid}");
    expect(&c.call(&d, k, "GET", &format!("{s}/processes"), None), 200);
    expect(&c.call(&d, k, "GET", &p, None), 200);
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{p}/stdin"),
            Some(&json!({"data": "hello\n"})),
        ),
        204,
    );
    expect(&c.call(&d, k, "GET", &format!("{p}/output"), None), 200);
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{p}/stdin"),
            Some(&json!({"eof": true})),
        ),
        204,
    );
    d.wait_for("the background cat to exit", || {
        d.call("GET", &p, None).json()["state"] == "exited"
    });
    // An exited process, with its result.
    expect(&c.call(&d, k, "GET", &p, None), 200);
    expect(&c.call(&d, k, "GET", &format!("{s}/processes"), None), 200);
    let bg2 = c.call(
        &d,
        k,
        "POST",
        &format!("{s}/exec"),
        Some(&json!({"cmd": ["sleep", "100"], "background": true})),
    );
    let pid2 = bg2.json()["process_id"].as_str().unwrap().to_string();
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{s}/processes/{pid2}/signal"),
            Some(&json!({"signal": "KILL"})),
        ),
        204,
    );

    // Files.
    let f = format!("{s}/files?path=/home/sandbox/a.txt");
    expect(
        &c.raw(
            &d,
            "PUT",
            &f,
            &[("Content-Type", "application/octet-stream")],
            Some(b"hello"),
        ),
        200,
    );
    let got = c.raw(&d, "GET", &f, &[], None);
    expect(&got, 200);
    assert_eq!(got.body, b"hello");
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{s}/files/mkdir"),
            Some(&json!({"path": "/home/sandbox/d/e", "parents": true})),
        ),
        204,
    );
    d.exec(&id, &["ln", "-s", "a.txt", "/home/sandbox/link"]);
    expect(
        &c.call(
            &d,
            k,
            "GET",
            &format!("{s}/files/list?path=/home/sandbox"),
            None,
        ),
        200,
    );
    expect(
        &c.call(
            &d,
            k,
            "GET",
            &format!("{s}/files/stat?path=/home/sandbox/a.txt"),
            None,
        ),
        200,
    );
    expect(
        &c.call(
            &d,
            k,
            "GET",
            &format!("{s}/files/stat?path=/home/sandbox/link"),
            None,
        ),
        200,
    );
    expect(
        &c.call(
            &d,
            k,
            "GET",
            &format!("{s}/files/stat?path=/home/sandbox/d"),
            None,
        ),
        200,
    );
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("{s}/files/rename"),
            Some(&json!({"from": "/home/sandbox/a.txt", "to": "/home/sandbox/b.txt"})),
        ),
        204,
    );
    expect(
        &c.call(
            &d,
            k,
            "DELETE",
            &format!("{s}/files?path=/home/sandbox/d&recursive=true"),
            None,
        ),
        204,
    );

    // Snapshots and forks.
    let snap = c.call(&d, k, "POST", &format!("{s}/snapshot"), None);
    expect(&snap, 201);
    let sid = snap.json()["id"].as_str().unwrap().to_string();
    expect(&c.call(&d, k, "GET", "/v1/snapshots", None), 200);
    expect(
        &c.call(&d, k, "GET", &format!("/v1/snapshots/{sid}"), None),
        200,
    );
    let child = c.call(
        &d,
        k,
        "POST",
        "/v1/sandboxes",
        Some(&json!({"snapshot_id": sid})),
    );
    expect(&child, 201);
    let cid = child.json()["id"].as_str().unwrap().to_string();

    // Metrics.
    expect(&c.call(&d, k, "GET", "/metrics", None), 200);

    // Errors: each must be a declared (default) error body.
    let ghost = "/v1/sandboxes/sb-00000000000000000000";
    let mut errors = vec![
        (c.call(&d, None, "GET", "/v1/sandboxes", None), 401),
        (
            c.call(&d, Some("crl_nope"), "GET", "/v1/sandboxes", None),
            401,
        ),
        (c.call(&d, Some(&agent), "GET", "/v1/tenants", None), 403),
        (
            c.call(
                &d,
                Some(&agent),
                "POST",
                "/v1/keys",
                Some(&json!({"tenant": "t-one", "role": "admin"})),
            ),
            403,
        ),
        (c.call(&d, Some(&agent), "GET", &s, None), 404),
        (c.call(&d, k, "GET", ghost, None), 404),
        (c.call(&d, k, "DELETE", ghost, None), 404),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{ghost}/exec"),
                Some(&json!({"cmd": ["true"]})),
            ),
            404,
        ),
        (
            c.call(&d, k, "GET", &format!("{s}/processes/p-999"), None),
            404,
        ),
        (
            c.call(
                &d,
                k,
                "GET",
                "/v1/snapshots/snap-00000000000000000000000000000000",
                None,
            ),
            404,
        ),
        (
            c.call(&d, k, "DELETE", "/v1/keys/key-0000000000000000", None),
            404,
        ),
        (c.call(&d, k, "GET", "/v1/nope", None), 404),
        (c.call(&d, k, "PATCH", &s, None), 405),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/tenants",
                Some(&json!({"name": "t-one"})),
            ),
            409,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/tenants",
                Some(&json!({"name": "Bad Name!"})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/keys",
                Some(&json!({"tenant": "nobody", "role": "agent"})),
            ),
            404,
        ),
        (
            c.call(&d, k, "POST", "/v1/sandboxes", Some(&json!({"bogus": 1}))),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/sandboxes",
                Some(&json!({"timeout_s": 999999})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/sandboxes",
                Some(&json!({"resources": {"memory": "lots"}})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{s}/exec"),
                Some(&json!({"cmd": []})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{s}/exec"),
                Some(&json!({"cmd": "true"})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{s}/run_code"),
                Some(&json!({"language": "cobol", "code": ""})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{s}/processes/{pid2}/signal"),
                Some(&json!({"signal": "SIGNOPE"})),
            ),
            400,
        ),
        (
            c.call(&d, k, "GET", &format!("{s}/files?path=relative"), None),
            400,
        ),
        (c.call(&d, k, "GET", &format!("{s}/files"), None), 400),
        (
            c.call(
                &d,
                k,
                "GET",
                &format!("{s}/files?path=/home/sandbox/missing"),
                None,
            ),
            404,
        ),
        (
            c.call(
                &d,
                k,
                "GET",
                &format!("{s}/files/list?path=/home/sandbox/b.txt"),
                None,
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{s}/files/mkdir"),
                Some(&json!({"path": "/home/sandbox/b.txt", "parents": false})),
            ),
            409,
        ),
        (c.call(&d, None, "GET", "/metrics", None), 401),
        (c.call(&d, Some(&agent), "GET", "/v1/keys", None), 403),
        (
            c.raw(
                &d,
                "PUT",
                &format!("{s}/files?path=rel"),
                &[("Content-Type", "application/octet-stream")],
                Some(b"x"),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "DELETE",
                &format!("{s}/files?path=/home/sandbox/missing"),
                None,
            ),
            404,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{s}/files/rename"),
                Some(&json!({"from": "/home/sandbox/missing", "to": "/home/sandbox/x"})),
            ),
            404,
        ),
        (
            c.call(
                &d,
                k,
                "GET",
                &format!("{s}/files/stat?path=/home/sandbox/missing"),
                None,
            ),
            404,
        ),
        (
            c.call(&d, k, "GET", &format!("{ghost}/processes"), None),
            404,
        ),
        (
            c.call(&d, k, "GET", &format!("{s}/processes/p-999/output"), None),
            404,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{s}/processes/p-999/stdin"),
                Some(&json!({"data": "x"})),
            ),
            404,
        ),
        (c.call(&d, k, "GET", &format!("{s}/pty"), None), 400),
        (c.call(&d, k, "POST", &format!("{ghost}/resume"), None), 404),
        (
            c.call(&d, k, "POST", &format!("{ghost}/snapshot"), None),
            404,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                &format!("{s}/timeout"),
                Some(&json!({"timeout_s": 999999})),
            ),
            400,
        ),
        (c.call(&d, k, "GET", "/v1/snapshots?limit=abc", None), 400),
        (
            c.call(
                &d,
                k,
                "DELETE",
                "/v1/snapshots/snap-00000000000000000000000000000000",
                None,
            ),
            404,
        ),
        (
            c.raw(
                &d,
                "POST",
                "/v1/sandboxes",
                &[("Content-Type", "application/json")],
                Some(b"{not json"),
            ),
            400,
        ),
        (c.raw(&d, "POST", "/v1/sandboxes", &[], Some(b"{}")), 400),
        (
            c.raw(
                &d,
                "POST",
                "/v1/sandboxes",
                &[("Content-Type", "application/json")],
                Some(&vec![b' '; 2 << 20]),
            ),
            413,
        ),
    ];
    expect(&c.call(&d, k, "DELETE", &s, None), 204);
    errors.push((
        c.call(
            &d,
            k,
            "POST",
            &format!("{s}/exec"),
            Some(&json!({"cmd": ["true"]})),
        ),
        409,
    ));
    errors.push((c.call(&d, k, "POST", &format!("{s}/pause"), None), 409));
    // A stopped sandbox is still shown (with its stop reason).
    expect(&c.call(&d, k, "GET", &s, None), 200);
    expect(
        &c.call(&d, k, "GET", "/v1/sandboxes?state=stopped", None),
        200,
    );
    for (r, want) in &mut errors {
        // The status the test meant; a different 4xx is a finding too.
        assert_eq!(r.status, *want, "{}", r.text());
        r.assert_error(*want);
    }

    expect(
        &c.call(&d, k, "DELETE", &format!("/v1/sandboxes/{cid}"), None),
        204,
    );
    expect(
        &c.call(&d, k, "DELETE", &format!("/v1/snapshots/{sid}"), None),
        204,
    );
    expect(
        &c.call(&d, k, "DELETE", &format!("/v1/keys/{kid}"), None),
        204,
    );

    // Templates: a tiny directory root file system imported, listed, read, removed.
    let root = d.env.state.path().join("tiny-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/motd"), "tiny\n").unwrap();
    expect(
        &c.call(
            &d,
            k,
            "POST",
            "/v1/templates",
            Some(&json!({"name": "tiny", "dir": root.display().to_string()})),
        ),
        201,
    );
    expect(&c.call(&d, k, "GET", "/v1/templates", None), 200);
    expect(&c.call(&d, k, "GET", "/v1/templates/tiny", None), 200);
    // A recipe build on it (COPY only: tiny has no shell for a RUN), and a bad recipe.
    let build = |recipe: &str| json!({"name": "tiny-built", "recipe": recipe, "context": root.display().to_string()});
    expect(
        &c.call(
            &d,
            k,
            "POST",
            "/v1/templates/build",
            Some(&build("FROM tiny\nCOPY etc/motd /etc/motd2\n")),
        ),
        201,
    );
    expect(
        &c.call(&d, k, "DELETE", "/v1/templates/tiny-built", None),
        204,
    );
    let bad_build = c.call(
        &d,
        k,
        "POST",
        "/v1/templates/build",
        Some(&build("FROM tiny\nFROB\n")),
    );
    // Build jobs: a recipe job on tiny, its events, the list, the job, a finished
    // job's DELETE (answered as it is); their errors are in `terrs` below.
    let job = c.call(
        &d,
        k,
        "POST",
        "/v1/templates/builds",
        Some(&json!({"name": "tiny-job", "source": {"kind": "recipe", "recipe": "FROM tiny\nCOPY etc/motd /etc/motd3\n", "context": root.display().to_string()}})),
    );
    expect(&job, 202);
    let jid = job.json()["id"].as_str().unwrap().to_string();
    let jpath = format!("/v1/templates/builds/{jid}");
    expect(&c.call(&d, k, "GET", &format!("{jpath}/events"), None), 200);
    expect(&c.call(&d, k, "GET", "/v1/templates/builds", None), 200);
    expect(&c.call(&d, k, "GET", &jpath, None), 200);
    expect(&c.call(&d, k, "DELETE", &jpath, None), 200);
    expect(
        &c.call(&d, k, "DELETE", "/v1/templates/tiny-job", None),
        204,
    );
    // An import job (the `import` source): its layer and bytes events, then removed.
    let imp = c.call(
        &d,
        k,
        "POST",
        "/v1/templates/builds",
        Some(&json!({"name": "tiny-imp", "source": {"kind": "import", "dir": root.display().to_string()}})),
    );
    expect(&imp, 202);
    let ipath = format!(
        "/v1/templates/builds/{}",
        imp.json()["id"].as_str().unwrap()
    );
    expect(&c.call(&d, k, "GET", &format!("{ipath}/events"), None), 200);
    expect(&c.call(&d, k, "GET", &ipath, None), 200);
    expect(
        &c.call(&d, k, "DELETE", "/v1/templates/tiny-imp", None),
        204,
    );
    let agent2 = c.call(
        &d,
        k,
        "POST",
        "/v1/keys",
        Some(&json!({"tenant": "t-one", "role": "agent"})),
    );
    expect(&agent2, 201);
    let agent2 = agent2.json()["secret"].as_str().unwrap().to_string();
    let mut terrs = vec![
        (c.call(&d, None, "GET", "/v1/templates", None), 401),
        (c.call(&d, k, "GET", "/v1/templates/nope", None), 404),
        (bad_build, 400),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/templates/builds",
                Some(&json!({"name": "x", "source": {"kind": "shipped", "recipe": "nope"}})),
            ),
            400,
        ),
        (
            c.call(&d, k, "GET", "/v1/templates/builds?limit=0", None),
            400,
        ),
        (
            c.call(&d, k, "GET", "/v1/templates/builds/tb_nope", None),
            404,
        ),
        (
            c.call(&d, k, "DELETE", "/v1/templates/builds/tb_nope", None),
            404,
        ),
        (
            c.call(&d, k, "GET", "/v1/templates/builds/tb_nope/events", None),
            404,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/templates",
                Some(&json!({"name": "x", "dir": "/nonexistent/dir"})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                Some(agent2.as_str()),
                "DELETE",
                "/v1/templates/tiny",
                None,
            ),
            403,
        ),
    ];
    expect(&c.call(&d, k, "DELETE", "/v1/templates/tiny", None), 204);
    terrs.push((c.call(&d, k, "DELETE", "/v1/templates/tiny", None), 404));
    for (r, want) in &mut terrs {
        assert_eq!(r.status, *want, "{}", r.text());
        r.assert_error(*want);
    }

    // Secrets: each status of each route and an error for each (never a value).
    let sec = json!({"value": "v-openapi", "hosts": ["api.test"]});
    expect(&c.call(&d, k, "PUT", "/v1/secrets/OA", Some(&sec)), 201);
    expect(&c.call(&d, k, "PUT", "/v1/secrets/OA", Some(&sec)), 200);
    expect(&c.call(&d, k, "GET", "/v1/secrets", None), 200);
    expect(&c.call(&d, k, "GET", "/v1/secrets/OA", None), 200);
    expect(&c.call(&d, k, "DELETE", "/v1/secrets/OA", None), 204);
    let mut serrs = vec![
        (c.call(&d, None, "GET", "/v1/secrets", None), 401),
        (c.call(&d, k, "GET", "/v1/secrets/OA", None), 404),
        (c.call(&d, k, "DELETE", "/v1/secrets/OA", None), 404),
        (
            c.call(&d, k, "PUT", "/v1/secrets/bad-name", Some(&sec)),
            400,
        ),
    ];
    for (r, want) in &mut serrs {
        assert!(!r.text().contains("v-openapi"), "{}", r.text());
        r.assert_error(*want);
    }

    // The terminal's text frame, against the 101 response's schema.
    let id2 = d.create(json!({}));
    let frame = pty_exit_frame(&d, &id2);
    let schema = c.doc["paths"]["/v1/sandboxes/{id}/pty"]["get"]["responses"]["101"]["content"]
        ["application/json"]["schema"]
        .clone();
    assert!(
        !schema.is_null(),
        "the pty route declares no 101 frame schema"
    );
    c.validate("pty exit frame", &schema, &frame);
    d.call("DELETE", &format!("/v1/sandboxes/{id2}"), None);

    // Exposed ports: each documented method through the proxy to a service inside a
    // sandbox and an error for each; the tunnel's error (its 101 and the 502s are
    // checked in ports.rs: this checker counts any 5xx as a server fault).
    let id3 = d.create(json!({}));
    crate::ports::start_service(&d, &id3);
    let port = crate::ports::PORT;
    let pp = format!("/v1/sandboxes/{id3}/ports/{port}");
    let gp = format!("{ghost}/ports/{port}");
    expect(&c.raw(&d, "GET", &format!("{pp}/"), &[], None), 200);
    c.raw(&d, "GET", &format!("{gp}/"), &[], None)
        .assert_error(404);
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let body: Option<&[u8]> = matches!(m, "POST" | "PUT" | "PATCH").then_some(b"x");
        expect(&c.raw(&d, m, &format!("{pp}/echo?c=d"), &[], body), 200);
        c.raw(&d, m, &format!("{gp}/a"), &[], body)
            .assert_error(404);
    }
    c.raw(
        &d,
        "GET",
        &format!("/v1/sandboxes/{id3}/tunnel/{port}"),
        &[],
        None,
    )
    .assert_error(400);
    d.call("DELETE", &format!("/v1/sandboxes/{id3}"), None);

    // Governance policy: each route's success status and an error for each.
    let pol = r#"@id("all") permit (principal, action == Action::"call", resource);"#;
    expect(&c.call(&d, k, "GET", "/v1/capabilities", None), 200);
    expect(
        &c.call(&d, k, "GET", "/v1/capabilities/read_file", None),
        200,
    );
    let cap = json!({"name": "oa_cap", "description": "d", "side_effect": "read_only",
        "category": "oa", "input_schema": {"type": "object"},
        "target": {"kind": "sandbox", "template": "host", "command": ["true"]}});
    expect(
        &c.call(&d, k, "PUT", "/v1/capabilities/oa_cap", Some(&cap)),
        200,
    );
    expect(
        &c.call(&d, k, "POST", "/v1/policies", Some(&json!({"text": pol}))),
        201,
    );
    expect(&c.call(&d, k, "GET", "/v1/policies", None), 200);
    expect(&c.call(&d, k, "GET", "/v1/policies/2", None), 200);
    expect(
        &c.call(&d, k, "GET", "/v1/policies/diff?from=1&to=2", None),
        200,
    );
    expect(
        &c.call(
            &d,
            k,
            "PUT",
            "/v1/policies/shadow",
            Some(&json!({"version": 1})),
        ),
        200,
    );
    expect(&c.call(&d, k, "DELETE", "/v1/policies/shadow", None), 204);
    expect(&c.call(&d, k, "POST", "/v1/policies/rollback", None), 200);
    expect(&c.call(&d, k, "POST", "/v1/policies/2/activate", None), 200);
    let ks = json!({"scope": "capability", "target": "oa_cap", "reason": "r"});
    expect(&c.call(&d, k, "PUT", "/v1/kill-switches", Some(&ks)), 200);
    expect(&c.call(&d, k, "GET", "/v1/kill-switches", None), 200);
    expect(
        &c.call(
            &d,
            k,
            "DELETE",
            "/v1/kill-switches?scope=capability&target=oa_cap",
            None,
        ),
        204,
    );
    let lim = json!({"limits": {"tenant_calls_per_day": 100}});
    expect(&c.call(&d, k, "PUT", "/v1/budgets/t-one", Some(&lim)), 200);
    expect(&c.call(&d, k, "GET", "/v1/budgets", None), 200);
    expect(
        &c.call(
            &d,
            k,
            "POST",
            "/v1/tasks/oa-task/usage",
            Some(&json!({"tokens": 3})),
        ),
        200,
    );
    let steps = json!({"steps": [{"tool": "oa_cap", "args": {}}]});
    expect(&c.call(&d, k, "POST", "/v1/plans", Some(&steps)), 200);
    let mut perrs = vec![
        (c.call(&d, None, "GET", "/v1/capabilities", None), 401),
        (c.call(&d, k, "GET", "/v1/capabilities/nope", None), 404),
        (
            c.call(&d, k, "PUT", "/v1/capabilities/other", Some(&cap)),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/policies",
                Some(&json!({"text": "permit ("})),
            ),
            400,
        ),
        (c.call(&d, None, "GET", "/v1/policies", None), 401),
        (c.call(&d, k, "GET", "/v1/policies/99", None), 404),
        (c.call(&d, k, "GET", "/v1/policies/diff?from=1", None), 400),
        (
            c.call(
                &d,
                k,
                "PUT",
                "/v1/policies/shadow",
                Some(&json!({"version": 99})),
            ),
            404,
        ),
        (c.call(&d, None, "DELETE", "/v1/policies/shadow", None), 401),
        (c.call(&d, k, "POST", "/v1/policies/99/activate", None), 404),
        (c.call(&d, None, "GET", "/v1/kill-switches", None), 401),
        (
            c.call(
                &d,
                k,
                "PUT",
                "/v1/kill-switches",
                Some(&json!({"scope": "agent", "target": "x"})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "DELETE",
                "/v1/kill-switches?scope=tenant&target=none",
                None,
            ),
            404,
        ),
        (c.call(&d, None, "GET", "/v1/budgets", None), 401),
        (
            c.call(
                &d,
                k,
                "PUT",
                "/v1/budgets/t-one",
                Some(&json!({"limits": {"degrade_at_percent": 0}})),
            ),
            400,
        ),
        (
            c.call(
                &d,
                k,
                "POST",
                "/v1/tasks/oa-task/usage",
                Some(&json!({"tokens": "x"})),
            ),
            400,
        ),
        (
            c.call(&d, k, "POST", "/v1/plans", Some(&json!({"steps": "x"}))),
            400,
        ),
    ];
    // Rolled back to 1, then 2 activated: one step back again, then none.
    expect(&c.call(&d, k, "POST", "/v1/policies/rollback", None), 200);
    perrs.push((c.call(&d, k, "POST", "/v1/policies/rollback", None), 409));
    for (r, want) in &mut perrs {
        r.assert_error(*want);
    }

    // Governed calls, approvals and the audit log (the default bundle is active again:
    // read_only permitted, privileged needs approval).
    let priv_cap = json!({"name": "oa_priv", "description": "d", "side_effect": "privileged",
        "category": "oa", "input_schema": {"type": "object"},
        "compensation": {"rollback": "none", "owner": "oa"},
        "target": {"kind": "sandbox", "template": "host", "command": ["true"]}});
    expect(
        &c.call(&d, k, "PUT", "/v1/capabilities/oa_priv", Some(&priv_cap)),
        200,
    );
    let call = |cap: &str, key: &str| json!({"capability": cap, "args": {}, "task_id": "oa-calls", "idempotency_key": key});
    expect(
        &c.call(&d, k, "POST", "/v1/calls", Some(&call("oa_cap", "k0"))),
        200,
    );
    let pending = c.call(&d, k, "POST", "/v1/calls", Some(&call("oa_priv", "k1")));
    expect(&pending, 202);
    let ap1 = pending.json()["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending2 = c.call(&d, k, "POST", "/v1/calls", Some(&call("oa_priv", "k2")));
    expect(&pending2, 202);
    let ap2 = pending2.json()["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    expect(
        &c.call(&d, k, "GET", &format!("/v1/calls/{ap1}"), None),
        200,
    );
    expect(
        &c.call(&d, k, "GET", "/v1/approvals?status=pending", None),
        200,
    );
    expect(
        &c.call(&d, k, "GET", &format!("/v1/approvals/{ap1}"), None),
        200,
    );
    let why = json!({"reason": "ok"});
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("/v1/approvals/{ap1}/approve"),
            Some(&why),
        ),
        200,
    );
    expect(
        &c.call(
            &d,
            k,
            "POST",
            &format!("/v1/approvals/{ap2}/deny"),
            Some(&why),
        ),
        200,
    );
    // A kill-switched capability: denied, with the CallResponse saying why.
    let ks = json!({"scope": "capability", "target": "oa_cap", "reason": "r"});
    expect(&c.call(&d, k, "PUT", "/v1/kill-switches", Some(&ks)), 200);
    let denied = c.call(&d, k, "POST", "/v1/calls", Some(&call("oa_cap", "k3")));
    expect(&denied, 403);
    assert_eq!(
        denied.json()["error"]["code"],
        "kill_switch",
        "{}",
        denied.text()
    );
    expect(&c.call(&d, k, "GET", "/v1/audit?task=oa-calls", None), 200);
    expect(
        &c.call(&d, k, "GET", "/v1/audit/export?task=oa-calls", None),
        200,
    );
    expect(&c.call(&d, k, "GET", "/v1/audit/verify", None), 200);
    let mut gerrs = vec![
        (
            c.call(&d, k, "POST", "/v1/calls", Some(&json!({"capability": 1}))),
            400,
        ),
        (c.call(&d, k, "GET", "/v1/calls/nope", None), 404),
        (
            c.call(&d, k, "GET", "/v1/approvals?status=bogus", None),
            400,
        ),
        (c.call(&d, k, "GET", "/v1/approvals/nope", None), 404),
        (
            c.call(&d, k, "POST", "/v1/approvals/nope/approve", Some(&why)),
            404,
        ),
        (
            c.call(&d, k, "POST", "/v1/approvals/nope/deny", Some(&why)),
            404,
        ),
        (c.call(&d, k, "GET", "/v1/audit?limit=0", None), 400),
        (c.call(&d, k, "GET", "/v1/audit/export", None), 400),
        (c.call(&d, None, "GET", "/v1/audit/verify", None), 401),
    ];
    for (r, want) in &mut gerrs {
        r.assert_error(*want);
    }
    // A sandbox's egress records (none: it has no network), and an unknown sandbox.
    let eg = d.create(json!({}));
    expect(
        &c.call(&d, k, "GET", &format!("/v1/sandboxes/{eg}/egress"), None),
        200,
    );
    c.call(&d, k, "GET", "/v1/sandboxes/sb-nope/egress", None)
        .assert_error(404);
    d.call("DELETE", &format!("/v1/sandboxes/{eg}"), None);

    c.finish();

    // Every documented operation, with each success status and an error, was
    // exercised, except the stream this test cannot hold open (files/watch) and the
    // WebSocket upgrade (its frame is checked above).
    let mut missing = Vec::new();
    for (path, ops) in c.doc["paths"].as_object().unwrap() {
        for (m, op) in ops.as_object().unwrap() {
            for status in op["responses"].as_object().unwrap().keys() {
                let key = (m.clone(), path.clone(), status.clone());
                // The public routes have no error to provoke.
                let public = path == "/v1/health" || path == "/v1/openapi.json";
                let skip = status == "101"
                    || path.ends_with("/files/watch")
                    || (public && status == "default");
                if !skip && !c.seen.contains(&key) {
                    missing.push(format!("{m} {path} {status}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented but not checked against a live response: {missing:?}"
    );
    d.assert_clean(0);
}

/// Runs `exit 4` on the sandbox's terminal and returns the server's text frame.
fn pty_exit_frame(d: &Daemon, id: &str) -> Value {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/v1/sandboxes/{id}/pty?cmd=sh", d.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", d.key).parse().unwrap(),
    );
    let stream = TcpStream::connect(&d.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut ws, _) = tungstenite::client(req, stream).unwrap();
    ws.send(tungstenite::Message::Binary(b"exit 4\n".to_vec().into()))
        .unwrap();
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            tungstenite::Message::Close(_) => panic!("closed without an exit frame"),
            _ => {}
        }
    }
}

/// The validator itself: each violation it must catch, and what it must accept.
#[test]
fn validator_catches_what_it_must() {
    let doc = document();
    let sandbox = json!({"$ref": "#/components/schemas/Sandbox"});
    let list = json!({"$ref": "#/components/schemas/SandboxList"});
    let check = |schema: &Value, v: &Value| {
        let mut e = Vec::new();
        validate(&doc, schema, v, "", &mut e);
        e
    };
    let good = json!({
        "id": "sb-00000000000000000000", "state": "running", "template": "host",
        "created_at": "2024-01-01T00:00:00Z", "expires_at": "2024-01-01T00:05:00Z",
        "resources": {"memory_bytes": 1, "cpu_millis": 1000, "pids": 10, "disk_bytes": 5},
        "network": "none", "metadata": {"a": "b"},
    });
    // Fill in whatever else the document requires with a value of the declared type,
    // so the positive case tracks the document.
    let mut good = good;
    let schema = &doc["components"]["schemas"]["Sandbox"];
    for req in schema["required"].as_array().unwrap() {
        let k = req.as_str().unwrap();
        if good.get(k).is_none() {
            let t = &schema["properties"][k]["type"];
            let t = t.as_str().or_else(|| t[0].as_str()).unwrap_or("null");
            good[k] = match t {
                "string" => json!("x"),
                "integer" => json!(1),
                "boolean" => json!(false),
                "array" => json!([]),
                "object" => json!({}),
                _ => Value::Null,
            };
        }
    }
    assert_eq!(check(&sandbox, &good), Vec::<String>::new(), "{good}");
    assert!(check(
        &list,
        &json!({"sandboxes": [good.clone()], "next_cursor": null})
    )
    .is_empty());

    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing required",
            mutate(&|v| {
                v.as_object_mut().unwrap().remove("state");
            }),
            "missing required property \"state\"",
        ),
        (
            "unknown property",
            mutate(&|v| v["surprise"] = json!(1)),
            "\"surprise\" is not in the schema",
        ),
        (
            "wrong type",
            mutate(&|v| v["id"] = json!(5)),
            "/id: expected type",
        ),
        (
            "null not allowed",
            mutate(&|v| v["template"] = Value::Null),
            "/template: expected type",
        ),
        (
            "enum value",
            mutate(&|v| v["state"] = json!("exploded")),
            "/state: oneOf matched 0",
        ),
        (
            "nested ref",
            mutate(&|v| v["resources"]["memory_bytes"] = json!("1G")),
            "/resources/memory_bytes: expected type",
        ),
        (
            "nested unknown",
            mutate(&|v| v["resources"]["gpus"] = json!(1)),
            "\"gpus\" is not in the schema",
        ),
        (
            "map values",
            mutate(&|v| v["metadata"]["n"] = json!(3)),
            "/metadata/n: expected type",
        ),
        (
            "float for integer",
            mutate(&|v| v["resources"]["pids"] = json!(1.5)),
            "/resources/pids: expected type",
        ),
        (
            "negative unsigned",
            mutate(&|v| v["resources"]["pids"] = json!(-1)),
            "outside minimum",
        ),
    ];
    for (name, v, want) in cases {
        let e = check(&sandbox, &v);
        assert!(
            e.iter().any(|m| m.contains(want)),
            "{name}: expected {want:?} in {e:?}"
        );
    }
    assert!(check(&list, &json!({"sandboxes": [1]}))
        .iter()
        .any(|m| m.contains("/sandboxes/0")));
    assert!(!check(&list, &json!({"sandboxes": {}})).is_empty());
    // oneOf must match exactly one; anyOf at least one.
    let one = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
    assert!(
        !check(&one, &json!(1)).is_empty(),
        "1 matches both branches"
    );
    assert!(check(&one, &json!(1.5)).is_empty());
    let any = json!({"anyOf": [{"type": "integer"}, {"type": "null"}]});
    assert!(check(&any, &Value::Null).is_empty());
    assert!(!check(&any, &json!("s")).is_empty());
    // Unknown keywords and dangling refs fail instead of passing silently.
    assert!(!check(&json!({"pattern": "^a"}), &json!("b")).is_empty());
    assert!(!check(&json!({"$ref": "#/components/schemas/Nope"}), &json!({})).is_empty());
    assert!(!check(&json!(false), &json!(1)).is_empty());

    // The checker: an undeclared status and an undeclared body are failures.
    let mut c = Checker::new();
    let resp = |status: u16, ct: Option<&str>, body: &[u8]| Resp {
        status,
        headers: ct
            .map(|c| vec![("Content-Type".to_string(), c.to_string())])
            .unwrap_or_default(),
        body: body.to_vec(),
    };
    c.check(
        "GET",
        "/v1/health",
        resp(200, Some("application/json"), br#"{"status":"ok"}"#),
    );
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    c.check(
        "GET",
        "/v1/health",
        resp(202, Some("application/json"), b"{}"),
    );
    c.check(
        "DELETE",
        "/v1/sandboxes/sb-1",
        resp(204, Some("application/json"), b"{}"),
    );
    c.check(
        "GET",
        "/v1/sandboxes/sb-1",
        resp(200, Some("text/html"), b"<p>"),
    );
    c.check(
        "GET",
        "/v1/sandboxes/sb-1",
        resp(404, Some("application/json"), br#"{"error":{"code":"x"}}"#),
    );
    c.check(
        "GET",
        "/v1/undocumented/thing/here",
        resp(200, Some("application/json"), b"{}"),
    );
    c.check(
        "PUT",
        "/v1/health",
        resp(200, Some("application/json"), b"{}"),
    );
    c.check(
        "GET",
        "/v1/health",
        resp(
            500,
            Some("application/json"),
            br#"{"error":{"code":"internal","message":"m"}}"#,
        ),
    );
    let e = c.errors.join("\n");
    for want in [
        "status 202 is not declared",
        "declares no body",
        "content type text/html",
        "missing required property \"message\"",
        "the document has no path",
        "put /v1/health is not in the document",
        "a server error",
    ] {
        assert!(e.contains(want), "expected {want:?} in:\n{e}");
    }
}

#[test]
fn template_matching_prefers_literal_segments() {
    let doc = document();
    assert_eq!(
        template_for(&doc, "/v1/sandboxes/sb-1/files/list?path=/").as_deref(),
        Some("/v1/sandboxes/{id}/files/list")
    );
    assert_eq!(
        template_for(&doc, "/v1/sandboxes/sb-1").as_deref(),
        Some("/v1/sandboxes/{id}")
    );
    assert_eq!(
        template_for(&doc, "/v1/sandboxes").as_deref(),
        Some("/v1/sandboxes")
    );
    assert_eq!(template_for(&doc, "/v1/nope"), None);
}

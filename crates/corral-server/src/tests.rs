//! Router tests without a network: auth, roles, JSON errors, routing, metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use corral_sandbox::{Manager, ManagerConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{auth, metrics, openapi, routes, AppState};

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    admin: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ManagerConfig {
        data_dir: dir.path().to_path_buf(),
        runtime_dir: dir.path().join("run"),
        corral_exe: "/nonexistent/corral".into(),
        cgroup_parent: "corral-server-test".into(),
        id_map_base: 1_000_000_000,
        pool_size: 0,
        health_interval: Duration::from_secs(3600),
        default_timeout: Duration::from_secs(300),
        max_timeout: Duration::from_secs(28_800),
        default_memory_bytes: 512 << 20,
        default_cpu_millis: 1000,
        default_pids: 256,
        default_disk_bytes: 1 << 30,
        skip_layers: vec![],
        keep_sandboxes_on_shutdown: false,
        // No sandbox networks in these tests: nothing is built on the host.
        network: corral_sandbox::NetSettings {
            pool_size: 0,
            ..Default::default()
        },
    };
    let manager: Arc<Manager> = Manager::start(cfg).await.unwrap();
    let auth = auth::AuthStore::open(dir.path()).unwrap();
    let admin = std::fs::read_to_string(dir.path().join("admin-key"))
        .unwrap()
        .trim()
        .to_string();
    let (policy, govern, runner) = crate::govern_audit::open(dir.path(), &manager).unwrap();
    let state = Arc::new(AppState {
        manager,
        auth,
        http_metrics: metrics::HttpMetrics::default(),
        envd_secret: [3u8; 32],
        govern,
        policy,
    });
    runner.set_state(&state);
    Fixture {
        _dir: dir,
        app: routes::router(state),
        admin,
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (StatusCode, Value, String) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = match body {
        Some((ct, bytes)) => {
            if !ct.is_empty() {
                b = b.header(header::CONTENT_TYPE, ct);
            }
            b.body(Body::from(bytes)).unwrap()
        }
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_client_error() || status.is_server_error() {
        assert!(ct.starts_with("application/json"), "{status} {uri}: {ct}");
        assert!(v["error"]["code"].is_string(), "{status} {uri}: {v}");
        assert!(v["error"]["message"].is_string(), "{status} {uri}: {v}");
    }
    (status, v, String::from_utf8_lossy(&bytes).into_owned())
}

fn json_body(v: Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", serde_json::to_vec(&v).unwrap()))
}

#[tokio::test]
async fn health_and_openapi_need_no_key() {
    let f = fixture().await;
    let (st, v, _) = call(&f.app, Method::GET, "/v1/health", None, None).await;
    assert_eq!((st, v), (StatusCode::OK, json!({"status": "ok"})));
    let (st, v, _) = call(&f.app, Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["openapi"], "3.1.0");
}

#[tokio::test]
async fn missing_wrong_and_revoked_keys_are_401() {
    let f = fixture().await;
    for key in [None, Some("crl_wrong"), Some("")] {
        let (st, v, _) = call(&f.app, Method::GET, "/v1/sandboxes", key, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(v["error"]["code"], "unauthenticated");
    }
    let (st, _, _) = call(&f.app, Method::GET, "/metrics", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let body = json_body(json!({"tenant": "default", "role": "agent", "name": "t"}));
    let (st, v, _) = call(&f.app, Method::POST, "/v1/keys", Some(&f.admin), body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    let id = v["key"]["id"].as_str().unwrap().to_string();
    let (st, _, _) = call(&f.app, Method::GET, "/metrics", Some(&secret), None).await;
    assert_eq!(st, StatusCode::OK);
    // An agent is no admin.
    for (m, uri) in [(Method::GET, "/v1/keys"), (Method::GET, "/v1/tenants")] {
        let (st, v, _) = call(&f.app, m, uri, Some(&secret), None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(v["error"]["code"], "permission_denied");
    }
    let uri = format!("/v1/keys/{id}");
    let (st, _, _) = call(&f.app, Method::DELETE, &uri, Some(&f.admin), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = call(&f.app, Method::GET, "/metrics", Some(&secret), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "revoked at once");
    let (st, _, _) = call(
        &f.app,
        Method::DELETE,
        "/v1/keys/key-00",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenants_and_keys() {
    let f = fixture().await;
    let k = Some(f.admin.as_str());
    let body = json_body(json!({"name": "team-a", "quota": {"max_sandboxes": 3}}));
    let (st, v, _) = call(&f.app, Method::POST, "/v1/tenants", k, body.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["quota"]["max_sandboxes"], 3);
    let (st, _, _) = call(&f.app, Method::POST, "/v1/tenants", k, body).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, v, _) = call(&f.app, Method::GET, "/v1/tenants", k, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["tenants"].as_array().unwrap().len(), 2);
    let body = json_body(json!({"tenant": "nope", "role": "agent"}));
    let (st, _, _) = call(&f.app, Method::POST, "/v1/keys", k, body).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let body = json_body(json!({"tenant": "team-a", "role": "operator"}));
    let (st, _, _) = call(&f.app, Method::POST, "/v1/keys", k, body).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v, _) = call(&f.app, Method::GET, "/v1/keys", k, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["keys"].as_array().unwrap().len(), 2);
    assert!(!v.to_string().contains("crl_"), "no secret in listings");
}

#[tokio::test]
async fn bad_bodies_are_json_400_and_huge_ones_413() {
    let f = fixture().await;
    let k = Some(f.admin.as_str());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{not json".to_vec()),
        ("application/json", br#"{"name": "x", "bogus": 1}"#.to_vec()),
        ("application/json", br#"{"name": 5}"#.to_vec()),
        ("application/json", br#"{}"#.to_vec()),
        ("application/json", b"".to_vec()),
        ("text/plain", br#"{"name": "x"}"#.to_vec()),
        ("", br#"{"name": "x"}"#.to_vec()),
    ];
    for (ct, body) in cases {
        let (st, v, _) = call(&f.app, Method::POST, "/v1/tenants", k, Some((ct, body))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{ct}: {v}");
        assert_eq!(v["error"]["code"], "invalid_argument");
    }
    let huge = format!(r#"{{"name": "{}"}}"#, "a".repeat(2 << 20));
    let (st, v, _) = call(
        &f.app,
        Method::POST,
        "/v1/tenants",
        k,
        Some(("application/json", huge.into_bytes())),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"]["code"], "payload_too_large");
    // Bad query strings too.
    let (st, _, _) = call(&f.app, Method::GET, "/v1/sandboxes?limit=0", k, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, _) = call(&f.app, Method::GET, "/v1/snapshots?bogus=1", k, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let uri = "/v1/sandboxes/sb-x/files/list";
    let (st, _, _) = call(&f.app, Method::GET, uri, k, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "path is required");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let f = fixture().await;
    let k = Some(f.admin.as_str());
    for key in [None, k] {
        let (st, v, _) = call(&f.app, Method::GET, "/v1/nope", key, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(v["error"]["code"], "not_found");
    }
    let (st, v, _) = call(&f.app, Method::POST, "/v1/health", None, None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    let (st, v, _) = call(&f.app, Method::PATCH, "/v1/sandboxes", k, None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert_eq!(v["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn every_documented_route_is_routed() {
    let f = fixture().await;
    for r in openapi::ROUTES {
        let uri = r
            .path
            .replace("{id}", "sb-00000000000000000000")
            .replace("{pid}", "p-1");
        let method = Method::from_bytes(r.method.to_uppercase().as_bytes()).unwrap();
        let (st, _, text) = call(&f.app, method, &uri, Some(&f.admin), None).await;
        assert_ne!(
            st,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {}",
            r.method,
            r.path
        );
        assert!(
            !text.contains("no such route"),
            "{} {}: {text}",
            r.method,
            r.path
        );
        assert_ne!(
            st,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{} {}",
            r.method,
            r.path
        );
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let f = fixture().await;
    let k = Some(f.admin.as_str());
    call(&f.app, Method::GET, "/v1/sandboxes/sb-1", k, None).await;
    call(&f.app, Method::GET, "/v1/sandboxes/sb-2", None, None).await;
    let (st, _, text) = call(&f.app, Method::GET, "/metrics", k, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        text.contains(
            r#"corral_http_requests_total{method="GET",route="/v1/sandboxes/{id}",status="401"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("corral_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains("sb-1"), "no raw paths as labels");
}

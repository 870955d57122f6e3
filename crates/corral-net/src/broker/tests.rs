//! The broker end to end on loopback: a real HTTPS server with its own test CA (which
//! the broker trusts as an extra root), a sandbox-side TLS client trusting only the
//! broker's CA, and the broker between them.

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::secrets::{SecretPut, SecretValue};

/// What the real server saw: (path, authorization, body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

struct World {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    upstream: std::net::SocketAddr,
    seen: Seen,
    api_ph: String,
    other_ph: String,
}

/// A test CA and an HTTPS echo server for `api.test` and `evil.test` on loopback.
async fn upstream_server(dir: &std::path::Path) -> (std::net::SocketAddr, Seen) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("upstream-ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["api.test".into(), "evil.test".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let seen = s2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().to_string();
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap_or("").to_string())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let body = String::from_utf8_lossy(&body.unwrap_or_default()).to_string();
                        seen.lock()
                            .unwrap()
                            .push((path, auth.clone(), body.clone()));
                        let mut r = Response::new(Full::new(Bytes::from(format!(
                            "auth={auth};body={body}"
                        ))));
                        r.headers_mut().insert("x-echo-auth", auth.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, seen) = upstream_server(dir.path()).await;
    let store = Arc::new(SecretStore::open(dir.path()).unwrap());
    let put = |hosts: &[&str], v: &str| SecretPut {
        value: SecretValue::new(v.into()).unwrap(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        header: None,
    };
    let (api, _) = store
        .put("t", "API", put(&["api.test"], "real-api-value"))
        .unwrap();
    let (other, _) = store
        .put("t", "OTHER", put(&["other.test:443"], "real-other-value"))
        .unwrap();
    let broker = Broker::new(
        &BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            extra_roots: Some(dir.path().join("upstream-ca.pem")),
        },
        store,
    )
    .unwrap();
    World {
        _dir: dir,
        broker: Arc::new(broker),
        upstream,
        seen,
        api_ph: api.placeholder,
        other_ph: other.placeholder,
    }
}

fn ctx(host: &str) -> ConnCtx {
    ConnCtx {
        sandbox: "sb-test".into(),
        tenant: "t".into(),
        secrets: vec!["API".into(), "OTHER".into()],
        host: host.into(),
        port: 443,
    }
}

/// A sandbox-side HTTPS client (trusting only the broker's CA) whose connection the
/// broker serves toward the test server. `sni` is what the client asks for.
async fn sandbox_client(
    w: &World,
    host: &str,
    sni: &str,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        tokio::task::JoinHandle<Result<ConnSummary, BrokerError>>,
    ),
    std::io::Error,
> {
    let (client_end, broker_end) = tokio::io::duplex(1 << 16);
    let up = TcpStream::connect(w.upstream).await.unwrap();
    let b = w.broker.clone();
    let c = ctx(host);
    let served = tokio::spawn(async move { b.serve_tls(broker_end, up, c).await });
    let mut roots = rustls::RootCertStore::empty();
    for c in super::ca::pem_certs(w.broker.ca_pem()) {
        roots.add(c).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), client_end)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    Ok((sender, served))
}

async fn send(
    s: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
    auth: &str,
    body: &str,
) -> (u16, String, String) {
    let req = Request::builder()
        .method(if body.is_empty() { "GET" } else { "POST" })
        .uri(path)
        .header("host", host)
        .header("authorization", auth)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let r = s.send_request(req).await.unwrap();
    let status = r.status().as_u16();
    let echo = r
        .headers()
        .get("x-echo-auth")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, echo, String::from_utf8_lossy(&body).to_string())
}

#[tokio::test]
async fn bound_host_gets_the_value_and_the_sandbox_only_the_placeholder() {
    let w = world().await;
    let (mut s, served) = sandbox_client(&w, "api.test", "api.test").await.unwrap();
    let auth = format!("Bearer {}", w.api_ph);
    let (status, echo, body) = send(&mut s, "api.test", "/v1/models", &auth, "").await;
    assert_eq!(status, 200, "{body}");
    // The server saw the real value...
    assert_eq!(
        w.seen.lock().unwrap()[0],
        (
            "/v1/models".into(),
            "Bearer real-api-value".into(),
            String::new()
        )
    );
    // ...and its echo of it reached the sandbox masked, in headers and body.
    assert_eq!(echo, "Bearer **************");
    assert_eq!(body, "auth=Bearer **************;body=");
    // Keep-alive: a second request on the same connection is rewritten too.
    let (status, _, _) = send(&mut s, "api.test", "/again", &auth, "{\"x\":1}").await;
    assert_eq!(status, 200);
    assert_eq!(w.seen.lock().unwrap()[1].1, "Bearer real-api-value");
    drop(s);
    let summary = served.await.unwrap().unwrap();
    assert_eq!(summary.requests, 2);
    assert_eq!(summary.injected, 2);
    assert!(w.broker.recent_alerts().is_empty());
}

#[tokio::test]
async fn placeholder_toward_an_unbound_host_is_blocked_and_alerted() {
    let w = world().await;
    let (mut s, _served) = sandbox_client(&w, "evil.test", "evil.test").await.unwrap();
    // In a header.
    let (status, _, body) = send(
        &mut s,
        "evil.test",
        "/",
        &format!("Bearer {}", w.api_ph),
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("secret API") && body.contains("evil.test:443"),
        "{body}"
    );
    // In the body, split over the wire however it is: stopped before it all leaves.
    let (mut s, _served) = sandbox_client(&w, "evil.test", "evil.test").await.unwrap();
    let (status, _, body) = send(
        &mut s,
        "evil.test",
        "/upload",
        "Bearer nothing",
        &format!("{{\"key\":\"{}\"}}", w.other_ph),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    for (_, auth, body) in w.seen.lock().unwrap().iter() {
        assert!(!auth.contains("corral-secret-") && !body.contains(&w.other_ph));
    }
    let alerts = w.broker.recent_alerts();
    assert_eq!(alerts.len(), 2);
    assert_eq!(
        (alerts[0].secret.as_str(), alerts[0].location.as_str()),
        ("API", "header authorization")
    );
    assert_eq!(
        (alerts[1].secret.as_str(), alerts[1].location.as_str()),
        ("OTHER", "body")
    );
    assert_eq!(alerts[1].host, "evil.test");
    // In the URL.
    let (mut s, _served) = sandbox_client(&w, "evil.test", "evil.test").await.unwrap();
    let (status, _, _) = send(&mut s, "evil.test", &format!("/?k={}", w.api_ph), "x", "").await;
    assert_eq!(status, 403);
    assert_eq!(w.broker.recent_alerts()[2].location, "url");
}

#[tokio::test]
async fn sni_and_host_must_name_the_allowed_host() {
    let w = world().await;
    // The leaf is minted for the SNI the client asks for, when it is the allowed host.
    assert!(sandbox_client(&w, "api.test", "api.test").await.is_ok());
    // Another SNI on a connection the proxy allowed for api.test: no handshake.
    assert!(sandbox_client(&w, "api.test", "evil.test").await.is_err());
    // A Host header naming another host on an allowed connection: 421, nothing sent.
    let (mut s, _served) = sandbox_client(&w, "api.test", "api.test").await.unwrap();
    let (status, _, _) = send(
        &mut s,
        "evil.test",
        "/",
        &format!("Bearer {}", w.api_ph),
        "",
    )
    .await;
    assert_eq!(status, 421);
    assert!(w.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_untrusted_upstream_is_a_502_that_says_so() {
    let w = world().await;
    // A broker without the test CA as an extra root.
    let store = w.broker.store().clone();
    let dir = tempfile::tempdir().unwrap();
    let strict = Broker::new(
        &BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            extra_roots: None,
        },
        store,
    )
    .unwrap();
    let w2 = World {
        broker: Arc::new(strict),
        ..w
    };
    let (mut s, _served) = sandbox_client(&w2, "api.test", "api.test").await.unwrap();
    let (status, _, body) = send(&mut s, "api.test", "/", "x", "").await;
    assert_eq!(status, 502);
    assert!(body.contains("TLS to api.test:443 failed"), "{body}");
    assert!(w2.seen.lock().unwrap().is_empty());
}

#[test]
fn the_ca_key_is_not_what_sandboxes_get() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SecretStore::open(dir.path()).unwrap());
    let b = Broker::new(
        &BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            extra_roots: None,
        },
        store,
    )
    .unwrap();
    assert!(b.ca_pem().contains("BEGIN CERTIFICATE"));
    assert!(!b.ca_pem().contains("PRIVATE KEY"));
    let _: Vec<CertificateDer<'static>> = super::ca::pem_certs(b.ca_pem());
    // What sandboxes get bound: the certificate and a bundle ending with it, no key.
    let public = b.sandbox_ca_dir();
    let mut names: Vec<String> = std::fs::read_dir(public)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["bundle.pem", "ca.pem"]);
    for n in &names {
        let text = std::fs::read_to_string(public.join(n)).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{n}");
        assert!(text.ends_with(b.ca_pem()), "{n}");
    }
    let env = Broker::sandbox_env();
    assert!(env.contains(&(
        "SSL_CERT_FILE".into(),
        "/etc/ssl/certs/corral/bundle.pem".into()
    )));
}

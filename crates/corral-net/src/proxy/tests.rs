//! The proxy and resolver on loopback, without nftables or root: 127.0.0.1 plays the
//! sandbox (registered with host address 127.0.0.1), a local echo server the upstream
//! (reached through the static resolve map). Covers the explicit protocol, denials,
//! records, the interceptor seam and the resolver's answers.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::*;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// An upstream that answers every connection with what it read first, prefixed.
pub(super) async fn upstream() -> u16 {
    let l = TcpListener::bind((LO, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                let n = s.read(&mut b).await.unwrap_or(0);
                let mut out = b"UP:".to_vec();
                out.extend_from_slice(&b[..n]);
                let _ = s.write_all(&out).await;
            });
        }
    });
    port
}

async fn proxy(up_port: u16) -> EgressProxy {
    proxy_allowing(&format!("up.test:{up_port},*.up.test:{up_port}")).await
}

/// A proxy for sandbox `sb-1` at 127.0.0.1 with these allow rules (up.test and
/// a.up.test resolve to 127.0.0.1, bad.up.test is denied).
pub(super) async fn proxy_allowing(rules: &str) -> EgressProxy {
    let mut cfg = EgressConfig::default();
    cfg.resolve.insert("up.test".into(), LO);
    cfg.resolve.insert("a.up.test".into(), LO);
    cfg.deny.push(Rule::parse("bad.up.test").unwrap());
    let p = EgressProxy::start(cfg).await.unwrap();
    register(&p, rules);
    p
}

/// Serves sandbox `sb-1` at 127.0.0.1 with these allow rules and the proxy's deny rules.
fn register(p: &EgressProxy, rules: &str) {
    p.register(
        LO,
        SandboxEgress {
            sandbox: "sb-1".into(),
            tenant: "t".into(),
            host_addr: LO,
            policy: Policy {
                allow: parse_list(rules).unwrap(),
                deny: p.deny_rules().to_vec(),
            },
        },
    );
}

pub(super) async fn talk(port: u16, send: &[u8]) -> String {
    let mut s = TcpStream::connect((LO, port)).await.unwrap();
    s.write_all(send).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) async fn wait_records(p: &EgressProxy, n: usize) -> Vec<EgressRecord> {
    for _ in 0..200 {
        let r = p.records(Some("sb-1"), 100);
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    p.records(Some("sb-1"), 100)
}

#[tokio::test]
async fn connect_and_absolute_uri_are_decided_and_recorded() {
    let up = upstream().await;
    // Plain HTTP is relayed request by request (h1.rs): the server must speak HTTP,
    // and gets the head in origin form without Proxy-* headers.
    let web = super::h1_tests::web("W").await;
    let p = proxy_allowing(&format!("up.test:{up},*.up.test:{up},up.test:{web}")).await;
    let port = p.ports().proxy;
    let out = talk(
        port,
        format!("CONNECT up.test:{up} HTTP/1.1\r\n\r\nhello").as_bytes(),
    )
    .await;
    assert_eq!(out, "HTTP/1.1 200 Connection established\r\n\r\nUP:hello");
    let got = talk(
        port,
        format!("GET http://UP.test:{web}/a?tok=s3cret HTTP/1.1\r\nHost: up.test\r\nProxy-Authorization: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(
        got.ends_with("W GET /a?tok=s3cret host=up.test body=0 head=GET /a?tok=s3cret HTTP/1.1|Host: up.test|Connection: close"),
        "{got}"
    );
    let out = talk(port, b"CONNECT other.test:443 HTTP/1.1\r\n\r\n").await;
    assert!(
        out.starts_with("HTTP/1.1 403 Forbidden") && out.contains("other.test:443 is not allowed"),
        "{out}"
    );
    let out = talk(
        port,
        format!("CONNECT bad.up.test:{up} HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(out.contains("denied by the rule bad.up.test"), "{out}");
    let r = wait_records(&p, 4).await;
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(r[0].allowed && r[0].via == Via::Connect && r[0].bytes_up == 5 && r[0].bytes_down == 8);
    assert_eq!(r[0].rule.as_deref(), Some(format!("up.test:{up}").as_str()));
    assert_eq!(
        (r[1].method.as_deref(), r[1].path.as_deref()),
        (Some("GET"), Some("/a"))
    );
    assert!(
        r[1].allowed && r[1].via == Via::HttpProxy && r[1].bytes_down == got.len() as u64,
        "{:?} {}",
        r[1],
        got.len()
    );
    assert_eq!(r[1].host, "up.test");
    assert!(!r[2].allowed && r[2].rule.is_none());
    assert_eq!(
        (r[3].allowed, r[3].rule.as_deref()),
        (false, Some("bad.up.test"))
    );
    // A source that is not a registered sandbox gets nothing at all.
    p.unregister(LO);
    assert_eq!(
        talk(
            port,
            format!("CONNECT up.test:{up} HTTP/1.1\r\n\r\n").as_bytes()
        )
        .await,
        ""
    );
}

#[derive(Debug, Default)]
pub(super) struct Seen(pub(super) Mutex<Vec<ConnInfo>>);

impl Interceptor for Seen {
    fn wants(&self, c: &ConnInfo) -> bool {
        c.host == "up.test"
    }
    fn handle(&self, c: ConnInfo, mut client: ClientStream, up: Upstream) -> InterceptFuture {
        if let Ok(mut g) = self.0.lock() {
            g.push(c);
        }
        Box::pin(async move {
            let mut b = [0u8; 5];
            let _ = client.read_exact(&mut b).await;
            let ok = up.connect().await.is_ok();
            // What it got first, to show where the stream was positioned.
            let mut out = if ok {
                b"INTERCEPTED:".to_vec()
            } else {
                b"NOUP:".to_vec()
            };
            out.extend_from_slice(&b);
            let _ = client.write_all(&out).await;
            Intercepted {
                bytes_up: 5,
                bytes_down: 11,
                note: Some("seen".into()),
                allowed: true,
            }
        })
    }
}

#[tokio::test]
async fn the_interceptor_gets_allowed_connections_it_wants() {
    let up = upstream().await;
    let p = proxy(up).await;
    let seen = Arc::new(Seen::default());
    p.set_interceptor(seen.clone());
    let out = talk(
        p.ports().proxy,
        format!("CONNECT up.test:{up} HTTP/1.1\r\n\r\nhello").as_bytes(),
    )
    .await;
    assert_eq!(
        out,
        "HTTP/1.1 200 Connection established\r\n\r\nINTERCEPTED:hello"
    );
    // Not wanted (another name): spliced as usual.
    let out = talk(
        p.ports().proxy,
        format!("CONNECT a.up.test:{up} HTTP/1.1\r\n\r\nhi").as_bytes(),
    )
    .await;
    assert!(out.ends_with("UP:hi"), "{out}");
    // Denied: never reaches the interceptor.
    let _ = talk(p.ports().proxy, b"CONNECT up.test:1 HTTP/1.1\r\n\r\n").await;
    let g = seen.0.lock().unwrap().clone();
    assert_eq!(g.len(), 1);
    assert_eq!(
        (
            g[0].sandbox.as_str(),
            g[0].host.as_str(),
            g[0].port,
            g[0].via
        ),
        ("sb-1", "up.test", up, Via::Connect)
    );
    let r = wait_records(&p, 3).await;
    assert_eq!(r[0].reason.as_deref(), Some("seen"));
}

#[tokio::test]
async fn the_resolver_answers_allowed_names_only() {
    let up = upstream().await;
    let p = proxy(up).await;
    let dns: SocketAddr = (LO, p.ports().dns).into();
    let c = UdpSocket::bind((LO, 0)).await.unwrap();
    let ask = |name: &'static str, qtype: u16| {
        let c = &c;
        async move {
            c.send_to(&crate::dns::wire::tests::query(7, name, qtype), dns)
                .await
                .unwrap();
            let mut b = [0u8; 512];
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.recv(&mut b))
                .await
                .unwrap()
                .unwrap();
            b[..n].to_vec()
        }
    };
    let a = ask("x.up.test", 1).await;
    assert_eq!((a[3] & 0xf, a[7]), (0, 1));
    assert_eq!(&a[a.len() - 4..], &[127, 0, 0, 1]);
    let aaaa = ask("up.test", 28).await;
    assert_eq!((aaaa[3] & 0xf, aaaa[7]), (0, 0));
    let nx = ask("nope.test", 1).await;
    assert_eq!(nx[3] & 0xf, 3);
    let denied = ask("bad.up.test", 1).await;
    assert_eq!(denied[3] & 0xf, 3);
    let r = wait_records(&p, 2).await;
    assert!(
        r.iter()
            .all(|r| r.via == Via::Dns && !r.allowed && r.port == 53),
        "{r:?}"
    );
    assert_eq!(
        r.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(),
        vec!["nope.test", "bad.up.test"]
    );
}

/// An upstream that keeps each connection open until the other side closes it.
async fn holding_upstream() -> u16 {
    let l = TcpListener::bind((LO, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            });
        }
    });
    port
}

/// A CONNECT through the proxy: the stream and what the proxy answered first.
async fn connect_via(port: u16, to: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect((LO, port)).await.unwrap();
    s.write_all(format!("CONNECT {to} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut b = vec![0u8; 256];
    let n = match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut b)).await {
        Ok(Ok(n)) => n,
        // Closed unread: the kernel answers the unread request with a reset.
        Ok(Err(_)) => 0,
        Err(_) => panic!("no answer to CONNECT {to}"),
    };
    (s, String::from_utf8_lossy(&b[..n]).into_owned())
}

#[tokio::test]
async fn a_sandbox_over_its_connection_limit_is_refused_and_recorded_until_one_closes() {
    let hold = holding_upstream().await;
    let to = format!("up.test:{hold}");
    let mut cfg = EgressConfig::default();
    assert_eq!(cfg.max_connections, DEFAULT_MAX_CONNECTIONS);
    cfg.max_connections = 2;
    cfg.resolve.insert("up.test".into(), LO);
    let p = EgressProxy::start(cfg).await.unwrap();
    register(&p, &to);
    let port = p.ports().proxy;
    let established = "HTTP/1.1 200 Connection established\r\n\r\n";
    let (first, a) = connect_via(port, &to).await;
    let (_second, b) = connect_via(port, &to).await;
    assert_eq!((a.as_str(), b.as_str()), (established, established));

    // The third is closed before anything is read or sent upstream.
    let (_third, c) = connect_via(port, &to).await;
    assert_eq!(c, "");
    let r = wait_records(&p, 1).await;
    assert_eq!(r.len(), 1, "{r:?}");
    let why = r[0].reason.as_deref().unwrap_or_default();
    assert!(
        !r[0].allowed && r[0].via == Via::Other && r[0].rule.is_none(),
        "{r:?}"
    );
    assert!(
        why.contains("too many connections")
            && why.contains("has 2 open")
            && why.contains("egress_max_connections"),
        "{why}"
    );

    // Closing one frees its slot (the relay ends when both sides are done).
    drop(first);
    let mut fourth = String::new();
    for _ in 0..100 {
        let (_s, got) = connect_via(port, &to).await;
        fourth = got;
        if fourth == established {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(fourth, established);
}

#[tokio::test]
async fn a_connection_limit_of_zero_is_refused_at_start() {
    let cfg = EgressConfig {
        max_connections: 0,
        ..EgressConfig::default()
    };
    let e = EgressProxy::start(cfg).await.unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
}

#[tokio::test]
async fn unregistering_a_sandbox_ends_its_open_connections_and_records_them() {
    let hold = holding_upstream().await;
    let to = format!("up.test:{hold}");
    let p = proxy_allowing(&to).await;
    let (mut s, got) = connect_via(p.ports().proxy, &to).await;
    assert_eq!(got, "HTTP/1.1 200 Connection established\r\n\r\n");
    s.write_all(b"ping").await.unwrap();
    // Nothing ends it but the sandbox going away.
    let mut b = [0u8; 16];
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), s.read(&mut b))
            .await
            .is_err()
    );
    p.unregister(LO);
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut b)).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "the connection stayed open: {end:?}"
    );
    // Recorded as it ended, with its bytes.
    let r = wait_records(&p, 1).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].allowed && r[0].via == Via::Connect && r[0].bytes_up == 4,
        "{r:?}"
    );
    // And its slot is free: the sandbox, served again, may open its full quota.
    register(&p, &to);
    for _ in 0..100 {
        if p.shared.open.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(p.shared.open.lock().unwrap().is_empty());
}

//! Plain HTTP through the proxy (h1.rs), on loopback with the explicit protocol:
//! keep-alive requests each decided and recorded, pipelining, bodies of every framing
//! (length, chunked, until close, none for HEAD/204), `Expect: 100-continue`, an
//! upgrade, framing the proxy refuses, a server that does not speak HTTP, and the
//! interceptor taking a later request.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::tests::{proxy_allowing, talk, upstream, wait_records, Seen};
use super::*;

/// A socket with what was read from it and not yet used.
struct Conn {
    s: TcpStream,
    b: Vec<u8>,
}

impl Conn {
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk))
            .await
            .expect("read timed out")
            .unwrap_or(0);
        self.b.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Up to and including `pat` (None at end of stream).
    async fn until(&mut self, pat: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.b.windows(pat.len()).position(|w| w == pat) {
                return Some(self.b.drain(..i + pat.len()).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.b.len() < n {
            assert!(self.fill().await, "ended {} bytes short", n - self.b.len());
        }
        self.b.drain(..n).collect()
    }

    async fn rest(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.b)
    }

    /// A chunked body, decoded; and the raw bytes as received.
    async fn chunked(&mut self) -> (Vec<u8>, Vec<u8>) {
        let (mut body, mut raw) = (Vec::new(), Vec::new());
        loop {
            let line = self.until(b"\r\n").await.unwrap();
            raw.extend_from_slice(&line);
            let size = http::chunk_size(&line[..line.len() - 2]).unwrap() as usize;
            if size == 0 {
                loop {
                    let t = self.until(b"\r\n").await.unwrap();
                    raw.extend_from_slice(&t);
                    if t.len() == 2 {
                        return (body, raw);
                    }
                }
            }
            let data = self.exact(size + 2).await;
            body.extend_from_slice(&data[..size]);
            raw.extend_from_slice(&data);
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const CHUNKED: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";

/// An HTTP/1.1 server named `name`: `/big?n=N` N bytes of `z`, `/chunked` a chunked
/// body with a trailer, `/close` a body until close, `/204`, `/ws` an upgrade that
/// then echoes bytes prefixed `WS:`; anything else a line saying what it got.
pub(super) async fn web(name: &'static str) -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_one(name, Conn { s, b: Vec::new() }));
        }
    });
    port
}

async fn serve_one(name: &str, mut c: Conn) {
    while let Some(head) = c.until(b"\r\n\r\n").await {
        let head = String::from_utf8(head).unwrap();
        let mut first = head.split("\r\n").next().unwrap().split(' ');
        let (method, target) = (first.next().unwrap(), first.next().unwrap());
        if header(&head, "expect") == Some("100-continue") {
            c.s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .unwrap();
        }
        let body = if let Some(n) = header(&head, "content-length") {
            c.exact(n.parse().unwrap()).await
        } else if header(&head, "transfer-encoding").is_some() {
            c.chunked().await.0
        } else {
            Vec::new()
        };
        let path = target.split('?').next().unwrap();
        let out: Vec<u8> = match path {
            "/big" => {
                let n: usize = target.split("n=").nth(1).unwrap().parse().unwrap();
                let mut o = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
                o.resize(o.len() + n, b'z');
                o
            }
            "/chunked" => {
                let mut o = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                o.extend_from_slice(CHUNKED);
                o
            }
            "/close" => {
                let _ =
                    c.s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
                        .await;
                return;
            }
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/ws" => {
                c.s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
                    .await
                    .unwrap();
                let rest = c.rest().await;
                let _ = c.s.write_all(&[b"WS:", &rest[..]].concat()).await;
                return;
            }
            _ => {
                let lines: Vec<&str> = head.trim_end().split("\r\n").collect();
                let text = format!(
                    "{name} {method} {target} host={} body={} head={}",
                    header(&head, "host").unwrap_or("-"),
                    body.len(),
                    lines.join("|")
                );
                let mut o = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", text.len())
                    .into_bytes();
                if method != "HEAD" {
                    o.extend_from_slice(text.as_bytes());
                }
                o
            }
        };
        if c.s.write_all(&out).await.is_err() {
            return;
        }
        if header(&head, "connection") == Some("close") {
            return;
        }
    }
}

async fn client(p: &EgressProxy) -> Conn {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, p.ports().proxy))
        .await
        .unwrap();
    Conn { s, b: Vec::new() }
}

/// One response with a Content-Length: (head, body).
async fn response(c: &mut Conn) -> (String, String) {
    let head = String::from_utf8(c.until(b"\r\n\r\n").await.expect("no response")).unwrap();
    let n = header(&head, "content-length").map_or(0, |n| n.parse().unwrap());
    let body = String::from_utf8(c.exact(n).await).unwrap();
    (head, body)
}

#[tokio::test]
async fn keep_alive_requests_are_each_decided_and_recorded() {
    let (a, b) = (web("A").await, web("B").await);
    let p = proxy_allowing(&format!("up.test:{a},a.up.test:{b}")).await;
    let mut c = client(&p).await;
    let get = |host: &str, port: u16, path: &str| {
        format!("GET http://{host}:{port}{path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
    };
    c.s.write_all(get("up.test", a, "/one?k=v").as_bytes())
        .await
        .unwrap();
    let (h, body) = response(&mut c).await;
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert!(body.starts_with("A GET /one?k=v host=up.test"), "{body}");
    // Same connection, another allowed host: its own upstream.
    c.s.write_all(get("a.up.test", b, "/two").as_bytes())
        .await
        .unwrap();
    assert!(response(&mut c).await.1.starts_with("B GET /two"));
    // Back to the first (a new upstream connection again), then a denied host: 403,
    // and the connection ends.
    c.s.write_all(get("up.test", a, "/three").as_bytes())
        .await
        .unwrap();
    assert!(response(&mut c).await.1.starts_with("A GET /three"));
    c.s.write_all(get("other.test", 80, "/x").as_bytes())
        .await
        .unwrap();
    let rest = String::from_utf8(c.rest().await).unwrap();
    assert!(
        rest.starts_with("HTTP/1.1 403 Forbidden") && rest.contains("other.test:80 is not allowed"),
        "{rest}"
    );
    // A Host header naming another server does not move a request: the URI decides.
    let out = talk(
        p.ports().proxy,
        format!(
            "GET http://up.test:{a}/h HTTP/1.1\r\nHost: a.up.test\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(out.contains("A GET /h host=a.up.test"), "{out}");
    let r = wait_records(&p, 5).await;
    let seen: Vec<_> = r
        .iter()
        .map(|r| (r.host.as_str(), r.path.as_deref(), r.allowed))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("up.test", Some("/one"), true),
            ("a.up.test", Some("/two"), true),
            ("up.test", Some("/three"), true),
            ("other.test", Some("/x"), false),
            ("up.test", Some("/h"), true),
        ]
    );
    assert!(r[..3]
        .iter()
        .all(|r| r.bytes_up > 30 && r.bytes_down > 30 && r.method.as_deref() == Some("GET")));
    assert_eq!(r[3].bytes_down, 0);
}

#[tokio::test]
async fn pipelined_requests_with_every_framing_arrive_intact() {
    let a = web("A").await;
    let p = proxy_allowing(&format!("up.test:{a}")).await;
    // A reader and a blocking writer on one connection.
    let std = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, p.ports().proxy)).unwrap();
    let mut writer = std.try_clone().unwrap();
    std.set_nonblocking(true).unwrap();
    let mut c = Conn {
        s: TcpStream::from_std(std).unwrap(),
        b: Vec::new(),
    };
    let u = format!("http://up.test:{a}");
    let upload = vec![b'u'; 300_000];
    let mut all = format!(
        "POST {u}/len HTTP/1.1\r\nHost: up.test\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    )
    .into_bytes();
    all.extend_from_slice(&upload);
    all.extend_from_slice(
        format!("POST {u}/ch HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    );
    all.extend_from_slice(CHUNKED);
    for path in ["/chunked", "/204", "/big?n=3000000"] {
        all.extend_from_slice(
            format!("GET {u}{path} HTTP/1.1\r\nHost: up.test\r\n\r\n").as_bytes(),
        );
    }
    all.extend_from_slice(format!("HEAD {u}/h HTTP/1.1\r\nHost: up.test\r\n\r\n").as_bytes());
    all.extend_from_slice(format!("GET {u}/close HTTP/1.1\r\nHost: up.test\r\n\r\n").as_bytes());
    // All at once: the proxy serves them in order.
    let w = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        writer.write_all(&all).unwrap()
    });
    assert!(response(&mut c)
        .await
        .1
        .starts_with("A POST /len host=up.test body=300000"));
    assert!(response(&mut c)
        .await
        .1
        .starts_with("A POST /ch host=up.test body=11"));
    let h = String::from_utf8(c.until(b"\r\n\r\n").await.unwrap()).unwrap();
    assert!(h.contains("Transfer-Encoding: chunked"), "{h}");
    let (body, raw) = c.chunked().await;
    assert_eq!(
        (body.as_slice(), raw.as_slice()),
        (&b"hello world"[..], CHUNKED)
    );
    assert!(response(&mut c).await.0.starts_with("HTTP/1.1 204"));
    let (h, big) = response(&mut c).await;
    assert!(
        h.starts_with("HTTP/1.1 200") && big.len() == 3_000_000 && big.bytes().all(|b| b == b'z')
    );
    // HEAD: a Content-Length and no body.
    let h = String::from_utf8(c.until(b"\r\n\r\n").await.unwrap()).unwrap();
    assert!(header(&h, "content-length").is_some(), "{h}");
    let rest = c.rest().await;
    assert_eq!(
        rest,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close"
    );
    w.await.unwrap();
    let r = wait_records(&p, 7).await;
    assert_eq!(r.len(), 7, "{r:?}");
    assert!(r.iter().all(|r| r.allowed && r.via == Via::HttpProxy));
    assert!(
        r[0].bytes_up > 300_000 && r[4].bytes_down > 3_000_000,
        "{r:?}"
    );
    assert_eq!(
        r.iter()
            .map(|r| r.method.as_deref().unwrap())
            .collect::<Vec<_>>(),
        vec!["POST", "POST", "GET", "GET", "GET", "HEAD", "GET"]
    );
}

#[tokio::test]
async fn continue_upgrade_refusals_and_bad_servers() {
    let (a, raw) = (web("A").await, upstream().await);
    let p = proxy_allowing(&format!("up.test:{a},up.test:{raw}")).await;
    let u = format!("http://up.test:{a}");
    // Expect: 100-continue: the client sends the body only after the 100.
    let mut c = client(&p).await;
    c.s.write_all(
        format!("PUT {u}/e HTTP/1.1\r\nHost: up.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        c.until(b"\r\n\r\n").await.unwrap(),
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    c.s.write_all(b"data").await.unwrap();
    assert!(response(&mut c)
        .await
        .1
        .starts_with("A PUT /e host=up.test body=4"));
    // An upgrade: bytes both ways after the 101.
    c.s.write_all(
        format!(
            "GET {u}/ws HTTP/1.1\r\nHost: up.test\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert!(c
        .until(b"\r\n\r\n")
        .await
        .unwrap()
        .starts_with(b"HTTP/1.1 101"));
    c.s.write_all(b"raw bytes").await.unwrap();
    c.s.shutdown().await.unwrap();
    assert_eq!(c.rest().await, b"WS:raw bytes");
    // Framing two parsers could read differently never reaches the server.
    let out = talk(
        p.ports().proxy,
        format!("POST {u}/s HTTP/1.1\r\nHost: up.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 400") && out.contains("both Content-Length"),
        "{out}"
    );
    // A server that does not answer in HTTP: 502.
    let out = talk(
        p.ports().proxy,
        format!("GET http://up.test:{raw}/ HTTP/1.1\r\nHost: up.test\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 502") && out.contains("not an HTTP/1 response"),
        "{out}"
    );
    let r = wait_records(&p, 4).await;
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(r[1].reason.as_deref().unwrap().contains("upgraded") && r[1].bytes_up > 9);
    assert!(
        !r[2].allowed
            && r[2]
                .reason
                .as_deref()
                .unwrap()
                .contains("both Content-Length")
    );
}

#[tokio::test]
async fn the_interceptor_gets_a_later_request_it_wants() {
    let (a, b) = (web("A").await, web("B").await);
    let p = proxy_allowing(&format!("up.test:{a},a.up.test:{b}")).await;
    let seen = Arc::new(Seen::default());
    p.set_interceptor(seen.clone());
    let mut c = client(&p).await;
    // a.up.test is not wanted: relayed; up.test is: handed over at its head.
    c.s.write_all(format!("GET http://a.up.test:{b}/x HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert!(response(&mut c).await.1.starts_with("B GET /x"));
    c.s.write_all(format!("GET http://up.test:{a}/y HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // In origin form, as a first request would be.
    assert_eq!(c.rest().await, b"INTERCEPTED:GET /");
    let g = seen.0.lock().unwrap().clone();
    assert_eq!(
        g.iter()
            .map(|i| (i.host.as_str(), i.via))
            .collect::<Vec<_>>(),
        vec![("up.test", Via::HttpProxy)]
    );
    let r = wait_records(&p, 2).await;
    assert_eq!(r[1].reason.as_deref(), Some("seen"));
}

/// Not a check: what a 100 MiB plain-HTTP download costs through the proxy versus
/// directly, on loopback, blocking server and client threads (run with
/// `cargo test -p corral-net --release throughput -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_through_the_proxy_vs_direct() {
    use std::io::{Read, Write};
    const BIG: usize = 100 << 20;
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut b = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&b[..n]);
                }
                let chunk = vec![b'y'; 1 << 20];
                let _ = s.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").as_bytes(),
                );
                for _ in 0..BIG / chunk.len() {
                    if s.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let p = proxy_allowing(&format!("up.test:{port}")).await;
    let proxy_port = p.ports().proxy;
    let get = move |via_proxy: bool| {
        let mut s = std::net::TcpStream::connect((
            Ipv4Addr::LOCALHOST,
            if via_proxy { proxy_port } else { port },
        ))
        .unwrap();
        let t = std::time::Instant::now();
        s.write_all(
            format!("GET http://up.test:{port}/big HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut b = vec![0u8; 128 << 10];
        let mut n = 0;
        loop {
            let m = s.read(&mut b).unwrap();
            if m == 0 {
                break;
            }
            n += m;
            if n >= BIG + 38 {
                break;
            }
        }
        (BIG as f64 / (1 << 20) as f64) / t.elapsed().as_secs_f64()
    };
    // Interleaved, the median of each.
    let (mut d, mut px) = (Vec::new(), Vec::new());
    for _ in 0..12 {
        d.push(
            tokio::task::spawn_blocking(move || get(false))
                .await
                .unwrap(),
        );
        px.push(
            tokio::task::spawn_blocking(move || get(true))
                .await
                .unwrap(),
        );
    }
    d.sort_by(f64::total_cmp);
    px.sort_by(f64::total_cmp);
    println!(
        "direct {:.0} MiB/s, proxy {:.0} MiB/s, ratio {:.2}",
        d[6],
        px[6],
        px[6] / d[6]
    );
}

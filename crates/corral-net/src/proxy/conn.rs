//! One proxied connection: who it is from, where it wants to go, the decision, the
//! splice, the record.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::http::{self, Head};
use super::records::{now_ms, EgressRecord, Via};
use super::sni::{self, Hello};
use super::upstream::{Resolve, Upstream};
use super::{h1, ConnInfo, Refused, SandboxEgress, Shared, Verdict};

/// How long a client may take to send what the decision needs.
const FIRST_BYTES: Duration = Duration::from_secs(10);

pub(crate) async fn accept_loop(l: TcpListener, shared: Arc<Shared>) {
    loop {
        match l.accept().await {
            Ok((s, peer)) => {
                let sh = shared.clone();
                tokio::spawn(async move { handle(s, peer, sh).await });
            }
            // Out of descriptors and the like: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The destination before SO_ORIGINAL_DST-redirection (None without a conntrack entry).
fn original_dst(s: &TcpStream) -> Option<SocketAddrV4> {
    let sin = nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::OriginalDst).ok()?;
    Some(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    ))
}

/// What the first bytes said.
struct Target {
    via: Via,
    host: String,
    port: u16,
    method: Option<String>,
    path: Option<String>,
    /// What to send upstream first (a replayed ClientHello, a rewritten head, bytes
    /// after a CONNECT head).
    first: Vec<u8>,
    /// For an absolute-URI request: the bytes as read (`first` has the head rewritten).
    raw: Vec<u8>,
}

async fn handle(mut s: TcpStream, peer: SocketAddr, sh: Arc<Shared>) {
    let IpAddr::V4(src) = peer.ip() else { return };
    // Not a registered sandbox: nothing to serve (nftables lets none through anyway).
    let Some(sb) = sh.sandbox(src) else { return };
    let orig = original_dst(&s);
    let at_ms = now_ms();
    // Held until the connection is done, whichever way it ends.
    let _slot = match sh.admit(src, &s) {
        Ok(slot) => slot,
        Err(Refused::Gone) => return,
        Err(Refused::Full(open)) => {
            // Closed unread: reading what it wants would hold one more descriptor.
            let why = format!(
                "too many connections: the sandbox has {open} open through the egress proxy \
                 (the limit, [network] egress_max_connections); close some and retry"
            );
            let dst = orig.map_or(String::new(), |o| o.ip().to_string());
            let port = orig.map_or(0, |o| o.port());
            record(
                &sh,
                &sb,
                at_ms,
                Via::Other,
                &dst,
                port,
                false,
                None,
                Some(why),
            );
            return;
        }
    };
    let _ = s.set_nodelay(true);
    let target = match tokio::time::timeout(FIRST_BYTES, read_target(&mut s, orig)).await {
        Ok(Ok(t)) => t,
        Ok(Err((via, why, reply))) => {
            if let Some(r) = reply {
                let _ = s.write_all(r.as_bytes()).await;
            }
            record(
                &sh,
                &sb,
                at_ms,
                via,
                "",
                orig.map_or(0, |o| o.port()),
                false,
                None,
                Some(why),
            );
            return;
        }
        Err(_) => return,
    };
    let mut rec = EgressRecord {
        at_ms,
        sandbox: sb.sandbox.clone(),
        tenant: sb.tenant.clone(),
        host: target.host.clone(),
        port: target.port,
        via: target.via,
        method: target.method.clone(),
        path: target.path.clone(),
        bytes_up: 0,
        bytes_down: 0,
        allowed: false,
        rule: None,
        reason: None,
    };
    let tls = matches!(target.via, Via::Connect | Via::Tls);
    let host = match verdict(&sb, &target.host, target.port) {
        Ok((host, rule)) => {
            rec.rule = Some(rule);
            host
        }
        Err((rule, why)) => {
            if target.via != Via::Tls {
                let body = denied_text(&sb, &target.host, target.port, &why);
                let _ = s.write_all(reply(403, "Forbidden", &body).as_bytes()).await;
            }
            rec.rule = rule;
            rec.reason = Some(why);
            sh.records.push(rec);
            return;
        }
    };
    rec.host = host.clone();
    let upstream = Upstream::new(sh.clone(), host.clone(), target.port);
    let info = ConnInfo {
        sandbox: sb.sandbox.clone(),
        tenant: sb.tenant.clone(),
        host,
        port: target.port,
        via: target.via,
    };
    if let Some(i) = sh.interceptor().filter(|i| i.wants(&info)) {
        if target.via == Via::Connect && s.write_all(CONNECTED.as_bytes()).await.is_err() {
            return;
        }
        let client = Box::new(Prefixed::new(target.first, s));
        sh.records
            .push(rec.intercepted(i.handle(info, client, upstream).await));
        return;
    }
    if !tls {
        // Plain HTTP: request by request (h1.rs).
        let buf = if target.via == Via::HttpProxy {
            target.raw
        } else {
            target.first
        };
        let orig_port = orig.map_or(0, |o| o.port());
        let first = h1::First {
            rec,
            buf,
            orig_port,
        };
        return h1::serve(s, first, sh, sb).await;
    }
    let mut up = match upstream.connect().await {
        Ok(u) => u,
        Err(e) => {
            upstream_failed(&mut rec, &e);
            if target.via == Via::Connect {
                let body = format!("corral egress proxy: {}:{}: {e}\n", rec.host, rec.port);
                let _ = s
                    .write_all(reply(502, "Bad Gateway", &body).as_bytes())
                    .await;
            }
            sh.records.push(rec);
            return;
        }
    };
    rec.allowed = true;
    if target.via == Via::Connect && s.write_all(CONNECTED.as_bytes()).await.is_err() {
        sh.records.push(rec);
        return;
    }
    if !target.first.is_empty() && up.write_all(&target.first).await.is_err() {
        sh.records.push(rec);
        return;
    }
    let (a, b) = super::splice::relay(&s, &up).await;
    rec.bytes_up = a + target.first.len() as u64;
    rec.bytes_down = b;
    sh.records.push(rec);
}

const CONNECTED: &str = "HTTP/1.1 200 Connection established\r\n\r\n";

/// The rules' answer for `host:port`: Ok((the name normalized, the allowing rule)),
/// or Err((the denying rule if one, why)).
pub(super) fn verdict(
    sb: &SandboxEgress,
    host: &str,
    port: u16,
) -> Result<(String, String), (Option<String>, String)> {
    match sb.policy.decide(host, port) {
        Verdict::Allow(rule) => Ok((super::normalize(host).unwrap_or_default(), rule)),
        Verdict::Denied(r) => Err((Some(r.clone()), format!("denied by the rule {r}"))),
        Verdict::BadName => Err((None, "not a valid host name".to_string())),
        _ => Err((None, "matches no allow rule".to_string())),
    }
}

/// The body of a 403 for a denied `host:port`.
pub(super) fn denied_text(sb: &SandboxEgress, host: &str, port: u16, why: &str) -> String {
    format!(
        "corral egress proxy: {host}:{port} is not allowed for this sandbox ({why}). \
         Its allow rules: {}. Create the sandbox with the destination in its \
         allow list (e.g. --net allow=NAME:PORT; see docs/network.md).\n",
        if sb.policy.allow.is_empty() {
            "none".to_string()
        } else {
            sb.policy.allow_text()
        },
    )
}

/// Fills in the record of an allowed connection whose upstream could not be reached.
pub(super) fn upstream_failed(rec: &mut EgressRecord, e: &Resolve) {
    rec.allowed = !matches!(e, Resolve::Rebinding(_));
    if !rec.allowed {
        rec.rule = Some("rebinding".into());
    }
    rec.reason = Some(e.to_string());
}

pub(super) fn reply(code: u16, text: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[allow(clippy::too_many_arguments)]
fn record(
    sh: &Shared,
    sb: &SandboxEgress,
    at_ms: u64,
    via: Via,
    host: &str,
    port: u16,
    allowed: bool,
    rule: Option<String>,
    reason: Option<String>,
) {
    sh.records.push(EgressRecord {
        at_ms,
        sandbox: sb.sandbox.clone(),
        tenant: sb.tenant.clone(),
        host: host.to_string(),
        port,
        via,
        method: None,
        path: None,
        bytes_up: 0,
        bytes_down: 0,
        allowed,
        rule,
        reason,
    });
}

type Refusal = (Via, String, Option<String>);

/// Reads until the destination is known. The first bytes say how the client speaks,
/// whatever address it connected to: a TLS ClientHello (decided by SNI), `CONNECT`
/// or an absolute-URI request (the explicit proxy protocol: clients with HTTP(S)_PROXY
/// set, even to the proxy port of a previous daemon), or an origin-form request
/// (decided by Host). The original destination port counts for the first and last.
async fn read_target(s: &mut TcpStream, orig: Option<SocketAddrV4>) -> Result<Target, Refusal> {
    let mut buf = Vec::with_capacity(2048);
    let bad = |via, why: &str| -> Refusal {
        let r = reply(400, "Bad Request", &format!("corral egress proxy: {why}\n"));
        (via, why.to_string(), Some(r))
    };
    let port = orig.map_or(0, |o| o.port());
    read_more(s, &mut buf)
        .await
        .map_err(|w| (Via::Other, w.to_string(), None))?;
    if buf[0] == 0x16 {
        loop {
            match sni::parse(&buf) {
                Hello::Sni(host) => {
                    return Ok(Target {
                        via: Via::Tls,
                        host,
                        port,
                        method: None,
                        path: None,
                        first: buf,
                        raw: Vec::new(),
                    })
                }
                Hello::Incomplete if buf.len() < sni::MAX_HELLO => read_more(s, &mut buf)
                    .await
                    .map_err(|w| (Via::Tls, w.to_string(), None))?,
                Hello::NoSni => {
                    return Err((
                        Via::Tls,
                        "a TLS connection without a server name (SNI); connect by name".into(),
                        None,
                    ))
                }
                _ => return Err((Via::Tls, "not a TLS ClientHello".into(), None)),
            }
        }
    }
    let end = read_head(s, &mut buf)
        .await
        .map_err(|w| (Via::Other, format!("neither TLS nor HTTP ({w})"), None))?;
    let head = Head::parse(&buf[..end])
        .ok_or_else(|| (Via::Other, "neither TLS nor HTTP".to_string(), None))?;
    if head.method == "CONNECT" {
        let (host, port) = head
            .connect_dest()
            .ok_or_else(|| bad(Via::Connect, "CONNECT needs host:port"))?;
        return Ok(Target {
            via: Via::Connect,
            host,
            port,
            method: None,
            path: None,
            first: buf[end..].to_vec(),
            raw: Vec::new(),
        });
    }
    if let Some(d) = head.absolute_dest() {
        let mut first = head.to_origin_form(&d.path);
        first.extend_from_slice(&buf[end..]);
        return Ok(Target {
            via: Via::HttpProxy,
            host: d.host,
            port: d.port.unwrap_or(80),
            method: Some(head.method),
            path: Some(http::record_path(&d.path)),
            first,
            raw: buf,
        });
    }
    if !head.target.starts_with('/') {
        return Err(bad(
            Via::HttpProxy,
            "a request to the proxy needs an absolute http:// URL (https goes through CONNECT)",
        ));
    }
    let d = head
        .host_dest()
        .ok_or_else(|| bad(Via::Http, "an HTTP request without a Host header"))?;
    Ok(Target {
        via: Via::Http,
        host: d.host,
        port,
        method: Some(head.method),
        path: Some(http::record_path(&d.path)),
        first: buf,
        raw: Vec::new(),
    })
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut chunk = [0u8; 4096];
    let n = s
        .read(&mut chunk)
        .await
        .map_err(|_| "the client went away")?;
    if n == 0 {
        return Err("the client closed the connection");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Reads until a complete request head is in `buf`; its end.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, &'static str> {
    loop {
        if let Some(end) = http::head_end(buf) {
            return Ok(end);
        }
        if buf.len() >= http::MAX_HEAD {
            return Err("the request head is larger than 16 KiB");
        }
        read_more(s, buf).await?;
    }
}

/// A stream that yields `pre` before the inner stream's bytes.
pub(super) struct Prefixed<S> {
    pre: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(super) fn new(pre: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed { pre, pos: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if me.pos < me.pre.len() {
            let n = (me.pre.len() - me.pos).min(out.remaining());
            out.put_slice(&me.pre[me.pos..me.pos + n]);
            me.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

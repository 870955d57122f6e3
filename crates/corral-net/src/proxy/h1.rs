//! Plain HTTP through the proxy, one request at a time. Every request on a client
//! connection is decided by its own head (the absolute URI of the explicit proxy, or
//! Host on the original destination port), recorded on its own (method, path, bytes
//! each way), and sent to the upstream its destination names: a keep-alive request
//! for another host gets another upstream connection, or a 403 and the end of the
//! connection. Heads are parsed in user space; bodies whose length the framing gives
//! (Content-Length, each chunk of a chunked body, a response read until close) move
//! with splice(2) like passed-through TLS, so a large download costs about what a
//! spliced connection costs. Requests are served in order (pipelined ones wait in the
//! buffers), each request body concurrently with its response (`Expect:
//! 100-continue`); `101 Switching Protocols` turns the connection into a byte relay.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::conn::{self, Prefixed};
use super::http::{self, Body, Head, Response, MAX_HEAD};
use super::records::{now_ms, EgressRecord, Via};
use super::splice::Pipe;
use super::upstream::Upstream;
use super::{ConnInfo, SandboxEgress, Shared};

/// How long a kept-alive client connection may wait for its next request.
const IDLE: Duration = Duration::from_secs(120);
/// The longest response head read.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line read.
const MAX_LINE: usize = 4096;
/// What one read into a buffer asks for.
const READ: usize = 16 * 1024;

/// The first request of a connection, already decided by [`conn`].
pub(crate) struct First {
    /// Its record (allowed rule set; bytes still 0).
    pub(crate) rec: EgressRecord,
    /// The bytes read from the client so far, from the request head on.
    pub(crate) buf: Vec<u8>,
    /// The original destination port (Host-decided requests go there).
    pub(crate) orig_port: u16,
}

/// Bytes read from a socket and not yet passed on.
struct Reader<'a> {
    s: &'a TcpStream,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Reads more into the buffer; 0 at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        loop {
            self.s.readable().await?;
            self.buf.reserve(READ);
            match self.s.try_read_buf(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the buffer holds a complete head; its end. None when the stream
    /// ends before its first byte.
    async fn head(&mut self, max: usize) -> io::Result<Option<usize>> {
        loop {
            if let Some(end) = http::head_end(&self.buf) {
                return Ok(Some(end));
            }
            if self.buf.len() >= max {
                return Err(invalid("a message head larger than the proxy reads"));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(eof())
                };
            }
        }
    }

    /// Reads until the buffer starts with a CRLF-terminated line; its end.
    async fn line(&mut self) -> io::Result<usize> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return Ok(i + 2);
            }
            if self.buf.len() >= MAX_LINE {
                return Err(invalid("a chunk line longer than 4 KiB"));
            }
            if self.fill().await? == 0 {
                return Err(eof());
            }
        }
    }

    /// Passes the first `n` buffered bytes to `to`.
    async fn pass(&mut self, n: usize, to: &TcpStream, count: &mut u64) -> io::Result<()> {
        write_all(to, &self.buf[..n]).await?;
        *count += n as u64;
        self.buf.drain(..n);
        Ok(())
    }

    /// Moves a body framed as `body` to `to`: what is buffered first, the rest spliced.
    async fn body(
        &mut self,
        body: Body,
        to: &TcpStream,
        pipe: &mut Option<Pipe>,
        count: &mut u64,
    ) -> io::Result<()> {
        match body {
            Body::None => Ok(()),
            Body::Length(n) => self.exact(n, to, pipe, count).await,
            Body::UntilClose => {
                self.pass(self.buf.len(), to, count).await?;
                pipe_of(pipe)?
                    .to_end(self.s, to, &mut |m| *count += m)
                    .await
            }
            Body::Chunked => loop {
                let end = self.line().await?;
                let size = http::chunk_size(&self.buf[..end - 2])
                    .ok_or_else(|| invalid("a malformed chunk size"))?;
                self.pass(end, to, count).await?;
                if size == 0 {
                    // Trailer lines, up to the empty one.
                    loop {
                        let end = self.line().await?;
                        self.pass(end, to, count).await?;
                        if end == 2 {
                            return Ok(());
                        }
                    }
                }
                self.exact(size, to, pipe, count).await?;
                if self.line().await? != 2 {
                    return Err(invalid("chunk data longer than its size"));
                }
                self.pass(2, to, count).await?;
            },
        }
    }

    async fn exact(
        &mut self,
        n: u64,
        to: &TcpStream,
        pipe: &mut Option<Pipe>,
        count: &mut u64,
    ) -> io::Result<()> {
        let buffered = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
        self.pass(buffered, to, count).await?;
        let rest = n - buffered as u64;
        if rest == 0 {
            return Ok(());
        }
        pipe_of(pipe)?
            .exact(self.s, to, rest, &mut |m| *count += m)
            .await
    }
}

fn pipe_of(p: &mut Option<Pipe>) -> io::Result<&Pipe> {
    if p.is_none() {
        *p = Some(Pipe::new()?);
    }
    p.as_ref().ok_or_else(|| io::Error::other("no pipe"))
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the connection ended inside a message",
    )
}

async fn write_all(s: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        s.writable().await?;
        match s.try_write(b) {
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How a response ended.
enum Done {
    /// Complete; whether the server keeps the connection.
    Complete(bool),
    /// `101 Switching Protocols`: the connection is no longer HTTP.
    Upgraded,
}

/// Reads a response (interim `1xx` ones first) and passes it to the client.
async fn response(
    up: &mut Reader<'_>,
    client: &TcpStream,
    method: &str,
    pipe: &mut Option<Pipe>,
    down: &mut u64,
) -> io::Result<Done> {
    loop {
        let Some(end) = up.head(MAX_RESPONSE_HEAD).await? else {
            return Err(eof());
        };
        let r = Response::parse(&up.buf[..end])
            .ok_or_else(|| invalid("the server's answer is not an HTTP/1 response"))?;
        let body = r.body(method).map_err(invalid)?;
        up.pass(end, client, down).await?;
        match r.status {
            101 => return Ok(Done::Upgraded),
            100..=199 => continue,
            _ => {}
        }
        up.body(body, client, pipe, down).await?;
        return Ok(Done::Complete(r.keep_alive()));
    }
}

/// The upstream connection in use: where it goes, and the socket.
struct Open {
    host: String,
    port: u16,
    s: TcpStream,
}

/// Serves a plain-HTTP client connection whose first request is allowed, until either
/// side is done.
pub(crate) async fn serve(
    client: TcpStream,
    first: First,
    sh: Arc<Shared>,
    sb: Arc<SandboxEgress>,
) {
    let First {
        rec,
        buf,
        orig_port,
    } = first;
    let mut cin = Reader { s: &client, buf };
    let mut open: Option<Open> = None;
    let (mut pipe_up, mut pipe_down) = (None, None);
    let mut next = Some(rec);
    loop {
        // The head: the first one is in the buffer already.
        let end = match tokio::time::timeout(IDLE, cin.head(MAX_HEAD)).await {
            Ok(Ok(Some(end))) => end,
            _ => return,
        };
        let Some(head) = Head::parse(&cin.buf[..end]) else {
            let why = "a malformed HTTP/1 request head";
            let _ = write_all(&client, bad_request(why).as_bytes()).await;
            let mut rec = next
                .take()
                .unwrap_or_else(|| new_record(&sb, Via::Http, orig_port, None));
            rec.allowed = false;
            rec.reason = Some(why.into());
            sh.records.push(rec);
            return;
        };
        let mut rec = match next.take() {
            Some(rec) => rec,
            None => match decide(&head, orig_port, &sb) {
                (rec, None) => rec,
                (rec, Some(reply)) => {
                    let _ = write_all(&client, reply.as_bytes()).await;
                    sh.records.push(rec);
                    return;
                }
            },
        };
        let info = ConnInfo {
            sandbox: sb.sandbox.clone(),
            tenant: sb.tenant.clone(),
            host: rec.host.clone(),
            port: rec.port,
            via: rec.via,
        };
        let upstream = Upstream::new(sh.clone(), rec.host.clone(), rec.port);
        if open.is_some() {
            // A later request the interceptor wants (the first one it did not): hand
            // it the rest of the connection, from this request's head on.
            if let Some(i) = sh.interceptor().filter(|i| i.wants(&info)) {
                drop(open.take());
                // Positioned as for a first request: the head in origin form.
                let mut pre = match head.absolute_dest() {
                    Some(d) if rec.via == Via::HttpProxy => head.to_origin_form(&d.path),
                    _ => cin.buf[..end].to_vec(),
                };
                pre.extend_from_slice(&cin.buf[end..]);
                drop(cin);
                let client = Box::new(Prefixed::new(pre, client));
                sh.records
                    .push(rec.intercepted(i.handle(info, client, upstream).await));
                return;
            }
        }
        let framing = match head.body() {
            Ok(b) => b,
            Err(why) => {
                let _ = write_all(&client, bad_request(why).as_bytes()).await;
                rec.allowed = false;
                rec.reason = Some(format!("refused: {why}"));
                sh.records.push(rec);
                return;
            }
        };
        let reused = open
            .as_ref()
            .is_some_and(|o| o.host == rec.host && o.port == rec.port);
        if !reused {
            drop(open.take());
            match upstream.connect().await {
                Ok(s) => {
                    open = Some(Open {
                        host: rec.host.clone(),
                        port: rec.port,
                        s,
                    })
                }
                Err(e) => {
                    conn::upstream_failed(&mut rec, &e);
                    let body = format!("corral egress proxy: {}:{}: {e}\n", rec.host, rec.port);
                    let _ =
                        write_all(&client, conn::reply(502, "Bad Gateway", &body).as_bytes()).await;
                    sh.records.push(rec);
                    return;
                }
            }
        }
        let Some(o) = open.as_ref() else { return };
        let up = &o.s;
        rec.allowed = true;
        let out_head = if rec.via == Via::HttpProxy {
            let path = head.absolute_dest().map(|d| d.path).unwrap_or_default();
            head.to_origin_form(&path)
        } else {
            cin.buf[..end].to_vec()
        };
        cin.buf.drain(..end);
        let (mut bytes_up, mut bytes_down) = (0u64, 0u64);
        let mut upr = Reader {
            s: up,
            buf: Vec::new(),
        };
        let (sent, got) = {
            let send = async {
                write_all(up, &out_head).await?;
                bytes_up += out_head.len() as u64;
                cin.body(framing, up, &mut pipe_up, &mut bytes_up).await
            };
            let recv = response(
                &mut upr,
                &client,
                &head.method,
                &mut pipe_down,
                &mut bytes_down,
            );
            tokio::pin!(send, recv);
            let mut sent = None;
            let got = loop {
                tokio::select! {
                    r = &mut send, if sent.is_none() => sent = Some(r),
                    r = &mut recv => break r,
                }
            };
            (sent, got)
        };
        rec.bytes_up = bytes_up;
        rec.bytes_down = bytes_down;
        let keep = match (&sent, got) {
            (Some(Ok(())), Ok(Done::Complete(keep))) => {
                keep && head.keep_alive() && upr.buf.is_empty()
            }
            (_, Ok(Done::Upgraded)) if !matches!(sent, Some(Err(_))) => {
                // Whatever either side sent after the heads goes first, then bytes.
                let (a, b) = (std::mem::take(&mut cin.buf), std::mem::take(&mut upr.buf));
                if write_all(up, &a).await.is_ok() && write_all(&client, &b).await.is_ok() {
                    let (u, d) = super::splice::relay(&client, up).await;
                    rec.bytes_up += a.len() as u64 + u;
                    rec.bytes_down += b.len() as u64 + d;
                }
                rec.reason = Some("upgraded (101 Switching Protocols)".into());
                false
            }
            (_, Err(e)) => {
                // Nothing reached the client yet: say what went wrong. A reused
                // connection the server closed while idle is closed as well (the
                // client retries as it would with the server itself).
                if bytes_down == 0 && !(reused && e.kind() == io::ErrorKind::UnexpectedEof) {
                    let body = format!("corral egress proxy: {}:{}: {e}\n", rec.host, rec.port);
                    let _ =
                        write_all(&client, conn::reply(502, "Bad Gateway", &body).as_bytes()).await;
                }
                rec.reason = Some(format!("ended: {e}"));
                false
            }
            // The request body did not arrive whole (or the response came first and the
            // client may never send it): the connection is in no state to go on.
            _ => false,
        };
        sh.records.push(rec);
        if !keep {
            return;
        }
    }
}

/// A later request on the connection: its record (where it goes, the deciding rule),
/// and when it is refused the reply to send before closing.
fn decide(head: &Head, orig_port: u16, sb: &SandboxEgress) -> (EgressRecord, Option<String>) {
    let mut rec = new_record(sb, Via::Http, orig_port, Some(head.method.clone()));
    let dest = if head.method == "CONNECT" {
        None
    } else if let Some(d) = head.absolute_dest() {
        rec.via = Via::HttpProxy;
        rec.port = d.port.unwrap_or(80);
        Some(d)
    } else if head.target.starts_with('/') {
        head.host_dest()
    } else {
        None
    };
    let Some(d) = dest else {
        let why = "a request after the first on a connection needs an http:// URL or a Host \
                   header (CONNECT on a new connection)";
        rec.reason = Some(why.into());
        return (rec, Some(bad_request(why)));
    };
    rec.host = d.host;
    rec.path = Some(http::record_path(&d.path));
    match conn::verdict(sb, &rec.host, rec.port) {
        Ok((host, rule)) => {
            rec.host = host;
            rec.rule = Some(rule);
            (rec, None)
        }
        Err((rule, why)) => {
            let reply = conn::reply(
                403,
                "Forbidden",
                &conn::denied_text(sb, &rec.host, rec.port, &why),
            );
            rec.rule = rule;
            rec.reason = Some(why);
            (rec, Some(reply))
        }
    }
}

fn new_record(sb: &SandboxEgress, via: Via, port: u16, method: Option<String>) -> EgressRecord {
    EgressRecord {
        at_ms: now_ms(),
        sandbox: sb.sandbox.clone(),
        tenant: sb.tenant.clone(),
        host: String::new(),
        port,
        via,
        method,
        path: None,
        bytes_up: 0,
        bytes_down: 0,
        allowed: false,
        rule: None,
        reason: None,
    }
}

fn bad_request(why: &str) -> String {
    conn::reply(400, "Bad Request", &format!("corral egress proxy: {why}\n"))
}

//! The head of an HTTP/1 request as the proxy needs it (method, target, Host), the
//! head of a response, and how long each message's body is (RFC 9112 section 6). Pure
//! and bounded (a request head is at most [`MAX_HEAD`] bytes). Framing that two
//! parsers could read differently (both Content-Length and Transfer-Encoding, two
//! lengths, a coding other than chunked, folded or spaced header names) is refused:
//! the proxy decides each request by its head, so it must see the same message
//! boundaries as the server.

/// The longest request head the proxy reads.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// Where the head ends (the index after `\r\n\r\n`), if it is complete.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// The method (`GET`, `CONNECT`...).
    pub(crate) method: String,
    /// The request target as sent.
    pub(crate) target: String,
    /// The Host header, if any.
    pub(crate) host_header: Option<String>,
    /// The header lines (without the request line), as sent.
    lines: Vec<String>,
    version: String,
}

/// Where a request goes, as far as its head says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dest {
    /// The host name (or address literal).
    pub(crate) host: String,
    /// The port, when named.
    pub(crate) port: Option<u16>,
    /// The path (origin form, `/` when none).
    pub(crate) path: String,
}

impl Head {
    /// Parses a complete head (up to and including the blank line). None when it is
    /// not an HTTP/1 request.
    pub(crate) fn parse(head: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(head).ok()?;
        let mut lines = text.split("\r\n");
        let first = lines.next()?;
        let mut parts = first.split(' ');
        let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || method.is_empty()
            || !method.bytes().all(|b| b.is_ascii_uppercase())
            || target.is_empty()
            || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
            || target.bytes().any(|b| b.is_ascii_control())
        {
            return None;
        }
        let kept = header_lines(lines)?;
        let hosts: Vec<&str> = header_values(&kept, "host").collect();
        if hosts.len() > 1 {
            // Two Host headers: which one would the server use?
            return None;
        }
        let host_header = hosts.first().map(|h| h.to_string());
        Some(Head {
            method: method.to_string(),
            target: target.to_string(),
            host_header,
            lines: kept,
            version: version.to_string(),
        })
    }

    /// Whether it is HTTP/1.0 (no keep-alive unless asked for).
    pub(crate) fn is_http10(&self) -> bool {
        self.version == "HTTP/1.0"
    }

    /// How long its body is: none, a length, or chunked. Err (say why) for framing the
    /// proxy will not guess at.
    pub(crate) fn body(&self) -> Result<Body, &'static str> {
        if self.lines.iter().any(|l| is_header(l, "transfer-encoding")) {
            if self.lines.iter().any(|l| is_header(l, "content-length")) {
                return Err("a request with both Content-Length and Transfer-Encoding");
            }
            return match codings(&self.lines) {
                Some(c) if c == ["chunked"] => Ok(Body::Chunked),
                _ => Err("a request Transfer-Encoding other than chunked"),
            };
        }
        match length(&self.lines)? {
            Some(n) => Ok(Body::Length(n)),
            None => Ok(Body::None),
        }
    }

    /// Whether the client wants the connection kept after this request.
    pub(crate) fn keep_alive(&self) -> bool {
        keep_alive(self.is_http10(), &self.lines)
    }

    /// For CONNECT: the `host:port` target.
    pub(crate) fn connect_dest(&self) -> Option<(String, u16)> {
        split_host_port(&self.target).and_then(|(h, p)| Some((h, p?)))
    }

    /// For an absolute-form target (`http://host[:port]/path`, what a client sends to
    /// an explicit proxy): the destination.
    pub(crate) fn absolute_dest(&self) -> Option<Dest> {
        let rest = self.target.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority)?;
        Some(Dest {
            host,
            port,
            path: path.to_string(),
        })
    }

    /// For an origin-form target (what a client sends to a server): the destination
    /// from the Host header.
    pub(crate) fn host_dest(&self) -> Option<Dest> {
        let (host, port) = split_host_port(self.host_header.as_deref()?)?;
        Some(Dest {
            host,
            port,
            path: self.target.clone(),
        })
    }

    /// The head as sent to the server: origin form (`path`), without the
    /// `Proxy-*` headers meant for the proxy.
    pub(crate) fn to_origin_form(&self, path: &str) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, path, self.version);
        for l in &self.lines {
            let name = l.split(':').next().unwrap_or("");
            // `get`: never a slice inside a character, whatever the name holds.
            if name
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("proxy-"))
            {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding (chunks, a last chunk, trailers).
    Chunked,
    /// Until the server closes the connection (responses only).
    UntilClose,
}

/// The head of an HTTP/1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    http10: bool,
    lines: Vec<String>,
}

impl Response {
    /// Parses a complete response head (up to and including the blank line).
    pub(crate) fn parse(head: &[u8]) -> Option<Response> {
        // Servers send bytes other than UTF-8 in values (a Latin-1 file name): only the
        // framing headers matter here, and they are ASCII.
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let first = lines.next()?;
        let (version, rest) = first.split_once(' ')?;
        let code = rest.split(' ').next()?;
        if !matches!(version, "HTTP/1.0" | "HTTP/1.1")
            || code.len() != 3
            || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(Response {
            status: code.parse().ok()?,
            http10: version == "HTTP/1.0",
            lines: header_lines(lines)?,
        })
    }

    /// How long its body is, for a request with `method`. Err (say why) for framing
    /// the proxy will not guess at.
    pub(crate) fn body(&self, method: &str) -> Result<Body, &'static str> {
        if method == "HEAD" || (100..200).contains(&self.status) || matches!(self.status, 204 | 304)
        {
            return Ok(Body::None);
        }
        if self.lines.iter().any(|l| is_header(l, "transfer-encoding")) {
            if self.lines.iter().any(|l| is_header(l, "content-length")) {
                return Err("a response with both Content-Length and Transfer-Encoding");
            }
            return Ok(match codings(&self.lines) {
                Some(c) if c.last().map(String::as_str) == Some("chunked") => Body::Chunked,
                _ => Body::UntilClose,
            });
        }
        Ok(match length(&self.lines)? {
            Some(n) => Body::Length(n),
            None => Body::UntilClose,
        })
    }

    /// Whether the server keeps the connection after this response.
    pub(crate) fn keep_alive(&self) -> bool {
        keep_alive(self.http10, &self.lines)
    }
}

/// The header lines of a head after its first line, checked: `name: value`, the name a
/// token (no spaces, no folding).
fn header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Option<Vec<String>> {
    let mut kept = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, _) = l.split_once(':')?;
        // A bare CR or LF could end the line for the server and not for us.
        if k.is_empty()
            || !k.bytes().all(|b| b.is_ascii_graphic())
            || l.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
        {
            return None;
        }
        kept.push(l.to_string());
    }
    Some(kept)
}

fn is_header(line: &str, name: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(k, _)| k.eq_ignore_ascii_case(name))
}

fn header_values<'a>(lines: &'a [String], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    lines.iter().filter_map(move |l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The comma-separated tokens of every header `name`, lowercase.
fn tokens(lines: &[String], name: &str) -> Vec<String> {
    header_values(lines, name)
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The transfer codings (None when a coding carries parameters: not understood).
fn codings(lines: &[String]) -> Option<Vec<String>> {
    let c = tokens(lines, "transfer-encoding");
    (!c.iter().any(|t| t.contains(';'))).then_some(c)
}

/// Content-Length: None without one; Err for a malformed one or two that differ.
fn length(lines: &[String]) -> Result<Option<u64>, &'static str> {
    let mut found: Option<u64> = None;
    for v in header_values(lines, "content-length").flat_map(|v| v.split(',')) {
        let v = v.trim();
        if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a malformed Content-Length");
        }
        let n: u64 = v.parse().map_err(|_| "a malformed Content-Length")?;
        if found.is_some_and(|f| f != n) {
            return Err("two different Content-Length values");
        }
        found = Some(n);
    }
    Ok(found)
}

fn keep_alive(http10: bool, lines: &[String]) -> bool {
    let c = tokens(lines, "connection");
    if c.iter().any(|t| t == "close") {
        return false;
    }
    !http10 || c.iter().any(|t| t == "keep-alive")
}

/// The size of a chunk from its size line (without the CRLF; extensions after `;`
/// ignored). None when malformed.
pub(crate) fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let hex = line[..end].trim_ascii_end();
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Splits `host[:port]` (`[v6]:port` too). None when malformed.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() || s.contains(['/', '@', ' ']) {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((s.to_string(), None)),
    }
}

/// The path without its query (a query may carry tokens; records keep only the path),
/// cut to 256 bytes.
pub(crate) fn record_path(path: &str) -> String {
    let p = path.split(['?', '#']).next().unwrap_or("");
    let mut end = p.len().min(256);
    while !p.is_char_boundary(end) {
        end -= 1;
    }
    p[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_and_absolute_and_host() {
        let h =
            Head::parse(b"CONNECT api.test:8443 HTTP/1.1\r\nHost: api.test:8443\r\n\r\n").unwrap();
        assert_eq!(h.connect_dest(), Some(("api.test".into(), 8443)));
        let h = Head::parse(
            b"GET http://Api.Test:8080/a/b?tok=1 HTTP/1.1\r\nHost: api.test:8080\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        let d = h.absolute_dest().unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.path.as_str()),
            ("Api.Test", Some(8080), "/a/b?tok=1")
        );
        assert_eq!(
            String::from_utf8(h.to_origin_form(&d.path)).unwrap(),
            "GET /a/b?tok=1 HTTP/1.1\r\nHost: api.test:8080\r\nAccept: */*\r\n\r\n"
        );
        assert_eq!(record_path(&d.path), "/a/b");
        let h = Head::parse(b"GET /x HTTP/1.1\r\nhost: web.test\r\n\r\n").unwrap();
        let d = h.host_dest().unwrap();
        assert_eq!((d.host.as_str(), d.port), ("web.test", None));
        let h = Head::parse(b"GET http://host.test HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(h.absolute_dest().unwrap().path, "/");
        assert_eq!(h.host_dest(), None);
    }

    #[test]
    fn request_framing() {
        let body = |h: &str| Head::parse(h.as_bytes()).unwrap().body();
        assert_eq!(body("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Body::None));
        assert_eq!(
            body("POST / HTTP/1.1\r\ncontent-length: 12\r\n\r\n"),
            Ok(Body::Length(12))
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n"),
            Ok(Body::Length(5))
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(Body::Chunked)
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
        ] {
            assert!(body(bad).is_err(), "{bad}");
        }
        let ka = |h: &str| Head::parse(h.as_bytes()).unwrap().keep_alive();
        assert!(ka("GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn response_framing() {
        let r = |h: &str| Response::parse(h.as_bytes()).unwrap();
        let ok = r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((ok.status, ok.body("GET")), (200, Ok(Body::Length(3))));
        assert_eq!(ok.body("HEAD"), Ok(Body::None));
        assert!(ok.keep_alive());
        assert_eq!(
            r("HTTP/1.1 204 No Content\r\n\r\n").body("GET"),
            Ok(Body::None)
        );
        assert_eq!(r("HTTP/1.1 304 x\r\n\r\n").body("GET"), Ok(Body::None));
        assert_eq!(
            r("HTTP/1.1 100 Continue\r\n\r\n").body("POST"),
            Ok(Body::None)
        );
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").body("GET"),
            Ok(Body::Chunked)
        );
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").body("GET"),
            Ok(Body::UntilClose)
        );
        let old = r("HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(
            (old.body("GET"), old.keep_alive()),
            (Ok(Body::UntilClose), false)
        );
        assert!(
            r("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .body("GET")
                .is_err()
        );
        let latin1 = b"HTTP/1.1 200 OK\r\nContent-Disposition: a; filename=\"\xe9\"\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            Response::parse(latin1).unwrap().body("GET"),
            Ok(Body::Length(2))
        );
        for bad in [
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "UP:GET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(Response::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert_eq!(chunk_size(b"1aF;ext=1"), Some(0x1af));
        assert_eq!(chunk_size(b"0"), Some(0));
        for bad in [&b""[..], b"x", b"-1", b"1234567890abcdef0"] {
            assert_eq!(chunk_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_byte_changed_parses_or_is_refused_never_a_panic() {
        let req: &[u8] = b"POST http://a.test:8080/p?q HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n";
        let resp: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        for i in 0..req.len().max(resp.len()) {
            for v in [0u8, b' ', b':', b'\r', b'\n', b',', b'9', 0xff] {
                for (base, is_req) in [(req, true), (resp, false)] {
                    let mut m = base.to_vec();
                    if i < m.len() {
                        m[i] = v;
                    }
                    let end = head_end(&m).unwrap_or(m.len());
                    if is_req {
                        if let Some(h) = Head::parse(&m[..end]) {
                            let _ = (h.body(), h.keep_alive(), h.absolute_dest(), h.host_dest());
                        }
                    } else if let Some(r) = Response::parse(&m[..end]) {
                        let _ = (r.body("GET"), r.keep_alive());
                    }
                    let _ = chunk_size(&m[..i.min(m.len())]);
                }
            }
        }
    }

    #[test]
    fn malformed_heads() {
        for b in [
            &b"\x16\x03\x01"[..],
            b"GET\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1 x\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            // A name that is not ASCII (it once made the Proxy-* filter slice inside a
            // character: a panic that aborted the daemon).
            "GET http://a.test/ HTTP/1.1\r\nabcde\u{e9}: x\r\n\r\n".as_bytes(),
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(Head::parse(b).is_none(), "{b:?}");
        }
        let h = Head::parse(b"CONNECT api.test HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(h.connect_dest(), None);
        let h = Head::parse(b"GET http://u@evil.test/ HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(h.absolute_dest(), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(record_path(&"é".repeat(300)).len(), 256);
    }
}

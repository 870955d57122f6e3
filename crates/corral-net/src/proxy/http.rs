//! The head of an HTTP/1 request as the proxy needs it: method, target, Host. Pure
//! and bounded (a head is at most [`MAX_HEAD`] bytes).

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
            || !version.starts_with("HTTP/1.")
        {
            return None;
        }
        let mut host_header = None;
        let mut kept = Vec::new();
        for l in lines.filter(|l| !l.is_empty()) {
            let (k, v) = l.split_once(':')?;
            if k.eq_ignore_ascii_case("host") {
                host_header = Some(v.trim().to_string());
            }
            kept.push(l.to_string());
        }
        Some(Head {
            method: method.to_string(),
            target: target.to_string(),
            host_header,
            lines: kept,
            version: version.to_string(),
        })
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
            if name.len() >= 6 && name[..6].eq_ignore_ascii_case("proxy-") {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
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
    fn malformed_heads() {
        for b in [
            &b"\x16\x03\x01"[..],
            b"GET\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1 x\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
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

//! What the broker does to one HTTP/1 exchange: the request's head (placeholders
//! swapped in the bound header, blocked in the URL or any header when not bound here),
//! its body (scanned as it streams: a placeholder that may not go here stops it before
//! its last byte leaves), and the response (a secret value the server echoes back is
//! masked before it reaches the sandbox).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::header::HeaderValue;
use hyper::http::request::Parts;

use crate::secrets::Binding;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A placeholder found where its secret may not go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The secret's name.
    pub(crate) secret: String,
    /// Where: `url`, `header NAME` or `body`.
    pub(crate) location: String,
}

/// Whether a secret may be used on this request: bound to the host, and the
/// upstream leg is TLS (a value never travels in clear).
fn usable(b: &Binding, tls: bool) -> bool {
    b.bound && tls
}

/// Checks and rewrites a request's head. On a bound secret's placeholder in its
/// template header the header becomes the template with the value; a placeholder of a
/// secret not usable here anywhere in the URL or the headers is a [`Violation`].
/// Returns the names of the secrets injected.
pub(crate) fn rewrite_head(
    parts: &mut Parts,
    bindings: &[Binding],
    tls: bool,
) -> Result<Vec<String>, Violation> {
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    for b in bindings {
        if !usable(b, tls) && target.contains(&b.placeholder) {
            return Err(Violation {
                secret: b.name.clone(),
                location: "url".into(),
            });
        }
    }
    let mut injected = Vec::new();
    let mut replace = Vec::new();
    for (name, value) in parts.headers.iter() {
        let bytes = value.as_bytes();
        for b in bindings {
            if !contains(bytes, b.placeholder.as_bytes()) {
                continue;
            }
            if !usable(b, tls) {
                return Err(Violation {
                    secret: b.name.clone(),
                    location: format!("header {name}"),
                });
            }
            if name.as_str() == b.header.name {
                replace.push((name.clone(), b));
            }
        }
    }
    for (name, b) in replace {
        if let Some(v) = b.header_value() {
            // Checked when the secret was stored: printable, no CR/LF.
            if let Ok(mut hv) = HeaderValue::from_str(v.expose()) {
                hv.set_sensitive(true);
                parts.headers.insert(name, hv);
                injected.push(b.name.clone());
            }
        }
    }
    Ok(injected)
}

/// Masks every occurrence of a value in the response's headers (a server echoing the
/// credential back must not hand it to the sandbox).
pub(crate) fn mask_headers(headers: &mut hyper::HeaderMap, values: &[Vec<u8>]) {
    if values.is_empty() {
        return;
    }
    let mut fixed = Vec::new();
    for (name, v) in headers.iter() {
        let mut bytes = v.as_bytes().to_vec();
        let mut hit = false;
        for n in values {
            hit |= mask(&mut bytes, n);
        }
        if hit {
            if let Ok(hv) = HeaderValue::from_bytes(&bytes) {
                fixed.push((name.clone(), hv));
            }
        }
    }
    for (name, hv) in fixed {
        headers.insert(name, hv);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    (0..=hay.len() - needle.len()).find(|&i| hay[i] == first && &hay[i..i + needle.len()] == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Replaces every occurrence of `needle` in `buf` by as many `*`; true if any.
fn mask(buf: &mut [u8], needle: &[u8]) -> bool {
    let mut hit = false;
    let mut from = 0;
    while let Some(i) = find(&buf[from..], needle) {
        buf[from + i..from + i + needle.len()].fill(b'*');
        from += i + needle.len();
        hit = true;
    }
    hit
}

/// What a [`Scanner`] does on a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Stop the stream (a placeholder going where it may not).
    Block,
    /// Replace the match by `*` (a value coming back).
    Mask,
}

/// Scans a byte stream for needles across chunk boundaries: the last `longest - 1`
/// bytes of each chunk are held back until the next one (or the end) shows they do
/// not start a match, so no whole needle ever passes.
#[derive(Debug)]
pub(crate) struct Scanner {
    mode: Mode,
    /// (secret name, bytes).
    needles: Vec<(String, Vec<u8>)>,
    carry: Vec<u8>,
    keep: usize,
}

impl Scanner {
    pub(crate) fn new(mode: Mode, needles: Vec<(String, Vec<u8>)>) -> Scanner {
        let keep = needles
            .iter()
            .map(|(_, n)| n.len())
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        Scanner {
            mode,
            needles,
            carry: Vec::new(),
            keep,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Feeds a chunk: the bytes that may go on now, or the secret whose placeholder
    /// was found (mode Block).
    pub(crate) fn feed(&mut self, chunk: Bytes) -> Result<Bytes, String> {
        if self.needles.is_empty() {
            return Ok(chunk);
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(&chunk);
        for (name, n) in &self.needles {
            match self.mode {
                Mode::Block if contains(&buf, n) => return Err(name.clone()),
                Mode::Block => {}
                Mode::Mask => {
                    mask(&mut buf, n);
                }
            }
        }
        let cut = buf.len().saturating_sub(self.keep);
        self.carry = buf.split_off(cut);
        Ok(Bytes::from(buf))
    }

    /// The held-back tail at the end of the stream.
    pub(crate) fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.carry))
    }
}

/// A body passed through a [`Scanner`]. In mode Block a match ends it with an error
/// (hyper then aborts the upstream request) and leaves the violation in `found`.
pub(crate) struct ScanBody<B> {
    inner: B,
    scanner: Scanner,
    found: Arc<Mutex<Option<String>>>,
    pending: Option<Frame<Bytes>>,
    done: bool,
}

impl<B> ScanBody<B> {
    pub(crate) fn new(inner: B, scanner: Scanner, found: Arc<Mutex<Option<String>>>) -> Self {
        ScanBody {
            inner,
            scanner,
            found,
            pending: None,
            done: false,
        }
    }
}

impl<B> Body for ScanBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(f) = this.pending.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => match this.scanner.feed(data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(secret) => {
                            if let Ok(mut f) = this.found.lock() {
                                *f = Some(secret);
                            }
                            this.done = true;
                            return Poll::Ready(Some(Err(
                                "corral: request body blocked: it carries a secret's placeholder"
                                    .into(),
                            )));
                        }
                    },
                    Err(trailers) => {
                        let tail = this.scanner.finish();
                        if tail.is_empty() {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        this.pending = Some(trailers);
                        return Poll::Ready(Some(Ok(Frame::data(tail))));
                    }
                },
                Poll::Ready(None) => {
                    this.done = true;
                    let tail = this.scanner.finish();
                    if tail.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(tail))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Scanning holds bytes back and masking keeps lengths: the total is unchanged.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use hyper::Request;

    use super::*;
    use crate::secrets::{SecretPut, SecretStore, SecretValue};

    const PH_LEN: usize = "corral-secret-".len();

    fn bindings(host: &str) -> (tempfile::TempDir, Vec<Binding>) {
        let dir = tempfile::tempdir().unwrap();
        let s = SecretStore::open(dir.path()).unwrap();
        let put = |hosts: &[&str], header: Option<&str>, v: &str| SecretPut {
            value: SecretValue::new(v.into()).unwrap(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            header: header.map(String::from),
        };
        s.put("t", "API", put(&["api.test"], None, "real-api-value"))
            .unwrap();
        s.put(
            "t",
            "OTHER",
            put(&["other.test"], Some("x-api-key: {value}"), "real-other"),
        )
        .unwrap();
        let b = s.bindings("t", &["API".into(), "OTHER".into()], host, 443);
        (dir, b)
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut r = Request::builder().uri(uri);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bound_placeholder_in_its_header_becomes_the_template() {
        let (_d, b) = bindings("api.test");
        let ph = b[0].placeholder.clone();
        let mut p = parts(
            "/v1/x",
            &[("authorization", &format!("Bearer {ph}")), ("x-other", &ph)],
        );
        let injected = rewrite_head(&mut p, &b, true).unwrap();
        assert_eq!(injected, vec!["API".to_string()]);
        assert_eq!(p.headers["authorization"], "Bearer real-api-value");
        assert!(p.headers["authorization"].is_sensitive());
        // Elsewhere on the bound host it stays a placeholder (harmless there).
        assert_eq!(p.headers["x-other"], ph.as_str());
        // Without TLS upstream nothing is injected, and the placeholder is blocked.
        let mut p = parts("/", &[("authorization", &format!("Bearer {ph}"))]);
        let v = rewrite_head(&mut p, &b, false).unwrap_err();
        assert_eq!(v.location, "header authorization");
    }

    #[test]
    fn unbound_placeholder_is_blocked_in_url_and_headers() {
        let (_d, b) = bindings("api.test");
        let other = b[1].placeholder.clone();
        let mut p = parts(&format!("/steal?k={other}"), &[]);
        assert_eq!(
            rewrite_head(&mut p, &b, true).unwrap_err(),
            Violation {
                secret: "OTHER".into(),
                location: "url".into()
            }
        );
        let mut p = parts("/", &[("cookie", &format!("a=b; k={other}"))]);
        assert_eq!(
            rewrite_head(&mut p, &b, true).unwrap_err().location,
            "header cookie"
        );
        // Toward a host neither is bound to, both are blocked.
        let (_d, b) = bindings("evil.test");
        let api = b[0].placeholder.clone();
        let mut p = parts("/", &[("authorization", &format!("Bearer {api}"))]);
        assert_eq!(rewrite_head(&mut p, &b, true).unwrap_err().secret, "API");
        let mut p = parts("/clean", &[("authorization", "Bearer nothing")]);
        assert_eq!(
            rewrite_head(&mut p, &b, true).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn scanner_blocks_a_placeholder_split_across_chunks_before_it_passes() {
        let needle = format!("corral-secret-OTHER-{}", "ab".repeat(16));
        let mut s = Scanner::new(Mode::Block, vec![("OTHER".into(), needle.clone().into())]);
        let body = format!("{{\"k\":\"{needle}\"}}");
        let (a, rest) = body.as_bytes().split_at(12);
        let mut passed = Vec::new();
        passed.extend_from_slice(&s.feed(Bytes::copy_from_slice(a)).unwrap());
        assert_eq!(
            s.feed(Bytes::copy_from_slice(rest)),
            Err("OTHER".to_string())
        );
        assert!(!String::from_utf8_lossy(&passed).contains(&needle[..PH_LEN + 6]));
        // A clean body passes whole, byte for byte, across many chunks.
        let mut s = Scanner::new(Mode::Block, vec![("OTHER".into(), needle.into())]);
        let clean: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        for c in clean.chunks(7) {
            out.extend_from_slice(&s.feed(Bytes::copy_from_slice(c)).unwrap());
        }
        out.extend_from_slice(&s.finish());
        assert_eq!(out, clean);
    }

    #[test]
    fn scanner_masks_an_echoed_value_keeping_the_length() {
        let mut s = Scanner::new(Mode::Mask, vec![("API".into(), b"real-api-value".to_vec())]);
        let mut out = Vec::new();
        for c in [&b"{\"auth\":\"Bearer real-a"[..], b"pi-value\"}"] {
            out.extend_from_slice(&s.feed(Bytes::from_static(c)).unwrap());
        }
        out.extend_from_slice(&s.finish());
        assert_eq!(out, b"{\"auth\":\"Bearer **************\"}");
        let mut h = hyper::HeaderMap::new();
        h.insert("x-echo", HeaderValue::from_static("Bearer real-api-value"));
        mask_headers(&mut h, &[b"real-api-value".to_vec()]);
        assert_eq!(h["x-echo"], "Bearer **************");
    }
}

//! The server name (SNI) of a TLS ClientHello, read from the first bytes a client
//! sends. Pure and bounded: every length is checked against what is left before it is
//! used, nothing is allocated but the name, and input of any size or content returns
//! an answer (fuzz-friendly).

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hello {
    /// A ClientHello naming this server (as sent; not yet normalized).
    Sni(String),
    /// A complete ClientHello without a server name extension.
    NoSni,
    /// Not a TLS ClientHello (or a malformed one).
    NotTls,
    /// A ClientHello so far; more bytes are needed.
    Incomplete,
}

/// The most bytes worth waiting for: one TLS record (5 + 16384).
pub(crate) const MAX_HELLO: usize = 5 + 16384;

/// Reads the ClientHello at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Hello {
    // Record header: type 22 (handshake), version 3.x, length.
    if buf.is_empty() {
        return Hello::Incomplete;
    }
    if buf[0] != 0x16 {
        return Hello::NotTls;
    }
    if buf.len() < 5 {
        return Hello::Incomplete;
    }
    if buf[1] != 3 {
        return Hello::NotTls;
    }
    let rec_len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    // A handshake record holds at least the 4-byte handshake header.
    if !(4..=16384).contains(&rec_len) {
        return Hello::NotTls;
    }
    let body = &buf[5..];
    // Handshake header: type 1 (ClientHello), 24-bit length. The hello may span
    // records; only the first record is read (every client puts the SNI in it).
    if body.len() < 4 {
        return if body.len() < rec_len {
            Hello::Incomplete
        } else {
            Hello::NotTls
        };
    }
    if body[0] != 1 {
        return Hello::NotTls;
    }
    let hs_len = (body[1] as usize) << 16 | (body[2] as usize) << 8 | body[3] as usize;
    let avail = rec_len.min(body.len());
    let complete_record = body.len() >= rec_len;
    let hello = &body[4..avail];
    let hello = &hello[..hello.len().min(hs_len)];
    match walk(hello) {
        Walk::Found(s) => Hello::Sni(s),
        Walk::Bad => Hello::NotTls,
        Walk::None | Walk::Short if !complete_record => Hello::Incomplete,
        Walk::None | Walk::Short => Hello::NoSni,
    }
}

enum Walk {
    Found(String),
    None,
    Short,
    Bad,
}

/// A cursor over a byte slice that never reads past the end.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
}

fn walk(hello: &[u8]) -> Walk {
    let mut c = Cur(hello);
    let head = (|| {
        c.take(2 + 32)?; // client_version, random
        let sid = c.u8()?;
        c.take(sid)?;
        let suites = c.u16()?;
        c.take(suites)?;
        let comp = c.u8()?;
        c.take(comp)?;
        Some(())
    })();
    if head.is_none() {
        return Walk::Short;
    }
    if c.0.is_empty() {
        return Walk::None; // no extensions at all
    }
    let Some(ext_len) = c.u16() else {
        return Walk::Short;
    };
    let mut exts = match c.take(ext_len) {
        Some(e) => Cur(e),
        None => Cur(c.0),
    };
    loop {
        let (Some(ty), Some(len)) = (exts.u16(), exts.u16()) else {
            return if exts.0.is_empty() {
                Walk::None
            } else {
                Walk::Short
            };
        };
        let Some(data) = exts.take(len) else {
            return Walk::Short;
        };
        if ty == 0 {
            return server_name(data);
        }
    }
}

/// The server_name extension: a list of (type, name); the first host_name (type 0).
fn server_name(data: &[u8]) -> Walk {
    let mut c = Cur(data);
    let Some(list_len) = c.u16() else {
        return Walk::Bad;
    };
    let Some(list) = c.take(list_len) else {
        return Walk::Bad;
    };
    let mut l = Cur(list);
    while let (Some(ty), Some(len)) = (l.u8(), l.u16()) {
        let Some(name) = l.take(len) else {
            return Walk::Bad;
        };
        if ty == 0 {
            if name.is_empty() || name.len() > 255 || !name.iter().all(|b| b.is_ascii_graphic()) {
                return Walk::Bad;
            }
            return Walk::Found(String::from_utf8_lossy(name).into_owned());
        }
    }
    Walk::None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ClientHello with the given SNI (None: no extension) and one more
    /// extension before it.
    pub(crate) fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut exts = Vec::new();
        // supported_versions-like filler extension (type 43).
        exts.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
        if let Some(n) = sni {
            let n = n.as_bytes();
            let entry_len = 3 + n.len();
            exts.extend_from_slice(&[0, 0]);
            exts.extend_from_slice(&((entry_len + 2) as u16).to_be_bytes());
            exts.extend_from_slice(&(entry_len as u16).to_be_bytes());
            exts.push(0);
            exts.extend_from_slice(&(n.len() as u16).to_be_bytes());
            exts.extend_from_slice(n);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn finds_the_name() {
        assert_eq!(
            parse(&hello(Some("api.test"))),
            Hello::Sni("api.test".into())
        );
        assert_eq!(parse(&hello(None)), Hello::NoSni);
    }

    #[test]
    fn every_prefix_is_incomplete_or_an_answer_never_a_panic() {
        let full = hello(Some("pypi.org"));
        for n in 0..full.len() {
            let r = parse(&full[..n]);
            assert!(r == Hello::Incomplete, "prefix of {n} bytes gave {r:?}");
        }
        let mut more = full.clone();
        more.extend_from_slice(b"trailing application bytes");
        assert_eq!(parse(&more), Hello::Sni("pypi.org".into()));
    }

    #[test]
    fn not_tls_and_garbage() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(&[0x16, 2, 0, 0, 5]), Hello::NotTls);
        assert_eq!(parse(&[0x16, 3, 1, 0, 0]), Hello::NotTls);
        assert_eq!(parse(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]), Hello::NotTls);
        // A record too short for a handshake header, with bytes after it (found by
        // the tls_sni fuzz target: it sliced body[4..3] and panicked; in a release
        // daemon, panic = abort, one sandbox could have stopped the daemon).
        for rec_len in 1..4u8 {
            let mut v = vec![0x16, 3, 1, 0, rec_len, 1, 0, 0x36, 1, 0, 0, 0x16];
            assert_eq!(parse(&v), Hello::NotTls, "record length {rec_len}");
            v.truncate(5 + usize::from(rec_len));
            assert_eq!(parse(&v), Hello::NotTls, "record length {rec_len}, exact");
        }
        // Lengths that point past the end, on every byte position.
        let full = hello(Some("a.test"));
        for i in 5..full.len() {
            for v in [0u8, 0xff, 0x7f] {
                let mut m = full.clone();
                m[i] = v;
                let _ = parse(&m);
            }
        }
        // Pseudo-random inputs.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 300) as usize;
            let mut v = vec![0x16, 3, 1];
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                v.push((x >> 16) as u8);
            }
            let _ = parse(&v);
        }
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(parse(&hello(Some("a b"))), Hello::NotTls);
    }
}

//! The few DNS messages the resolver needs: one question in, one answer (or none)
//! out. Hand-written rather than a DNS crate: the resolver parses exactly one question
//! (no compression pointers are followed, so no loops) and writes one A record, which
//! is a page of bounded code, fully unit-tested, and no new dependency. Pure code.

use std::net::Ipv4Addr;

/// Record type A.
pub(crate) const TYPE_A: u16 = 1;
/// Record type AAAA.
#[cfg(test)]
pub(crate) const TYPE_AAAA: u16 = 28;
/// Class IN.
const CLASS_IN: u16 = 1;

/// Response codes used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rcode {
    /// No error.
    NoError = 0,
    /// The query could not be parsed.
    FormErr = 1,
    /// No such name.
    NxDomain = 3,
    /// Not implemented (opcodes other than QUERY).
    NotImp = 4,
    /// Refused.
    Refused = 5,
}

/// A parsed query with one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    /// Message id.
    pub(crate) id: u16,
    /// Flags of the query (opcode, RD).
    flags: u16,
    /// The question name, lowercase, dot-separated, without the trailing dot.
    pub(crate) name: String,
    /// The question type.
    pub(crate) qtype: u16,
    /// The question class.
    pub(crate) qclass: u16,
    /// The question section as sent (echoed in the answer).
    question: Vec<u8>,
}

/// What [`parse`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A standard query with one question.
    Query(Query),
    /// Something to answer with this rcode (id and flags echoed; no question).
    Error {
        /// Message id.
        id: u16,
        /// Flags.
        flags: u16,
        /// The rcode.
        rcode: Rcode,
    },
    /// Not worth an answer (too short, or a response).
    Drop,
}

/// Parses a DNS message.
pub(crate) fn parse(msg: &[u8]) -> Parsed {
    if msg.len() < 12 || msg.len() > 4096 {
        return Parsed::Drop;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 != 0 {
        return Parsed::Drop; // a response
    }
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return Parsed::Error {
            id,
            flags,
            rcode: Rcode::NotImp,
        };
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    let formerr = Parsed::Error {
        id,
        flags,
        rcode: Rcode::FormErr,
    };
    if qdcount != 1 {
        return formerr;
    }
    let mut i = 12;
    let mut name = String::new();
    loop {
        let Some(&len) = msg.get(i) else {
            return formerr;
        };
        i += 1;
        if len == 0 {
            break;
        }
        // No compression in a question (a pointer is refused, not followed).
        if len & 0xc0 != 0 {
            return formerr;
        }
        let Some(label) = msg.get(i..i + len as usize) else {
            return formerr;
        };
        i += len as usize;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Parsed::Error {
                    id,
                    flags,
                    rcode: Rcode::Refused,
                };
            }
            name.push(b.to_ascii_lowercase() as char);
        }
        if name.len() > 253 {
            return formerr;
        }
    }
    let Some(tc) = msg.get(i..i + 4) else {
        return formerr;
    };
    let qtype = u16::from_be_bytes([tc[0], tc[1]]);
    let qclass = u16::from_be_bytes([tc[2], tc[3]]);
    Parsed::Query(Query {
        id,
        flags,
        name,
        qtype,
        qclass,
        question: msg[12..i + 4].to_vec(),
    })
}

fn header(id: u16, qflags: u16, rcode: Rcode, qd: u16, an: u16) -> Vec<u8> {
    // QR, opcode and RD from the query, AA, RA.
    let flags = 0x8000 | (qflags & 0x7900) | 0x0400 | 0x0080 | rcode as u16;
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&qd.to_be_bytes());
    m.extend_from_slice(&an.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m
}

/// An answer to `q`: `rcode`, with an A record for `addr` when given (TTL `ttl`).
pub(crate) fn answer(q: &Query, rcode: Rcode, addr: Option<Ipv4Addr>, ttl: u32) -> Vec<u8> {
    let mut m = header(q.id, q.flags, rcode, 1, addr.is_some() as u16);
    m.extend_from_slice(&q.question);
    if let Some(a) = addr {
        m.extend_from_slice(&[0xc0, 12]); // the name: a pointer to the question's
        m.extend_from_slice(&TYPE_A.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&4u16.to_be_bytes());
        m.extend_from_slice(&a.octets());
    }
    m
}

/// An answer without a question section (for [`Parsed::Error`]).
pub(crate) fn error(id: u16, flags: u16, rcode: Rcode) -> Vec<u8> {
    header(id, flags, rcode, 0, 0)
}

/// Whether the class is IN.
pub(crate) fn is_in(q: &Query) -> bool {
    q.qclass == CLASS_IN
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query for `name` of type `qtype`, with an EDNS OPT record appended.
    pub(crate) fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
        m
    }

    #[test]
    fn parses_and_answers_a() {
        let Parsed::Query(q) = parse(&query(0xbeef, "Api.Test", TYPE_A)) else {
            panic!()
        };
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0xbeef, "api.test", TYPE_A)
        );
        assert!(is_in(&q));
        let a = answer(&q, Rcode::NoError, Some(Ipv4Addr::new(10, 1, 2, 3)), 30);
        assert_eq!(&a[..2], &[0xbe, 0xef]);
        assert_eq!(a[2] & 0x80, 0x80); // QR
        assert_eq!(a[3] & 0x0f, 0); // NOERROR
        assert_eq!(&a[6..8], &[0, 1]); // one answer
        assert_eq!(&a[a.len() - 4..], &[10, 1, 2, 3]);
        let n = answer(&q, Rcode::NxDomain, None, 0);
        assert_eq!(n[3] & 0x0f, 3);
        assert_eq!(&n[6..8], &[0, 0]);
        // The echoed question parses back as the same question.
        let mut back = n.clone();
        back[2] &= 0x7f;
        let Parsed::Query(q2) = parse(&back) else {
            panic!()
        };
        assert_eq!(q2.name, "api.test");
    }

    #[test]
    fn refuses_what_it_does_not_handle() {
        assert_eq!(parse(&[0; 5]), Parsed::Drop);
        let mut resp = query(1, "a.test", TYPE_A);
        resp[2] |= 0x80;
        assert_eq!(parse(&resp), Parsed::Drop);
        let mut notify = query(1, "a.test", TYPE_A);
        notify[2] |= 4 << 3;
        assert!(matches!(
            parse(&notify),
            Parsed::Error {
                rcode: Rcode::NotImp,
                ..
            }
        ));
        let mut two = query(1, "a.test", TYPE_A);
        two[5] = 2;
        assert!(matches!(
            parse(&two),
            Parsed::Error {
                rcode: Rcode::FormErr,
                ..
            }
        ));
        let mut ptr = query(1, "a.test", TYPE_A);
        ptr[12] = 0xc0;
        assert!(matches!(
            parse(&ptr),
            Parsed::Error {
                rcode: Rcode::FormErr,
                ..
            }
        ));
        let odd = query(1, "a b.test", TYPE_A);
        assert!(matches!(
            parse(&odd),
            Parsed::Error {
                rcode: Rcode::Refused,
                ..
            }
        ));
        let e = error(7, 0x0100, Rcode::Refused);
        assert_eq!((e.len(), e[3] & 0x0f), (12, 5));
        // Truncations at every length and pseudo-random bytes never panic.
        let full = query(9, "files.pythonhosted.org", TYPE_AAAA);
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
        let mut x: u32 = 99;
        for _ in 0..2000 {
            let mut v = vec![0u8, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for _ in 0..(x % 80) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                v.push((x >> 16) as u8);
            }
            let _ = parse(&v);
        }
    }
}

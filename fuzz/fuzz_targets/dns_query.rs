//! The sandbox resolver's DNS parser (mode allow: every query a sandbox sends). Any
//! datagram gives a query, an error answer or nothing; a query's name is lowercase
//! letters, digits, `-`, `_` and dots, at most 253 bytes, and the name the resolver
//! decides on is the name it answers for: the answer echoes the id, is a response,
//! and carries the question exactly as asked.
#![no_main]

use corral_net::fuzzing::{dns, Dns};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match dns(data) {
        Dns::Query {
            id, name, answer, ..
        } => {
            assert!(name.len() <= 253, "name of {} bytes", name.len());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
                "name {name:?}"
            );
            assert!(!name.starts_with('.') && !name.ends_with('.') && !name.contains(".."));
            assert_eq!(answer[..2], id.to_be_bytes());
            assert_eq!(answer[2] & 0x80, 0x80, "the answer is not a response");
            // The question section follows the header unchanged.
            let qlen = question_len(&data[12..]).expect("a parsed query has a question");
            assert_eq!(answer[12..12 + qlen], data[12..12 + qlen]);
            // Parsing the question back gives the same name.
            let mut again = data[..12 + qlen].to_vec();
            again[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            match dns(&again) {
                Dns::Query { name: n2, .. } => assert_eq!(n2, name),
                other => panic!("the question alone parses as {other:?}"),
            }
        }
        Dns::Error { id, answer } => {
            assert_eq!(answer.len(), 12);
            assert_eq!(answer[..2], id.to_be_bytes());
            assert_eq!(answer[2] & 0x80, 0x80, "the answer is not a response");
        }
        Dns::Drop => {}
    }
});

/// Labels up to the root label, then type and class.
fn question_len(q: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let len = *q.get(i)? as usize;
        i += 1 + len;
        if len == 0 {
            return (i + 4 <= q.len()).then_some(i + 4);
        }
    }
}

//! The egress proxy's HTTP/1 head parsers (requests from a sandbox, responses from the
//! servers it reaches), chunk-size lines and the path kept in records. Properties: a
//! parsed request's origin form (what the server receives) parses again, to the same
//! method, Host and body framing, with no `Proxy-*` header left (the proxy and the
//! server see the same message boundaries); a Host or target the proxy decides on
//! has no space, `/` or `@` in its host; record paths have no query and at most 256
//! bytes.
#![no_main]

use corral_net::fuzzing::{chunk_size, head_end, record_path, request, response, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let data = &data[..data.len().min(MAX_HEAD)];
    match sel % 4 {
        0 | 1 => {
            let head = match head_end(data) {
                Some(end) => &data[..end],
                None => data,
            };
            let Some(r) = request(head) else {
                return;
            };
            for (host, _, _) in r.absolute.iter().chain(r.host.iter()) {
                assert!(!host.contains([' ', '/', '@']), "host {host:?}");
            }
            if let Some((host, _)) = &r.connect {
                assert!(!host.contains([' ', '/', '@']), "CONNECT host {host:?}");
            }
            let again = request(&r.origin_form).unwrap_or_else(|| {
                panic!(
                    "the origin form does not parse: {:?}",
                    String::from_utf8_lossy(&r.origin_form)
                )
            });
            assert_eq!(again.method, r.method);
            assert_eq!(again.host_header, r.host_header);
            assert_eq!(again.body, r.body, "framing changed in origin form");
            let text = String::from_utf8_lossy(&r.origin_form).to_ascii_lowercase();
            assert!(
                !text.contains("\r\nproxy-"),
                "a Proxy-* header is forwarded"
            );
            assert_eq!(head_end(&r.origin_form), Some(r.origin_form.len()));
        }
        2 => {
            let method = if data.first().is_some_and(|b| b & 1 == 1) {
                "HEAD"
            } else {
                "GET"
            };
            if let Some((status, body, _)) = response(data, method) {
                assert!((0..=999).contains(&status));
                if method == "HEAD" {
                    assert_eq!(body.as_deref(), Ok("None"));
                }
            }
        }
        _ => {
            if let Some(n) = chunk_size(data) {
                assert!(n < 1 << 60, "chunk size {n} from at most 15 hex digits");
            }
            if let Ok(s) = std::str::from_utf8(data) {
                let p = record_path(s);
                assert!(
                    p.len() <= 256 && !p.contains(['?', '#']),
                    "record path {p:?}"
                );
            }
        }
    }
});

//! The egress proxy's TLS ClientHello reader: the first bytes a sandbox sends decide
//! where its connection may go. Properties: any bytes give an answer; a name found is
//! never a partial one (it is a whole server_name entry of the input, length-prefixed,
//! 1..=255 printable ASCII bytes); the answer depends only on the first record, so
//! bytes after it change nothing; an answer other than Incomplete does not change when
//! more bytes arrive.
#![no_main]

use corral_net::fuzzing::{sni, Hello, MAX_HELLO};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_HELLO + 64)];
    let got = sni(data);
    if let Hello::Sni(name) = &got {
        let b = name.as_bytes();
        assert!(!b.is_empty() && b.len() <= 255, "SNI of length {}", b.len());
        assert!(
            b.iter().all(u8::is_ascii_graphic),
            "SNI {name:?} is not printable ASCII"
        );
        // The whole entry (type 0, 16-bit length, name) is in the input.
        let mut entry = vec![0u8];
        entry.extend_from_slice(&(b.len() as u16).to_be_bytes());
        entry.extend_from_slice(b);
        assert!(
            data.windows(entry.len()).any(|w| w == entry.as_slice()),
            "SNI {name:?} is not a whole server_name entry of the input"
        );
    }
    // Every proper prefix says Incomplete or the same thing: the proxy may decide on
    // whatever it has read so far.
    if got != Hello::Incomplete {
        for cut in [data.len() / 2, data.len().saturating_sub(1)] {
            let early = sni(&data[..cut]);
            assert!(
                early == Hello::Incomplete || early == got,
                "a prefix of {cut} bytes says {early:?}, the whole {got:?}"
            );
        }
    }
});

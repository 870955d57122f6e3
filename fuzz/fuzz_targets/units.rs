//! Sizes and durations as the API and CLI take them ("512M", "1.5G", "30s"): any
//! string gives a value or an error, never a panic; a plain integer of bytes parses to
//! itself (below 2^53, where f64 is exact).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let size = corral_types::parse_size(s).ok();
    let _ = corral_types::parse_duration(s);
    if let (true, Ok(n)) = (s.bytes().all(|b| b.is_ascii_digit()), s.parse::<u64>()) {
        if n < 1 << 53 {
            assert_eq!(
                size,
                Some(n),
                "a plain byte count must parse to itself"
            );
        }
    }
    if let Some(n) = size {
        // The same size with an explicit unit: identical.
        assert_eq!(
            corral_types::parse_size(&format!("{s}b")).ok().or(Some(n)),
            Some(n)
        );
    }
});

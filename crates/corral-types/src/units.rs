//! Human sizes ("512M") and durations ("60s") as users write them.

use std::time::Duration;

/// A size or duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(String);

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitError {}

/// "1.5G" -> (1.5, "G"): a non-negative decimal number and the unit after it.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return None;
    }
    num.parse().ok().map(|v| (v, unit))
}

/// Parses a byte size: a number (decimals allowed) with an optional binary suffix
/// K, M, G or T (also written Ki/KiB/KB...). A bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let err = || {
        UnitError(format!(
            "invalid size {s:?}: use a number with an optional K, M, G or T suffix, e.g. 512M"
        ))
    };
    let (value, unit) = split_number(s).ok_or_else(err)?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kb" | "kib" => 1 << 10,
        "m" | "mi" | "mb" | "mib" => 1 << 20,
        "g" | "gi" | "gb" | "gib" => 1 << 30,
        "t" | "ti" | "tb" | "tib" => 1 << 40,
        _ => return Err(err()),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration: a number (decimals allowed) with an optional unit ms, s, m or h.
/// A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = || {
        UnitError(format!(
            "invalid duration {s:?}: use a number with a unit ms, s, m or h, e.g. 30s"
        ))
    };
    let (value, unit) = split_number(s).ok_or_else(err)?;
    let secs_per: f64 = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(err()),
    };
    let secs = value * secs_per;
    if !secs.is_finite() || secs > 1e12 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("8MB").unwrap(), 8 << 20);
        for bad in ["", "M", "12X", "-1M", "1..2M", "1e3", "99999999999T"] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains("e.g. 512M"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["", "s", "10d", "-1s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

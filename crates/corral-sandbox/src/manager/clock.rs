//! Wall-clock time as the API shows it: unix milliseconds in the database, RFC 3339
//! on the wire.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) use corral_types::rfc3339_ms as rfc3339;

//! corral-types: the wire and domain types shared by corral's CLI, daemon and clients.
//! No I/O lives here.
//!
//! Naming rules for wire types: `XxxRequest`/`XxxResponse`, snake_case JSON fields,
//! RFC 3339 `*_at` timestamps, string ids, durations as `*_ms`/`*_s` integers, sizes
//! as `*_bytes` integers.

pub mod api;
mod error;
mod run_result;
mod time;
mod units;

pub use error::{ErrorBody, ErrorDetail};
pub use run_result::RunResult;
pub use time::rfc3339_ms;
pub use units::{parse_duration, parse_size, UnitError};

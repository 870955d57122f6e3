//! MCP frames as /mcp reads them: every POSTed body is deserialized by rmcp into a
//! `ClientJsonRpcMessage` (corral's guard checks the JSON shape first; rmcp's own
//! parser then types it). Any bytes parse or are refused, never a panic, and a parsed
//! frame serializes back to JSON that parses to the same frame.
//!
//! corral's own layer in front (crates/corral-server/src/mcp/guard.rs: session and
//! per-key limits, `check_message`) is private to corral-server and not reached here;
//! its frame checks are unit-tested there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmcp::model::ClientJsonRpcMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = serde_json::from_slice::<ClientJsonRpcMessage>(data) else {
        return;
    };
    let json = serde_json::to_value(&msg).expect("a parsed frame serializes");
    let back: ClientJsonRpcMessage =
        serde_json::from_value(json.clone()).expect("a serialized frame parses");
    assert_eq!(serde_json::to_value(&back).ok(), Some(json));
});

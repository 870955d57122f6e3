//! What the daemon reads from a sandbox's init over the control socket
//! (`corral_isolate::ctl::CtlMessage`, JSON in one datagram): init runs inside the
//! sandbox, so these bytes are the sandbox's to choose. Any datagram parses or is
//! refused (the connection is then treated as broken), never a panic; a parsed message
//! round-trips.
#![no_main]

use corral_isolate::ctl::{CtlMessage, CtlRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = serde_json::from_slice::<CtlMessage>(data) {
        let json = serde_json::to_vec(&msg).expect("a parsed message serializes");
        let back: CtlMessage = serde_json::from_slice(&json).expect("it parses back");
        assert_eq!(back, msg);
    }
    // Requests go the other way (daemon to init), but init parses them too.
    if let Ok(req) = serde_json::from_slice::<CtlRequest>(data) {
        let json = serde_json::to_vec(&req).expect("a parsed request serializes");
        let back: CtlRequest = serde_json::from_slice(&json).expect("it parses back");
        assert_eq!(back, req);
    }
});

//! Egress rules (`NAME[:PORT]`, `*.NAME[:PORT]`, comma-separated) from a create
//! request's `network.allow` or `corral run --net allow=`: a rule that parses prints
//! back to text that parses to the same rule, its name is a valid lowercase DNS name,
//! and deciding any destination against the list never panics; the deny rules win.
#![no_main]

use corral_net::{Policy, Rule, Verdict};
use libfuzzer_sys::fuzz_target;

// Input: `RULES\0DEST\0PORT` (readable seeds; missing parts are empty, port 443).
fuzz_target!(|data: &str| {
    let mut parts = data.splitn(3, '\0');
    let rules = parts.next().unwrap_or("");
    let dest = parts.next().unwrap_or("");
    let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(443u16);
    for part in rules.split(',') {
        if let Ok(r) = Rule::parse(part) {
            let text = r.to_string();
            assert_eq!(
                Rule::parse(&text).as_ref(),
                Ok(&r),
                "{text:?} does not parse back"
            );
            assert!(!text.bytes().any(|b| b.is_ascii_uppercase() || b == b' '));
        }
    }
    let Ok(allow) = corral_net::parse_egress_rules(rules) else {
        return;
    };
    let deny = allow.clone();
    let open = Policy {
        allow: allow.clone(),
        deny: Vec::new(),
    };
    let closed = Policy { allow, deny };
    let _ = open.decide(dest, port);
    let _ = open.resolvable(dest);
    let _ = open.allow_text();
    // A destination both allowed and denied is denied.
    assert!(
        !matches!(closed.decide(dest, port), Verdict::Allow(_)),
        "a deny rule must win over the same allow rule"
    );
});

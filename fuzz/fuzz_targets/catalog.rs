//! Capability catalogs (TOML or JSON, from DATA_DIR/capabilities.toml or the API) and
//! the argument check every governed call goes through: any text builds a catalog or
//! is refused whole, never a panic; any arguments are accepted or rejected by an
//! entry's schema, and a rejection never echoes an argument's value (it may be a
//! secret).
#![no_main]

use corral_govern::Catalog;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SAMPLE: &str = include_str!("../../resources/govern/capabilities.sample.toml");

// Input: `CATALOG\0ARGS_JSON`; an empty CATALOG means the sample catalog.
fuzz_target!(|data: &str| {
    let (text, args) = data.split_once('\0').unwrap_or((data, "{}"));
    let text = if text.is_empty() { SAMPLE } else { text };
    let Ok(caps) = Catalog::parse(text, "fuzz") else {
        return;
    };
    let Ok(catalog) = Catalog::build(caps, "fuzz") else {
        return;
    };
    let _ = catalog.published();
    let Ok(args) = serde_json::from_str::<Value>(args) else {
        return;
    };
    let secrets = long_strings(&args);
    for entry in catalog.entries() {
        if let Err(rej) = entry.validate_args(&args) {
            let shown = format!("{rej}");
            let schema = serde_json::to_string(&entry.capability.input_schema).unwrap_or_default();
            for s in &secrets {
                // A value the schema itself spells out (an enum, a const) may be named.
                if !schema.contains(s.as_str()) && !rej.pointer.contains(s.as_str()) {
                    assert!(
                        !shown.contains(s.as_str()),
                        "the rejection echoes {s:?}: {shown}"
                    );
                }
            }
        }
    }
});

/// String values of at least 8 bytes (shorter ones collide with schema words).
fn long_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) if s.len() >= 8 => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(long_strings).collect(),
        // Keys are part of the pointer; only values are secret.
        Value::Object(o) => o.values().flat_map(long_strings).collect(),
        _ => Vec::new(),
    }
}

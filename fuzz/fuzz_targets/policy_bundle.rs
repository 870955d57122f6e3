//! Cedar policy bundles (`corral policy publish`, PUT of a bundle), compiled against
//! the schema generated from a catalog (the builtin tools, or the sample catalog):
//! any text compiles or is refused with a message, never a panic; a compiled bundle's
//! policies print back to text that compiles to the same policy ids.
#![no_main]

use std::sync::OnceLock;

use corral_govern::fuzzing::compile_policy;
use corral_govern::{Catalog, DEFAULT_POLICY};
use libfuzzer_sys::fuzz_target;

const SAMPLE: &str = include_str!("../../resources/govern/capabilities.sample.toml");

fn catalogs() -> &'static [Catalog; 2] {
    static C: OnceLock<[Catalog; 2]> = OnceLock::new();
    C.get_or_init(|| {
        let caps = Catalog::parse(SAMPLE, "sample").expect("the sample catalog parses");
        [
            Catalog::build(Vec::new(), "builtin").expect("the builtin catalog builds"),
            Catalog::build(caps, "sample").expect("the sample catalog builds"),
        ]
    })
}

// Input: the bundle's text; a leading `#` compiles it against the sample catalog
// (Cedar has no `#` comments, so the byte is removed), else against the builtin one.
fuzz_target!(|data: &str| {
    let (sample, text) = match data.strip_prefix('#') {
        Some(rest) => (true, rest),
        None => (false, data),
    };
    let catalog = &catalogs()[usize::from(sample)];
    // The default bundle always compiles (it is what a fresh daemon starts with).
    if text.is_empty() {
        assert!(compile_policy(catalog, DEFAULT_POLICY).is_ok());
        return;
    }
    let Ok(bundle) = compile_policy(catalog, text) else {
        return;
    };
    let printed: String = bundle
        .texts()
        .iter()
        .map(|t| format!("{}\n", t.text))
        .collect();
    let again = compile_policy(catalog, &printed)
        .unwrap_or_else(|e| panic!("a compiled bundle prints to text that fails: {e}\n{printed}"));
    assert_eq!(again.ids(), bundle.ids());
});

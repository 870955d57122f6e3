//! The recipe parser (a Dockerfile subset; recipes are admin input, often taken from a
//! repository). Any text and build arguments give steps or an error that names a line
//! of the text; every step's line is a line of the text, in order.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

// Input: `RECIPE[\0NAME=VALUE...]` (the build arguments after NULs).
fuzz_target!(|data: &str| {
    let mut parts = data.split('\0');
    let text = parts.next().unwrap_or("");
    let args: BTreeMap<String, String> = parts
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.to_string(), String::new()),
        })
        .collect();
    // Lines as the parser counts them (a trailing newline ends the last one).
    let lines = text.split('\n').count().max(1);
    match corral_sandbox::fuzzing::recipe(text, &args) {
        Ok((steps, _allow)) => {
            let mut last = 0;
            for (line, _, _) in &steps {
                assert!(*line >= 1 && *line <= lines, "step line {line} of {lines}");
                assert!(*line >= last, "steps out of order");
                last = *line;
            }
        }
        Err((line, message)) => {
            assert!(line <= lines + 1, "error line {line} of {lines}: {message}");
            assert!(!message.is_empty());
        }
    }
});

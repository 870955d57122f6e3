//! Names and paths that become paths: a sandbox path given to `corral run --workdir`
//! and the like (`validate_sandbox_path`), and template names, which name directories
//! of the template store. Property: whatever is accepted stays below the directory it
//! is resolved against: joined onto a root, the result starts with the root and
//! normalizes (lexically, `..` popping) to a path still below it.
#![no_main]

use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;

/// `root` joined with `p` (leading `/` dropped), `..` applied lexically.
fn resolve(root: &Path, p: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fuzz_target!(|s: &str| {
    let root = Path::new("/var/lib/corral/x");
    let p = Path::new(s);
    if corral_isolate::validate_sandbox_path(p, "fuzz").is_ok() {
        assert!(p.is_absolute());
        assert!(
            !p.components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir)),
            "{s:?} accepted with . or .."
        );
        assert!(resolve(root, p).starts_with(root), "{s:?} leaves the root");
    }
    if corral_sandbox::check_template_name(s).is_ok() {
        // One normal component: store/NAME is a directory of the store.
        let comps: Vec<_> = p.components().collect();
        assert!(
            matches!(comps.as_slice(), [Component::Normal(_)]) && !s.contains(['/', '\0']),
            "template name {s:?} is not one path component"
        );
        let joined = resolve(root, p);
        assert_eq!(
            joined.parent(),
            Some(root),
            "template name {s:?} leaves the store"
        );
    }
});

//! Where corral keeps its files on the host.

use std::path::PathBuf;

/// Persistent state (template skeletons). `CORRAL_STATE_DIR` overrides.
pub(crate) fn state_dir() -> PathBuf {
    std::env::var_os("CORRAL_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/corral"))
}

/// Runtime files (a mount point used only inside sandboxes). `CORRAL_RUNTIME_DIR`
/// overrides.
pub(crate) fn runtime_dir() -> PathBuf {
    std::env::var_os("CORRAL_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/corral"))
}

/// corral's parent cgroup. By default there is none: each sandbox's cgroup
/// (`corral-run-<pid>-<n>`) sits directly at the hierarchy's root and is removed with
/// the sandbox, so a finished run leaves no cgroup behind. `CORRAL_CGROUP_PARENT` names
/// a parent instead (tests use their own to check for leaks in isolation; it is created
/// on first use and left in place).
pub(crate) fn cgroup_parent() -> String {
    std::env::var("CORRAL_CGROUP_PARENT").unwrap_or_default()
}

/// First host id mapped into sandboxes: ids 0..65536 inside map to
/// BASE..BASE+65536 outside, a range no host account uses.
pub(crate) const ID_MAP_BASE: u32 = 1_000_000_000;

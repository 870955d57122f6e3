//! corral-isolate: the Linux primitives a corral sandbox is built from — namespaces,
//! mounts and pivot_root, seccomp, Landlock, capabilities, cgroups v1 and v2, rlimits,
//! and the in-sandbox init — and [`run`], which puts them together for one command, and
//! [`start_session`], which builds a long-lived sandbox served over [`ctl`].
//!
//! This is the only crate in the workspace that may use `unsafe`; every block carries a
//! `// SAFETY:` comment naming the invariant it relies on. Kernel-facing logic (mount
//! order, cgroup layout, cleanup) sits behind traits with recording fakes in the tests.

mod agent;
mod caps;
mod cgroup;
mod child;
pub mod ctl;
mod landlock_layer;
mod mounts;
mod ops;
mod prepare;
mod procfs;
mod realsys;
mod report;
mod run;
mod seccomp;
mod session;
mod spec;
mod supervise;

pub use cgroup::{
    run_name, sweep_stale, Cgroup, CgroupError, CgroupFs, CgroupLayout, CgroupStats, Controller,
    RealCgroupFs,
};
pub use run::{run, validate_sandbox_path, RunError, RunOutcome, Termination};
pub use seccomp::{SeccompError, SeccompFilters};
pub use session::{process_start_time, start_session, Session};
pub use spec::{
    Bind, Layer, Limits, OutputMode, RootfsSpec, SandboxSpec, SandboxUser, SessionSpec, StdinMode,
    ID_MAP_LEN, SANDBOX_UID,
};

/// An error and its sources on one line: "what failed: why: root cause". corral's
/// user-facing errors are printed this way (one line, no debug dump).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

//! Landlock, the second file system layer: the command may read and execute anywhere
//! in its root, but write only where the sandbox is meant to be writable. On ABI >= 6 it
//! is also scoped: no abstract unix socket connections or signals outside the sandbox.

use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetError, Scope, ABI,
};

/// Failures setting up Landlock.
#[derive(Debug, thiserror::Error)]
#[error("applying the Landlock ruleset failed; pass --dangerously-skip-layer landlock to run without it")]
pub(crate) struct LandlockError(#[source] RulesetError);

/// Top-level directories that never become writable.
const NEVER_WRITABLE: &[&str] = &["usr", "proc", "dev", "sys"];

/// /dev is writable for Landlock as a whole: it is a read-only tmpfs holding only the
/// harmless device nodes, a private devpts and /dev/shm, so this grants exactly writes
/// to those (and terminal ioctls on pts) with one rule instead of eight.
const DEV: &str = "/dev";

/// The kernel's Landlock ABI version (0 when Landlock is unavailable).
pub(crate) fn kernel_abi() -> i32 {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION with a null attr and size 0 only queries
    // the ABI version; no memory is read or written.
    #[allow(unsafe_code)]
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v < 0 {
        0
    } else {
        v as i32
    }
}

/// Writable paths, computed by corral before the sandbox starts (so the sandbox's init
/// allocates and writes no memory for it): every real directory at the top of the
/// template's layers (`layers`, topmost first, as overlayfs merges them) except /usr, /proc, /dev and /sys (symlinks such as /bin -> usr/bin are
/// skipped: following them would open /usr), the top-level directories corral creates
/// in the writable layer (/tmp, /home, /root and the first component of every mount
/// target and of the working directory), /dev (see [`DEV`]) and `extra` (the `:rw`
/// mount targets). Paths that turn out not to exist in the sandbox are skipped by init.
pub(crate) fn writable_paths(
    layers: &[&Path],
    created: impl IntoIterator<Item = PathBuf>,
    extra: &[PathBuf],
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut add = |p: PathBuf| {
        let top = p
            .components()
            .nth(1)
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let never = top.as_deref().is_some_and(|t| NEVER_WRITABLE.contains(&t));
        if !never && !out.contains(&p) {
            out.push(p);
        }
    };
    // Overlay semantics: the topmost layer that has a name decides what it is (a
    // whiteout or a link in an upper layer hides a lower directory).
    let mut decided: Vec<std::ffi::OsString> = Vec::new();
    for layer in layers {
        if let Ok(entries) = std::fs::read_dir(layer) {
            for e in entries.flatten() {
                let name = e.file_name();
                if decided.contains(&name) {
                    continue;
                }
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    add(Path::new("/").join(&name));
                }
                decided.push(name);
            }
        }
    }
    for p in ["/tmp", "/home", "/root"] {
        add(PathBuf::from(p));
    }
    for p in created {
        if let Some(first) = p.components().nth(1) {
            add(Path::new("/").join(first));
        }
    }
    out.push(PathBuf::from(DEV));
    out.extend(extra.iter().cloned());
    out
}

/// A Landlock ruleset built in the sandbox's init (rules are bound to the inodes of the
/// sandbox's root, so it is built after pivot_root) and enforced by the command process
/// after fork, which then only pays for `restrict_self`.
pub(crate) struct Prepared(RulesetCreated);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("landlock::Prepared")
    }
}

/// Builds the ruleset: read and execute anywhere, write only in `writable`; ABI 6
/// scoping when `scopes`. The caller has checked the kernel supports what is asked
/// (hard requirement: any unsupported right is an error, never silently dropped).
pub(crate) fn prepare(
    abi: i32,
    scopes: bool,
    writable: &[PathBuf],
) -> Result<Prepared, LandlockError> {
    let abi = ABI::from(abi);
    let build = || -> Result<RulesetCreated, RulesetError> {
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))?;
        if scopes {
            ruleset = ruleset.scope(Scope::from_all(abi))?;
        }
        ruleset
            .create()?
            .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
            .add_rules(path_beneath_rules(
                writable.iter().filter(|p| p.exists()),
                AccessFs::from_all(abi),
            ))
    };
    build().map(Prepared).map_err(LandlockError)
}

impl Prepared {
    /// The ruleset's fd, for processes that enforce it with [`restrict_fd`] (a
    /// session's init keeps one ruleset for every process it starts).
    pub(crate) fn into_fd(self) -> Option<std::os::fd::OwnedFd> {
        self.0.into()
    }
}

/// Enforces the ruleset `fd` on the calling thread (no_new_privs must already be set).
pub(crate) fn restrict_fd(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: landlock_restrict_self takes an fd and flags; no memory is passed.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

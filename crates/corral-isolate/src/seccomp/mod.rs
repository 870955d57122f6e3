//! The seccomp-bpf policy every sandboxed command runs under.
//!
//! The policy is data: `resources/seccomp/default.json`, in seccompiler's JSON format,
//! one rule per syscall with the reason in its `comment`, modelled on Docker's default
//! profile minus what a sandbox for untrusted code must not reach. `build.rs` turns it
//! into tables at build time (a malformed file fails the build), and [`bpf`] compiles
//! those into one short classic-BPF program per user kind: no JSON parsing and a single
//! small filter on the hot path of every sandbox start. The tests check the program
//! against seccompiler's own compilation of the same file (see `reference`).
//!
//! # Sections of the policy file
//!
//! - `allowlist` (+ `allowlist_<arch>`): what a normal userland needs. Anything else
//!   fails with `EPERM`, an ordinary error, never a kill. Some entries are conditional:
//!   `clone` and `unshare` without namespace flags, `personality` only to query or reset,
//!   `mknod`/`mknodat` only for regular files, FIFOs and sockets, `ioctl` except
//!   `TIOCSTI` and `TIOCLINUX`, `socket` except `AF_VSOCK`.
//! - `denied` (+ `denied_<arch>`): every notable syscall the allowlist leaves out, with
//!   the reason. Documentation and a test oracle: the tests check that none of them is
//!   allowed and that each answers `EPERM`.
//! - `denied_sandbox_user`: `chroot`, refused to [`SandboxUser::Sandbox`] only.
//! - `clone3_enosys`: `clone3` answers `ENOSYS`, so glibc falls back to `clone`, whose
//!   flags the filter can inspect (clone3 keeps them in memory, out of seccomp's reach).
//!
//! # Architecture check
//!
//! The program first compares `seccomp_data.arch` with the architecture corral was built
//! for and kills the process on a mismatch, so a foreign-ABI syscall (i386 `int 0x80`
//! on x86_64) fails closed. x32 syscalls carry the x86_64 audit arch with bit 30 set in
//! their number, which no allowed range contains: they get `EPERM`.

mod bpf;
mod policy;
#[cfg(test)]
mod reference;
mod syscalls;

use std::collections::BTreeMap;

use bpf::{Action, Cond};
use policy::{Rule, Section, POLICY};

use crate::spec::SandboxUser;

/// Where the policy lives in the source tree, for error messages.
const POLICY_PATH: &str = "resources/seccomp/default.json";

#[cfg(target_arch = "x86_64")]
const ARCH: Option<(&str, u32)> = Some(("x86_64", 0xC000_003E));
#[cfg(target_arch = "aarch64")]
const ARCH: Option<(&str, u32)> = Some(("aarch64", 0xC000_00B7));
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH: Option<(&str, u32)> = None;

/// The compiled seccomp program, installed just before execve.
#[derive(Debug, Clone)]
pub struct SeccompFilters {
    program: Vec<libc::sock_filter>,
}

/// Why the seccomp policy could not be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// corral has no syscall policy for this CPU architecture.
    #[error(
        "no seccomp policy for the {arch} architecture: corral's syscall allowlist covers \
         x86_64 and aarch64; run corral on one of those"
    )]
    UnsupportedArch {
        /// The architecture corral was built for.
        arch: &'static str,
    },
    /// The built-in policy is inconsistent (a build-time problem).
    #[error("the built-in seccomp policy ({POLICY_PATH}) is malformed: {problem}; fix the file and rebuild corral")]
    PolicyShape {
        /// What is wrong with it.
        problem: String,
    },
    /// The kernel refused the program.
    #[error(
        "installing the seccomp filter failed; the kernel must support seccomp filters \
         (CONFIG_SECCOMP_FILTER) and no_new_privs must be set"
    )]
    Install {
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
}

fn sections<'a>(arch: &'a str, base: &'a str) -> impl Iterator<Item = &'static Rule> + 'a {
    POLICY
        .iter()
        .filter(move |s: &&Section| s.name == base || s.name == format!("{base}_{arch}"))
        .flat_map(|s| s.rules.iter())
}

impl SeccompFilters {
    /// Compiles the built-in policy for `user` on the architecture corral was built for.
    pub fn compile(user: SandboxUser) -> Result<Self, SeccompError> {
        let (arch_name, audit_arch) = ARCH.ok_or(SeccompError::UnsupportedArch {
            arch: std::env::consts::ARCH,
        })?;
        let nr = |name: &str| {
            syscalls::number(name).ok_or_else(|| SeccompError::PolicyShape {
                problem: format!("unknown syscall {name} on {arch_name}"),
            })
        };
        let mut actions: BTreeMap<u32, Action> = BTreeMap::new();
        let refused: Vec<&str> = match user {
            SandboxUser::Sandbox => sections(arch_name, "denied_sandbox_user")
                .map(|r| r.syscall)
                .collect(),
            SandboxUser::Root => Vec::new(),
        };
        for rule in sections(arch_name, "allowlist") {
            if refused.contains(&rule.syscall) {
                continue;
            }
            let n = nr(rule.syscall)?;
            let entry = actions.entry(n);
            if rule.conds.is_empty() {
                entry.insert_entry(Action::Allow);
            } else {
                let conds: Vec<Cond> = rule.conds.to_vec();
                // If an unconditional rule already allows it, conditions add nothing.
                if let Action::Conditional(rules) =
                    entry.or_insert_with(|| Action::Conditional(Vec::new()))
                {
                    rules.push(conds);
                }
            }
        }
        for rule in sections(arch_name, "clone3_enosys") {
            actions.insert(nr(rule.syscall)?, Action::Errno(libc::ENOSYS as u16));
        }
        let program = bpf::compile(audit_arch, &actions, &Action::Errno(libc::EPERM as u16))
            .map_err(|e| SeccompError::PolicyShape {
                problem: format!(
                    "the compiled program ({} instructions) has a jump out of range",
                    e.0
                ),
            })?;
        Ok(SeccompFilters { program })
    }

    /// Number of BPF instructions (reported in benchmarks; smaller installs faster).
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never, for a compiled policy).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// Installs the program on the calling thread. no_new_privs must already be set.
    /// Runs after fork in a single-threaded child: it allocates nothing.
    pub fn apply(&self) -> Result<(), SeccompError> {
        let prog = libc::sock_fprog {
            len: self.program.len() as u16,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points at self.program, which outlives the call; the kernel copies
        // the instructions and does not keep the pointer.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(SeccompError::Install {
                source: std::io::Error::last_os_error(),
            })
        }
    }

    #[cfg(test)]
    fn program(&self) -> &[libc::sock_filter] {
        &self.program
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_name_has_a_number_here() {
        let (arch, _) = ARCH.unwrap();
        for s in POLICY {
            let applies = !s.name.contains("_x86_64") && !s.name.contains("_aarch64")
                || s.name.ends_with(arch);
            if applies {
                for r in s.rules {
                    assert!(
                        syscalls::number(r.syscall).is_some(),
                        "{}: {}",
                        s.name,
                        r.syscall
                    );
                }
            }
        }
    }

    #[test]
    fn program_is_short() {
        for user in [SandboxUser::Sandbox, SandboxUser::Root] {
            let f = SeccompFilters::compile(user).unwrap();
            assert!(f.len() < 130, "{user:?}: {} instructions", f.len());
            eprintln!("{user:?}: {} instructions", f.len());
        }
    }

    #[test]
    fn matches_the_reference_compiler_on_every_syscall_number() {
        let (_, audit) = ARCH.unwrap();
        for user in [SandboxUser::Sandbox, SandboxUser::Root] {
            let ours = SeccompFilters::compile(user).unwrap();
            let reference = reference::SeccompFilters::compile(user).unwrap();
            let mut arg_sets: Vec<[u64; 6]> = vec![[0; 6], [u64::MAX; 6]];
            for v in [
                0x5412u64,
                0x541C,
                0x1_0000_5412,
                0x7E02_0000,
                0x1000_0000,
                0x2_0000,
                0o010644,
                0o020644,
                0o060644,
                0o140644,
                0o100644,
                0xffff_ffff,
                8,
                40,
                0x11,
            ] {
                for i in 0..3 {
                    let mut a = [0u64; 6];
                    a[i] = v;
                    arg_sets.push(a);
                }
            }
            let numbers = (0..600u32).chain([0x4000_0000, 0x4000_0001, 0x4000_0200, u32::MAX]);
            for nr in numbers {
                for args in &arg_sets {
                    let got = bpf::run(ours.program(), audit, nr, *args);
                    let want = reference.decide(audit, nr, *args);
                    assert_eq!(got, want, "{user:?}: syscall {nr} args {args:x?}");
                }
            }
        }
    }
}

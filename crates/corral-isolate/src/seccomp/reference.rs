//! The reference compilation of the policy, for tests: seccompiler compiles each
//! section into its own program and the programs are stacked as the kernel would stack
//! them. corral's own compiler (`super::bpf`) must answer exactly the same for every
//! syscall; `decide` evaluates the stack with the kernel's precedence rules.
//!
//! (Originally the runtime implementation: four stacked filters of ~2300 instructions,
//! which took ~2.5 ms to install; kept as the oracle.)
#![allow(dead_code)]
//!
//! The policy is data: `resources/seccomp/default.json`, in seccompiler's JSON format,
//! one rule per syscall with the reason in its `comment`. It is embedded at build time
//! and compiled here with [`seccompiler::compile_from_json`]. It is modelled on
//! Docker's default profile, minus what a sandbox for untrusted code must not reach.
//!
//! # Sections of the policy file
//!
//! - `allowlist` (+ `allowlist_<arch>`): what a normal userland needs. Anything else
//!   fails with `EPERM`, an ordinary error, never a kill. Some entries are conditional:
//!   `clone` and `unshare` without namespace flags, `personality` only to query or reset,
//!   `mknod`/`mknodat` only for regular files, FIFOs and sockets, `ioctl` except
//!   `TIOCSTI` and `TIOCLINUX`, `socket` except `AF_VSOCK`.
//! - `denied` (+ `denied_<arch>`): every notable syscall the allowlist leaves out, with
//!   the reason. It is installed too (match -> `EPERM`, else allow), so that an entry
//!   added to the allowlist by mistake cannot reopen one of these; the unit tests also
//!   check that the two lists do not overlap.
//! - `denied_sandbox_user`: `chroot`, refused to [`SandboxUser::Sandbox`] only.
//! - `clone3_enosys`: `clone3` answers `ENOSYS`, so glibc falls back to `clone`, whose
//!   flags the allowlist can inspect (clone3 keeps them in memory, out of seccomp's
//!   reach).
//!
//! An `<arch>` section (for example `allowlist_x86_64`) holds syscalls that exist on that
//! architecture only (`open`, `fork`, `arch_prctl`, ...); it is appended to its base
//! section when compiling for that architecture, because seccompiler rejects names that
//! the target architecture does not have.
//!
//! # How stacked filters combine
//!
//! The programs are installed in this order: allowlist, denied, denied_sandbox_user
//! (sandbox user only), clone3_enosys. The kernel runs every installed filter and keeps
//! the most severe action; among equal actions (two `ERRNO`s) it keeps the one from the
//! most recently installed filter. That is why `clone3` gets `ENOSYS` from the last
//! filter although the allowlist answers `EPERM` for it.
//!
//! # Architecture check
//!
//! seccompiler starts every program with a check of `seccomp_data.arch` against the
//! target architecture and returns `SECCOMP_RET_KILL_PROCESS` on a mismatch. So a
//! foreign-ABI syscall (for example i386 `int 0x80` on x86_64) kills the process instead
//! of being matched against x86_64 numbers: it fails closed. x32 syscalls carry the
//! x86_64 audit arch but have bit 30 set in their number, which matches no allowlist
//! entry, so they get `EPERM`.
//!
//! The x86_64 `uretprobe` syscall is in neither list: the kernel only accepts it from
//! its own uprobe trampoline and lets it bypass seccomp there.

use seccompiler::{BpfProgram, TargetArch};
use serde_json::{Map, Value};

use crate::spec::SandboxUser;

/// The policy file, embedded at build time.
const POLICY_JSON: &str = include_str!("../../../../resources/seccomp/default.json");

/// Where the policy lives in the source tree, for error messages.
const POLICY_PATH: &str = "resources/seccomp/default.json";

/// Allowed syscalls; the default answer is `EPERM`.
const ALLOWLIST: &str = "allowlist";
/// Syscalls refused with `EPERM` to everyone, listed with reasons.
const DENIED: &str = "denied";
/// Syscalls refused to the unprivileged sandbox user only.
const DENIED_SANDBOX_USER: &str = "denied_sandbox_user";
/// `clone3` answers `ENOSYS`.
const CLONE3_ENOSYS: &str = "clone3_enosys";

/// The architecture corral runs on, or `None` where the policy has not been written for
/// it (`compile` then fails rather than run a command unfiltered).
#[cfg(target_arch = "x86_64")]
const HOST_ARCH: Option<TargetArch> = Some(TargetArch::x86_64);
#[cfg(target_arch = "aarch64")]
const HOST_ARCH: Option<TargetArch> = Some(TargetArch::aarch64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const HOST_ARCH: Option<TargetArch> = None;

/// Compiled seccomp programs, installed in order just before execve.
#[derive(Debug, Clone)]
pub(super) struct SeccompFilters {
    /// (section name, program) in install order.
    programs: Vec<(&'static str, BpfProgram)>,
}

impl SeccompFilters {
    /// Compiles the built-in policy for `user` on the architecture corral was built for.
    ///
    /// Call this before forking: it parses JSON and allocates freely.
    pub(super) fn compile(user: SandboxUser) -> Result<Self, SeccompError> {
        let arch = HOST_ARCH.ok_or(SeccompError::UnsupportedArch {
            arch: std::env::consts::ARCH,
        })?;
        Self::compile_for(user, arch)
    }

    /// Compiles the built-in policy for `user` and an explicit target architecture.
    pub(crate) fn compile_for(user: SandboxUser, arch: TargetArch) -> Result<Self, SeccompError> {
        let sections = install_order(user);
        let document = policy_document(arch, sections)?;
        let mut compiled =
            seccompiler::compile_from_json(document.as_slice(), arch).map_err(|source| {
                SeccompError::Compile {
                    arch: arch_name(arch),
                    source,
                }
            })?;
        let programs = sections
            .iter()
            .map(|&name| {
                compiled
                    .remove(name)
                    .map(|program| (name, program))
                    .ok_or_else(|| SeccompError::PolicyShape {
                        problem: format!("section `{name}` did not compile into a program"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { programs })
    }

    /// Installs every program on the calling thread (`seccompiler::apply_filter`).
    ///
    /// The caller has already set no_new_privs (seccompiler sets it again before each
    /// program, which is harmless). This runs after fork in a single-threaded
    /// child, so it allocates nothing: it walks the compiled programs and hands each to
    /// the kernel. If installing fails part way, the programs before the failing one stay
    /// installed (seccomp cannot be undone); the caller must treat any error as fatal and
    /// not run the command.
    pub(super) fn apply(&self) -> Result<(), SeccompError> {
        for (name, program) in &self.programs {
            seccompiler::apply_filter(program).map_err(|source| SeccompError::Install {
                filter: name,
                source,
            })?;
        }
        Ok(())
    }

    /// What the stacked programs answer for one syscall: the most severe action wins;
    /// among equal actions the most recently installed filter's (kernel semantics).
    pub(crate) fn decide(&self, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut best: Option<u32> = None;
        for (_, program) in self.programs.iter().rev() {
            let prog: Vec<libc::sock_filter> = program
                .iter()
                .map(|f| libc::sock_filter {
                    code: f.code,
                    jt: f.jt,
                    jf: f.jf,
                    k: f.k,
                })
                .collect();
            let ret = super::bpf::run(&prog, arch, nr, args);
            let rank = |r: u32| (r & 0xffff_0000) as i32;
            if best.is_none_or(|b| rank(ret) < rank(b)) {
                best = Some(ret);
            }
        }
        best.unwrap_or(super::bpf::RET_ALLOW)
    }

    /// Section names of the compiled programs, in install order.
    pub(crate) fn section_names(&self) -> Vec<&'static str> {
        self.programs.iter().map(|(name, _)| *name).collect()
    }
}

/// Why the seccomp policy could not be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub(super) enum SeccompError {
    /// corral has no syscall policy for this CPU architecture.
    #[error(
        "no seccomp policy for the {arch} architecture: corral's syscall allowlist covers \
         x86_64 and aarch64; run corral on one of those"
    )]
    UnsupportedArch {
        /// The architecture corral was built for.
        arch: &'static str,
    },
    /// The embedded policy file is not valid JSON.
    #[error("the built-in seccomp policy ({POLICY_PATH}) is not valid JSON; fix the file and rebuild corral")]
    PolicyJson {
        /// The parse error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The embedded policy file lacks a section or has one of the wrong shape.
    #[error("the built-in seccomp policy ({POLICY_PATH}) is malformed: {problem}; fix the file and rebuild corral")]
    PolicyShape {
        /// What is wrong with it.
        problem: String,
    },
    /// seccompiler rejected the policy (an unknown syscall name, a bad condition, a
    /// program too long).
    #[error("compiling the built-in seccomp policy ({POLICY_PATH}) for {arch} failed; fix the file and rebuild corral")]
    Compile {
        /// The target architecture.
        arch: &'static str,
        /// seccompiler's error.
        #[source]
        source: seccompiler::Error,
    },
    /// The kernel refused a program.
    #[error(
        "installing the seccomp filter `{filter}` failed; the kernel must support seccomp \
         filters (CONFIG_SECCOMP_FILTER) and the process must be allowed to set no_new_privs"
    )]
    Install {
        /// The policy section whose program failed to install.
        filter: &'static str,
        /// seccompiler's error, holding the errno.
        #[source]
        source: seccompiler::Error,
    },
}

/// The policy sections to install for `user`, in install order.
pub(crate) fn install_order(user: SandboxUser) -> &'static [&'static str] {
    match user {
        SandboxUser::Sandbox => &[ALLOWLIST, DENIED, DENIED_SANDBOX_USER, CLONE3_ENOSYS],
        SandboxUser::Root => &[ALLOWLIST, DENIED, CLONE3_ENOSYS],
    }
}

/// The seccompiler name of `arch`, also the suffix of its policy sections.
pub(crate) fn arch_name(arch: TargetArch) -> &'static str {
    match arch {
        TargetArch::x86_64 => "x86_64",
        TargetArch::aarch64 => "aarch64",
        TargetArch::riscv64 => "riscv64",
    }
}

/// Builds the JSON document seccompiler compiles: each of `sections`, with the rules of
/// its `<section>_<arch>` companion (if the file has one) appended.
pub(crate) fn policy_document(
    arch: TargetArch,
    sections: &[&str],
) -> Result<Vec<u8>, SeccompError> {
    let policy = parse_policy()?;
    let mut document = Map::new();
    for &name in sections {
        let mut section = policy
            .get(name)
            .cloned()
            .ok_or_else(|| SeccompError::PolicyShape {
                problem: format!("section `{name}` is missing"),
            })?;
        let arch_section = format!("{name}_{}", arch_name(arch));
        if let Some(extra) = policy.get(&arch_section) {
            let extra_rules = rules(extra, &arch_section)?.to_vec();
            rules_mut(&mut section, name)?.extend(extra_rules);
        }
        document.insert(name.to_owned(), section);
    }
    serde_json::to_vec(&Value::Object(document))
        .map_err(|source| SeccompError::PolicyJson { source })
}

/// The embedded policy as a map of section name to section.
fn parse_policy() -> Result<Map<String, Value>, SeccompError> {
    match serde_json::from_str(POLICY_JSON) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(SeccompError::PolicyShape {
            problem: "the top level must be an object of sections".to_owned(),
        }),
        Err(source) => Err(SeccompError::PolicyJson { source }),
    }
}

/// The `filter` array of a section.
fn rules<'a>(section: &'a Value, name: &str) -> Result<&'a Vec<Value>, SeccompError> {
    section
        .get("filter")
        .and_then(Value::as_array)
        .ok_or_else(|| missing_filter(name))
}

/// The `filter` array of a section, mutably.
fn rules_mut<'a>(section: &'a mut Value, name: &str) -> Result<&'a mut Vec<Value>, SeccompError> {
    section
        .get_mut("filter")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| missing_filter(name))
}

fn missing_filter(name: &str) -> SeccompError {
    SeccompError::PolicyShape {
        problem: format!("section `{name}` has no `filter` array"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::error::Error as _;

    use super::*;

    /// Syscalls the issue requires refused outright, to everyone.
    const MUST_DENY: &[&str] = &[
        "mount",
        "umount2",
        "pivot_root",
        "setns",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "name_to_handle_at",
        "quotactl",
        "quotactl_fd",
        "swapon",
        "swapoff",
        "reboot",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "syslog",
        "acct",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "mount_setattr",
        "pidfd_getfd",
        "kcmp",
        "lookup_dcookie",
        "nfsservctl",
        "vhangup",
        "fanotify_init",
        "setdomainname",
        "sethostname",
    ];

    /// x86_64-only syscalls the issue requires refused outright.
    const MUST_DENY_X86_64: &[&str] = &["iopl", "ioperm", "uselib"];

    /// Syscalls the allowlist may only allow under argument conditions.
    const CONDITIONAL: &[&str] = &[
        "clone",
        "unshare",
        "personality",
        "mknod",
        "mknodat",
        "ioctl",
        "socket",
    ];

    fn policy() -> Map<String, Value> {
        match parse_policy() {
            Ok(policy) => policy,
            Err(err) => panic!("{err}"),
        }
    }

    fn section_rules<'a>(policy: &'a Map<String, Value>, name: &str) -> &'a [Value] {
        policy
            .get(name)
            .and_then(|section| section.get("filter"))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Syscall name -> whether each of its rules has argument conditions, for a section
    /// and all its arch companions.
    fn rule_shapes(policy: &Map<String, Value>, base: &str) -> BTreeMap<String, Vec<bool>> {
        let mut shapes: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        for (name, _) in policy
            .iter()
            .filter(|(name, _)| *name == base || name.starts_with(&format!("{base}_")))
            .filter(|(name, _)| !(base == DENIED && name.as_str() == DENIED_SANDBOX_USER))
        {
            for rule in section_rules(policy, name) {
                let syscall = rule["syscall"].as_str().unwrap_or_default().to_owned();
                shapes
                    .entry(syscall)
                    .or_default()
                    .push(rule.get("args").is_some());
            }
        }
        shapes
    }

    #[test]
    fn every_rule_and_condition_has_a_reason() {
        let policy = policy();
        assert!(!policy.is_empty());
        for (section, _) in &policy {
            let rules = section_rules(&policy, section);
            assert!(!rules.is_empty(), "section {section} has no rules");
            for rule in rules {
                let comment = rule.get("comment").and_then(Value::as_str).unwrap_or("");
                assert!(
                    !comment.trim().is_empty(),
                    "{section}: rule for {} has no comment",
                    rule["syscall"]
                );
                for arg in rule
                    .get("args")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let comment = arg.get("comment").and_then(Value::as_str).unwrap_or("");
                    assert!(
                        !comment.trim().is_empty(),
                        "{section}: a condition on {} has no comment",
                        rule["syscall"]
                    );
                }
            }
        }
    }

    #[test]
    fn must_deny_syscalls_are_denied_and_not_allowed() {
        let policy = policy();
        let allowed = rule_shapes(&policy, ALLOWLIST);
        let denied = rule_shapes(&policy, DENIED);
        for name in MUST_DENY.iter().chain(MUST_DENY_X86_64) {
            assert!(!allowed.contains_key(*name), "{name} is in the allowlist");
            assert!(
                denied.contains_key(*name),
                "{name} is not in the denied list"
            );
        }
        for name in CONDITIONAL {
            let shapes = allowed.get(*name).map_or(&[][..], Vec::as_slice);
            assert!(!shapes.is_empty(), "{name} is not in the allowlist at all");
            assert!(
                shapes.iter().all(|has_args| *has_args),
                "{name} is allowed without argument conditions"
            );
        }
        assert_eq!(
            section_rules(&policy, DENIED_SANDBOX_USER)
                .iter()
                .map(|rule| rule["syscall"].as_str())
                .collect::<Vec<_>>(),
            [Some("chroot")]
        );
        assert_eq!(
            section_rules(&policy, CLONE3_ENOSYS)
                .iter()
                .map(|rule| rule["syscall"].as_str())
                .collect::<Vec<_>>(),
            [Some("clone3")]
        );
        assert!(!allowed.contains_key("clone3"));
    }

    #[test]
    fn allowlist_and_denied_list_do_not_overlap() {
        let policy = policy();
        let allowed: BTreeSet<_> = rule_shapes(&policy, ALLOWLIST).into_keys().collect();
        let denied: BTreeSet<_> = rule_shapes(&policy, DENIED).into_keys().collect();
        let both: Vec<_> = allowed.intersection(&denied).collect();
        assert!(both.is_empty(), "both allowed and denied: {both:?}");
    }

    /// seccompiler drops an unconditional rule when the same syscall also has
    /// conditional ones (the conditions win), so each syscall must be one or the other,
    /// and listed once if unconditional.
    #[test]
    fn no_syscall_mixes_conditional_and_unconditional_rules() {
        let policy = policy();
        for base in [ALLOWLIST, DENIED] {
            for (name, shapes) in rule_shapes(&policy, base) {
                let unconditional = shapes.iter().filter(|has_args| !**has_args).count();
                assert!(
                    unconditional == 0 || shapes.len() == 1,
                    "{base}: {name} has {} rules, {unconditional} unconditional",
                    shapes.len()
                );
            }
        }
    }

    #[test]
    fn sections_have_the_expected_actions() {
        let policy = policy();
        let eperm = serde_json::json!({ "errno": libc::EPERM });
        let enosys = serde_json::json!({ "errno": libc::ENOSYS });
        for (name, section) in &policy {
            let (mismatch, on_match) = (&section["mismatch_action"], &section["match_action"]);
            if name.starts_with(ALLOWLIST) {
                assert_eq!(
                    (mismatch, on_match),
                    (&eperm, &Value::from("allow")),
                    "{name}"
                );
            } else if name.starts_with(DENIED) {
                assert_eq!(
                    (mismatch, on_match),
                    (&Value::from("allow"), &eperm),
                    "{name}"
                );
            } else {
                assert_eq!(name, CLONE3_ENOSYS);
                assert_eq!((mismatch, on_match), (&Value::from("allow"), &enosys));
            }
        }
    }

    #[test]
    fn policy_is_valid_for_the_seccompiler_frontend_on_every_supported_arch() {
        for arch in [TargetArch::x86_64, TargetArch::aarch64] {
            for user in [SandboxUser::Sandbox, SandboxUser::Root] {
                let filters = match SeccompFilters::compile_for(user, arch) {
                    Ok(filters) => filters,
                    Err(err) => panic!("{arch:?}/{user:?}: {err}: {:?}", err.source()),
                };
                assert_eq!(filters.section_names(), install_order(user));
                assert!(filters
                    .programs
                    .iter()
                    .all(|(_, program)| !program.is_empty()));
            }
        }
        // Each section of the file, as written, is a filter seccompiler accepts on x86_64
        // (the aarch64 check above covers the sections that apply there).
        for (name, section) in policy() {
            let document = serde_json::json!({ name.clone(): section }).to_string();
            let compiled = seccompiler::compile_from_json(document.as_bytes(), TargetArch::x86_64);
            assert!(compiled.is_ok(), "{name}: {:?}", compiled.err());
        }
    }

    #[test]
    fn compile_succeeds_for_both_users() {
        for user in [SandboxUser::Sandbox, SandboxUser::Root] {
            match SeccompFilters::compile(user) {
                Ok(filters) => assert_eq!(filters.section_names(), install_order(user)),
                Err(err) => panic!("{user:?}: {err}"),
            }
        }
    }

    #[test]
    fn chroot_is_refused_to_the_sandbox_user_only() {
        assert!(install_order(SandboxUser::Sandbox).contains(&DENIED_SANDBOX_USER));
        assert!(!install_order(SandboxUser::Root).contains(&DENIED_SANDBOX_USER));
        // clone3's ENOSYS must come from the last filter to win over the allowlist's EPERM.
        for user in [SandboxUser::Sandbox, SandboxUser::Root] {
            assert_eq!(install_order(user).last(), Some(&CLONE3_ENOSYS));
            assert_eq!(install_order(user).first(), Some(&ALLOWLIST));
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let err = SeccompError::UnsupportedArch { arch: "riscv64" };
        assert!(err.to_string().contains("x86_64 and aarch64"));
        let err = SeccompError::PolicyShape {
            problem: "section `x` is missing".to_owned(),
        };
        assert!(err.to_string().contains("fix the file and rebuild corral"));
    }
}

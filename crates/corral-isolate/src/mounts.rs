//! The sandbox's root file system: a plan of mount operations built from the spec
//! (pure, unit-tested) and an executor that applies it through [`MountSys`], the seam in
//! front of the kernel.
//!
//! Layout, inside the sandbox's own mount namespace (nothing here is visible on the
//! host): a size-capped tmpfs ("scratch") holds the overlay's upper and work dirs and
//! the backing dirs of /tmp and /dev/shm, so one cap bounds every byte a sandbox can
//! write. The overlay's lower layer is the read-only template.

use std::io;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

use crate::spec::{Bind, SANDBOX_UID};

/// Failures building the root file system.
#[derive(Debug, thiserror::Error)]
#[error("preparing the sandbox file system: {step} failed")]
pub(crate) struct MountError {
    step: String,
    #[source]
    source: io::Error,
}

impl MountError {
    fn new(step: impl Into<String>, source: io::Error) -> Self {
        MountError {
            step: step.into(),
            source,
        }
    }
}

/// /proc entries hidden behind /dev/null (files) or an empty read-only tmpfs (dirs):
/// the OCI runtime-spec defaults plus a few more that expose host kernel state.
pub(crate) const PROC_MASKED: &[&str] = &[
    "acpi",
    "asound",
    "kallsyms",
    "kcore",
    "keys",
    "key-users",
    "kmsg",
    "kpagecgroup",
    "kpagecount",
    "kpageflags",
    "latency_stats",
    "sched_debug",
    "scsi",
    "sysrq-trigger",
    "timer_list",
    "timer_stats",
    "vmallocinfo",
];

/// /proc entries kept visible but read-only.
pub(crate) const PROC_READONLY: &[&str] = &["bus", "fs", "irq", "sys"];

/// Device nodes recreated (same major/minor as the host's) in the sandbox's /dev.
pub(crate) const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// One step of building the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountOp {
    /// Stop mount events propagating between the host and the sandbox (both ways).
    MakePrivate,
    /// Mount a tmpfs.
    Tmpfs {
        target: PathBuf,
        options: String,
        flags: MsFlags,
    },
    /// Create a directory (parents must exist) with a mode and host owner.
    Mkdir {
        path: PathBuf,
        mode: u32,
        owner: (u32, u32),
    },
    /// Create a directory below `root`, refusing symlinks on the way; `owner` applies to
    /// the directories it creates.
    MkdirBeneath {
        root: PathBuf,
        rel: PathBuf,
        owner: Option<(u32, u32)>,
    },
    /// The overlay that becomes the root.
    Overlay {
        target: PathBuf,
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
    },
    /// Bind `source` onto `root/rel` (mount point created beneath root, no symlinks);
    /// `target` is `root/rel`, joined when the plan is made.
    Bind {
        source: PathBuf,
        root: PathBuf,
        rel: PathBuf,
        target: PathBuf,
        readonly: bool,
        /// Extra flags for the (re)mount, e.g. nosuid/nodev.
        flags: MsFlags,
    },
    /// Create a character device node like the host's `source` (mknod on corral's own
    /// /dev tmpfs, which is made read-only right after, so no other node can appear).
    Device { source: PathBuf, target: PathBuf },
    /// Mount a fresh procfs.
    Proc { target: PathBuf },
    /// Hide a /proc entry if it exists.
    Mask { target: PathBuf },
    /// Make an existing path read-only (bind onto itself, remount ro).
    ReadonlyIfExists { target: PathBuf },
    /// A private devpts instance.
    Devpts { target: PathBuf, options: String },
    /// A symlink.
    Symlink { target: PathBuf, link: PathBuf },
    /// Remount an existing mount read-only (keeps the given flags).
    RemountReadonly { target: PathBuf, flags: MsFlags },
    /// Switch the root to `new_root` and detach the old one.
    PivotRoot { new_root: PathBuf },
}

/// What the plan needs to know.
#[derive(Debug, Clone)]
pub(crate) struct PlanInput<'a> {
    /// Host directory that the scratch tmpfs is mounted on (in the sandbox's namespace).
    pub scratch: &'a Path,
    /// Template root (overlay lower).
    pub lower: &'a Path,
    /// Read-only layers above `lower`, topmost first (snapshots).
    pub layers: &'a [PathBuf],
    /// Template binds (read-only host dirs such as /usr).
    pub template_binds: &'a [Bind],
    /// User binds.
    pub user_binds: &'a [Bind],
    /// Writable-layer cap, bytes.
    pub disk_bytes: u64,
    /// First host id of the sandbox's mapped range.
    pub id_base: u32,
    /// A host directory for the overlay's upper and work dirs instead of the scratch
    /// tmpfs (the writable layer outlives the sandbox; see SandboxSpec::upper_dir).
    pub upper_dir: Option<&'a Path>,
    /// A working directory to create (owned by `workdir_owner`) if missing.
    pub workdir: Option<&'a Path>,
    /// In-sandbox uid that owns a created working directory.
    pub workdir_owner: u32,
}

/// `/a/b` → `a/b`; the spec validator has already refused relative paths and `..`.
fn rel(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Builds the ordered list of operations.
pub(crate) fn plan(input: &PlanInput<'_>) -> Vec<MountOp> {
    let s = input.scratch;
    let root = s.join("root");
    let host = |id: u32| input.id_base + id;
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut ops = vec![
        MountOp::MakePrivate,
        MountOp::Tmpfs {
            target: s.to_path_buf(),
            options: format!("size={},mode=0755", input.disk_bytes),
            flags: nosuid_nodev,
        },
    ];
    // The root directory, /tmp, /dev/shm and /home belong to the sandbox's root (its
    // mapped host id), as in any container; the overlay work dir and mount point stay
    // host root's.
    let sandbox_root = (host(0), host(0));
    let (upper, work) = match input.upper_dir {
        Some(d) => (d.join("upper"), d.join("work")),
        None => (s.join("upper"), s.join("work")),
    };
    for (path, mode, owner) in [
        (upper.clone(), 0o755, sandbox_root),
        (work.clone(), 0o700, (0, 0)),
        (s.join("tmp"), 0o1777, sandbox_root),
        (s.join("shm"), 0o1777, sandbox_root),
        (s.join("root"), 0o755, (0, 0)),
        (upper.join("home"), 0o755, sandbox_root),
    ] {
        ops.push(MountOp::Mkdir { path, mode, owner });
    }
    // The users' homes live in the writable layer, owned by their mapped host ids.
    ops.push(MountOp::Mkdir {
        path: upper.join("home/sandbox"),
        mode: 0o755,
        owner: (host(SANDBOX_UID), host(SANDBOX_UID)),
    });
    ops.push(MountOp::Mkdir {
        path: upper.join("root"),
        mode: 0o700,
        owner: (host(0), host(0)),
    });
    // overlayfs lists lower layers topmost first, separated by ':'.
    let lower = input
        .layers
        .iter()
        .map(|l| l.as_os_str())
        .chain(std::iter::once(input.lower.as_os_str()))
        .collect::<Vec<_>>()
        .join(std::ffi::OsStr::new(":"));
    ops.push(MountOp::Overlay {
        target: root.clone(),
        lower: PathBuf::from(lower),
        upper,
        work,
    });
    for b in input.template_binds {
        ops.push(MountOp::Bind {
            source: b.source.clone(),
            root: root.clone(),
            rel: rel(&b.target),
            target: root.join(rel(&b.target)),
            readonly: !b.writable,
            flags: nosuid_nodev,
        });
    }

    // /proc: fresh, with host kernel state masked and tunables read-only.
    ops.push(MountOp::MkdirBeneath {
        root: root.clone(),
        rel: PathBuf::from("proc"),
        owner: None,
    });
    let proc = root.join("proc");
    ops.push(MountOp::Proc {
        target: proc.clone(),
    });
    for m in PROC_MASKED {
        ops.push(MountOp::Mask {
            target: proc.join(m),
        });
    }
    for r in PROC_READONLY {
        ops.push(MountOp::ReadonlyIfExists {
            target: proc.join(r),
        });
    }

    // /dev: a small tmpfs with only the harmless devices, a private devpts and shm.
    ops.push(MountOp::MkdirBeneath {
        root: root.clone(),
        rel: PathBuf::from("dev"),
        owner: None,
    });
    let dev = root.join("dev");
    let dev_flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    ops.push(MountOp::Tmpfs {
        target: dev.clone(),
        options: "size=65536,mode=0755".into(),
        flags: dev_flags,
    });
    for d in DEVICES {
        ops.push(MountOp::Device {
            source: Path::new("/dev").join(d),
            target: dev.join(d),
        });
    }
    ops.push(MountOp::Mkdir {
        path: dev.join("pts"),
        mode: 0o755,
        owner: (0, 0),
    });
    ops.push(MountOp::Devpts {
        target: dev.join("pts"),
        options: format!("newinstance,ptmxmode=0666,mode=0620,gid={}", host(5)),
    });
    ops.push(MountOp::Symlink {
        target: PathBuf::from("pts/ptmx"),
        link: dev.join("ptmx"),
    });
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: PathBuf::from(target),
            link: dev.join(name),
        });
    }
    ops.push(MountOp::Bind {
        source: s.join("shm"),
        root: dev.clone(),
        rel: PathBuf::from("shm"),
        target: dev.join("shm"),
        readonly: false,
        flags: nosuid_nodev,
    });
    ops.push(MountOp::RemountReadonly {
        target: dev.clone(),
        flags: dev_flags,
    });

    // /tmp shares the scratch tmpfs, and so its cap.
    ops.push(MountOp::Bind {
        source: s.join("tmp"),
        root: root.clone(),
        rel: PathBuf::from("tmp"),
        target: root.join("tmp"),
        readonly: false,
        flags: nosuid_nodev,
    });
    for b in input.user_binds {
        ops.push(MountOp::Bind {
            source: b.source.clone(),
            root: root.clone(),
            rel: rel(&b.target),
            target: root.join(rel(&b.target)),
            readonly: !b.writable,
            flags: nosuid_nodev,
        });
    }
    if let Some(w) = input.workdir {
        let id = host(input.workdir_owner);
        ops.push(MountOp::MkdirBeneath {
            root: root.clone(),
            rel: rel(w),
            owner: Some((id, id)),
        });
    }
    ops.push(MountOp::PivotRoot { new_root: root });
    ops
}

/// The kernel calls the executor needs.
pub(crate) trait MountSys {
    /// mount(2).
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// mkdir(2) + chown + chmod (the mode is applied exactly, ignoring the umask).
    fn mkdir(&mut self, path: &Path, mode: u32, owner: (u32, u32)) -> io::Result<()>;
    /// Creates `root/rel` and missing parents without following any symlink; returns
    /// an error if a component is a symlink or not a directory.
    fn mkdir_beneath(
        &mut self,
        root: &Path,
        rel: &Path,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()>;
    /// Creates an empty file at `root/rel` (parents as in `mkdir_beneath`).
    fn touch_beneath(&mut self, root: &Path, rel: &Path) -> io::Result<()>;
    /// Creates a character device node with the type and numbers of the host's
    /// `source`, mode 0666.
    fn mknod_like(&mut self, source: &Path, target: &Path) -> io::Result<()>;
    /// Whether a path exists, and if so whether it is a directory.
    fn kind(&mut self, path: &Path) -> Option<bool>;
    /// symlink(2).
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;
    /// chdir(new_root); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/").
    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()>;
}

/// Applies the plan in order; the first failure stops it (the sandbox's mount
/// namespace, and so everything mounted so far, dies with the sandbox).
pub(crate) fn execute(ops: &[MountOp], sys: &mut impl MountSys) -> Result<(), MountError> {
    for op in ops {
        apply(op, sys)?;
    }
    Ok(())
}

fn apply(op: &MountOp, sys: &mut impl MountSys) -> Result<(), MountError> {
    let bind_ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    match op {
        MountOp::MakePrivate => sys
            .mount(
                None,
                Path::new("/"),
                None,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None,
            )
            .map_err(|e| MountError::new("making mounts private", e)),
        MountOp::Tmpfs {
            target,
            options,
            flags,
        } => sys
            .mount(
                Some(Path::new("tmpfs")),
                target,
                Some("tmpfs"),
                *flags,
                Some(options),
            )
            .map_err(|e| MountError::new(format!("tmpfs on {}", target.display()), e)),
        MountOp::Mkdir { path, mode, owner } => sys
            .mkdir(path, *mode, *owner)
            .map_err(|e| MountError::new(format!("mkdir {}", path.display()), e)),
        MountOp::MkdirBeneath { root, rel, owner } => sys
            .mkdir_beneath(root, rel, *owner)
            .map_err(|e| MountError::new(format!("creating /{} in the sandbox", rel.display()), e)),
        MountOp::Overlay {
            target,
            lower,
            upper,
            work,
        } => {
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            sys.mount(
                Some(Path::new("overlay")),
                target,
                Some("overlay"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(&data),
            )
            .map_err(|e| MountError::new("mounting the root overlay", e))
        }
        MountOp::Bind {
            source,
            root,
            rel,
            target,
            readonly,
            flags,
        } => {
            let what = || format!("binding {} to /{}", source.display(), rel.display());
            match sys.kind(source) {
                None => {
                    return Err(MountError::new(
                        what(),
                        io::Error::new(io::ErrorKind::NotFound, "source does not exist"),
                    ))
                }
                Some(true) => sys.mkdir_beneath(root, rel, None),
                Some(false) => sys.touch_beneath(root, rel),
            }
            .map_err(|e| MountError::new(what(), e))?;
            sys.mount(Some(source), target, None, MsFlags::MS_BIND, None)
                .map_err(|e| MountError::new(what(), e))?;
            let mut remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | *flags;
            if *readonly {
                remount |= MsFlags::MS_RDONLY;
            }
            sys.mount(None, target, None, remount, None)
                .map_err(|e| MountError::new(what(), e))
        }
        MountOp::Device { source, target } => sys
            .mknod_like(source, target)
            .map_err(|e| MountError::new(format!("creating {} in /dev", source.display()), e)),
        MountOp::Proc { target } => sys
            .mount(
                Some(Path::new("proc")),
                target,
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )
            .map_err(|e| MountError::new("mounting /proc", e)),
        MountOp::Mask { target } => {
            let res = match sys.kind(target) {
                None => return Ok(()),
                Some(true) => sys.mount(
                    Some(Path::new("tmpfs")),
                    target,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some("size=0,mode=0555"),
                ),
                Some(false) => sys.mount(
                    Some(Path::new("/dev/null")),
                    target,
                    None,
                    MsFlags::MS_BIND,
                    None,
                ),
            };
            res.map_err(|e| MountError::new(format!("masking {}", target.display()), e))
        }
        MountOp::ReadonlyIfExists { target } => {
            if sys.kind(target).is_none() {
                return Ok(());
            }
            let what = || format!("making {} read-only", target.display());
            sys.mount(
                Some(target),
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| MountError::new(what(), e))?;
            sys.mount(
                None,
                target,
                None,
                bind_ro | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )
            .map_err(|e| MountError::new(what(), e))
        }
        MountOp::Devpts { target, options } => sys
            .mount(
                Some(Path::new("devpts")),
                target,
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some(options),
            )
            .map_err(|e| MountError::new("mounting /dev/pts", e)),
        MountOp::Symlink { target, link } => sys
            .symlink(target, link)
            .map_err(|e| MountError::new(format!("symlink {}", link.display()), e)),
        MountOp::RemountReadonly { target, flags } => sys
            .mount(
                None,
                target,
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | *flags,
                None,
            )
            .map_err(|e| MountError::new(format!("remounting {} read-only", target.display()), e)),
        MountOp::PivotRoot { new_root } => sys
            .pivot_root(new_root)
            .map_err(|e| MountError::new("pivot_root into the sandbox root", e)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Records calls; `kinds` says what exists.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        kinds: BTreeMap<PathBuf, bool>,
        fail_on: Option<String>,
    }

    impl Recorder {
        fn rec(&mut self, s: String) -> io::Result<()> {
            if self.fail_on.as_deref().is_some_and(|f| s.contains(f)) {
                self.calls.push(format!("FAILED {s}"));
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            self.calls.push(s);
            Ok(())
        }
    }

    impl MountSys for Recorder {
        fn mount(
            &mut self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> io::Result<()> {
            let ro = if flags.contains(MsFlags::MS_RDONLY) {
                " ro"
            } else {
                ""
            };
            let kind = if flags.contains(MsFlags::MS_REMOUNT) {
                "remount"
            } else if flags.contains(MsFlags::MS_BIND) {
                "bind"
            } else if flags.contains(MsFlags::MS_PRIVATE) {
                "private"
            } else {
                fstype.unwrap_or("?")
            };
            let src = source
                .map(|s| format!("{} ", s.display()))
                .unwrap_or_default();
            let data = data.map(|d| format!(" [{d}]")).unwrap_or_default();
            self.rec(format!("{kind} {src}{}{ro}{data}", target.display()))
        }
        fn mkdir(&mut self, path: &Path, mode: u32, owner: (u32, u32)) -> io::Result<()> {
            self.rec(format!(
                "mkdir {} {mode:o} {}:{}",
                path.display(),
                owner.0,
                owner.1
            ))
        }
        fn mkdir_beneath(
            &mut self,
            root: &Path,
            rel: &Path,
            owner: Option<(u32, u32)>,
        ) -> io::Result<()> {
            let o = owner
                .map(|o| format!(" {}:{}", o.0, o.1))
                .unwrap_or_default();
            self.rec(format!(
                "mkdir-beneath {} {}{o}",
                root.display(),
                rel.display()
            ))
        }
        fn touch_beneath(&mut self, root: &Path, rel: &Path) -> io::Result<()> {
            self.rec(format!(
                "touch-beneath {} {}",
                root.display(),
                rel.display()
            ))
        }
        fn mknod_like(&mut self, source: &Path, target: &Path) -> io::Result<()> {
            self.rec(format!(
                "mknod {} like {}",
                target.display(),
                source.display()
            ))
        }
        fn kind(&mut self, path: &Path) -> Option<bool> {
            self.kinds.get(path).copied()
        }
        fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
            self.rec(format!(
                "symlink {} -> {}",
                link.display(),
                target.display()
            ))
        }
        fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
            self.rec(format!("pivot {}", new_root.display()))
        }
    }

    fn input<'a>(user: &'a [Bind], tmpl: &'a [Bind]) -> PlanInput<'a> {
        PlanInput {
            scratch: Path::new("/run/c/mnt"),
            lower: Path::new("/t/host"),
            layers: &[],
            template_binds: tmpl,
            user_binds: user,
            disk_bytes: 1 << 20,
            id_base: 100_000,
            workdir: None,
            workdir_owner: 1000,
            upper_dir: None,
        }
    }

    fn host_recorder() -> Recorder {
        let mut r = Recorder::default();
        r.kinds.insert("/usr".into(), true);
        r.kinds.insert("/data".into(), true);
        r.kinds.insert("/etc/hosts.host".into(), false);
        for d in DEVICES {
            r.kinds.insert(Path::new("/dev").join(d), false);
        }
        r.kinds.insert("/run/c/mnt/shm".into(), true);
        r.kinds.insert("/run/c/mnt/tmp".into(), true);
        r.kinds.insert("/run/c/mnt/root/proc/kcore".into(), false);
        r.kinds.insert("/run/c/mnt/root/proc/acpi".into(), true);
        r.kinds.insert("/run/c/mnt/root/proc/sys".into(), true);
        r
    }

    fn usr() -> Vec<Bind> {
        vec![Bind {
            source: "/usr".into(),
            target: "/usr".into(),
            writable: false,
        }]
    }

    fn pos(calls: &[String], needle: &str) -> usize {
        calls
            .iter()
            .position(|c| c.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {calls:#?}"))
    }

    #[test]
    fn root_is_built_in_a_safe_order() {
        let tmpl = usr();
        let mut r = host_recorder();
        execute(&plan(&input(&[], &tmpl)), &mut r).unwrap();
        let c = &r.calls;
        // Nothing may happen before propagation to the host is cut.
        assert_eq!(c[0], "private /");
        assert_eq!(c[1], "tmpfs tmpfs /run/c/mnt [size=1048576,mode=0755]");
        assert!(
            pos(c, "mkdir /run/c/mnt/upper/home/sandbox 755 101000:101000") < pos(c, "overlay")
        );
        assert!(c.contains(&"mkdir /run/c/mnt/upper/root 700 100000:100000".to_string()));
        assert!(c.contains(
            &"overlay overlay /run/c/mnt/root [lowerdir=/t/host,upperdir=/run/c/mnt/upper,workdir=/run/c/mnt/work]"
                .to_string()
        ));
        // /usr is bound and then made read-only.
        let b = pos(c, "bind /usr /run/c/mnt/root/usr");
        assert_eq!(c[b + 1], "remount /run/c/mnt/root/usr ro");
        // masks come after /proc is mounted; missing entries are skipped.
        let p = pos(c, "proc proc /run/c/mnt/root/proc");
        assert!(pos(c, "bind /dev/null /run/c/mnt/root/proc/kcore") > p);
        assert!(pos(c, "tmpfs tmpfs /run/c/mnt/root/proc/acpi ro") > p);
        assert!(!c.iter().any(|x| x.contains("proc/keys")));
        let sys = pos(c, "bind /run/c/mnt/root/proc/sys /run/c/mnt/root/proc/sys");
        assert_eq!(c[sys + 1], "remount /run/c/mnt/root/proc/sys ro");
        // /dev is read-only after its contents are in place.
        let dev_ro = pos(c, "remount /run/c/mnt/root/dev ro");
        assert!(pos(c, "devpts devpts /run/c/mnt/root/dev/pts") < dev_ro);
        assert!(pos(c, "bind /run/c/mnt/shm /run/c/mnt/root/dev/shm") < dev_ro);
        for d in DEVICES {
            let node = pos(c, &format!("mknod /run/c/mnt/root/dev/{d} like /dev/{d}"));
            assert!(pos(c, "tmpfs tmpfs /run/c/mnt/root/dev ") < node && node < dev_ro);
        }
        assert!(c.contains(&"devpts devpts /run/c/mnt/root/dev/pts [newinstance,ptmxmode=0666,mode=0620,gid=100005]".to_string()));
        // pivot is last.
        assert_eq!(c.last().unwrap(), "pivot /run/c/mnt/root");
        // Nothing of the host but /usr and the device nodes is bound in.
        let binds: Vec<_> = c
            .iter()
            .filter(|x| x.starts_with("bind /") && !x.contains("/run/c/mnt/"))
            .collect();
        assert!(binds.is_empty(), "{binds:?}");
    }

    #[test]
    fn user_binds_follow_template_binds_and_default_to_read_only() {
        let tmpl = usr();
        let user = vec![
            Bind {
                source: "/data".into(),
                target: "/mnt/data".into(),
                writable: false,
            },
            Bind {
                source: "/etc/hosts.host".into(),
                target: "/work/hosts".into(),
                writable: true,
            },
        ];
        let mut r = host_recorder();
        execute(&plan(&input(&user, &tmpl)), &mut r).unwrap();
        let c = &r.calls;
        let d = pos(c, "bind /data /run/c/mnt/root/mnt/data");
        assert_eq!(c[d - 1], "mkdir-beneath /run/c/mnt/root mnt/data");
        assert_eq!(c[d + 1], "remount /run/c/mnt/root/mnt/data ro");
        let h = pos(c, "bind /etc/hosts.host /run/c/mnt/root/work/hosts");
        assert_eq!(c[h - 1], "touch-beneath /run/c/mnt/root work/hosts");
        assert_eq!(c[h + 1], "remount /run/c/mnt/root/work/hosts");
        assert!(pos(c, "bind /usr") < d);
    }

    #[test]
    fn missing_bind_source_stops_the_plan() {
        let user = vec![Bind {
            source: "/nope".into(),
            target: "/x".into(),
            writable: false,
        }];
        let mut r = host_recorder();
        let err = execute(&plan(&input(&user, &[])), &mut r).unwrap_err();
        assert!(err.to_string().contains("binding /nope to /x"), "{err}");
        assert!(!r.calls.iter().any(|c| c.starts_with("pivot")));
    }

    #[test]
    fn workdir_is_created_owned_by_the_user() {
        let mut i = input(&[], &[]);
        i.workdir = Some(Path::new("/work/dir"));
        let mut r = host_recorder();
        execute(&plan(&i), &mut r).unwrap();
        assert!(r
            .calls
            .contains(&"mkdir-beneath /run/c/mnt/root work/dir 101000:101000".to_string()));
    }

    #[test]
    fn a_failure_stops_before_pivot() {
        let mut r = host_recorder();
        r.fail_on = Some("devpts".into());
        let err = execute(&plan(&input(&[], &usr())), &mut r).unwrap_err();
        assert!(err.to_string().contains("/dev/pts"), "{err}");
        assert!(r.calls.last().unwrap().starts_with("FAILED devpts"));
    }

    #[test]
    fn snapshot_layers_stack_above_the_template() {
        let layers = [PathBuf::from("/snap/2"), PathBuf::from("/snap/1")];
        let mut i = input(&[], &[]);
        i.layers = &layers;
        let mut r = host_recorder();
        execute(&plan(&i), &mut r).unwrap();
        assert!(r.calls.contains(
            &"overlay overlay /run/c/mnt/root [lowerdir=/snap/2:/snap/1:/t/host,upperdir=/run/c/mnt/upper,workdir=/run/c/mnt/work]"
                .to_string()
        ));
    }

    #[test]
    fn a_kept_writable_layer_lives_in_the_given_directory() {
        let mut i = input(&[], &[]);
        i.upper_dir = Some(Path::new("/store/tmp/b1"));
        let mut r = host_recorder();
        execute(&plan(&i), &mut r).unwrap();
        let c = &r.calls;
        assert!(c.contains(
            &"overlay overlay /run/c/mnt/root [lowerdir=/t/host,upperdir=/store/tmp/b1/upper,workdir=/store/tmp/b1/work]"
                .to_string()
        ));
        assert!(c.contains(&"mkdir /store/tmp/b1/upper/home/sandbox 755 101000:101000".to_string()));
        // /tmp and /dev/shm stay on the capped scratch tmpfs.
        assert!(c.contains(&"mkdir /run/c/mnt/tmp 1777 100000:100000".to_string()));
    }
}

//! What a one-shot run ([`crate::run`]) and a session ([`crate::start_session`]) share
//! on corral's side: validating the sandbox's shape, probing the kernel, the mount
//! plan, the cgroup, the clone into new namespaces and the id maps.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::cgroup::{Cgroup, CgroupError, CgroupLayout, RealCgroupFs};
use crate::child::{self, ChildCtx};
use crate::landlock_layer;
use crate::mounts::{self, MountOp, PlanInput};
use crate::run::{validate_sandbox_path, RunError};
use crate::spec::{Bind, Layer, Limits, RootfsSpec, SandboxSpec, SessionSpec, ID_MAP_LEN};

/// The parts of a spec that describe the sandbox itself (not what runs in it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoxView<'a> {
    pub rootfs: &'a RootfsSpec,
    pub mounts: &'a [Bind],
    pub limits: &'a Limits,
    pub skip_layers: &'a [Layer],
    pub runtime_dir: &'a Path,
    pub cgroup_parent: &'a str,
    pub id_map_base: u32,
    /// Where the writable layer is kept (one-shot runs only; see SandboxSpec).
    pub upper_dir: Option<&'a Path>,
    /// A network namespace file to join instead of a new namespace.
    pub netns: Option<&'a Path>,
}

impl BoxView<'_> {
    pub(crate) fn skips(&self, layer: Layer) -> bool {
        self.skip_layers.contains(&layer)
    }
}

impl SandboxSpec {
    pub(crate) fn view(&self) -> BoxView<'_> {
        BoxView {
            rootfs: &self.rootfs,
            mounts: &self.mounts,
            limits: &self.limits,
            skip_layers: &self.skip_layers,
            runtime_dir: &self.runtime_dir,
            cgroup_parent: &self.cgroup_parent,
            id_map_base: self.id_map_base,
            upper_dir: self.upper_dir.as_deref(),
            netns: self.netns.as_deref(),
        }
    }
}

impl SessionSpec {
    pub(crate) fn view(&self) -> BoxView<'_> {
        BoxView {
            rootfs: &self.rootfs,
            mounts: &self.mounts,
            limits: &self.limits,
            skip_layers: &self.skip_layers,
            runtime_dir: &self.runtime_dir,
            cgroup_parent: &self.cgroup_parent,
            id_map_base: self.id_map_base,
            upper_dir: None,
            netns: self.netns.as_deref(),
        }
    }
}

/// Checks mounts, layers, limits and the id range.
pub(crate) fn validate_box(spec: &BoxView<'_>) -> Result<(), RunError> {
    for m in spec.mounts {
        validate_sandbox_path(&m.target, "mount target")?;
        let top = m.target.components().nth(1);
        let reserved = ["proc", "dev", "sys", "usr"];
        match top {
            None => {
                return Err(RunError::InvalidSpec(
                    "a mount cannot replace the sandbox root /; mount below it, e.g. /work".into(),
                ))
            }
            Some(Component::Normal(n)) if reserved.iter().any(|r| n == *r) => {
                return Err(RunError::InvalidSpec(format!(
                    "mount target {} is inside /{}, which corral manages; choose another path such as /mnt/...",
                    m.target.display(),
                    n.to_string_lossy()
                )))
            }
            _ => {}
        }
        if !m.source.is_absolute() || !m.source.exists() {
            return Err(RunError::InvalidSpec(format!(
                "mount source {} does not exist on the host; give an existing absolute path",
                m.source.display()
            )));
        }
    }
    for layer in &spec.rootfs.layers {
        let text = layer.to_string_lossy();
        if !layer.is_absolute() || text.contains([':', ',', '\\']) || !layer.is_dir() {
            return Err(RunError::InvalidSpec(format!(
                "overlay layer {} must be an existing absolute directory without ':' ',' or '\\'",
                layer.display()
            )));
        }
    }
    if spec.limits.memory_bytes < (4 << 20) {
        return Err(RunError::InvalidSpec(
            "--memory must be at least 4M for a process to start".into(),
        ));
    }
    if spec.limits.disk_bytes < (1 << 20) {
        return Err(RunError::InvalidSpec("--disk must be at least 1M".into()));
    }
    if spec.limits.cpu_millis < 10 {
        return Err(RunError::InvalidSpec("--cpus must be at least 0.01".into()));
    }
    if spec.limits.pids < 2 {
        return Err(RunError::InvalidSpec(
            "--pids must be at least 2 (init and the command)".into(),
        ));
    }
    if let Some(d) = spec.upper_dir {
        let text = d.to_string_lossy();
        if !d.is_absolute() || text.contains([':', ',', '\\']) || !d.is_dir() {
            return Err(RunError::InvalidSpec(format!(
                "the writable layer's directory {} must be an existing absolute directory without ':' ',' or '\\'",
                d.display()
            )));
        }
    }
    if let Some(ns) = spec.netns {
        if !ns.is_absolute() || !ns.exists() {
            return Err(RunError::InvalidSpec(format!(
                "network namespace {} does not exist; give the absolute path of a namespace file",
                ns.display()
            )));
        }
    }
    let base = spec.id_map_base as u64;
    if base == 0 || base + ID_MAP_LEN as u64 > u32::MAX as u64 {
        return Err(RunError::InvalidSpec(
            "the uid map base must be above 0 and leave room for 65536 ids".into(),
        ));
    }
    Ok(())
}

/// Checks that the kernel has the Landlock and seccomp layers the spec needs (the
/// cgroup hierarchy is found in `make_cgroup`) and returns the Landlock ABI.
pub(crate) fn probe(spec: &BoxView<'_>) -> Result<i32, RunError> {
    let skip = |l| spec.skips(l);
    let landlock_abi = landlock_layer::kernel_abi();
    if landlock_abi < 1 && !skip(Layer::Landlock) {
        return Err(RunError::LayerMissing {
            layer: Layer::Landlock,
            what: "Landlock (needs Linux >= 5.13 with landlock in the lsm= list)".into(),
        });
    }
    if landlock_abi < 6 && !skip(Layer::Landlock) && !skip(Layer::LandlockScopes) {
        return Err(RunError::LayerMissing {
            layer: Layer::LandlockScopes,
            what: format!("Landlock scoping (needs Landlock ABI 6, kernel has ABI {landlock_abi})"),
        });
    }
    if !skip(Layer::Seccomp) {
        // SAFETY: PR_GET_SECCOMP takes no pointer arguments.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
        if rc < 0 {
            return Err(RunError::LayerMissing {
                layer: Layer::Seccomp,
                what: "seccomp filtering (CONFIG_SECCOMP_FILTER)".into(),
            });
        }
    }
    Ok(landlock_abi)
}

/// Refuses to fork from a multi-threaded process (the child would inherit locks held by
/// threads that do not exist in it).
pub(crate) fn ensure_single_threaded() -> Result<(), RunError> {
    let stat = crate::procfs::read_small("/proc/self/stat").map_err(|source| RunError::Io {
        what: "reading /proc/self/stat".into(),
        source,
    })?;
    // Field 20 (num_threads), counted after the ")" that ends the command name.
    let threads = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17))
        .and_then(|n| n.parse::<u32>().ok());
    match threads {
        Some(1) => Ok(()),
        _ => Err(RunError::InvalidSpec(
            "corral_isolate::run and start_session must be called from a single-threaded process"
                .into(),
        )),
    }
}

/// Creates the sandbox's cgroup with its limits (None when the layer is skipped). Done
/// before clone: after it, every allocation here would be a copy-on-write fault.
pub(crate) fn make_cgroup(
    spec: &BoxView<'_>,
    name: &str,
    pausable: bool,
) -> Result<Option<(Cgroup<RealCgroupFs>, CgroupLayout)>, RunError> {
    if spec.skips(Layer::Cgroups) {
        return Ok(None);
    }
    let layout = CgroupLayout::detect().map_err(|e| RunError::LayerMissing {
        layer: Layer::Cgroups,
        what: match e {
            CgroupError::Unavailable(reason) => format!(
                "a usable cgroup hierarchy ({reason}; mount cgroup2 at /sys/fs/cgroup, \
                 or the v1 memory, cpu and pids controllers)"
            ),
            other => format!(
                "a readable cgroup hierarchy ({})",
                crate::error_chain(&other)
            ),
        },
    })?;
    // The v1 freezer (pause) only for sandboxes that can be paused (sessions).
    let layout = if pausable {
        layout
    } else {
        layout.without_freezer()
    };
    let cg = Cgroup::create(
        RealCgroupFs,
        layout.clone(),
        spec.cgroup_parent,
        name,
        spec.limits,
    )?;
    Ok(Some((cg, layout)))
}

/// Opens the network namespace file the sandbox joins (close-on-exec; the child
/// closes its copy right after `setns`).
pub(crate) fn open_netns(spec: &BoxView<'_>) -> Result<Option<std::os::fd::OwnedFd>, RunError> {
    let Some(path) = spec.netns else {
        return Ok(None);
    };
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(Some)
    .map_err(|e| RunError::Io {
        what: format!("opening the network namespace {}", path.display()),
        source: io::Error::from_raw_os_error(e as i32),
    })
}

/// Clones the sandbox's init into new pid, mount, ipc, uts and (unless it joins one
/// given by the caller) net namespaces.
pub(crate) fn clone_sandbox(ctx: ChildCtx) -> Result<i32, RunError> {
    let mut flags =
        libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if ctx.netns.is_none() {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: clone without CLONE_VM and with a null stack behaves like fork: the child
    // gets a copy of this (single-threaded, checked above) process and continues on its
    // own copy of the stack. The child never returns from sandbox_main.
    #[allow(unsafe_code)]
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        0 => child::sandbox_main(ctx),
        p if p < 0 => Err(RunError::Io {
            what: "creating the sandbox namespaces (clone)".into(),
            source: io::Error::last_os_error(),
        }),
        p => Ok(p as i32),
    }
}

/// Writes the sandbox's uid and gid maps (0..65536 inside -> id_map_base.. outside).
pub(crate) fn write_maps(pid: i32, id_map_base: u32) -> Result<(), RunError> {
    let map = format!("0 {id_map_base} {ID_MAP_LEN}\n");
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &map).map_err(|source| RunError::Io {
            what: format!("writing {path}"),
            source,
        })?;
    }
    Ok(())
}

/// The scratch mount point and the mount plan.
pub(crate) fn mount_plan(
    spec: &BoxView<'_>,
    workdir: Option<&Path>,
    workdir_owner: u32,
) -> Result<(PathBuf, Vec<MountOp>), RunError> {
    // The scratch mount point: a directory on the host that is only ever mounted on
    // inside sandboxes' private mount namespaces, so it never holds anything.
    let scratch = spec.runtime_dir.join("mnt");
    std::fs::create_dir_all(&scratch).map_err(|source| RunError::Io {
        what: format!("creating corral's runtime directory {}", scratch.display()),
        source,
    })?;
    let plan = mounts::plan(&PlanInput {
        scratch: &scratch,
        lower: &spec.rootfs.lower,
        layers: &spec.rootfs.layers,
        template_binds: &spec.rootfs.ro_binds,
        user_binds: spec.mounts,
        disk_bytes: spec.limits.disk_bytes,
        id_base: spec.id_map_base,
        upper_dir: spec.upper_dir,
        workdir,
        workdir_owner,
    });
    Ok((scratch, plan))
}

/// Landlock's (ABI, scoped) for the child, None when the layer is skipped.
pub(crate) fn landlock_params(spec: &BoxView<'_>, abi: i32) -> Option<(i32, bool)> {
    (!spec.skips(Layer::Landlock)).then(|| (abi, abi >= 6 && !spec.skips(Layer::LandlockScopes)))
}

/// Paths the sandbox's processes may write to (see landlock_layer::writable_paths).
pub(crate) fn writable(spec: &BoxView<'_>, workdir: Option<&Path>) -> Vec<PathBuf> {
    // A build step (its writable layer kept as the step's output) may change any file
    // of its root, /usr included, as a package install does; read-only mounts (/proc
    // entries, /sys, /dev, the host template's /usr) stay read-only.
    if spec.upper_dir.is_some() {
        return vec![PathBuf::from("/")];
    }
    let layers: Vec<&Path> = spec
        .rootfs
        .layers
        .iter()
        .map(PathBuf::as_path)
        .chain(std::iter::once(spec.rootfs.lower.as_path()))
        .collect();
    landlock_layer::writable_paths(
        &layers,
        spec.mounts
            .iter()
            .map(|m| m.target.clone())
            .chain(workdir.map(Path::to_path_buf)),
        &spec
            .mounts
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.target.clone())
            .collect::<Vec<_>>(),
    )
}

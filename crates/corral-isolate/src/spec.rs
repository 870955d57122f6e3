//! What a sandbox is made of: the description the caller hands to [`crate::run`].

use std::path::PathBuf;
use std::time::Duration;

/// Which identity the command runs as inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxUser {
    /// uid/gid 1000 ("sandbox"): no capabilities at all (CapEff 0).
    Sandbox,
    /// uid 0 inside the sandbox's user namespace only; a reduced capability set that
    /// means nothing outside the sandbox (host uid is an unprivileged mapped id).
    Root,
}

impl SandboxUser {
    /// The uid (and gid) inside the sandbox.
    pub fn id(self) -> u32 {
        match self {
            SandboxUser::Sandbox => SANDBOX_UID,
            SandboxUser::Root => 0,
        }
    }

    /// The home directory inside the sandbox.
    pub fn home(self) -> &'static str {
        match self {
            SandboxUser::Sandbox => "/home/sandbox",
            SandboxUser::Root => "/root",
        }
    }

    /// The login name inside the sandbox.
    pub fn name(self) -> &'static str {
        match self {
            SandboxUser::Sandbox => "sandbox",
            SandboxUser::Root => "root",
        }
    }
}

/// uid and gid of the unprivileged sandbox user.
pub const SANDBOX_UID: u32 = 1000;
/// Number of ids mapped into a sandbox's user namespace (0..65536).
pub const ID_MAP_LEN: u32 = 65536;

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute path on the host; must exist.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// Read-write when true; read-only otherwise (the default for user mounts).
    pub writable: bool,
}

/// The root filesystem: a read-only template directory under an overlay, plus read-only
/// host directories the template asks for (the `host` template binds /usr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    /// The template's root directory (overlay lower layer, never written).
    pub lower: PathBuf,
    /// Host directories bound read-only into the root (e.g. /usr for `host`).
    pub ro_binds: Vec<Bind>,
    /// Extra read-only overlay layers stacked above `lower`, topmost first (snapshots);
    /// empty for a plain template.
    pub layers: Vec<PathBuf>,
}

/// Resource limits, enforced by cgroups and rlimits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes (no swap).
    pub memory_bytes: u64,
    /// CPU quota in thousandths of a CPU (1000 = one full CPU).
    pub cpu_millis: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids: u64,
    /// Size cap of the writable layer (root overlay upper, /tmp, /dev/shm), bytes.
    pub disk_bytes: u64,
    /// Wall-clock limit of the command.
    pub timeout: Duration,
    /// RLIMIT_NOFILE (soft and hard).
    pub nofile: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            cpu_millis: 1000,
            pids: 256,
            disk_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
            nofile: 1024,
        }
    }
}

/// Isolation layers the kernel may lack. Each is required unless the caller explicitly
/// skips it (spelled `--dangerously-skip-layer` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// Landlock filesystem rules (kernel >= 5.13).
    Landlock,
    /// Landlock abstract-unix-socket and signal scoping (Landlock ABI >= 6).
    LandlockScopes,
    /// The seccomp-bpf syscall allowlist.
    Seccomp,
    /// cgroup resource limits (memory, cpu, pids).
    Cgroups,
}

impl Layer {
    /// Every layer, in the order they are probed.
    pub const ALL: [Layer; 4] = [
        Layer::Landlock,
        Layer::LandlockScopes,
        Layer::Seccomp,
        Layer::Cgroups,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Landlock => "landlock",
            Layer::LandlockScopes => "landlock-scopes",
            Layer::Seccomp => "seccomp",
            Layer::Cgroups => "cgroups",
        }
    }

    /// Parses a command-line layer name.
    pub fn from_name(name: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// Where the command's standard input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// /dev/null inside the sandbox.
    Null,
    /// The caller's standard input, copied through a pipe (never the caller's fd itself).
    Forward,
}

/// What happens to the command's stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Kept in memory (up to the limit) and returned in the outcome.
    Capture,
    /// Copied to the caller's stdout/stderr as it arrives (up to the limit).
    Passthrough,
}

/// Everything needed to run one command in a fresh sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The command and its arguments; argv[0] is looked up in the sandbox's PATH.
    pub argv: Vec<String>,
    /// The complete environment of the command (nothing of the caller's leaks in);
    /// defaults (PATH, HOME, ...) are added by [`crate::run`] for names not set here.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox (default: the user's home).
    pub workdir: Option<PathBuf>,
    /// The identity inside.
    pub user: SandboxUser,
    /// Root filesystem.
    pub rootfs: RootfsSpec,
    /// User-requested binds.
    pub mounts: Vec<Bind>,
    /// Resource limits.
    pub limits: Limits,
    /// Standard input.
    pub stdin: StdinMode,
    /// Output handling.
    pub output: OutputMode,
    /// Per-stream output cap in bytes; the rest is drained and dropped.
    pub output_limit: u64,
    /// Hostname inside the sandbox.
    pub hostname: String,
    /// Layers the caller explicitly allows to be missing.
    pub skip_layers: Vec<Layer>,
    /// corral's runtime directory on the host (holds a mount point that is only ever
    /// mounted inside sandboxes' own mount namespaces).
    pub runtime_dir: PathBuf,
    /// corral's parent cgroup (per controller on v1); empty: sandbox cgroups go directly
    /// at the hierarchies' roots, so nothing of corral's remains after a run.
    pub cgroup_parent: String,
    /// First host uid/gid of the range mapped into the sandbox.
    pub id_map_base: u32,
    /// Keep the writable layer: None (the default) puts the overlay's upper and work
    /// dirs on the scratch tmpfs, gone with the sandbox. `Some(DIR)` puts them in
    /// `DIR/upper` and `DIR/work` on the host instead (DIR must be an existing, empty
    /// directory, on one file system, that only the caller writes), so the upper dir,
    /// overlayfs whiteouts and opaque markers included, survives the run: template
    /// builds turn it into a layer. The disk cap then bounds /tmp, /dev/shm and each
    /// file (RLIMIT_FSIZE), not the layer's total size, and Landlock lets the command
    /// write anywhere in its root (a package install writes /usr; read-only mounts
    /// stay read-only).
    pub upper_dir: Option<PathBuf>,
    /// A network namespace file (e.g. /run/netns/NAME) the sandbox joins instead of
    /// getting a new, loopback-only one. It stays owned by the host's user namespace,
    /// so nothing inside can change its addresses, routes or firewall.
    pub netns: Option<PathBuf>,
}

impl SandboxSpec {
    /// Whether the caller turned `layer` off.
    pub fn skips(&self, layer: Layer) -> bool {
        self.skip_layers.contains(&layer)
    }
}

/// A long-lived sandbox whose init serves the ctl protocol instead of running one
/// command (see [`crate::start_session`]).
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Root filesystem.
    pub rootfs: RootfsSpec,
    /// User-requested binds.
    pub mounts: Vec<Bind>,
    /// Resource limits (`timeout` is ignored: see `deadline_unix_ms`).
    pub limits: Limits,
    /// Hostname inside the sandbox.
    pub hostname: String,
    /// Layers the caller explicitly allows to be missing.
    pub skip_layers: Vec<Layer>,
    /// corral's runtime directory on the host (see [`SandboxSpec::runtime_dir`]).
    pub runtime_dir: PathBuf,
    /// Parent cgroup; empty: the sandbox's cgroup sits at the hierarchies' roots.
    pub cgroup_parent: String,
    /// The sandbox's cgroup name, chosen by the caller (e.g. the sandbox id): the
    /// cgroup is `cgroup_parent/cgroup_name`, or `cgroup_name` at the root.
    pub cgroup_name: String,
    /// First host uid/gid of the range mapped into the sandbox.
    pub id_map_base: u32,
    /// When init kills everything and exits (ms since the Unix epoch, CLOCK_REALTIME);
    /// None: no deadline until a `set_deadline` request sets one.
    pub deadline_unix_ms: Option<u64>,
    /// A network namespace file to join (see [`SandboxSpec::netns`]); None: a new
    /// namespace with loopback only.
    pub netns: Option<PathBuf>,
}

impl SessionSpec {
    /// Whether the caller turned `layer` off.
    pub fn skips(&self, layer: Layer) -> bool {
        self.skip_layers.contains(&layer)
    }
}

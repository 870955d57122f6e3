//! cgroup limits and accounting, on pure cgroup v2 and on v1/hybrid hierarchies.
//!
//! All file system access goes through [`CgroupFs`] so the layout and the order of
//! writes are unit-tested with a recording fake; [`RealCgroupFs`] is the kernel.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::Limits;

/// CFS period used for the cpu quota, microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// Failures creating, configuring, reading or removing a sandbox cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup hierarchy was found.
    #[error(
        "no usable cgroup hierarchy ({0}); mount cgroup2 at /sys/fs/cgroup, or the v1 \
         memory, cpu and pids controllers"
    )]
    Unavailable(String),
    /// The sandbox's processes did not freeze in time (they were thawed again).
    #[error("the processes of cgroup {0} did not freeze within 2 s; try again")]
    FreezeTimeout(PathBuf),
    /// The cgroup does not exist.
    #[error("cgroup {0} does not exist")]
    NotFound(PathBuf),
    /// A cgroup file operation failed.
    #[error(
        "cgroup {op} {path} failed; is corral running as root with cgroups mounted read-write?"
    )]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

/// The file operations cgroup management needs: the seam in front of the kernel.
pub trait CgroupFs {
    /// Creates a directory (a cgroup). An existing one is not an error.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// Removes a cgroup directory.
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    /// Writes a control file.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Reads a control file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Names of the sub-directories of a directory.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>>;
}

/// The real cgroup file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealCgroupFs;

impl CgroupFs for RealCgroupFs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        match std::fs::create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        std::fs::write(path, value)
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        // Control files are seq_files like /proc's: one large read.
        crate::procfs::read_small(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }
}

/// The v1 controllers corral uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// memory limit, peak usage, OOM kill counter.
    Memory,
    /// CFS quota.
    Cpu,
    /// Task count limit.
    Pids,
    /// Freezing (pause); optional: without it only pause is unavailable.
    Freezer,
}

impl Controller {
    /// No cpuacct on v1: CPU time comes from the rusage of the sandbox's init, which
    /// kills and reaps every process of the sandbox before it exits, so one hierarchy
    /// fewer is created, joined and removed per run.
    const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }
}

/// Where the hierarchies are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Pure cgroup v2: one tree.
    V2 {
        /// Mount point of cgroup2 (normally /sys/fs/cgroup).
        root: PathBuf,
    },
    /// cgroup v1 (legacy or hybrid): one tree per controller; co-mounted controllers
    /// (e.g. "cpu,cpuacct") share a path.
    V1 {
        /// Mount point of each controller.
        mounts: BTreeMap<Controller, PathBuf>,
    },
}

impl CgroupLayout {
    /// Finds the hierarchy from /proc/self/mountinfo. v2 is chosen when cgroup2 is
    /// mounted at /sys/fs/cgroup itself; otherwise every v1 controller must be mounted.
    pub fn detect() -> Result<CgroupLayout, CgroupError> {
        if let Some(layout) = Self::standard() {
            return Ok(layout);
        }
        let mountinfo =
            crate::procfs::read("/proc/self/mountinfo").map_err(|source| CgroupError::Io {
                op: "read",
                path: PathBuf::from("/proc/self/mountinfo"),
                source,
            })?;
        Self::from_mountinfo(&mountinfo)
    }

    /// The usual places, found with a few stats instead of parsing mountinfo (this runs
    /// on every sandbox start): cgroup2 at /sys/fs/cgroup, or each v1 controller at
    /// /sys/fs/cgroup/<name> (co-mounted ones are reached through their symlinks). The
    /// control files prove a cgroup file system is mounted there.
    fn standard() -> Option<CgroupLayout> {
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() && root.join("cgroup.subtree_control").exists()
        {
            return Some(CgroupLayout::V2 {
                root: root.to_path_buf(),
            });
        }
        let mut mounts = BTreeMap::new();
        for c in Controller::ALL {
            // A v1 hierarchy's root holds cgroup.procs (pids.max and friends exist only
            // below the root).
            let dir = root.join(c.name());
            if !dir.join("cgroup.procs").exists() {
                return None;
            }
            mounts.insert(c, dir);
        }
        let freezer = root.join("freezer");
        if freezer.join("cgroup.procs").exists() {
            mounts.insert(Controller::Freezer, freezer);
        }
        Some(CgroupLayout::V1 { mounts })
    }

    /// Parses mountinfo text (split out for tests).
    pub fn from_mountinfo(mountinfo: &str) -> Result<CgroupLayout, CgroupError> {
        let mut v2_root = None;
        let mut mounts = BTreeMap::new();
        for line in mountinfo.lines() {
            // "36 25 0:31 / /sys/fs/cgroup/memory rw,relatime shared:.. - cgroup cgroup rw,memory"
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or_default();
            let super_opts = right.nth(1).unwrap_or_default();
            match fstype {
                "cgroup2" if mount_point == "/sys/fs/cgroup" => {
                    v2_root = Some(PathBuf::from(mount_point));
                }
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if let Some(c) = Controller::ALL
                            .into_iter()
                            .chain([Controller::Freezer])
                            .find(|c| c.name() == opt)
                        {
                            mounts.insert(c, PathBuf::from(mount_point));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(root) = v2_root {
            return Ok(CgroupLayout::V2 { root });
        }
        let missing: Vec<&str> = Controller::ALL
            .into_iter()
            .filter(|c| !mounts.contains_key(c))
            .map(Controller::name)
            .collect();
        if missing.is_empty() {
            Ok(CgroupLayout::V1 { mounts })
        } else {
            Err(CgroupError::Unavailable(format!(
                "cgroup2 is not mounted at /sys/fs/cgroup and the v1 controllers {} are missing",
                missing.join(", ")
            )))
        }
    }

    /// This layout without the v1 freezer hierarchy: a one-shot run is never paused,
    /// so it is not created, joined and removed for nothing.
    pub(crate) fn without_freezer(mut self) -> CgroupLayout {
        if let CgroupLayout::V1 { mounts } = &mut self {
            mounts.remove(&Controller::Freezer);
        }
        self
    }

    /// The distinct directories a cgroup named `rel` occupies (one per v1 hierarchy); an
    /// empty `rel` is the hierarchies' roots.
    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        let at = |m: &Path| {
            if rel.as_os_str().is_empty() {
                m.to_path_buf()
            } else {
                m.join(rel)
            }
        };
        match self {
            CgroupLayout::V2 { root } => vec![at(root)],
            CgroupLayout::V1 { mounts } => {
                let mut dirs: Vec<PathBuf> = mounts.values().map(|m| at(m)).collect();
                dirs.sort();
                dirs.dedup();
                dirs
            }
        }
    }

    fn file(&self, controller: Controller, rel: &Path, name: &str) -> PathBuf {
        match self {
            CgroupLayout::V2 { root } => root.join(rel).join(name),
            CgroupLayout::V1 { mounts } => mounts
                .get(&controller)
                .map(|m| m.join(rel).join(name))
                .unwrap_or_default(),
        }
    }
}

/// What a cgroup measured over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Highest memory use seen, bytes (None where the kernel does not report it).
    pub peak_memory_bytes: Option<u64>,
    /// CPU time used by every task, user + system (v2; None on v1, where the caller
    /// takes it from the rusage of the sandbox's init).
    pub cpu_time: Option<Duration>,
    /// How many tasks the memory limit's OOM killer killed.
    pub oom_kills: u64,
}

/// One sandbox's cgroup (a directory per v1 hierarchy, or one v2 directory). Removed by
/// [`Cgroup::destroy`], or on drop as a last resort.
#[derive(Debug)]
pub struct Cgroup<F: CgroupFs> {
    fs: F,
    layout: CgroupLayout,
    rel: PathBuf,
    created: Vec<PathBuf>,
    destroyed: bool,
}

impl<F: CgroupFs> Cgroup<F> {
    /// Creates `parent/name` (`name` at the hierarchies' roots when `parent` is empty)
    /// and applies the limits. On any failure everything created so far is removed
    /// again.
    pub fn create(
        fs: F,
        layout: CgroupLayout,
        parent: &str,
        name: &str,
        limits: &Limits,
    ) -> Result<Cgroup<F>, CgroupError> {
        let rel = Path::new(parent).join(name);
        let mut cg = Cgroup {
            fs,
            layout,
            rel,
            created: Vec::new(),
            destroyed: false,
        };
        // The parent normally exists (made by an earlier run): create the sandbox's own
        // cgroup directly and prepare the parent only when that fails with ENOENT (v2
        // always checks that the parent delegates its controllers).
        if matches!(cg.layout, CgroupLayout::V2 { .. }) {
            cg.prepare_parent(Path::new(parent))?;
        }
        for dir in cg.layout.dirs(&cg.rel) {
            let mut made = cg.fs.mkdir(&dir);
            if matches!(&made, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                cg.prepare_parent(Path::new(parent))?;
                made = cg.fs.mkdir(&dir);
            }
            made.map_err(|source| CgroupError::Io {
                op: "mkdir",
                path: dir.clone(),
                source,
            })?;
            cg.created.push(dir);
        }
        cg.apply_limits(limits)?;
        Ok(cg)
    }

    /// Makes sure the parent exists (a hierarchy's root always does); on v2 also that
    /// it, and the root above it, delegate the controllers.
    fn prepare_parent(&mut self, parent: &Path) -> Result<(), CgroupError> {
        let at_root = parent.as_os_str().is_empty();
        for dir in self.layout.dirs(parent).into_iter().filter(|_| !at_root) {
            self.fs.mkdir(&dir).map_err(|source| CgroupError::Io {
                op: "mkdir",
                path: dir.clone(),
                source,
            })?;
        }
        if let CgroupLayout::V2 { root } = &self.layout {
            // Controllers must be enabled top-down: in the root for the parent, and in
            // the parent for the sandbox cgroups below it.
            let below = (!at_root).then(|| root.join(parent));
            for dir in std::iter::once(root.clone()).chain(below) {
                let file = dir.join("cgroup.subtree_control");
                let enabled = self.fs.read(&file).unwrap_or_default();
                let missing: Vec<&str> = ["+memory", "+cpu", "+pids"]
                    .into_iter()
                    .filter(|c| !enabled.split_whitespace().any(|e| e == &c[1..]))
                    .collect();
                if !missing.is_empty() {
                    self.write(&file, &missing.join(" "))?;
                }
            }
        }
        Ok(())
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), CgroupError> {
        self.fs
            .write(path, value)
            .map_err(|source| CgroupError::Io {
                op: "write",
                path: path.to_path_buf(),
                source,
            })
    }

    /// Writes a control file the kernel may not have (a feature not compiled in or
    /// turned off). Returns whether it was there.
    fn write_optional(&self, path: &Path, value: &str) -> Result<bool, CgroupError> {
        match self.fs.write(path, value) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CgroupError::Io {
                op: "write",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn apply_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let quota = limits.cpu_millis * CPU_PERIOD_US / 1000;
        match &self.layout {
            CgroupLayout::V2 { .. } => {
                let f = |n| self.layout.file(Controller::Memory, &self.rel, n);
                self.write(&f("memory.max"), &limits.memory_bytes.to_string())?;
                // No swap: a sandbox that hits its limit is OOM-killed, not slowed
                // (absent without swap accounting).
                self.write_optional(&f("memory.swap.max"), "0")?;
                self.write(&f("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                self.write(&f("pids.max"), &limits.pids.to_string())?;
            }
            CgroupLayout::V1 { .. } => {
                let mem = |n| self.layout.file(Controller::Memory, &self.rel, n);
                self.write(
                    &mem("memory.limit_in_bytes"),
                    &limits.memory_bytes.to_string(),
                )?;
                // No swap: with swap accounting, memsw caps memory+swap at the memory
                // limit; without it, swappiness 0 keeps the sandbox out of swap.
                let memsw = mem("memory.memsw.limit_in_bytes");
                if !self.write_optional(&memsw, &limits.memory_bytes.to_string())? {
                    self.write_optional(&mem("memory.swappiness"), "0")?;
                }
                let cpu = |n| self.layout.file(Controller::Cpu, &self.rel, n);
                // A new cgroup's period is the kernel default, CPU_PERIOD_US (100 ms).
                self.write(&cpu("cpu.cfs_quota_us"), &quota.to_string())?;
                let pids = self.layout.file(Controller::Pids, &self.rel, "pids.max");
                self.write(&pids, &limits.pids.to_string())?;
            }
        }
        Ok(())
    }

    /// A handle on an existing cgroup `parent/name` (e.g. a session's, after a daemon
    /// restart). Dropping it leaves the cgroup alone; [`Cgroup::destroy`] removes it.
    pub fn open_with(
        fs: F,
        layout: CgroupLayout,
        parent: &str,
        name: &str,
    ) -> Result<Cgroup<F>, CgroupError> {
        let rel = Path::new(parent).join(name);
        let created: Vec<PathBuf> = layout
            .dirs(&rel)
            .into_iter()
            .filter(|d| fs.exists(d))
            .collect();
        if created.is_empty() {
            return Err(CgroupError::NotFound(rel));
        }
        Ok(Cgroup {
            fs,
            layout,
            rel,
            created,
            destroyed: true,
        })
    }

    /// Changes the memory, cpu and pids limits (e.g. of a warm sandbox handed out with
    /// other resources). Lowering memory below current use fails on v1 (EBUSY).
    pub fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.apply_limits(limits)
    }

    /// Freezes every process of the cgroup and waits (up to 2 s) until the kernel
    /// reports them frozen; on timeout they are thawed again and an error returned.
    /// v1 needs the freezer controller; without it this fails (pause unavailable).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    /// Thaws a frozen cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let v2 = matches!(self.layout, CgroupLayout::V2 { .. });
        let (file, value, done_file) = if v2 {
            let f = |n| self.layout.file(Controller::Cpu, &self.rel, n);
            let value = if frozen { "1" } else { "0" };
            (f("cgroup.freeze"), value, f("cgroup.events"))
        } else {
            if let CgroupLayout::V1 { mounts } = &self.layout {
                if !mounts.contains_key(&Controller::Freezer) {
                    return Err(CgroupError::Unavailable(
                        "the v1 freezer controller is not mounted, so sandboxes cannot be paused"
                            .into(),
                    ));
                }
            }
            let f = self
                .layout
                .file(Controller::Freezer, &self.rel, "freezer.state");
            let value = if frozen { "FROZEN" } else { "THAWED" };
            (f.clone(), value, f)
        };
        let done = |state: &str| {
            if v2 {
                keyed(state, "frozen") == Some(u64::from(frozen))
            } else {
                state.trim() == value
            }
        };
        self.write(&file, value)?;
        for _ in 0..200 {
            let state = self.fs.read(&done_file).map_err(|source| CgroupError::Io {
                op: "read",
                path: done_file.clone(),
                source,
            })?;
            if done(&state) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if frozen {
            let _ = self.set_frozen(false);
            return Err(CgroupError::FreezeTimeout(self.rel.clone()));
        }
        Ok(())
    }

    /// Moves a process into the cgroup (every hierarchy).
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.layout.dirs(&self.rel) {
            self.write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Reads peak memory, CPU time and the OOM kill count.
    pub fn stats(&self) -> CgroupStats {
        let read = |c, n| self.fs.read(&self.layout.file(c, &self.rel, n)).ok();
        match &self.layout {
            CgroupLayout::V2 { .. } => CgroupStats {
                peak_memory_bytes: read(Controller::Memory, "memory.peak")
                    .and_then(|s| s.trim().parse().ok()),
                cpu_time: read(Controller::Cpu, "cpu.stat")
                    .and_then(|s| keyed(&s, "usage_usec"))
                    .map(Duration::from_micros),
                oom_kills: read(Controller::Memory, "memory.events")
                    .and_then(|s| keyed(&s, "oom_kill"))
                    .unwrap_or(0),
            },
            CgroupLayout::V1 { .. } => CgroupStats {
                peak_memory_bytes: read(Controller::Memory, "memory.max_usage_in_bytes")
                    .and_then(|s| s.trim().parse().ok()),
                cpu_time: None,
                oom_kills: read(Controller::Memory, "memory.oom_control")
                    .and_then(|s| keyed(&s, "oom_kill"))
                    .unwrap_or(0),
            },
        }
    }

    /// SIGKILLs every process in the cgroup (in each hierarchy). Killing a sandbox's
    /// init this way ends its whole pid namespace. A frozen cgroup is thawed first: a
    /// frozen task does not die until it runs.
    pub fn kill_all(&self) {
        let _ = self.thaw();
        for dir in &self.created {
            if let Ok(procs) = self.fs.read(&dir.join("cgroup.procs")) {
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    if pid > 0 {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
    }

    /// Removes the cgroup. Tasks that are exiting can keep it busy for a moment, so
    /// EBUSY is retried for up to ~2 s before giving up.
    pub fn destroy(mut self) -> Result<(), CgroupError> {
        self.destroyed = true;
        remove_dirs(&self.fs, &self.created, true)
    }

    /// Leaves the cgroup in place when this handle is dropped (a session's cgroup
    /// outlives the process that made it).
    pub(crate) fn keep(mut self) {
        self.destroyed = true;
    }

    /// The cgroup's path below each hierarchy's root.
    pub fn rel_path(&self) -> &Path {
        &self.rel
    }
}

impl<F: CgroupFs> Drop for Cgroup<F> {
    fn drop(&mut self) {
        if !self.destroyed {
            // Last resort on an error path; the error itself was already reported.
            let _ = remove_dirs(&self.fs, &self.created, true);
        }
    }
}

fn remove_dirs<F: CgroupFs>(fs: &F, dirs: &[PathBuf], retry: bool) -> Result<(), CgroupError> {
    let mut result = Ok(());
    for dir in dirs.iter().rev() {
        let mut attempt = 0;
        loop {
            match fs.rmdir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if retry && e.raw_os_error() == Some(libc::EBUSY) && attempt < 200 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(source) => {
                    result = Err(CgroupError::Io {
                        op: "rmdir",
                        path: dir.clone(),
                        source,
                    });
                    break;
                }
            }
        }
    }
    result
}

/// The name of a sandbox's cgroup: `run-<pid>-<n>` below a parent of corral's own, and
/// `corral-run-<pid>-<n>` directly at the hierarchies' roots (the default: nothing of
/// corral's outlives a run there), where other software's cgroups live too.
pub fn run_name(parent: &str, pid: u32, n: u32) -> String {
    format!("{}{pid}-{n}", run_prefix(parent))
}

fn run_prefix(parent: &str) -> &'static str {
    if parent.is_empty() {
        "corral-run-"
    } else {
        "run-"
    }
}

/// The corral pid encoded in a sandbox cgroup name (see [`run_name`]).
fn owner_pid(parent: &str, name: &str) -> Option<u32> {
    name.strip_prefix(run_prefix(parent))?
        .split('-')
        .next()?
        .parse()
        .ok()
}

impl Cgroup<RealCgroupFs> {
    /// [`Cgroup::open_with`] on the real hierarchy (layout detected).
    pub fn open_existing(parent: &str, name: &str) -> Result<Cgroup<RealCgroupFs>, CgroupError> {
        Cgroup::open_with(RealCgroupFs, CgroupLayout::detect()?, parent, name)
    }
}

/// Removes cgroups left under `parent` by corral processes that no longer exist (a
/// `kill -9` of corral skips its cleanup): those named by [`run_name`] whose pid is not
/// alive. Processes still in a stale cgroup belong to an orphaned sandbox: `kill` is
/// called with each of their pids (SIGKILL in production). Never waits: a cgroup that
/// is still busy is left for the next sweep. Returns how many were removed.
pub fn sweep_stale<F: CgroupFs>(
    fs: &F,
    layout: &CgroupLayout,
    parent: &str,
    mut kill: impl FnMut(i32),
) -> usize {
    let mut removed = 0;
    let parents = layout.dirs(Path::new(parent));
    let Some(first) = parents.first() else {
        return 0;
    };
    let Ok(names) = fs.subdirs(first) else {
        return 0;
    };
    for name in names {
        let Some(pid) = owner_pid(parent, &name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dirs = layout.dirs(&Path::new(parent).join(&name));
        for dir in &dirs {
            if let Ok(procs) = fs.read(&dir.join("cgroup.procs")) {
                procs
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .for_each(&mut kill);
            }
        }
        if remove_dirs(fs, &dirs, false).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Reads `key value` lines (memory.events, cpu.stat, memory.oom_control).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests;

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
        crate::procfs::read(path)
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
                        if let Some(c) = Controller::ALL.into_iter().find(|c| c.name() == opt) {
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

    /// The distinct directories a cgroup named `rel` occupies (one per v1 hierarchy).
    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        match self {
            CgroupLayout::V2 { root } => vec![root.join(rel)],
            CgroupLayout::V1 { mounts } => {
                let mut dirs: Vec<PathBuf> = mounts.values().map(|m| m.join(rel)).collect();
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
    /// Creates `parent/name` and applies the limits. On any failure everything created
    /// so far is removed again.
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

    /// Makes sure the parent exists; on v2 also that it delegates the controllers.
    fn prepare_parent(&mut self, parent: &Path) -> Result<(), CgroupError> {
        for dir in self.layout.dirs(parent) {
            self.fs.mkdir(&dir).map_err(|source| CgroupError::Io {
                op: "mkdir",
                path: dir.clone(),
                source,
            })?;
        }
        if let CgroupLayout::V2 { root } = &self.layout {
            // Controllers must be enabled top-down: in the root for the parent, and in
            // the parent for the sandbox cgroups below it.
            for dir in [root.clone(), root.join(parent)] {
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

    /// Removes the cgroup. Tasks that are exiting can keep it busy for a moment, so
    /// EBUSY is retried for up to ~2 s before giving up.
    pub fn destroy(mut self) -> Result<(), CgroupError> {
        self.destroyed = true;
        remove_dirs(&self.fs, &self.created, true)
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

/// Removes cgroups left under `parent` by corral processes that no longer exist (a
/// `kill -9` of corral skips its cleanup). Names are `run-<pid>-<n>`; one whose pid is
/// alive is left alone. Processes still in a stale cgroup belong to an orphaned
/// sandbox: `kill` is called with each of their pids (SIGKILL in production). Never
/// waits: a cgroup that is still busy is left for the next sweep. Returns how many were
/// removed.
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
        let Some(pid) = owner_pid(&name) else {
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

/// The corral pid encoded in a sandbox cgroup name `run-<pid>-<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix("run-")?.split('-').next()?.parse().ok()
}

/// Reads `key value` lines (memory.events, cpu.stat, memory.oom_control).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::rc::Rc;

    use super::*;

    /// Records every operation; files hold what was written.
    #[derive(Debug, Default, Clone)]
    struct FakeFs {
        log: Rc<RefCell<Vec<String>>>,
        dirs: Rc<RefCell<BTreeSet<PathBuf>>>,
        files: Rc<RefCell<BTreeMap<PathBuf, String>>>,
        fail_write: Rc<RefCell<Option<String>>>,
        busy_rmdirs: Rc<RefCell<u32>>,
    }

    impl CgroupFs for FakeFs {
        fn mkdir(&self, path: &Path) -> io::Result<()> {
            // Hierarchy roots ("/cg", "/cg/<controller>") always exist; anything below
            // needs its parent, as in the kernel.
            let parent = path.parent().unwrap_or(Path::new("/"));
            let is_root = |p: &Path| p == Path::new("/cg") || p.parent() == Some(Path::new("/cg"));
            if !is_root(parent) && !self.dirs.borrow().contains(parent) {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            self.log
                .borrow_mut()
                .push(format!("mkdir {}", path.display()));
            self.dirs.borrow_mut().insert(path.to_path_buf());
            Ok(())
        }
        fn rmdir(&self, path: &Path) -> io::Result<()> {
            let mut busy = self.busy_rmdirs.borrow_mut();
            if *busy > 0 {
                *busy -= 1;
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            self.log
                .borrow_mut()
                .push(format!("rmdir {}", path.display()));
            self.dirs.borrow_mut().remove(path);
            Ok(())
        }
        fn write(&self, path: &Path, value: &str) -> io::Result<()> {
            // Files of optional kernel features exist only when a test puts them there.
            let optional = [
                "memory.swap.max",
                "memory.memsw.limit_in_bytes",
                "memory.swappiness",
            ];
            if optional.iter().any(|o| path.ends_with(o)) && !self.files.borrow().contains_key(path)
            {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            if let Some(f) = self.fail_write.borrow().as_deref() {
                if path.ends_with(f) {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
            }
            self.log
                .borrow_mut()
                .push(format!("write {} {value}", path.display()));
            self.files
                .borrow_mut()
                .insert(path.to_path_buf(), value.to_string());
            Ok(())
        }
        fn read(&self, path: &Path) -> io::Result<String> {
            self.files
                .borrow()
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
        }
        fn exists(&self, path: &Path) -> bool {
            self.files.borrow().contains_key(path) || self.dirs.borrow().contains(path)
        }
        fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
            Ok(self
                .dirs
                .borrow()
                .iter()
                .filter(|d| d.parent() == Some(path))
                .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect())
        }
    }

    fn v2() -> CgroupLayout {
        CgroupLayout::V2 {
            root: PathBuf::from("/cg"),
        }
    }

    fn v1() -> CgroupLayout {
        let mut mounts = BTreeMap::new();
        mounts.insert(Controller::Memory, PathBuf::from("/cg/memory"));
        // cpu co-mounted with cpuacct, as on most v1 hosts
        mounts.insert(Controller::Cpu, PathBuf::from("/cg/cpu,cpuacct"));
        mounts.insert(Controller::Pids, PathBuf::from("/cg/pids"));
        CgroupLayout::V1 { mounts }
    }

    fn limits() -> Limits {
        Limits {
            memory_bytes: 64 << 20,
            cpu_millis: 500,
            pids: 32,
            ..Limits::default()
        }
    }

    #[test]
    fn v2_layout_enables_controllers_top_down_then_writes_limits() {
        let fs = FakeFs::default();
        let cg = Cgroup::create(fs.clone(), v2(), "corral", "run-1-0", &limits()).unwrap();
        cg.add_pid(42).unwrap();
        let log = fs.log.borrow().clone();
        assert_eq!(
            log,
            vec![
                "mkdir /cg/corral",
                "write /cg/cgroup.subtree_control +memory +cpu +pids",
                "write /cg/corral/cgroup.subtree_control +memory +cpu +pids",
                "mkdir /cg/corral/run-1-0",
                "write /cg/corral/run-1-0/memory.max 67108864",
                "write /cg/corral/run-1-0/cpu.max 50000 100000",
                "write /cg/corral/run-1-0/pids.max 32",
                "write /cg/corral/run-1-0/cgroup.procs 42",
            ]
        );
        cg.destroy().unwrap();
        assert_eq!(fs.log.borrow().last().unwrap(), "rmdir /cg/corral/run-1-0");
    }

    #[test]
    fn v2_disables_swap_when_the_kernel_has_swap_accounting() {
        let fs = FakeFs::default();
        fs.files.borrow_mut().insert(
            PathBuf::from("/cg/corral/run-1-0/memory.swap.max"),
            "max".into(),
        );
        let cg = Cgroup::create(fs.clone(), v2(), "corral", "run-1-0", &limits()).unwrap();
        assert_eq!(
            fs.files.borrow()[Path::new("/cg/corral/run-1-0/memory.swap.max")],
            "0"
        );
        cg.destroy().unwrap();
    }

    #[test]
    fn v2_already_enabled_controllers_are_not_rewritten() {
        let fs = FakeFs::default();
        for f in [
            "/cg/cgroup.subtree_control",
            "/cg/corral/cgroup.subtree_control",
        ] {
            fs.files
                .borrow_mut()
                .insert(PathBuf::from(f), "cpu memory pids io".into());
        }
        let cg = Cgroup::create(fs.clone(), v2(), "corral", "x", &limits()).unwrap();
        assert!(!fs
            .log
            .borrow()
            .iter()
            .any(|l| l.contains("subtree_control")));
        cg.destroy().unwrap();
    }

    #[test]
    fn v1_layout_uses_each_hierarchy_once_and_reads_stats() {
        let fs = FakeFs::default();
        let cg = Cgroup::create(fs.clone(), v1(), "corral", "run-7-1", &limits()).unwrap();
        cg.add_pid(9).unwrap();
        let log = fs.log.borrow().clone();
        let mkdirs: Vec<_> = log.iter().filter(|l| l.starts_with("mkdir")).collect();
        assert_eq!(mkdirs.len(), 6, "3 parents + 3 sandbox dirs: {mkdirs:?}");
        // A second sandbox finds the parents there: no parent mkdir at all.
        let before = fs.log.borrow().len();
        let cg2 = Cgroup::create(fs.clone(), v1(), "corral", "run-7-2", &limits()).unwrap();
        let again: Vec<_> = fs.log.borrow()[before..]
            .iter()
            .filter(|l| l.starts_with("mkdir"))
            .cloned()
            .collect();
        assert_eq!(again.len(), 3, "{again:?}");
        assert!(again.iter().all(|l| l.ends_with("run-7-2")), "{again:?}");
        cg2.destroy().unwrap();
        assert!(
            log.contains(&"write /cg/memory/corral/run-7-1/memory.limit_in_bytes 67108864".into())
        );
        assert!(log.contains(&"write /cg/cpu,cpuacct/corral/run-7-1/cpu.cfs_quota_us 50000".into()));
        assert!(log.contains(&"write /cg/pids/corral/run-7-1/pids.max 32".into()));
        let procs = log.iter().filter(|l| l.contains("cgroup.procs 9")).count();
        assert_eq!(procs, 3);

        let mut files = fs.files.borrow_mut();
        files.insert(
            PathBuf::from("/cg/memory/corral/run-7-1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n".into(),
        );
        files.insert(
            PathBuf::from("/cg/memory/corral/run-7-1/memory.max_usage_in_bytes"),
            "1048576\n".into(),
        );
        drop(files);
        let stats = cg.stats();
        assert_eq!(stats.oom_kills, 2);
        assert_eq!(stats.peak_memory_bytes, Some(1 << 20));
        assert_eq!(stats.cpu_time, None, "v1 CPU time comes from init's rusage");
        cg.destroy().unwrap();
        let dirs = fs.dirs.borrow();
        assert!(dirs.iter().all(|d| !d.ends_with("run-7-1")), "{dirs:?}");
    }

    #[test]
    fn v2_stats_come_from_events_and_cpu_stat() {
        let fs = FakeFs::default();
        let cg = Cgroup::create(fs.clone(), v2(), "corral", "s", &limits()).unwrap();
        let mut files = fs.files.borrow_mut();
        files.insert(
            PathBuf::from("/cg/corral/s/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n".into(),
        );
        files.insert(PathBuf::from("/cg/corral/s/memory.peak"), "4096\n".into());
        files.insert(
            PathBuf::from("/cg/corral/s/cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n".into(),
        );
        drop(files);
        let s = cg.stats();
        assert_eq!((s.oom_kills, s.peak_memory_bytes), (1, Some(4096)));
        assert_eq!(s.cpu_time, Some(Duration::from_micros(1500)));
        cg.destroy().unwrap();
    }

    #[test]
    fn v1_no_swap_uses_memsw_when_there_else_swappiness() {
        for (memsw, want) in [
            (true, "memory.memsw.limit_in_bytes"),
            (false, "memory.swappiness"),
        ] {
            let fs = FakeFs::default();
            let dir = PathBuf::from("/cg/memory/corral/s");
            if memsw {
                fs.files
                    .borrow_mut()
                    .insert(dir.join("memory.memsw.limit_in_bytes"), String::new());
            }
            fs.files
                .borrow_mut()
                .insert(dir.join("memory.swappiness"), "60".into());
            let cg = Cgroup::create(fs.clone(), v1(), "corral", "s", &limits()).unwrap();
            let writes: Vec<String> = fs
                .log
                .borrow()
                .iter()
                .filter(|l| l.contains("swap") || l.contains("memsw"))
                .cloned()
                .collect();
            assert_eq!(writes.len(), 1, "{writes:?}");
            assert!(writes[0].contains(want), "{writes:?}");
            cg.destroy().unwrap();
        }
    }

    #[test]
    fn failed_limit_write_removes_what_was_created() {
        let fs = FakeFs::default();
        *fs.fail_write.borrow_mut() = Some("pids.max".into());
        let err = Cgroup::create(fs.clone(), v2(), "corral", "bad", &limits()).unwrap_err();
        assert!(err.to_string().contains("pids.max"), "{err}");
        assert!(!fs.dirs.borrow().contains(Path::new("/cg/corral/bad")));
    }

    #[test]
    fn busy_rmdir_is_retried() {
        let fs = FakeFs::default();
        let cg = Cgroup::create(fs.clone(), v2(), "corral", "b", &limits()).unwrap();
        *fs.busy_rmdirs.borrow_mut() = 3;
        cg.destroy().unwrap();
        assert!(!fs.dirs.borrow().contains(Path::new("/cg/corral/b")));
    }

    #[test]
    fn sweep_removes_only_dead_owners_and_kills_their_leftovers() {
        let fs = FakeFs::default();
        let me = std::process::id();
        for name in [
            format!("run-{me}-0"),
            "run-4000000-3".to_string(),
            "other".into(),
        ] {
            fs.dirs
                .borrow_mut()
                .insert(PathBuf::from("/cg/corral").join(name));
        }
        fs.files.borrow_mut().insert(
            PathBuf::from("/cg/corral/run-4000000-3/cgroup.procs"),
            "77\n78\n".into(),
        );
        let mut killed = Vec::new();
        assert_eq!(sweep_stale(&fs, &v2(), "corral", |p| killed.push(p)), 1);
        assert_eq!(killed, [77, 78]);
        let dirs = fs.dirs.borrow();
        assert!(dirs.contains(&PathBuf::from(format!("/cg/corral/run-{me}-0"))));
        assert!(dirs.contains(Path::new("/cg/corral/other")));
        assert!(!dirs.contains(Path::new("/cg/corral/run-4000000-3")));
    }

    #[test]
    fn sweep_never_waits_on_a_busy_cgroup() {
        let fs = FakeFs::default();
        fs.dirs
            .borrow_mut()
            .insert(PathBuf::from("/cg/corral/run-4000000-1"));
        *fs.busy_rmdirs.borrow_mut() = 1000;
        let started = std::time::Instant::now();
        assert_eq!(sweep_stale(&fs, &v2(), "corral", |_| {}), 0);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(*fs.busy_rmdirs.borrow(), 999, "exactly one attempt");
    }

    #[test]
    fn detects_hybrid_and_pure_v2_from_mountinfo() {
        let hybrid = "\
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 30 0:31 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
36 30 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let CgroupLayout::V1 { mounts } = CgroupLayout::from_mountinfo(hybrid).unwrap() else {
            panic!("expected v1");
        };
        assert_eq!(mounts[&Controller::Cpu], Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(mounts.len(), 3, "cpuacct is not used: {mounts:?}");
        let pure = "30 24 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            CgroupLayout::from_mountinfo(pure).unwrap(),
            CgroupLayout::V2 {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
        let none = "30 24 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let err = CgroupLayout::from_mountinfo(none).unwrap_err().to_string();
        assert!(err.contains("cpu, pids"), "{err}");
    }
}

//! Layout, limits, stats and cleanup of sandbox cgroups, through a recording fake.

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
        if optional.iter().any(|o| path.ends_with(o)) && !self.files.borrow().contains_key(path) {
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
    assert!(log.contains(&"write /cg/memory/corral/run-7-1/memory.limit_in_bytes 67108864".into()));
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

#[test]
fn without_a_parent_the_sandbox_cgroup_is_all_there_is() {
    // v1: only the sandbox's own directories are made, and destroy leaves nothing.
    let fs = FakeFs::default();
    let name = run_name("", 7, 0);
    assert_eq!(name, "corral-run-7-0");
    let cg = Cgroup::create(fs.clone(), v1(), "", &name, &limits()).unwrap();
    let mkdirs: Vec<String> = fs
        .log
        .borrow()
        .iter()
        .filter(|l| l.starts_with("mkdir"))
        .cloned()
        .collect();
    assert_eq!(
        mkdirs,
        [
            "mkdir /cg/cpu,cpuacct/corral-run-7-0",
            "mkdir /cg/memory/corral-run-7-0",
            "mkdir /cg/pids/corral-run-7-0",
        ]
    );
    cg.destroy().unwrap();
    assert!(fs.dirs.borrow().is_empty(), "{:?}", fs.dirs.borrow());

    // v2: controllers are enabled in the root only, once.
    let fs = FakeFs::default();
    let cg = Cgroup::create(fs.clone(), v2(), "", &name, &limits()).unwrap();
    let subtree: Vec<String> = fs
        .log
        .borrow()
        .iter()
        .filter(|l| l.contains("subtree_control"))
        .cloned()
        .collect();
    assert_eq!(
        subtree,
        ["write /cg/cgroup.subtree_control +memory +cpu +pids"]
    );
    cg.destroy().unwrap();
    assert!(fs.dirs.borrow().is_empty(), "{:?}", fs.dirs.borrow());
}

#[test]
fn sweep_at_the_root_touches_only_corral_names() {
    let fs = FakeFs::default();
    for name in ["corral-run-4000000-1", "run-4000000-2", "user.slice"] {
        fs.dirs.borrow_mut().insert(PathBuf::from("/cg").join(name));
    }
    assert_eq!(sweep_stale(&fs, &v2(), "", |_| {}), 1);
    let dirs = fs.dirs.borrow();
    assert!(!dirs.contains(Path::new("/cg/corral-run-4000000-1")));
    assert!(
        dirs.contains(Path::new("/cg/run-4000000-2")),
        "not corral's at the root"
    );
    assert!(dirs.contains(Path::new("/cg/user.slice")));
}

#[test]
fn v2_freeze_waits_for_the_kernel_and_thaw_undoes_it() {
    let fs = FakeFs::default();
    let cg = Cgroup::create(fs.clone(), v2(), "", "sbx", &limits()).unwrap();
    let events = PathBuf::from("/cg/sbx/cgroup.events");
    fs.files
        .borrow_mut()
        .insert(events.clone(), "populated 1\nfrozen 1\n".into());
    cg.freeze().unwrap();
    assert_eq!(
        fs.log.borrow().last().unwrap(),
        "write /cg/sbx/cgroup.freeze 1"
    );
    fs.files
        .borrow_mut()
        .insert(events, "populated 1\nfrozen 0\n".into());
    cg.thaw().unwrap();
    assert_eq!(
        fs.log.borrow().last().unwrap(),
        "write /cg/sbx/cgroup.freeze 0"
    );
    cg.destroy().unwrap();
}

#[test]
fn v1_without_freezer_cannot_pause_but_works_otherwise() {
    let fs = FakeFs::default();
    let cg = Cgroup::create(fs.clone(), v1(), "", "sbx", &limits()).unwrap();
    assert!(matches!(cg.freeze(), Err(CgroupError::Unavailable(_))));
    cg.set_limits(&Limits {
        pids: 7,
        ..limits()
    })
    .unwrap();
    assert!(fs
        .log
        .borrow()
        .contains(&"write /cg/pids/sbx/pids.max 7".to_string()));
    cg.destroy().unwrap();
}

#[test]
fn v1_freezer_state_is_written_and_read_back() {
    let fs = FakeFs::default();
    let mut layout = v1();
    if let CgroupLayout::V1 { mounts } = &mut layout {
        mounts.insert(Controller::Freezer, PathBuf::from("/cg/freezer"));
    }
    let cg = Cgroup::create(fs.clone(), layout, "", "sbx", &limits()).unwrap();
    assert!(fs.dirs.borrow().contains(Path::new("/cg/freezer/sbx")));
    // The fake keeps what was written, so the state reads back as FROZEN at once.
    cg.freeze().unwrap();
    assert_eq!(
        fs.files
            .borrow()
            .get(Path::new("/cg/freezer/sbx/freezer.state")),
        Some(&"FROZEN".to_string())
    );
    cg.thaw().unwrap();
    cg.destroy().unwrap();
    assert!(!fs.dirs.borrow().contains(Path::new("/cg/freezer/sbx")));
}

#[test]
fn an_opened_cgroup_survives_its_handle_until_destroyed() {
    let fs = FakeFs::default();
    assert!(matches!(
        Cgroup::open_with(fs.clone(), v2(), "", "nope"),
        Err(CgroupError::NotFound(_))
    ));
    Cgroup::create(fs.clone(), v2(), "", "sbx", &limits())
        .unwrap()
        .keep();
    assert!(fs.dirs.borrow().contains(Path::new("/cg/sbx")));
    drop(Cgroup::open_with(fs.clone(), v2(), "", "sbx").unwrap());
    assert!(fs.dirs.borrow().contains(Path::new("/cg/sbx")));
    Cgroup::open_with(fs.clone(), v2(), "", "sbx")
        .unwrap()
        .destroy()
        .unwrap();
    assert!(!fs.dirs.borrow().contains(Path::new("/cg/sbx")));
}

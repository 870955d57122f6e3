//! Sweep of stale cgroups.

#[allow(unused_imports)]
use super::helpers::*;

#[test]
fn next_run_sweeps_stale_cgroups() {
    let env = Env::new();
    let live = format!("run-{}-0", std::process::id());
    for d in env.cgroup_dirs() {
        for name in [
            "run-4000000-0",
            "run-4000000-7",
            live.as_str(),
            "not-corral",
        ] {
            std::fs::create_dir_all(d.join(name)).unwrap();
        }
    }
    let v = env.sh(&[], "echo swept");
    assert_eq!(ok_stdout(&v), "swept");
    for d in env.cgroup_dirs() {
        assert!(!d.join("run-4000000-0").exists(), "{d:?}: stale dir stays");
        assert!(!d.join("run-4000000-7").exists(), "{d:?}: stale dir stays");
        assert!(
            d.join(&live).exists(),
            "{d:?}: a cgroup whose owner pid is alive was removed"
        );
        assert!(
            d.join("not-corral").exists(),
            "{d:?}: a foreign dir was removed"
        );
    }
    // Our own dirs: remove them so Env's drop can remove the parent.
    for d in env.cgroup_dirs() {
        for name in [live.as_str(), "not-corral"] {
            let _ = std::fs::remove_dir(d.join(name));
        }
    }
    let left: Vec<_> = env.leftover_cgroups();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn state_and_runtime_dirs_stay_clean() {
    let env = Env::new();
    for _ in 0..3 {
        assert_eq!(ok_stdout(&env.sh(&[], "echo x")), "x");
    }
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(env.runtime.path()), ["mnt"]);
    assert!(names(&env.runtime.path().join("mnt")).is_empty());
    assert_eq!(names(env.state.path()), ["templates"]);
    let t = names(&env.state.path().join("templates"));
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].starts_with("host-"), "{t:?}");
}

#[test]
fn by_default_a_run_leaves_no_cgroup_at_all() {
    // Without CORRAL_CGROUP_PARENT the sandbox's cgroup is `corral-run-<pid>-<n>` at
    // each hierarchy's root, and nothing of corral's (no parent either) remains.
    let env = Env::new();
    let mut cmd = env.cmd();
    cmd.env_remove("CORRAL_CGROUP_PARENT")
        .args(["run", "--", "/bin/sh", "-c", "sleep 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = Reaper(cmd.spawn().unwrap());
    let name = format!("corral-run-{}-0", child.0.id());
    let dirs: Vec<_> = cgroup_roots().into_iter().map(|r| r.join(&name)).collect();
    assert!(
        wait_until(Duration::from_secs(10), || dirs.iter().all(|d| d.exists())),
        "the sandbox's cgroup {name} never appeared at the roots"
    );
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for d in &dirs {
        assert!(!d.exists(), "{d:?} stays after the run");
    }
}

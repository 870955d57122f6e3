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

//! Shared helpers for corral's privileged end-to-end tests (run as root by the README
//! test command). Each test gets its own state dir, runtime dir and cgroup parent, so
//! tests run in parallel and leak checks see only their own resources.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// cgroup v1 controller mount points used by corral on this (hybrid) host, or the v2
/// root on a pure v2 host.
pub fn cgroup_roots() -> Vec<PathBuf> {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
    if v2.exists() {
        return vec![PathBuf::from("/sys/fs/cgroup")];
    }
    ["memory", "cpu", "pids"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c))
        .collect()
}

/// An isolated corral environment for one test.
pub struct Env {
    pub state: tempfile::TempDir,
    pub runtime: tempfile::TempDir,
    pub cgroup_parent: String,
}

impl Env {
    pub fn new() -> Env {
        assert!(
            nix_is_root(),
            "corral's end-to-end tests must run as root: use the README test command"
        );
        Env {
            state: tempfile::tempdir().unwrap(),
            runtime: tempfile::tempdir().unwrap(),
            cgroup_parent: format!(
                "corral-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// `corral` with this environment (and nothing else of the caller's).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CORRAL_STATE_DIR", self.state.path())
            .env("CORRAL_RUNTIME_DIR", self.runtime.path())
            .env("CORRAL_CGROUP_PARENT", &self.cgroup_parent)
            .stdin(Stdio::null());
        c
    }

    /// Like [`Env::cmd`], but corral starts with every signal at its default action
    /// (through `env --default-signal`): a test runner started under `nohup` or as a
    /// background job hands down SIGHUP, SIGINT and SIGQUIT ignored, and corral (by
    /// design) leaves an ignored signal ignored.
    pub fn cmd_default_signals(&self) -> Command {
        let mut c = Command::new("/usr/bin/env");
        c.arg("--default-signal").arg(env!("CARGO_BIN_EXE_corral"));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CORRAL_STATE_DIR", self.state.path())
            .env("CORRAL_RUNTIME_DIR", self.runtime.path())
            .env("CORRAL_CGROUP_PARENT", &self.cgroup_parent)
            .stdin(Stdio::null());
        c
    }

    /// `corral run [opts] -- argv`, raw output.
    pub fn run(&self, opts: &[&str], argv: &[&str]) -> Output {
        let mut c = self.cmd();
        c.arg("run").args(opts).arg("--").args(argv);
        c.output().unwrap()
    }

    /// `corral run --json [opts] -- argv`: the parsed result and corral's exit code.
    pub fn json(&self, opts: &[&str], argv: &[&str]) -> (Value, i32) {
        let mut all = vec!["--json"];
        all.extend_from_slice(opts);
        let out = self.run(&all, argv);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "corral --json printed no JSON object ({e}); stdout={stdout:?} stderr={:?}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (v, out.status.code().unwrap_or(-1))
    }

    /// Runs a shell script in the sandbox (`sh -c`), returns the JSON result.
    pub fn sh(&self, opts: &[&str], script: &str) -> Value {
        self.json(opts, &["/bin/sh", "-c", script]).0
    }

    /// Runs python3 code in the sandbox, returns the JSON result.
    pub fn py(&self, opts: &[&str], code: &str) -> Value {
        self.json(opts, &["/usr/bin/python3", "-c", code]).0
    }

    /// Directories of this test's cgroup parent (one per hierarchy).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_roots()
            .into_iter()
            .map(|r| r.join(&self.cgroup_parent))
            .collect()
    }

    /// Sandbox cgroups still present under this test's parent.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in self.cgroup_dirs() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        out.push(e.path());
                    }
                }
            }
        }
        out
    }
}

impl Drop for Env {
    /// Removes this test's cgroup parent, and any sandbox cgroup still under it: a test
    /// that kills corral with SIGKILL on its way out (a `Reaper`, a timed-out child)
    /// leaves the run's cgroup behind by design (the next run would sweep it), and the
    /// parent could not be removed around it. The sandbox's processes die with corral
    /// (parent-death signal), so the directories empty within moments. Tests that
    /// check for leaks assert `leftover_cgroups()` before this runs.
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for d in self.cgroup_dirs() {
            loop {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    for e in rd.flatten() {
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            let _ = std::fs::remove_dir(e.path());
                        }
                    }
                }
                let gone = match std::fs::remove_dir(&d) {
                    Ok(()) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::NotFound,
                };
                if gone || std::time::Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

pub fn nix_is_root() -> bool {
    // /proc/self/status "Uid:" real effective ...
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Field accessors for the JSON result.
pub fn exit_code(v: &Value) -> i64 {
    v["exit_code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no exit_code in {v}"))
}
pub fn stdout(v: &Value) -> String {
    v["stdout"].as_str().unwrap_or_default().to_string()
}
pub fn stderr(v: &Value) -> String {
    v["stderr"].as_str().unwrap_or_default().to_string()
}

/// Asserts the command exited 0 and returns its trimmed stdout.
pub fn ok_stdout(v: &Value) -> String {
    assert_eq!(exit_code(v), 0, "command failed: {v}");
    stdout(v).trim().to_string()
}

/// A unique path under the host's /tmp (not created).
pub fn unique_host_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "corral-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

//! Debian base templates: `corral template debootstrap` from the package tarball that
//! scripts/debian-fixture.sh made (no packet leaves the machine during the test), a
//! sandbox from it, and a failed bootstrap leaving no template, work dir or mount.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

use crate::harness::Daemon;

/// A package tarball of scripts/debian-fixture.sh: `minbase` or `python`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../target/debian-fixture/bookworm-{name}.tgz"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/debian-fixture.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

pub(crate) fn debootstrap(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["template", "debootstrap"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

/// Mount points under `dir` (the work dir debootstrap mounts /proc and /sys in must
/// never show on the host).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap().display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(String::from)
        .collect()
}

fn work_dirs(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("templates/tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_debian_base_is_built_offline_and_runs_sandboxes() {
    let tarball = fixture("minbase");
    let d = Daemon::start(0);
    let out = debootstrap(
        &d.data_dir(),
        &["--name", "debian", "--tarball", tarball.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Progress: debootstrap's own lines, as it goes.
    assert!(stderr.contains("I: Configuring"), "{stderr}");
    assert!(
        stderr.contains("Base system installed successfully"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("debian:1 tpl-"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(work_dirs(&d.data_dir()).is_empty());
    assert!(mounts_under(&d.data_dir()).is_empty());

    let t = d.call("GET", "/v1/templates/debian", None).json();
    assert!(
        t["source"]
            .as_str()
            .unwrap()
            .starts_with("debootstrap:bookworm variant=minbase tarball="),
        "{t}"
    );
    let id = d.create(json!({"template": "debian"}));
    let r = d.exec(
        &id,
        &[
            "/bin/sh",
            "-c",
            "cut -d. -f1 /etc/debian_version; dpkg-query -W -f '${Status}\\n' apt; id -u; \
             touch /usr/x 2>/dev/null || echo usr-read-only; echo ok > /tmp/t && cat /tmp/t",
        ],
    );
    assert_eq!(
        r["stdout"], "12\ninstall ok installed\n1000\nusr-read-only\nok\n",
        "{r}"
    );
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        204
    );
    d.assert_clean(0);
}

#[test]
fn a_failed_debootstrap_leaves_nothing() {
    let d = Daemon::start(0);
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"not a tarball").unwrap();
    let out = debootstrap(
        &d.data_dir(),
        &[
            "--name",
            "broken",
            "--tarball",
            junk.path().to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("debootstrap failed"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert!(work_dirs(&d.data_dir()).is_empty());
    assert!(mounts_under(&d.data_dir()).is_empty());
    assert_eq!(d.call("GET", "/v1/templates/broken", None).status, 404);

    // Bad input is refused before anything runs.
    for args in [
        &["--name", "x", "--suite", "Bookworm;rm"][..],
        &["--name", "x", "--include=python3,-x"][..],
        &["--name", "x", "--mirror", "ftp://mirror.invalid/debian"][..],
        &["--name", "x", "--tarball", "/nonexistent/x.tgz"][..],
        &["--name", "bad name", "--tarball", "/nonexistent/x.tgz"][..],
    ] {
        let out = debootstrap(&d.data_dir(), args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(work_dirs(&d.data_dir()).is_empty());
}

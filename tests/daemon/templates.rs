//! Templates: OCI images (layers, whiteouts, opaque dirs) and directories imported,
//! sandboxes created from them, malicious archives refused, removal refused while in
//! use, a killed import leaving no template. Every image is built here: a tiny root
//! file system of the host's dash and the libraries it loads.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Daemon;
use crate::rootfs::{layer_desc, oci_image, shell_rootfs};

/// A tar of `dir`'s contents (owner root), gzip-compressed when `gz`.
fn tar_dir(dir: &Path, gz: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all(".", dir).unwrap();
    let raw = b.into_inner().unwrap();
    if !gz {
        return raw;
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, &raw).unwrap();
    e.finish().unwrap()
}

/// Writes an OCI image layout with these layer blobs (bottom first) into `out`.
fn oci_layout(out: &Path, layers: &[Vec<u8>]) {
    let descs = layers
        .iter()
        .map(|l| {
            let gz = l.starts_with(&[0x1f, 0x8b]);
            let mt = if gz {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            layer_desc(out, l, mt)
        })
        .collect();
    oci_image(
        out,
        json!({"Env": ["PATH=/usr/bin:/bin", "IMAGE=test"]}),
        descs,
    );
}

/// A two-layer image: the second layer deletes /gone.txt (whiteout), makes /opq opaque
/// (hiding old.txt, adding new.txt) and replaces /etc/motd.
fn two_layer_image(out: &Path) {
    let work = tempfile::tempdir().unwrap();
    let l1 = work.path().join("l1");
    shell_rootfs(&l1);
    std::fs::write(l1.join("gone.txt"), "old").unwrap();
    std::fs::create_dir_all(l1.join("opq")).unwrap();
    std::fs::write(l1.join("opq/old.txt"), "old").unwrap();
    std::fs::write(l1.join("etc/motd"), "base").unwrap();
    let l2 = work.path().join("l2");
    std::fs::create_dir_all(l2.join("opq")).unwrap();
    std::fs::create_dir_all(l2.join("etc")).unwrap();
    std::fs::write(l2.join(".wh.gone.txt"), "").unwrap();
    std::fs::write(l2.join("opq/.wh..wh..opq"), "").unwrap();
    std::fs::write(l2.join("opq/new.txt"), "new").unwrap();
    std::fs::write(l2.join("etc/motd"), "top").unwrap();
    oci_layout(out, &[tar_dir(&l1, true), tar_dir(&l2, false)]);
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

const CHECK: &str =
    "test -e /gone.txt && echo gone-present; test -e /opq/old.txt && echo old-present; \
read a < /opq/new.txt; read b < /etc/motd; echo \"$a $b\"; \
while read l; do case $l in sandbox:x:1000:*) echo has-sandbox;; esac; done < /etc/passwd; \
echo hi > /tmp/t && echo tmp-ok; echo hi > /home/sandbox/t && echo home-ok";

#[test]
fn oci_image_with_whiteouts_and_opaque_dirs_runs_and_is_shared() {
    let d = Daemon::start(0);
    let img = tempfile::tempdir().unwrap();
    two_layer_image(img.path());
    let r = d.call(
        "POST",
        "/v1/templates",
        Some(&json!({"name": "img", "oci": img.path().to_str().unwrap()})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let t = r.json();
    assert_eq!(t["version"], "1");
    assert_eq!(t["layers"].as_array().unwrap().len(), 3, "{t}");
    assert_eq!(t["layers"][2]["origin"], "corral");
    assert!(t["env"].as_array().unwrap().contains(&json!("IMAGE=test")));

    let id = d.create(json!({"template": "img"}));
    let sb = d.call("GET", &format!("/v1/sandboxes/{id}"), None).json();
    assert_eq!(sb["template"], "img:1");
    let out = d.exec(&id, &["/bin/sh", "-c", CHECK]);
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(
        out["stdout"], "new top\nhas-sandbox\ntmp-ok\nhome-ok\n",
        "{out}"
    );

    // The same image under another name shares every layer.
    let layers = d.data_dir().join("templates/layers");
    let before = names(&layers).len();
    let r = d.call(
        "POST",
        "/v1/templates",
        Some(&json!({"name": "img2", "version": "v7", "oci": img.path().to_str().unwrap()})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["id"], t["id"]);
    assert_eq!(names(&layers).len(), before);
    let list = d.call("GET", "/v1/templates", None).json();
    let listed: Vec<String> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["name"].as_str().unwrap(),
                t["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(listed, ["host:builtin", "img:1", "img2:v7"]);
    assert_eq!(d.call("GET", "/v1/templates/img2:v7", None).status, 200);

    // In use: refused; afterwards removed, and its unshared layers with it.
    let del = d.call("DELETE", "/v1/templates/img", None);
    assert_eq!(del.assert_error(409), "conflict");
    assert!(del.text().contains(&id), "{}", del.text());
    let tenant = d.tenant_key("t-agent");
    d.call_as(&tenant, "DELETE", "/v1/templates/img2", None)
        .assert_error(403);
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        204
    );
    assert_eq!(d.call("DELETE", "/v1/templates/img", None).status, 204);
    d.call("GET", "/v1/templates/img", None).assert_error(404);
    d.call("POST", "/v1/sandboxes", Some(&json!({"template": "img"})))
        .assert_error(404);
    assert_eq!(names(&layers).len(), before, "img2 still holds the layers");
    assert_eq!(d.call("DELETE", "/v1/templates/img2", None).status, 204);
    assert!(names(&layers).is_empty(), "{:?}", names(&layers));
    d.assert_clean(0);
}

#[test]
fn directory_import_shifts_owners_into_the_sandbox_range() {
    let d = Daemon::start(0);
    let src = tempfile::tempdir().unwrap();
    shell_rootfs(src.path());
    std::fs::create_dir_all(src.path().join("data")).unwrap();
    std::fs::write(src.path().join("data/mine.txt"), "mine\n").unwrap();
    std::os::unix::fs::chown(src.path().join("data"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(src.path().join("data/mine.txt"), Some(1000), Some(1000)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["template", "import", "--name", "rootdir", "--dir"])
        .arg(src.path())
        .arg("--data-dir")
        .arg(d.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rootdir:1 tpl-"));
    let id = d.create(json!({"template": "rootdir:1"}));
    let r = d.exec(
        &id,
        &["/bin/sh", "-c", "read x < /data/mine.txt; echo $x; echo more >> /data/mine.txt && echo owner-ok; echo no > /etc/motd || echo etc-root"],
    );
    assert_eq!(r["stdout"], "mine\nowner-ok\netc-root\n", "{r}");
    // On the host, the layer's files belong to the sandbox range, not to host 1000.
    let t = d.call("GET", "/v1/templates/rootdir", None).json();
    let digest = t["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let m = std::fs::metadata(
        d.data_dir()
            .join("templates/layers")
            .join(digest)
            .join("data/mine.txt"),
    )
    .unwrap();
    assert_eq!(m.uid(), 1_000_000_000 + 1000);
    // The CLI refuses to remove it while the daemon's sandbox uses it.
    let rm = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["template", "rm", "rootdir", "--data-dir"])
        .arg(d.data_dir())
        .output()
        .unwrap();
    assert_eq!(rm.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&rm.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert_eq!(
        d.call("DELETE", &format!("/v1/sandboxes/{id}"), None)
            .status,
        204
    );
    d.assert_clean(0);
}

/// A raw tar entry, whatever its name (the tar crate refuses to write `..`).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn malicious_archives_are_refused_and_leave_nothing() {
    let d = Daemon::start(0);
    let victim = tempfile::tempdir().unwrap();
    type Entry<'a> = (&'a str, tar::EntryType, &'a str);
    let cases: Vec<(&str, Vec<Entry<'_>>, &str)> = vec![
        (
            "dotdot",
            vec![("../../escape", tar::EntryType::Regular, "")],
            "`..`",
        ),
        (
            "absolute",
            vec![("/etc/evil", tar::EntryType::Regular, "")],
            "absolute",
        ),
        (
            "through-link",
            vec![
                (
                    "link",
                    tar::EntryType::Symlink,
                    victim.path().to_str().unwrap(),
                ),
                ("link/planted", tar::EntryType::Regular, ""),
            ],
            "symbolic link",
        ),
        (
            "device",
            vec![("dev/sda", tar::EntryType::Block, "")],
            "device node",
        ),
    ];
    for (name, entries, why) in cases {
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, "ok.txt", tar::EntryType::Regular, "", b"fine");
        for (path, kind, link) in entries {
            raw_entry(&mut b, path, kind, link, b"x");
        }
        let img = tempfile::tempdir().unwrap();
        oci_layout(img.path(), &[b.into_inner().unwrap()]);
        let r = d.call(
            "POST",
            "/v1/templates",
            Some(&json!({"name": name, "oci": img.path().to_str().unwrap()})),
        );
        assert_eq!(r.assert_error(400), "invalid_argument", "{name}");
        assert!(r.text().contains(why), "{name}: {}", r.text());
    }
    assert!(
        names(victim.path()).is_empty(),
        "{:?}",
        names(victim.path())
    );
    let store = d.data_dir().join("templates");
    assert!(names(&store.join("layers")).is_empty());
    assert!(names(&store.join("images")).is_empty());
    assert!(names(&store.join("tmp")).is_empty());
    assert_eq!(
        d.call("GET", "/v1/templates", None).json()["templates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_killed_import_leaves_no_template() {
    let state = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    shell_rootfs(src.path());
    let chunk = vec![7u8; 4 << 20];
    for i in 0..60 {
        let mut c = chunk.clone();
        c[0] = i as u8;
        std::fs::write(src.path().join(format!("big-{i}")), &c).unwrap();
    }
    let corral = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
        c.args(["template"])
            .args(args)
            .arg("--data-dir")
            .arg(state.path());
        c
    };
    let mut child = corral(&[
        "import",
        "--name",
        "big",
        "--dir",
        src.path().to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    let tmp = state.path().join("templates/tmp");
    let start = Instant::now();
    loop {
        let started = names(&tmp)
            .iter()
            .any(|n| tmp.join(n).join("l0/big-0").exists());
        if started {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the import never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let ls = corral(&["ls", "--json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "only host: {list}");
    corral(&["inspect", "big"])
        .output()
        .map(|o| assert_eq!(o.status.code(), Some(125)))
        .unwrap();
    // The next import removes the dead one's work dir.
    let small = tempfile::tempdir().unwrap();
    shell_rootfs(small.path());
    let ok = corral(&[
        "import",
        "--name",
        "small",
        "--dir",
        small.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
    assert_eq!(names(&state.path().join("templates/layers")).len(), 2);
}

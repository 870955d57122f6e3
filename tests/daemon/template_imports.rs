//! Template imports as build jobs (`import` source of `/v1/templates/builds`): an OCI
//! import streams its layers and bytes and its template runs; the same image imported
//! again under another name finds every layer in the blob cache (blobs checked, not
//! unpacked); a
//! cancel in the middle of a big layer leaves no template and no work dir; the CLI's
//! import prints progress lines when stderr is not a terminal. Every image is made
//! here, in the test's own temp dirs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::Daemon;
use crate::rootfs::{hex, oci_image, shell_rootfs};

/// Writes a tar of `dir`'s contents into `blobs/` (gzip when `gz`); its digest.
fn put_layer(blobs: &Path, dir: &Path, gz: bool) -> String {
    let tmp = blobs.join("layer.tmp");
    {
        let f = std::fs::File::create(&tmp).unwrap();
        let w: Box<dyn Write> = if gz {
            Box::new(flate2::write::GzEncoder::new(
                f,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(std::io::BufWriter::new(f))
        };
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Deterministic);
        b.append_dir_all(".", dir).unwrap();
        b.into_inner().unwrap().flush().unwrap();
    }
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(&tmp).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let hx = hex(&h.finalize());
    std::fs::rename(&tmp, blobs.join(&hx)).unwrap();
    format!("sha256:{hx}")
}

/// An OCI image layout in `out` whose layers are these directories (bottom first).
fn oci_layout(out: &Path, layers: &[(&Path, bool)]) {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let descs = layers
        .iter()
        .map(|(dir, gz)| {
            json!({"mediaType": if *gz {"application/vnd.oci.image.layer.v1.tar+gzip"} else {"application/vnd.oci.image.layer.v1.tar"},
                   "digest": put_layer(&blobs, dir, *gz)})
        })
        .collect();
    oci_image(out, json!({"Env": ["PATH=/usr/bin:/bin"]}), descs);
}

/// A two-layer image: a shell root file system, then a layer with /data/hello.txt and
/// `extra` bytes of noise in /data/noise.bin.
fn image(out: &Path, extra: usize) {
    let work = tempfile::tempdir().unwrap();
    let l1 = work.path().join("l1");
    shell_rootfs(&l1);
    let l2 = work.path().join("l2");
    std::fs::create_dir_all(l2.join("data")).unwrap();
    std::fs::write(l2.join("data/hello.txt"), "hello from the image\n").unwrap();
    let mut noise = vec![0u8; extra];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    std::fs::write(l2.join("data/noise.bin"), noise).unwrap();
    oci_layout(out, &[(&l1, true), (&l2, false)]);
}

fn start(d: &Daemon, body: Value) -> String {
    let r = d.call("POST", "/v1/templates/builds", Some(&body));
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

fn events(d: &Daemon, id: &str) -> Vec<Value> {
    let r = d.call("GET", &format!("/v1/templates/builds/{id}/events"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (layer, total, state) of each `layer` event.
fn layers(evs: &[Value]) -> Vec<(u64, u64, String)> {
    evs.iter()
        .filter(|e| e["type"] == "layer")
        .map(|e| {
            (
                e["layer"].as_u64().unwrap(),
                e["total"].as_u64().unwrap(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn st(l: u64, t: u64, s: &str) -> (u64, u64, String) {
    (l, t, s.to_string())
}

fn work_dirs(data: &Path) -> usize {
    std::fs::read_dir(data.join("templates/tmp"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// The layer store's directories: name, inode and modification time of each.
fn layer_dirs(data: &Path) -> Vec<(String, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<_> = std::fs::read_dir(data.join("templates/layers"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.ino(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn an_oci_import_job_streams_layers_and_a_reimport_finds_them_cached() {
    let d = Daemon::start(0);
    let img = d.env.state.path().join("img");
    image(&img, 48 << 20);
    let src = img.display().to_string();

    let id = start(
        &d,
        json!({"name": "imp-a", "source": {"kind": "import", "oci": src}}),
    );
    let evs = events(&d, &id);
    assert_eq!(
        layers(&evs),
        [
            st(1, 2, "started"),
            st(1, 2, "applied"),
            st(2, 2, "started"),
            st(2, 2, "applied")
        ],
        "{evs:?}"
    );
    // The big layer's bytes: at least one count on the way (every 32 MiB), ending at
    // its size.
    let size2 = evs
        .iter()
        .find(|e| e["type"] == "layer" && e["layer"] == 2)
        .unwrap()["size_bytes"]
        .as_u64()
        .unwrap();
    let bytes: Vec<u64> = evs
        .iter()
        .filter(|e| e["type"] == "bytes" && e["total"] == size2)
        .map(|e| e["done"].as_u64().unwrap())
        .collect();
    assert!(bytes.len() >= 2, "{evs:?}");
    assert_eq!(bytes.last(), Some(&size2));
    assert_eq!(evs.last().unwrap()["type"], "done", "{evs:?}");
    let job = d
        .call("GET", &format!("/v1/templates/builds/{id}"), None)
        .json();
    assert_eq!(
        (&job["state"], &job["source"], &job["step"], &job["total"]),
        (&json!("succeeded"), &json!("import"), &json!(2), &json!(2)),
        "{job}"
    );

    // The template works.
    let sb = d.create(json!({"template": "imp-a"}));
    let r = d.exec(&sb, &["/bin/sh", "-c", "read x < /data/hello.txt; echo $x"]);
    assert_eq!(r["stdout"], "hello from the image\n", "{r}");
    d.call("DELETE", &format!("/v1/sandboxes/{sb}"), None);

    // Again under another name: both layers cached, same layers, nothing unpacked:
    // the layer store's directories are the very same ones (an unpacked layer would be
    // a new directory renamed into place).
    let store_before = layer_dirs(&d.data_dir());
    assert!(store_before.len() >= 2, "{store_before:?}");
    let id = start(
        &d,
        json!({"name": "imp-b", "source": {"kind": "import", "oci": src}}),
    );
    let evs = events(&d, &id);
    assert_eq!(
        layers(&evs),
        [st(1, 2, "cached"), st(2, 2, "cached")],
        "{evs:?}"
    );
    // The blobs are read once more, only to check their digests.
    assert!(
        evs.iter()
            .any(|e| e["type"] == "bytes" && e["total"] == size2),
        "{evs:?}"
    );
    let a = d.call("GET", "/v1/templates/imp-a", None).json();
    let b = evs.last().unwrap()["template"].clone();
    assert_eq!(a["layers"], b["layers"]);
    assert_eq!(layer_dirs(&d.data_dir()), store_before);

    // The synchronous route still answers the template (201).
    let r = d.call(
        "POST",
        "/v1/templates",
        Some(&json!({"name": "imp-c", "oci": src})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["layers"], a["layers"]);
    assert_eq!(work_dirs(&d.data_dir()), 0);
}

#[test]
fn cancelling_a_big_import_leaves_no_template_and_no_work_dir() {
    let d = Daemon::start(0);
    let work = d.env.state.path().join("big");
    std::fs::create_dir_all(work.join("data")).unwrap();
    // Two layers of 150 MiB of noise: the cancel comes after the first count.
    for i in 0..2 {
        let mut f = std::fs::File::create(work.join(format!("data/noise{i}.bin"))).unwrap();
        let mut u = std::fs::File::open("/dev/urandom").unwrap();
        std::io::copy(&mut (&mut u).take(150 << 20), &mut f).unwrap();
    }
    let l1 = d.env.state.path().join("l1");
    let l2 = d.env.state.path().join("l2");
    for (l, i) in [(&l1, 0), (&l2, 1)] {
        std::fs::create_dir_all(l.join("data")).unwrap();
        std::fs::rename(
            work.join(format!("data/noise{i}.bin")),
            l.join(format!("data/noise{i}.bin")),
        )
        .unwrap();
    }
    let img = d.env.state.path().join("img");
    oci_layout(&img, &[(&l1, false), (&l2, false)]);
    std::fs::remove_dir_all(&l1).unwrap();
    std::fs::remove_dir_all(&l2).unwrap();

    let id = start(
        &d,
        json!({"name": "big", "source": {"kind": "import", "oci": img.display().to_string()}}),
    );
    // Cancel once the first layer has started (300 MiB are left to read).
    let mut started = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started && Instant::now() < deadline {
        let job = d
            .call("GET", &format!("/v1/templates/builds/{id}"), None)
            .json();
        started = job["step"].as_u64().unwrap_or(0) >= 1;
        if !started {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(started, "the import never started");
    let r = d.call("DELETE", &format!("/v1/templates/builds/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "cancelled", "{}", r.text());
    let evs = events(&d, &id);
    assert_eq!(evs.last().unwrap()["type"], "cancelled", "{evs:?}");
    assert!(
        !layers(&evs).contains(&st(2, 2, "applied")),
        "cancelled before the end: {evs:?}"
    );
    d.call("GET", "/v1/templates/big", None).assert_error(404);
    assert_eq!(work_dirs(&d.data_dir()), 0, "the work dir is removed");
    let layers_left = std::fs::read_dir(d.data_dir().join("templates/layers"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(layers_left, 0);
}

/// `corral template import --name NAME --oci IMG --data-dir DATA`, which must succeed:
/// its stdout and stderr.
fn cli_import(name: &str, img: &Path, data: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["template", "import", "--name", name, "--oci"])
        .arg(img)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

#[test]
fn the_cli_import_prints_progress_lines() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    image(&img, 1 << 20);
    let data = t.path().join("data");
    let (out, err) = cli_import("cli-imp", &img, &data);
    for want in [
        "layer 1/2 started sha256:",
        "layer 1/2 applied",
        "layer 2/2 started",
        "layer 2/2 applied",
        " of ",
        "imported cli-imp:1 in ",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    assert!(out.starts_with("cli-imp:1 tpl-"), "{out}");
    // Again: cached.
    let (_, err) = cli_import("cli-imp2", &img, &data);
    assert!(
        err.contains("layer 1/2 cached") && err.contains("layer 2/2 cached"),
        "{err}"
    );
}

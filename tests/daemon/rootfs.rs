//! Test images for the template tests: a minimal root file system around the host's
//! dash (no download, no Debian fixture needed).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A root file system in `dir` with /bin/sh (the host's dash) and what it loads, and
/// an /etc/passwd naming root.
pub fn shell_rootfs(dir: &Path) {
    let dash = std::fs::canonicalize("/bin/sh").unwrap();
    let out = Command::new("ldd").arg(&dash).output().unwrap();
    let mut files = vec![dash.clone()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        for tok in line.split_whitespace() {
            if tok.starts_with('/') {
                files.push(PathBuf::from(tok));
            }
        }
    }
    for f in files {
        let dst = dir.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(std::fs::canonicalize(&f).unwrap(), &dst).unwrap();
    }
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    if !dir.join("bin/sh").exists() {
        symlink(&dash, dir.join("bin/sh")).unwrap();
    }
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

/// Writes `data` into the blobs of the OCI image layout in `out`; its digest.
pub fn put_blob(out: &Path, data: &[u8]) -> String {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let h = hex(&Sha256::digest(data));
    std::fs::write(blobs.join(&h), data).unwrap();
    format!("sha256:{h}")
}

/// The descriptor of a layer `blob` of `media_type`, written into `out`'s blobs.
pub fn layer_desc(out: &Path, blob: &[u8], media_type: &str) -> Value {
    json!({"mediaType": media_type, "digest": put_blob(out, blob), "size": blob.len()})
}

/// Completes the OCI image layout in `out` around layers already in its blobs
/// (`layers`: their descriptors, bottom first): the image config (with `config` as its
/// `config` object), the manifest, index.json and oci-layout.
pub fn oci_image(out: &Path, config: Value, layers: Vec<Value>) {
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "config": config, "rootfs": {"type": "layers", "diff_ids": []}}))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put_blob(out, &config), "size": config.len()},
        "layers": layers}))
    .unwrap();
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": MANIFEST, "digest": put_blob(out, &manifest), "size": manifest.len()}]});
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

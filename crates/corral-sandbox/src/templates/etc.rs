//! corral's own top layer of every imported template: the users and files a sandbox
//! needs, whatever the image has. It holds
//! - /etc/passwd and /etc/group: the image's (the topmost layer's copy), with a
//!   `sandbox` user and group 1000 (home /home/sandbox) and `root` added when missing; a
//!   uid or gid 1000 the image already names (e.g. `node`) is kept as it is;
//! - /etc/hosts, /etc/hostname and /etc/resolv.conf (no network: no resolver named);
//! - the mount points /proc, /dev, /sys, /tmp (1777), /home and /root (0700), unless
//!   the image has something else than a directory there.
//!
//! It is a content-addressed layer like the image's: templates with the same users
//! share it.

use std::path::{Path, PathBuf};
use std::{fs, io};

use super::layer::{is_whiteout, LayerWriter};
use super::TemplateStoreError;
use crate::host::{GROUP, HOSTS, PASSWD, RESOLV};

/// What the image layers show at `rel` (topmost first): a file's bytes, `Err(true)` for
/// "exists but not a regular file", `Err(false)` for absent.
fn merged(layers_top_first: &[PathBuf], rel: &str) -> Result<Vec<u8>, bool> {
    for l in layers_top_first {
        match fs::symlink_metadata(l.join(rel)) {
            Ok(m) if is_whiteout(&m) => return Err(false),
            Ok(m) if m.is_file() => return fs::read(l.join(rel)).map_err(|_| true),
            Ok(_) => return Err(true),
            Err(_) => {}
        }
    }
    Err(false)
}

fn kind(layers_top_first: &[PathBuf], rel: &str) -> Option<bool> {
    for l in layers_top_first {
        if let Ok(m) = fs::symlink_metadata(l.join(rel)) {
            if is_whiteout(&m) {
                return None;
            }
            return Some(m.is_dir());
        }
    }
    None
}

/// `text` with `line` appended unless a line's field `field` (0 = name, 2 = id) is
/// already `name` or `id`.
fn ensure_entry(text: &str, name: &str, id: &str, line: &str) -> String {
    let taken = text.lines().any(|l| {
        let f: Vec<&str> = l.split(':').collect();
        f.first() == Some(&name) || f.get(2) == Some(&id)
    });
    let mut out = text.to_string();
    if !taken {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes corral's layer into `w`, given the image's layers topmost first.
pub(crate) fn write_corral_layer(
    w: &LayerWriter,
    layers_top_first: &[PathBuf],
) -> Result<(), TemplateStoreError> {
    let root = (w.host_id(0), w.host_id(0));
    w.dir(None, 0o755, root)?;
    if kind(layers_top_first, "etc") == Some(false) {
        return Err(TemplateStoreError::BadSource {
            path: PathBuf::from("/etc"),
            why: "the image's /etc is not a directory".into(),
        });
    }
    let passwd = match merged(layers_top_first, "etc/passwd") {
        Ok(b) => {
            let t = String::from_utf8_lossy(&b).into_owned();
            let t = ensure_entry(&t, "root", "0", "root:x:0:0:root:/root:/bin/sh");
            ensure_entry(
                &t,
                "sandbox",
                "1000",
                "sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh",
            )
        }
        Err(_) => PASSWD.to_string(),
    };
    let group = match merged(layers_top_first, "etc/group") {
        Ok(b) => {
            let t = String::from_utf8_lossy(&b).into_owned();
            let t = ensure_entry(&t, "root", "0", "root:x:0:");
            ensure_entry(&t, "sandbox", "1000", "sandbox:x:1000:")
        }
        Err(_) => GROUP.to_string(),
    };
    for (rel, text) in [
        ("etc/passwd", passwd.as_str()),
        ("etc/group", group.as_str()),
        ("etc/hosts", HOSTS),
        ("etc/hostname", "sandbox\n"),
        ("etc/resolv.conf", RESOLV),
    ] {
        // A symlinked resolv.conf (systemd images) is replaced: this layer's file hides it.
        w.file(
            Path::new(rel),
            &mut io::Cursor::new(text),
            0o644,
            root,
            Some(0),
        )?;
    }
    for (d, mode) in [
        ("proc", 0o555),
        ("dev", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("home", 0o755),
        ("root", 0o700),
    ] {
        match kind(layers_top_first, d) {
            Some(false) => {} // the image has a file or link there: leave it
            _ => w.dir(Some(Path::new(d)), mode, root)?,
        }
    }
    Ok(())
}

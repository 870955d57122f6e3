//! Test images for the template tests: a minimal root file system around the host's
//! dash (no download, no Debian fixture needed).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

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

//! The `host` template: the host's /usr, read-only, under a small synthesized root.
//!
//! The skeleton (top-level dirs, merged-usr links, /etc) is built once into
//! `templates/host-<key>`, where the key hashes everything it was built from (corral's
//! version and the identity of each copied host file), so a host update yields a new
//! skeleton. It is built in a temporary directory and renamed into place, so a crash or
//! a concurrent build never leaves a half template.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::{fs, io};

use corral_isolate::{Bind, RootfsSpec};
use sha2::{Digest, Sha256};

/// Bumped whenever the skeleton's layout changes.
const SKELETON_VERSION: &str = "host-skeleton-2";

/// Top-level names that merged-usr hosts link into /usr.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Host files copied into the skeleton's /etc (when present): what programs need to
/// find libraries, trust TLS peers and resolve `alternatives` links. Nothing with
/// secrets or host identity (no shadow, no machine-id, no ssh keys).
const ETC_COPIES: &[&str] = &[
    "ld.so.cache",
    "ssl/certs/ca-certificates.crt",
    "ssl/openssl.cnf",
    "mime.types",
];

/// Host /etc directories whose symlinks are recreated (Debian's alternatives system:
/// /usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk).
const ETC_LINK_DIRS: &[&str] = &["alternatives"];

pub(crate) const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
pub(crate) const GROUP: &str = "root:x:0:\ntty:x:5:\nsandbox:x:1000:\nnogroup:x:65534:\n";
pub(crate) const HOSTS: &str =
    "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n\
networks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n";
/// No network by default: no resolver is reachable, so none is named.
pub(crate) const RESOLV: &str = "# corral: this sandbox has no network (--net none)\n";

/// Returns the host template's root, building its skeleton if needed.
pub(crate) fn host_rootfs(
    templates: &Path,
    id_base: u32,
) -> Result<RootfsSpec, (PathBuf, io::Error)> {
    let key = skeleton_key(Path::new("/"), id_base);
    let dir = templates.join(format!("host-{key}"));
    let wrap = |e| (dir.clone(), e);
    if !dir.join("etc/passwd").exists() {
        build_atomically(Path::new("/"), &dir, id_base).map_err(wrap)?;
    }
    let mut ro_binds = vec![Bind {
        source: PathBuf::from("/usr"),
        target: PathBuf::from("/usr"),
        writable: false,
    }];
    // A host without merged /usr: its real /bin, /lib... are bound read-only too.
    for name in USR_LINKS {
        let p = Path::new("/").join(name);
        if let Ok(m) = fs::symlink_metadata(&p) {
            if m.is_dir() {
                ro_binds.push(Bind {
                    source: p.clone(),
                    target: p,
                    writable: false,
                });
            }
        }
    }
    Ok(RootfsSpec {
        lower: dir,
        ro_binds,
        layers: vec![],
    })
}

/// A short hash of the skeleton's inputs.
fn skeleton_key(host_root: &Path, id_base: u32) -> String {
    let mut h = Sha256::new();
    h.update(SKELETON_VERSION);
    h.update(id_base.to_le_bytes());
    h.update(env!("CARGO_PKG_VERSION"));
    let mut inputs: Vec<PathBuf> = ETC_COPIES
        .iter()
        .map(|p| host_root.join("etc").join(p))
        .collect();
    inputs.extend(ETC_LINK_DIRS.iter().map(|d| host_root.join("etc").join(d)));
    inputs.extend(USR_LINKS.iter().map(|n| host_root.join(n)));
    for p in inputs {
        h.update(p.as_os_str().as_encoded_bytes());
        if let Ok(m) = fs::symlink_metadata(&p) {
            h.update(m.ino().to_le_bytes());
            h.update(m.size().to_le_bytes());
            h.update(m.mtime().to_le_bytes());
            h.update(m.mtime_nsec().to_le_bytes());
        }
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn build_atomically(host_root: &Path, dir: &Path, id_base: u32) -> io::Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    let built = build_skeleton(host_root, &tmp)
        .and_then(|()| chown_tree(&tmp, id_base))
        .and_then(|()| fs::rename(&tmp, dir));
    match built {
        Ok(()) => Ok(()),
        Err(_) if dir.join("etc/passwd").exists() => {
            // Another corral finished the same skeleton first; use theirs.
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Gives every file of the skeleton to `id` (uid and gid), without following links.
fn chown_tree(root: &Path, id: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(root, Some(id), Some(id))?;
    if fs::symlink_metadata(root)?.is_dir() {
        for e in fs::read_dir(root)? {
            chown_tree(&e?.path(), id)?;
        }
    }
    Ok(())
}

fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

/// Writes the skeleton into `out` (which must not exist yet).
fn build_skeleton(host_root: &Path, out: &Path) -> io::Result<()> {
    mkdir(out, 0o755)?;
    for (d, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("usr", 0o755),
        ("tmp", 0o1777),
        ("home", 0o755),
        ("root", 0o700),
        ("etc", 0o755),
        ("etc/ssl/certs", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("run", 0o755),
        ("mnt", 0o755),
        ("opt", 0o755),
    ] {
        mkdir(&out.join(d), mode)?;
    }
    for name in USR_LINKS {
        let host = host_root.join(name);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => symlink(fs::read_link(&host)?, out.join(name))?,
            Ok(m) if m.is_dir() => mkdir(&out.join(name), 0o755)?,
            _ => {}
        }
    }
    let etc = out.join("etc");
    write(&etc.join("passwd"), PASSWD.as_bytes())?;
    write(&etc.join("group"), GROUP.as_bytes())?;
    write(&etc.join("hosts"), HOSTS.as_bytes())?;
    write(&etc.join("hostname"), b"sandbox\n")?;
    write(&etc.join("nsswitch.conf"), NSSWITCH.as_bytes())?;
    write(&etc.join("resolv.conf"), RESOLV.as_bytes())?;
    symlink("/usr/share/zoneinfo/Etc/UTC", etc.join("localtime"))?;
    if host_root.join("usr/lib/os-release").exists() {
        symlink("../usr/lib/os-release", etc.join("os-release"))?;
    }
    for rel in ETC_COPIES {
        let src = host_root.join("etc").join(rel);
        if let Ok(bytes) = fs::read(&src) {
            let dst = etc.join(rel);
            if let Some(p) = dst.parent() {
                fs::create_dir_all(p)?;
            }
            write(&dst, &bytes)?;
        }
    }
    for d in ETC_LINK_DIRS {
        let src = host_root.join("etc").join(d);
        let Ok(entries) = fs::read_dir(&src) else {
            continue;
        };
        let dst = etc.join(d);
        mkdir(&dst, 0o755)?;
        for e in entries.flatten() {
            if e.file_type()?.is_symlink() {
                symlink(fs::read_link(e.path())?, dst.join(e.file_name()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test's own uid: chown to it works without privileges.
    fn nix_uid() -> u32 {
        fs::metadata("/proc/self").map(|m| m.uid()).unwrap()
    }

    fn fake_host() -> tempfile::TempDir {
        let h = tempfile::tempdir().unwrap();
        let r = h.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        fs::create_dir_all(r.join("etc/ssl/certs")).unwrap();
        fs::create_dir_all(r.join("etc/alternatives")).unwrap();
        fs::write(r.join("etc/ssl/certs/ca-certificates.crt"), "CERTS").unwrap();
        fs::write(r.join("etc/ld.so.cache"), "CACHE").unwrap();
        fs::write(r.join("etc/shadow"), "root:SECRET").unwrap();
        symlink("/usr/bin/mawk", r.join("etc/alternatives/awk")).unwrap();
        h
    }

    #[test]
    fn skeleton_has_users_links_and_only_the_listed_host_files() {
        let host = fake_host();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("host-x");
        build_atomically(host.path(), &dir, nix_uid()).unwrap();
        let passwd = fs::read_to_string(dir.join("etc/passwd")).unwrap();
        assert!(passwd.contains("sandbox:x:1000:1000"));
        assert_eq!(
            fs::read_link(dir.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert!(!dir.join("sbin").exists());
        assert_eq!(
            fs::read_to_string(dir.join("etc/ssl/certs/ca-certificates.crt")).unwrap(),
            "CERTS"
        );
        assert_eq!(
            fs::read_link(dir.join("etc/alternatives/awk")).unwrap(),
            Path::new("/usr/bin/mawk")
        );
        assert!(
            !dir.join("etc/shadow").exists(),
            "host secrets must not be copied"
        );
        let tmp_mode = fs::metadata(dir.join("tmp")).unwrap().permissions().mode();
        assert_eq!(tmp_mode & 0o7777, 0o1777);
        // no temp dir left beside it
        let names: Vec<_> = fs::read_dir(out.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn key_changes_when_a_copied_host_file_changes() {
        let host = fake_host();
        let a = skeleton_key(host.path(), 7);
        assert_eq!(a, skeleton_key(host.path(), 7));
        assert_ne!(a, skeleton_key(host.path(), 8));
        fs::write(host.path().join("etc/ld.so.cache"), "NEW CACHE CONTENT").unwrap();
        assert_ne!(a, skeleton_key(host.path(), 7));
    }

    #[test]
    fn a_failed_build_leaves_nothing() {
        let host = fake_host();
        let out = tempfile::tempdir().unwrap();
        // The skeleton's parent is a file: creating the build dir fails.
        let blocker = out.path().join("templates");
        fs::write(&blocker, "").unwrap();
        assert!(build_atomically(host.path(), &blocker.join("host-y"), nix_uid()).is_err());
        let names: Vec<_> = fs::read_dir(out.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}

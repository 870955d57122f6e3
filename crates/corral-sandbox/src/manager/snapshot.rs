//! Snapshots: a sandbox's writable layer (the overlay's upper directory), copied while
//! the sandbox is frozen into DIR/snapshots/<hash>, content-addressed. A sandbox created
//! from a snapshot stacks that directory read-only above its template, so one snapshot
//! serves any number of children without a copy each.
//!
//! The copy walks the layer through file descriptors only (openat with O_NOFOLLOW, one
//! name at a time): the layer's contents come from the sandbox and are untrusted, so
//! no path is ever resolved through them. Limitation: overlayfs "opaque directory"
//! markers (an xattr) are not carried over yet, so a directory the sandbox deleted and
//! re-created shows the template's old entries again in children.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use corral_isolate::ctl::{CtlOp, CtlReply};
use corral_types::api::{SandboxState, Snapshot, SnapshotList};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use sha2::{Digest, Sha256};

use super::clock::{now_ms, rfc3339};
use super::live::Live;
use super::store::SnapshotRow;
use super::{lifecycle, Manager, SandboxError};

pub(crate) fn to_api(s: &SnapshotRow) -> Snapshot {
    Snapshot {
        id: s.id.clone(),
        source_sandbox_id: s.source_sandbox_id.clone(),
        template: s.template.clone(),
        tenant: s.tenant.clone(),
        size_bytes: s.size_bytes,
        created_at: rfc3339(s.created_at_ms),
    }
}

pub(crate) fn list(
    m: &Manager,
    tenant: &str,
    cursor: Option<&str>,
    limit: u32,
) -> Result<SnapshotList, SandboxError> {
    let limit = if limit == 0 {
        corral_types::api::PAGE_DEFAULT
    } else {
        limit.min(corral_types::api::PAGE_MAX)
    };
    let after = match cursor {
        None => 0,
        Some(c) => c.parse::<i64>().map_err(|_| {
            SandboxError::InvalidRequest(format!("cursor {c:?} is not one this server gave out"))
        })?,
    };
    let rows = m.store.list_snapshots(tenant, after, limit + 1)?;
    let more = rows.len() > limit as usize;
    let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
    Ok(SnapshotList {
        next_cursor: if more {
            rows.last().map(|r| r.seq.to_string())
        } else {
            None
        },
        snapshots: rows.iter().map(to_api).collect(),
    })
}

pub(crate) async fn delete(m: &Manager, tenant: &str, id: &str) -> Result<(), SandboxError> {
    let row = m
        .store
        .get_snapshot(tenant, id)?
        .ok_or_else(|| SandboxError::NotFound(format!("no snapshot {id}")))?;
    let in_use = m.live_list().iter().any(|l| {
        let r = l.row();
        r.snapshot_id.as_deref() == Some(id) && r.tenant.as_deref() == Some(tenant)
    });
    if in_use {
        return Err(SandboxError::Conflict(format!(
            "snapshot {id} is in use by a running sandbox; delete those sandboxes first"
        )));
    }
    let still_used = m.store.delete_snapshot(tenant, id, &row.layer)?;
    if !still_used {
        let dir = m.cfg.data_dir.join("snapshots").join(&row.layer);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }
    Ok(())
}

pub(crate) async fn take(m: &Manager, l: &Arc<Live>) -> Result<Snapshot, SandboxError> {
    let _op = l.op.lock().await;
    let was = l.state();
    if !matches!(was, SandboxState::Running | SandboxState::Paused) {
        return Err(SandboxError::Conflict(format!(
            "sandbox {} is {}; only a running or paused sandbox can be snapshotted",
            l.id,
            was.as_str()
        )));
    }
    // The upper dir comes from init, which must be awake to answer.
    if was == SandboxState::Paused {
        lifecycle::freeze(l, false).await?;
    }
    let upper = l.conn.call(CtlOp::UpperDir, &[]).await;
    let frozen = lifecycle::freeze(l, true).await;
    let result = match (upper, frozen) {
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(e),
        (Ok((CtlReply::Opened, mut fds)), Ok(())) => match fds.pop() {
            Some(fd) => {
                let base = m.cfg.data_dir.join("snapshots");
                let tmp = base.join(format!(".tmp-{}-{}", l.id, now_ms()));
                let tmp2 = tmp.clone();
                tokio::task::spawn_blocking(move || copy_layer(fd, &tmp2))
                    .await
                    .map_err(|e| SandboxError::Internal(format!("snapshot task failed: {e}")))
                    .and_then(|r| r)
                    .and_then(|(hash, size)| {
                        let dest = base.join(&hash);
                        if dest.exists() {
                            let _ = std::fs::remove_dir_all(&tmp);
                        } else {
                            std::fs::rename(&tmp, &dest).map_err(|e| {
                                let _ = std::fs::remove_dir_all(&tmp);
                                SandboxError::Internal(format!("storing the snapshot failed: {e}"))
                            })?;
                        }
                        Ok((hash, size))
                    })
                    .inspect_err(|_| {
                        let _ = std::fs::remove_dir_all(&tmp);
                    })
            }
            None => Err(SandboxError::Internal("the sandbox sent no layer".into())),
        },
        (Ok((other, _)), Ok(())) => Err(SandboxError::Internal(format!(
            "the sandbox answered a snapshot with {other:?}"
        ))),
    };
    if was == SandboxState::Running {
        lifecycle::freeze(l, false).await?;
    }
    let (hash, size) = result?;
    let row = l.row();
    let snap = SnapshotRow {
        seq: 0,
        id: format!("snap-{}", &hash[..32]),
        tenant: row.tenant.clone().unwrap_or_default(),
        source_sandbox_id: l.id.clone(),
        template: row.template.clone(),
        layer: hash,
        size_bytes: size,
        created_at_ms: now_ms(),
    };
    m.store.insert_snapshot(&snap)?;
    let stored = m
        .store
        .get_snapshot(&snap.tenant, &snap.id)?
        .unwrap_or(snap);
    Ok(to_api(&stored))
}

fn io(what: &str) -> impl Fn(nix::errno::Errno) -> SandboxError + '_ {
    move |e| SandboxError::Internal(format!("snapshot: {what}: {e}"))
}

/// Copies the tree under `src` into a new directory `dest`, preserving types, modes,
/// owners, mtimes, symlinks and whiteouts. Returns (hex SHA-256 of the manifest,
/// bytes of file data).
fn copy_layer(src: OwnedFd, dest: &Path) -> Result<(String, u64), SandboxError> {
    std::fs::create_dir(dest)
        .map_err(|e| SandboxError::Internal(format!("creating {}: {e}", dest.display())))?;
    let dst = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io("opening the snapshot directory"))?;
    let src_dir = openat(
        &src,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io("opening the sandbox's layer"))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    copy_dir(&src_dir, &dst, "", &mut hasher, &mut size, 0)?;
    let hash = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hash, size))
}

/// Deepest directory nesting copied; deeper trees are refused (a sandbox could build
/// one to exhaust the daemon's stack).
const MAX_DEPTH: usize = 256;

fn copy_dir(
    src: &OwnedFd,
    dst: &OwnedFd,
    rel: &str,
    hasher: &mut Sha256,
    size: &mut u64,
    depth: usize,
) -> Result<(), SandboxError> {
    if depth > MAX_DEPTH {
        return Err(SandboxError::InvalidRequest(format!(
            "the sandbox's files nest deeper than {MAX_DEPTH} directories; flatten them to snapshot"
        )));
    }
    let dup = nix::unistd::dup(src).map_err(io("dup"))?;
    let mut dir = nix::dir::Dir::from_fd(dup).map_err(io("reading a directory"))?;
    let mut names: Vec<std::ffi::CString> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    names.sort();
    for name in names {
        let st = fstatat(src, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io("stat"))?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let shown = format!("{rel}/{}", name.to_string_lossy());
        let owner = (
            Some(nix::unistd::Uid::from_raw(st.st_uid)),
            Some(nix::unistd::Gid::from_raw(st.st_gid)),
        );
        let line = if kind == SFlag::S_IFDIR {
            nix::sys::stat::mkdirat(dst, name.as_c_str(), Mode::from_bits_truncate(0o700))
                .map_err(io("mkdir"))?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let s2 = openat(src, name.as_c_str(), flags, Mode::empty()).map_err(io("open dir"))?;
            let d2 = openat(dst, name.as_c_str(), flags, Mode::empty()).map_err(io("open dir"))?;
            copy_dir(&s2, &d2, &shown, hasher, size, depth + 1)?;
            nix::unistd::fchown(&d2, owner.0, owner.1).map_err(io("chown"))?;
            nix::sys::stat::fchmod(&d2, perm).map_err(io("chmod"))?;
            format!(
                "d {shown} {:o} {} {}\n",
                st.st_mode & 0o7777,
                st.st_uid,
                st.st_gid
            )
        } else if kind == SFlag::S_IFREG {
            let s2 = openat(
                src,
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(io("open file"))?;
            let d2 = openat(
                dst,
                name.as_c_str(),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(io("create file"))?;
            let digest = copy_file(s2, &d2)?;
            *size += st.st_size as u64;
            nix::unistd::fchown(&d2, owner.0, owner.1).map_err(io("chown"))?;
            nix::sys::stat::fchmod(&d2, perm).map_err(io("chmod"))?;
            let t = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
            nix::sys::stat::futimens(
                &d2,
                &t(st.st_atime, st.st_atime_nsec),
                &t(st.st_mtime, st.st_mtime_nsec),
            )
            .map_err(io("utimes"))?;
            format!(
                "f {shown} {:o} {} {} {digest}\n",
                st.st_mode & 0o7777,
                st.st_uid,
                st.st_gid
            )
        } else if kind == SFlag::S_IFLNK {
            let target = nix::fcntl::readlinkat(src, name.as_c_str()).map_err(io("readlink"))?;
            nix::unistd::symlinkat(target.as_os_str(), dst, name.as_c_str())
                .map_err(io("symlink"))?;
            nix::unistd::fchownat(
                dst,
                name.as_c_str(),
                owner.0,
                owner.1,
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(io("chown"))?;
            format!(
                "l {shown} {} {} {}\n",
                st.st_uid,
                st.st_gid,
                target.to_string_lossy()
            )
        } else if kind == SFlag::S_IFCHR && st.st_rdev == 0 {
            // An overlayfs whiteout: the file was deleted from the template.
            nix::sys::stat::mknodat(dst, name.as_c_str(), SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(io("whiteout"))?;
            format!("w {shown}\n")
        } else {
            // Fifos, sockets and device nodes are not carried into snapshots.
            continue;
        };
        hasher.update(line.as_bytes());
    }
    Ok(())
}

fn copy_file(src: OwnedFd, dst: &OwnedFd) -> Result<String, SandboxError> {
    let mut r = std::fs::File::from(src);
    let mut w = std::fs::File::from(nix::unistd::dup(dst).map_err(io("dup"))?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| SandboxError::Internal(format!("snapshot: reading a file: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        w.write_all(&buf[..n])
            .map_err(|e| SandboxError::Internal(format!("snapshot: writing a file: {e}")))?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

//! Files inside a sandbox. Every path is resolved by the kernel inside the sandbox, by
//! a process with the sandbox user's rights (see docs/daemon.md): the daemon only
//! checks that a path is well formed and then works on the file descriptor init hands
//! back. Nothing here ever opens a path on the host.

use std::os::fd::OwnedFd;

use corral_isolate::ctl::{CtlEntry, CtlOp, CtlReply, EntryKind, OpenAccess};
use corral_isolate::SandboxUser;
use corral_types::api::{FileEntry, FileKind, FileList, WatchEvent, WatchEventKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::clock::rfc3339;
use super::live::Live;
use super::SandboxError;

/// Longest path accepted.
const PATH_MAX: usize = 4096;
/// Most entries one listing returns.
pub(crate) const LIST_LIMIT: u32 = 10_000;

/// A path must be absolute, at most 4096 bytes, without NUL. `..` and symlinks are the
/// kernel's business inside the sandbox: they cannot leave it.
pub(crate) fn check_path(path: &str) -> Result<(), SandboxError> {
    if !path.starts_with('/') {
        return Err(SandboxError::InvalidRequest(format!(
            "path {path:?} is not absolute; give a path inside the sandbox such as /home/sandbox/data.csv"
        )));
    }
    if path.len() > PATH_MAX || path.contains('\0') {
        return Err(SandboxError::InvalidRequest(
            "path is longer than 4096 bytes or contains a NUL byte".into(),
        ));
    }
    Ok(())
}

fn user() -> SandboxUser {
    SandboxUser::Sandbox
}

fn entry(dir: &str, e: CtlEntry) -> FileEntry {
    let path = if e.name.is_empty() {
        dir.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{}", e.name)
    } else {
        format!("{dir}/{}", e.name)
    };
    FileEntry {
        name: e.name,
        path,
        kind: match e.kind {
            EntryKind::File => FileKind::File,
            EntryKind::Dir => FileKind::Dir,
            EntryKind::Symlink => FileKind::Symlink,
            EntryKind::Other => FileKind::Other,
        },
        size: e.size,
        mode: e.mode & 0o7777,
        mtime: rfc3339((e.mtime_unix_ns.max(0) / 1_000_000) as u64),
        symlink_target: e.symlink_target,
    }
}

async fn open(live: &Live, path: &str, access: OpenAccess) -> Result<OwnedFd, SandboxError> {
    check_path(path)?;
    live.ensure_running()?;
    let (reply, mut fds) = live
        .conn
        .call(
            CtlOp::Open {
                path: path.to_string(),
                access,
                mode: 0o644,
                user: user(),
            },
            &[],
        )
        .await?;
    match (reply, fds.pop()) {
        (CtlReply::Opened, Some(fd)) => Ok(fd),
        (other, _) => Err(SandboxError::Internal(format!(
            "the sandbox answered an open with {other:?}"
        ))),
    }
}

/// Opens for reading: the file and its size.
pub(crate) async fn read(live: &Live, path: &str) -> Result<(tokio::fs::File, u64), SandboxError> {
    let fd = open(live, path, OpenAccess::Read).await?;
    let file = std::fs::File::from(fd);
    let size = file
        .metadata()
        .map_err(|e| SandboxError::Internal(format!("stat of {path} failed: {e}")))?
        .len();
    Ok((tokio::fs::File::from_std(file), size))
}

/// Streams `body` into a new (or truncated) file.
pub(crate) async fn write<R: AsyncRead + Unpin + Send>(
    live: &Live,
    path: &str,
    mut body: R,
) -> Result<u64, SandboxError> {
    let fd = open(live, path, OpenAccess::Create).await?;
    let mut file = tokio::fs::File::from_std(std::fs::File::from(fd));
    let copied = copy_batched(&mut body, &mut file).await;
    let flushed = match copied {
        Ok(n) => file.flush().await.map(|_| n),
        Err(e) => Err(e),
    };
    match flushed {
        Ok(n) => Ok(n),
        Err(e) => {
            drop(file);
            // Leave no half-written file behind.
            let _ = remove(live, path, false).await;
            if e.raw_os_error() == Some(nix::libc::ENOSPC)
                || e.raw_os_error() == Some(nix::libc::EFBIG)
            {
                Err(SandboxError::NoSpace(format!(
                    "the sandbox's disk is full writing {path}; raise resources.disk when creating it"
                )))
            } else {
                Err(SandboxError::InvalidRequest(format!(
                    "the upload of {path} failed: {e}"
                )))
            }
        }
    }
}

/// How much of an upload is gathered before one write to the file: each write of a
/// tokio file is a trip to the blocking pool, so 8 KiB writes (tokio::io::copy's) cost
/// more CPU than the bytes themselves.
const UPLOAD_BATCH: usize = 1 << 20;

/// Copies `body` into `file` in writes of up to [`UPLOAD_BATCH`] bytes; returns the
/// bytes copied.
async fn copy_batched<R: AsyncRead + Unpin>(
    body: &mut R,
    file: &mut tokio::fs::File,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; UPLOAD_BATCH];
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = body.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(total);
        }
        file.write_all(&buf[..filled]).await?;
        total += filled as u64;
        if filled < buf.len() {
            return Ok(total);
        }
    }
}

/// Lists a directory.
pub(crate) async fn list(live: &Live, path: &str) -> Result<FileList, SandboxError> {
    check_path(path)?;
    live.ensure_running()?;
    let (reply, _) = live
        .conn
        .call(
            CtlOp::List {
                path: path.to_string(),
                user: user(),
                limit: LIST_LIMIT,
            },
            &[],
        )
        .await?;
    match reply {
        CtlReply::Listing { entries, truncated } => Ok(FileList {
            path: path.to_string(),
            entries: entries.into_iter().map(|e| entry(path, e)).collect(),
            truncated,
        }),
        other => Err(SandboxError::Internal(format!(
            "the sandbox answered a listing with {other:?}"
        ))),
    }
}

/// Stats one path.
pub(crate) async fn stat(live: &Live, path: &str) -> Result<FileEntry, SandboxError> {
    check_path(path)?;
    live.ensure_running()?;
    let (reply, _) = live
        .conn
        .call(
            CtlOp::Stat {
                path: path.to_string(),
                user: user(),
            },
            &[],
        )
        .await?;
    match reply {
        CtlReply::Stat { entry: e } => {
            let (dir, name) = match path.rsplit_once('/') {
                Some(("", n)) => ("/", n),
                Some((d, n)) => (d, n),
                None => ("/", path),
            };
            let mut fe = entry(
                dir,
                CtlEntry {
                    name: name.to_string(),
                    ..e
                },
            );
            fe.path = path.to_string();
            Ok(fe)
        }
        other => Err(SandboxError::Internal(format!(
            "the sandbox answered a stat with {other:?}"
        ))),
    }
}

async fn simple(live: &Live, op: CtlOp) -> Result<(), SandboxError> {
    live.ensure_running()?;
    live.conn.call(op, &[]).await.map(|_| ())
}

/// Creates a directory.
pub(crate) async fn mkdir(live: &Live, path: &str, parents: bool) -> Result<(), SandboxError> {
    check_path(path)?;
    simple(
        live,
        CtlOp::Mkdir {
            path: path.to_string(),
            parents,
            mode: 0o755,
            user: user(),
        },
    )
    .await
}

/// Removes a path.
pub(crate) async fn remove(live: &Live, path: &str, recursive: bool) -> Result<(), SandboxError> {
    check_path(path)?;
    if path.trim_end_matches('/').is_empty() {
        return Err(SandboxError::InvalidRequest(
            "refusing to remove the sandbox's root directory".into(),
        ));
    }
    simple(
        live,
        CtlOp::Remove {
            path: path.to_string(),
            recursive,
            user: user(),
        },
    )
    .await
}

/// Renames a path.
pub(crate) async fn rename(live: &Live, from: &str, to: &str) -> Result<(), SandboxError> {
    check_path(from)?;
    check_path(to)?;
    simple(
        live,
        CtlOp::Rename {
            from: from.to_string(),
            to: to.to_string(),
            user: user(),
        },
    )
    .await
}

/// Watches a directory: an inotify descriptor from inside, read here.
pub(crate) async fn watch(
    live: &Live,
    path: &str,
    recursive: bool,
) -> Result<mpsc::Receiver<WatchEvent>, SandboxError> {
    check_path(path)?;
    live.ensure_running()?;
    let (reply, mut fds) = live
        .conn
        .call(
            CtlOp::Watch {
                path: path.to_string(),
                recursive,
                user: user(),
            },
            &[],
        )
        .await?;
    let (watches, fd) = match (reply, fds.pop()) {
        (CtlReply::Watching { watches }, Some(fd)) => (watches, fd),
        (other, _) => {
            return Err(SandboxError::Internal(format!(
                "the sandbox answered a watch with {other:?}"
            )))
        }
    };
    let afd = super::conn::register(fd)
        .map_err(|e| SandboxError::Internal(format!("watching the inotify descriptor: {e}")))?;
    let (tx, rx) = mpsc::channel(256);
    let closed = live.conn.clone();
    tokio::spawn(async move {
        let dirs: std::collections::HashMap<i32, String> = watches.into_iter().collect();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let ready = tokio::select! {
                r = afd.readable() => r,
                _ = closed.closed() => break,
                _ = tx.closed() => break,
            };
            let Ok(mut guard) = ready else { break };
            let n = match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => break,
                Err(_would_block) => continue,
            };
            for ev in parse_inotify(&buf[..n], &dirs) {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

const IN_MODIFY: u32 = 0x2;
const IN_ATTRIB: u32 = 0x4;
const IN_CLOSE_WRITE: u32 = 0x8;
const IN_MOVED_FROM: u32 = 0x40;
const IN_MOVED_TO: u32 = 0x80;
const IN_CREATE: u32 = 0x100;
const IN_DELETE: u32 = 0x200;

/// Decodes `struct inotify_event` records (wd i32, mask u32, cookie u32, len u32,
/// name[len]) into watch events.
fn parse_inotify(mut buf: &[u8], dirs: &std::collections::HashMap<i32, String>) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let wd = word(0) as i32;
        let mask = word(4);
        let len = word(12) as usize;
        if buf.len() < 16 + len {
            break;
        }
        let name = &buf[16..16 + len];
        let name =
            String::from_utf8_lossy(name.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
        buf = &buf[16 + len..];
        let Some(dir) = dirs.get(&wd) else { continue };
        let path = if name.is_empty() {
            dir.clone()
        } else if dir.ends_with('/') {
            format!("{dir}{name}")
        } else {
            format!("{dir}/{name}")
        };
        let kind = if mask & IN_CREATE != 0 {
            WatchEventKind::Create
        } else if mask & IN_DELETE != 0 {
            WatchEventKind::Remove
        } else if mask & (IN_MOVED_FROM | IN_MOVED_TO) != 0 {
            WatchEventKind::Rename
        } else if mask & (IN_MODIFY | IN_CLOSE_WRITE) != 0 {
            WatchEventKind::Write
        } else if mask & IN_ATTRIB != 0 {
            WatchEventKind::Chmod
        } else {
            continue;
        };
        out.push(WatchEvent { kind, path });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_sane() {
        assert!(check_path("/home/sandbox/a").is_ok());
        assert!(
            check_path("/../../etc/shadow").is_ok(),
            "resolved inside the sandbox"
        );
        assert!(check_path("relative").is_err());
        assert!(check_path("/a\0b").is_err());
        assert!(check_path(&format!("/{}", "a".repeat(5000))).is_err());
    }

    #[test]
    fn inotify_records_decode() {
        let mut buf = Vec::new();
        for (wd, mask, name) in [
            (1i32, IN_CREATE, "new.txt"),
            (1, IN_DELETE, "old"),
            (9, IN_CREATE, "x"),
        ] {
            let mut n = name.as_bytes().to_vec();
            n.resize(16, 0);
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&mask.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(n.len() as u32).to_ne_bytes());
            buf.extend_from_slice(&n);
        }
        let dirs = [(1, "/home/sandbox".to_string())].into_iter().collect();
        let ev = parse_inotify(&buf, &dirs);
        assert_eq!(
            ev,
            vec![
                WatchEvent {
                    kind: WatchEventKind::Create,
                    path: "/home/sandbox/new.txt".into()
                },
                WatchEvent {
                    kind: WatchEventKind::Remove,
                    path: "/home/sandbox/old".into()
                },
            ]
        );
    }
}

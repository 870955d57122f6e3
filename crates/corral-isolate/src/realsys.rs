//! [`MountSys`] backed by the kernel.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mkdirat, Mode, SFlag};
use nix::unistd::{chdir, chown, fchownat, pivot_root, Gid, Uid};

use crate::mounts::MountSys;

/// The real kernel.
#[derive(Debug, Default)]
pub(crate) struct RealMountSys;

fn io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl RealMountSys {
    /// Opens `root/rel`'s parent directory without following symlinks, creating missing
    /// directories (owned by `owner`) on the way. Returns the parent fd and final name.
    fn walk_parents<'a>(
        root: &Path,
        rel: &'a Path,
        owner: Option<(u32, u32)>,
    ) -> io::Result<(OwnedFd, Option<&'a std::ffi::OsStr>)> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut dir = openat(AT_FDCWD, root, flags, Mode::empty()).map_err(io)?;
        // No allocation here: this runs in the sandbox's init, where fresh writes to
        // memory shared with corral are copy-on-write faults.
        let mut names = rel.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        });
        let Some(mut current) = names.next() else {
            return Ok((dir, None));
        };
        for next in names {
            dir = Self::open_or_create_dir(&dir, current, owner)?;
            current = next;
        }
        Ok((dir, Some(current)))
    }

    fn open_or_create_dir(
        dir: &OwnedFd,
        name: &std::ffi::OsStr,
        owner: Option<(u32, u32)>,
    ) -> io::Result<OwnedFd> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(dir.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT) => {
                match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io(e)),
                }
                if let Some((uid, gid)) = owner {
                    fchownat(
                        dir.as_fd(),
                        name,
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(io)?;
                }
                openat(dir.as_fd(), name, flags, Mode::empty()).map_err(io)
            }
            // O_NOFOLLOW|O_DIRECTORY on a symlink gives ELOOP or ENOTDIR.
            Err(Errno::ELOOP | Errno::ENOTDIR) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symlink or not a directory; mount targets may not pass through symlinks",
                    name.to_string_lossy()
                ),
            )),
            Err(e) => Err(io(e)),
        }
    }
}

impl MountSys for RealMountSys {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        mount(source, target, fstype, flags, data).map_err(io)
    }

    fn mkdir(&mut self, path: &Path, mode: u32, owner: (u32, u32)) -> io::Result<()> {
        match std::fs::create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        if owner != (0, 0) {
            chown(
                path,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
            )
            .map_err(io)?;
        }
        Ok(())
    }

    fn mkdir_beneath(
        &mut self,
        root: &Path,
        rel: &Path,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()> {
        let (parent, last) = Self::walk_parents(root, rel, owner)?;
        if let Some(last) = last {
            Self::open_or_create_dir(&parent, last, owner)?;
        }
        Ok(())
    }

    fn touch_beneath(&mut self, root: &Path, rel: &Path) -> io::Result<()> {
        let (parent, last) = Self::walk_parents(root, rel, None)?;
        let Some(last) = last else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a file cannot be mounted on /",
            ));
        };
        let flags = OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_WRONLY;
        match openat(parent.as_fd(), last, flags, Mode::from_bits_truncate(0o644)) {
            Ok(_) => Ok(()),
            // An existing directory or device node: open(O_WRONLY) refuses; it still
            // exists, which is all a mount point needs.
            Err(Errno::EISDIR | Errno::EACCES | Errno::EROFS) => openat(
                parent.as_fd(),
                last,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map(|_| ())
            .map_err(io),
            Err(Errno::ELOOP) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mount target is a symlink",
            )),
            Err(e) => Err(io(e)),
        }
    }

    fn mknod_like(&mut self, source: &Path, target: &Path) -> io::Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(source)?;
        if !meta.file_type().is_char_device() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a character device on the host", source.display()),
            ));
        }
        let mode = Mode::from_bits_truncate(0o666);
        nix::sys::stat::mknod(target, SFlag::S_IFCHR, mode, meta.rdev()).map_err(io)?;
        // mknod applies the umask; the nodes must be usable by every sandbox user.
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o666))
    }

    fn kind(&mut self, path: &Path) -> Option<bool> {
        std::fs::metadata(path).ok().map(|m| m.is_dir())
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
        chdir(new_root).map_err(io)?;
        pivot_root(".", ".").map_err(io)?;
        umount2(".", MntFlags::MNT_DETACH).map_err(io)?;
        chdir("/").map_err(io)
    }
}

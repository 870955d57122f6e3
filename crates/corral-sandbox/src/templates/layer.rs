//! Writing one layer directory safely, and its content address.
//!
//! A layer is built in a fresh directory that only this import writes. Every path is
//! checked before use: relative, no `..`, and every existing component below the
//! layer's root must be a real directory (never a symlink), so nothing is ever written
//! through a link, inside or outside the layer. Owners are shifted into the sandbox id
//! range (in-image id N becomes host id `id_base + N`; ids above 65535 become nobody,
//! 65534). OCI whiteouts become overlayfs ones: `.wh.NAME` a 0/0 character device
//! named NAME, `.wh..wh..opq` the `trusted.overlay.opaque=y` attribute of its directory,
//! so image layers stay separate overlay lower layers (shared between templates)
//! instead of being flattened.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    lchown, symlink, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};

use super::TemplateStoreError;

/// The overlayfs attribute that makes a lower directory hide the layers beneath it.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// In-image ids the sandbox's id map covers.
const ID_LIMIT: u64 = 65536;
const NOBODY: u32 = 65534;

/// Turns an archive path into a relative path of normal components, refusing absolute
/// paths and `..`. `Ok(None)` is the archive's root (`./`).
pub(crate) fn clean_path(raw: &Path) -> Result<Option<PathBuf>, TemplateStoreError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => {
                return Err(TemplateStoreError::unsafe_entry(
                    raw,
                    "it is an absolute path",
                ))
            }
            Component::ParentDir => {
                return Err(TemplateStoreError::unsafe_entry(
                    raw,
                    "it contains `..` and could escape the layer",
                ))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// A layer directory being written.
#[derive(Debug)]
pub(crate) struct LayerWriter {
    root: PathBuf,
    id_base: u32,
    /// Where entries go below the root (recipes' ADD unpacks archives into a
    /// directory); empty for imports.
    prefix: PathBuf,
}

impl LayerWriter {
    /// Creates the (new) layer directory `root`.
    pub(crate) fn create(root: &Path, id_base: u32) -> io::Result<LayerWriter> {
        fs::create_dir(root)?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
        lchown(root, Some(id_base), Some(id_base))?;
        Ok(LayerWriter {
            root: root.to_path_buf(),
            id_base,
            prefix: PathBuf::new(),
        })
    }

    /// A writer for the same layer whose paths are relative to `prefix` (a relative
    /// path of normal components, already created as a real directory).
    pub(crate) fn below(&self, prefix: &Path) -> LayerWriter {
        LayerWriter {
            root: self.root.clone(),
            id_base: self.id_base,
            prefix: self.prefix.join(prefix),
        }
    }

    /// Host id of in-image id `id`.
    pub(crate) fn host_id(&self, id: u64) -> u32 {
        let id = if id < ID_LIMIT { id as u32 } else { NOBODY };
        self.id_base + id
    }

    /// Makes sure every directory of `rel`'s parent exists as a real directory of this
    /// layer (creating missing ones, root-owned 0755) and returns the host path of `rel`.
    fn parent_ready(&self, rel: &Path) -> Result<PathBuf, TemplateStoreError> {
        let rel = &self.prefix.join(rel);
        let mut at = self.root.clone();
        let parent = rel.parent().unwrap_or(Path::new(""));
        for c in parent.components() {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(TemplateStoreError::unsafe_entry(
                        rel,
                        &format!(
                            "its parent {} is a symbolic link; corral never writes through links",
                            at.strip_prefix(&self.root).unwrap_or(&at).display()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(TemplateStoreError::unsafe_entry(
                        rel,
                        "a parent of it is not a directory",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&at).map_err(|e| self.io(rel, e))?;
                    fs::set_permissions(&at, fs::Permissions::from_mode(0o755))
                        .map_err(|e| self.io(rel, e))?;
                    lchown(&at, Some(self.id_base), Some(self.id_base))
                        .map_err(|e| self.io(rel, e))?;
                }
                Err(e) => return Err(self.io(rel, e)),
            }
        }
        Ok(self.root.join(rel))
    }

    fn io(&self, rel: &Path, source: io::Error) -> TemplateStoreError {
        TemplateStoreError::Io {
            what: format!(
                "writing {} into layer {}",
                rel.display(),
                self.root.display()
            ),
            source,
        }
    }

    /// Removes whatever is at `path` (a later entry replaces an earlier one).
    fn clear(&self, rel: &Path, path: &Path, keep_dir: bool) -> Result<(), TemplateStoreError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && keep_dir => Ok(()),
            Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| self.io(rel, e)),
            Ok(_) => fs::remove_file(path).map_err(|e| self.io(rel, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(rel, e)),
        }
    }

    fn finish(
        &self,
        rel: &Path,
        path: &Path,
        mode: Option<u32>,
        owner: (u32, u32),
        mtime: Option<i64>,
    ) -> Result<(), TemplateStoreError> {
        lchown(path, Some(owner.0), Some(owner.1)).map_err(|e| self.io(rel, e))?;
        // chown clears set-id bits: the mode is set after it.
        if let Some(mode) = mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| self.io(rel, e))?;
        }
        if let Some(t) = mtime {
            let ts = TimeSpec::new(t, 0);
            utimensat(
                nix::fcntl::AT_FDCWD,
                path,
                &ts,
                &ts,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| self.io(rel, e.into()))?;
        }
        Ok(())
    }

    /// A regular file with `data`.
    pub(crate) fn file(
        &self,
        rel: &Path,
        data: &mut dyn Read,
        mode: u32,
        owner: (u32, u32),
        mtime: Option<i64>,
    ) -> Result<(), TemplateStoreError> {
        let path = self.parent_ready(rel)?;
        self.clear(rel, &path, false)?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.io(rel, e))?;
        io::copy(data, &mut f).map_err(|e| self.io(rel, e))?;
        drop(f);
        self.finish(rel, &path, Some(mode), owner, mtime)
    }

    /// A regular file copied from a host file (copy_file_range where possible).
    pub(crate) fn copy_file(
        &self,
        rel: &Path,
        src: &Path,
        mode: u32,
        owner: (u32, u32),
        mtime: Option<i64>,
    ) -> Result<(), TemplateStoreError> {
        let path = self.parent_ready(rel)?;
        self.clear(rel, &path, false)?;
        fs::copy(src, &path).map_err(|e| self.io(rel, e))?;
        self.finish(rel, &path, Some(mode), owner, mtime)
    }

    /// Like [`LayerWriter::copy_file`], but `src` is moved into the layer (a rename;
    /// a copy only across file systems): for trees that belong to the import itself.
    pub(crate) fn move_file(
        &self,
        rel: &Path,
        src: &Path,
        mode: u32,
        owner: (u32, u32),
        mtime: Option<i64>,
    ) -> Result<(), TemplateStoreError> {
        let path = self.parent_ready(rel)?;
        self.clear(rel, &path, false)?;
        match fs::rename(src, &path) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
                fs::copy(src, &path).map_err(|e| self.io(rel, e))?;
            }
            Err(e) => return Err(self.io(rel, e)),
        }
        self.finish(rel, &path, Some(mode), owner, mtime)
    }

    /// A directory (an existing one keeps its contents).
    pub(crate) fn dir(
        &self,
        rel: Option<&Path>,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<(), TemplateStoreError> {
        let Some(rel) = rel else {
            let top = self.root.join(&self.prefix);
            return self.finish(Path::new("."), &top, Some(mode), owner, None);
        };
        let path = self.parent_ready(rel)?;
        self.clear(rel, &path, true)?;
        if !path.is_dir() {
            fs::create_dir(&path).map_err(|e| self.io(rel, e))?;
        }
        self.finish(rel, &path, Some(mode), owner, None)
    }

    /// A symbolic link (stored as is, never followed).
    pub(crate) fn symlink(
        &self,
        rel: &Path,
        target: &Path,
        owner: (u32, u32),
        mtime: Option<i64>,
    ) -> Result<(), TemplateStoreError> {
        let path = self.parent_ready(rel)?;
        self.clear(rel, &path, false)?;
        symlink(target, &path).map_err(|e| self.io(rel, e))?;
        self.finish(rel, &path, None, owner, mtime)
    }

    /// A hard link to `target`, an entry already written into this layer.
    pub(crate) fn hardlink(&self, rel: &Path, target: &Path) -> Result<(), TemplateStoreError> {
        let target_path = self.parent_ready(target)?;
        match fs::symlink_metadata(&target_path) {
            Ok(m) if !m.is_dir() => {}
            _ => {
                return Err(TemplateStoreError::unsafe_entry(
                    rel,
                    &format!(
                        "it is a hard link to {}, which is not a file earlier in the same layer",
                        target.display()
                    ),
                ))
            }
        }
        let path = self.parent_ready(rel)?;
        self.clear(rel, &path, false)?;
        // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        fs::hard_link(&target_path, &path).map_err(|e| self.io(rel, e))
    }

    /// An overlayfs whiteout: `rel` is deleted from the layers beneath.
    pub(crate) fn whiteout(&self, rel: &Path) -> Result<(), TemplateStoreError> {
        let path = self.parent_ready(rel)?;
        self.clear(rel, &path, false)?;
        mknod(&path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| self.io(rel, e.into()))?;
        lchown(&path, Some(self.id_base), Some(self.id_base)).map_err(|e| self.io(rel, e))
    }

    /// Marks directory `rel` opaque: the layers beneath contribute nothing to it.
    pub(crate) fn opaque(&self, rel: Option<&Path>) -> Result<(), TemplateStoreError> {
        let path = match rel {
            Some(rel) => {
                let p = self.parent_ready(&rel.join("x"))?;
                p.parent().map(Path::to_path_buf).unwrap_or(p)
            }
            None => self.root.join(&self.prefix),
        };
        let shown = rel.unwrap_or(Path::new("."));
        xattr::set(&path, OPAQUE_XATTR, b"y").map_err(|e| self.io(shown, e))
    }
}

/// A whiteout as overlayfs writes it: a character device 0/0.
pub(crate) fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// The content address and data size of a finished layer: SHA-256 over a sorted
/// manifest of every entry (path, type, mode, in-sandbox owner, size and content hash
/// of files, link targets, mtimes of files and links, whiteouts, opaque markers).
/// Directory mtimes are left out: extraction order changes them.
pub(crate) fn digest_layer(root: &Path, id_base: u32) -> io::Result<(String, u64)> {
    let mut lines: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut size = 0u64;
    walk(root, root, id_base, &mut lines, &mut size)?;
    let mut h = Sha256::new();
    for (path, line) in lines {
        h.update((path.len() as u64).to_le_bytes());
        h.update(&path);
        h.update((line.len() as u64).to_le_bytes());
        h.update(&line);
    }
    Ok((hex(&h.finalize()), size))
}

fn walk(
    root: &Path,
    at: &Path,
    id_base: u32,
    lines: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    size: &mut u64,
) -> io::Result<()> {
    let m = fs::symlink_metadata(at)?;
    let rel = at.strip_prefix(root).unwrap_or(Path::new(""));
    let ft = m.file_type();
    let ids = format!(
        "{} {} {:o}",
        m.uid().wrapping_sub(id_base),
        m.gid().wrapping_sub(id_base),
        m.mode() & 0o7777
    );
    let line = if ft.is_dir() {
        let opaque = xattr::get(at, OPAQUE_XATTR).ok().flatten().is_some();
        format!("d {ids} opaque={opaque}").into_bytes()
    } else if ft.is_symlink() {
        let mut l = format!("l {ids} {} ", m.mtime()).into_bytes();
        l.extend_from_slice(fs::read_link(at)?.as_os_str().as_bytes());
        l
    } else if ft.is_file() {
        let mut h = Sha256::new();
        let mut f = fs::File::open(at)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        *size += m.len();
        format!("f {ids} {} {} {}", m.mtime(), m.len(), hex(&h.finalize())).into_bytes()
    } else if is_whiteout(&m) {
        b"whiteout".to_vec()
    } else {
        format!("other {ids} {:o}", m.mode()).into_bytes()
    };
    lines.insert(rel.as_os_str().as_bytes().to_vec(), line);
    if ft.is_dir() {
        for e in fs::read_dir(at)? {
            walk(root, &e?.path(), id_base, lines, size)?;
        }
    }
    Ok(())
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tar of regular files (name, data), mode 0644, owned by root, mtime 0: the layer
/// the template tests build their images from.
#[cfg(test)]
pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `true` for a `.wh.` name.
pub(crate) fn whiteout_target(name: &OsStr) -> Option<&OsStr> {
    name.as_bytes().strip_prefix(b".wh.").map(OsStr::from_bytes)
}

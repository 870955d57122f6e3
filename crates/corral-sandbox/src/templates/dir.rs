//! Directory sources: a root file system on the host, copied into one layer.
//!
//! The tree is walked without following links; files are copied (copy_file_range),
//! links recreated as links, hard links kept, owners shifted into the sandbox id
//! range. Device nodes, fifos and sockets are skipped (a debootstrap tree has /dev
//! entries; sandboxes get their own /dev) and counted. Files and bytes copied go to the
//! import's progress, which stops the copy between files when it is cancelled.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::import::Progress;
use super::layer::LayerWriter;
use super::TemplateStoreError;

/// How the files of a tree get into the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// Copied: the source is the user's and stays as it was.
    Copy,
    /// Moved (renamed): the source is the import's own work tree (a debootstrap), on
    /// the same file system, and is removed afterwards anyway.
    Move,
}

/// Copies (or moves) `src` into `w`; returns how many special files were skipped.
pub(crate) fn copy_tree(
    src: &Path,
    w: &LayerWriter,
    how: Transfer,
    progress: &mut Progress<'_>,
) -> Result<u64, TemplateStoreError> {
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    let mut skipped = 0;
    let m = fs::symlink_metadata(src).map_err(|e| io_err(src, e))?;
    if !m.is_dir() {
        return Err(TemplateStoreError::BadSource {
            path: src.to_path_buf(),
            why: "not a directory".into(),
        });
    }
    w.dir(
        None,
        m.mode(),
        (w.host_id(m.uid().into()), w.host_id(m.gid().into())),
    )?;
    walk(
        src,
        Path::new(""),
        w,
        how,
        progress,
        &mut links,
        &mut skipped,
    )?;
    Ok(skipped)
}

fn io_err(p: &Path, source: std::io::Error) -> TemplateStoreError {
    TemplateStoreError::Io {
        what: format!("reading {}", p.display()),
        source,
    }
}

fn walk(
    src: &Path,
    rel: &Path,
    w: &LayerWriter,
    how: Transfer,
    progress: &mut Progress<'_>,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
    skipped: &mut u64,
) -> Result<(), TemplateStoreError> {
    let dir = src.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| io_err(&dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io_err(&dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let r = rel.join(e.file_name());
        let m = fs::symlink_metadata(&path).map_err(|e| io_err(&path, e))?;
        let owner = (w.host_id(m.uid().into()), w.host_id(m.gid().into()));
        let ft = m.file_type();
        if ft.is_dir() {
            w.dir(Some(&r), m.mode(), owner)?;
            walk(src, &r, w, how, progress, links, skipped)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| io_err(&path, e))?;
            w.symlink(&r, &target, owner, Some(m.mtime()))?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    w.hardlink(&r, first)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), r.clone());
            }
            match how {
                Transfer::Copy => w.copy_file(&r, &path, m.mode(), owner, Some(m.mtime()))?,
                Transfer::Move => w.move_file(&r, &path, m.mode(), owner, Some(m.mtime()))?,
            }
            // Between files: a cancel stops the copy here.
            progress.add_file(m.len())?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            *skipped += 1;
        }
    }
    Ok(())
}

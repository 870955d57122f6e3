//! COPY and ADD of a recipe: sources checked to stay inside the build context, their
//! content hashed for the step cache, and written into a new layer with the
//! attributes of the directories they land in (taken from the layers below), through
//! the lower layers' symbolic links, never through a link of the context.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::build::{h, normalize};
use super::layer::{hex, is_whiteout, LayerWriter};
use super::TemplateStoreError;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> TemplateStoreError {
    TemplateStoreError::io(what)
}

/// A COPY/ADD source inside the context; `Err(why)` when it is missing or outside.
pub(crate) fn inside_context(context: &Path, raw: &str) -> Result<PathBuf, String> {
    let mut depth: i64 = 0;
    for c in Path::new(raw).components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!(
                "COPY source {raw:?} is outside the build context {}",
                context.display()
            ));
        }
    }
    let p = context.join(normalize(Path::new(raw)));
    let real = p
        .canonicalize()
        .map_err(|e| format!("COPY source {raw:?} not found in the build context: {e}"))?;
    if !real.starts_with(context) {
        return Err(format!(
            "COPY source {raw:?} leads outside the build context {} (through a symbolic link)",
            context.display()
        ));
    }
    Ok(real)
}

/// Content hash of a host file or tree: relative paths, types, permission bits, file
/// contents and link targets (not owners or times: a checkout's mtimes do not matter).
pub(crate) fn hash_tree(root: &Path) -> io::Result<String> {
    let mut lines: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p)?;
        let rel = p.strip_prefix(root).unwrap_or(Path::new("")).to_path_buf();
        let mode = m.mode() & 0o7777;
        let line = if m.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
            format!("d {mode:o}")
        } else if m.file_type().is_symlink() {
            format!("l {}", fs::read_link(&p)?.display())
        } else if m.is_file() {
            let mut d = Sha256::new();
            let mut f = fs::File::open(&p)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = f.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                d.update(&buf[..k]);
            }
            format!("f {mode:o} {}", hex(&d.finalize()))
        } else {
            "other".into()
        };
        lines.insert(rel, line);
    }
    let text: Vec<String> = lines
        .iter()
        .map(|(p, l)| format!("{}\0{l}", p.display()))
        .collect();
    Ok(h(&[text.join("\n").as_bytes()]))
}

/// What the layers below hold at `rel` (topmost wins; a whiteout hides it). Opaque
/// directories of lower layers are not consulted: good enough to copy attributes and
/// follow links.
fn lower_meta(lowers: &[PathBuf], rel: &Path) -> Option<(PathBuf, fs::Metadata)> {
    for l in lowers {
        let p = l.join(rel);
        if let Ok(m) = fs::symlink_metadata(&p) {
            if is_whiteout(&m) {
                return None;
            }
            return Some((p, m));
        }
    }
    None
}

/// Resolves `path` (absolute, in the sandbox) through symbolic links of the lower
/// layers, so a COPY to /bin/x on a merged-usr image lands in usr/bin/x instead of
/// shadowing the /bin link with a directory.
fn resolve_in_lowers(lowers: &[PathBuf], path: &Path) -> Result<PathBuf, String> {
    let mut todo: Vec<PathBuf> = normalize(path).iter().rev().map(PathBuf::from).collect();
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        let next = cur.join(&c);
        match lower_meta(lowers, &next) {
            Some((p, m)) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("too many symbolic links under {}", path.display()));
                }
                let target = fs::read_link(&p).map_err(|e| e.to_string())?;
                let base = if target.is_absolute() {
                    PathBuf::new()
                } else {
                    cur.clone()
                };
                let joined = normalize(&base.join(&target));
                for t in joined.iter().rev() {
                    todo.push(PathBuf::from(t));
                }
                cur = PathBuf::new();
            }
            _ => cur = next,
        }
    }
    Ok(cur)
}

/// Creates every ancestor of `rel` in the layer with the attributes it has below (a
/// new directory is root's, 0755), so a COPY never changes /tmp's mode or the like.
fn make_parents(
    w: &LayerWriter,
    lowers: &[PathBuf],
    rel: &Path,
    include_self: bool,
    owner: (u32, u32),
) -> Result<(), TemplateStoreError> {
    let mut at = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    let upto = if include_self {
        comps.len()
    } else {
        comps.len().saturating_sub(1)
    };
    for (i, c) in comps.iter().take(upto).enumerate() {
        at.push(c);
        match lower_meta(lowers, &at) {
            Some((_, m)) if m.is_dir() => w.dir(Some(&at), m.mode(), (m.uid(), m.gid()))?,
            _ if include_self && i + 1 == upto => w.dir(Some(&at), 0o755, owner)?,
            _ => {}
        }
    }
    Ok(())
}

fn is_archive(p: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_source(
    w: &LayerWriter,
    lowers: &[PathBuf],
    src: &Path,
    raw: &str,
    dest_abs: &Path,
    into_dir: bool,
    owner: (u32, u32),
    add: bool,
) -> Result<(), TemplateStoreError> {
    let resolved =
        resolve_in_lowers(lowers, dest_abs).map_err(|why| TemplateStoreError::BadSource {
            path: dest_abs.to_path_buf(),
            why,
        })?;
    let m = fs::symlink_metadata(src).map_err(io_err(format!("reading {}", src.display())))?;
    if m.is_dir() {
        // A directory's contents go into the destination directory.
        make_parents(w, lowers, &resolved, true, owner)?;
        return copy_dir(w, src, &resolved, owner);
    }
    if add && m.is_file() && is_archive(src) {
        make_parents(w, lowers, &resolved, true, owner)?;
        let f = fs::File::open(src).map_err(io_err(format!("reading {}", src.display())))?;
        let mut head = [0u8; 2];
        let gz = fs::File::open(src)
            .and_then(|mut g| g.read_exact(&mut head))
            .is_ok()
            && head == [0x1f, 0x8b];
        let sub = w.below(&resolved);
        return if gz {
            super::oci::apply_tar(flate2::read::GzDecoder::new(f), &sub)
        } else {
            super::oci::apply_tar(f, &sub)
        };
    }
    let target = if into_dir {
        let name = Path::new(raw)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        resolved.join(name)
    } else {
        resolved
    };
    make_parents(w, lowers, &target, false, owner)?;
    put(w, src, &target, &m, owner)
}

fn put(
    w: &LayerWriter,
    src: &Path,
    rel: &Path,
    m: &fs::Metadata,
    owner: (u32, u32),
) -> Result<(), TemplateStoreError> {
    if m.file_type().is_symlink() {
        let t = fs::read_link(src).map_err(io_err(format!("reading {}", src.display())))?;
        w.symlink(rel, &t, owner, Some(m.mtime()))
    } else if m.is_file() {
        w.copy_file(rel, src, m.permissions().mode(), owner, Some(m.mtime()))
    } else {
        // Devices, fifos and sockets of the context are not copied.
        Ok(())
    }
}

fn copy_dir(
    w: &LayerWriter,
    src: &Path,
    rel: &Path,
    owner: (u32, u32),
) -> Result<(), TemplateStoreError> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(io_err(format!("reading {}", src.display())))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let r = rel.join(e.file_name());
        let m = fs::symlink_metadata(&p).map_err(io_err(format!("reading {}", p.display())))?;
        if m.is_dir() {
            w.dir(Some(&r), m.mode(), owner)?;
            copy_dir(w, &p, &r, owner)?;
        } else {
            put(w, &p, &r, &m, owner)?;
        }
    }
    Ok(())
}

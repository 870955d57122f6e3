//! OCI sources: an image layout directory, or a tarball of one (`docker save` of
//! Docker 25+, `skopeo copy oci-archive:`), or an older `docker save` tarball
//! (manifest.json naming each layer's tar). Layers are applied in order, each into a
//! layer directory of its own (see layer.rs for whiteouts and path checks); blobs are
//! checked against their digests.

use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::layer::{clean_path, hex, whiteout_target, LayerWriter};
use super::TemplateStoreError;

/// What an image contributes: its layer blobs bottom first, and its config.
#[derive(Debug, Default)]
pub(crate) struct Image {
    /// (blob file, blob digest or name).
    pub layers: Vec<(PathBuf, String)>,
    pub env: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    layers: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ImageConfig {
    #[serde(default)]
    config: Option<ImageConfigInner>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ImageConfigInner {
    #[serde(default)]
    env: Option<Vec<String>>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> TemplateStoreError {
    TemplateStoreError::BadSource {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// A file of the image, which must stay inside `root` once links are resolved.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, TemplateStoreError> {
    let rel = clean_path(Path::new(rel))?.ok_or_else(|| bad(root, "an empty file name"))?;
    let p = root.join(&rel);
    let real = p
        .canonicalize()
        .map_err(|e| bad(root, format!("{} is missing ({e})", rel.display())))?;
    let real_root = root.canonicalize().map_err(|e| bad(root, e))?;
    if !real.starts_with(&real_root) || !real.is_file() {
        return Err(bad(
            root,
            format!("{} is not a file inside the image", rel.display()),
        ));
    }
    Ok(real)
}

fn read_json<T: for<'de> Deserialize<'de>>(
    root: &Path,
    rel: &str,
) -> Result<T, TemplateStoreError> {
    let p = inside(root, rel)?;
    let bytes = fs::read(&p).map_err(|e| bad(&p, e))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(&p, format!("malformed {rel}: {e}")))
}

fn blob(root: &Path, digest: &str) -> Result<PathBuf, TemplateStoreError> {
    let hexd = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad(root, format!("unsupported digest {digest:?} (sha256 only)")))?;
    inside(root, &format!("blobs/sha256/{hexd}"))
}

/// Reads the image found in `root` (an extracted archive or a layout directory).
pub(crate) fn read_image(root: &Path) -> Result<Image, TemplateStoreError> {
    if root.join("index.json").exists() {
        let mut index: Index = read_json(root, "index.json")?;
        // Nested indexes (multi-platform images): pick linux/amd64 or the first one.
        loop {
            let chosen = index
                .manifests
                .iter()
                .find(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .or_else(|| index.manifests.first())
                .ok_or_else(|| bad(root, "index.json lists no image"))?;
            let path = blob(root, &chosen.digest)?;
            let bytes = read_verified(&path, &chosen.digest)?;
            if chosen.media_type.contains("index") || chosen.media_type.contains("manifest.list") {
                index = serde_json::from_slice(&bytes)
                    .map_err(|e| bad(&path, format!("malformed index: {e}")))?;
                continue;
            }
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| bad(&path, format!("malformed manifest: {e}")))?;
            let cfg_path = blob(root, &m.config.digest)?;
            let cfg: ImageConfig =
                serde_json::from_slice(&read_verified(&cfg_path, &m.config.digest)?)
                    .unwrap_or_default();
            let mut layers = Vec::new();
            for l in &m.layers {
                if l.media_type.contains("zstd") {
                    return Err(bad(
                        root,
                        "zstd-compressed layers are not supported yet (gzip or plain tar only)",
                    ));
                }
                layers.push((blob(root, &l.digest)?, l.digest.clone()));
            }
            return Ok(Image {
                layers,
                env: cfg.config.and_then(|c| c.env).unwrap_or_default(),
            });
        }
    }
    if root.join("manifest.json").exists() {
        let ms: Vec<DockerManifest> = read_json(root, "manifest.json")?;
        let m = ms
            .into_iter()
            .next()
            .ok_or_else(|| bad(root, "manifest.json lists no image"))?;
        let cfg: ImageConfig = read_json(root, &m.config).unwrap_or_default();
        let mut layers = Vec::new();
        for l in &m.layers {
            layers.push((inside(root, l)?, l.clone()));
        }
        return Ok(Image {
            layers,
            env: cfg.config.and_then(|c| c.env).unwrap_or_default(),
        });
    }
    Err(bad(
        root,
        "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
    ))
}

/// Reads a small blob and checks its digest.
fn read_verified(path: &Path, digest: &str) -> Result<Vec<u8>, TemplateStoreError> {
    let bytes = fs::read(path).map_err(|e| bad(path, e))?;
    let got = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
    if got != digest {
        return Err(bad(
            path,
            format!("digest mismatch: expected {digest}, got {got}"),
        ));
    }
    Ok(bytes)
}

/// Hashes what passes through.
struct Hashing<R> {
    inner: R,
    h: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

/// Applies a layer blob (tar, gzip-compressed or not) into `w`; checks the blob's
/// digest when `digest` is one.
pub(crate) fn apply_blob(
    path: &Path,
    digest: &str,
    w: &LayerWriter,
) -> Result<(), TemplateStoreError> {
    let f = fs::File::open(path).map_err(|e| bad(path, e))?;
    let mut hashing = Hashing {
        inner: BufReader::with_capacity(1 << 20, f),
        h: Sha256::new(),
    };
    let mut magic = [0u8; 2];
    let mut head = Vec::new();
    (&mut hashing)
        .take(2)
        .read_to_end(&mut head)
        .map_err(|e| bad(path, e))?;
    magic[..head.len()].copy_from_slice(&head);
    let chained = io::Cursor::new(head).chain(&mut hashing);
    if magic == [0x1f, 0x8b] {
        apply_tar(flate2::read::GzDecoder::new(chained), w)?;
    } else if magic == [0x28, 0xb5] {
        return Err(bad(
            path,
            "zstd-compressed layers are not supported yet (gzip or plain tar only)",
        ));
    } else {
        apply_tar(chained, w)?;
    }
    // Read what tar left (padding) so the digest covers the whole blob.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| bad(path, e))?;
    if digest.starts_with("sha256:") {
        let got = format!("sha256:{}", hex(&hashing.h.finalize()));
        if got != digest {
            return Err(bad(
                path,
                format!("layer digest mismatch: expected {digest}, got {got}"),
            ));
        }
    }
    Ok(())
}

/// Applies one tar stream into a layer, entry by entry (see layer.rs for the checks).
pub(crate) fn apply_tar<R: Read>(r: R, w: &LayerWriter) -> Result<(), TemplateStoreError> {
    let mut ar = tar::Archive::new(r);
    let entries = ar.entries().map_err(TemplateStoreError::tar)?;
    for entry in entries {
        let mut entry = entry.map_err(TemplateStoreError::tar)?;
        let raw = entry.path().map_err(TemplateStoreError::tar)?.into_owned();
        let rel = clean_path(&raw)?;
        let h = entry.header();
        let mode = h.mode().map_err(TemplateStoreError::tar)?;
        let owner = (
            w.host_id(h.uid().map_err(TemplateStoreError::tar)?),
            w.host_id(h.gid().map_err(TemplateStoreError::tar)?),
        );
        let mtime = h.mtime().ok().map(|t| t.min(i64::MAX as u64) as i64);
        let kind = h.entry_type();
        let name = rel.as_ref().and_then(|r| r.file_name());
        if let (Some(rel), Some(name)) = (&rel, name) {
            if name == ".wh..wh..opq" {
                w.opaque(rel.parent().filter(|p| !p.as_os_str().is_empty()))?;
                continue;
            }
            if let Some(target) = whiteout_target(name) {
                if target.is_empty() || target == "." || target == ".." {
                    return Err(TemplateStoreError::unsafe_entry(
                        &raw,
                        "a malformed whiteout",
                    ));
                }
                w.whiteout(&rel.with_file_name(target))?;
                continue;
            }
        }
        match kind {
            tar::EntryType::Directory => w.dir(rel.as_deref(), mode, owner)?,
            _ if rel.is_none() => {
                return Err(TemplateStoreError::unsafe_entry(
                    &raw,
                    "it names the layer's root",
                ))
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => w.file(
                rel.as_deref().unwrap_or(Path::new("")),
                &mut entry,
                mode,
                owner,
                mtime,
            )?,
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(TemplateStoreError::tar)?
                    .ok_or_else(|| TemplateStoreError::unsafe_entry(&raw, "a link without target"))?
                    .into_owned();
                w.symlink(
                    rel.as_deref().unwrap_or(Path::new("")),
                    &target,
                    owner,
                    mtime,
                )?
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(TemplateStoreError::tar)?
                    .ok_or_else(|| {
                        TemplateStoreError::unsafe_entry(&raw, "a link without target")
                    })?;
                let target = clean_path(&target)?.ok_or_else(|| {
                    TemplateStoreError::unsafe_entry(&raw, "a hard link to the root")
                })?;
                w.hardlink(rel.as_deref().unwrap_or(Path::new("")), &target)?
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(TemplateStoreError::unsafe_entry(
                    &raw,
                    "it is a device node (only whiteouts may be, and OCI spells those .wh.NAME)",
                ))
            }
            other => {
                return Err(TemplateStoreError::unsafe_entry(
                    &raw,
                    &format!(
                    "its entry type {other:?} is not supported (files, directories, links only)"
                ),
                ))
            }
        }
    }
    Ok(())
}

/// Extracts an image archive (the outer tarball) into `dir`: plain files, directories
/// and links only, the same path checks; ids not shifted (read by corral only).
pub(crate) fn unpack_archive(path: &Path, dir: &Path, id: u32) -> Result<(), TemplateStoreError> {
    let f = fs::File::open(path).map_err(|e| bad(path, e))?;
    let w = LayerWriter::create(dir, id).map_err(|e| TemplateStoreError::Io {
        what: format!("creating {}", dir.display()),
        source: e,
    })?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut magic = Vec::new();
    (&mut r)
        .take(2)
        .read_to_end(&mut magic)
        .map_err(|e| bad(path, e))?;
    let chained = io::Cursor::new(magic.clone()).chain(r);
    if magic == [0x1f, 0x8b] {
        apply_tar(flate2::read::GzDecoder::new(chained), &w)
    } else {
        apply_tar(chained, &w)
    }
}

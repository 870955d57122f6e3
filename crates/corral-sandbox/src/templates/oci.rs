//! OCI sources: an image layout directory, or a tarball of one (`docker save` of
//! Docker 25+, `skopeo copy oci-archive:`), or an older `docker save` tarball
//! (manifest.json naming each layer's tar). Layers are applied in order, each into a
//! layer directory of its own (see layer.rs for whiteouts and path checks); blobs are
//! checked against their digests. Layers may be plain tar, gzip or zstd (ruzstd, pure
//! Rust), told apart by their first bytes.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::import::{Counting, Progress};
use super::layer::{clean_path, hex, whiteout_target, LayerWriter};
use super::TemplateStoreError;

/// What an image contributes: its layer blobs bottom first, and its config.
#[derive(Debug, Default)]
pub(crate) struct Image {
    /// (blob file, blob digest or name).
    pub layers: Vec<(PathBuf, String)>,
    /// The config's `Env`, `WorkingDir` and `User` (as written; checked by the import).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
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
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl ImageConfig {
    /// The image with these layers and this config's Env, WorkingDir and User (empty
    /// strings mean unset, as in Docker).
    fn image(self, layers: Vec<(PathBuf, String)>) -> Image {
        let c = self.config.unwrap_or_default();
        Image {
            layers,
            env: c.env.unwrap_or_default(),
            workdir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
        }
    }
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
                layers.push((blob(root, &l.digest)?, l.digest.clone()));
            }
            return Ok(cfg.image(layers));
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
        return Ok(cfg.image(layers));
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

/// The first bytes of a zstd frame (0xFD2FB528, little-endian).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd stream that cannot be decoded (marks the io::Error, so the import can say so
/// instead of blaming the tar archive).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ZstdCorrupt(String);

fn zstd_corrupt(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ZstdCorrupt(what.to_string()))
}

/// Decodes every frame of a zstd stream in turn (skippable frames are skipped),
/// checking each frame's content checksum when it carries one.
struct ZstdFrames<R> {
    src: R,
    dec: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(src: R) -> ZstdFrames<R> {
        ZstdFrames {
            src,
            dec: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                if self.dec.can_collect() > 0 {
                    return self.dec.read(buf);
                }
                if !self.dec.is_finished() {
                    self.dec
                        .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(zstd_corrupt)?;
                    continue;
                }
                if let (Some(want), Some(got)) = (
                    self.dec.get_checksum_from_data(),
                    self.dec.get_calculated_checksum(),
                ) {
                    if want != got {
                        return Err(zstd_corrupt(format!(
                            "frame checksum mismatch (expected {want:08x}, decoded {got:08x})"
                        )));
                    }
                }
                self.in_frame = false;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.src).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped < u64::from(length) {
                        return Err(zstd_corrupt("a skippable frame is cut short"));
                    }
                }
                Err(e) => return Err(zstd_corrupt(e)),
            }
        }
    }
}

/// The zstd decoder's complaint inside a tar error, if that is what it is.
fn zstd_cause(e: &TemplateStoreError) -> Option<String> {
    let TemplateStoreError::Tar(io) = e else {
        return None;
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(io);
    while let Some(err) = cur {
        if let Some(z) = err.downcast_ref::<ZstdCorrupt>() {
            return Some(z.0.clone());
        }
        if let Some(z) = err
            .downcast_ref::<io::Error>()
            .and_then(|i| i.get_ref())
            .and_then(|i| i.downcast_ref::<ZstdCorrupt>())
        {
            return Some(z.0.clone());
        }
        cur = err.source();
    }
    None
}

/// Applies a layer blob (tar; plain, gzip or zstd) into `w`; checks the blob's digest
/// when `digest` is one. A blob that fails to unpack and does not match its digest is
/// reported as the digest mismatch (it was damaged), not as whatever broke first.
pub(crate) fn apply_blob(
    path: &Path,
    digest: &str,
    w: &LayerWriter,
    progress: &mut Progress<'_>,
) -> Result<(), TemplateStoreError> {
    let f = fs::File::open(path).map_err(|e| bad(path, e))?;
    let counted = Counting { inner: f, progress };
    let mut hashing = Hashing {
        inner: BufReader::with_capacity(1 << 20, counted),
        h: Sha256::new(),
    };
    let mut magic = [0u8; 4];
    let mut head = Vec::new();
    (&mut hashing)
        .take(4)
        .read_to_end(&mut head)
        .map_err(|e| bad(path, e))?;
    magic[..head.len()].copy_from_slice(&head);
    let chained = io::Cursor::new(head).chain(&mut hashing);
    // The whole stream is decoded, past the tar's end: a compressed blob's checksum
    // sits at its end, and so may damage that the tar reader never reaches.
    let applied = if magic[..2] == [0x1f, 0x8b] {
        apply_all(flate2::read::GzDecoder::new(chained), w)
    } else if magic == ZSTD_MAGIC {
        apply_all(ZstdFrames::new(BufReader::new(chained)), w).map_err(|e| match zstd_cause(&e) {
            Some(why) => bad(path, format!("the layer's zstd data is corrupt: {why}")),
            None => e,
        })
    } else {
        apply_tar(chained, w)
    };
    // Read what tar left (padding) so the digest covers the whole blob.
    let drained = io::copy(&mut hashing, &mut io::sink()).map_err(|e| bad(path, e));
    if digest.starts_with("sha256:") {
        let got = format!("sha256:{}", hex(&hashing.h.finalize()));
        if got != digest {
            return Err(bad(
                path,
                format!("layer digest mismatch: expected {digest}, got {got}"),
            ));
        }
    }
    applied?;
    drained?;
    Ok(())
}

/// Checks a blob against its digest without unpacking it (a layer the blob cache
/// has: the blob must still be the one the image names).
pub(crate) fn verify_blob(
    path: &Path,
    digest: &str,
    progress: &mut Progress<'_>,
) -> Result<(), TemplateStoreError> {
    let f = fs::File::open(path).map_err(|e| bad(path, e))?;
    let mut hashing = Hashing {
        inner: BufReader::with_capacity(1 << 20, Counting { inner: f, progress }),
        h: Sha256::new(),
    };
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| bad(path, e))?;
    let got = format!("sha256:{}", hex(&hashing.h.finalize()));
    if got != digest {
        return Err(bad(
            path,
            format!("layer digest mismatch: expected {digest}, got {got}"),
        ));
    }
    Ok(())
}

/// Applies a decompressed tar stream, then reads the stream to its end (so its
/// checksum is checked).
fn apply_all<R: Read>(mut r: R, w: &LayerWriter) -> Result<(), TemplateStoreError> {
    apply_tar(&mut r, w)?;
    io::copy(&mut r, &mut io::sink()).map_err(TemplateStoreError::tar)?;
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
pub(crate) fn unpack_archive(
    path: &Path,
    dir: &Path,
    id: u32,
    progress: &mut Progress<'_>,
) -> Result<(), TemplateStoreError> {
    let f = fs::File::open(path).map_err(|e| bad(path, e))?;
    let f = Counting { inner: f, progress };
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

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// A tar holding `hello.txt` ("hello zstd") and a 1 MiB file of varied bytes.
    fn tar_bytes() -> Vec<u8> {
        let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        super::super::layer::tar_of(&[("hello.txt", b"hello zstd"), ("big.bin", &big)])
    }

    /// Compresses with the zstd command-line tool (the Debian package `zstd`, which
    /// scripts/setup.sh installs): the encoder images are made with, not ours.
    fn zstd_cli(data: &[u8], args: &[&str]) -> Vec<u8> {
        let mut c = Command::new("zstd")
            .args(args)
            .args(["-q", "-c", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the zstd tool (apt-get install zstd; scripts/setup.sh installs it)");
        let mut stdin = c.stdin.take().unwrap();
        let data = data.to_vec();
        let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
        let out = c.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn digest(b: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(b)))
    }

    /// Applies `blob` (checked against `digest`) into a fresh layer.
    fn apply(blob: &[u8], digest: &str) -> (tempfile::TempDir, Result<(), TemplateStoreError>) {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("blob");
        fs::write(&path, blob).unwrap();
        let w = LayerWriter::create(&t.path().join("layer"), 0).unwrap();
        let mut quiet = |_| {};
        let r = apply_blob(&path, digest, &w, &mut Progress::new(&mut quiet, None));
        (t, r)
    }

    #[test]
    fn zstd_layers_made_by_the_zstd_tool_apply() {
        let tar = tar_bytes();
        // One frame, several frames (concatenated), and a frame without a checksum.
        let one = zstd_cli(&tar, &["-3"]);
        let mut two = zstd_cli(&tar[..4096], &["-1"]);
        two.extend(zstd_cli(&tar[4096..], &["-19"]));
        let plain = zstd_cli(&tar, &["--no-check"]);
        for blob in [one, two, plain] {
            assert_eq!(&blob[..4], &ZSTD_MAGIC);
            let (t, r) = apply(&blob, &digest(&blob));
            r.unwrap();
            let layer = t.path().join("layer");
            assert_eq!(fs::read(layer.join("hello.txt")).unwrap(), b"hello zstd");
            assert_eq!(fs::metadata(layer.join("big.bin")).unwrap().len(), 1 << 20);
        }
    }

    #[test]
    fn a_damaged_zstd_layer_is_refused_clearly() {
        let blob = zstd_cli(&tar_bytes(), &["-3"]);
        let mut bad_blob = blob.clone();
        let mid = bad_blob.len() / 2;
        for b in &mut bad_blob[mid..mid + 64] {
            *b ^= 0x5a;
        }
        // Against the image's digest: the damage shows as a digest mismatch.
        let (_t, r) = apply(&bad_blob, &digest(&blob));
        let e = corral_isolate::error_chain(&r.unwrap_err());
        assert!(e.contains("layer digest mismatch"), "{e}");
        // A blob damaged before it was hashed: the decoder's complaint, named as such.
        let (_t, r) = apply(&bad_blob, &digest(&bad_blob));
        let e = corral_isolate::error_chain(&r.unwrap_err());
        assert!(e.contains("zstd data is corrupt"), "{e}");
        // Cut short.
        let short = &blob[..blob.len() / 3];
        let (_t, r) = apply(short, &digest(short));
        let e = corral_isolate::error_chain(&r.unwrap_err());
        assert!(e.contains("zstd") || e.contains("malformed tar"), "{e}");
    }
}

//! Imports: a directory or an OCI image into the store, with progress and cancel.
//!
//! An import reports, through a callback, each layer as it starts and as it is applied
//! (or found cached), and how many bytes of the current blob it has read (or, for a
//! directory, files and bytes copied), at most every 32 MiB or second. A cancel flag is
//! checked between reads (between files for a directory): the import then stops, its
//! work dir is removed and nothing is registered.
//!
//! The blob cache: `blobs/<sha256 of the compressed blob>.json` names the layer an
//! earlier import made of that blob (its content digest and size, for this id base). An
//! OCI layer whose blob is there and whose layer is still in the store is not unpacked
//! again: a re-import of the same image (under another name or version) decompresses
//! and extracts nothing but what changed. The blob is still read once and checked
//! against its digest (cheap next to decompressing, extracting and hashing the files),
//! so a damaged blob is refused whether or not its layer is cached. Only blobs whose digest was checked while
//! applying are remembered (OCI `sha256:` digests; not an old `docker save`'s layer
//! file names). The cache never keeps a layer alive: garbage collection removes the
//! entries of layers it removed.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_types::api::{Template, TemplateBuildEvent, TemplateLayerState};
use serde::{Deserialize, Serialize};

use super::layer::{digest_layer, LayerWriter};
use super::{
    check_template_name, check_version, config, dir, etc, now_ms, oci, LayerEntry, Manifest,
    TemplateSource, TemplateStore, TemplateStoreError, MANIFEST_FORMAT,
};

/// A bytes event at least every this many bytes...
const BYTES_EVERY: u64 = 32 << 20;
/// ... or this often, whichever comes first.
const BYTES_INTERVAL: Duration = Duration::from_secs(1);

/// Progress of one import: events to the caller (bytes throttled) and the cancel flag.
pub(crate) struct Progress<'a> {
    on: &'a mut dyn FnMut(TemplateBuildEvent),
    cancel: Option<&'a AtomicBool>,
    done: u64,
    total: Option<u64>,
    files: Option<u64>,
    sent: Option<u64>,
    sent_at: Instant,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(
        on: &'a mut dyn FnMut(TemplateBuildEvent),
        cancel: Option<&'a AtomicBool>,
    ) -> Progress<'a> {
        Progress {
            on,
            cancel,
            done: 0,
            total: None,
            files: None,
            sent: None,
            sent_at: Instant::now(),
        }
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn layer(
        &mut self,
        layer: usize,
        total: usize,
        digest: &str,
        size: u64,
        s: TemplateLayerState,
    ) {
        (self.on)(TemplateBuildEvent::Layer {
            layer: layer as u32,
            total: total as u32,
            digest: digest.to_string(),
            size_bytes: size,
            state: s,
        });
    }

    /// Starts counting the bytes of a blob of `total` bytes (None: a directory, whose
    /// files are counted too).
    fn start_bytes(&mut self, total: Option<u64>) {
        self.done = 0;
        self.total = total;
        self.files = total.is_none().then_some(0);
        self.sent = None;
        self.sent_at = Instant::now();
    }

    fn send_bytes(&mut self) {
        self.sent = Some(self.done);
        self.sent_at = Instant::now();
        (self.on)(TemplateBuildEvent::Bytes {
            done: self.done,
            total: self.total,
            files: self.files,
        });
    }

    /// The final count of the current blob or tree (unless just sent).
    fn end_bytes(&mut self) {
        if self.sent != Some(self.done) {
            self.send_bytes();
        }
    }

    /// `n` more bytes; an error when the import was cancelled.
    pub(crate) fn add(&mut self, n: u64) -> io::Result<()> {
        if self.cancelled() {
            return Err(io::Error::other("the import was cancelled"));
        }
        self.done += n;
        if self.done - self.sent.unwrap_or(0) >= BYTES_EVERY
            || self.sent_at.elapsed() >= BYTES_INTERVAL
        {
            self.send_bytes();
        }
        Ok(())
    }

    /// One more file of `n` bytes copied; `Cancelled` when the import was cancelled.
    pub(crate) fn add_file(&mut self, n: u64) -> Result<(), TemplateStoreError> {
        if let Some(f) = &mut self.files {
            *f += 1;
        }
        self.add(n).map_err(|_| TemplateStoreError::Cancelled)
    }
}

/// Counts what passes through into a [`Progress`] (and stops it when cancelled).
pub(crate) struct Counting<'p, 'a, R> {
    pub(crate) inner: R,
    pub(crate) progress: &'p mut Progress<'a>,
}

impl<R: Read> Read for Counting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64)?;
        Ok(n)
    }
}

/// A blob cache entry: the layer made of a blob.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlobEntry {
    digest: String,
    size_bytes: u64,
    id_base: u32,
}

/// The cache key of an OCI blob digest: its 64 hex digits.
fn blob_key(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl TemplateStore {
    fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// The layer an earlier import made of blob `blob`, if it is still in the store.
    fn cached_layer(&self, blob: &str) -> Option<LayerEntry> {
        let key = blob_key(blob)?;
        let bytes = fs::read(self.blobs().join(format!("{key}.json"))).ok()?;
        let e: BlobEntry = serde_json::from_slice(&bytes).ok()?;
        let ok = e.id_base == self.id_base
            && e.digest.len() == 64
            && e.digest.bytes().all(|b| b.is_ascii_hexdigit())
            && self.layers().join(&e.digest).is_dir();
        ok.then(|| LayerEntry {
            digest: e.digest,
            size_bytes: e.size_bytes,
            origin: blob.to_string(),
        })
    }

    /// Remembers that blob `blob` makes `layer` (best effort: a miss only costs time).
    fn remember_blob(&self, blob: &str, layer: &LayerEntry) {
        let Some(key) = blob_key(blob) else {
            return;
        };
        let entry = BlobEntry {
            digest: layer.digest.clone(),
            size_bytes: layer.size_bytes,
            id_base: self.id_base,
        };
        let dir = self.blobs();
        let part = dir.join(format!(".{key}.{}.part", std::process::id()));
        let write = || -> io::Result<()> {
            fs::create_dir_all(&dir)?;
            let json = serde_json::to_vec(&entry).map_err(io::Error::other)?;
            let mut f = fs::File::create(&part)?;
            f.write_all(&json)?;
            fs::rename(&part, dir.join(format!("{key}.json")))
        };
        if write().is_err() {
            let _ = fs::remove_file(&part);
        }
    }

    /// Drops blob cache entries whose layer is gone (the caller holds the lock).
    pub(super) fn forget_blobs(&self) {
        let Ok(entries) = fs::read_dir(self.blobs()) else {
            return;
        };
        for e in entries.flatten() {
            let keep = fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<BlobEntry>(&b).ok())
                .is_some_and(|b| self.layers().join(&b.digest).is_dir());
            if !keep {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Imports a template; returns it. Nothing is left behind on failure.
    pub fn import(
        &self,
        name: &str,
        version: Option<&str>,
        source: &TemplateSource,
    ) -> Result<Template, TemplateStoreError> {
        self.import_with(name, version, source, &mut |_| {}, None)
    }

    /// [`TemplateStore::import`] reporting progress (`layer` and `bytes` events) to
    /// `progress`; when `cancel` turns true the import stops (between reads) with
    /// [`TemplateStoreError::Cancelled`], its work dir removed, nothing registered.
    pub fn import_with(
        &self,
        name: &str,
        version: Option<&str>,
        source: &TemplateSource,
        progress: &mut dyn FnMut(TemplateBuildEvent),
        cancel: Option<&AtomicBool>,
    ) -> Result<Template, TemplateStoreError> {
        check_template_name(name)?;
        if let Some(v) = version {
            check_version(v)?;
            if self.find(&format!("{name}:{v}")).is_ok() {
                return Err(TemplateStoreError::Exists(format!("{name}:{v}")));
            }
        }
        let tmp = self.work_dir()?;
        let mut p = Progress::new(progress, cancel);
        let result = self.import_in(&tmp, name, version, source, None, &mut p);
        let _ = fs::remove_dir_all(&tmp);
        match result {
            // Whatever broke first, a cancelled import says so.
            Err(_) if p.cancelled() => Err(TemplateStoreError::Cancelled),
            r => r,
        }
    }
    /// A fresh work dir under `tmp/` (removed by the caller; a killed process's is
    /// collected by `clean_stale`).
    pub(super) fn work_dir(&self) -> Result<PathBuf, TemplateStoreError> {
        let tmp_root = self.root.join("tmp");
        fs::create_dir_all(&tmp_root)
            .map_err(TemplateStoreError::io("creating the template store"))?;
        fs::create_dir_all(self.layers())
            .map_err(TemplateStoreError::io("creating the template store"))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = tmp_root.join(format!("{}-{nanos}", std::process::id()));
        fs::create_dir(&tmp).map_err(TemplateStoreError::io("creating the import's work dir"))?;
        Ok(tmp)
    }

    /// Imports `source` using the work dir `tmp`. `own_tree`: the `Dir` source is a
    /// tree the import made itself (a debootstrap) with this description; its files
    /// are moved into the layer instead of copied.
    pub(super) fn import_in(
        &self,
        tmp: &Path,
        name: &str,
        version: Option<&str>,
        source: &TemplateSource,
        own_tree: Option<String>,
        p: &mut Progress<'_>,
    ) -> Result<Template, TemplateStoreError> {
        let mkio = |d: &Path| TemplateStoreError::io(format!("creating {}", d.display()));
        // (layer dir, origin, its entry when it came from the blob cache: in layers/)
        let mut built: Vec<(PathBuf, String, Option<LayerEntry>)> = Vec::new();
        let (source_text, image) = match source {
            TemplateSource::Dir(src) => {
                let src = src
                    .canonicalize()
                    .map_err(|e| TemplateStoreError::BadSource {
                        path: src.clone(),
                        why: e.to_string(),
                    })?;
                if let Ok(store) = self.root.canonicalize() {
                    if store.starts_with(&src) {
                        return Err(TemplateStoreError::BadSource {
                            path: src,
                            why: "it contains corral's own template store".into(),
                        });
                    }
                }
                let d = tmp.join("l0");
                let w = LayerWriter::create(&d, self.id_base).map_err(mkio(&d))?;
                // A tree of the import's own (debootstrap's) is moved, not copied.
                let how = if own_tree.is_some() {
                    dir::Transfer::Move
                } else {
                    dir::Transfer::Copy
                };
                p.layer(1, 1, "dir", 0, TemplateLayerState::Started);
                p.start_bytes(None);
                dir::copy_tree(&src, &w, how, p)?;
                p.end_bytes();
                p.layer(1, 1, "dir", 0, TemplateLayerState::Applied);
                built.push((d, "dir".into(), None));
                let text = own_tree.unwrap_or_else(|| format!("dir:{}", src.display()));
                (text, oci::Image::default())
            }
            TemplateSource::Oci(path) => {
                let meta = fs::metadata(path).map_err(|e| TemplateStoreError::BadSource {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
                let image_root = if meta.is_dir() {
                    path.clone()
                } else {
                    // The outer archive is unpacked first (its bytes are reported,
                    // before any layer event).
                    let d = tmp.join("archive");
                    p.start_bytes(Some(meta.len()));
                    oci::unpack_archive(path, &d, 0, p)?;
                    p.end_bytes();
                    d
                };
                let image = oci::read_image(&image_root)?;
                config::check_env(&image.env).map_err(|why| TemplateStoreError::BadSource {
                    path: path.clone(),
                    why,
                })?;
                let n = image.layers.len();
                for (i, (blob, digest)) in image.layers.iter().enumerate() {
                    let size = fs::metadata(blob).map(|m| m.len()).unwrap_or(0);
                    if let Some(e) = self.cached_layer(digest) {
                        // Not unpacked again, but the blob is still checked against
                        // its digest (a damaged one is refused as before).
                        p.layer(i + 1, n, digest, size, TemplateLayerState::Cached);
                        p.start_bytes(Some(size));
                        oci::verify_blob(blob, digest, p)?;
                        p.end_bytes();
                        built.push((self.layers().join(&e.digest), digest.clone(), Some(e)));
                        continue;
                    }
                    p.layer(i + 1, n, digest, size, TemplateLayerState::Started);
                    let d = tmp.join(format!("l{i}"));
                    let w = LayerWriter::create(&d, self.id_base).map_err(mkio(&d))?;
                    p.start_bytes(Some(size));
                    oci::apply_blob(blob, digest, &w, p)?;
                    p.end_bytes();
                    p.layer(i + 1, n, digest, size, TemplateLayerState::Applied);
                    built.push((d, digest.clone(), None));
                }
                let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
                (format!("oci:{}", canonical.display()), image)
            }
        };
        let top_first: Vec<PathBuf> = built.iter().rev().map(|(d, _, _)| d.clone()).collect();
        let d = tmp.join("corral");
        let w = LayerWriter::create(&d, self.id_base).map_err(mkio(&d))?;
        etc::write_corral_layer(&w, &top_first)?;
        let (workdir, user) = config::image_config(source, &image, &d)?;
        built.push((d, "corral".into(), None));
        if p.cancelled() {
            return Err(TemplateStoreError::Cancelled);
        }

        let mut entries = Vec::new();
        let mut pending: Vec<(PathBuf, String)> = Vec::new();
        for (d, origin, known) in &built {
            if p.cancelled() {
                return Err(TemplateStoreError::Cancelled);
            }
            let e = match known {
                Some(e) => e.clone(),
                None => {
                    let (digest, size_bytes) = digest_layer(d, self.id_base)
                        .map_err(TemplateStoreError::io(format!("hashing {}", d.display())))?;
                    pending.push((d.clone(), digest.clone()));
                    LayerEntry {
                        digest,
                        size_bytes,
                        origin: origin.clone(),
                    }
                }
            };
            entries.push(e);
        }
        if p.cancelled() {
            return Err(TemplateStoreError::Cancelled);
        }
        let fresh: Vec<(String, LayerEntry)> = built
            .iter()
            .zip(&entries)
            .filter(|((_, origin, known), _)| known.is_none() && origin.starts_with("sha256:"))
            .map(|((_, origin, _), e)| (origin.clone(), e.clone()))
            .collect();
        let m = Manifest {
            format: MANIFEST_FORMAT,
            name: name.to_string(),
            version: String::new(),
            created_at_ms: now_ms(),
            id_base: self.id_base,
            source: source_text,
            layers: entries,
            env: image.env,
            base: None,
            workdir,
            user,
            allow: Vec::new(),
        };
        let t = self.register(m, version, &pending)?;
        for (blob, e) in &fresh {
            self.remember_blob(blob, e);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;
    use sha2::{Digest, Sha256};

    use super::super::layer::{hex, tar_of};
    use super::*;

    /// A tar of files (name, data), gzip-compressed.
    fn layer_blob(files: &[(&str, &[u8])]) -> Vec<u8> {
        let raw = tar_of(files);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&raw).unwrap();
        e.finish().unwrap()
    }

    /// An OCI layout with these layer blobs; their digests.
    fn oci_layout(out: &Path, layers: &[Vec<u8>]) -> Vec<String> {
        let blobs = out.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| -> String {
            let h = hex(&Sha256::digest(data));
            fs::write(blobs.join(&h), data).unwrap();
            format!("sha256:{h}")
        };
        let config = serde_json::to_vec(&json!({"config": {"Env": ["PATH=/bin"]}})).unwrap();
        let cfg = put(&config);
        let digests: Vec<String> = layers.iter().map(|l| put(l)).collect();
        let descs: Vec<_> = digests
            .iter()
            .map(|d| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d}))
            .collect();
        let manifest =
            serde_json::to_vec(&json!({"config": {"digest": cfg}, "layers": descs})).unwrap();
        let m = put(&manifest);
        fs::write(
            out.join("index.json"),
            serde_json::to_vec(&json!({"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m}]}))
                .unwrap(),
        )
        .unwrap();
        digests
    }

    /// Bytes that do not compress (so a layer's blob is as big as its file).
    fn noise(n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 32);
        let mut h = Sha256::digest(b"seed");
        while out.len() < n {
            h = Sha256::digest(h);
            out.extend_from_slice(&h);
        }
        out.truncate(n);
        out
    }

    fn import(
        store: &TemplateStore,
        name: &str,
        src: &TemplateSource,
        cancel: Option<&AtomicBool>,
    ) -> (
        Result<Template, TemplateStoreError>,
        Vec<TemplateBuildEvent>,
    ) {
        let mut events = Vec::new();
        let r = store.import_with(name, None, src, &mut |e| events.push(e), cancel);
        (r, events)
    }

    fn layer_states(events: &[TemplateBuildEvent]) -> Vec<(u32, u32, TemplateLayerState)> {
        events
            .iter()
            .filter_map(|e| match e {
                TemplateBuildEvent::Layer {
                    layer,
                    total,
                    state,
                    ..
                } => Some((*layer, *total, *state)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn oci_import_reports_each_layer_and_a_reimport_unpacks_nothing() {
        use TemplateLayerState::{Applied, Cached, Started};
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("img");
        let big = noise(3 << 20);
        let blobs = [
            layer_blob(&[("big.bin", &big)]),
            layer_blob(&[("etc/motd", b"hi")]),
        ];
        let digests = oci_layout(&img, &blobs);
        let store = TemplateStore::new(&t.path().join("data"), 0);
        let src = TemplateSource::Oci(img.clone());

        let (r, events) = import(&store, "a", &src, None);
        let a = r.unwrap();
        assert_eq!(
            layer_states(&events),
            [
                (1, 2, Started),
                (1, 2, Applied),
                (2, 2, Started),
                (2, 2, Applied)
            ]
        );
        // Each layer's bytes end at its blob's size, before it is applied.
        let mut last_bytes = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if let TemplateBuildEvent::Layer { state: Applied, .. } = e {
                match &events[i - 1] {
                    TemplateBuildEvent::Bytes {
                        done, total, files, ..
                    } => {
                        assert_eq!(Some(*done), *total);
                        assert_eq!(*files, None);
                        last_bytes.push(*done);
                    }
                    other => panic!("{other:?} before an applied layer"),
                }
            }
        }
        assert_eq!(last_bytes, [blobs[0].len() as u64, blobs[1].len() as u64]);
        if let TemplateBuildEvent::Layer {
            digest, size_bytes, ..
        } = &events[0]
        {
            assert_eq!((digest, *size_bytes), (&digests[0], blobs[0].len() as u64));
        }
        // The blob cache names both layers.
        let cached: HashSet<String> = fs::read_dir(t.path().join("data/templates/blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for d in &digests {
            assert!(cached.contains(&format!("{}.json", &d[7..])), "{cached:?}");
        }

        // Again under another name: both layers cached (checked, not unpacked).
        let (r, events) = import(&store, "b", &src, None);
        let b = r.unwrap();
        assert_eq!(layer_states(&events), [(1, 2, Cached), (2, 2, Cached)]);
        // Nothing unpacked: the work dir never held an image layer (only the blob
        // was read, to check its digest).
        assert!(!events.iter().any(|e| matches!(
            e,
            TemplateBuildEvent::Layer {
                state: Started | Applied,
                ..
            }
        )));
        assert_eq!(a.layers, b.layers);
        assert_eq!(a.id, b.id);

        // Removing both removes the layers and their cache entries.
        store
            .remove_pinned(&["a:1".to_string(), "b:1".to_string()])
            .unwrap();
        let left = fs::read_dir(t.path().join("data/templates/blobs"))
            .unwrap()
            .count();
        assert_eq!(left, 0);
        // A cache entry never outlives its layer: the next import reads the blobs.
        let (r, events) = import(&store, "c", &src, None);
        r.unwrap();
        assert_eq!(layer_states(&events)[0], (1, 2, Started));
    }

    #[test]
    fn a_cancelled_import_stops_and_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("img");
        oci_layout(&img, &[layer_blob(&[("big.bin", &noise(4 << 20))])]);
        let store = TemplateStore::new(&t.path().join("data"), 0);
        let cancel = AtomicBool::new(false);
        let mut events = Vec::new();
        let r = store.import_with(
            "x",
            None,
            &TemplateSource::Oci(img),
            &mut |e| {
                // Cancelled as soon as the first layer starts.
                if matches!(e, TemplateBuildEvent::Layer { .. }) {
                    cancel.store(true, Ordering::Relaxed);
                }
                events.push(e);
            },
            Some(&cancel),
        );
        assert!(matches!(r, Err(TemplateStoreError::Cancelled)), "{r:?}");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(store.list().unwrap().len(), 1, "only host");
        let tmp = fs::read_dir(t.path().join("data/templates/tmp"))
            .unwrap()
            .count();
        assert_eq!(tmp, 0, "the work dir is removed");
        let layers = fs::read_dir(t.path().join("data/templates/layers"))
            .unwrap()
            .count();
        assert_eq!(layers, 0);
    }

    #[test]
    fn a_directory_import_counts_files_and_bytes() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("root");
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::write(src.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(src.join("a.bin"), vec![7u8; 5000]).unwrap();
        let store = TemplateStore::new(&t.path().join("data"), 0);
        let (r, events) = import(&store, "d", &TemplateSource::Dir(src), None);
        r.unwrap();
        use TemplateLayerState::{Applied, Started};
        assert_eq!(layer_states(&events), [(1, 1, Started), (1, 1, Applied)]);
        assert_eq!(
            events[1],
            TemplateBuildEvent::Bytes {
                done: 5000 + 26,
                total: None,
                files: Some(2),
            }
        );
    }

    #[test]
    fn byte_events_are_throttled() {
        let mut events = Vec::new();
        {
            let mut on = |e| events.push(e);
            let mut p = Progress::new(&mut on, None);
            p.start_bytes(Some(100 << 20));
            for _ in 0..100 {
                p.add(1 << 20).unwrap();
            }
            p.end_bytes();
        }
        let done: Vec<u64> = events
            .iter()
            .map(|e| match e {
                TemplateBuildEvent::Bytes { done, .. } => *done,
                _ => 0,
            })
            .collect();
        // Every 32 MiB (the loop takes well under a second), then the end.
        assert_eq!(done, [32 << 20, 64 << 20, 96 << 20, 100 << 20]);
    }
}

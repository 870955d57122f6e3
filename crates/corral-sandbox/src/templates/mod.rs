//! The template store: immutable, content-addressed root file systems with names and
//! versions, under `DIR/templates/` (the daemon's data dir, or the CLI's state dir).
//!
//! ```text
//! templates/
//!   .lock                      flock: commits, removals and garbage collection
//!   layers/<sha256>/           one layer's files, owned by the sandbox id range
//!   images/<name>/<version>.json   a template: its layers bottom first + metadata
//!   tmp/<pid>-<nanos>/         imports in progress (removed when that pid is gone)
//!   blobs/<sha256>.json        OCI blob -> the layer made of it (import.rs)
//!   host-<key>/                the built-in `host` template's skeleton (host.rs)
//! ```
//!
//! A layer's name is the SHA-256 of its content manifest (layer.rs), so templates that
//! share a layer share its directory. An import builds every layer in its tmp dir and
//! then, holding the lock, renames each new layer into `layers/` and writes the
//! manifest (written to a temporary name, then renamed): a killed import leaves at
//! worst a tmp dir and unreferenced layers, never a template, and both are removed the
//! next time a store is opened for writing. A manifest is one JSON file (no SQLite):
//! it is written once and never changed, and the directory listing is the index.

mod build;
mod config;
mod copy;
mod debootstrap;
mod dir;
mod etc;
mod helper;
mod import;
mod layer;
mod oci;
mod recipe;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use corral_isolate::RootfsSpec;
use corral_types::api::{Template, TemplateLayer};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use self::build::{BuildEvent, BuildNetwork, BuildRequest};
pub(crate) use self::config::ImageDefaults;
pub use self::debootstrap::Debootstrap;
pub use self::helper::build_main;
pub(crate) use self::helper::{run_helper, BuildAnswer, BuildJob, DebootstrapJob, JobSource};
use self::layer::hex;
pub use self::recipe::RecipeError;

/// The longest overlay lowerdir option corral builds (the kernel takes one page of
/// mount options; snapshot layers and the other options need room too).
const LOWERDIR_MAX: usize = 3000;
const MANIFEST_FORMAT: u32 = 1;

/// Failures of the template store.
#[derive(Debug, thiserror::Error)]
pub enum TemplateStoreError {
    /// No template of that name (or version).
    #[error("unknown template {name:?}; available templates: {available}")]
    NotFound {
        /// What was asked for.
        name: String,
        /// Names that exist.
        available: String,
    },
    /// A name or version that is not allowed.
    #[error("{0}")]
    InvalidName(String),
    /// That name and version exist already (templates are immutable).
    #[error("template {0} exists already; templates never change: import under a new version")]
    Exists(String),
    /// Sandboxes or snapshots still use it.
    #[error("template {name} is in use by {users}; delete them first")]
    InUse {
        /// The template.
        name: String,
        /// Who uses it.
        users: String,
    },
    /// An archive entry that could escape or is not allowed; nothing was imported.
    #[error("refusing archive entry {path:?}: {why}; nothing was imported")]
    UnsafeEntry {
        /// The entry's path as written in the archive.
        path: String,
        /// Why.
        why: String,
    },
    /// The source is not a usable image or directory.
    #[error("cannot import {}: {why}", path.display())]
    BadSource {
        /// The source (or the file in it).
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The recipe cannot be built as written (its line is in the message).
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// A recipe step failed; nothing was registered.
    #[error("step {step} (recipe line {line}) failed: {why}; nothing was registered")]
    StepFailed {
        /// 1-based step.
        step: usize,
        /// The recipe line of the instruction.
        line: usize,
        /// Why.
        why: String,
    },
    /// The import was cancelled (a build job's `DELETE`).
    #[error("the import was cancelled; nothing of it was registered")]
    Cancelled,
    /// A malformed tar archive.
    #[error("malformed tar archive; nothing was imported")]
    Tar(#[source] io::Error),
    /// A file system operation failed.
    #[error("{what} failed; check the data directory's free space and permissions")]
    Io {
        /// What corral was doing.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store was written for another uid map base.
    #[error("template {name} was imported for sandbox id base {stored}, but this corral maps ids from {current}; import it again")]
    IdBase {
        /// The template.
        name: String,
        /// Recorded base.
        stored: u32,
        /// This corral's.
        current: u32,
    },
}

impl TemplateStoreError {
    pub(crate) fn unsafe_entry(path: &Path, why: &str) -> TemplateStoreError {
        TemplateStoreError::UnsafeEntry {
            path: path.display().to_string(),
            why: why.to_string(),
        }
    }

    pub(crate) fn tar(e: io::Error) -> TemplateStoreError {
        TemplateStoreError::Tar(e)
    }

    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> TemplateStoreError {
        let what = what.into();
        move |source| TemplateStoreError::Io { what, source }
    }
}

/// Where an import reads from.
#[derive(Debug, Clone)]
pub enum TemplateSource {
    /// A directory holding a root file system.
    Dir(PathBuf),
    /// An OCI image layout directory, or an OCI / `docker save` tarball.
    Oci(PathBuf),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    name: String,
    version: String,
    created_at_ms: u64,
    id_base: u32,
    source: String,
    /// Bottom first; the last is corral's layer.
    layers: Vec<LayerEntry>,
    env: Vec<String>,
    /// "host": the layers sit on the host template (its skeleton and /usr binds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<String>,
    /// The image's working directory (a recipe's final WORKDIR, an OCI WorkingDir):
    /// absolute, checked; processes start there unless they ask otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workdir: Option<String>,
    /// The image's user, as the uid a sandbox runs as (0 or 1000; an OCI User is
    /// resolved at import); processes run as it unless they ask otherwise. None: the
    /// image named none (corral's default, `sandbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<u32>,
    /// The hosts a recipe's `# corral: allow` names (for RUN egress, not wired yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerEntry {
    digest: String,
    size_bytes: u64,
    origin: String,
}

impl Manifest {
    fn pinned(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    fn to_api(&self) -> Template {
        let mut h = Sha256::new();
        for l in &self.layers {
            h.update(l.digest.as_bytes());
            h.update(b"\n");
        }
        Template {
            name: self.name.clone(),
            version: self.version.clone(),
            id: format!("tpl-{}", &hex(&h.finalize())[..32]),
            source: self.source.clone(),
            size_bytes: self.layers.iter().map(|l| l.size_bytes).sum(),
            layers: self
                .layers
                .iter()
                .map(|l| TemplateLayer {
                    digest: format!("sha256:{}", l.digest),
                    size_bytes: l.size_bytes,
                    origin: l.origin.clone(),
                })
                .collect(),
            env: self.env.clone(),
            config: config::to_api(&self.env, self.workdir.as_deref(), self.user),
            created_at: corral_types::rfc3339_ms(self.created_at_ms),
        }
    }

    fn defaults(&self) -> ImageDefaults {
        ImageDefaults::from_recorded(&self.env, self.workdir.as_deref(), self.user)
    }
}

/// The built-in template's entry in listings.
fn host_entry() -> Template {
    Template {
        name: "host".into(),
        version: "builtin".into(),
        id: "host".into(),
        source: "builtin".into(),
        size_bytes: 0,
        layers: Vec::new(),
        env: Vec::new(),
        config: Default::default(),
        created_at: corral_types::rfc3339_ms(0),
    }
}

/// Checks a template name: 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_template_name(name: &str) -> Result<(), TemplateStoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        return Err(TemplateStoreError::InvalidName(format!(
            "template name {name:?} must be 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        )));
    }
    if name == "host" {
        return Err(TemplateStoreError::InvalidName(
            "`host` is the built-in template; choose another name".into(),
        ));
    }
    Ok(())
}

fn check_version(v: &str) -> Result<(), TemplateStoreError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TemplateStoreError::InvalidName(format!(
            "template version {v:?} must be 1-64 characters of letters, digits, '.', '_' and '-'"
        )))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The template store of one data directory.
#[derive(Debug, Clone)]
pub struct TemplateStore {
    root: PathBuf,
    id_base: u32,
}

impl TemplateStore {
    /// The store under `data_dir/templates` for sandboxes mapping ids from `id_base`.
    /// Cheap: reads and creates nothing.
    pub fn new(data_dir: &Path, id_base: u32) -> TemplateStore {
        TemplateStore {
            root: data_dir.join("templates"),
            id_base,
        }
    }

    fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn lock(&self) -> Result<Flock<fs::File>, TemplateStoreError> {
        fs::create_dir_all(&self.root)
            .map_err(TemplateStoreError::io("creating the template store"))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(".lock"))
            .map_err(TemplateStoreError::io("opening the template store lock"))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| TemplateStoreError::Io {
            what: "locking the template store".into(),
            source: e.into(),
        })
    }

    /// Removes what interrupted imports left: tmp dirs of processes that are gone and
    /// layers no template names.
    pub fn clean_stale(&self) -> Result<(), TemplateStoreError> {
        let _lock = self.lock()?;
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
                let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        self.collect_garbage(false)
    }

    /// Removes layers no manifest names (caller holds the lock). Layers the recipe
    /// build cache names are kept, unless `drop_cache`: then cache entries whose layers
    /// no template names go first (template removal is what frees cached layers).
    fn collect_garbage(&self, drop_cache: bool) -> Result<(), TemplateStoreError> {
        let mut used: std::collections::HashSet<String> = self
            .manifests()?
            .into_iter()
            .flat_map(|m| m.layers.into_iter().map(|l| l.digest))
            .collect();
        if let Ok(entries) = fs::read_dir(self.root.join("cache")) {
            for e in entries.flatten() {
                let entry = fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<LayerEntry>(&b).ok());
                match entry {
                    Some(l) if !drop_cache || used.contains(&l.digest) => {
                        used.insert(l.digest);
                    }
                    // Unreadable, partial or no longer wanted.
                    _ => {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
        if let Ok(entries) = fs::read_dir(self.layers()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !used.contains(&name) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        self.forget_blobs();
        Ok(())
    }

    fn manifests(&self) -> Result<Vec<Manifest>, TemplateStoreError> {
        let mut out = Vec::new();
        let Ok(names) = fs::read_dir(self.images()) else {
            return Ok(out);
        };
        for n in names.flatten() {
            let Ok(versions) = fs::read_dir(n.path()) else {
                continue;
            };
            for v in versions.flatten() {
                let p = v.path();
                if p.extension().is_some_and(|e| e == "json") {
                    let bytes = fs::read(&p)
                        .map_err(TemplateStoreError::io(format!("reading {}", p.display())))?;
                    if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                        out.push(m);
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.name, a.created_at_ms, &a.version).cmp(&(&b.name, b.created_at_ms, &b.version))
        });
        Ok(out)
    }

    /// Every template, `host` first, then by name and age.
    pub fn list(&self) -> Result<Vec<Template>, TemplateStoreError> {
        let mut out = vec![host_entry()];
        out.extend(self.manifests()?.iter().map(Manifest::to_api));
        Ok(out)
    }

    /// What a template's image gives the processes started in it (`host`: nothing).
    /// A pinned `name:version` reads that one manifest only (this runs for every exec).
    pub(crate) fn defaults(&self, r: &str) -> Result<ImageDefaults, TemplateStoreError> {
        if r == "host" {
            return Ok(ImageDefaults::default());
        }
        if let Some((name, version)) = r.split_once(':') {
            if check_template_name(name).is_ok() && check_version(version).is_ok() {
                let file = self.images().join(name).join(format!("{version}.json"));
                if let Ok(bytes) = fs::read(&file) {
                    if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                        return Ok(m.defaults());
                    }
                }
            }
        }
        Ok(self.find(r)?.defaults())
    }

    fn find(&self, r: &str) -> Result<Manifest, TemplateStoreError> {
        let (name, version) = match r.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (r, None),
        };
        let all = self.manifests()?;
        all.iter()
            .rfind(|m| m.name == name && version.is_none_or(|v| v == m.version))
            .cloned()
            .ok_or_else(|| {
                let mut names: Vec<String> = vec!["host".into()];
                for m in &all {
                    if !names.contains(&m.name) {
                        names.push(m.name.clone());
                    }
                }
                TemplateStoreError::NotFound {
                    name: r.to_string(),
                    available: names.join(", "),
                }
            })
    }

    /// `host`, `name` (its newest version) or `name:version`.
    pub fn get(&self, r: &str) -> Result<Template, TemplateStoreError> {
        if r == "host" {
            return Ok(host_entry());
        }
        Ok(self.find(r)?.to_api())
    }

    /// The exact `name:version` a reference means now (`host` stays `host`): what a
    /// sandbox records, so a newer import never changes a running sandbox's files.
    pub fn pin(&self, r: &str) -> Result<String, TemplateStoreError> {
        if r == "host" {
            return Ok(r.into());
        }
        Ok(self.find(r)?.pinned())
    }

    /// Every `name:version` a reference covers for removal: `name:version` itself, or
    /// every version of `name`.
    pub fn versions_of(&self, r: &str) -> Result<Vec<String>, TemplateStoreError> {
        if r == "host" {
            return Err(TemplateStoreError::InvalidName(
                "`host` is built in and cannot be removed".into(),
            ));
        }
        if r.contains(':') {
            return Ok(vec![self.find(r)?.pinned()]);
        }
        let v: Vec<String> = self
            .manifests()?
            .iter()
            .filter(|m| m.name == r)
            .map(Manifest::pinned)
            .collect();
        if v.is_empty() {
            self.find(r)?;
        }
        Ok(v)
    }

    /// The root file system of a template (`name` or `name:version`): its layers as
    /// read-only overlay lower layers, nothing copied.
    pub fn rootfs(&self, r: &str) -> Result<RootfsSpec, TemplateStoreError> {
        let m = self.find(r)?;
        if m.id_base != self.id_base {
            return Err(TemplateStoreError::IdBase {
                name: m.pinned(),
                stored: m.id_base,
                current: self.id_base,
            });
        }
        let mut dirs: Vec<PathBuf> = m
            .layers
            .iter()
            .map(|l| self.layers().join(&l.digest))
            .collect();
        let total: usize = dirs.iter().map(|d| d.as_os_str().len() + 1).sum();
        if total > LOWERDIR_MAX {
            return Err(TemplateStoreError::BadSource {
                path: self.root.clone(),
                why: format!(
                    "template {} has {} layers, more than one overlay mount can name from this data directory",
                    m.pinned(),
                    dirs.len()
                ),
            });
        }
        for d in &dirs {
            if !d.is_dir() {
                return Err(TemplateStoreError::BadSource {
                    path: d.clone(),
                    why: format!(
                        "layer of template {} is missing; import it again",
                        m.pinned()
                    ),
                });
            }
        }
        if m.base.as_deref() == Some("host") {
            let mut r =
                crate::host::host_rootfs(&self.root, self.id_base).map_err(|(path, source)| {
                    TemplateStoreError::Io {
                        what: format!("building the host template in {}", path.display()),
                        source,
                    }
                })?;
            dirs.reverse();
            r.layers = dirs;
            return Ok(r);
        }
        if dirs.is_empty() {
            return Err(TemplateStoreError::BadSource {
                path: self.root.clone(),
                why: format!("template {} has no layers", m.pinned()),
            });
        }
        let lower = dirs.remove(0);
        dirs.reverse();
        Ok(RootfsSpec {
            lower,
            ro_binds: Vec::new(),
            layers: dirs,
        })
    }

    /// Builds a Debian base with debootstrap (see debootstrap.rs) and imports it;
    /// debootstrap's output goes to `progress`. Nothing is left behind on failure.
    pub fn debootstrap(
        &self,
        name: &str,
        version: Option<&str>,
        spec: &Debootstrap,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<Template, TemplateStoreError> {
        check_template_name(name)?;
        if let Some(v) = version {
            check_version(v)?;
            if self.find(&format!("{name}:{v}")).is_ok() {
                return Err(TemplateStoreError::Exists(format!("{name}:{v}")));
            }
        }
        spec.validate()?;
        let mirror = match (&spec.tarball, &spec.mirror) {
            (Some(_), _) => None,
            (None, Some(m)) => Some(m.clone()),
            (None, None) => Some(debootstrap::host_mirror(&spec.suite).ok_or_else(|| {
                TemplateStoreError::InvalidName(format!(
                    "no Debian mirror for suite {} in the host's apt sources; pass --mirror URL",
                    spec.suite
                ))
            })?),
        };
        let tmp = self.work_dir()?;
        let root = tmp.join("rootfs");
        let result =
            debootstrap::bootstrap(spec, mirror.as_deref(), &root, progress).and_then(|()| {
                let described = spec.describe(mirror.as_deref());
                let mut quiet = |_| {};
                self.import_in(
                    &tmp,
                    name,
                    version,
                    &TemplateSource::Dir(root),
                    Some(described),
                    &mut import::Progress::new(&mut quiet, None),
                )
            });
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    /// Moves `pending` layers (dir, digest) into `layers/` and writes the manifest of
    /// `m` under `version`, or the next number, all under the store lock. A build without a version whose result equals the newest
    /// version of the name (same layers and metadata) returns that version instead.
    fn register(
        &self,
        mut m: Manifest,
        version: Option<&str>,
        pending: &[(PathBuf, String)],
    ) -> Result<Template, TemplateStoreError> {
        let mkio = |d: &Path| TemplateStoreError::io(format!("creating {}", d.display()));
        let name = m.name.clone();
        let _lock = self.lock()?;
        if let Some(v) = version {
            if self.images().join(&name).join(format!("{v}.json")).exists() {
                return Err(TemplateStoreError::Exists(format!("{name}:{v}")));
            }
        }
        for (d, digest) in pending {
            let dest = self.layers().join(digest);
            if !dest.exists() {
                fs::rename(d, &dest).map_err(TemplateStoreError::io(format!(
                    "moving layer {digest} into the store"
                )))?;
            }
        }
        for e in &m.layers {
            if !self.layers().join(&e.digest).is_dir() {
                return Err(TemplateStoreError::BadSource {
                    path: self.layers().join(&e.digest),
                    why: "a layer went missing while building (a concurrent removal collected it); build again".into(),
                });
            }
        }
        let all = self.manifests()?;
        let version = match version {
            Some(v) => v.to_string(),
            None => {
                if let Some(newest) = all.iter().rfind(|o| o.name == name) {
                    let same = |o: &Manifest| {
                        o.source.starts_with("recipe:")
                            && o.source == m.source
                            && o.env == m.env
                            && o.base == m.base
                            && o.workdir == m.workdir
                            && o.user == m.user
                            && o.allow == m.allow
                            && o.layers
                                .iter()
                                .map(|l| &l.digest)
                                .eq(m.layers.iter().map(|l| &l.digest))
                    };
                    if same(newest) {
                        return Ok(newest.to_api());
                    }
                }
                let n = all
                    .iter()
                    .filter(|m| m.name == name)
                    .filter_map(|m| m.version.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                (n + 1).to_string()
            }
        };
        m.version = version;
        let dir = self.images().join(&name);
        let file = dir.join(format!("{}.json", m.version));
        if file.exists() {
            return Err(TemplateStoreError::Exists(m.pinned()));
        }
        fs::create_dir_all(&dir).map_err(mkio(&dir))?;
        let part = dir.join(format!(".{}.json.part", m.version));
        let json = serde_json::to_vec_pretty(&m).map_err(|e| TemplateStoreError::Io {
            what: "encoding the template manifest".into(),
            source: io::Error::other(e),
        })?;
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&part)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&part, &file)
        };
        write().map_err(TemplateStoreError::io(format!(
            "writing {}",
            file.display()
        )))?;
        Ok(m.to_api())
    }

    /// Removes templates by their pinned `name:version`s (the caller has checked that
    /// nothing uses them), then layers nothing else names.
    pub fn remove_pinned(&self, pinned: &[String]) -> Result<(), TemplateStoreError> {
        let _lock = self.lock()?;
        for p in pinned {
            let (name, version) = p.split_once(':').unwrap_or((p, ""));
            check_template_name(name)?;
            check_version(version)?;
            let dir = self.images().join(name);
            let _ = fs::remove_file(dir.join(format!("{version}.json")));
            let _ = fs::remove_dir(&dir);
        }
        self.collect_garbage(true)
    }
}

//! Building a template from a recipe (recipe.rs): each RUN in a one-shot corral
//! sandbox over the layers so far, whose writable layer (the overlay upper dir, kept on
//! disk: `SandboxSpec::upper_dir`) becomes the step's layer; each COPY/ADD written as a
//! layer directly. Every layer-making step is cached by the content of its inputs.
//!
//! Cache: `templates/cache/<key>` holds the digest of the layer a step made, where key
//! = SHA-256(previous key, the instruction after substitution, and what else it reads:
//! for RUN the environment, build args, working directory and user; for COPY/ADD the
//! content of the copied files). The first key is the base's (the FROM template's layer
//! digests, or the host skeleton's name). ENV, WORKDIR and USER make no layer but
//! enter the key chain; an ARG's value enters RUN keys (it is in RUN's environment). An entry counts only while its layer is in `layers/`; garbage
//! collection keeps cached layers until a template removal drops entries whose layers
//! no template names.
//!
//! Must run in a single-threaded process (corral_isolate::run forks): `corral template
//! build` or the daemon's `corral __build` helper. Steps work in the store's tmp dir,
//! removed on every exit path; a killed build leaves a tmp dir (removed when the store
//! is next opened for writing) and maybe cached layers, never a template.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{fs, io};

use corral_isolate::{Limits, OutputMode, RootfsSpec, SandboxSpec, SandboxUser, StdinMode};
use sha2::{Digest, Sha256};

use super::copy::{copy_source, hash_tree, inside_context};
use super::layer::{digest_layer, hex, LayerWriter, OPAQUE_XATTR};
use super::recipe::{self, Instr};
use super::{LayerEntry, Manifest, TemplateStore, TemplateStoreError};
use crate::host;

/// Bumped when what a key covers changes: old cache entries are then never hit.
const CACHE_FORMAT: &str = "corral-recipe-cache-1";
/// Limits of each RUN's sandbox.
const RUN_LIMITS: Limits = Limits {
    memory_bytes: 2 << 30,
    cpu_millis: 2000,
    pids: 1024,
    disk_bytes: 4 << 30,
    timeout: Duration::from_secs(30 * 60),
    nofile: 4096,
};
/// Captured output kept per RUN stream.
const OUTPUT_LIMIT: u64 = 1 << 20;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Template name.
    pub name: String,
    /// Version; None: the next number, or the newest version when nothing changed.
    pub version: Option<String>,
    /// The recipe's text.
    pub recipe: String,
    /// Shown in the template's `source` (e.g. the recipe's path).
    pub recipe_name: String,
    /// The build context: COPY and ADD sources are relative to it.
    pub context: PathBuf,
    /// `--build-arg NAME=VALUE`s.
    pub build_args: BTreeMap<String, String>,
    /// corral's runtime directory (see SandboxSpec::runtime_dir).
    pub runtime_dir: PathBuf,
    /// Parent cgroup of the RUN sandboxes.
    pub cgroup_parent: String,
    /// Networks for the RUN steps of a recipe that names hosts (`# corral: allow`);
    /// a recipe naming none runs every RUN offline and needs none.
    pub network: Option<Arc<dyn BuildNetwork>>,
}

/// Gives a RUN sandbox a network in mode allow: egress only to the recipe's `# corral:
/// allow` hosts, through corral's egress proxy and resolver. Implemented by the binary
/// (the proxy runs in a helper process, as for `corral run --net allow=...`: this
/// process must stay single-threaded to fork sandboxes).
pub trait BuildNetwork: std::fmt::Debug + Send + Sync {
    /// Sets `spec` up (network namespace, proxy variables, resolv.conf) to reach only
    /// `allow`; what it returns is dropped after the RUN and then removes that
    /// network.
    fn attach(&self, allow: &[String], spec: &mut SandboxSpec) -> Result<Box<dyn Any>, String>;
}

/// Progress of a build, reported as it goes.
#[derive(Debug, Clone)]
pub enum BuildEvent {
    /// Step `step` of `total` starts (`cached`: its layer comes from the cache).
    Step {
        /// 1-based.
        step: usize,
        /// Steps in the recipe (FROM included).
        total: usize,
        /// The instruction as written.
        text: String,
        /// Served from the cache.
        cached: bool,
    },
    /// Output of a RUN (captured; shown after it ends).
    Output(Vec<u8>),
    /// The step finished.
    Done {
        /// 1-based.
        step: usize,
        /// How long it took.
        elapsed: Duration,
    },
}

pub(crate) fn h(parts: &[&[u8]]) -> String {
    let mut d = Sha256::new();
    for p in parts {
        d.update((p.len() as u64).to_le_bytes());
        d.update(p);
    }
    hex(&d.finalize())
}

fn step_err(step: usize, line: usize, why: impl Into<String>) -> TemplateStoreError {
    TemplateStoreError::StepFailed {
        step,
        line,
        why: why.into(),
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> TemplateStoreError {
    TemplateStoreError::io(what)
}

/// `/a/./b/../c` -> `a/c`, relative to the root; `..` stops at the root.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The state a recipe builds up.
struct State {
    env: Vec<(String, String)>,
    args: BTreeMap<String, String>,
    workdir: String,
    user: u32,
    /// A USER was given (here or in the base): the template records it, root included.
    user_set: bool,
    /// Layers below, bottom first (the base's and the ones built so far).
    layers: Vec<LayerEntry>,
    key: String,
}

impl State {
    fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.to_string(), v.to_string()));
    }
}

/// The base a recipe starts FROM.
struct Base {
    host: Option<RootfsSpec>,
    source: String,
}

impl TemplateStore {
    fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Builds a template from a recipe. `progress` sees each step. Nothing is
    /// registered unless every step succeeds.
    pub fn build(
        &self,
        req: &BuildRequest,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<super::Template, TemplateStoreError> {
        super::check_template_name(&req.name)?;
        if let Some(v) = &req.version {
            super::check_version(v)?;
            if self.find(&format!("{}:{v}", req.name)).is_ok() {
                return Err(TemplateStoreError::Exists(format!("{}:{v}", req.name)));
            }
        }
        let recipe = recipe::parse(&req.recipe, &req.build_args)?;
        let context = req
            .context
            .canonicalize()
            .map_err(|e| TemplateStoreError::BadSource {
                path: req.context.clone(),
                why: format!("the build context: {e}"),
            })?;
        for d in [self.root.join("tmp"), self.layers(), self.cache_dir()] {
            fs::create_dir_all(&d).map_err(io_err("creating the template store"))?;
        }
        let tmp = self.root.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir(&tmp).map_err(io_err("creating the build's work dir"))?;
        let result = self.build_in(&tmp, req, &recipe, &context, progress);
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    fn build_in(
        &self,
        tmp: &Path,
        req: &BuildRequest,
        recipe: &recipe::Recipe,
        context: &Path,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<super::Template, TemplateStoreError> {
        let total = recipe.steps.len();
        let mut st = State {
            env: Vec::new(),
            args: BTreeMap::new(),
            workdir: "/".into(),
            user: 0,
            user_set: false,
            layers: Vec::new(),
            key: String::new(),
        };
        let mut base = Base {
            host: None,
            source: String::new(),
        };
        for (i, step) in recipe.steps.iter().enumerate() {
            let n = i + 1;
            let started = Instant::now();
            let instr_text = format!("{:?}", step.instr);
            if matches!(
                step.instr,
                Instr::Env(_) | Instr::Workdir(_) | Instr::User(_) | Instr::Arg(..)
            ) {
                progress(BuildEvent::Step {
                    step: n,
                    total,
                    text: step.text.clone(),
                    cached: true,
                });
            }
            match &step.instr {
                Instr::From(r) => {
                    progress(BuildEvent::Step {
                        step: n,
                        total,
                        text: step.text.clone(),
                        cached: true,
                    });
                    if r == "host" {
                        let rootfs = host::host_rootfs(&self.root, self.id_base).map_err(
                            |(dir, source)| TemplateStoreError::Io {
                                what: format!("building the host template in {}", dir.display()),
                                source,
                            },
                        )?;
                        let skel = rootfs
                            .lower
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        st.key = h(&[CACHE_FORMAT.as_bytes(), b"host", skel.as_bytes()]);
                        base.host = Some(rootfs);
                        base.source = "host".into();
                    } else {
                        let m = self
                            .find(r)
                            .map_err(|e| step_err(n, step.line, e.to_string()))?;
                        if m.id_base != self.id_base {
                            return Err(step_err(
                                n,
                                step.line,
                                format!("template {} was imported for another sandbox id base; import it again", m.pinned()),
                            ));
                        }
                        if m.base.as_deref() == Some("host") {
                            base.host = Some(host::host_rootfs(&self.root, self.id_base).map_err(
                                |(dir, source)| TemplateStoreError::Io {
                                    what: format!(
                                        "building the host template in {}",
                                        dir.display()
                                    ),
                                    source,
                                },
                            )?);
                        }
                        let mut parts: Vec<&[u8]> = vec![CACHE_FORMAT.as_bytes(), b"template"];
                        parts.extend(m.layers.iter().map(|l| l.digest.as_bytes()));
                        let host_skel = base
                            .host
                            .as_ref()
                            .map(|r| r.lower.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        parts.push(host_skel.as_bytes());
                        st.key = h(&parts);
                        for e in &m.env {
                            if let Some((k, v)) = e.split_once('=') {
                                st.set_env(k, v);
                            }
                        }
                        st.workdir = m.workdir.clone().unwrap_or_else(|| "/".into());
                        st.user = m.user.unwrap_or(0);
                        st.user_set = m.user.is_some();
                        st.layers = m.layers.clone();
                        base.source = m.pinned();
                    }
                }
                Instr::Env(pairs) => {
                    for (k, v) in pairs {
                        st.set_env(k, v);
                    }
                    st.key = h(&[st.key.as_bytes(), instr_text.as_bytes()]);
                }
                Instr::Workdir(d) => {
                    let p = Path::new(&st.workdir).join(d);
                    st.workdir = format!("/{}", normalize(&p).display());
                    st.key = h(&[st.key.as_bytes(), instr_text.as_bytes()]);
                }
                Instr::User(u) => {
                    st.user = *u;
                    st.user_set = true;
                    st.key = h(&[st.key.as_bytes(), instr_text.as_bytes()]);
                }
                // Not in the chain: a value reaches later keys where it is used (in
                // substituted text, or RUN's environment), so a new value leaves
                // COPY steps cached, as in Docker.
                Instr::Arg(k, v) => {
                    st.args.insert(k.clone(), v.clone());
                }
                Instr::Run(cmd) => {
                    let env = format!("{:?}", (&st.env, &st.args, &st.workdir, st.user));
                    let key = h(&[st.key.as_bytes(), instr_text.as_bytes(), env.as_bytes()]);
                    let cached = self.cached(&key);
                    progress(BuildEvent::Step {
                        step: n,
                        total,
                        text: step.text.clone(),
                        cached: cached.is_some(),
                    });
                    let entry = match cached {
                        Some(e) => e,
                        None => {
                            let dir = tmp.join(format!("s{n}"));
                            fs::create_dir(&dir).map_err(io_err("creating a step's work dir"))?;
                            self.run_step(
                                req,
                                &recipe.allow,
                                &base,
                                &st,
                                &cmd.argv(),
                                &dir,
                                n,
                                step.line,
                                progress,
                            )?;
                            let upper = dir.join("upper");
                            tidy_upper(&upper);
                            let entry = self.commit_layer(&upper, "recipe", &key)?;
                            let _ = fs::remove_dir_all(&dir);
                            entry
                        }
                    };
                    st.layers.push(entry);
                    st.key = key;
                }
                Instr::Copy {
                    add,
                    srcs,
                    dest,
                    chown,
                } => {
                    let mut sources = Vec::new();
                    let mut hashes = Vec::new();
                    for s in srcs {
                        let p = inside_context(context, s)
                            .map_err(|why| step_err(n, step.line, why))?;
                        hashes.push(
                            hash_tree(&p).map_err(io_err(format!("reading {}", p.display())))?,
                        );
                        sources.push(p);
                    }
                    let wd = st.workdir.clone();
                    let key = h(&[
                        st.key.as_bytes(),
                        instr_text.as_bytes(),
                        wd.as_bytes(),
                        hashes.join(",").as_bytes(),
                    ]);
                    let cached = self.cached(&key);
                    progress(BuildEvent::Step {
                        step: n,
                        total,
                        text: step.text.clone(),
                        cached: cached.is_some(),
                    });
                    let entry = match cached {
                        Some(e) => e,
                        None => {
                            let d = tmp.join(format!("s{n}"));
                            let w = LayerWriter::create(&d, self.id_base)
                                .map_err(io_err(format!("creating {}", d.display())))?;
                            let lowers = self.lowers_top_first(&st, &base);
                            let dest_abs = Path::new(&wd).join(dest);
                            let owner = chown.unwrap_or((0, 0));
                            let owner = (w.host_id(owner.0.into()), w.host_id(owner.1.into()));
                            let many = sources.len() > 1;
                            for (src, raw) in sources.iter().zip(srcs) {
                                copy_source(
                                    &w,
                                    &lowers,
                                    src,
                                    raw,
                                    &dest_abs,
                                    dest.ends_with('/') || many,
                                    owner,
                                    *add,
                                )
                                .map_err(|e| {
                                    step_err(n, step.line, corral_isolate::error_chain(&e))
                                })?;
                            }
                            let entry = self.commit_layer(&d, "recipe", &key)?;
                            let _ = fs::remove_dir_all(&d);
                            entry
                        }
                    };
                    st.layers.push(entry);
                    st.key = key;
                }
            }
            progress(BuildEvent::Done {
                step: n,
                elapsed: started.elapsed(),
            });
        }
        let env: Vec<String> = st.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let m = Manifest {
            format: super::MANIFEST_FORMAT,
            name: req.name.clone(),
            version: String::new(),
            created_at_ms: super::now_ms(),
            id_base: self.id_base,
            source: format!("recipe:{} from {}", req.recipe_name, base.source),
            layers: st.layers,
            env,
            base: base.host.as_ref().map(|_| "host".to_string()),
            workdir: (st.workdir != "/").then_some(st.workdir),
            user: st.user_set.then_some(st.user),
            allow: recipe.allow.clone(),
        };
        self.register(m, req.version.as_deref(), &[])
    }

    /// The layer a cache key names, if both the entry and the layer are there.
    fn cached(&self, key: &str) -> Option<LayerEntry> {
        let text = fs::read_to_string(self.cache_dir().join(key)).ok()?;
        let e: LayerEntry = serde_json::from_str(&text).ok()?;
        self.layers().join(&e.digest).is_dir().then_some(e)
    }

    /// Hashes a finished layer, moves it into `layers/` and records the cache entry.
    fn commit_layer(
        &self,
        dir: &Path,
        origin: &str,
        key: &str,
    ) -> Result<LayerEntry, TemplateStoreError> {
        let (digest, size_bytes) = digest_layer(dir, self.id_base)
            .map_err(io_err(format!("hashing {}", dir.display())))?;
        let entry = LayerEntry {
            digest,
            size_bytes,
            origin: origin.into(),
        };
        let _lock = self.lock()?;
        let dest = self.layers().join(&entry.digest);
        if !dest.exists() {
            fs::rename(dir, &dest).map_err(io_err(format!(
                "moving layer {} into the store",
                entry.digest
            )))?;
        }
        let json = serde_json::to_string(&entry).unwrap_or_default();
        let part = self.cache_dir().join(format!(".{key}.part"));
        fs::write(&part, json)
            .and_then(|()| fs::rename(&part, self.cache_dir().join(key)))
            .map_err(io_err("writing the build cache"))?;
        Ok(entry)
    }

    /// Directories of the layers below, topmost first (the host skeleton last).
    fn lowers_top_first(&self, st: &State, base: &Base) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = st
            .layers
            .iter()
            .rev()
            .map(|l| self.layers().join(&l.digest))
            .collect();
        if let Some(h) = &base.host {
            v.push(h.lower.clone());
        }
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        req: &BuildRequest,
        allow: &[String],
        base: &Base,
        st: &State,
        argv: &[String],
        dir: &Path,
        n: usize,
        line: usize,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<(), TemplateStoreError> {
        let mut layers = self.lowers_top_first(st, base);
        let rootfs = match &base.host {
            Some(h) => {
                layers.pop();
                RootfsSpec {
                    lower: h.lower.clone(),
                    ro_binds: h.ro_binds.clone(),
                    layers,
                }
            }
            None => {
                let lower = layers
                    .pop()
                    .ok_or_else(|| step_err(n, line, "the base template has no layers"))?;
                RootfsSpec {
                    lower,
                    ro_binds: Vec::new(),
                    layers,
                }
            }
        };
        // Build args are in RUN's environment (as in Docker); ENV wins over them.
        let mut env: Vec<(String, String)> = st
            .args
            .iter()
            .filter(|(k, _)| !st.env.iter().any(|(e, _)| e == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(st.env.iter().cloned());
        let mut spec = SandboxSpec {
            argv: argv.to_vec(),
            env,
            workdir: Some(PathBuf::from(&st.workdir)),
            user: if st.user == 0 {
                SandboxUser::Root
            } else {
                SandboxUser::Sandbox
            },
            rootfs,
            mounts: Vec::new(),
            limits: RUN_LIMITS,
            stdin: StdinMode::Null,
            output: OutputMode::Capture,
            output_limit: OUTPUT_LIMIT,
            hostname: "corral-build".into(),
            skip_layers: Vec::new(),
            runtime_dir: req.runtime_dir.clone(),
            cgroup_parent: req.cgroup_parent.clone(),
            id_map_base: self.id_base,
            upper_dir: Some(dir.to_path_buf()),
            netns: None,
        };
        // Egress only to the recipe's `# corral: allow` hosts; none named: offline.
        let network =
            match (&req.network, allow.is_empty()) {
                (_, true) => None,
                (Some(net), false) => Some(
                    net.attach(allow, &mut spec)
                        .map_err(|e| step_err(n, line, format!("giving RUN its network: {e}")))?,
                ),
                (None, false) => return Err(step_err(
                    n,
                    line,
                    "the recipe names hosts (`# corral: allow`) but this build has no egress proxy",
                )),
            };
        let out = corral_isolate::run(&spec);
        drop(network);
        let out = out.map_err(|e| step_err(n, line, corral_isolate::error_chain(&e)))?;
        let mut shown = out.stdout.clone();
        shown.extend_from_slice(&out.stderr);
        if !shown.is_empty() {
            progress(BuildEvent::Output(shown.clone()));
        }
        match out.exit_code() {
            0 => Ok(()),
            code => {
                let text = String::from_utf8_lossy(&shown);
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(step_err(
                    n,
                    line,
                    format!(
                        "RUN failed with exit status {code}{}{}",
                        if tail.is_empty() { "" } else { ": " },
                        tail.join(" | ")
                    ),
                ))
            }
        }
    }
}

/// Removes what every sandbox's writable layer starts with (empty /home/sandbox,
/// /home and /root made by corral's mount plan) when a RUN left them untouched, so
/// layers hold only what the step changed.
fn tidy_upper(upper: &Path) {
    for rel in ["home/sandbox", "home", "root"] {
        let p = upper.join(rel);
        let opaque = xattr::get(&p, OPAQUE_XATTR).ok().flatten().is_some();
        if !opaque {
            // remove_dir refuses non-empty directories: exactly what is wanted.
            let _ = fs::remove_dir(&p);
        }
    }
}

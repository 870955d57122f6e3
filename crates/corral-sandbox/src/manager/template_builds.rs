//! Template build jobs: `POST /v1/templates/builds` starts one in a `corral __build`
//! helper (templates/helper.rs) and answers at once; its progress events are kept (a
//! bounded tail) so a late client replays them and then follows; `DELETE` cancels.
//! Shipped recipes (`python`, `node`, or a `[templates] recipes_dir` one) are built on
//! the first create that names them: the create answers `template_building` with the
//! build's id, and the client retries when it is done. Imports (`import` source, and
//! `POST /v1/templates`) are jobs too, run in the daemon itself (`run_import`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use corral_types::api::{
    Template, TemplateBuild, TemplateBuildEvent, TemplateBuildState, TemplateLayerState,
};
use corral_types::ErrorDetail;
use tokio::sync::{watch, Semaphore};

use super::clock::{now_ms, rfc3339};
use super::SandboxError;
use crate::templates::{
    run_helper, BuildAnswer, BuildJob, TemplateSource, TemplateStore, TemplateStoreError,
};

mod ops;

/// Progress kept per build (older output lines are dropped first).
const EVENTS_MAX_BYTES: usize = 256 << 10;
/// Finished builds remembered (running ones are always kept).
const FINISHED_MAX: usize = 32;
/// Builds that run at once; the others wait, `queued`.
const RUNNING_MAX: usize = 2;

/// Recipes shipped in the binary: name, text.
const SHIPPED: &[(&str, &str)] = &[
    (
        "python",
        include_str!("../../../../resources/templates/python/Recipe"),
    ),
    (
        "node",
        include_str!("../../../../resources/templates/node/Recipe"),
    ),
];

/// corral.toml's `[templates]`.
#[derive(Debug, Clone)]
pub struct TemplateSettings {
    /// A create naming a shipped recipe the store lacks starts its build (default).
    pub build_on_first_use: bool,
    /// The Debian archive for the `debian` base of shipped recipes (default: the
    /// host's apt mirror).
    pub debootstrap_mirror: Option<String>,
    /// A `debootstrap --make-tarball` file for that base: no download.
    pub debootstrap_tarball: Option<PathBuf>,
    /// A directory of `NAME/Recipe` files that replace or add to the shipped recipes
    /// (`NAME/` is the recipe's build context).
    pub recipes_dir: Option<PathBuf>,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings {
            build_on_first_use: true,
            debootstrap_mirror: None,
            debootstrap_tarball: None,
            recipes_dir: None,
        }
    }
}

/// The daemon's build jobs.
#[derive(Debug)]
pub(crate) struct Builds {
    /// Oldest first.
    jobs: Mutex<VecDeque<Arc<Job>>>,
    next: AtomicU64,
    running: Arc<Semaphore>,
    settings: OnceLock<TemplateSettings>,
}

impl Default for Builds {
    fn default() -> Self {
        Builds {
            jobs: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(1),
            running: Arc::new(Semaphore::new(RUNNING_MAX)),
            settings: OnceLock::new(),
        }
    }
}

#[derive(Debug)]
struct Job {
    id: String,
    seq: u64,
    name: String,
    version: Option<String>,
    kind: &'static str,
    created_ms: u64,
    inner: Mutex<Inner>,
    /// The sequence number of the newest event (followers wait on it).
    events_tx: watch::Sender<u64>,
    cancel: watch::Sender<bool>,
    /// A create already reported this (failed) first-use build.
    reported: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    state: TemplateBuildState,
    step: u32,
    total: u32,
    started_ms: Option<u64>,
    finished_ms: Option<u64>,
    template: Option<Template>,
    error: Option<ErrorDetail>,
    /// (sequence number from 1, event, its size)
    events: VecDeque<(u64, TemplateBuildEvent, usize)>,
    bytes: usize,
    last_seq: u64,
}

impl Job {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn view(&self) -> TemplateBuild {
        let i = self.lock();
        TemplateBuild {
            id: self.id.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            source: self.kind.into(),
            state: i.state,
            step: i.step,
            total: i.total,
            template: i.template.clone(),
            error: i.error.clone(),
            created_at: rfc3339(self.created_ms),
            started_at: i.started_ms.map(rfc3339),
            finished_at: i.finished_ms.map(rfc3339),
        }
    }

    /// Other keys than admin see only shipped recipes' builds (which a create of
    /// theirs may wait on): another build's output may show its context's files.
    fn visible(&self, admin: bool) -> bool {
        admin || self.kind == "shipped"
    }

    fn state(&self) -> TemplateBuildState {
        self.lock().state
    }

    fn push(&self, e: TemplateBuildEvent) {
        let mut i = self.lock();
        match &e {
            TemplateBuildEvent::Step { step, total, .. } => {
                i.step = *step;
                i.total = *total;
            }
            TemplateBuildEvent::Phase { .. } => {
                i.step = 0;
                i.total = 0;
            }
            TemplateBuildEvent::Layer { layer, total, .. } => {
                i.step = *layer;
                i.total = *total;
            }
            _ => {}
        }
        let size = serde_json::to_vec(&e).map(|v| v.len()).unwrap_or(64) + 32;
        i.last_seq += 1;
        let seq = i.last_seq;
        i.events.push_back((seq, e, size));
        i.bytes += size;
        while i.bytes > EVENTS_MAX_BYTES && i.events.len() > 1 {
            // The oldest output line (or byte count) goes first; step events only when
            // nothing else is left to drop.
            let at = i
                .events
                .iter()
                .position(|(_, e, _)| {
                    matches!(
                        e,
                        TemplateBuildEvent::Output { .. } | TemplateBuildEvent::Bytes { .. }
                    )
                })
                .unwrap_or(0);
            if let Some((_, _, s)) = i.events.remove(at) {
                i.bytes -= s;
            }
        }
        drop(i);
        self.events_tx.send_replace(seq);
    }

    fn finish(&self, state: TemplateBuildState, result: Result<Template, ErrorDetail>) {
        let event = {
            let mut i = self.lock();
            i.state = state;
            i.finished_ms = Some(now_ms());
            match result {
                Ok(t) => {
                    i.template = Some(t.clone());
                    TemplateBuildEvent::Done { template: t }
                }
                Err(e) if state == TemplateBuildState::Cancelled => {
                    i.error = Some(e);
                    TemplateBuildEvent::Cancelled
                }
                Err(e) => {
                    let ev = TemplateBuildEvent::Failed {
                        code: e.code.clone(),
                        message: e.message.clone(),
                    };
                    i.error = Some(e);
                    ev
                }
            }
        };
        eprintln!(
            "corral: template build {} ({}) {}",
            self.id,
            self.name,
            match state {
                TemplateBuildState::Succeeded => "succeeded",
                TemplateBuildState::Cancelled => "was cancelled",
                _ => "failed",
            }
        );
        self.push(event);
    }

    /// Events after `after`, and how many were dropped in between.
    fn events_after(&self, after: u64) -> (Vec<(u64, TemplateBuildEvent)>, bool) {
        let i = self.lock();
        let evs = i
            .events
            .iter()
            .filter(|(s, _, _)| *s > after)
            .map(|(s, e, _)| (*s, e.clone()))
            .collect();
        (evs, i.state.is_finished())
    }
}

fn detail(code: &str, message: impl Into<String>) -> ErrorDetail {
    ErrorDetail {
        code: code.into(),
        message: message.into(),
    }
}

/// A recipe's FROM template (the first FROM line; ARG substitution is not looked at).
fn recipe_base(recipe: &str) -> Option<String> {
    recipe.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let first = w.next()?;
        first
            .eq_ignore_ascii_case("FROM")
            .then(|| w.next().map(String::from))
            .flatten()
    })
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

impl Builds {
    fn settings(&self) -> TemplateSettings {
        self.settings.get().cloned().unwrap_or_default()
    }

    /// A shipped recipe: its text and its context (None: an empty one).
    fn shipped(&self, name: &str) -> Option<(String, Option<PathBuf>)> {
        if !plain_name(name) {
            return None;
        }
        if let Some(dir) = self.settings().recipes_dir {
            let ctx = dir.join(name);
            if let Ok(text) = std::fs::read_to_string(ctx.join("Recipe")) {
                return Some((text, Some(ctx)));
            }
        }
        SHIPPED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| (t.to_string(), None))
    }

    fn shipped_names(&self) -> Vec<String> {
        let mut names: Vec<String> = SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
        if let Some(dir) = self.settings().recipes_dir {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if e.path().join("Recipe").is_file() && !names.contains(&n) {
                        names.push(n);
                    }
                }
            }
        }
        names.sort();
        names
    }

    /// A job `admin` (or, for a shipped recipe's build, anyone) may see.
    fn find(&self, id: &str, admin: bool) -> Result<Arc<Job>, SandboxError> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|j| j.id == id && j.visible(admin))
            .cloned()
            .ok_or_else(|| {
                SandboxError::NotFound(format!(
                    "no template build {id} (finished builds are forgotten after {FINISHED_MAX} newer ones; GET /v1/templates/builds lists them)"
                ))
            })
    }

    /// The unfinished build of `name`, if any.
    fn active(&self, name: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|j| j.name == name && !j.state().is_finished())
            .cloned()
    }

    /// The newest build of `name`, if any.
    fn latest(&self, name: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .find(|j| j.name == name)
            .cloned()
    }

    /// Registers a job (refused while one of the same name runs) and forgets the
    /// oldest finished ones beyond the limit.
    fn register(
        &self,
        name: &str,
        version: Option<String>,
        kind: &'static str,
    ) -> Result<(Arc<Job>, watch::Receiver<bool>), Arc<Job>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(j) = jobs
            .iter()
            .find(|j| j.name == name && !j.state().is_finished())
        {
            return Err(j.clone());
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut rand = [0u8; 4];
        let _ = getrandom(&mut rand);
        let (events_tx, _) = watch::channel(0);
        let (cancel, cancel_rx) = watch::channel(false);
        let job = Arc::new(Job {
            id: format!("tb_{seq:08x}{}", hex4(&rand)),
            seq,
            name: name.to_string(),
            version,
            kind,
            created_ms: now_ms(),
            inner: Mutex::new(Inner {
                state: TemplateBuildState::Queued,
                step: 0,
                total: 0,
                started_ms: None,
                finished_ms: None,
                template: None,
                error: None,
                events: VecDeque::new(),
                bytes: 0,
                last_seq: 0,
            }),
            events_tx,
            cancel,
            reported: AtomicBool::new(false),
        });
        jobs.push_back(job.clone());
        let finished = jobs.iter().filter(|j| j.state().is_finished()).count();
        let mut extra = finished.saturating_sub(FINISHED_MAX);
        jobs.retain(|j| {
            if extra > 0 && j.state().is_finished() {
                extra -= 1;
                false
            } else {
                true
            }
        });
        Ok((job, cancel_rx))
    }
}

fn hex4(b: &[u8; 4]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Randomness for build ids (uniqueness across daemon restarts, not secrecy).
fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

fn conflict_msg(j: &Job) -> String {
    format!(
        "template {} is already being built by {}: follow GET /v1/templates/builds/{}/events, or cancel it with DELETE /v1/templates/builds/{}",
        j.name, j.id, j.id, j.id
    )
}

/// Runs one job: waits for a slot, runs the helper, records the result.
async fn run_job(
    job: Arc<Job>,
    exe: PathBuf,
    helper_job: BuildJob,
    running: Arc<Semaphore>,
    mut cancel: watch::Receiver<bool>,
) {
    let permit = tokio::select! {
        p = running.acquire_owned() => p.ok(),
        _ = cancel.wait_for(|c| *c) => None,
    };
    let Some(_permit) = permit else {
        job.finish(
            TemplateBuildState::Cancelled,
            Err(detail(
                "cancelled",
                "the build was cancelled before it started",
            )),
        );
        return;
    };
    {
        let mut i = job.lock();
        i.state = TemplateBuildState::Running;
        i.started_ms = Some(now_ms());
    }
    job.events_tx.send_replace(job.lock().last_seq);
    let name = job.name.clone();
    let j = job.clone();
    let on_event = move |e: TemplateBuildEvent| {
        if let TemplateBuildEvent::Step {
            step,
            total,
            text,
            cached,
        } = &e
        {
            let shown: String = text.chars().take(100).collect();
            let state = if *cached { "cached" } else { "running" };
            eprintln!("corral: building template {name}: step {step}/{total} {state} {shown}");
        }
        j.push(e);
    };
    let answer = run_helper(&exe, &helper_job, on_event, cancel.clone()).await;
    let cancelled = *cancel.borrow();
    use TemplateBuildState::{Cancelled, Failed, Succeeded};
    match answer {
        _ if cancelled => job.finish(
            Cancelled,
            Err(detail(
                "cancelled",
                "the build was cancelled; nothing of it was registered",
            )),
        ),
        Ok(BuildAnswer::Built(t)) => job.finish(Succeeded, Ok(*t)),
        Ok(BuildAnswer::Refused(m)) => job.finish(Failed, Err(detail("build_failed", m))),
        Ok(BuildAnswer::Conflict(m)) => job.finish(Failed, Err(detail("conflict", m))),
        Ok(BuildAnswer::Failed(m)) | Err(m) => job.finish(Failed, Err(detail("internal", m))),
    }
}

/// Runs an import job: in the daemon, on a blocking thread (it forks nothing); a
/// cancel stops it between reads, and the store removes its work dir. Imports do not
/// wait for a build slot (they read and write files, and used to run at once).
async fn run_import(
    job: Arc<Job>,
    store: TemplateStore,
    source: TemplateSource,
    mut cancel: watch::Receiver<bool>,
) {
    {
        let mut i = job.lock();
        i.state = TemplateBuildState::Running;
        i.started_ms = Some(now_ms());
    }
    job.events_tx.send_replace(job.lock().last_seq);
    let flag = Arc::new(AtomicBool::new(*cancel.borrow()));
    let f = flag.clone();
    let watcher = tokio::spawn(async move {
        if cancel.wait_for(|c| *c).await.is_ok() {
            f.store(true, Ordering::Relaxed);
        }
    });
    let j = job.clone();
    let result = tokio::task::spawn_blocking(move || {
        let name = j.name.clone();
        let mut on = |e: TemplateBuildEvent| {
            if let TemplateBuildEvent::Layer {
                layer,
                total,
                digest,
                state,
                ..
            } = &e
            {
                let state = match state {
                    TemplateLayerState::Started => "started",
                    TemplateLayerState::Applied => "applied",
                    TemplateLayerState::Cached => "cached",
                };
                eprintln!(
                    "corral: importing template {name}: layer {layer}/{total} {state} {digest}"
                );
            }
            j.push(e);
        };
        store.import_with(&j.name, j.version.as_deref(), &source, &mut on, Some(&flag))
    })
    .await;
    watcher.abort();
    use TemplateBuildState::{Cancelled, Failed, Succeeded};
    match result {
        Ok(Ok(t)) => job.finish(Succeeded, Ok(t)),
        Ok(Err(TemplateStoreError::Cancelled)) => job.finish(
            Cancelled,
            Err(detail(
                "cancelled",
                "the import was cancelled; nothing of it was registered",
            )),
        ),
        Ok(Err(e)) => {
            let message = corral_isolate::error_chain(&e);
            let code = match e {
                TemplateStoreError::Exists(_) | TemplateStoreError::InUse { .. } => "conflict",
                TemplateStoreError::Io { .. } | TemplateStoreError::IdBase { .. } => "internal",
                _ => "import_failed",
            };
            job.finish(Failed, Err(detail(code, message)));
        }
        Err(e) => job.finish(
            Failed,
            Err(detail("internal", format!("the import task failed: {e}"))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_recipes_name_their_base() {
        for (n, text) in SHIPPED {
            assert_eq!(recipe_base(text).as_deref(), Some("debian"), "{n}");
        }
        assert_eq!(
            recipe_base("# c\nARG X\nfrom  host\n").as_deref(),
            Some("host")
        );
        assert!(plain_name("python") && !plain_name("../x") && !plain_name(".x"));
    }

    #[test]
    fn output_is_bounded_and_steps_survive() {
        let b = Builds::default();
        let (job, _) = b.register("t", None, "recipe").unwrap();
        assert!(
            b.register("t", None, "recipe").is_err(),
            "one build per name"
        );
        job.push(TemplateBuildEvent::Step {
            step: 1,
            total: 2,
            text: "RUN x".into(),
            cached: false,
        });
        for i in 0..10_000 {
            job.push(TemplateBuildEvent::Output {
                line: format!("line {i} {}", "x".repeat(100)),
            });
        }
        let i = job.lock();
        assert!(i.bytes <= EVENTS_MAX_BYTES);
        assert!(matches!(
            i.events.front(),
            Some((1, TemplateBuildEvent::Step { .. }, _))
        ));
        assert_eq!(i.last_seq, 10_001);
        assert_eq!((i.step, i.total), (1, 2));
    }

    #[test]
    fn finished_builds_are_forgotten_beyond_the_limit() {
        let b = Builds::default();
        for n in 0..FINISHED_MAX + 5 {
            let (j, _) = b.register(&format!("t{n}"), None, "recipe").unwrap();
            j.finish(TemplateBuildState::Failed, Err(detail("x", "y")));
        }
        let (_running, _) = b.register("r", None, "recipe").unwrap();
        let jobs = b.jobs.lock().unwrap();
        assert_eq!(jobs.len(), FINISHED_MAX + 1);
        assert!(jobs.iter().any(|j| j.name == "r"));
    }
}

//! The Manager's side of build jobs: start (from an API source), list, get, cancel,
//! follow, the synchronous `POST /v1/templates/build`, and the first-use hook of
//! creates. The registry and the job runner are the parent module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use corral_types::api::{
    Template, TemplateBuild, TemplateBuildCreateRequest, TemplateBuildEvent, TemplateBuildList,
    TemplateBuildSource, TemplateBuildState, PAGE_DEFAULT, PAGE_MAX,
};
use tokio::sync::mpsc;

use super::{conflict_msg, recipe_base, run_import, run_job, Job, TemplateSettings};
use crate::manager::{Manager, SandboxError};
use crate::templates::{BuildJob, DebootstrapJob, JobSource, TemplateSource};

fn abs(what: &str, p: &str) -> Result<PathBuf, SandboxError> {
    if Path::new(p).is_absolute() {
        Ok(PathBuf::from(p))
    } else {
        Err(SandboxError::InvalidRequest(format!(
            "{what} {p} must be an absolute path on the daemon's host"
        )))
    }
}

/// An import's source: exactly one of `dir` and `oci`, an absolute path.
fn import_source(dir: Option<String>, oci: Option<String>) -> Result<TemplateSource, SandboxError> {
    match (dir, oci) {
        (Some(d), None) => Ok(TemplateSource::Dir(abs("dir", &d)?)),
        (None, Some(o)) => Ok(TemplateSource::Oci(abs("oci", &o)?)),
        _ => Err(SandboxError::InvalidRequest(
            "give exactly one of dir and oci".into(),
        )),
    }
}

impl Manager {
    /// Sets `[templates]` (once, at start; later calls are ignored).
    pub fn set_template_settings(&self, s: TemplateSettings) {
        let _ = self.template_builds.settings.set(s);
    }

    /// Starts a build job (the caller checked the admin role).
    pub async fn start_template_build(
        &self,
        req: TemplateBuildCreateRequest,
    ) -> Result<TemplateBuild, SandboxError> {
        crate::templates::check_template_name(&req.name)?;
        let job = self.spawn_job(&req.name, req.version, req.source)?;
        Ok(job.view())
    }

    /// Starts the job of an API source: an import in the daemon, the others in a helper.
    fn spawn_job(
        &self,
        name: &str,
        version: Option<String>,
        source: TemplateBuildSource,
    ) -> Result<Arc<Job>, SandboxError> {
        if let TemplateBuildSource::Import { dir, oci } = source {
            let source = import_source(dir, oci)?;
            let (job, cancel) = self
                .template_builds
                .register(name, version.clone(), "import")
                .map_err(|j| SandboxError::Conflict(conflict_msg(&j)))?;
            let store = self.template_store();
            let j = job.clone();
            tokio::spawn(async move { run_import(j, store, source, cancel).await });
            return Ok(job);
        }
        let (source, kind) = self.job_source(name, source)?;
        self.spawn_build(name, version, source, kind)
    }

    /// Turns an API source into the helper's.
    fn job_source(
        &self,
        name: &str,
        source: TemplateBuildSource,
    ) -> Result<(JobSource, &'static str), SandboxError> {
        Ok(match source {
            TemplateBuildSource::Recipe {
                recipe,
                context,
                build_args,
            } => (
                JobSource::Recipe {
                    recipe,
                    recipe_name: "api".into(),
                    context: Some(abs("context", &context)?),
                    build_args,
                    base: None,
                },
                "recipe",
            ),
            TemplateBuildSource::Debootstrap {
                suite,
                mirror,
                variant,
                include,
                tarball,
            } => {
                let d = DebootstrapJob {
                    suite: suite.unwrap_or_else(|| "bookworm".into()),
                    mirror,
                    variant: variant.unwrap_or_else(|| "minbase".into()),
                    include,
                    tarball: tarball.map(|t| abs("tarball", t.as_str())).transpose()?,
                };
                d.validate()?;
                (JobSource::Debootstrap(d), "debootstrap")
            }
            TemplateBuildSource::Shipped { recipe } => {
                let _ = name;
                (self.shipped_source(&recipe)?, "shipped")
            }
            // Imports run in the daemon (spawn_job), never in a helper.
            TemplateBuildSource::Import { .. } => {
                return Err(SandboxError::Internal(
                    "an import is not a helper's job".into(),
                ))
            }
        })
    }

    /// The helper's source for shipped recipe `recipe`: its FROM `debian` is
    /// bootstrapped first (from `[templates]`'s mirror or tarball) when missing.
    fn shipped_source(&self, recipe: &str) -> Result<JobSource, SandboxError> {
        let b = &self.template_builds;
        let Some((text, context)) = b.shipped(recipe) else {
            return Err(SandboxError::InvalidRequest(format!(
                "no shipped recipe {recipe:?} (shipped: {})",
                b.shipped_names().join(", ")
            )));
        };
        let s = b.settings();
        let base = recipe_base(&text).filter(|f| f == "debian").map(|f| {
            (
                f,
                DebootstrapJob {
                    suite: "bookworm".into(),
                    mirror: s.debootstrap_mirror.clone(),
                    variant: "minbase".into(),
                    include: Vec::new(),
                    tarball: s.debootstrap_tarball.clone(),
                },
            )
        });
        Ok(JobSource::Recipe {
            recipe: text,
            recipe_name: format!("shipped:{recipe}"),
            context,
            build_args: BTreeMap::new(),
            base,
        })
    }

    /// Registers a job and starts its task; 409 while one of the same name runs.
    fn spawn_build(
        &self,
        name: &str,
        version: Option<String>,
        source: JobSource,
        kind: &'static str,
    ) -> Result<Arc<Job>, SandboxError> {
        let (job, cancel) = self
            .template_builds
            .register(name, version.clone(), kind)
            .map_err(|j| SandboxError::Conflict(conflict_msg(&j)))?;
        let helper_job = BuildJob {
            name: name.to_string(),
            version,
            source,
            data_dir: self.cfg.data_dir.clone(),
            id_map_base: self.cfg.id_map_base,
            runtime_dir: self.cfg.runtime_dir.clone(),
            cgroup_parent: self.cfg.cgroup_parent.clone(),
            daemon_pid: std::process::id(),
            resolve: self
                .cfg
                .network
                .resolve
                .iter()
                .map(|(n, ip)| (n.clone(), *ip))
                .collect(),
        };
        let exe = self.cfg.corral_exe.clone();
        let running = self.template_builds.running.clone();
        let j = job.clone();
        // A task of its own: a client that hangs up does not cut the build short.
        tokio::spawn(async move { run_job(j, exe, helper_job, running, cancel).await });
        Ok(job)
    }

    /// Build jobs, newest first (`admin`: all; other keys: shipped recipes' builds).
    pub fn template_builds(
        &self,
        admin: bool,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<TemplateBuildList, SandboxError> {
        let limit = match limit {
            0 => PAGE_DEFAULT,
            n if n > PAGE_MAX => {
                return Err(SandboxError::InvalidRequest(format!(
                    "limit {n} is above the maximum of {PAGE_MAX}"
                )))
            }
            n => n,
        } as usize;
        let before = match cursor {
            None => u64::MAX,
            Some(c) => c.parse::<u64>().map_err(|_| {
                SandboxError::InvalidRequest(format!(
                    "cursor {c:?} is not one this server gave out; start without a cursor"
                ))
            })?,
        };
        let jobs: Vec<Arc<Job>> = self
            .template_builds
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .filter(|j| j.seq < before && j.visible(admin))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = jobs.len() > limit;
        let page: Vec<_> = jobs.into_iter().take(limit).collect();
        let next_cursor = more
            .then(|| page.last().map(|j| j.seq.to_string()))
            .flatten();
        Ok(TemplateBuildList {
            builds: page.iter().map(|j| j.view()).collect(),
            next_cursor,
        })
    }

    /// One build job (`admin`: any; other keys: a shipped recipe's).
    pub fn template_build(&self, id: &str, admin: bool) -> Result<TemplateBuild, SandboxError> {
        Ok(self.template_builds.find(id, admin)?.view())
    }

    /// Daemon shutdown: every unfinished build is cancelled (SIGTERM: a RUN in
    /// progress removes its sandbox and cgroup) and waited for, at most 20 s.
    pub(crate) async fn cancel_template_builds(&self) {
        let jobs: Vec<Arc<Job>> = self
            .template_builds
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|j| !j.state().is_finished())
            .cloned()
            .collect();
        for j in &jobs {
            j.cancel.send_replace(true);
        }
        let all = async {
            for j in &jobs {
                let mut rx = j.events_tx.subscribe();
                while !j.state().is_finished() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), all).await;
    }

    /// Cancels a build job: its helper is ended and nothing of it is registered.
    /// A finished job is answered as it is.
    pub async fn cancel_template_build(&self, id: &str) -> Result<TemplateBuild, SandboxError> {
        let job = self.template_builds.find(id, true)?;
        if !job.state().is_finished() {
            job.cancel.send_replace(true);
            let mut rx = job.events_tx.subscribe();
            while !job.state().is_finished() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        Ok(job.view())
    }

    /// The job's events from the start, then as they come; the channel closes after
    /// the last one (done, failed, cancelled).
    pub fn template_build_events(
        &self,
        id: &str,
        admin: bool,
    ) -> Result<mpsc::Receiver<TemplateBuildEvent>, SandboxError> {
        let job = self.template_builds.find(id, admin)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut seen = 0u64;
            let mut wake = job.events_tx.subscribe();
            loop {
                wake.mark_unchanged();
                let (evs, finished) = job.events_after(seen);
                for (s, e) in evs {
                    if s > seen + 1 {
                        let dropped = TemplateBuildEvent::Dropped {
                            lines: s - seen - 1,
                        };
                        if tx.send(dropped).await.is_err() {
                            return;
                        }
                    }
                    seen = s;
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                if finished && job.events_after(seen).0.is_empty() {
                    return;
                }
                if wake.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// Waits for a job to end and answers like the old synchronous build.
    async fn wait_build(&self, job: &Arc<Job>) -> Result<Template, SandboxError> {
        let mut rx = job.events_tx.subscribe();
        while !job.state().is_finished() {
            if rx.changed().await.is_err() {
                break;
            }
        }
        let v = job.view();
        match (v.state, v.template, v.error) {
            (TemplateBuildState::Succeeded, Some(t), _) => Ok(t),
            (_, _, Some(e)) => Err(match e.code.as_str() {
                "build_failed" | "import_failed" => SandboxError::InvalidRequest(e.message),
                "conflict" => SandboxError::Conflict(e.message),
                "cancelled" => SandboxError::Conflict(e.message),
                _ => SandboxError::Internal(e.message),
            }),
            _ => Err(SandboxError::Internal(format!(
                "template build {} ended without a result",
                job.id
            ))),
        }
    }

    /// `POST /v1/templates/build` and `POST /v1/templates`: a job the caller waits for.
    pub(crate) async fn build_and_wait(
        &self,
        name: &str,
        version: Option<String>,
        source: TemplateBuildSource,
    ) -> Result<Template, SandboxError> {
        crate::templates::check_template_name(name)?;
        let job = self.spawn_job(name, version, source)?;
        self.wait_build(&job).await
    }

    /// A create named `name`, which the store lacks: when it is a shipped recipe and
    /// first-use builds are on, the error to answer (its build started or joined).
    pub(crate) fn first_use(&self, name: &str) -> Option<SandboxError> {
        let b = &self.template_builds;
        if name.contains(':') || !b.settings().build_on_first_use {
            return None;
        }
        b.shipped(name)?;
        let follow = |id: &str| {
            format!(
                "follow its progress with GET /v1/templates/builds/{id}/events (`corral template builds {id} --follow`) and retry the create when it finishes"
            )
        };
        if let Some(j) = b.active(name) {
            return Some(SandboxError::TemplateBuilding(format!(
                "template {name} is being built (build {}); {}",
                j.id,
                follow(&j.id)
            )));
        }
        let previous = b.latest(name).and_then(|j| {
            let v = j.view();
            (v.state == TemplateBuildState::Failed && !j.reported.swap(true, Ordering::AcqRel))
                .then(|| {
                    format!(
                        "; the previous build {} failed: {}",
                        j.id,
                        v.error.map(|e| e.message).unwrap_or_default()
                    )
                })
        });
        let started = self
            .shipped_source(name)
            .and_then(|src| self.spawn_build(name, None, src, "shipped"));
        Some(match started {
            Ok(j) => {
                eprintln!(
                    "corral: building shipped template {name} on first use ({})",
                    j.id
                );
                SandboxError::TemplateBuilding(format!(
                    "template {name} is not built yet: build {} started{}; {}",
                    j.id,
                    previous.unwrap_or_default(),
                    follow(&j.id)
                ))
            }
            // Another create started it a moment ago.
            Err(SandboxError::Conflict(m)) => SandboxError::TemplateBuilding(m),
            Err(e) => e,
        })
    }
}

impl DebootstrapJob {
    fn validate(&self) -> Result<(), SandboxError> {
        crate::templates::Debootstrap {
            suite: self.suite.clone(),
            mirror: self.mirror.clone(),
            variant: self.variant.clone(),
            include: self.include.clone(),
            tarball: self.tarball.clone(),
        }
        .validate()
        .map_err(SandboxError::from)
    }
}

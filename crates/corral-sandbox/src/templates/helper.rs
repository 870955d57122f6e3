//! Builds for the daemon: `corral __build`, a single-threaded helper process (RUN
//! steps fork through corral_isolate::run, which the multi-threaded daemon must not
//! call), like `corral __spawn` for creates. The daemon writes a [`BuildJob`] to its
//! stdin; the helper reports progress on stderr as JSON lines
//! ([`TemplateBuildEvent`]s; any other line is plain output) and a [`BuildAnswer`] on
//! stdout. The helper dies with the daemon (PR_SET_PDEATHSIG), and a RUN's sandbox dies
//! with the helper, so a daemon killed mid-build leaves a work dir (removed at the next
//! start) and never a template. SIGTERM cancels: a RUN in progress ends its sandbox and
//! the build removes its work dir; outside a RUN the helper simply dies and the daemon
//! removes the work dirs named after its pid.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use corral_types::api::{Template, TemplateBuildEvent};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::{
    BuildEvent, BuildNetwork, BuildRequest, Debootstrap, TemplateStore, TemplateStoreError,
};

/// The longest output line kept (longer ones are cut).
const LINE_MAX: usize = 2000;

/// What the helper builds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildJob {
    pub name: String,
    pub version: Option<String>,
    pub source: JobSource,
    pub data_dir: PathBuf,
    pub id_map_base: u32,
    pub runtime_dir: PathBuf,
    pub cgroup_parent: String,
    pub daemon_pid: u32,
    /// Names the RUN steps' egress proxy resolves statically (`[network] resolve`).
    pub resolve: Vec<(String, std::net::Ipv4Addr)>,
}

/// A build job's source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) enum JobSource {
    /// A recipe; `context: None` builds from an empty context (a shipped recipe);
    /// `base`: bootstrap this Debian base first when the store lacks it.
    Recipe {
        recipe: String,
        recipe_name: String,
        context: Option<PathBuf>,
        build_args: BTreeMap<String, String>,
        base: Option<(String, DebootstrapJob)>,
    },
    /// A Debian base.
    Debootstrap(DebootstrapJob),
}

/// [`Debootstrap`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DebootstrapJob {
    pub suite: String,
    pub mirror: Option<String>,
    pub variant: String,
    pub include: Vec<String>,
    pub tarball: Option<PathBuf>,
}

impl DebootstrapJob {
    fn spec(&self) -> Debootstrap {
        Debootstrap {
            suite: self.suite.clone(),
            mirror: self.mirror.clone(),
            variant: self.variant.clone(),
            include: self.include.clone(),
            tarball: self.tarball.clone(),
        }
    }
}

/// The helper's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) enum BuildAnswer {
    Built(Box<Template>),
    /// The recipe or a step is at fault (400), with its line.
    Refused(String),
    /// That name and version exist (409).
    Conflict(String),
    /// Something else failed.
    Failed(String),
}

/// How the daemon ends a helper: SIGTERM first (a RUN cleans up), SIGKILL after this.
const CANCEL_GRACE: Duration = Duration::from_secs(15);

/// The daemon side: runs `exe __build`, hands each progress event to `on_event` and
/// waits for its answer. When `cancel` turns true the helper is ended (SIGTERM, then
/// SIGKILL) and its work dirs removed; the answer is then `Err("cancelled")`.
pub(crate) async fn run_helper(
    exe: &Path,
    job: &BuildJob,
    mut on_event: impl FnMut(TemplateBuildEvent) + Send,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<BuildAnswer, String> {
    let input = serde_json::to_vec(job).map_err(|e| format!("encoding the build job: {e}"))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("__build")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the template builder {}: {e}", exe.display()))?;
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .await
            .map_err(|e| format!("talking to the template builder: {e}"))?;
    }
    let stdout = child.stdout.take();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut out).await;
        }
        out
    });
    let mut lines = child
        .stderr
        .take()
        .map(|s| tokio::io::BufReader::new(s).lines());
    let mut cancelled = *cancel.borrow();
    let mut kill_at: Option<tokio::time::Instant> = None;
    if cancelled {
        signal(pid, nix::sys::signal::Signal::SIGTERM);
        kill_at = Some(tokio::time::Instant::now() + CANCEL_GRACE);
    }
    let status = loop {
        let deadline =
            kill_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            line = async {
                match lines.as_mut() {
                    Some(l) => l.next_line().await,
                    None => std::future::pending().await,
                }
            } => match line {
                Ok(Some(l)) => on_event(parse_line(&l)),
                _ => lines = None,
            },
            changed = cancel.changed(), if !cancelled => {
                if changed.is_err() || *cancel.borrow() {
                    cancelled = true;
                    signal(pid, nix::sys::signal::Signal::SIGTERM);
                    kill_at = Some(tokio::time::Instant::now() + CANCEL_GRACE);
                }
            }
            _ = tokio::time::sleep_until(deadline), if kill_at.is_some() => {
                let _ = child.start_kill();
                kill_at = None;
            }
            st = child.wait() => break st,
        }
    };
    // What the helper wrote last (grandchildren may hold the pipe: bounded wait).
    if let Some(mut l) = lines {
        let drain = async {
            while let Ok(Some(line)) = l.next_line().await {
                on_event(parse_line(&line));
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
    let status = status.map_err(|e| format!("waiting for the template builder: {e}"))?;
    let out = reader.await.unwrap_or_default();
    if cancelled {
        if let Some(pid) = pid {
            remove_work_dirs(&job.data_dir, pid).await;
        }
        return Err("cancelled".into());
    }
    serde_json::from_slice(&out)
        .map_err(|_| format!("the template builder ended with {status} and no answer"))
}

fn signal(pid: Option<u32>, sig: nix::sys::signal::Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// A progress line of the helper: a JSON event, or plain output.
fn parse_line(l: &str) -> TemplateBuildEvent {
    serde_json::from_str(l).unwrap_or_else(|_| TemplateBuildEvent::Output {
        line: cut(l.to_string()),
    })
}

fn cut(mut s: String) -> String {
    if s.len() > LINE_MAX {
        let mut end = LINE_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" [...]");
    }
    s
}

/// Removes `templates/tmp/PID-*` (a cancelled helper's work dirs, its empty context
/// included). debootstrap's processes die with the helper but may take a moment:
/// retried briefly.
async fn remove_work_dirs(data_dir: &Path, pid: u32) {
    let tmp = data_dir.join("templates/tmp");
    let prefix = format!("{pid}-");
    for _ in 0..20 {
        let mut left = false;
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let p = e.path();
                    let gone = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&p))
                        .await
                        .map(|r| r.is_ok())
                        .unwrap_or(false);
                    left |= !gone;
                }
            }
        }
        if !left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The helper side (`corral __build`): returns the process exit status. `network`
/// makes the network of recipes that name hosts (see [`BuildNetwork`]), given the
/// job's static name map.
pub fn build_main(
    network: impl FnOnce(Vec<(String, std::net::Ipv4Addr)>) -> Arc<dyn BuildNetwork>,
) -> i32 {
    let mut input = Vec::new();
    let answer = match std::io::stdin().read_to_end(&mut input) {
        Err(e) => BuildAnswer::Failed(format!("reading the build job: {e}")),
        Ok(_) => match serde_json::from_slice::<BuildJob>(&input) {
            Err(e) => BuildAnswer::Failed(format!("malformed build job: {e}")),
            Ok(job) => {
                let net = network(job.resolve.clone());
                build(&job, Some(net))
            }
        },
    };
    let code = match answer {
        BuildAnswer::Built(_) => 0,
        _ => 1,
    };
    let out = serde_json::to_vec(&answer).unwrap_or_default();
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(&out);
    let _ = stdout.flush();
    code
}

/// Writes one event as a JSON line on stderr.
fn emit(e: &TemplateBuildEvent) {
    if let Ok(mut line) = serde_json::to_vec(e) {
        line.push(b'\n');
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&line);
        let _ = err.flush();
    }
}

fn report(e: BuildEvent) {
    match e {
        BuildEvent::Step {
            step,
            total,
            text,
            cached,
        } => emit(&TemplateBuildEvent::Step {
            step: step as u32,
            total: total as u32,
            text: cut(text),
            cached,
        }),
        BuildEvent::Output(bytes) => {
            for line in String::from_utf8_lossy(&bytes).lines() {
                emit(&TemplateBuildEvent::Output {
                    line: cut(line.to_string()),
                });
            }
        }
        BuildEvent::Done { step, elapsed } => emit(&TemplateBuildEvent::StepDone {
            step: step as u32,
            elapsed_ms: elapsed.as_millis() as u64,
        }),
    }
}

fn build(job: &BuildJob, network: Option<Arc<dyn BuildNetwork>>) -> BuildAnswer {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        return BuildAnswer::Failed(format!("setting the parent-death signal: {e}"));
    }
    if nix::unistd::getppid().as_raw() as u32 != job.daemon_pid {
        return BuildAnswer::Failed("the daemon that asked for this build is gone".into());
    }
    let store = TemplateStore::new(&job.data_dir, job.id_map_base);
    let result = match &job.source {
        JobSource::Debootstrap(d) => {
            emit(&TemplateBuildEvent::Phase {
                text: format!("debootstrap {} ({})", job.name, d.suite),
            });
            store.debootstrap(&job.name, job.version.as_deref(), &d.spec(), &mut report)
        }
        JobSource::Recipe {
            recipe,
            recipe_name,
            context,
            build_args,
            base,
        } => recipe_build(
            &store,
            job,
            network,
            (recipe, recipe_name, context.as_deref(), build_args),
            base.as_ref(),
        ),
    };
    match result {
        Ok(t) => BuildAnswer::Built(Box::new(t)),
        Err(
            e @ (TemplateStoreError::Recipe(_)
            | TemplateStoreError::StepFailed { .. }
            | TemplateStoreError::NotFound { .. }
            | TemplateStoreError::InvalidName(_)
            | TemplateStoreError::BadSource { .. }
            | TemplateStoreError::UnsafeEntry { .. }),
        ) => BuildAnswer::Refused(corral_isolate::error_chain(&e)),
        Err(e @ TemplateStoreError::Exists(_)) => {
            BuildAnswer::Conflict(corral_isolate::error_chain(&e))
        }
        Err(e) => BuildAnswer::Failed(corral_isolate::error_chain(&e)),
    }
}

type RecipeParts<'a> = (
    &'a String,
    &'a String,
    Option<&'a Path>,
    &'a BTreeMap<String, String>,
);

fn recipe_build(
    store: &TemplateStore,
    job: &BuildJob,
    network: Option<Arc<dyn BuildNetwork>>,
    (recipe, recipe_name, context, build_args): RecipeParts<'_>,
    base: Option<&(String, DebootstrapJob)>,
) -> Result<Template, TemplateStoreError> {
    if let Some((base_name, d)) = base {
        if store.pin(base_name).is_err() {
            emit(&TemplateBuildEvent::Phase {
                text: format!(
                    "debootstrap {base_name} ({}), the base of {}",
                    d.suite, job.name
                ),
            });
            store.debootstrap(base_name, None, &d.spec(), &mut report)?;
        }
    }
    // A shipped recipe copies nothing: an empty context named after this process, so
    // a cancel's clean-up finds it.
    let empty = job
        .data_dir
        .join("templates/tmp")
        .join(format!("{}-context", std::process::id()));
    let context = match context {
        Some(c) => c.to_path_buf(),
        None => {
            std::fs::create_dir_all(&empty)
                .map_err(TemplateStoreError::io("creating an empty build context"))?;
            empty.clone()
        }
    };
    emit(&TemplateBuildEvent::Phase {
        text: format!("recipe {recipe_name} -> {}", job.name),
    });
    let req = BuildRequest {
        name: job.name.clone(),
        version: job.version.clone(),
        recipe: recipe.clone(),
        recipe_name: recipe_name.clone(),
        context,
        build_args: build_args.clone(),
        runtime_dir: job.runtime_dir.clone(),
        cgroup_parent: job.cgroup_parent.clone(),
        network,
    };
    let r = store.build(&req, &mut report);
    let _ = std::fs::remove_dir(&empty);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_lines_are_events_or_output() {
        let e = TemplateBuildEvent::StepDone {
            step: 2,
            elapsed_ms: 5,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(parse_line(&line), e);
        assert_eq!(
            parse_line("plain text"),
            TemplateBuildEvent::Output {
                line: "plain text".into()
            }
        );
        let long = "é".repeat(LINE_MAX);
        match parse_line(&long) {
            TemplateBuildEvent::Output { line } => assert!(line.len() <= LINE_MAX + 6),
            other => panic!("{other:?}"),
        }
    }
}

//! Builds for the daemon: `corral __build`, a single-threaded helper process (RUN
//! steps fork through corral_isolate::run, which the multi-threaded daemon must not
//! call), like `corral __spawn` for creates. The daemon writes a [`BuildJob`] to its
//! stdin; the helper reports progress lines on stderr (the daemon's log) and a
//! [`BuildAnswer`] on stdout. The helper dies with the daemon (PR_SET_PDEATHSIG), and a
//! RUN's sandbox dies with the helper, so a daemon killed mid-build leaves a work dir
//! (removed at the next start) and never a template.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use corral_types::api::Template;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BuildEvent, BuildNetwork, BuildRequest, TemplateStore, TemplateStoreError};

/// What the helper builds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildJob {
    pub name: String,
    pub version: Option<String>,
    pub recipe: String,
    pub context: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub data_dir: PathBuf,
    pub id_map_base: u32,
    pub runtime_dir: PathBuf,
    pub cgroup_parent: String,
    pub daemon_pid: u32,
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

/// The daemon side: runs `exe __build` and waits for its answer.
pub(crate) async fn run_helper(exe: &Path, job: &BuildJob) -> Result<BuildAnswer, String> {
    let input = serde_json::to_vec(job).map_err(|e| format!("encoding the build job: {e}"))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("__build")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_clear()
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the template builder {}: {e}", exe.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .await
            .map_err(|e| format!("talking to the template builder: {e}"))?;
    }
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("talking to the template builder: {e}"))?;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for the template builder: {e}"))?;
    serde_json::from_slice(&out)
        .map_err(|_| format!("the template builder ended with {status} and no answer"))
}

/// The helper side (`corral __build`): returns the process exit status. `network`
/// serves recipes that name hosts (see [`BuildNetwork`]).
pub fn build_main(network: Option<Arc<dyn BuildNetwork>>) -> i32 {
    let mut input = Vec::new();
    let answer = match std::io::stdin().read_to_end(&mut input) {
        Err(e) => BuildAnswer::Failed(format!("reading the build job: {e}")),
        Ok(_) => match serde_json::from_slice::<BuildJob>(&input) {
            Err(e) => BuildAnswer::Failed(format!("malformed build job: {e}")),
            Ok(job) => build(&job, network),
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

fn build(job: &BuildJob, network: Option<Arc<dyn BuildNetwork>>) -> BuildAnswer {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        return BuildAnswer::Failed(format!("setting the parent-death signal: {e}"));
    }
    if nix::unistd::getppid().as_raw() as u32 != job.daemon_pid {
        return BuildAnswer::Failed("the daemon that asked for this build is gone".into());
    }
    let store = TemplateStore::new(&job.data_dir, job.id_map_base);
    let req = BuildRequest {
        name: job.name.clone(),
        version: job.version.clone(),
        recipe: job.recipe.clone(),
        recipe_name: "api".into(),
        context: job.context.clone(),
        build_args: job.build_args.clone(),
        runtime_dir: job.runtime_dir.clone(),
        cgroup_parent: job.cgroup_parent.clone(),
        network,
    };
    let name = job.name.clone();
    let mut progress = |e: BuildEvent| {
        if let BuildEvent::Step {
            step,
            total,
            text,
            cached,
        } = e
        {
            let shown: String = text.chars().take(100).collect();
            let state = if cached { "cached" } else { "running" };
            eprintln!("corral: building template {name}: step {step}/{total} {state} {shown}");
        }
    };
    match store.build(&req, &mut progress) {
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

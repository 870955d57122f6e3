//! Running commands in a live sandbox: foreground (collected or streamed) and
//! background. Output travels through pipes whose write ends init hands to the
//! command; the daemon reads the other ends.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_isolate::ctl::{CtlOp, CtlReply, Stdio};
use corral_isolate::SandboxUser;
use corral_types::api::{ExecEvent, ExecRequest};
use corral_types::RunResult;
use nix::fcntl::OFlag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use super::clock::now_ms;
use super::conn::Exited;
use super::live::{command_env, Live};
use super::procs::{process_id, Proc, Tail};
use super::{Manager, SandboxError};
use crate::templates::{ImageDefaults, TemplateStore, TemplateStoreError};

/// Default timeout of a foreground command.
pub(crate) const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Per-stream cap on collected output of a foreground command; the rest is dropped.
pub(crate) const OUTPUT_LIMIT: usize = 16 << 20;
/// How long to wait for a killed process to be reported gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A validated exec request.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// `cwd` is the template's WORKDIR (not the request's): named in a failure.
    pub cwd_from_template: bool,
    pub user: SandboxUser,
    pub timeout: Option<Duration>,
}

impl Manager {
    /// What the sandbox's template gives the processes started in it (its image's
    /// env, working directory and user).
    pub(crate) fn image_defaults(&self, live: &Live) -> Result<ImageDefaults, SandboxError> {
        let template = live.row().template;
        TemplateStore::new(&self.cfg.data_dir, self.cfg.id_map_base)
            .defaults(&template)
            .map_err(|e| match e {
                TemplateStoreError::NotFound { .. } => SandboxError::Conflict(format!(
                    "template {template} of sandbox {} is gone from the template store; \
                     create a new sandbox",
                    live.id
                )),
                e => SandboxError::Internal(format!(
                    "reading the config of template {template}: {}",
                    corral_isolate::error_chain(&e)
                )),
            })
    }

    /// Checks an exec request against the sandbox and fills in the defaults: the
    /// template's, then corral's (see [`command`]).
    pub(crate) fn command(&self, live: &Live, req: &ExecRequest) -> Result<Command, SandboxError> {
        command(live, req, self.remaining(live), &self.image_defaults(live)?)
    }
}

/// Who, where and with which environment a process runs: the request's `user`, `cwd`
/// and `env` win; then the template's image config; then corral's defaults (user
/// `sandbox`, the user's home, PATH/HOME/USER/...). The sandbox's own environment (its
/// create request's `env`, secret placeholders, the egress proxy and CA variables)
/// sits between the template's env and the request's, so a template cannot turn off
/// corral's proxy or CA settings.
pub(crate) struct Effective {
    pub user: SandboxUser,
    pub cwd: Option<String>,
    pub cwd_from_template: bool,
    pub env: Vec<(String, String)>,
}

pub(crate) fn effective(
    image: &ImageDefaults,
    sandbox_env: &BTreeMap<String, String>,
    req_user: Option<SandboxUser>,
    req_cwd: Option<&str>,
    req_env: &BTreeMap<String, String>,
) -> Effective {
    let user = req_user.or(image.user).unwrap_or(SandboxUser::Sandbox);
    let (cwd, cwd_from_template) = match (req_cwd, &image.workdir) {
        (Some(c), _) => (Some(c.to_string()), false),
        (None, Some(w)) => (Some(w.clone()), true),
        (None, None) => (None, false),
    };
    let mut under: BTreeMap<String, String> = image.env.iter().cloned().collect();
    under.extend(sandbox_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Effective {
        user,
        cwd,
        cwd_from_template,
        env: command_env(user, &under, req_env),
    }
}

/// Checks an exec request against the sandbox and fills in defaults (`image`: the
/// template's, see [`effective`]).
pub(crate) fn command(
    live: &Live,
    req: &ExecRequest,
    max: Duration,
    image: &ImageDefaults,
) -> Result<Command, SandboxError> {
    if req.cmd.is_empty() || req.cmd[0].is_empty() {
        return Err(SandboxError::InvalidRequest(
            "cmd is empty; give the command and its arguments, e.g. [\"python3\", \"-V\"]".into(),
        ));
    }
    if req.cmd.iter().any(|a| a.contains('\0')) {
        return Err(SandboxError::InvalidRequest(
            "cmd contains a NUL byte".into(),
        ));
    }
    check_env(&req.env)?;
    let user = parse_user(req.user.as_deref())?;
    if let Some(cwd) = &req.cwd {
        super::files::check_path(cwd)?;
    }
    let timeout = match req.timeout_s {
        Some(0) => {
            return Err(SandboxError::InvalidRequest(
                "timeout_s must be at least 1".into(),
            ))
        }
        Some(s) => Some(Duration::from_secs(s).min(max)),
        None if req.background => None,
        None => Some(DEFAULT_EXEC_TIMEOUT.min(max)),
    };
    let sandbox_env = live.row().env;
    let e = effective(image, &sandbox_env, user, req.cwd.as_deref(), &req.env);
    Ok(Command {
        argv: req.cmd.clone(),
        env: e.env,
        cwd: e.cwd,
        cwd_from_template: e.cwd_from_template,
        user: e.user,
        timeout,
    })
}

/// Checks environment names and values.
pub(crate) fn check_env(env: &BTreeMap<String, String>) -> Result<(), SandboxError> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(SandboxError::InvalidRequest(format!(
                "invalid environment variable {k:?}: names are non-empty without '=' or NUL, values without NUL"
            )));
        }
    }
    Ok(())
}

/// The request's `user`; None: the template's, else `sandbox`.
fn parse_user(user: Option<&str>) -> Result<Option<SandboxUser>, SandboxError> {
    match user {
        None => Ok(None),
        Some("sandbox") => Ok(Some(SandboxUser::Sandbox)),
        Some("root") => Ok(Some(SandboxUser::Root)),
        Some(other) => Err(SandboxError::InvalidRequest(format!(
            "unknown user {other:?}; use \"sandbox\" or \"root\" (default: the template's USER, else \"sandbox\")"
        ))),
    }
}

/// A start failure, with the template named when its WORKDIR is what is missing.
pub(crate) fn start_error(e: SandboxError, cwd: Option<&str>, from_template: bool) -> SandboxError {
    match (e, cwd) {
        (SandboxError::InvalidRequest(m) | SandboxError::NotFound(m), Some(w))
            if from_template && m.contains("working directory") =>
        {
            SandboxError::InvalidRequest(format!(
                "{m}; {w} is the template's WORKDIR: create it in the sandbox or pass cwd"
            ))
        }
        (e, _) => e,
    }
}

/// A started process and the daemon's ends of its pipes.
pub(crate) struct Started {
    pub exec_id: u64,
    pub pid: u32,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub stdin: Option<pipe::Sender>,
    pub exit: oneshot::Receiver<Exited>,
    pub began: Instant,
    pub oom_before: u64,
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Internal(format!("creating a pipe failed: {e}")))
}

fn receiver(fd: OwnedFd) -> Result<pipe::Receiver, SandboxError> {
    pipe::Receiver::from_owned_fd(fd)
        .map_err(|e| SandboxError::Internal(format!("watching a pipe failed: {e}")))
}

/// Starts `cmd`; `keep_stdin` keeps a writer to its standard input, otherwise the
/// command reads end of file at once.
pub(crate) async fn start(
    live: &Live,
    cmd: &Command,
    keep_stdin: bool,
) -> Result<Started, SandboxError> {
    let (in_r, in_w) = pipe_pair()?;
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let exec_id = live.exec_id();
    let exit = live.conn.expect_exit(exec_id);
    let oom_before = live.stats().oom_kills;
    let began = Instant::now();
    let op = CtlOp::Exec {
        id: exec_id,
        argv: cmd.argv.clone(),
        env: cmd.env.clone(),
        cwd: cmd.cwd.clone(),
        user: cmd.user,
        stdio: Stdio::Pipes,
    };
    let reply = live
        .conn
        .call(op, &[in_r.as_fd(), out_w.as_fd(), err_w.as_fd()])
        .await;
    // The command holds its own copies now; ours would keep the pipes open forever.
    drop((in_r, out_w, err_w));
    let pid = match reply {
        Ok((CtlReply::Started { pid, .. }, _)) => pid,
        Ok((other, _)) => {
            live.conn.forget_exit(exec_id);
            return Err(SandboxError::Internal(format!(
                "the sandbox answered an exec with {other:?}"
            )));
        }
        Err(e) => {
            live.conn.forget_exit(exec_id);
            let e = match e {
                SandboxError::NotFound(m) | SandboxError::PermissionDenied(m) => {
                    SandboxError::InvalidRequest(m)
                }
                other => other,
            };
            return Err(start_error(e, cmd.cwd.as_deref(), cmd.cwd_from_template));
        }
    };
    let stdin = if keep_stdin {
        Some(
            pipe::Sender::from_owned_fd(in_w)
                .map_err(|e| SandboxError::Internal(format!("watching a pipe failed: {e}")))?,
        )
    } else {
        None
    };
    Ok(Started {
        exec_id,
        pid: pid.max(0) as u32,
        stdout: receiver(out_r)?,
        stderr: receiver(err_r)?,
        stdin,
        exit,
        began,
        oom_before,
    })
}

/// Where output goes while a command runs.
pub(crate) trait Sink {
    /// Takes a chunk; false when nobody wants more (the process is then killed).
    async fn stdout(&mut self, data: &[u8]) -> bool;
    async fn stderr(&mut self, data: &[u8]) -> bool;
}

/// Collects up to [`OUTPUT_LIMIT`] per stream.
#[derive(Default)]
struct Collect {
    out: Vec<u8>,
    err: Vec<u8>,
    out_trunc: bool,
    err_trunc: bool,
}

fn keep(buf: &mut Vec<u8>, trunc: &mut bool, data: &[u8]) {
    let room = OUTPUT_LIMIT.saturating_sub(buf.len());
    if data.len() > room {
        *trunc = true;
    }
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

impl Sink for Collect {
    async fn stdout(&mut self, data: &[u8]) -> bool {
        keep(&mut self.out, &mut self.out_trunc, data);
        true
    }
    async fn stderr(&mut self, data: &[u8]) -> bool {
        keep(&mut self.err, &mut self.err_trunc, data);
        true
    }
}

/// Sends chunks as events; false once the receiver is gone.
struct Stream {
    tx: mpsc::Sender<ExecEvent>,
    out: Utf8Carry,
    err: Utf8Carry,
}

impl Sink for Stream {
    async fn stdout(&mut self, data: &[u8]) -> bool {
        let data = self.out.push(data);
        data.is_empty() || self.tx.send(ExecEvent::Stdout { data }).await.is_ok()
    }
    async fn stderr(&mut self, data: &[u8]) -> bool {
        let data = self.err.push(data);
        data.is_empty() || self.tx.send(ExecEvent::Stderr { data }).await.is_ok()
    }
}

/// Keeps a UTF-8 sequence split between two reads together.
#[derive(Default)]
pub(crate) struct Utf8Carry(Vec<u8>);

impl Utf8Carry {
    pub(crate) fn push(&mut self, data: &[u8]) -> String {
        self.0.extend_from_slice(data);
        let cut = match std::str::from_utf8(&self.0) {
            Ok(_) => self.0.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.0.len(),
        };
        let rest = self.0.split_off(cut);
        let text = String::from_utf8_lossy(&self.0).into_owned();
        self.0 = rest;
        text
    }
}

/// Background: feeds the tails of a process.
struct Tails<'a> {
    live: &'a Live,
    exec_id: u64,
}

impl Sink for Tails<'_> {
    async fn stdout(&mut self, data: &[u8]) -> bool {
        self.with(|t| t.0.push(data));
        true
    }
    async fn stderr(&mut self, data: &[u8]) -> bool {
        self.with(|t| t.1.push(data));
        true
    }
}

impl Tails<'_> {
    fn with(&self, f: impl FnOnce((&mut Tail, &mut Tail))) {
        if let Ok(mut procs) = self.live.procs.lock() {
            if let Some(p) = procs.by_id.get_mut(&self.exec_id) {
                f((&mut p.stdout, &mut p.stderr));
            }
        }
    }
}

/// How a supervised process ended.
pub(crate) struct Ended {
    exited: Option<Exited>,
    timed_out: bool,
}

/// Pumps output into `sink` until the process has exited and its pipes are drained,
/// killing it at `timeout` or when the sink goes away.
pub(crate) async fn supervise<S: Sink>(
    live: &Live,
    s: &mut Started,
    timeout: Option<Duration>,
    sink: &mut S,
) -> Ended {
    let deadline = timeout.map(|t| tokio::time::Instant::from_std(s.began) + t);
    let mut out_open = true;
    let mut err_open = true;
    let mut exited: Option<Exited> = None;
    let mut timed_out = false;
    let mut killed_at: Option<tokio::time::Instant> = None;
    let mut obuf = vec![0u8; 64 << 10];
    let mut ebuf = vec![0u8; 64 << 10];
    let mut exit_rx = Some(&mut s.exit);
    loop {
        if exited.is_some() {
            // The process is gone: what it wrote is already in the pipes. Take that,
            // but do not wait for descendants that keep the pipes open.
            while let Some(n) = drain_one(&mut s.stdout, &mut obuf) {
                if !sink.stdout(&obuf[..n]).await {
                    break;
                }
            }
            while let Some(n) = drain_one(&mut s.stderr, &mut ebuf) {
                if !sink.stderr(&ebuf[..n]).await {
                    break;
                }
            }
            break;
        }
        let kill_deadline = killed_at.map(|k| k + KILL_WAIT);
        tokio::select! {
            r = s.stdout.read(&mut obuf), if out_open => match r {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => if !sink.stdout(&obuf[..n]).await { kill(live, s.exec_id, &mut killed_at).await },
            },
            r = s.stderr.read(&mut ebuf), if err_open => match r {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => if !sink.stderr(&ebuf[..n]).await { kill(live, s.exec_id, &mut killed_at).await },
            },
            r = async { match exit_rx.as_mut() { Some(rx) => (&mut **rx).await, None => std::future::pending().await } } => {
                exit_rx = None;
                match r {
                    Ok(e) => exited = Some(e),
                    Err(_) => break, // the sandbox went away
                }
            },
            _ = sleep_until(deadline), if killed_at.is_none() && deadline.is_some() => {
                timed_out = true;
                kill(live, s.exec_id, &mut killed_at).await;
            },
            _ = sleep_until(kill_deadline), if kill_deadline.is_some() => break,
        }
    }
    Ended { exited, timed_out }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One read of what is already in the pipe, straight from the kernel (the pipe is
/// non-blocking): tokio's cached readiness may not have caught up with data written
/// just before the process exited.
fn drain_one(rx: &mut pipe::Receiver, buf: &mut [u8]) -> Option<usize> {
    match nix::unistd::read(rx.as_fd(), buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

async fn kill(live: &Live, exec_id: u64, killed_at: &mut Option<tokio::time::Instant>) {
    if killed_at.is_none() {
        *killed_at = Some(tokio::time::Instant::now());
        let _ = live
            .conn
            .call(
                CtlOp::Signal {
                    id: exec_id,
                    signal: 9,
                },
                &[],
            )
            .await;
    }
}

/// The result of an ended process (output fields filled by the caller).
pub(crate) fn result(live: &Live, s: &Started, ended: &Ended) -> RunResult {
    let stats = live.stats();
    let oom = stats.oom_kills > s.oom_before;
    let (mut exit_code, mut signal, cpu_us) = match ended.exited {
        Some(e) => {
            let status = e.status;
            if status & 0x7f == 0 {
                ((status >> 8) & 0xff, None, e.cpu_us)
            } else {
                let sig = status & 0x7f;
                (128 + sig, Some(sig), e.cpu_us)
            }
        }
        None => (128 + 9, Some(9), 0),
    };
    if ended.timed_out {
        exit_code = 124;
        signal = Some(9);
    } else if oom && signal == Some(9) {
        exit_code = 137;
    }
    RunResult {
        exit_code,
        signal,
        timed_out: ended.timed_out,
        oom_killed: oom,
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        duration_ms: s.began.elapsed().as_millis() as u64,
        peak_memory_bytes: stats.peak_memory_bytes,
        cpu_time_ms: cpu_us / 1000,
    }
}

fn feed_stdin(stdin: Option<pipe::Sender>, text: Option<String>) {
    if let (Some(mut w), Some(text)) = (stdin, text) {
        tokio::spawn(async move {
            let _ = w.write_all(text.as_bytes()).await;
        });
    }
}

/// Runs to completion, collecting output.
pub(crate) async fn run_collect(
    live: &Live,
    cmd: &Command,
    stdin: Option<String>,
) -> Result<RunResult, SandboxError> {
    let mut s = start(live, cmd, stdin.is_some()).await?;
    feed_stdin(s.stdin.take(), stdin);
    let mut sink = Collect::default();
    let ended = supervise(live, &mut s, cmd.timeout, &mut sink).await;
    let mut r = result(live, &s, &ended);
    r.stdout = String::from_utf8_lossy(&sink.out).into_owned();
    r.stderr = String::from_utf8_lossy(&sink.err).into_owned();
    r.stdout_truncated = sink.out_trunc;
    r.stderr_truncated = sink.err_trunc;
    Ok(r)
}

/// Runs while streaming events; the returned receiver ends after `exit`.
pub(crate) async fn run_stream(
    live: Arc<Live>,
    cmd: Command,
    stdin: Option<String>,
) -> Result<mpsc::Receiver<ExecEvent>, SandboxError> {
    let mut s = start(&live, &cmd, stdin.is_some()).await?;
    feed_stdin(s.stdin.take(), stdin);
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut sink = Stream {
            tx: tx.clone(),
            out: Utf8Carry::default(),
            err: Utf8Carry::default(),
        };
        let ended = supervise(&live, &mut s, cmd.timeout, &mut sink).await;
        let r = result(&live, &s, &ended);
        let _ = tx.send(ExecEvent::Exit { result: r }).await;
    });
    Ok(rx)
}

/// Starts a background process and returns its table entry's id and pid.
pub(crate) async fn run_background(
    live: Arc<Live>,
    cmd: Command,
    stdin: Option<String>,
) -> Result<u64, SandboxError> {
    let mut s = start(&live, &cmd, true).await?;
    let stdin_w = Arc::new(tokio::sync::Mutex::new(s.stdin.take()));
    if let Some(text) = stdin {
        if let Some(w) = stdin_w.lock().await.as_mut() {
            let _ = w.write_all(text.as_bytes()).await;
        }
    }
    let exec_id = s.exec_id;
    if let Ok(mut procs) = live.procs.lock() {
        procs.insert(Proc {
            exec_id,
            pid: s.pid,
            cmd: cmd.argv.clone(),
            started_at_ms: now_ms(),
            result: None,
            stdout: Tail::default(),
            stderr: Tail::default(),
            stdin: Some(stdin_w),
        });
    }
    tokio::spawn(async move {
        let mut sink = Tails {
            live: &live,
            exec_id,
        };
        let ended = supervise(&live, &mut s, cmd.timeout, &mut sink).await;
        let r = result(&live, &s, &ended);
        if let Ok(mut procs) = live.procs.lock() {
            if let Some(p) = procs.by_id.get_mut(&exec_id) {
                p.result = Some(r);
                p.stdin = None;
            }
        }
    });
    Ok(exec_id)
}

/// Writes to a background process's standard input.
pub(crate) async fn write_stdin(
    live: &Live,
    exec_id: u64,
    data: &[u8],
    eof: bool,
) -> Result<(), SandboxError> {
    let w = live
        .procs
        .lock()
        .ok()
        .and_then(|p| p.by_id.get(&exec_id).and_then(|p| p.stdin.clone()));
    let Some(w) = w else {
        return Err(SandboxError::Conflict(format!(
            "process {} has exited or its standard input is closed",
            process_id(exec_id)
        )));
    };
    let mut guard = w.lock().await;
    let Some(pipe) = guard.as_mut() else {
        return Err(SandboxError::Conflict(format!(
            "the standard input of process {} is closed",
            process_id(exec_id)
        )));
    };
    let write = tokio::time::timeout(Duration::from_secs(30), pipe.write_all(data)).await;
    match write {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            *guard = None;
            return Err(SandboxError::Conflict(format!(
                "writing to process {} failed: {e}",
                process_id(exec_id)
            )));
        }
        Err(_) => {
            return Err(SandboxError::Unavailable(format!(
                "process {} has not read its input for 30 s",
                process_id(exec_id)
            )))
        }
    }
    if eof {
        *guard = None;
    }
    Ok(())
}

/// Sends a signal to a process's group.
pub(crate) async fn signal(live: &Live, exec_id: u64, sig: i32) -> Result<(), SandboxError> {
    if !(1..=64).contains(&sig) {
        return Err(SandboxError::InvalidRequest(format!(
            "signal {sig} is out of range 1-64"
        )));
    }
    live.conn
        .call(
            CtlOp::Signal {
                id: exec_id,
                signal: sig,
            },
            &[],
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_template_config_is_the_default_and_the_request_wins() {
        let image = ImageDefaults {
            env: vec![
                ("PATH".into(), "/opt/py/bin:/usr/bin".into()),
                ("A".into(), "template".into()),
                ("B".into(), "template".into()),
                ("HTTPS_PROXY".into(), "http://template.invalid".into()),
            ],
            workdir: Some("/srv/app".into()),
            user: Some(SandboxUser::Sandbox),
        };
        // The sandbox's env: its create request's and corral's proxy variables.
        let sandbox = map(&[
            ("B", "sandbox"),
            ("HTTPS_PROXY", "http://corral-proxy.invalid:3128"),
        ]);
        let e = effective(&image, &sandbox, None, None, &BTreeMap::new());
        assert_eq!(e.user, SandboxUser::Sandbox);
        assert_eq!(e.cwd.as_deref(), Some("/srv/app"));
        assert!(e.cwd_from_template);
        assert_eq!(get(&e.env, "PATH"), Some("/opt/py/bin:/usr/bin"));
        assert_eq!(get(&e.env, "A"), Some("template"));
        assert_eq!(get(&e.env, "B"), Some("sandbox"));
        assert_eq!(
            get(&e.env, "HTTPS_PROXY"),
            Some("http://corral-proxy.invalid:3128")
        );
        assert_eq!(get(&e.env, "HOME"), Some("/home/sandbox"));

        let e = effective(
            &image,
            &sandbox,
            Some(SandboxUser::Root),
            Some("/tmp"),
            &map(&[("A", "request"), ("B", "request")]),
        );
        assert_eq!(e.user, SandboxUser::Root);
        assert_eq!(e.cwd.as_deref(), Some("/tmp"));
        assert!(!e.cwd_from_template);
        assert_eq!(get(&e.env, "A"), Some("request"));
        assert_eq!(get(&e.env, "B"), Some("request"));
        assert_eq!(get(&e.env, "HOME"), Some("/root"));
        assert_eq!(get(&e.env, "USER"), Some("root"));
    }

    #[test]
    fn without_a_template_config_corrals_defaults_apply() {
        let root_image = ImageDefaults {
            user: Some(SandboxUser::Root),
            ..ImageDefaults::default()
        };
        let e = effective(&root_image, &BTreeMap::new(), None, None, &BTreeMap::new());
        assert_eq!((e.user, e.cwd), (SandboxUser::Root, None));
        let e = effective(
            &ImageDefaults::default(),
            &BTreeMap::new(),
            None,
            None,
            &BTreeMap::new(),
        );
        assert_eq!((e.user, e.cwd), (SandboxUser::Sandbox, None));
        assert_eq!(get(&e.env, "PATH"), Some("/usr/local/bin:/usr/bin:/bin"));
        assert_eq!(parse_user(None).unwrap(), None);
        assert!(parse_user(Some("admin")).is_err());
    }

    #[test]
    fn a_missing_template_workdir_is_named() {
        let m = "working directory /srv/app: ENOENT: No such file or directory".to_string();
        let e = start_error(
            SandboxError::InvalidRequest(m.clone()),
            Some("/srv/app"),
            true,
        );
        assert!(e.to_string().contains("template's WORKDIR"), "{e}");
        let e = start_error(SandboxError::InvalidRequest(m), Some("/srv/app"), false);
        assert!(!e.to_string().contains("WORKDIR"), "{e}");
    }

    #[test]
    fn utf8_split_across_reads_is_kept_together() {
        let mut c = Utf8Carry::default();
        let e = "é".as_bytes();
        assert_eq!(c.push(&[b'a', e[0]]), "a");
        assert_eq!(c.push(&[e[1], b'b']), "éb");
        assert_eq!(c.push(&[0xff, b'c']), "\u{fffd}c");
    }

    #[test]
    fn output_beyond_the_limit_is_dropped_and_flagged() {
        let mut buf = Vec::new();
        let mut t = false;
        keep(&mut buf, &mut t, &vec![0; OUTPUT_LIMIT - 1]);
        assert!(!t);
        keep(&mut buf, &mut t, b"xy");
        assert!(t);
        assert_eq!(buf.len(), OUTPUT_LIMIT);
    }
}

//! `corral sandbox ...`: sandboxes of a running daemon, over corral-client.

mod port_forward;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use corral_client::{Client, SandboxListParams};
use corral_types::api::{
    ExecEvent, ExecRequest, ResourcesRequest, Sandbox, SandboxCreateRequest, SandboxState, Snapshot,
};
use corral_types::parse_duration;
use futures_util::StreamExt;

use crate::client_conn::{key_value, print_json, print_table, run_client, Conn};

/// Sandboxes of a running `corral serve`.
#[derive(Debug, Args)]
pub(crate) struct SandboxArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: SandboxCmd,
}

#[derive(Debug, Subcommand)]
enum SandboxCmd {
    /// Create a sandbox; prints its id.
    Create(CreateOpts),
    /// List sandboxes.
    Ls {
        /// Only this state (creating, running, paused, stopping, stopped).
        #[arg(long)]
        state: Option<String>,
        /// Only sandboxes labelled K=V (repeatable).
        #[arg(long = "metadata", value_name = "K=V", value_parser = key_value)]
        metadata: Vec<(String, String)>,
    },
    /// Show one sandbox.
    Get {
        /// Sandbox id.
        id: String,
    },
    /// Run a command in a sandbox; output streams, and corral exits with its status.
    Exec {
        /// Sandbox id.
        id: String,
        /// Set an environment variable (repeatable).
        #[arg(long = "env", value_name = "K=V", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Working directory.
        #[arg(long, value_name = "PATH")]
        cwd: Option<String>,
        /// Kill it after this long, e.g. 30s (default 60s).
        #[arg(long, value_name = "DURATION", value_parser = duration_s)]
        timeout: Option<u64>,
        /// `sandbox` (uid 1000) or `root` (of the sandbox's user namespace).
        #[arg(long)]
        user: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Copy a file in or out: `cp ./f sb-ID:/home/sandbox/f` or `cp sb-ID:/path ./f`.
    Cp {
        /// Source (local path or ID:PATH).
        src: String,
        /// Destination (local path or ID:PATH).
        dst: String,
    },
    /// Freeze a sandbox.
    Pause {
        /// Sandbox id.
        id: String,
    },
    /// Thaw a paused sandbox.
    Resume {
        /// Sandbox id.
        id: String,
    },
    /// Snapshot a sandbox's files; prints the snapshot id.
    Snapshot {
        /// Sandbox id.
        id: String,
    },
    /// Create a sandbox from a snapshot.
    Fork {
        /// Snapshot id.
        snapshot: String,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// Delete sandboxes.
    Rm {
        /// Sandbox ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Forward a local port to a port inside a sandbox: prints `Forwarding from
    /// ADDR -> ID:PORT`, then carries each local connection through the daemon until
    /// Ctrl-C or the sandbox stops. Works in every network mode.
    PortForward {
        /// Sandbox id.
        id: String,
        /// `[LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT`: LOCAL_ADDR defaults to 127.0.0.1,
        /// LOCAL_PORT 0 picks a free port.
        #[arg(value_parser = port_forward::parse_spec, value_name = "[LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT")]
        ports: port_forward::ForwardSpec,
    },
    /// Set a sandbox's time to live from now, e.g. 10m.
    Timeout {
        /// Sandbox id.
        id: String,
        /// New time to live.
        #[arg(value_parser = duration_s)]
        ttl: u64,
    },
}

#[derive(Debug, Args)]
struct CreateOpts {
    /// Template (default host).
    #[arg(long)]
    template: Option<String>,
    /// Time to live, e.g. 5m (default 300s).
    #[arg(long, value_name = "DURATION", value_parser = duration_s)]
    timeout: Option<u64>,
    /// Memory limit, e.g. 512M.
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// CPUs, e.g. 0.5.
    #[arg(long, value_name = "N")]
    cpus: Option<String>,
    /// Process limit.
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// Writable layer cap, e.g. 1G.
    #[arg(long, value_name = "SIZE")]
    disk: Option<String>,
    /// Environment for every command (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Label (repeatable).
    #[arg(long = "metadata", value_name = "K=V", value_parser = key_value)]
    metadata: Vec<(String, String)>,
}

fn duration_s(s: &str) -> Result<u64, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    Ok(d.as_secs().max(1))
}

impl CreateOpts {
    fn request(self, snapshot_id: Option<String>) -> SandboxCreateRequest {
        SandboxCreateRequest {
            template: self.template,
            snapshot_id,
            timeout_s: self.timeout,
            resources: ResourcesRequest {
                memory: self.memory,
                cpus: self.cpus,
                pids: self.pids,
                disk: self.disk,
            },
            network: Default::default(),
            env: self.env.into_iter().collect(),
            metadata: self.metadata.into_iter().collect(),
            secrets: Vec::new(),
        }
    }
}

pub(crate) fn main(args: SandboxArgs) -> ExitCode {
    run_client(async move {
        let c = args.conn.client()?;
        let json = args.conn.json;
        match args.cmd {
            SandboxCmd::Create(opts) => {
                show_created(&create_waiting(&c, &opts.request(None)).await?, json)
            }
            SandboxCmd::Fork { snapshot, opts } => show_created(
                &c.create_sandbox(&opts.request(Some(snapshot))).await?,
                json,
            ),
            SandboxCmd::Ls { state, metadata } => ls(&c, state, metadata, json).await,
            SandboxCmd::Get { id } => show(&c.get_sandbox(&id).await?, json),
            SandboxCmd::Pause { id } => show(&c.pause(&id).await?, json),
            SandboxCmd::Resume { id } => show(&c.resume(&id).await?, json),
            SandboxCmd::Timeout { id, ttl } => show(&c.set_timeout(&id, ttl).await?, json),
            SandboxCmd::Snapshot { id } => {
                let snap: Snapshot = c.snapshot(&id).await?;
                if json {
                    return print_json(&snap);
                }
                println!("{}", snap.id);
                Ok(ExitCode::SUCCESS)
            }
            SandboxCmd::Rm { ids } => {
                for id in &ids {
                    c.delete_sandbox(id).await?;
                }
                if json {
                    return print_json(&serde_json::json!({"deleted": ids}));
                }
                Ok(ExitCode::SUCCESS)
            }
            SandboxCmd::Exec {
                id,
                env,
                cwd,
                timeout,
                user,
                cmd,
            } => {
                let req = ExecRequest {
                    cmd,
                    env: env.into_iter().collect(),
                    cwd,
                    stdin: None,
                    timeout_s: timeout,
                    background: false,
                    user,
                };
                exec(&c, &id, &req, json).await
            }
            SandboxCmd::Cp { src, dst } => cp(&c, &src, &dst, json).await,
            SandboxCmd::PortForward { id, ports } => port_forward::run(&c, &id, ports).await,
        }
    })
}

/// Creates a sandbox; when its template is a shipped recipe being built on first use
/// (`template_building`), follows the build's progress on stderr and retries once it
/// succeeded.
async fn create_waiting(c: &Client, req: &SandboxCreateRequest) -> anyhow::Result<Sandbox> {
    let mut followed = Vec::new();
    loop {
        match c.create_sandbox(req).await {
            Err(e) => match e.template_build_id() {
                Some(id) if !followed.iter().any(|f: &String| f == id) && followed.len() < 3 => {
                    let id = id.to_string();
                    eprintln!("corral: {e}");
                    crate::cli_template::follow_build(c, &id).await?;
                    followed.push(id);
                }
                _ => return Err(e.into()),
            },
            Ok(sb) => return Ok(sb),
        }
    }
}

fn show_created(sb: &Sandbox, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        return print_json(sb);
    }
    println!("{}", sb.id);
    Ok(ExitCode::SUCCESS)
}

fn show(sb: &Sandbox, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        return print_json(sb);
    }
    print_table(&HEADER, &[row(sb)]);
    Ok(ExitCode::SUCCESS)
}

const HEADER: [&str; 7] = [
    "ID", "STATE", "TEMPLATE", "MEMORY", "CREATED", "EXPIRES", "METADATA",
];

fn row(sb: &Sandbox) -> Vec<String> {
    let meta: Vec<String> = sb
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vec![
        sb.id.clone(),
        sb.state.as_str().to_string(),
        sb.template.clone(),
        format!("{}M", sb.resources.memory_bytes >> 20),
        sb.created_at.clone(),
        sb.expires_at.clone(),
        meta.join(","),
    ]
}

async fn ls(
    c: &Client,
    state: Option<String>,
    metadata: Vec<(String, String)>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let state = match state {
        Some(s) => Some(SandboxState::parse(&s).with_context(|| {
            format!("unknown state {s:?}: creating, running, paused, stopping or stopped")
        })?),
        None => None,
    };
    let mut params = SandboxListParams {
        state,
        metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let page = c.list_sandboxes(&params).await?;
        all.extend(page.sandboxes);
        match page.next_cursor {
            Some(next) => params.cursor = Some(next),
            None => break,
        }
    }
    if json {
        return print_json(&serde_json::json!({"sandboxes": all}));
    }
    let rows: Vec<Vec<String>> = all.iter().map(row).collect();
    print_table(&HEADER, &rows);
    Ok(ExitCode::SUCCESS)
}

async fn exec(c: &Client, id: &str, req: &ExecRequest, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let r = c.exec(id, req).await?;
        print_json(&r)?;
        return Ok(ExitCode::from((r.exit_code & 0xff) as u8));
    }
    let mut events = c.exec_stream(id, req).await?;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    while let Some(ev) = events.next().await {
        match ev? {
            ExecEvent::Stdout { data } => {
                out.write_all(data.as_bytes())?;
                out.flush()?;
            }
            ExecEvent::Stderr { data } => {
                err.write_all(data.as_bytes())?;
            }
            ExecEvent::Exit { result } => {
                if result.timed_out {
                    eprintln!("corral: the command timed out");
                }
                return Ok(ExitCode::from((result.exit_code & 0xff) as u8));
            }
            ExecEvent::Error { code, message } => bail!("{message} ({code})"),
        }
    }
    bail!("the exec stream ended without an exit status")
}

/// `ID:PATH` (a sandbox path) or a local path.
fn remote(s: &str) -> Option<(&str, &str)> {
    let (id, path) = s.split_once(':')?;
    (id.starts_with("sb-") && path.starts_with('/')).then_some((id, path))
}

fn progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::no_length(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

async fn cp(c: &Client, src: &str, dst: &str, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = match (remote(src), remote(dst)) {
        (None, Some((id, path))) => {
            let file = tokio::fs::File::open(src)
                .await
                .with_context(|| format!("cannot open {src}"))?;
            let len = file.metadata().await.map(|m| m.len()).ok();
            let bar = progress_bar(len);
            let b = bar.clone();
            let r = c.upload(id, path, file, move |n| b.set_position(n)).await;
            bar.finish_and_clear();
            r?.size_bytes
        }
        (Some((id, path)), None) => {
            // Into a sibling file renamed over `dst` only once complete: a failed
            // download (unknown sandbox, missing file, broken connection) leaves an
            // existing `dst` untouched and creates nothing.
            let part = format!("{dst}.corral-part");
            let mut file = tokio::fs::File::create(&part)
                .await
                .with_context(|| format!("cannot create {part}"))?;
            let bar = progress_bar(None);
            let r = c
                .download(id, path, &mut file, |n, total| {
                    if let Some(t) = total {
                        bar.set_length(t);
                    }
                    bar.set_position(n);
                })
                .await;
            bar.finish_and_clear();
            drop(file);
            let n = match r {
                Ok(n) => n,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(e.into());
                }
            };
            if let Err(e) = tokio::fs::rename(&part, dst).await {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e).with_context(|| format!("cannot write {dst}"));
            }
            n
        }
        _ => bail!("cp copies between this machine and a sandbox: one side is ID:/PATH (sb-...:/home/sandbox/f), the other a local path"),
    };
    if json {
        return print_json(&serde_json::json!({"bytes": bytes}));
    }
    Ok(ExitCode::SUCCESS)
}

//! `corral template build|import|debootstrap|ls|inspect|rm`: the template store of a data directory
//! (the daemon's `--data-dir`, which is also where `corral run --template` looks), used
//! directly, without a daemon. `rm` consults the directory's state database and is
//! refused while a sandbox or snapshot recorded there uses the template; the HTTP API
//! (`/v1/templates`) does the same through the running daemon.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use corral_client::Client;
use corral_sandbox::{BuildEvent, BuildRequest, TemplateSource, TemplateStore};
use corral_types::api::{Template, TemplateBuildEvent, TemplateBuildState, TemplateLayerState};
use futures_util::StreamExt;

use crate::{paths, EXIT_CORRAL_ERROR};

#[derive(Debug, Args)]
pub(crate) struct TemplateArgs {
    /// Data directory holding the store [env: CORRAL_STATE_DIR; default /var/lib/corral].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TemplateCommand,
}

#[derive(Debug, Subcommand)]
enum TemplateCommand {
    /// Build a template from a recipe (a Dockerfile subset, see docs/templates.md);
    /// progress on stderr. RUN steps run in corral sandboxes, as root, offline or, when
    /// the recipe names hosts (`# corral: allow HOST ...`), with egress to those only.
    Build {
        /// Template name.
        #[arg(long)]
        name: String,
        /// Version (default: the next number; an unchanged rebuild keeps the newest).
        #[arg(long)]
        version: Option<String>,
        /// The recipe [default: CONTEXT_DIR/Recipe, else CONTEXT_DIR/Dockerfile].
        #[arg(short = 'f', long = "file", value_name = "RECIPE")]
        file: Option<PathBuf>,
        /// NAME=VALUE for an ARG of the recipe (repeatable).
        #[arg(long = "build-arg", value_name = "NAME=VALUE")]
        build_args: Vec<String>,
        /// RUN steps' egress proxy resolves NAME to IPV4 instead of asking the system
        /// resolver (repeatable; e.g. a local mirror; trusted as given, like curl's
        /// --resolve).
        #[arg(long = "egress-resolve", value_name = "NAME=IPV4", value_parser = crate::cli_egress::parse_resolve)]
        egress_resolve: Vec<(String, std::net::Ipv4Addr)>,
        /// The build context: COPY and ADD sources are relative to it.
        #[arg(value_name = "CONTEXT_DIR")]
        context: PathBuf,
    },
    /// Import a root file system directory or an OCI image (layout dir or tarball);
    /// progress on stderr (a bar on a terminal: layer i/n, bytes of the current layer).
    Import {
        /// Template name.
        #[arg(long)]
        name: String,
        /// Version (default: the next number).
        #[arg(long)]
        version: Option<String>,
        /// A directory holding a root file system.
        #[arg(
            long,
            value_name = "PATH",
            conflicts_with = "oci",
            required_unless_present = "oci"
        )]
        dir: Option<PathBuf>,
        /// An OCI image layout directory, or an OCI / `docker save` tarball.
        #[arg(long, value_name = "PATH")]
        oci: Option<PathBuf>,
    },
    /// Build a Debian base with debootstrap, as root on this host, and import it;
    /// debootstrap's progress on stderr. Packages are checked against the host's
    /// Debian archive keyring.
    Debootstrap {
        /// Template name.
        #[arg(long)]
        name: String,
        /// Version (default: the next number).
        #[arg(long)]
        version: Option<String>,
        /// Debian suite.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// The Debian archive's URL [default: the host's apt mirror for the suite].
        #[arg(long, value_name = "URL", conflicts_with = "tarball")]
        mirror: Option<String>,
        /// debootstrap variant (minbase: the required packages and apt).
        #[arg(long, default_value = "minbase")]
        variant: String,
        /// Extra packages, comma-separated.
        #[arg(long, value_name = "PKG,...", value_delimiter = ',')]
        include: Vec<String>,
        /// Use the packages of a `debootstrap --make-tarball` file (no download).
        #[arg(long, value_name = "FILE")]
        tarball: Option<PathBuf>,
    },
    /// List templates.
    Ls,
    /// Show one template (NAME or NAME:VERSION).
    Inspect {
        /// NAME or NAME:VERSION.
        template: String,
    },
    /// Remove NAME (every version) or NAME:VERSION; refused while in use.
    Rm {
        /// NAME or NAME:VERSION.
        template: String,
    },
    /// Build jobs of a running daemon (`corral serve`): list them, show one, follow
    /// its progress, or cancel it.
    Builds {
        /// A build id (`tb_...`); none: list them, newest first.
        id: Option<String>,
        /// Show the build's progress from the start and wait for its end (exit 0 when
        /// it succeeded).
        #[arg(long, requires = "id")]
        follow: bool,
        /// Cancel the build (admin key).
        #[arg(long, requires = "id", conflicts_with = "follow")]
        cancel: bool,
        /// Daemon URL [env: CORRAL_URL; default http://127.0.0.1:7070].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// API key [env: CORRAL_API_KEY; default: DATA_DIR/admin-key].
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Trust this CA certificate (PEM) for an https daemon [env: CORRAL_CA_CERT].
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
    },
}

pub(crate) fn main(args: TemplateArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corral: {e:#}");
            ExitCode::from(EXIT_CORRAL_ERROR)
        }
    }
}

fn run(args: TemplateArgs) -> anyhow::Result<()> {
    if let TemplateCommand::Builds {
        id,
        follow,
        cancel,
        url,
        key,
        ca_cert,
    } = args.command
    {
        let c = crate::client_conn::connect(url, key, ca_cert, args.data_dir)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        return rt.block_on(builds(&c, id, follow, cancel, args.json));
    }
    let dir = args.data_dir.unwrap_or_else(paths::state_dir);
    let store = TemplateStore::new(&dir, paths::ID_MAP_BASE);
    match args.command {
        TemplateCommand::Build {
            name,
            version,
            file,
            build_args,
            egress_resolve,
            context,
        } => {
            let file = file.unwrap_or_else(|| {
                let r = context.join("Recipe");
                if r.exists() {
                    r
                } else {
                    context.join("Dockerfile")
                }
            });
            let recipe = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the recipe {}", file.display()))?;
            let mut parsed = BTreeMap::new();
            for a in build_args {
                let (k, v) = a
                    .split_once('=')
                    .with_context(|| format!("--build-arg {a:?}: write NAME=VALUE"))?;
                parsed.insert(k.to_string(), v.to_string());
            }
            // What a killed import or build left is removed first.
            store.clean_stale()?;
            let req = BuildRequest {
                name,
                version,
                recipe,
                recipe_name: file.canonicalize().unwrap_or(file).display().to_string(),
                context,
                build_args: parsed,
                runtime_dir: paths::runtime_dir(),
                cgroup_parent: paths::cgroup_parent(),
                network: Some(std::sync::Arc::new(crate::build_egress::BuildEgress {
                    resolve: egress_resolve,
                })),
            };
            let started = Instant::now();
            let t = store.build(&req, &mut progress)?;
            eprintln!(
                "built {}:{} in {:.2} s",
                t.name,
                t.version,
                started.elapsed().as_secs_f64()
            );
            print_template(&t, args.json)?;
        }
        TemplateCommand::Import {
            name,
            version,
            dir: src_dir,
            oci,
        } => {
            let source = match (src_dir, oci) {
                (Some(d), None) => TemplateSource::Dir(d),
                (None, Some(o)) => TemplateSource::Oci(o),
                _ => anyhow::bail!("give exactly one of --dir and --oci"),
            };
            // What a killed import left is removed first.
            store.clean_stale()?;
            let started = Instant::now();
            let mut view = ImportView::new();
            let t = store.import_with(
                &name,
                version.as_deref(),
                &source,
                &mut |e| view.show(&e),
                None,
            );
            view.done();
            let t = t?;
            eprintln!(
                "imported {}:{} in {:.2} s",
                t.name,
                t.version,
                started.elapsed().as_secs_f64()
            );
            print_template(&t, args.json)?;
        }
        TemplateCommand::Debootstrap {
            name,
            version,
            suite,
            mirror,
            variant,
            include,
            tarball,
        } => {
            let spec = corral_sandbox::Debootstrap {
                suite,
                mirror,
                variant,
                include,
                tarball,
            };
            store.clean_stale()?;
            let started = Instant::now();
            let t = store.debootstrap(&name, version.as_deref(), &spec, &mut progress)?;
            eprintln!(
                "built {}:{} in {:.1} s",
                t.name,
                t.version,
                started.elapsed().as_secs_f64()
            );
            print_template(&t, args.json)?;
        }
        TemplateCommand::Ls => {
            let list = store.list()?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<24} {:<10} {:<38} {:>7} {:>10}  CREATED",
                    "NAME", "VERSION", "ID", "LAYERS", "SIZE"
                );
                for t in list {
                    println!(
                        "{:<24} {:<10} {:<38} {:>7} {:>10}  {}",
                        t.name,
                        t.version,
                        t.id,
                        t.layers.len(),
                        size(t.size_bytes),
                        t.created_at
                    );
                }
            }
        }
        TemplateCommand::Inspect { template } => {
            let t: Template = store.get(&template)?;
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TemplateCommand::Builds { .. } => {}
        TemplateCommand::Rm { template } => {
            let removed = corral_sandbox::remove_template(&dir, paths::ID_MAP_BASE, &template)
                .with_context(|| format!("cannot remove template {template}"))?;
            for r in removed {
                println!("removed {r}");
            }
        }
    }
    Ok(())
}

/// One template, as `--json` or a line.
fn print_template(t: &Template, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(t)?);
    } else {
        println!(
            "{}:{} {} {} layers, {}",
            t.name,
            t.version,
            t.id,
            t.layers.len(),
            size(t.size_bytes)
        );
    }
    Ok(())
}

/// Build progress on stderr: `step N/M`, cached or running, the instruction, then the
/// step's output (indented) and time.
fn progress(e: BuildEvent) {
    match e {
        BuildEvent::Step {
            step,
            total,
            text,
            cached,
        } => {
            let shown: String = text.chars().take(100).collect();
            let state = if cached { "cached " } else { "running" };
            eprintln!("step {step}/{total} {state} {shown}");
        }
        BuildEvent::Output(out) => {
            for l in String::from_utf8_lossy(&out).lines() {
                eprintln!("  | {l}");
            }
        }
        BuildEvent::Done { step, elapsed } => {
            if elapsed.as_millis() >= 100 {
                eprintln!("step {step} done in {:.2} s", elapsed.as_secs_f64());
            }
        }
    }
}

/// The plain line of an import event (`layer` events; a `bytes` event's count).
fn import_line(e: &TemplateBuildEvent) -> Option<String> {
    match e {
        TemplateBuildEvent::Layer {
            layer,
            total,
            digest,
            size_bytes,
            state,
        } => {
            let state = match state {
                TemplateLayerState::Started => "started",
                TemplateLayerState::Applied => "applied",
                TemplateLayerState::Cached => "cached ",
            };
            let shown: String = digest.chars().take(19).collect();
            Some(if *size_bytes > 0 {
                format!(
                    "layer {layer}/{total} {state} {shown} {}",
                    size(*size_bytes)
                )
            } else {
                format!("layer {layer}/{total} {state} {shown}")
            })
        }
        TemplateBuildEvent::Bytes { done, total, files } => Some(match (total, files) {
            (Some(t), _) => format!("  {} of {}", size(*done), size(*t)),
            (None, Some(f)) => format!("  {f} files, {}", size(*done)),
            (None, None) => format!("  {}", size(*done)),
        }),
        _ => None,
    }
}

/// Import progress on stderr: on a terminal a bar of the current layer's bytes (layer
/// i/n in front) with layer lines above it; plain lines otherwise.
struct ImportView {
    bar: Option<indicatif::ProgressBar>,
}

impl ImportView {
    fn new() -> ImportView {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            ) {
                b.set_style(style);
            }
            b
        });
        ImportView { bar }
    }

    fn show(&mut self, e: &TemplateBuildEvent) {
        let Some(bar) = &self.bar else {
            if let Some(l) = import_line(e) {
                eprintln!("{l}");
            }
            return;
        };
        match e {
            TemplateBuildEvent::Layer {
                layer,
                total,
                size_bytes,
                state,
                ..
            } => {
                if *state == TemplateLayerState::Started {
                    bar.set_prefix(format!("layer {layer}/{total}"));
                    bar.set_length(*size_bytes);
                    bar.set_position(0);
                    bar.reset_elapsed();
                }
                if let Some(l) = import_line(e) {
                    bar.println(l);
                }
            }
            TemplateBuildEvent::Bytes { done, total, files } => {
                if let Some(t) = total {
                    bar.set_length(*t);
                } else if let Some(f) = files {
                    bar.set_length(bar.length().unwrap_or(0).max(*done));
                    bar.set_message(format!("{f} files"));
                }
                bar.set_position(*done);
            }
            _ => {}
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn size(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

async fn builds(
    c: &Client,
    id: Option<String>,
    follow: bool,
    cancel: bool,
    json: bool,
) -> anyhow::Result<()> {
    let Some(id) = id else {
        let list = c.list_template_builds(None, None).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
        println!(
            "{:<22} {:<20} {:<12} {:<10} {:>6}  CREATED",
            "ID", "NAME", "SOURCE", "STATE", "STEP"
        );
        for b in list.builds {
            println!(
                "{:<22} {:<20} {:<12} {:<10} {:>6}  {}",
                b.id,
                b.name,
                b.source,
                state_word(b.state),
                format!("{}/{}", b.step, b.total),
                b.created_at
            );
        }
        return Ok(());
    };
    if follow {
        let t = follow_build(c, &id).await?;
        print_template(&t, json)?;
        return Ok(());
    }
    let b = if cancel {
        c.cancel_template_build(&id).await?
    } else {
        c.get_template_build(&id).await?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        println!(
            "{} {} ({}): {} step {}/{}",
            b.id,
            b.name,
            b.source,
            state_word(b.state),
            b.step,
            b.total
        );
        if let Some(t) = &b.template {
            print_template(t, false)?;
        }
        if let Some(e) = &b.error {
            println!("error ({}): {}", e.code, e.message);
        }
    }
    Ok(())
}

fn state_word(s: TemplateBuildState) -> &'static str {
    match s {
        TemplateBuildState::Queued => "queued",
        TemplateBuildState::Running => "running",
        TemplateBuildState::Succeeded => "succeeded",
        TemplateBuildState::Failed => "failed",
        TemplateBuildState::Cancelled => "cancelled",
    }
}

/// Follows a build job's events with progress on stderr (like a local build's; on a
/// terminal, a bar of the steps with the output scrolling above it); the template
/// when it succeeded, an error naming why when it failed or was cancelled.
pub(crate) async fn follow_build(c: &Client, id: &str) -> anyhow::Result<Template> {
    let mut events = c.template_build_events(id).await?;
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let b = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("step {pos}/{len} {bar:30} {elapsed} {msg}")
        {
            b.set_style(style);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    // A line above the bar on a terminal, a plain line otherwise.
    let say = |l: String| {
        if tty {
            bar.println(l);
        } else {
            eprintln!("{l}");
        }
    };
    while let Some(e) = events.next().await {
        match e? {
            TemplateBuildEvent::Phase { text } => say(format!("build {id}: {text}")),
            TemplateBuildEvent::Step {
                step,
                total,
                text,
                cached,
            } => {
                let shown: String = text.chars().take(100).collect();
                let state = if cached { "cached " } else { "running" };
                bar.set_length(u64::from(total));
                bar.set_position(u64::from(step));
                bar.set_message(shown.chars().take(60).collect::<String>());
                say(format!("step {step}/{total} {state} {shown}"));
            }
            TemplateBuildEvent::Output { line } => say(format!("  | {line}")),
            TemplateBuildEvent::StepDone { step, elapsed_ms } => {
                if elapsed_ms >= 100 {
                    say(format!(
                        "step {step} done in {:.2} s",
                        elapsed_ms as f64 / 1000.0
                    ));
                }
            }
            TemplateBuildEvent::Dropped { lines } => {
                say(format!("  | ({lines} earlier lines not kept)"))
            }
            e @ TemplateBuildEvent::Layer { layer, total, .. } => {
                bar.set_length(u64::from(total));
                bar.set_position(u64::from(layer));
                if let Some(l) = import_line(&e) {
                    bar.set_message(l.chars().take(60).collect::<String>());
                    say(l);
                }
            }
            e @ TemplateBuildEvent::Bytes { .. } => {
                if let Some(l) = import_line(&e) {
                    if tty {
                        bar.set_message(l.trim().to_string());
                    } else {
                        say(l);
                    }
                }
            }
            TemplateBuildEvent::Done { template } => {
                bar.finish_and_clear();
                return Ok(template);
            }
            TemplateBuildEvent::Failed { code, message } => {
                bar.abandon();
                anyhow::bail!("template build {id} failed ({code}): {message}")
            }
            TemplateBuildEvent::Cancelled => {
                bar.abandon();
                anyhow::bail!("template build {id} was cancelled")
            }
        }
    }
    bar.abandon();
    anyhow::bail!(
        "the daemon ended the progress of build {id} early; see `corral template builds {id}`"
    )
}

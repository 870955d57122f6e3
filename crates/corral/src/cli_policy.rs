//! `corral policy publish|ls|show|diff|rollback|activate|shadow` and
//! `corral capability ls|publish` (over the API; changes need an admin key).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use corral_types::api::{Capability, PolicyPublishRequest};

use crate::client_conn::{print_json, print_table, run_client, Conn};

/// Cedar policy bundles.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: PolicyCmd,
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Publish a bundle (a Cedar file) as a new version; active at once unless
    /// --no-activate. An invalid bundle is refused and the active one stays.
    Publish {
        /// The Cedar file (`-` for stdin).
        file: PathBuf,
        /// Store it without making it active.
        #[arg(long)]
        no_activate: bool,
        /// A note kept with the version.
        #[arg(long)]
        note: Option<String>,
    },
    /// List versions (active and shadow marked).
    Ls,
    /// Print one version's Cedar text.
    Show {
        /// Version number.
        version: u64,
    },
    /// Policies added, removed and changed between two versions.
    Diff {
        /// The older version.
        from: u64,
        /// The newer version.
        to: u64,
    },
    /// Make the previously active version active again (one step back).
    Rollback,
    /// Make a stored version active.
    Activate {
        /// Version number.
        version: u64,
    },
    /// Evaluate a version next to the active one (logged, not enforced), or stop.
    Shadow {
        /// Version number; omit with --clear.
        version: Option<u64>,
        /// Stop shadow evaluation.
        #[arg(long, conflicts_with = "version")]
        clear: bool,
    },
}

pub(crate) fn main(args: PolicyArgs) -> ExitCode {
    run_client(async move {
        let c = args.conn.client()?;
        let json = args.conn.json;
        match args.cmd {
            PolicyCmd::Publish {
                file,
                no_activate,
                note,
            } => {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
                } else {
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?
                };
                let v = c
                    .publish_policy(&PolicyPublishRequest {
                        text,
                        activate: Some(!no_activate),
                        note,
                    })
                    .await?;
                if json {
                    return print_json(&v);
                }
                let state = if no_activate { "stored" } else { "active" };
                println!(
                    "policy version {} {state} ({} policies: {})",
                    v.version,
                    v.policy_ids.len(),
                    v.policy_ids.join(", ")
                );
            }
            PolicyCmd::Ls => {
                let l = c.list_policies().await?;
                if json {
                    return print_json(&l);
                }
                let rows: Vec<Vec<String>> = l
                    .versions
                    .iter()
                    .map(|v| {
                        let mut mark = Vec::new();
                        if l.active == Some(v.version) {
                            mark.push("active");
                        }
                        if l.shadow == Some(v.version) {
                            mark.push("shadow");
                        }
                        vec![
                            v.version.to_string(),
                            mark.join(","),
                            v.policy_ids.len().to_string(),
                            v.published_by.clone(),
                            v.created_at.clone(),
                            v.note.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &["VERSION", "STATE", "POLICIES", "BY", "CREATED", "NOTE"],
                    &rows,
                );
            }
            PolicyCmd::Show { version } => {
                let v = c.get_policy(version).await?;
                if json {
                    return print_json(&v);
                }
                print!("{}", v.text.unwrap_or_default());
            }
            PolicyCmd::Diff { from, to } => {
                let d = c.diff_policies(from, to).await?;
                if json {
                    return print_json(&d);
                }
                for p in &d.removed {
                    println!("- {}\n{}\n", p.id, indent(&p.text, "-   "));
                }
                for p in &d.added {
                    println!("+ {}\n{}\n", p.id, indent(&p.text, "+   "));
                }
                for p in &d.changed {
                    println!(
                        "~ {}\n{}\n{}\n",
                        p.id,
                        indent(&p.before, "-   "),
                        indent(&p.after, "+   ")
                    );
                }
                if d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty() {
                    println!("versions {from} and {to} have the same policies");
                }
            }
            PolicyCmd::Rollback => {
                let v = c.rollback_policy().await?;
                if json {
                    return print_json(&v);
                }
                println!("rolled back: policy version {} is active", v.version);
            }
            PolicyCmd::Activate { version } => {
                let v = c.activate_policy(version).await?;
                if json {
                    return print_json(&v);
                }
                println!("policy version {} is active", v.version);
            }
            PolicyCmd::Shadow { version, clear } => match (version, clear) {
                (Some(v), false) => {
                    c.set_shadow_policy(v).await?;
                    println!("policy version {v} is evaluated in shadow (not enforced)");
                }
                (None, true) => {
                    c.clear_shadow_policy().await?;
                    println!("no shadow policy");
                }
                _ => anyhow::bail!("give a version, or --clear"),
            },
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The capability catalog.
#[derive(Debug, Args)]
pub(crate) struct CapabilityArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: CapabilityCmd,
}

#[derive(Debug, Subcommand)]
enum CapabilityCmd {
    /// List capabilities (an agent key sees only what it could be permitted).
    Ls,
    /// Publish capabilities from a catalog file (TOML `[[capability]]` or JSON), each
    /// added or replaced (admin).
    Publish {
        /// The catalog file.
        file: PathBuf,
    },
}

#[derive(Debug, serde::Deserialize)]
struct CatalogFile {
    #[serde(default, alias = "capability")]
    capabilities: Vec<Capability>,
}

pub(crate) fn capability_main(args: CapabilityArgs) -> ExitCode {
    run_client(async move {
        let c = args.conn.client()?;
        let json = args.conn.json;
        match args.cmd {
            CapabilityCmd::Ls => {
                let l = c.list_capabilities().await?;
                if json {
                    return print_json(&l);
                }
                let rows: Vec<Vec<String>> = l
                    .capabilities
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.side_effect.as_str().to_string(),
                            c.category.clone(),
                            c.description.clone(),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "SIDE_EFFECT", "CATEGORY", "DESCRIPTION"], &rows);
            }
            CapabilityCmd::Publish { file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let parsed: CatalogFile = if text.trim_start().starts_with('{') {
                    serde_json::from_str(&text)?
                } else {
                    toml::from_str(&text)?
                };
                for cap in &parsed.capabilities {
                    let stored = c.put_capability(cap).await?;
                    println!("published {}", stored.name);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

//! `corral audit verify|export|ls`: the hash-chained audit log. `verify --data-dir DIR`
//! reads DIR/audit.db directly (the daemon may be running or not); without it, the
//! daemon verifies (admin key).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use corral_client::AuditListParams;
use corral_types::api::AuditVerifyResponse;

use crate::client_conn::{print_json, print_table, run_client, Conn};

/// The audit log.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: AuditCmd,
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Recompute the whole chain; exit 1 and name the first bad record if any was
    /// edited, deleted or reordered.
    Verify {
        /// Read DIR/audit.db directly instead of asking the daemon.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Also require the chain's head to be this hash (recorded earlier): catches a
        /// truncated tail or a rewritten chain.
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
    },
    /// One task's whole trail (calls, arguments, decisions, outputs) as JSON lines.
    Export {
        /// The task id.
        #[arg(long)]
        task: String,
    },
    /// Recent records (operator: its tenant).
    Ls {
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// Only this tenant (admin).
        #[arg(long)]
        tenant: Option<String>,
        /// Only at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn report(r: &AuditVerifyResponse, expect_head: Option<&str>, json: bool) -> ExitCode {
    let head_ok = expect_head.is_none_or(|h| h.eq_ignore_ascii_case(&r.head_hash));
    if json {
        if let Ok(s) = serde_json::to_string_pretty(r) {
            println!("{s}");
        }
    } else if let Some(f) = &r.fault {
        eprintln!(
            "corral: audit log BROKEN at record {} ({:?}): {}",
            f.seq, f.kind, f.message
        );
        eprintln!(
            "corral: records 1..{} are intact (head {})",
            r.head_seq, r.head_hash
        );
    } else {
        let rate = (r.records * 1000)
            .checked_div(r.elapsed_ms)
            .unwrap_or(r.records);
        println!(
            "ok: {} records, head {} ({}), {} ms ({} records/s)",
            r.records, r.head_seq, r.head_hash, r.elapsed_ms, rate
        );
    }
    if !head_ok {
        eprintln!(
            "corral: the chain's head is {} at record {}, not the expected hash: records were \
             removed from the end or the chain was rewritten",
            r.head_hash, r.head_seq
        );
    }
    if r.ok && head_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub(crate) fn main(args: AuditArgs) -> ExitCode {
    let json = args.conn.json;
    if let AuditCmd::Verify {
        data_dir: Some(dir),
        expect_head,
    } = &args.cmd
    {
        let path = dir.join("audit.db");
        if !path.exists() {
            eprintln!(
                "corral: {} does not exist; is {} a daemon's data directory?",
                path.display(),
                dir.display()
            );
            return ExitCode::from(crate::EXIT_CORRAL_ERROR);
        }
        return match corral_govern::verify_file(&path) {
            Ok(r) => report(&r, expect_head.as_deref(), json),
            Err(e) => {
                eprintln!("corral: {e}");
                ExitCode::from(crate::EXIT_CORRAL_ERROR)
            }
        };
    }
    run_client(async move {
        let c = args.conn.client()?;
        match args.cmd {
            AuditCmd::Verify { expect_head, .. } => {
                let r = c.verify_audit().await?;
                Ok(report(&r, expect_head.as_deref(), json))
            }
            AuditCmd::Export { task } => {
                let bytes = c.export_audit(&task).await?;
                std::io::stdout()
                    .write_all(&bytes)
                    .context("cannot write to stdout")?;
                Ok(ExitCode::SUCCESS)
            }
            AuditCmd::Ls {
                task,
                tenant,
                since,
                limit,
            } => {
                let list = c
                    .list_audit(&AuditListParams {
                        task,
                        tenant,
                        since,
                        cursor: None,
                        limit: Some(limit),
                    })
                    .await?;
                if json {
                    return print_json(&list);
                }
                let rows: Vec<Vec<String>> = list
                    .records
                    .iter()
                    .map(|r| {
                        vec![
                            r.seq.to_string(),
                            r.time.clone(),
                            r.kind.as_str().to_string(),
                            r.tenant.clone(),
                            r.agent.clone().unwrap_or_default(),
                            r.task_id.clone().unwrap_or_else(|| "-".into()),
                            r.correlation_id.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "SEQ",
                        "TIME",
                        "KIND",
                        "TENANT",
                        "AGENT",
                        "TASK",
                        "CORRELATION",
                    ],
                    &rows,
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

//! `corral approvals ls|show|approve|deny` (operator or admin; over the API).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use corral_types::api::{Approval, ApprovalStatus};

use crate::client_conn::{print_json, print_table, run_client, Conn};

/// Approval requests of capability calls.
#[derive(Debug, Args)]
pub(crate) struct ApprovalsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: ApprovalsCmd,
}

#[derive(Debug, Subcommand)]
enum ApprovalsCmd {
    /// List requests (default: pending ones).
    Ls {
        /// Which: pending, approved, denied, expired, used, or all.
        #[arg(long, value_enum, default_value = "pending")]
        status: StatusArg,
    },
    /// One request, with its (redacted) arguments.
    Show {
        /// The request's id (apr-...).
        id: String,
    },
    /// Approve a pending request: the agent's next identical call runs, once.
    Approve {
        /// The request's id (apr-...).
        id: String,
        /// Why (recorded in the audit log, shown to the agent).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a pending request.
    Deny {
        /// The request's id (apr-...).
        id: String,
        /// Why (recorded in the audit log, shown to the agent).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Pending,
    Approved,
    Denied,
    Expired,
    Used,
    All,
}

fn status_of(s: StatusArg) -> Option<ApprovalStatus> {
    match s {
        StatusArg::Pending => Some(ApprovalStatus::Pending),
        StatusArg::Approved => Some(ApprovalStatus::Approved),
        StatusArg::Denied => Some(ApprovalStatus::Denied),
        StatusArg::Expired => Some(ApprovalStatus::Expired),
        StatusArg::Used => Some(ApprovalStatus::Used),
        StatusArg::All => None,
    }
}

fn show(a: &Approval) {
    println!("id:          {}", a.id);
    println!("status:      {}", a.status.as_str());
    println!("tenant:      {}", a.tenant);
    println!("agent:       {}", a.agent);
    println!("task:        {}", a.task_id.as_deref().unwrap_or("-"));
    println!("capability:  {} ({})", a.capability, a.side_effect.as_str());
    println!("arguments:   {}", a.args);
    println!("args sha256: {}", a.args_sha256);
    println!("policies:    {}", a.policies.join(", "));
    println!("created:     {}", a.created_at);
    println!("expires:     {}", a.expires_at);
    if let Some(by) = &a.decided_by {
        println!(
            "decided:     by {by} at {}{}",
            a.decided_at.as_deref().unwrap_or("?"),
            a.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
}

pub(crate) fn main(args: ApprovalsArgs) -> ExitCode {
    run_client(async move {
        let c = args.conn.client()?;
        let json = args.conn.json;
        match args.cmd {
            ApprovalsCmd::Ls { status } => {
                let list = c.list_approvals(status_of(status)).await?;
                if json {
                    return print_json(&list);
                }
                let rows: Vec<Vec<String>> = list
                    .approvals
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.clone(),
                            a.status.as_str().to_string(),
                            a.tenant.clone(),
                            a.agent.clone(),
                            a.capability.clone(),
                            a.task_id.clone().unwrap_or_else(|| "-".into()),
                            a.expires_at.clone(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "STATUS",
                        "TENANT",
                        "AGENT",
                        "CAPABILITY",
                        "TASK",
                        "EXPIRES",
                    ],
                    &rows,
                );
            }
            ApprovalsCmd::Show { id } => {
                let a = c.get_approval(&id).await?;
                if json {
                    return print_json(&a);
                }
                show(&a);
            }
            ApprovalsCmd::Approve { id, reason } => {
                return decide(&c, &id, true, reason, json).await
            }
            ApprovalsCmd::Deny { id, reason } => return decide(&c, &id, false, reason, json).await,
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn decide(
    c: &corral_client::Client,
    id: &str,
    approve: bool,
    reason: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let a = c.decide_approval(id, approve, reason).await?;
    if json {
        return print_json(&a);
    }
    eprintln!(
        "corral: {} {} ({} for {} of tenant {})",
        if approve { "approved" } else { "denied" },
        a.id,
        a.capability,
        a.agent,
        a.tenant
    );
    Ok(ExitCode::SUCCESS)
}

//! `corral kill-switch set|clear|ls` (over the API; operators for their own tenant and
//! agents, admins for everything).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use corral_types::api::{KillSwitchRequest, KillSwitchScope};

use crate::client_conn::{print_json, print_table, run_client, Conn};

/// Kill switches.
#[derive(Debug, Args)]
pub(crate) struct KillSwitchArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: KillSwitchCmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    Capability,
    Category,
    Agent,
    Tenant,
}

impl From<ScopeArg> for KillSwitchScope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Capability => KillSwitchScope::Capability,
            ScopeArg::Category => KillSwitchScope::Category,
            ScopeArg::Agent => KillSwitchScope::Agent,
            ScopeArg::Tenant => KillSwitchScope::Tenant,
        }
    }
}

#[derive(Debug, Subcommand)]
enum KillSwitchCmd {
    /// Stop a capability, a category, an agent (TENANT/AGENT) or a tenant from the next
    /// call on; a tenant switch also pauses its running sandboxes.
    Set {
        /// What it stops.
        scope: ScopeArg,
        /// The capability, category, TENANT/AGENT or tenant.
        target: String,
        /// Why (shown to the agents it stops).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Clear a switch (paused sandboxes stay paused; resume them yourself).
    Clear {
        /// Its scope.
        scope: ScopeArg,
        /// Its target.
        target: String,
    },
    /// List engaged switches.
    Ls,
}

pub(crate) fn main(args: KillSwitchArgs) -> ExitCode {
    run_client(async move {
        let c = args.conn.client()?;
        let json = args.conn.json;
        match args.cmd {
            KillSwitchCmd::Set {
                scope,
                target,
                reason,
            } => {
                let r = c
                    .set_kill_switch(&KillSwitchRequest {
                        scope: scope.into(),
                        target,
                        reason,
                    })
                    .await?;
                if json {
                    return print_json(&r);
                }
                println!(
                    "kill switch set: {} {}",
                    r.kill_switch.scope.as_str(),
                    r.kill_switch.target
                );
                if !r.paused_sandboxes.is_empty() {
                    println!("paused: {}", r.paused_sandboxes.join(" "));
                }
            }
            KillSwitchCmd::Clear { scope, target } => {
                c.clear_kill_switch(scope.into(), &target).await?;
                println!("kill switch cleared");
            }
            KillSwitchCmd::Ls => {
                let l = c.list_kill_switches().await?;
                if json {
                    return print_json(&l);
                }
                let rows: Vec<Vec<String>> = l
                    .kill_switches
                    .iter()
                    .map(|k| {
                        vec![
                            k.scope.as_str().to_string(),
                            k.target.clone(),
                            k.set_by.clone(),
                            k.created_at.clone(),
                            k.reason.clone(),
                        ]
                    })
                    .collect();
                print_table(&["SCOPE", "TARGET", "BY", "SINCE", "REASON"], &rows);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

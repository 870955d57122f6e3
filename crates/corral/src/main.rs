//! corral-full: every subcommand of corral (the daemon, its clients, governance,
//! templates) and its internal helpers. `corral` itself (front.rs) runs `corral run`
//! and hands every other command line to this binary, installed next to it.

mod build_egress;
mod cli_approvals;
mod cli_audit;
mod cli_egress;
mod cli_key;
mod cli_killswitch;
mod cli_mcp;
mod cli_policy;
mod cli_run;
mod cli_sandbox;
mod cli_secret;
mod cli_serve;
mod cli_template;
mod client_conn;
mod common;
mod egress_helper;
mod panics;
mod paths;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// corral: run untrusted code in hardened, disposable Linux sandboxes.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a fresh, fully isolated sandbox and remove it afterwards.
    Run(cli_run::RunArgs),
    /// Run the sandbox daemon: the HTTP API under /v1 (see docs/daemon.md).
    Serve(cli_serve::ServeArgs),
    /// Sandboxes of a running daemon: create, ls, exec, cp, pause, snapshot, fork, rm.
    Sandbox(cli_sandbox::SandboxArgs),
    /// Templates: import a root file system or OCI image, ls, inspect, rm.
    Template(cli_template::TemplateArgs),
    /// API keys of a running daemon (admin).
    Key(cli_key::KeyArgs),
    /// Tenants of a running daemon (admin).
    Tenant(cli_key::TenantArgs),
    /// Cedar policy bundles: publish, ls, show, diff, rollback, activate, shadow.
    Policy(cli_policy::PolicyArgs),
    /// The capability catalog: ls, publish.
    Capability(cli_policy::CapabilityArgs),
    /// Kill switches: set, clear, ls.
    KillSwitch(cli_killswitch::KillSwitchArgs),
    /// Secrets of a running daemon: set (value from stdin or a file), ls, get, rm.
    Secret(cli_secret::SecretArgs),
    /// MCP over stdio for local agents, bridged to the daemon's /mcp (see docs/mcp.md).
    Mcp(cli_mcp::McpArgs),
    /// Approval requests of capability calls: ls, show, approve, deny (operator).
    Approvals(cli_approvals::ApprovalsArgs),
    /// The hash-chained audit log: verify, export --task, ls.
    Audit(cli_audit::AuditArgs),
}

pub(crate) use common::EXIT_CORRAL_ERROR;
use common::{ensure_std_fds, json_requested, run_alone, usage_error};

fn main() -> ExitCode {
    ensure_std_fds();
    panics::install();
    panics::guard(json_requested(), dispatch)
}

/// Runs what the command line asks for.
fn dispatch() -> ExitCode {
    // `corral __spawn`: the daemon's single-threaded sandbox builder (docs/daemon.md).
    // Internal, so not a clap subcommand: it reads JSON on stdin and is never typed.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__spawn") {
        return ExitCode::from(corral_sandbox::spawn_main().clamp(0, 255) as u8);
    }
    // `corral __build`: the daemon's single-threaded template builder (recipes' RUN,
    // with egress to the hosts a recipe names through a `corral __egress` helper).
    if std::env::args_os().nth(1).is_some_and(|a| a == "__build") {
        // The daemon's `[network] resolve` map comes with the job.
        let egress = |resolve| {
            std::sync::Arc::new(build_egress::BuildEgress { resolve })
                as std::sync::Arc<dyn corral_sandbox::BuildNetwork>
        };
        return ExitCode::from(corral_sandbox::build_main(egress).clamp(0, 255) as u8);
    }
    // `corral __egress`: the egress proxy of one `corral run --net allow=...`.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__egress") {
        return ExitCode::from(egress_helper::helper_main());
    }
    // `corral run` parses only its own options: clap building the whole command tree
    // (every subcommand's arguments) is a measurable part of a one-shot start.
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        return run_alone();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match cli.command {
        Command::Run(args) => cli_run::main(args),
        // The runtimes live inside these: `corral run` stays single-threaded.
        Command::Serve(args) => cli_serve::main(args),
        Command::Sandbox(args) => cli_sandbox::main(args),
        Command::Template(args) => cli_template::main(args),
        Command::Key(args) => cli_key::key_main(args),
        Command::Tenant(args) => cli_key::tenant_main(args),
        Command::Policy(args) => cli_policy::main(args),
        Command::Capability(args) => cli_policy::capability_main(args),
        Command::KillSwitch(args) => cli_killswitch::main(args),
        Command::Secret(args) => cli_secret::main(args),
        Command::Mcp(args) => cli_mcp::main(args),
        Command::Approvals(args) => cli_approvals::main(args),
        Command::Audit(args) => cli_audit::main(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// What clap answers for these arguments after `corral run`: through the whole tree
    /// and through [`common::run_command`].
    fn both(args: &[&str]) -> (String, String) {
        let render = |r: Result<(), clap::Error>| match r {
            Ok(()) => "parsed".to_string(),
            Err(e) => format!("{:?}: {}", e.kind(), e.render()),
        };
        let full = Cli::try_parse_from(["corral", "run"].iter().chain(args)).map(|_| ());
        let alone = common::run_command()
            .try_get_matches_from(["corral run"].iter().chain(args))
            .and_then(|m| <cli_run::RunArgs as clap::FromArgMatches>::from_arg_matches(&m))
            .map(|_| ());
        (render(full), render(alone))
    }

    #[test]
    fn run_alone_parses_helps_and_fails_like_the_run_subcommand() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["--memory"],
            &["--memory", "lots", "--", "true"],
            &["--bogus", "--", "true"],
            &[],
            &["--net", "open", "--", "true"],
            &["--", "true"],
        ] {
            let (full, alone) = both(args);
            assert_eq!(full, alone, "corral run {args:?}");
        }
        assert!(both(&["--help"]).0.contains("Run a command in a fresh"));
    }
}

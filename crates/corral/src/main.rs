//! corral: a self-hosted, governed sandbox for AI agents.

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

/// Exit status when corral itself fails (as opposed to the command).
const EXIT_CORRAL_ERROR: u8 = 125;

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
            std::sync::Arc::new(cli_egress::BuildEgress { resolve })
                as std::sync::Arc<dyn corral_sandbox::BuildNetwork>
        };
        return ExitCode::from(corral_sandbox::build_main(egress).clamp(0, 255) as u8);
    }
    // `corral __egress`: the egress proxy of one `corral run --net allow=...`.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__egress") {
        return ExitCode::from(cli_egress::helper_main());
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

/// `corral run ...` parsed as if it were the whole command line: the same options,
/// help and errors as the `run` subcommand of [`Cli`] (a test checks they match).
fn run_alone() -> ExitCode {
    use clap::FromArgMatches;
    let args =
        std::iter::once(std::ffi::OsString::from("corral run")).chain(std::env::args_os().skip(2));
    match run_command()
        .try_get_matches_from(args)
        .and_then(|m| cli_run::RunArgs::from_arg_matches(&m))
    {
        Ok(args) => cli_run::main(args),
        Err(e) => usage_error(&e),
    }
}

/// The `run` subcommand on its own.
fn run_command() -> clap::Command {
    use clap::Args;
    // The about after the arguments: RunArgs' own doc comment would win otherwise.
    cli_run::RunArgs::augment_args(clap::Command::new("run").bin_name("corral run"))
        .about(RUN_ABOUT)
        .long_about(None)
}

/// `corral run`'s one-line help (the doc comment of [`Command::Run`], as clap shows it).
const RUN_ABOUT: &str = "Run a command in a fresh, fully isolated sandbox and remove it afterwards";

/// Prints clap's help/version as usual; any other parse error becomes one line on
/// stderr and exit 125.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let message = match e.kind() {
                ErrorKind::MissingRequiredArgument if missing_command() => {
                    "missing CMD: put the command after --, e.g. corral run -- python3 -V"
                        .to_string()
                }
                _ => {
                    // clap's text up to its usage block, on one line.
                    let rendered = e.render().to_string();
                    let text: Vec<&str> = rendered
                        .lines()
                        .map(str::trim)
                        .take_while(|l| {
                            !l.starts_with("Usage:")
                                && !l.starts_with("tip:")
                                && !l.starts_with("For more information")
                        })
                        .filter(|l| !l.is_empty())
                        .collect();
                    let text = text.join(" ");
                    let text = text.trim_start_matches("error: ");
                    format!(
                        "{}; see 'corral --help'",
                        if text.is_empty() {
                            "invalid arguments"
                        } else {
                            text
                        }
                    )
                }
            };
            eprintln!("corral: {message}");
            if json_requested() {
                let body = corral_types::ErrorBody::new("invalid_argument", message);
                if let Ok(s) = serde_json::to_string(&body) {
                    println!("{s}");
                }
            }
            ExitCode::from(EXIT_CORRAL_ERROR)
        }
    }
}

/// Whether a `corral run` has nothing after its `--` (or no `--` at all).
fn missing_command() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("run") {
        return false;
    }
    match args.iter().position(|a| a == "--") {
        Some(i) => i + 1 == args.len(),
        None => true,
    }
}

/// Whether `--json` was given to corral itself (before the `--` that starts the
/// command), so even a usage error is answered with a JSON object.
fn json_requested() -> bool {
    std::env::args()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Makes sure fds 0-2 are open (to /dev/null if the caller closed them), so no file
/// corral opens later can land on a standard stream number.
fn ensure_std_fds() {
    for fd in 0..3 {
        if nix_fd_is_closed(fd) {
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                // The lowest free number is taken: this is `fd`.
                std::mem::forget(f);
            }
        }
    }
}

fn nix_fd_is_closed(fd: i32) -> bool {
    !std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// What clap answers for these arguments after `corral run`: through the whole tree
    /// and through [`run_command`].
    fn both(args: &[&str]) -> (String, String) {
        let render = |r: Result<(), clap::Error>| match r {
            Ok(()) => "parsed".to_string(),
            Err(e) => format!("{:?}: {}", e.kind(), e.render()),
        };
        let full = Cli::try_parse_from(["corral", "run"].iter().chain(args)).map(|_| ());
        let alone = run_command()
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

//! What both binaries share: `corral run`'s own parser, clap errors as one line,
//! and the process set-up every corral process starts with.

use std::process::ExitCode;

use crate::cli_run;

/// Exit status when corral itself fails (as opposed to the command).
pub(crate) const EXIT_CORRAL_ERROR: u8 = 125;

/// `corral run ...` parsed as if it were the whole command line: the same options,
/// help and errors as the `run` subcommand of corral-full's `Cli` (a test there checks
/// they match).
pub(crate) fn run_alone() -> ExitCode {
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
pub(crate) fn run_command() -> clap::Command {
    use clap::Args;
    // The about after the arguments: RunArgs' own doc comment would win otherwise.
    cli_run::RunArgs::augment_args(clap::Command::new("run").bin_name("corral run"))
        .about(RUN_ABOUT)
        .long_about(None)
}

/// `corral run`'s one-line help (the doc comment of corral-full's `Command::Run`, as
/// clap shows it).
const RUN_ABOUT: &str = "Run a command in a fresh, fully isolated sandbox and remove it afterwards";

/// Prints clap's help/version as usual; any other parse error becomes one line on
/// stderr and exit 125.
pub(crate) fn usage_error(e: &clap::Error) -> ExitCode {
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
pub(crate) fn json_requested() -> bool {
    std::env::args()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Makes sure fds 0-2 are open (to /dev/null if the caller closed them), so no file
/// corral opens later can land on a standard stream number.
pub(crate) fn ensure_std_fds() {
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

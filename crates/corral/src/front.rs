//! corral: a self-hosted, governed sandbox for AI agents.
//!
//! This binary is the front door and runs `corral run` itself: a one-shot sandbox
//! starts from a binary that holds only the isolation runtime, because the dynamic loader's and the kernel's work before `main`
//! grows with the binary (BENCHMARKS.md, "Reading the one-shot figures"). Every other
//! command line (the daemon, its clients, governance, templates, `--help`) is handed,
//! unchanged, to `corral-full`, installed next to this binary.

mod cli_egress;
mod cli_run;
mod common;
mod panics;
mod paths;

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

pub(crate) use common::EXIT_CORRAL_ERROR;
use common::{ensure_std_fds, json_requested, run_alone};

fn main() -> ExitCode {
    ensure_std_fds();
    panics::install();
    panics::guard(json_requested(), dispatch)
}

fn dispatch() -> ExitCode {
    match std::env::args_os().nth(1) {
        Some(a) if a == "run" => run_alone(),
        // Everything else, `corral __egress` (the egress proxy a `--net allow` run
        // starts) included: its proxy (tokio, hyper, rustls) stays out of this binary.
        _ => exec_full(),
    }
}

/// The name of the binary that serves every other command.
const FULL: &str = "corral-full";

/// Replaces this process with `corral-full` and the same arguments (argv[0] kept, so
/// help and errors still say `corral`); returns only if that fails.
fn exec_full() -> ExitCode {
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL),
        Err(e) => {
            eprintln!("corral: cannot find its own binary to start {FULL} next to it: {e}");
            return ExitCode::from(EXIT_CORRAL_ERROR);
        }
    };
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "corral".into());
    let err = std::process::Command::new(&full)
        .arg0(argv0)
        .args(args)
        .exec();
    eprintln!(
        "corral: cannot start {}: {err}; {FULL} is part of corral and must be installed \
         next to it (cargo build --release builds both into target/release)",
        full.display()
    );
    ExitCode::from(EXIT_CORRAL_ERROR)
}

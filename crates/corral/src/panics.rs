//! What a panic (always a bug in corral) does. The release build unwinds (the root
//! Cargo.toml says why), so:
//! - on a runtime thread, a panic ends only the task it happened in: one request
//!   (answered with a JSON 500, see corral-server's `catch_panics`), one proxied
//!   connection (closed), one spawned job. The daemon, its sandboxes, its proxy and its
//!   other requests go on, and the panicking task's cleanup guards run as it unwinds;
//! - on one of corral's own long-lived threads ([`VITAL`]: the egress audit recorder,
//!   the catalog watcher, the WAL checkpointer), the process stops at once: that
//!   thread's job, such as recording every egress decision, would otherwise stop
//!   silently, and corral fails closed;
//! - on a command's main thread ([`guard`]): the command ends with exit status 125,
//!   corral's own-error status, after its cleanup guards have run.
//!
//! Every panic is reported as one line on stderr (no Rust dump), saying it is a bug,
//! where, and on which thread; `RUST_BACKTRACE=1` adds a backtrace for a bug report.

use std::any::Any;
use std::panic::{self, PanicHookInfo};
use std::process::ExitCode;

/// Installs the hook (once, first thing in `main`).
pub(crate) fn install() {
    panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        eprintln!("{}", report(info, name));
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
        if stops_process(name) {
            eprintln!(
                "corral: stopping: thread {name} cannot be replaced while the process runs; \
                 restart corral"
            );
            std::process::abort();
        }
    }));
}

/// Runs a command's main function; a panic that reaches it becomes exit status 125
/// (and, when `--json` was asked for, a JSON error on stdout).
pub(crate) fn guard(json: bool, main: impl FnOnce() -> ExitCode) -> ExitCode {
    match panic::catch_unwind(panic::AssertUnwindSafe(main)) {
        Ok(code) => code,
        Err(_) => {
            if json {
                let body = corral_types::ErrorBody::new(
                    "internal",
                    "corral failed internally (a bug); stderr has the details",
                );
                if let Ok(s) = serde_json::to_string(&body) {
                    println!("{s}");
                }
            }
            ExitCode::from(crate::EXIT_CORRAL_ERROR)
        }
    }
}

/// The threads that run for the whole life of the process doing a job nothing else
/// does; a short-lived helper thread (`corral-port`) only fails its one caller.
const VITAL: [&str; 3] = ["corral-egress-audit", "corral-catalog", "corral-wal"];

/// Whether a panic on the thread `name` must stop the whole process.
fn stops_process(name: &str) -> bool {
    VITAL.contains(&name)
}

fn report(info: &PanicHookInfo<'_>, thread: &str) -> String {
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    format!(
        "corral: internal error (a bug in corral; please report it): {}{at}, thread {thread}",
        message(info.payload())
    )
}

/// A panic's message: the `&str` or `String` that `panic!` was given.
fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_command_is_exit_125_and_a_normal_return_passes_through() {
        assert_eq!(guard(false, || ExitCode::from(3)), ExitCode::from(3));
        // The default hook prints this panic: the test harness captures it.
        let code = guard(false, || panic!("a bug"));
        assert_eq!(code, ExitCode::from(125));
    }

    #[test]
    fn only_corral_s_own_threads_stop_the_process() {
        for name in ["corral-egress-audit", "corral-catalog", "corral-wal"] {
            assert!(stops_process(name), "{name}");
        }
        for name in ["tokio-runtime-worker", "main", "unnamed", "corral-port"] {
            assert!(!stops_process(name), "{name}");
        }
    }

    #[test]
    fn the_message_is_taken_from_either_payload_kind() {
        let s: Box<dyn Any + Send> = Box::new("static text");
        assert_eq!(message(s.as_ref()), "static text");
        let s: Box<dyn Any + Send> = Box::new(format!("formatted {}", 7));
        assert_eq!(message(s.as_ref()), "formatted 7");
        let s: Box<dyn Any + Send> = Box::new(7u8);
        assert_eq!(message(s.as_ref()), "(no message)");
    }
}

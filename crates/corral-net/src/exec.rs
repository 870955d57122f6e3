//! The seam in front of the kernel: every change is a run of `ip` or `nft`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::NetError;

/// Runs a helper program with arguments and optional standard input; returns its
/// standard output.
pub trait Exec: Send + Sync + std::fmt::Debug {
    /// Runs `program args...`, feeding `stdin`; `what` names the step for errors.
    fn run(
        &self,
        what: &str,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, NetError>;
}

/// Runs the real programs, looked up in the system directories (not PATH: the daemon
/// may run with an empty environment).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealExec;

fn locate(program: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = format!("{dir}/{program}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    program.to_string()
}

impl Exec for RealExec {
    fn run(
        &self,
        what: &str,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, NetError> {
        let spawn_err = |source| NetError::Spawn {
            program: program.to_string(),
            source,
        };
        let mut child = Command::new(locate(program))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            return Err(NetError::Command {
                what: what.to_string(),
                program: program.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
pub(crate) mod fake {
    use std::sync::Mutex;

    use super::*;

    /// Records every call; answers `ip -o link show` with `links`.
    #[derive(Debug, Default)]
    pub(crate) struct Recorder {
        pub calls: Mutex<Vec<String>>,
        pub links: String,
    }

    impl Exec for Recorder {
        fn run(
            &self,
            _what: &str,
            program: &str,
            args: &[&str],
            stdin: Option<&str>,
        ) -> Result<String, NetError> {
            let mut line = format!("{program} {}", args.join(" "));
            if let Some(s) = stdin {
                line.push_str(" <<\n");
                line.push_str(s);
            }
            self.calls.lock().unwrap().push(line);
            if args.first() == Some(&"-o") {
                return Ok(self.links.clone());
            }
            Ok(String::new())
        }
    }

    /// A shared recorder, so a test keeps a handle on the calls.
    impl Exec for std::sync::Arc<Recorder> {
        fn run(
            &self,
            what: &str,
            program: &str,
            args: &[&str],
            stdin: Option<&str>,
        ) -> Result<String, NetError> {
            self.as_ref().run(what, program, args, stdin)
        }
    }
}

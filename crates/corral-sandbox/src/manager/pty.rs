//! Interactive terminals: init opens a pty inside the sandbox and hands the daemon
//! its master side.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use corral_isolate::ctl::{CtlOp, CtlReply, Stdio};
use corral_types::RunResult;
use tokio::sync::{mpsc, oneshot};

use super::live::Live;
use super::{PtyInput, PtyRequest, PtySession, SandboxError};
use crate::templates::ImageDefaults;

/// Opens a terminal running `req.cmd` with the template's defaults (`image`) under the
/// request's env and cwd (see exec::effective); it runs as the template's user, else
/// `sandbox`.
pub(crate) async fn open(
    l: Arc<Live>,
    req: PtyRequest,
    image: &ImageDefaults,
) -> Result<PtySession, SandboxError> {
    let argv = if req.cmd.is_empty() {
        vec!["/bin/bash".to_string(), "-l".to_string()]
    } else {
        req.cmd.clone()
    };
    super::exec::check_env(&req.env)?;
    if let Some(cwd) = &req.cwd {
        super::files::check_path(cwd)?;
    }
    let mut env_extra = req.env.clone();
    env_extra
        .entry("TERM".into())
        .or_insert_with(|| "xterm-256color".into());
    let e = super::exec::effective(image, &l.row().env, None, req.cwd.as_deref(), &env_extra);
    let (user, env, cwd, from_template) = (e.user, e.env, e.cwd, e.cwd_from_template);
    let exec_id = l.exec_id();
    let exit = l.conn.expect_exit(exec_id);
    let rows = if req.rows == 0 { 24 } else { req.rows };
    let cols = if req.cols == 0 { 80 } else { req.cols };
    let began = Instant::now();
    let reply = l
        .conn
        .call(
            CtlOp::Exec {
                id: exec_id,
                argv,
                env,
                cwd: cwd.clone(),
                user,
                stdio: Stdio::Pty { rows, cols },
            },
            &[],
        )
        .await;
    let master: OwnedFd = match reply {
        Ok((CtlReply::Started { .. }, mut fds)) => match fds.pop() {
            Some(fd) => fd,
            None => {
                return Err(SandboxError::Internal(
                    "the sandbox started a terminal but sent no terminal".into(),
                ))
            }
        },
        Ok((other, _)) => {
            l.conn.forget_exit(exec_id);
            return Err(SandboxError::Internal(format!(
                "the sandbox answered a terminal request with {other:?}"
            )));
        }
        Err(e) => {
            l.conn.forget_exit(exec_id);
            return Err(super::exec::start_error(e, cwd.as_deref(), from_template));
        }
    };
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| SandboxError::Internal(format!("configuring the terminal: {e}")))?;
    let afd = Arc::new(
        super::conn::register(master)
            .map_err(|e| SandboxError::Internal(format!("watching the terminal: {e}")))?,
    );
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(64);
    let (in_tx, mut in_rx) = mpsc::channel::<PtyInput>(64);
    let (exit_tx, exit_rx) = oneshot::channel::<RunResult>();
    // Output pump: ends at EIO (every slave closed) or when nobody listens.
    let reader = afd.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let Ok(mut g) = reader.readable().await else {
                break;
            };
            match g.try_io(|fd| {
                nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    if out_tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
                Err(_would_block) => continue,
            }
        }
    });
    // Input pump and resizes.
    let writer = afd.clone();
    let lin = l.clone();
    tokio::spawn(async move {
        while let Some(msg) = in_rx.recv().await {
            match msg {
                PtyInput::Data(mut data) => {
                    while !data.is_empty() {
                        let Ok(mut g) = writer.writable().await else {
                            return;
                        };
                        match g.try_io(|fd| {
                            nix::unistd::write(fd.get_ref(), &data).map_err(std::io::Error::from)
                        }) {
                            Ok(Ok(n)) => {
                                data.drain(..n);
                            }
                            Ok(Err(_)) => return,
                            Err(_would_block) => continue,
                        }
                    }
                }
                PtyInput::Resize { rows, cols } => {
                    let _ = lin
                        .conn
                        .call(
                            CtlOp::Resize {
                                id: exec_id,
                                rows,
                                cols,
                            },
                            &[],
                        )
                        .await;
                }
            }
        }
        // Input closed: hang the terminal up.
        let _ = lin
            .conn
            .call(
                CtlOp::Signal {
                    id: exec_id,
                    signal: 1,
                },
                &[],
            )
            .await;
    });
    tokio::spawn(async move {
        let status = exit.await.ok();
        let (code, sig) = match status {
            Some(e) if e.status & 0x7f == 0 => ((e.status >> 8) & 0xff, None),
            Some(e) => (128 + (e.status & 0x7f), Some(e.status & 0x7f)),
            None => (137, Some(9)),
        };
        let _ = exit_tx.send(RunResult {
            exit_code: code,
            signal: sig,
            timed_out: false,
            oom_killed: false,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: began.elapsed().as_millis() as u64,
            peak_memory_bytes: None,
            cpu_time_ms: status.map(|e| e.cpu_us / 1000).unwrap_or(0),
        });
    });
    Ok(PtySession {
        process_id: super::procs::process_id(exec_id),
        output: out_rx,
        input: in_tx,
        exit: exit_rx,
    })
}

//! The daemon's end of one sandbox's control socket (the ctl protocol of
//! docs/daemon.md): requests matched to replies by `req`, exit events routed to
//! whoever waits for that process, and a signal when the socket closes (init is gone).

use std::collections::HashMap;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_isolate::ctl::{CtlConn, CtlErrorKind, CtlMessage, CtlOp, CtlReply, CtlRequest};
use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, watch};

use super::SandboxError;

/// A process's end, as init reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exited {
    /// Raw wait status.
    pub status: i32,
    /// CPU time of the process and its reaped children, microseconds.
    pub cpu_us: u64,
}

type Reply = (CtlReply, Vec<OwnedFd>);

#[derive(Debug, Default)]
struct Waiters {
    replies: HashMap<u64, oneshot::Sender<Reply>>,
    exits: HashMap<u64, oneshot::Sender<Exited>>,
    /// Exits that arrived with nobody waiting (a process started before a restart).
    unclaimed: HashMap<u64, Exited>,
}

/// One open control connection.
#[derive(Debug)]
pub(crate) struct Conn {
    fd: AsyncFd<CtlConn>,
    next_req: AtomicU64,
    waiters: Mutex<Waiters>,
    closed: AtomicBool,
    closed_tx: watch::Sender<bool>,
}

/// How long a request may wait for its reply. File operations on huge trees can be
/// slow; nothing legitimate takes this long.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl Conn {
    /// Connects to init's socket and starts the reader task.
    pub(crate) fn connect(path: &Path) -> io::Result<Arc<Conn>> {
        let conn = CtlConn::connect(path)?;
        let (closed_tx, _) = watch::channel(false);
        let c = Arc::new(Conn {
            fd: register(conn)?,
            next_req: AtomicU64::new(1),
            waiters: Mutex::new(Waiters::default()),
            closed: AtomicBool::new(false),
            closed_tx,
        });
        tokio::spawn(reader(c.clone()));
        Ok(c)
    }

    /// Whether the socket has closed (init exited or was killed).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the socket has closed.
    pub(crate) async fn closed(&self) {
        let mut rx = self.closed_tx.subscribe();
        if self.is_closed() {
            return;
        }
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Registers interest in process `id`'s exit. Call before starting it.
    pub(crate) fn expect_exit(&self, id: u64) -> oneshot::Receiver<Exited> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            if let Some(e) = w.unclaimed.remove(&id) {
                let _ = tx.send(e);
            } else {
                w.exits.insert(id, tx);
            }
        }
        rx
    }

    /// Forgets interest in process `id`'s exit.
    pub(crate) fn forget_exit(&self, id: u64) {
        if let Ok(mut w) = self.waiters.lock() {
            w.exits.remove(&id);
            w.unclaimed.remove(&id);
        }
    }

    /// Sends a request and waits for its reply. An `error` reply becomes a
    /// SandboxError (see [`ctl_error`]).
    pub(crate) async fn call(
        &self,
        op: CtlOp,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Reply, SandboxError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .map_err(|_| SandboxError::Internal("control connection lock poisoned".into()))?
            .replies
            .insert(req, tx);
        let msg = CtlRequest { req, op };
        if let Err(e) = self.send(&msg, fds).await {
            if let Ok(mut w) = self.waiters.lock() {
                w.replies.remove(&req);
            }
            return Err(gone(e));
        }
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok((
                CtlReply::Error {
                    kind,
                    errno,
                    message,
                },
                _,
            ))) => Err(ctl_error(kind, errno, &message)),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(SandboxError::Unavailable(
                "the sandbox stopped while handling the request".into(),
            )),
            Err(_) => {
                if let Ok(mut w) = self.waiters.lock() {
                    w.replies.remove(&req);
                }
                Err(SandboxError::Unavailable(
                    "the sandbox did not answer within 120 s".into(),
                ))
            }
        }
    }

    async fn send(&self, msg: &CtlRequest, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        if self.is_closed() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| inner.get_ref().send(msg, fds)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    fn route(&self, msg: CtlMessage, fds: Vec<OwnedFd>) {
        let Ok(mut w) = self.waiters.lock() else {
            return;
        };
        match msg {
            CtlMessage::Reply { req, reply } => {
                if let Some(tx) = w.replies.remove(&req) {
                    let _ = tx.send((reply, fds));
                }
            }
            CtlMessage::Exited { id, status, cpu_us } => {
                let e = Exited { status, cpu_us };
                match w.exits.remove(&id) {
                    Some(tx) => {
                        let _ = tx.send(e);
                    }
                    None => {
                        // Bounded: a daemon that never asks keeps at most this many.
                        if w.unclaimed.len() < 4096 {
                            w.unclaimed.insert(id, e);
                        }
                    }
                }
            }
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut w) = self.waiters.lock() {
            // Dropping the senders wakes every waiter with an error.
            w.replies.clear();
            w.exits.clear();
        }
        let _ = self.closed_tx.send(true);
    }
}

async fn reader(c: Arc<Conn>) {
    loop {
        let mut guard = match c.fd.readable().await {
            Ok(g) => g,
            Err(_) => break,
        };
        match guard.try_io(|inner| inner.get_ref().recv()) {
            Ok(Ok((msg, fds))) => c.route(msg, fds),
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                tracing_warn(&format!("ignoring a malformed control message: {e}"));
            }
            Ok(Err(_)) => break,
            Err(_would_block) => continue,
        }
    }
    c.close();
}

fn tracing_warn(msg: &str) {
    eprintln!("corral: warning: {msg}");
}

fn gone(e: io::Error) -> SandboxError {
    SandboxError::Unavailable(format!(
        "the sandbox is not reachable ({e}); it may have stopped"
    ))
}

/// An `error` reply as a SandboxError.
pub(crate) fn ctl_error(kind: CtlErrorKind, errno: i32, message: &str) -> SandboxError {
    let _ = errno;
    let m = message.to_string();
    match kind {
        CtlErrorKind::NotFound => SandboxError::NotFound(m),
        CtlErrorKind::PermissionDenied => SandboxError::PermissionDenied(m),
        CtlErrorKind::Exists => SandboxError::Conflict(m),
        CtlErrorKind::NoSpace => SandboxError::NoSpace(m),
        CtlErrorKind::NotADirectory | CtlErrorKind::IsADirectory | CtlErrorKind::Invalid => {
            SandboxError::InvalidRequest(m)
        }
        CtlErrorKind::Failed => SandboxError::Internal(m),
    }
}

/// Registers a descriptor-owning value with tokio's reactor. `AsyncFd::new` is
/// deprecated because a `T` could close or swap its fd behind tokio's back; every `T`
/// used here (OwnedFd, CtlConn) owns exactly one fd for its whole life and never
/// replaces it, which is the invariant `AsyncFd::register` asks for. Using the safe,
/// deprecated constructor keeps this crate free of `unsafe` (only corral-isolate may
/// have it).
#[allow(deprecated)]
pub(crate) fn register<T: std::os::fd::AsRawFd>(t: T) -> io::Result<AsyncFd<T>> {
    AsyncFd::new(t)
}

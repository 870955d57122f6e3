//! The ctl protocol between corral's daemon and a session sandbox's init
//! (docs/daemon.md, "The ctl protocol"): serde types, the packet codec both ends use,
//! and [`CtlConn`], the daemon's (client) end.
//!
//! Transport: a `SOCK_SEQPACKET` unix socket, one JSON message per packet (at most
//! [`MAX_MESSAGE`] bytes), file descriptors attached as `SCM_RIGHTS`. Enums are
//! externally tagged, snake_case: `{"req":1,"op":{"exec":{...}}}`, `{"req":2,"op":"ping"}`,
//! `{"reply":{"req":1,"reply":{"started":{"id":7,"pid":3}}}}`,
//! `{"exited":{"id":7,"status":0,"cpu_us":1200}}`.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr,
};
use serde::{Deserialize, Serialize};

use crate::spec::SandboxUser;

/// Largest message (JSON bytes in one packet).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Most file descriptors one message carries (exec with pipes sends three).
pub const MAX_FDS: usize = 8;

/// A request: `req` is chosen by the client and echoed in the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtlRequest {
    /// Correlation id.
    pub req: u64,
    /// What to do.
    pub op: CtlOp,
}

/// Standard streams of a started process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stdio {
    /// stdin, stdout, stderr are the three fds sent with the request, in that order.
    Pipes,
    /// A new pseudo-terminal of this size; its master comes back with `started`.
    Pty {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
}

/// How `open` opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenAccess {
    /// O_RDONLY.
    Read,
    /// O_WRONLY | O_CREAT | O_TRUNC.
    Create,
    /// O_WRONLY | O_CREAT | O_APPEND.
    Append,
}

/// The operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlOp {
    /// Start a process (`id` is the client's name for it, used by signal/resize/exited).
    Exec {
        /// Client-chosen process id, unique among running processes.
        id: u64,
        /// Command and arguments; argv[0] is looked up in env's PATH.
        argv: Vec<String>,
        /// The complete environment.
        env: Vec<(String, String)>,
        /// Working directory (default: the user's home).
        cwd: Option<String>,
        /// Identity.
        user: SandboxUser,
        /// Standard streams.
        stdio: Stdio,
    },
    /// Send a signal to a started process's process group.
    Signal {
        /// The process.
        id: u64,
        /// Signal number.
        signal: i32,
    },
    /// Resize a started process's terminal.
    Resize {
        /// The process.
        id: u64,
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Open a regular file; the fd comes back with `opened`.
    Open {
        /// Path inside the sandbox.
        path: String,
        /// Access mode.
        access: OpenAccess,
        /// Permission bits for a created file.
        mode: u32,
        /// Identity the open runs as.
        user: SandboxUser,
    },
    /// lstat a path.
    Stat {
        /// Path.
        path: String,
        /// Identity.
        user: SandboxUser,
    },
    /// List a directory (sorted by name, symlinks not followed).
    List {
        /// Path.
        path: String,
        /// Identity.
        user: SandboxUser,
        /// Most entries returned.
        limit: u32,
    },
    /// Create a directory.
    Mkdir {
        /// Path.
        path: String,
        /// Create missing parents too (an existing directory is then no error).
        parents: bool,
        /// Permission bits.
        mode: u32,
        /// Identity.
        user: SandboxUser,
    },
    /// Remove a file or (empty, or with `recursive` any) directory.
    Remove {
        /// Path.
        path: String,
        /// Remove a directory's contents too (symlinks are removed, never followed).
        recursive: bool,
        /// Identity.
        user: SandboxUser,
    },
    /// rename(2).
    Rename {
        /// Old path.
        from: String,
        /// New path.
        to: String,
        /// Identity.
        user: SandboxUser,
    },
    /// Watch a directory with inotify; the inotify fd comes back with `watching`.
    Watch {
        /// Directory.
        path: String,
        /// Watch existing subdirectories too (at most 1000).
        recursive: bool,
        /// Identity.
        user: SandboxUser,
    },
    /// Replace init's deadline (None: no deadline).
    SetDeadline {
        /// ms since the Unix epoch.
        unix_ms: Option<u64>,
    },
    /// An O_PATH fd of the writable layer's upper directory comes back with `opened`.
    UpperDir,
    /// Kill every process and exit (after the `ok` reply).
    Shutdown,
    /// Liveness check.
    Ping,
}

/// What init sends: replies and events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlMessage {
    /// The answer to request `req`.
    Reply {
        /// The request's id.
        req: u64,
        /// The answer.
        reply: CtlReply,
    },
    /// A started process ended.
    Exited {
        /// The client's process id.
        id: u64,
        /// Raw wait status (as waitpid reports it).
        status: i32,
        /// User + system CPU time of the process and its waited-for children, µs.
        cpu_us: u64,
    },
}

/// Replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlReply {
    /// Done.
    Ok,
    /// Answer to ping.
    Pong,
    /// The process runs (pid inside the sandbox's pid namespace).
    Started {
        /// The client's process id.
        id: u64,
        /// pid in the sandbox.
        pid: i32,
    },
    /// The fd is attached.
    Opened,
    /// lstat result.
    Stat {
        /// The entry.
        entry: CtlEntry,
    },
    /// Directory listing.
    Listing {
        /// Entries, sorted by name.
        entries: Vec<CtlEntry>,
        /// More entries existed than were returned.
        truncated: bool,
    },
    /// The inotify fd is attached; watch descriptors and their paths.
    Watching {
        /// (wd, path inside the sandbox).
        watches: Vec<(i32, String)>,
    },
    /// The request failed.
    Error {
        /// Category.
        kind: CtlErrorKind,
        /// errno, 0 when none applies.
        errno: i32,
        /// Human-readable message.
        message: String,
    },
}

/// Error categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlErrorKind {
    /// ENOENT, or an unknown process id.
    NotFound,
    /// EACCES, EPERM.
    PermissionDenied,
    /// EEXIST.
    Exists,
    /// ENOTDIR.
    NotADirectory,
    /// EISDIR.
    IsADirectory,
    /// A malformed request, or an operation that does not apply (e.g. opening a fifo).
    Invalid,
    /// ENOSPC, EDQUOT, EFBIG.
    NoSpace,
    /// Anything else.
    Failed,
}

impl CtlErrorKind {
    /// The category of an errno.
    pub fn from_errno(errno: i32) -> CtlErrorKind {
        match errno {
            libc::ENOENT | libc::ESRCH => CtlErrorKind::NotFound,
            libc::EACCES | libc::EPERM | libc::EROFS => CtlErrorKind::PermissionDenied,
            libc::EEXIST => CtlErrorKind::Exists,
            libc::ENOTDIR => CtlErrorKind::NotADirectory,
            libc::EISDIR => CtlErrorKind::IsADirectory,
            libc::EINVAL
            | libc::ELOOP
            | libc::ENAMETOOLONG
            | libc::ENXIO
            | libc::ENOTEMPTY
            | libc::EXDEV => CtlErrorKind::Invalid,
            libc::ENOSPC | libc::EDQUOT | libc::EFBIG => CtlErrorKind::NoSpace,
            _ => CtlErrorKind::Failed,
        }
    }
}

/// A directory entry or stat result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtlEntry {
    /// File name (the last path component for stat).
    pub name: String,
    /// Type.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (07777).
    pub mode: u32,
    /// Modification time, ns since the Unix epoch.
    pub mtime_unix_ns: i64,
    /// Owner inside the sandbox.
    pub uid: u32,
    /// Group inside the sandbox.
    pub gid: u32,
    /// Where a symlink points.
    pub symlink_target: Option<String>,
}

/// File types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

fn nix_io(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Makes a socket's send buffer large enough for a [`MAX_MESSAGE`] packet (the
/// default, net.core.wmem_default, is below it; the kernel doubles the value set).
pub(crate) fn size_send_buffer(fd: BorrowedFd<'_>) {
    let _ = setsockopt(&fd, sockopt::SndBuf, &(MAX_MESSAGE + 64 * 1024));
}

/// Sends one packet with `fds` attached.
pub(crate) fn send_packet(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<UnixAddr>(
            fd.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(nix_io(e)),
        }
    }
}

/// Receives one packet into `buf`; returns its length and the fds that came with it
/// (wrapped at once, so none leaks whatever happens next). Ok(None): the peer closed.
pub(crate) fn recv_packet(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let res = recvmsg::<UnixAddr>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        );
        let msg = match res {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(nix_io(e)),
        };
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    for r in raw {
                        // SAFETY: the kernel just installed this descriptor in our
                        // table for this message; nothing else refers to it.
                        #[allow(unsafe_code)]
                        fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                    }
                }
            }
        }
        let truncated = msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        let len = msg.bytes;
        if len == 0 && fds.is_empty() {
            return Ok(None);
        }
        if truncated {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "ctl message larger than 256 KiB or with too many fds",
            ));
        }
        return Ok(Some((len, fds)));
    }
}

/// Binds the listening end of a control socket at `path` (`SOCK_SEQPACKET`,
/// close-on-exec), for [`crate::start_session`]. A plain `UnixListener::bind` would
/// make a stream socket, which the protocol does not speak.
pub fn listen(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(nix_io)?;
    let addr = UnixAddr::new(path.as_os_str().as_bytes()).map_err(nix_io)?;
    bind(fd.as_raw_fd(), &addr).map_err(nix_io)?;
    listen(&fd, Backlog::new(8).map_err(nix_io)?).map_err(nix_io)?;
    Ok(std::os::unix::net::UnixListener::from(fd))
}

/// The client end of a sandbox's control socket. Non-blocking: `send` and `recv`
/// answer `WouldBlock` when the socket is full or empty (wrap it in tokio's `AsyncFd`).
#[derive(Debug)]
pub struct CtlConn {
    fd: OwnedFd,
}

impl CtlConn {
    /// Connects to the socket at `path` (blocking), then switches to non-blocking.
    pub fn connect(path: &Path) -> io::Result<CtlConn> {
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType};
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(nix_io)?;
        let addr = UnixAddr::new(path.as_os_str().as_bytes()).map_err(nix_io)?;
        loop {
            match connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(nix_io(e)),
            }
        }
        size_send_buffer(fd.as_fd());
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).map_err(nix_io)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(nix_io)?;
        Ok(CtlConn { fd })
    }

    /// Sends a request with `fds` attached.
    pub fn send(&self, req: &CtlRequest, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let bytes = serde_json::to_vec(req).map_err(io::Error::other)?;
        if bytes.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ctl request larger than 256 KiB",
            ));
        }
        if fds.len() > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many fds for one ctl request",
            ));
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        send_packet(self.fd.as_fd(), &bytes, &raw)
    }

    /// Receives the next message and its fds. `WouldBlock` when none is waiting,
    /// `UnexpectedEof` when init closed the connection.
    pub fn recv(&self) -> io::Result<(CtlMessage, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        match recv_packet(self.fd.as_fd(), &mut buf)? {
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the sandbox's init closed the control connection",
            )),
            Some((len, fds)) => {
                let msg = serde_json::from_slice(&buf[..len])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok((msg, fds))
            }
        }
    }
}

impl AsRawFd for CtlConn {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for CtlConn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_externally_tagged_snake_case() {
        let r = CtlRequest {
            req: 1,
            op: CtlOp::Exec {
                id: 2,
                argv: vec!["sh".into()],
                env: vec![("A".into(), "b".into())],
                cwd: None,
                user: SandboxUser::Sandbox,
                stdio: Stdio::Pty { rows: 24, cols: 80 },
            },
        };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"req":1,"op":{"exec":{"id":2,"argv":["sh"],"env":[["A","b"]],"cwd":null,"user":"sandbox","stdio":{"pty":{"rows":24,"cols":80}}}}}"#
        );
        assert_eq!(serde_json::from_str::<CtlRequest>(&j).unwrap(), r);
        let p = serde_json::to_string(&CtlRequest {
            req: 3,
            op: CtlOp::Ping,
        })
        .unwrap();
        assert_eq!(p, r#"{"req":3,"op":"ping"}"#);
        let m = CtlMessage::Exited {
            id: 2,
            status: 256,
            cpu_us: 5,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"exited":{"id":2,"status":256,"cpu_us":5}}"#
        );
        let e = CtlMessage::Reply {
            req: 4,
            reply: CtlReply::Error {
                kind: CtlErrorKind::from_errno(libc::ENOENT),
                errno: libc::ENOENT,
                message: "x".into(),
            },
        };
        let j = serde_json::to_string(&e).unwrap();
        assert!(j.contains(r#""kind":"not_found""#), "{j}");
        assert_eq!(serde_json::from_str::<CtlMessage>(&j).unwrap(), e);
    }

    #[test]
    fn packets_carry_fds_and_eof_is_reported() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        send_packet(a.as_fd(), b"hello", &[r.as_raw_fd()]).unwrap();
        let mut buf = vec![0u8; 64];
        let (len, fds) = recv_packet(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(fds.len(), 1);
        let err = recv_packet(b.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        assert!(recv_packet(b.as_fd(), &mut buf).unwrap().is_none());
    }
}

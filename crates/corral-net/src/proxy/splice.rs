//! Moving a passed-through connection's bytes with splice(2): socket -> pipe -> socket
//! inside the kernel, no copy through the proxy's memory. On a small host the relay
//! competes with the endpoints for CPU, and a user-space copy (two copies and twice
//! the syscalls per chunk) costs about half the throughput of a direct connection.
//! [`Pipe::exact`] moves a known number of bytes (an HTTP body whose length the
//! framing gives, see [`super::h1`]), [`Pipe::to_end`] everything until end of stream.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The pipe's size (root may raise it to fs.pipe-max-size, 1 MiB by default); one
/// splice moves at most this much.
const PIPE: usize = 1 << 20;
/// What one splice moves when the pipe could not be enlarged (Linux's default).
const DEFAULT_PIPE: usize = 1 << 16;

/// Relays both ways until both sides are done; the bytes `a` -> `b` and `b` -> `a`
/// (counted as they go, so a connection that ends in an error still has them). An
/// error in either direction ends both (the caller drops the sockets).
pub(crate) async fn relay(a: &TcpStream, b: &TcpStream) -> (u64, u64) {
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let _ = tokio::try_join!(one_way(a, b, &up), one_way(b, a, &down));
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed))
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

async fn one_way(from: &TcpStream, to: &TcpStream, total: &AtomicU64) -> io::Result<()> {
    let pipe = Pipe::new()?;
    pipe.to_end(from, to, &mut |m| {
        total.fetch_add(m, Ordering::Relaxed);
    })
    .await?;
    // End of stream: pass the half-close on (the other direction goes on).
    let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
    Ok(())
}

/// A pipe between two sockets; empty whenever none of its methods is running (each
/// drains what it filled before it returns Ok).
pub(crate) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// What one splice moves at most.
    chunk: usize,
}

impl Pipe {
    pub(crate) fn new() -> io::Result<Pipe> {
        let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // A bigger pipe: fewer splices (and wakeups) per megabyte.
        let chunk = match fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE as i32)) {
            Ok(_) => PIPE,
            Err(_) => DEFAULT_PIPE,
        };
        Ok(Pipe { r, w, chunk })
    }

    /// Moves exactly `n` bytes from `from` to `to`; `moved` is told each part that
    /// reached `to`. `from` ending first is an `UnexpectedEof` error.
    pub(crate) async fn exact(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        mut n: u64,
        moved: &mut impl FnMut(u64),
    ) -> io::Result<()> {
        while n > 0 {
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(self.chunk);
            let got = self.fill(from, want).await?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside a message body",
                ));
            }
            self.drain(to, got, moved).await?;
            n -= got as u64;
        }
        Ok(())
    }

    /// Moves everything from `from` to `to` until `from` ends.
    pub(crate) async fn to_end(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        moved: &mut impl FnMut(u64),
    ) -> io::Result<()> {
        loop {
            let got = self.fill(from, self.chunk).await?;
            if got == 0 {
                return Ok(());
            }
            self.drain(to, got, moved).await?;
        }
    }

    /// One splice socket -> pipe (the pipe is empty): what it moved, 0 at end of stream.
    async fn fill(&self, from: &TcpStream, max: usize) -> io::Result<usize> {
        loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_fd(), None, self.w.as_fd(), None, max, flags())
                    .map_err(io::Error::from)
            }) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Splices pipe -> socket until the `n` bytes in the pipe are out.
    async fn drain(
        &self,
        to: &TcpStream,
        mut n: usize,
        moved: &mut impl FnMut(u64),
    ) -> io::Result<()> {
        while n > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(self.r.as_fd(), None, to.as_fd(), None, n, flags()).map_err(io::Error::from)
            }) {
                Ok(m) => {
                    n -= m;
                    moved(m as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close_and_counts() {
        // client <-> (p1 | relay | p2) <-> server
        let (mut client, p1) = pair().await;
        let (p2, mut server) = pair().await;
        let relay = tokio::spawn(async move { relay(&p1, &p2).await });
        let big = vec![7u8; 3 << 20];
        let send = big.clone();
        let w = tokio::spawn(async move {
            client.write_all(&send).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), big.len());
        server.write_all(b"bye").await.unwrap();
        drop(server);
        assert_eq!(w.await.unwrap(), b"bye");
        assert_eq!(relay.await.unwrap(), (3 << 20, 3));
    }
}

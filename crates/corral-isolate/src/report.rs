//! The report channel: a pipe from the sandbox (its init and, before exec, the command
//! process) to corral. Frames are `tag, u16 length, payload`, each written with a single
//! write(2) below PIPE_BUF, so they never interleave.

use std::os::fd::BorrowedFd;

/// Sandbox setup reached the point where corral must write the uid/gid maps.
pub(crate) const TAG_USERNS: u8 = b'U';
/// Setup failed; payload is a one-line UTF-8 message.
pub(crate) const TAG_ERROR: u8 = b'E';
/// The command ended; payload is its wait status (i32, little endian).
pub(crate) const TAG_STATUS: u8 = b'S';
/// A session's init is serving its control socket.
pub(crate) const TAG_READY: u8 = b'R';

/// Largest payload (keeps a frame below PIPE_BUF so the write is atomic).
const MAX_PAYLOAD: usize = 4000;

/// Writes one frame; errors are ignored (the reader is gone, nothing else to do).
pub(crate) fn send(fd: BorrowedFd<'_>, tag: u8, payload: &[u8]) {
    let len = payload.len().min(MAX_PAYLOAD);
    let mut frame = Vec::with_capacity(3 + len);
    frame.push(tag);
    frame.extend_from_slice(&(len as u16).to_le_bytes());
    frame.extend_from_slice(&payload[..len]);
    let _ = nix::unistd::write(fd, &frame);
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Userns,
    Error(String),
    Status(i32),
    Ready,
}

/// Accumulates bytes and yields complete frames.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if any. Unknown tags are reported as errors.
    pub(crate) fn next_frame(&mut self) -> Option<Frame> {
        if self.buf.len() < 3 {
            return None;
        }
        let len = u16::from_le_bytes([self.buf[1], self.buf[2]]) as usize;
        if self.buf.len() < 3 + len {
            return None;
        }
        let tag = self.buf[0];
        let payload: Vec<u8> = self.buf[3..3 + len].to_vec();
        self.buf.drain(..3 + len);
        Some(match tag {
            TAG_USERNS => Frame::Userns,
            TAG_READY => Frame::Ready,
            TAG_STATUS if payload.len() == 4 => Frame::Status(i32::from_le_bytes([
                payload[0], payload[1], payload[2], payload[3],
            ])),
            TAG_ERROR => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
            _ => Frame::Error(format!("corrupt report frame (tag {tag})")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_and_coalesced_reads_decode() {
        let mut d = Decoder::default();
        let mut bytes = vec![TAG_ERROR, 3, 0, b'b', b'a', b'd'];
        bytes.extend([TAG_STATUS, 4, 0]);
        bytes.extend(256i32.to_le_bytes());
        d.push(&bytes[..4]);
        assert_eq!(d.next_frame(), None);
        d.push(&bytes[4..]);
        assert_eq!(d.next_frame(), Some(Frame::Error("bad".into())));
        assert_eq!(d.next_frame(), Some(Frame::Status(256)));
        assert_eq!(d.next_frame(), None);
        d.push(&[b'?', 0, 0]);
        assert!(matches!(d.next_frame(), Some(Frame::Error(_))));
    }
}

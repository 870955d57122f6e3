//! Reading small /proc files.
//!
//! procfs files report size 0, so `std::fs::read_to_string` starts with a 32-byte
//! buffer and grows it, one read(2) per step; every read of a seq_file like
//! /proc/self/stat regenerates the whole text, which costs tens of microseconds each
//! on a busy host. Reading into one large buffer takes a single pass: these files are
//! seq_files, whose read(2) fills the buffer until the text ends, so a short read is
//! the end (no second read to see EOF).

use std::io::{self, Read};
use std::path::Path;

/// Reads a /proc or cgroup file of at most 64 KiB in as few reads as possible.
pub(crate) fn read(path: impl AsRef<Path>) -> io::Result<String> {
    read_sized(path, 64 * 1024)
}

/// [`read`] for files known to be small (one line or so): a one-page buffer, which
/// matters in the sandbox's init, where every freshly written page of memory shared
/// with corral costs a copy-on-write fault.
pub(crate) fn read_small(path: impl AsRef<Path>) -> io::Result<String> {
    read_sized(path, 4096)
}

fn read_sized(path: impl AsRef<Path>, cap: usize) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; cap];
    let mut len = 0;
    loop {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                let asked = buf.len() - len;
                len += n;
                if n < asked {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_whole_proc_files() {
        let stat = super::read("/proc/self/stat").unwrap();
        assert!(stat.starts_with(&std::process::id().to_string()));
        assert!(stat.ends_with('\n'));
        let status = super::read("/proc/self/status").unwrap();
        assert!(status.contains("Threads:"));
    }
}

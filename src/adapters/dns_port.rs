//! `RUN_DIR/dns.port`: the port the host agent's DNS server listens on (on every address,
//! UDP and TCP, IPv4 and IPv6). The agent writes it once its sockets are bound and removes it
//! when it stops; the firewall reads it to redirect sandboxes' queries to their gateway's port
//! 53 there. A killed agent leaves it behind: queries then meet a closed port and fail at once,
//! until the next agent binds (the same port again when it can) and rewrites it.

use std::io;
use std::path::{Path, PathBuf};

use crate::adapters::fs;

/// The file's path in the run directory.
pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join("dns.port")
}

/// The most of the file read: a port and a newline, with room for stray whitespace.
const MAX_LEN: u64 = 16;

/// The port recorded, if any (a missing, unreadable or garbled file is no port). Read only
/// from a regular file of its own, and only its first bytes: a symlink, FIFO or device put
/// there (a FIFO would block every command that builds the firewall, a link to `/dev/zero`
/// would fill memory) is no port either.
pub fn read(run_dir: &Path) -> Option<u16> {
    let f = fs::open_read(&path(run_dir)).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_LEN), &mut text).ok()?;
    let text = text.trim();
    // Digits only: `str::parse` would also take a sign.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// Records the port (replacing the file atomically, never writing through a planted link).
pub fn write(run_dir: &Path, port: u16) -> io::Result<()> {
    fs::replace(&path(run_dir), format!("{port}\n").as_bytes(), 0o644)
}

/// Forgets the port (the agent is stopping).
pub fn remove(run_dir: &Path) {
    let _ = std::fs::remove_file(path(run_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_round_trips_and_garbage_is_no_port() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        write(dir.path(), 40053).unwrap();
        assert_eq!(read(dir.path()), Some(40053));
        std::fs::write(path(dir.path()), "0\n").unwrap();
        assert_eq!(read(dir.path()), None);
        std::fs::write(path(dir.path()), "65536\n").unwrap();
        assert_eq!(read(dir.path()), None);
        std::fs::write(path(dir.path()), "+53\n").unwrap();
        assert_eq!(read(dir.path()), None);
        std::fs::write(path(dir.path()), "4005312345678901234567\n").unwrap();
        assert_eq!(read(dir.path()), None);
        remove(dir.path());
        assert_eq!(read(dir.path()), None);
    }

    #[test]
    fn a_planted_link_fifo_or_device_is_no_port_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        // A link to an endless file: never read.
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        assert_eq!(read(dir.path()), None);
        remove(dir.path());
        // A link to a file holding a port: not followed either.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "40053\n").unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert_eq!(read(dir.path()), None);
        // The agent's write replaces the link, never writes through it.
        write(dir.path(), 40054).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "40053\n");
        assert_eq!(read(dir.path()), Some(40054));
        remove(dir.path());
        // A FIFO without a writer: an open would wait forever; it is refused at once.
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let t = std::time::Instant::now();
        assert_eq!(read(dir.path()), None);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        write(dir.path(), 40055).unwrap();
        assert_eq!(read(dir.path()), Some(40055));
        // A hard link to another file: not its own.
        remove(dir.path());
        std::fs::hard_link(&target, &p).unwrap();
        assert_eq!(read(dir.path()), None);
    }
}

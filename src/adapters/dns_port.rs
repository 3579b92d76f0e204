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

/// The port recorded, if any (a missing, unreadable or garbled file is no port).
pub fn read(run_dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(path(run_dir)).ok()?;
    text.trim().parse::<u16>().ok().filter(|p| *p != 0)
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
        remove(dir.path());
        assert_eq!(read(dir.path()), None);
    }
}

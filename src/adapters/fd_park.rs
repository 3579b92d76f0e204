//! Handing a descriptor over to the host agent so that its release costs the command nothing.
//!
//! Why: closing the last reference to a `NETLINK_NETFILTER` socket makes nf_tables wait,
//! holding its commit lock, until the memory of whatever the last transactions deleted has
//! been freed after an RCU grace period (`nft_rcv_nl_event` flushes the destroy work) — about
//! 10 ms on a small VM, more than everything else `weft rm` does. A command that deleted
//! elements therefore sends its socket to the agent (`agent.park`, a datagram socket beside
//! the control socket) instead of closing it; the agent closes the sockets it holds once no
//! new one has come for a while, when the grace periods are long over and the close is free.
//!
//! Nothing depends on it: without an agent (or with its queue full) the command closes the
//! socket itself and only pays the wait. The transaction itself is complete and acknowledged
//! before the socket is handed over.

use crate::adapters::libc_consts::len_field;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// The parking socket in `run_dir`.
pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join("agent.park")
}

/// Room for one descriptor's control message.
const CMSG_ROOM: usize = 64;

/// Sends `fd` to the agent's parking socket at `park` without waiting. On any failure (no
/// agent, its queue full) the descriptor comes back for the caller to close.
pub fn park(park: &Path, fd: OwnedFd) -> Result<(), OwnedFd> {
    let Ok(sock) = UnixDatagram::unbound() else {
        return Err(fd);
    };
    if sock.connect(park).is_err() {
        return Err(fd);
    }
    match send_fd(sock.as_raw_fd(), fd.as_raw_fd()) {
        // The agent holds its own reference now; ours can go (not the last: no wait).
        Ok(()) => Ok(()),
        Err(_) => Err(fd),
    }
}

fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    let mut cbuf = [0u8; CMSG_ROOM];
    let fd_len = u32::try_from(std::mem::size_of::<RawFd>()).unwrap_or(4);
    // SAFETY: an all-zero msghdr is valid (null name, no buffers); the fields set below point
    // at live locals that outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_len) } as usize;
    if space > cbuf.len() {
        return Err(io::Error::other("control buffer too small"));
    }
    msg.msg_controllen = len_field(space)?;
    // SAFETY: msg_control points at `cbuf`, at least CMSG_SPACE(fd) bytes, so the first header
    // and its data (one descriptor) lie inside it; the buffer is zeroed and suitably sized.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() {
            return Err(io::Error::other("no room for a control message"));
        }
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = len_field(libc::CMSG_LEN(fd_len) as usize)?;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
    }
    // SAFETY: `msg` is fully initialised above; the socket is a live descriptor.
    let rc = unsafe { libc::sendmsg(sock, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one parked descriptor from `sock` (non-blocking): `Ok(None)` for a datagram that
/// carried none.
pub fn receive(sock: RawFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    let mut cbuf = [0u8; CMSG_ROOM];
    // SAFETY: as in `send_fd`: zeroed msghdr, pointers to live locals.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = len_field(cbuf.len())?;
    // SAFETY: `msg` describes buffers that live across the call; the socket is live.
    let rc = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = None;
    // SAFETY: the kernel filled `cbuf` with msg_controllen bytes of control messages; the
    // CMSG_* walk stays inside them, and every descriptor in an SCM_RIGHTS message is a new
    // one of this process, owned by nobody else: wrapping each in an OwnedFd is sound (all
    // but the first are closed at once).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let header = libc::CMSG_LEN(0) as usize;
                let n =
                    ((*c).cmsg_len as usize).saturating_sub(header) / std::mem::size_of::<RawFd>();
                for i in 0..n {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    if out.is_none() {
                        out = Some(fd);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(out)
}

/// The agent's end: the bound parking socket, removed when dropped.
pub struct ParkingLot {
    sock: tokio::net::UnixDatagram,
    path: PathBuf,
}

impl ParkingLot {
    /// Binds `agent.park` in `run_dir`, replacing a stale one (the caller holds the agent
    /// lock), root only. Must be called inside a tokio runtime.
    pub fn bind(run_dir: &Path) -> io::Result<ParkingLot> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = path(run_dir);
        crate::adapters::fs::clear_socket_path(&path)?;
        let sock = tokio::net::UnixDatagram::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ParkingLot { sock, path })
    }

    /// Waits until descriptors arrive, then returns every one queued.
    pub async fn next(&self) -> Vec<OwnedFd> {
        let mut out = Vec::new();
        if self.sock.readable().await.is_err() {
            return out;
        }
        let raw = self.sock.as_raw_fd();
        // Until the queue is empty (WouldBlock also clears tokio's readiness) or an error.
        while let Ok(got) = self
            .sock
            .try_io(tokio::io::Interest::READABLE, || receive(raw))
        {
            out.extend(got);
        }
        out
    }
}

impl Drop for ParkingLot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn a_parked_descriptor_arrives_and_is_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let lot = UnixDatagram::bind(path(dir.path())).unwrap();
        let (mut reader, writer) = std::io::pipe().unwrap();
        park(&path(dir.path()), OwnedFd::from(writer)).unwrap();
        let got = receive(lot.as_raw_fd()).unwrap().expect("a descriptor");
        // Writing through the received descriptor reaches our pipe.
        let mut w = std::fs::File::from(got);
        w.write_all(b"x").unwrap();
        drop(w);
        let mut buf = Vec::new();
        reader.read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"x");
        // Nothing more queued.
        assert!(receive(lot.as_raw_fd()).is_err());
    }

    #[test]
    fn without_a_parking_socket_the_descriptor_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (_reader, writer) = std::io::pipe().unwrap();
        let raw = writer.as_raw_fd();
        let back = park(&path(dir.path()), OwnedFd::from(writer)).unwrap_err();
        assert_eq!(back.as_raw_fd(), raw);
    }

    #[test]
    fn a_datagram_without_descriptors_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let lot = UnixDatagram::bind(path(dir.path())).unwrap();
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"hello", path(dir.path()))
            .unwrap();
        assert!(receive(lot.as_raw_fd()).unwrap().is_none());
    }
}

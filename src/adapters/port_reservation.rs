//! Holding a published host port: a socket bound to the host address and port, never
//! listening or reading. Published traffic is DNAT'd before it could reach it; what the socket
//! does is keep any host process from binding the same port (or an overlapping address, such
//! as `127.0.0.1:P` under `0.0.0.0:P`) while weft publishes it — as docker-proxy and Podman's
//! conmon do. No `SO_REUSEADDR`: with it, a host process that also sets it could still bind
//! next to a socket that does not listen.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::core::ports::Protocol;

/// Binds a socket for `protocol` to `ip:port` and returns it.
pub fn reserve(protocol: Protocol, ip: IpAddr, port: u16) -> io::Result<OwnedFd> {
    let domain = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let (ty, proto) = match protocol {
        Protocol::Tcp => (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        Protocol::Udp => (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        Protocol::Sctp => (libc::SOCK_STREAM, libc::IPPROTO_SCTP),
    };
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if ip.is_ipv6() {
        // `::` means IPv6 only here: IPv4 is reserved by its own `0.0.0.0` entry.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid pointer to a c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                std::ptr::from_ref(&one).cast(),
                super::libc_consts::socklen_of::<libc::c_int>(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (storage, len) = sockaddr(SocketAddr::new(ip, port));
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    let r = unsafe { libc::bind(sock.as_raw_fd(), std::ptr::from_ref(&storage).cast(), len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = super::libc_consts::SA_INET;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            (
                storage,
                super::libc_consts::socklen_of::<libc::sockaddr_in>(),
            )
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 =
                unsafe { &mut *std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = super::libc_consts::SA_INET6;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            (
                storage,
                super::libc_consts::socklen_of::<libc::sockaddr_in6>(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_cannot_be_bound_again_and_is_free_once_dropped() {
        let held = reserve(Protocol::Tcp, "127.0.0.1".parse().unwrap(), 0);
        // Port 0 picks a free port; find out which to try binding it again.
        let held = held.unwrap();
        let port = {
            // SAFETY: getsockname into a zeroed sockaddr_storage of the right length.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = super::super::libc_consts::socklen_of::<libc::sockaddr_storage>();
            // SAFETY: valid pointers to `ss` and `len`.
            let r = unsafe {
                libc::getsockname(
                    held.as_raw_fd(),
                    std::ptr::from_mut(&mut ss).cast(),
                    &mut len,
                )
            };
            assert_eq!(r, 0);
            // SAFETY: the socket is IPv4, so the storage holds a sockaddr_in.
            let sin = unsafe { &*std::ptr::from_ref(&ss).cast::<libc::sockaddr_in>() };
            u16::from_be(sin.sin_port)
        };
        let err = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(held);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}

//! Listening sockets on one port for UDP and TCP on `0.0.0.0` and `[::]` (`IPV6_V6ONLY`), with
//! packet info on (`IP_PKTINFO` / `IPV6_PKTINFO`: the server learns each query's destination
//! address and ingress interface — who asks, on which network — and replies from the address
//! the query was sent to), and one reply sent on its own (a forwarded answer). Queries are
//! received and local answers sent in batches (`super::batch`).

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    bind, getsockname, listen, sendmsg, setsockopt, socket, sockopt, AddressFamily, Backlog,
    ControlMessage, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
};

/// How many bind attempts with a new port before giving up.
const BIND_TRIES: usize = 16;
/// The receive queue of each UDP socket, in bytes.
const UDP_RCVBUF: usize = 4 << 20;
/// Pending TCP connections the kernel queues.
const BACKLOG: i32 = 128;

/// The bound sockets (not yet registered with a runtime).
#[derive(Debug)]
pub struct Bound {
    /// The port all of them share.
    pub port: u16,
    /// UDP on 0.0.0.0.
    pub udp4: std::net::UdpSocket,
    /// UDP on [::], when the host has IPv6.
    pub udp6: Option<std::net::UdpSocket>,
    /// TCP on 0.0.0.0.
    pub tcp4: std::net::TcpListener,
    /// TCP on [::], when the host has IPv6.
    pub tcp6: Option<std::net::TcpListener>,
}

fn errno(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

fn sock(family: AddressFamily, ty: SockType) -> io::Result<OwnedFd> {
    socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(errno)
}

/// A socket of one kind bound to `port` (0: the kernel picks); returns it and its port.
fn bind_one(v6: bool, tcp: bool, port: u16) -> io::Result<(OwnedFd, u16)> {
    let family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let ty = if tcp {
        SockType::Stream
    } else {
        SockType::Datagram
    };
    let fd = sock(family, ty)?;
    if tcp {
        // A restarted agent rebinds its port while old connections sit in TIME_WAIT.
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(errno)?;
    }
    if v6 {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(errno)?;
        if !tcp {
            setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true).map_err(errno)?;
        }
        let addr = SockaddrIn6::from(SocketAddrV6::new(
            std::net::Ipv6Addr::UNSPECIFIED,
            port,
            0,
            0,
        ));
        bind(fd.as_raw_fd(), &addr).map_err(errno)?;
    } else {
        if !tcp {
            setsockopt(&fd, sockopt::Ipv4PacketInfo, &true).map_err(errno)?;
        }
        let addr = SockaddrIn::from(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port));
        bind(fd.as_raw_fd(), &addr).map_err(errno)?;
    }
    if tcp {
        listen(&fd, Backlog::new(BACKLOG).map_err(errno)?).map_err(errno)?;
    } else {
        // Room for bursts: the kernel drops what does not fit, whoever sent it, so a bigger
        // queue keeps other sandboxes' queries while the rate limit drops a flood's. Forced
        // past rmem_max (the agent has CAP_NET_ADMIN); the default stays when refused.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &UDP_RCVBUF);
    }
    let local: SockaddrStorage = getsockname(fd.as_raw_fd()).map_err(errno)?;
    let port = local
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| local.as_sockaddr_in6().map(|a| a.port()))
        .unwrap_or(0);
    Ok((fd, port))
}

/// Whether an error means the host has no IPv6 (the server then listens on IPv4 only).
fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

fn bind_at(port: u16) -> io::Result<Bound> {
    let (udp4, port) = bind_one(false, false, port)?;
    let (tcp4, _) = bind_one(false, true, port)?;
    let udp6 = match bind_one(true, false, port) {
        Ok((fd, _)) => Some(fd),
        Err(e) if no_ipv6(&e) => None,
        Err(e) => return Err(e),
    };
    let tcp6 = match (&udp6, bind_one(true, true, port)) {
        (None, _) => None,
        (Some(_), Ok((fd, _))) => Some(fd),
        (Some(_), Err(e)) => return Err(e),
    };
    Ok(Bound {
        port,
        udp4: udp4.into(),
        udp6: udp6.map(Into::into),
        tcp4: tcp4.into(),
        tcp6: tcp6.map(Into::into),
    })
}

/// Binds the four sockets on `preferred` when it is free, else on a port the kernel picks
/// (trying again when one of the four is taken on the picked port).
pub fn bind_all(preferred: Option<u16>) -> io::Result<Bound> {
    if let Some(p) = preferred.filter(|p| *p != 0) {
        if let Ok(b) = bind_at(p) {
            return Ok(b);
        }
    }
    let mut last = io::Error::other("no port");
    for _ in 0..BIND_TRIES {
        match bind_at(0) {
            Ok(b) => return Ok(b),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends `data` to `to` from the address `from` (the one the query was sent to), without
/// waiting: a full socket buffer drops the reply, as the network may (the client asks again).
pub fn send_from(sock: &impl AsRawFd, data: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<()> {
    let iov = [IoSlice::new(data)];
    let sent = match (to, from) {
        (SocketAddr::V4(to), IpAddr::V4(from)) => {
            let pi = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(from).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            sendmsg(
                sock.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&pi)],
                MsgFlags::empty(),
                Some(&SockaddrIn::from(to)),
            )
        }
        (SocketAddr::V6(to), IpAddr::V6(from)) => {
            let pi = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: from.octets(),
                },
                ipi6_ifindex: 0,
            };
            sendmsg(
                sock.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv6PacketInfo(&pi)],
                MsgFlags::empty(),
                Some(&SockaddrIn6::from(to)),
            )
        }
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    sent.map(|_| ()).map_err(errno)
}

/// The interface index of `name` (a network's bridge), if it exists.
pub fn if_index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|i| *i != 0)
}

//! Small network probes built into the binary (`weft tool ...`), so the demo and the tests
//! can check reachability on a fresh machine that has no `ping`, `nc` or `curl`. Every probe
//! is bounded in count and time.

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(word as u32);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded to 16 bits above.
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// Sends up to `count` ICMP echo requests to `dst`, one per 200 ms, and returns how many
/// were answered (stopping at the first answer when `count` is the upper bound of tries).
pub fn ping(dst: IpAddr, count: u32, timeout: Duration) -> Result<u32> {
    let (domain, proto, echo, reply) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8),
    };
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW, proto) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("raw ICMP socket (needs root)");
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let sock = socket2_like::Sock(sock);
    sock.set_timeout(Duration::from_millis(200))?;
    // Random, not the pid: a command in a sandbox is pid 2 of its PID namespace, so pids
    // would make every ping in every sandbox share one identifier.
    let mut r = [0u8; 2];
    let _ = getrandom::getrandom(&mut r);
    let ident = u16::from_ne_bytes(r);
    let mut answered = 0;
    let deadline = Instant::now() + timeout;
    for seq in 0..count {
        if Instant::now() > deadline {
            break;
        }
        let mut pkt = vec![echo, 0, 0, 0];
        pkt.extend_from_slice(&ident.to_be_bytes());
        // The ICMP sequence field is 16 bits: the low half of the counter.
        pkt.extend_from_slice(&seq.to_be_bytes()[2..]);
        pkt.extend_from_slice(b"weft-ping");
        if dst.is_ipv4() {
            let c = checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // For ICMPv6 the kernel fills in the checksum. A send refused for now (no route or
        // neighbour yet, while a network comes back) is one more unanswered try, not the end.
        if sock.send_to(&pkt, dst).is_err() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            let Some(buf) = sock.recv()? else { break };
            // IPv4 raw sockets deliver the IP header too.
            let icmp = if dst.is_ipv4() {
                let ihl = ((buf.first().copied().unwrap_or(0) & 0x0f) as usize) * 4;
                buf.get(ihl..).unwrap_or(&[])
            } else {
                &buf[..]
            };
            if icmp.len() >= 8
                && icmp[0] == reply
                && u16::from_be_bytes([icmp[4], icmp[5]]) == ident
                && icmp[6..8] == seq.to_be_bytes()[2..]
            {
                answered += 1;
                break;
            }
        }
        if answered > 0 {
            break;
        }
    }
    Ok(answered)
}

mod socket2_like {
    //! The two raw-socket calls `ping` needs.
    use std::net::IpAddr;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::Duration;

    pub struct Sock(pub OwnedFd);

    impl Sock {
        pub fn set_timeout(&self, d: Duration) -> std::io::Result<()> {
            let tv = libc::timeval {
                // Field types inferred: libc names them differently for glibc and musl.
                tv_sec: d.as_secs().try_into().map_err(std::io::Error::other)?,
                tv_usec: d.subsec_micros().into(),
            };
            // SAFETY: valid fd and a correctly sized timeval.
            let r = unsafe {
                libc::setsockopt(
                    self.0.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    crate::adapters::libc_consts::socklen_of::<libc::timeval>(),
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }

        pub fn send_to(&self, pkt: &[u8], dst: IpAddr) -> std::io::Result<()> {
            let addr: socket_addr::Raw = dst.into();
            // SAFETY: buffer and address are valid for the given lengths.
            let r = unsafe {
                libc::sendto(
                    self.0.as_raw_fd(),
                    pkt.as_ptr() as *const libc::c_void,
                    pkt.len(),
                    0,
                    addr.ptr(),
                    addr.len(),
                )
            };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }

        /// One datagram, or `None` on timeout.
        pub fn recv(&self) -> std::io::Result<Option<Vec<u8>>> {
            let mut buf = vec![0u8; 2048];
            // SAFETY: buf is valid for its length.
            let r = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                return match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Ok(None),
                    std::io::ErrorKind::Interrupted => Ok(None),
                    _ => Err(e),
                };
            }
            buf.truncate(r as usize);
            Ok(Some(buf))
        }
    }

    mod socket_addr {
        use std::net::IpAddr;

        pub enum Raw {
            V4(libc::sockaddr_in),
            V6(libc::sockaddr_in6),
        }

        impl From<IpAddr> for Raw {
            fn from(a: IpAddr) -> Self {
                match a {
                    IpAddr::V4(v4) => {
                        // SAFETY: all-zero is a valid sockaddr_in.
                        let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                        s.sin_family = crate::adapters::libc_consts::SA_INET;
                        s.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
                        Raw::V4(s)
                    }
                    IpAddr::V6(v6) => {
                        // SAFETY: all-zero is a valid sockaddr_in6.
                        let mut s: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                        s.sin6_family = crate::adapters::libc_consts::SA_INET6;
                        s.sin6_addr.s6_addr = v6.octets();
                        Raw::V6(s)
                    }
                }
            }
        }

        impl Raw {
            pub fn ptr(&self) -> *const libc::sockaddr {
                match self {
                    Raw::V4(s) => s as *const _ as *const libc::sockaddr,
                    Raw::V6(s) => s as *const _ as *const libc::sockaddr,
                }
            }

            pub fn len(&self) -> libc::socklen_t {
                match self {
                    Raw::V4(_) => crate::adapters::libc_consts::socklen_of::<libc::sockaddr_in>(),
                    Raw::V6(_) => crate::adapters::libc_consts::socklen_of::<libc::sockaddr_in6>(),
                }
            }
        }
    }

    #[allow(unused_imports)]
    pub use socket_addr::Raw;
}

/// Accepts up to `count` TCP connections on `addr` within `timeout`, answering each with the
/// client's address as it sees it (`peer=IP:PORT\n`) and keeping it open for `hold` (a
/// long-lived session, like SSH). Prints `listening` once bound.
pub fn serve(addr: SocketAddr, count: u32, timeout: Duration, hold: Duration) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let deadline = Instant::now() + timeout;
    let mut served = 0;
    while served < count && Instant::now() < deadline {
        match listener.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false)?;
                let _ = writeln!(s, "peer={peer}");
                served += 1;
                if !hold.is_zero() {
                    std::thread::spawn(move || {
                        std::thread::sleep(hold);
                        drop(s);
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Answers up to `count` UDP datagrams on `addr` within `timeout`, each with the sender's
/// address as it sees it (`peer=IP:PORT\n`). Prints `listening` once bound.
pub fn serve_udp(addr: SocketAddr, count: u32, timeout: Duration) -> Result<()> {
    let sock = std::net::UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    println!("listening {}", sock.local_addr()?);
    std::io::stdout().flush()?;
    let deadline = Instant::now() + timeout;
    let mut served = 0;
    let mut buf = [0u8; 1500];
    while served < count && Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((_, peer)) => {
                sock.send_to(format!("peer={peer}\n").as_bytes(), peer)?;
                served += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sends a datagram to `addr` (a few times, UDP being lossy) and returns the first answer.
pub fn connect_udp(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let sock = std::net::UdpSocket::bind(bind)?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        sock.send_to(b"hello", addr)?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => return Ok(String::from_utf8_lossy(&buf[..n]).to_string()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).with_context(|| format!("talking to {addr}")),
        }
    }
    bail!("no answer from {addr} (udp)")
}

/// Connects to `addr` within `timeout` and returns the server's first line.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    let mut out = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut out)
        .with_context(|| format!("reading from {addr}"))?;
    if out.is_empty() {
        bail!("{addr} closed the connection without a word");
    }
    Ok(out)
}

/// A packet socket bound to one interface, seeing every frame (`ETH_P_ALL`): what an
/// attacker with CAP_NET_RAW in a sandbox has, and what a listener uses to see frames before
/// the kernel's protocol handlers judge them.
struct PacketSocket(std::os::fd::OwnedFd);

/// `htons(ETH_P_ALL)`: the protocol field of packet sockets is in network order.
fn eth_p_all() -> u16 {
    u16::try_from(libc::ETH_P_ALL).unwrap_or(3).to_be()
}

impl PacketSocket {
    fn open(iface: &str) -> Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let name = std::ffi::CString::new(iface).context("interface name")?;
        // SAFETY: a NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("interface {iface}"));
        }
        // SAFETY: plain socket(2); the descriptor is owned right below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                libc::c_int::from(eth_p_all()),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("packet socket (needs CAP_NET_RAW)");
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let sock = PacketSocket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
        sll.sll_protocol = eth_p_all();
        sll.sll_ifindex = i32::try_from(index).context("interface index")?;
        // SAFETY: a valid sockaddr_ll of the length given; the fd is owned by `sock`.
        let rc = unsafe {
            libc::bind(
                sock.0.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                crate::adapters::libc_consts::socklen_of::<libc::sockaddr_ll>(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("binding to {iface}"));
        }
        Ok(sock)
    }
}

/// Sends each frame (Ethernet header included, as given) `count` times out of `iface`.
pub fn send_frames(iface: &str, frames: &[Vec<u8>], count: u32) -> Result<()> {
    use std::os::fd::AsRawFd;
    let sock = PacketSocket::open(iface)?;
    for _ in 0..count {
        for f in frames {
            // SAFETY: the buffer is valid for its length; the fd is owned by `sock`.
            let rc = unsafe { libc::send(sock.0.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error()).context("sending a frame");
            }
        }
    }
    Ok(())
}

/// Counts the frames `iface` receives (not those it sends) that contain each marker, for
/// `timeout` or until every marker was seen `until` times. Prints `listening` once the
/// socket sees frames.
pub fn sniff(
    iface: &str,
    markers: &[Vec<u8>],
    timeout: Duration,
    until: Option<usize>,
) -> Result<Vec<usize>> {
    use std::os::fd::AsRawFd;
    let sock = PacketSocket::open(iface)?;
    println!("listening {iface}");
    std::io::stdout().flush()?;
    let mut counts = vec![0usize; markers.len()];
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if until.is_some_and(|n| counts.iter().all(|c| *c >= n)) {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: sock.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = crate::adapters::libc_consts::socklen_of::<libc::sockaddr_ll>();
        // SAFETY: buffer and address are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                sock.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        let Ok(n) = usize::try_from(n) else { continue };
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        let frame = &buf[..n.min(buf.len())];
        for (m, c) in markers.iter().zip(counts.iter_mut()) {
            if !m.is_empty() && frame.windows(m.len()).any(|w| w == m.as_slice()) {
                *c += 1;
            }
        }
    }
    Ok(counts)
}

/// Parses hex (`0242ac110002`, separators `:` and spaces ignored).
pub fn parse_hex(s: &str) -> Result<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b':' | b' ' | b'-'))
        .collect();
    if !digits.len().is_multiple_of(2) {
        bail!("odd number of hex digits in {s:?}");
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|t| u8::from_str_radix(t, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("not hex: {s:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parsing() {
        assert_eq!(parse_hex("02:42 ac").unwrap(), vec![2, 0x42, 0xac]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
    }

    #[test]
    fn icmp_checksum_of_known_packet() {
        // Echo request, id 1, seq 1, no payload: checksum 0xf7fd.
        let pkt = [8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&pkt), 0xf7fd);
    }

    #[test]
    fn serve_and_connect_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = std::thread::spawn(move || serve(addr, 1, Duration::from_secs(5), Duration::ZERO));
        let mut reply = Err(anyhow::anyhow!("not tried"));
        for _ in 0..50 {
            reply = connect(addr, Duration::from_secs(2));
            if reply.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(reply.unwrap().starts_with("peer=127.0.0.1:"));
        t.join().unwrap().unwrap();
    }
}

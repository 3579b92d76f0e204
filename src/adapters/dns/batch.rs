//! Datagrams received and sent many per system call (`recvmmsg`, `sendmmsg`), each with its
//! packet info (`IP_PKTINFO` / `IPV6_PKTINFO`: the address it was sent to and the interface it
//! arrived on; replies leave from the address the query was sent to). Under load the server
//! finds dozens of queries queued at each wake: one call takes them all, one call sends their
//! replies, instead of two calls per query.
//!
//! The buffers are allocated once; the kernel's message headers point into them and are
//! rebuilt on the stack at each call, so nothing here holds a raw pointer between calls.

use std::io;
use std::mem::{size_of, size_of_val, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

use crate::adapters::libc_consts::{len_field, MMSG_DONTWAIT};
use crate::core::dns::MAX_UDP;

/// Datagrams per system call, at most.
pub const BATCH: usize = 64;
/// Room for one query. A datagram longer than this (no DNS client sends one: a question is
/// at most 260 bytes, and EDNS0 options a few dozen more) is read cut to this length, which
/// the parser treats as the packet.
pub const SLOT: usize = 4096;
/// Room for one reply: no UDP reply is longer than [`MAX_UDP`].
pub const REPLY: usize = MAX_UDP as usize;

/// Control-message room for one packet info of either family, aligned for `cmsghdr`
/// (`CMSG_SPACE(sizeof(struct in6_pktinfo))` is 40 bytes).
type Cmsg = [u64; 8];

/// A received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    /// Where its bytes start in the inbox's buffer.
    at: usize,
    /// Its length there.
    pub len: usize,
    /// Who sent it.
    pub src: SocketAddr,
    /// The address it was sent to (after any DNAT).
    pub dst: IpAddr,
    /// The interface it arrived on.
    pub ifindex: u32,
}

/// Buffers for receiving up to [`BATCH`] datagrams at once.
pub struct Inbox {
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<Cmsg>,
    got: Vec<Datagram>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Inbox {
    /// Empty buffers (256 KiB, touched only as datagrams fill them).
    pub fn new() -> Inbox {
        Inbox {
            bufs: vec![0; BATCH.saturating_mul(SLOT)],
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            names: vec![unsafe { zeroed() }; BATCH],
            cmsgs: vec![[0; 8]; BATCH],
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Receives what is queued on `fd`, up to [`BATCH`] datagrams, without waiting
    /// (`WouldBlock` when nothing is). Returns how many the call took: datagrams without
    /// packet info (impossible once the option is set) are taken but not listed.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.got.clear();
        // SAFETY: iovec and mmsghdr are plain old data; all zeroes is a valid value.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let name_len = socklen(size_of::<libc::sockaddr_storage>())?;
        for (((chunk, name), cmsg), (iov, hdr)) in self
            .bufs
            .chunks_exact_mut(SLOT)
            .zip(self.names.iter_mut())
            .zip(self.cmsgs.iter_mut())
            .zip(iovs.iter_mut().zip(hdrs.iter_mut()))
        {
            *iov = libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            };
            hdr.msg_hdr.msg_name = ptr::from_mut(name).cast();
            hdr.msg_hdr.msg_namelen = name_len;
            hdr.msg_hdr.msg_iov = ptr::from_mut(iov);
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = cmsg.as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = len_field(size_of_val(cmsg))?;
        }
        let count = u32::try_from(BATCH).map_err(io::Error::other)?;
        // SAFETY: every header points at its own name, control and iovec, and every iovec at
        // its own SLOT bytes of `bufs`, all alive and not otherwise borrowed for the call.
        let n =
            unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), count, MMSG_DONTWAIT, ptr::null_mut()) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for (i, hdr) in hdrs.iter().enumerate().take(n) {
            let len = usize::try_from(hdr.msg_len).map_err(io::Error::other)?;
            let (Some(name), Some(at)) = (self.names.get(i), i.checked_mul(SLOT)) else {
                continue;
            };
            let src = source(name, hdr.msg_hdr.msg_namelen);
            // SAFETY: the header's control buffer is this slot's, filled by the kernel up to
            // the msg_controllen it wrote back.
            let info = unsafe { packet_info(&hdr.msg_hdr) };
            if let (Some(src), Some((dst, ifindex))) = (src, info) {
                self.got.push(Datagram {
                    at,
                    len: len.min(SLOT),
                    src,
                    dst,
                    ifindex,
                });
            }
        }
        Ok(n)
    }

    /// The datagrams the last [`Inbox::recv`] took, with their bytes.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], &Datagram)> {
        self.got.iter().filter_map(|d| {
            let end = d.at.checked_add(d.len)?;
            Some((self.bufs.get(d.at..end)?, d))
        })
    }
}

/// Replies waiting to be sent together.
pub struct Outbox {
    bufs: Vec<u8>,
    /// Length, destination, and the address to send from.
    items: Vec<(usize, SocketAddr, IpAddr)>,
    /// Whether replies to one client are sent segmented (until the kernel refuses once).
    gso: bool,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// Room for [`BATCH`] replies.
    pub fn new() -> Outbox {
        Outbox {
            bufs: vec![0; BATCH.saturating_mul(REPLY)],
            items: Vec::with_capacity(BATCH),
            gso: true,
        }
    }

    /// The next reply's buffer ([`REPLY`] bytes), `None` when the outbox is full.
    pub fn slot(&mut self) -> Option<&mut [u8]> {
        let at = self.items.len().checked_mul(REPLY)?;
        self.bufs.get_mut(at..at.checked_add(REPLY)?)
    }

    /// Queues the reply just written to [`Outbox::slot`]'s first `len` bytes.
    pub fn commit(&mut self, len: usize, to: SocketAddr, from: IpAddr) {
        if len <= REPLY && self.items.len() < BATCH {
            self.items.push((len, to, from));
        }
    }

    /// Queues a copy of `data`; false when it does not fit (full, or longer than [`REPLY`]).
    pub fn push(&mut self, data: &[u8], to: SocketAddr, from: IpAddr) -> bool {
        let Some(slot) = self.slot().and_then(|s| s.get_mut(..data.len())) else {
            return false;
        };
        slot.copy_from_slice(data);
        self.commit(data.len(), to, from);
        true
    }

    /// Sends every queued reply on `fd` and empties the outbox. A full socket buffer drops
    /// the rest, as the network may (the clients ask again); any other error drops the reply
    /// it concerns and is passed to `error`.
    ///
    /// Replies to one client socket from one address leave as one message with UDP
    /// segmentation offload (`UDP_SEGMENT`) when they are of one size (the last may be
    /// shorter): the kernel takes them through routing, netfilter, the bridge and the veth
    /// as one packet and cuts it into the datagrams the client receives, unchanged, at its
    /// socket. A client with many queries in flight (a resolver, A and AAAA together) costs
    /// one trip through the stack per batch instead of one per reply. Where the kernel or the
    /// route refuses it, the replies go one by one, and segmentation is not tried again.
    pub fn flush(&mut self, fd: RawFd, mut error: impl FnMut(SocketAddr, io::Error)) {
        // Item indices in send order: grouped by destination and source, otherwise as queued.
        let mut order = [0usize; BATCH];
        let n = self.items.len().min(BATCH);
        for (i, o) in order.iter_mut().enumerate().take(n) {
            *o = i;
        }
        let items = &self.items;
        if let Some(order) = order.get_mut(..n) {
            order.sort_by_key(|&i| items.get(i).map(|&(_, to, from)| (to, from)));
        }
        let mut from_pos = 0usize;
        while let Some(restart) = self.send(fd, order.get(..n).unwrap_or(&[]), from_pos, &mut error)
        {
            // Segmentation refused: from that message on, one datagram per message.
            self.gso = false;
            from_pos = restart;
        }
        self.items.clear();
    }

    /// Sends the items at `order[from_pos..]`; returns the position to send again from
    /// when a segmented message was refused.
    fn send(
        &mut self,
        fd: RawFd,
        order: &[usize],
        from_pos: usize,
        error: &mut impl FnMut(SocketAddr, io::Error),
    ) -> Option<usize> {
        // SAFETY: plain old data; all zeroes is a valid value.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut cmsgs: [Cmsg; BATCH] = [[0; 8]; BATCH];
        // Per message filled: where its items start in `order`, and whether segmented.
        let mut starts = [(0usize, false); BATCH];
        let mut ready = 0usize;
        let mut pos = from_pos;
        while let Some(&first) = order.get(pos) {
            let Some(&(seg, to, from)) = self.items.get(first) else {
                break;
            };
            // The run: same destination and source, same length, perhaps a shorter last.
            let mut end = pos.saturating_add(1);
            if self.gso {
                while let Some(&(len, t, f)) = order.get(end).and_then(|&i| self.items.get(i)) {
                    if t != to || f != from || len > seg {
                        break;
                    }
                    end = end.saturating_add(1);
                    if len < seg {
                        break;
                    }
                }
            }
            let run = order.get(pos..end).unwrap_or(&[]);
            let (Some(iov_run), Some(hdr), Some(name), Some(cmsg), Some(start)) = (
                iovs.get_mut(pos..end),
                hdrs.get_mut(ready),
                names.get_mut(ready),
                cmsgs.get_mut(ready),
                starts.get_mut(ready),
            ) else {
                break;
            };
            let segmented = run.len() > 1;
            let Some((name_len, control_len)) =
                address(name, cmsg, to, from, segmented.then_some(seg))
            else {
                error(to, io::Error::from(io::ErrorKind::InvalidInput));
                pos = end;
                continue;
            };
            for (iov, &i) in iov_run.iter_mut().zip(run) {
                let at = i.saturating_mul(REPLY);
                let len = self.items.get(i).map_or(0, |it| it.0);
                if let Some(data) = self.bufs.get_mut(at..at.saturating_add(len)) {
                    *iov = libc::iovec {
                        iov_base: data.as_mut_ptr().cast(),
                        iov_len: data.len(),
                    };
                }
            }
            hdr.msg_hdr.msg_name = ptr::from_mut(name).cast();
            hdr.msg_hdr.msg_namelen = name_len;
            hdr.msg_hdr.msg_iov = iov_run.as_mut_ptr();
            hdr.msg_hdr.msg_iovlen = len_field(run.len()).ok()?;
            hdr.msg_hdr.msg_control = cmsg.as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = len_field(control_len).ok()?;
            *start = (pos, segmented);
            ready = ready.saturating_add(1);
            pos = end;
        }
        let mut at = 0usize;
        while at < ready {
            let Some(rest) = hdrs.get_mut(at..ready) else {
                break;
            };
            let Ok(count) = u32::try_from(rest.len()) else {
                break;
            };
            // SAFETY: every header up to `ready` points at its own name and control, and at
            // its own run of iovecs, each pointing at its reply's bytes, all alive for the call.
            let sent = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), count, MMSG_DONTWAIT) };
            match usize::try_from(sent) {
                Ok(0) => break,
                Ok(k) => at = at.saturating_add(k),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        break;
                    }
                    let (start, segmented) = starts.get(at).copied().unwrap_or((0, false));
                    if segmented && refused_segmentation(&e) {
                        return Some(start);
                    }
                    // The reply at `at` failed: report it and go on with the next.
                    let to = rest
                        .first()
                        .and_then(sent_to)
                        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                    error(to, e);
                    at = at.saturating_add(1);
                }
            }
        }
        None
    }
}

/// Whether a send failed because of segmentation offload (no checksum offload on the route,
/// a segment larger than the path's MTU, an old kernel), not because of its destination.
fn refused_segmentation(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT | libc::EMSGSIZE)
    )
}

fn socklen(n: usize) -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(n).map_err(io::Error::other)
}

/// Writes `to` as a socket address and `from` as packet info for `sendmsg`, and the segment
/// size when given (`UDP_SEGMENT`); returns their lengths. `None` when the families differ.
fn address(
    name: &mut libc::sockaddr_storage,
    cmsg: &mut Cmsg,
    to: SocketAddr,
    from: IpAddr,
    segment: Option<usize>,
) -> Option<(libc::socklen_t, usize)> {
    let (name_len, info_len) = address_info(name, cmsg, to, from)?;
    let Some(seg) = segment else {
        return Some((name_len, info_len));
    };
    let seg = u16::try_from(seg).ok()?;
    let room = size_of::<Cmsg>().checked_sub(info_len)?;
    // A second control message after the packet info; CMSG_SPACE keeps it aligned.
    let second = cmsg.as_mut_ptr().cast::<u8>().wrapping_add(info_len);
    // SAFETY: `second` is within the control buffer at a CMSG_SPACE boundary (aligned for
    // cmsghdr), with `room` bytes left, which write_cmsg checks the message against.
    let seg_len =
        unsafe { write_cmsg(second.cast(), libc::SOL_UDP, libc::UDP_SEGMENT, seg, room) }?;
    Some((name_len, info_len.checked_add(seg_len)?))
}

/// [`address`] without the segment size.
fn address_info(
    name: &mut libc::sockaddr_storage,
    cmsg: &mut Cmsg,
    to: SocketAddr,
    from: IpAddr,
) -> Option<(libc::socklen_t, usize)> {
    let hdr: *mut libc::cmsghdr = cmsg.as_mut_ptr().cast();
    match (to, from) {
        (SocketAddr::V4(to), IpAddr::V4(from)) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::sa_family_t::try_from(libc::AF_INET).ok()?,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*to.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            let pi = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(from).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in; the
            // control buffer is aligned for cmsghdr and has room for CMSG_SPACE(in_pktinfo).
            unsafe {
                ptr::write(ptr::from_mut(name).cast::<libc::sockaddr_in>(), sin);
                write_cmsg(
                    hdr,
                    libc::IPPROTO_IP,
                    libc::IP_PKTINFO,
                    pi,
                    size_of::<Cmsg>(),
                )
            }
            .map(|c| (socklen(size_of::<libc::sockaddr_in>()).ok(), c))
            .and_then(|(n, c)| Some((n?, c)))
        }
        (SocketAddr::V6(to), IpAddr::V6(from)) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::sa_family_t::try_from(libc::AF_INET6).ok()?,
                sin6_port: to.port().to_be(),
                sin6_flowinfo: to.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: to.ip().octets(),
                },
                sin6_scope_id: to.scope_id(),
            };
            let pi = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: from.octets(),
                },
                ipi6_ifindex: 0,
            };
            // SAFETY: as for IPv4, with sockaddr_in6 and in6_pktinfo.
            unsafe {
                ptr::write(ptr::from_mut(name).cast::<libc::sockaddr_in6>(), sin6);
                write_cmsg(
                    hdr,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_PKTINFO,
                    pi,
                    size_of::<Cmsg>(),
                )
            }
            .map(|c| (socklen(size_of::<libc::sockaddr_in6>()).ok(), c))
            .and_then(|(n, c)| Some((n?, c)))
        }
        _ => None,
    }
}

/// Writes one control message holding `data` at `hdr`, which has `room` bytes; returns its
/// length (`CMSG_SPACE`), `None` when it does not fit.
///
/// # Safety
/// `hdr` must be aligned for `cmsghdr` and have `room` writable bytes.
unsafe fn write_cmsg<T>(
    hdr: *mut libc::cmsghdr,
    level: i32,
    ty: i32,
    data: T,
    room: usize,
) -> Option<usize> {
    let len = u32::try_from(size_of::<T>()).ok()?;
    // SAFETY: the caller vouches for the room and alignment, and the space is checked against
    // the room; CMSG_LEN/CMSG_SPACE only compute.
    unsafe {
        let space = usize::try_from(libc::CMSG_SPACE(len)).ok()?;
        if space > room {
            return None;
        }
        (*hdr).cmsg_level = level;
        (*hdr).cmsg_type = ty;
        (*hdr).cmsg_len = len_field(usize::try_from(libc::CMSG_LEN(len)).ok()?).ok()?;
        ptr::write_unaligned(libc::CMSG_DATA(hdr).cast::<T>(), data);
        Some(space)
    }
}

/// The destination a prepared header names (for error messages).
fn sent_to(h: &libc::mmsghdr) -> Option<SocketAddr> {
    if h.msg_hdr.msg_name.is_null() {
        return None;
    }
    // SAFETY: a non-null name points at one of the flush's sockaddr_storage entries.
    let name = unsafe { &*h.msg_hdr.msg_name.cast::<libc::sockaddr_storage>() };
    source(name, h.msg_hdr.msg_namelen)
}

/// The socket address in `name` (`len` bytes written by the kernel), IPv4 or IPv6.
fn source(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?;
    match i32::from(name.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, of this length.
            let a = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, a sockaddr_in6.
            let a = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The destination address and ingress interface from a received message's packet info.
///
/// # Safety
/// `msg`'s control pointer and length must describe a buffer the kernel filled.
unsafe fn packet_info(msg: &libc::msghdr) -> Option<(IpAddr, u32)> {
    let mut info = None;
    // SAFETY: the caller vouches for the control buffer; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_controllen and CMSG_DATA points inside each header found.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            let data = libc::CMSG_DATA(c);
            if level == libc::IPPROTO_IP && ty == libc::IP_PKTINFO {
                let pi = ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                let dst = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                info = Some((IpAddr::V4(dst), u32::try_from(pi.ipi_ifindex).unwrap_or(0)));
            } else if level == libc::IPPROTO_IPV6 && ty == libc::IPV6_PKTINFO {
                let pi = ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                info = Some((
                    IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)),
                    pi.ipi6_ifindex,
                ));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd as _;

    /// A loopback socket with packet info on, as the server's are.
    fn server() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv4PacketInfo, &true).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    #[test]
    fn a_batch_is_received_with_packet_info_and_replied_to_in_one_call() {
        let srv = server();
        let to = srv.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        // More than a batch, of sizes from 0 up, one longer than a slot (all fit the
        // default receive buffer).
        let sizes: Vec<usize> = (0..BATCH + 5)
            .map(|i| if i == 3 { SLOT + 600 } else { (i * 37) % 700 })
            .collect();
        for (i, &n) in sizes.iter().enumerate() {
            let p = vec![u8::try_from(i).unwrap(); n];
            client.send_to(&p, to).unwrap();
        }
        let mut inbox = Inbox::new();
        assert_eq!(inbox.recv(srv.as_raw_fd()).unwrap(), BATCH);
        let got: Vec<(Vec<u8>, Datagram)> =
            inbox.datagrams().map(|(b, d)| (b.to_vec(), *d)).collect();
        assert_eq!(got.len(), BATCH);
        for (i, (bytes, d)) in got.iter().enumerate() {
            assert_eq!(bytes.len(), sizes[i].min(SLOT), "datagram {i}");
            assert!(bytes.iter().all(|b| usize::from(*b) == i));
            assert_eq!(d.src, client.local_addr().unwrap());
            assert_eq!(d.dst, IpAddr::from([127, 0, 0, 1]));
            assert!(d.ifindex > 0);
        }
        assert_eq!(inbox.recv(srv.as_raw_fd()).unwrap(), 5);
        let e = inbox.recv(srv.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);

        // Replies, one of them to the wrong family (reported, skipped): the others arrive
        // in order, from the address given.
        let mut out = Outbox::new();
        let me = client.local_addr().unwrap();
        let from = IpAddr::from([127, 0, 0, 1]);
        for i in 0..4u8 {
            assert!(out.push(&[i; 10], me, from));
        }
        out.commit(0, me, IpAddr::from(Ipv6Addr::LOCALHOST));
        let slot = out.slot().unwrap();
        slot[..3].copy_from_slice(b"end");
        out.commit(3, me, from);
        assert!(!out.push(&[0; REPLY + 1], me, from));
        let mut errors = vec![];
        out.flush(srv.as_raw_fd(), |to, e| errors.push((to, e.kind())));
        assert_eq!(errors, [(me, io::ErrorKind::InvalidInput)]);
        let mut buf = [0u8; 64];
        for i in 0..4u8 {
            let (n, peer) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], peer), (&[i; 10][..], to));
        }
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"end");
    }

    #[test]
    fn replies_to_one_client_are_sent_segmented_and_arrive_one_by_one() {
        segmented(IpAddr::from(Ipv4Addr::LOCALHOST));
        // IPv6 too, where loopback has it.
        if UdpSocket::bind("[::1]:0").is_ok() {
            segmented(IpAddr::from(Ipv6Addr::LOCALHOST));
        }
    }

    fn segmented(from: IpAddr) {
        let srv = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        srv.set_nonblocking(true).unwrap();
        let to = srv.local_addr().unwrap();
        let a = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        let b = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        for c in [&a, &b] {
            c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
        }
        let mut out = Outbox::new();
        // To a: six of 40 bytes, then a shorter one, then one longer (a message of its
        // own); to b, interleaved: three of 39 bytes.
        let mut want_a = vec![];
        let mut want_b = vec![];
        for i in 0..6u8 {
            let r = [i; 40];
            assert!(out.push(&r, a.local_addr().unwrap(), from));
            want_a.push(r.to_vec());
            if i % 2 == 0 {
                let r = [100 + i; 39];
                assert!(out.push(&r, b.local_addr().unwrap(), from));
                want_b.push(r.to_vec());
            }
        }
        for r in [vec![7u8; 12], vec![8u8; 300]] {
            assert!(out.push(&r, a.local_addr().unwrap(), from));
            want_a.push(r);
        }
        out.flush(srv.as_raw_fd(), |to, e| panic!("{to}: {e}"));
        assert!(out.gso, "segmentation refused on loopback");
        let mut buf = [0u8; 2048];
        for (c, want) in [(&a, want_a), (&b, want_b)] {
            for w in want {
                let (n, peer) = c.recv_from(&mut buf).unwrap();
                assert_eq!((&buf[..n], peer), (&w[..], to));
            }
            c.set_nonblocking(true).unwrap();
            assert!(c.recv_from(&mut buf).is_err(), "one datagram too many");
        }
    }
}

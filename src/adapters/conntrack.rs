//! The connection tracking table over ctnetlink: dumping its entries (both families) and
//! deleting them, in the network namespace of the *calling thread* (the netlink socket is
//! created on it).
//!
//! The messages are built and parsed by hand (`nfnetlink` + `nf_conntrack_netlink.h`): only
//! the original tuple, the source of the reply tuple and the protocol number are decoded. An
//! entry keeps its original tuple exactly as the kernel sent it, so it can be deleted by
//! sending the tuple back.
//!
//! Conntrack may be absent (module not loaded, or no rule of the namespace uses it yet): a dump
//! is then empty rather than an error.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::libc_consts::{AF_INET, AF_INET6, AF_UNSPEC};
use super::nla::{
    attrs, error_code, find_attr, messages, raw_attrs, Writer, NLMSG_DONE, NLMSG_ERROR,
};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NFGENMSG_LEN: usize = 4;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// One entry of the connection tracking table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    /// `AF_INET` or `AF_INET6`, from the entry's `nfgenmsg`.
    pub family: u8,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...); 0 if the kernel did not say.
    pub proto: u8,
    /// Source of the original direction.
    pub src: IpAddr,
    /// Destination of the original direction (before DNAT).
    pub dst: IpAddr,
    /// Source port of the original direction (0 for protocols without ports).
    pub sport: u16,
    /// Destination port of the original direction (0 for protocols without ports).
    pub dport: u16,
    /// Source of the reply tuple: after DNAT, the real server address.
    pub reply_src: Option<IpAddr>,
    /// The `CTA_TUPLE_ORIG` attribute (header and payload) exactly as received, for deletion.
    orig_raw: Vec<u8>,
}

#[cfg(test)]
impl CtEntry {
    /// A TCP/IPv4-or-IPv6 entry without reply tuple, for other modules' unit tests.
    pub(crate) fn for_test(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> CtEntry {
        CtEntry {
            family: if src.is_ipv4() { AF_INET } else { AF_INET6 },
            proto: 6,
            src,
            dst,
            sport,
            dport,
            reply_src: None,
            orig_raw: Vec::new(),
        }
    }
}

/// Dumps the connection tracking table of the calling thread's network namespace (both
/// families). Empty when conntrack is not available there.
pub fn dump() -> io::Result<Vec<CtEntry>> {
    match Ctnetlink::open() {
        Ok(mut ct) => ct.dump(),
        Err(e) if is_absent(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Deletes one entry (`IPCTNL_MSG_CT_DELETE` with its original tuple) from the calling
/// thread's network namespace. An entry that is already gone is not an error.
pub fn delete(entry: &CtEntry) -> io::Result<()> {
    Ctnetlink::open()?.delete(entry)
}

/// Deletes every entry of the calling thread's network namespace whose original destination
/// or reply source is one of `addrs` (connections to a sandbox, directly or through a
/// published port's DNAT), and returns how many were deleted. Entries that vanished meanwhile
/// are not counted.
pub fn forget(addrs: &[IpAddr]) -> io::Result<usize> {
    if addrs.is_empty() {
        return Ok(0);
    }
    let mut ct = match Ctnetlink::open() {
        Ok(ct) => ct,
        Err(e) if is_absent(&e) => return Ok(0),
        Err(e) => return Err(e),
    };
    let wanted = |a: &IpAddr| addrs.iter().any(|x| x.to_canonical() == a.to_canonical());
    let mut deleted = 0;
    for addr in addrs {
        // A connection to the sandbox, direct or through DNAT, has it as the source of its
        // reply tuple: let the kernel select those (CTA_FILTER), rather than formatting and
        // sending the whole table, which on a busy host holds tens of thousands of entries.
        let entries = match ct.dump_filtered(*addr) {
            Ok(e) => e,
            // Kernels without dump filters: the whole table, filtered here.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => ct.dump()?,
            Err(e) => return Err(e),
        };
        for entry in entries
            .iter()
            .filter(|e| wanted(&e.dst) || e.reply_src.as_ref().is_some_and(wanted))
        {
            if ct.delete_one(entry)? {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// A ctnetlink socket of the calling thread's network namespace.
struct Ctnetlink {
    socket: Socket,
    seq: u32,
}

impl Ctnetlink {
    fn open() -> io::Result<Ctnetlink> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        Ok(Ctnetlink { socket, seq: 0 })
    }

    /// Sends one ctnetlink request (`nlmsghdr` + `nfgenmsg` + `attributes`); returns its
    /// sequence number.
    fn send(&mut self, msg: u16, flags: u16, family: u8, attributes: &[u8]) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let req = request(msg, flags, self.seq, family, attributes);
        self.socket.send_to(&req, &SocketAddr::new(0, 0), 0)?;
        Ok(self.seq)
    }

    fn recv(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.socket.recv_from_full() {
                Ok((buf, _)) => return Ok(buf),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Every entry, both families. Empty when conntrack is absent.
    fn dump(&mut self) -> io::Result<Vec<CtEntry>> {
        self.dump_with(AF_UNSPEC, &[])
    }

    /// The entries whose reply tuple has source `addr`, selected by the kernel.
    fn dump_filtered(&mut self, addr: IpAddr) -> io::Result<Vec<CtEntry>> {
        let (family, kind, bytes) = match addr.to_canonical() {
            IpAddr::V4(a) => (AF_INET, CTA_IP_V4_SRC, a.octets().to_vec()),
            IpAddr::V6(a) => (AF_INET6, CTA_IP_V6_SRC, a.octets().to_vec()),
        };
        const CTA_FILTER: u16 = 25;
        const CTA_FILTER_REPLY_FLAGS: u16 = 2;
        const CTA_FILTER_FLAG_CTA_IP_SRC: u32 = 1 << 0;
        let mut w = Writer::default();
        let reply = w.nest_start(CTA_TUPLE_REPLY);
        let ip = w.nest_start(CTA_TUPLE_IP);
        w.put(kind, &bytes);
        w.nest_end(ip);
        w.nest_end(reply);
        let filter = w.nest_start(CTA_FILTER);
        w.put(
            CTA_FILTER_REPLY_FLAGS,
            &CTA_FILTER_FLAG_CTA_IP_SRC.to_ne_bytes(),
        );
        w.nest_end(filter);
        self.dump_with(family, &w.buf)
    }

    /// A dump of one family (`AF_UNSPEC`: all) with optional filter attributes.
    fn dump_with(&mut self, family: u8, attributes: &[u8]) -> io::Result<Vec<CtEntry>> {
        let absent_or = |e: io::Error| {
            if is_absent(&e) {
                Ok(Vec::new())
            } else {
                Err(e)
            }
        };
        let msg = IPCTNL_MSG_CT_GET;
        if let Err(e) = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP, family, attributes) {
            return absent_or(e);
        }
        let mut entries = Vec::new();
        loop {
            let buf = match self.recv() {
                Ok(buf) => buf,
                Err(e) => return absent_or(e),
            };
            if buf.is_empty() {
                break;
            }
            match parse_ct_datagram(&buf, &mut entries) {
                CtChunk::More => {}
                CtChunk::Done => break,
                CtChunk::Error(errno) => return absent_or(io::Error::from_raw_os_error(errno)),
            }
        }
        Ok(entries)
    }

    fn delete(&mut self, entry: &CtEntry) -> io::Result<()> {
        self.delete_one(entry).map(|_| ())
    }

    /// Deletes `entry`; `Ok(false)` when it was already gone.
    fn delete_one(&mut self, entry: &CtEntry) -> io::Result<bool> {
        let seq = self.send(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            entry.family,
            &entry.orig_raw,
        )?;
        loop {
            let buf = self.recv()?;
            if buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "ctnetlink closed before acknowledging a deletion",
                ));
            }
            match parse_ack(&buf, seq) {
                Some(0) => return Ok(true),
                Some(libc::ENOENT) => return Ok(false),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                // Not the answer to this request (a late part of an earlier one): next.
                None => {}
            }
        }
    }
}

/// Whether an error means "conntrack is not available here".
fn is_absent(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(conntrack_absent)
}

/// Whether an errno means "conntrack is not available here".
fn conntrack_absent(errno: i32) -> bool {
    matches!(
        errno,
        libc::EPROTONOSUPPORT | libc::ENOENT | libc::EOPNOTSUPP | libc::EAFNOSUPPORT
    )
}

/// One ctnetlink request: `nlmsghdr`, `nfgenmsg` (`family`, version `NFNETLINK_V0`, res_id
/// 0), then `attributes` (padded to 4 bytes).
fn request(msg: u16, flags: u16, seq: u32, family: u8, attributes: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    let m = w.begin_msg((NFNL_SUBSYS_CTNETLINK << 8) | msg, flags, seq, family, 0);
    w.raw(attributes);
    w.end_msg(m);
    w.buf
}

/// Source and destination of a `CTA_TUPLE_IP` payload.
fn tuple_addrs(ip: &[u8]) -> (Option<IpAddr>, Option<IpAddr>) {
    let mut src = None;
    let mut dst = None;
    for (kind, p) in attrs(ip) {
        let addr = match (kind, p.len()) {
            (CTA_IP_V4_SRC | CTA_IP_V4_DST, 4) => {
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(p).expect("4 bytes")))
            }
            (CTA_IP_V6_SRC | CTA_IP_V6_DST, 16) => {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p).expect("16 bytes")))
            }
            _ => continue,
        };
        match kind {
            CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = Some(addr),
            _ => dst = Some(addr),
        }
    }
    (src, dst)
}

/// Parses one `IPCTNL_MSG_CT_NEW` message: its `nfgenmsg` family and its attributes.
fn parse_ct_entry(family: u8, attributes: &[u8]) -> Option<CtEntry> {
    let (_, orig, orig_raw) = raw_attrs(attributes).find(|(k, _, _)| *k == CTA_TUPLE_ORIG)?;
    let (src, dst) = tuple_addrs(find_attr(orig, CTA_TUPLE_IP)?);
    let proto = find_attr(orig, CTA_TUPLE_PROTO);
    let port = |kind| {
        proto
            .and_then(|p| find_attr(p, kind))
            .filter(|p| p.len() == 2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .unwrap_or(0)
    };
    let reply_src = find_attr(attributes, CTA_TUPLE_REPLY)
        .and_then(|reply| find_attr(reply, CTA_TUPLE_IP))
        .and_then(|ip| tuple_addrs(ip).0);
    Some(CtEntry {
        family,
        proto: proto
            .and_then(|p| find_attr(p, CTA_PROTO_NUM))
            .and_then(|n| n.first().copied())
            .unwrap_or(0),
        src: src?,
        dst: dst?,
        sport: port(CTA_PROTO_SRC_PORT),
        dport: port(CTA_PROTO_DST_PORT),
        reply_src,
        orig_raw: orig_raw.to_vec(),
    })
}

/// What one datagram of a dump said.
#[derive(Debug, PartialEq, Eq)]
enum CtChunk {
    /// More messages follow.
    More,
    /// `NLMSG_DONE` was seen.
    Done,
    /// An `NLMSG_ERROR` with this (positive) errno.
    Error(i32),
}

/// The netlink message type of a conntrack entry in a dump.
const CT_NEW: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;

/// Parses the netlink messages of one datagram of a dump, pushing the entries found.
fn parse_ct_datagram(buf: &[u8], entries: &mut Vec<CtEntry>) -> CtChunk {
    for m in messages(buf) {
        let payload = m.payload;
        match m.msg_type {
            NLMSG_DONE => return CtChunk::Done,
            NLMSG_ERROR => match error_code(payload) {
                0 => {}
                errno => return CtChunk::Error(errno),
            },
            CT_NEW => {
                if let Some(e) = payload
                    .get(NFGENMSG_LEN..)
                    .and_then(|attributes| parse_ct_entry(payload[0], attributes))
                {
                    entries.push(e);
                }
            }
            _ => {}
        }
    }
    CtChunk::More
}

/// The errno (0: success) of the `NLMSG_ERROR` answering request `seq` in one datagram.
fn parse_ack(buf: &[u8], seq: u32) -> Option<i32> {
    messages(buf)
        .find(|m| m.msg_type == NLMSG_ERROR && m.seq == seq)
        .map(|m| error_code(m.payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::nla::NLMSG_HDRLEN;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(u16::try_from(4 + payload.len()).unwrap()).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn nested(kind: u16, children: &[Vec<u8>]) -> Vec<u8> {
        nla(kind | 0x8000, &children.concat())
    }

    fn ips(src: IpAddr, dst: IpAddr) -> Vec<Vec<u8>> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => vec![
                nla(CTA_IP_V4_SRC, &s.octets()),
                nla(CTA_IP_V4_DST, &d.octets()),
            ],
            (IpAddr::V6(s), IpAddr::V6(d)) => vec![
                nla(CTA_IP_V6_SRC, &s.octets()),
                nla(CTA_IP_V6_DST, &d.octets()),
            ],
            _ => unreachable!(),
        }
    }

    fn tuple(kind: u16, src: IpAddr, dst: IpAddr, sp: u16, dp: u16) -> Vec<u8> {
        nested(
            kind,
            &[
                nested(CTA_TUPLE_IP, &ips(src, dst)),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        nla(CTA_PROTO_NUM, &[6]),
                        nla(CTA_PROTO_SRC_PORT | 0x4000, &sp.to_be_bytes()),
                        nla(CTA_PROTO_DST_PORT | 0x4000, &dp.to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    /// A `IPCTNL_MSG_CT_NEW` message of family `family`: original tuple `src:sport ->
    /// dst:dport`, reply tuple from `reply_src` (the real server after DNAT) back to `src`.
    fn ct_message(
        family: u8,
        (src, sport): (IpAddr, u16),
        (dst, dport): (IpAddr, u16),
        reply_src: IpAddr,
    ) -> (Vec<u8>, Vec<u8>) {
        let orig = tuple(CTA_TUPLE_ORIG, src, dst, sport, dport);
        let mut attributes = orig.clone();
        attributes.extend(tuple(CTA_TUPLE_REPLY, reply_src, src, dport, sport));
        // CTA_STATUS (3), a plain u32.
        attributes.extend(nla(3, &8u32.to_be_bytes()));
        (
            request(IPCTNL_MSG_CT_NEW, 0x2, 1, family, &attributes),
            orig,
        )
    }

    fn nlmsg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(
            &u32::try_from(NLMSG_HDRLEN + payload.len())
                .unwrap()
                .to_ne_bytes(),
        );
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        msg
    }

    #[test]
    fn parses_conntrack_dump() {
        let af4 = AF_INET;
        let af6 = AF_INET6;
        // A connection to a published port: DNAT to 10.1.0.5.
        let (mut datagram, orig4) = ct_message(
            af4,
            (ip("172.22.5.10"), 51000),
            (ip("172.42.10.112"), 8080),
            ip("10.1.0.5"),
        );
        let (m6, orig6) = ct_message(
            af6,
            (ip("fd00::1"), 40000),
            (ip("2001:db8::5"), 443),
            ip("2001:db8::5"),
        );
        datagram.extend(m6);
        let mut entries = Vec::new();
        assert_eq!(parse_ct_datagram(&datagram, &mut entries), CtChunk::More);
        assert_eq!(
            entries,
            [
                CtEntry {
                    family: af4,
                    proto: 6,
                    src: ip("172.22.5.10"),
                    dst: ip("172.42.10.112"),
                    sport: 51000,
                    dport: 8080,
                    reply_src: Some(ip("10.1.0.5")),
                    orig_raw: orig4.clone(),
                },
                CtEntry {
                    family: af6,
                    proto: 6,
                    src: ip("fd00::1"),
                    dst: ip("2001:db8::5"),
                    sport: 40000,
                    dport: 443,
                    reply_src: Some(ip("2001:db8::5")),
                    orig_raw: orig6,
                },
            ]
        );
        // The flag bits of the original tuple are kept, for sending it back.
        assert_eq!(
            u16::from_ne_bytes([entries[0].orig_raw[2], entries[0].orig_raw[3]]),
            CTA_TUPLE_ORIG | 0x8000
        );

        let done = nlmsg(NLMSG_DONE, 1, &0i32.to_ne_bytes());
        assert_eq!(parse_ct_datagram(&done, &mut entries), CtChunk::Done);
        let err = nlmsg(NLMSG_ERROR, 1, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(
            parse_ct_datagram(&err, &mut entries),
            CtChunk::Error(libc::ENOENT)
        );
        assert!(conntrack_absent(libc::ENOENT));
        assert!(!conntrack_absent(libc::EPERM));
        // Truncated input is ignored, not a panic.
        let (mut short, _) = ct_message(
            af4,
            (ip("10.0.0.1"), 1),
            (ip("10.0.0.2"), 2),
            ip("10.0.0.2"),
        );
        short.truncate(30);
        let before = entries.len();
        assert_eq!(parse_ct_datagram(&short, &mut entries), CtChunk::More);
        assert_eq!(entries.len(), before);
    }

    #[test]
    fn entry_without_ports_or_reply_reports_zero_and_none() {
        let ips = [
            nla(CTA_IP_V4_SRC, &[192, 0, 2, 9]),
            nla(CTA_IP_V4_DST, &[10, 1, 1, 1]),
        ];
        let attributes = nested(CTA_TUPLE_ORIG, &[nested(CTA_TUPLE_IP, &ips)]);
        let e = parse_ct_entry(AF_INET, &attributes).unwrap();
        assert_eq!((e.sport, e.dport, e.proto), (0, 0, 0));
        assert_eq!(e.src, ip("192.0.2.9"));
        assert_eq!(e.reply_src, None);
    }

    #[test]
    fn delete_request_sends_the_original_tuple_back() {
        let (msg, orig) = ct_message(
            AF_INET6,
            (ip("fd00::1"), 40000),
            (ip("fd00::2"), 53),
            ip("fd00::2"),
        );
        let mut entries = Vec::new();
        parse_ct_datagram(&msg, &mut entries);
        let entry = &entries[0];
        let req = request(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            7,
            entry.family,
            &entry.orig_raw,
        );
        assert_eq!(req.len(), NLMSG_HDRLEN + NFGENMSG_LEN + orig.len());
        assert_eq!(
            usize::try_from(u32::from_ne_bytes(req[0..4].try_into().unwrap())).unwrap(),
            req.len()
        );
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), (1 << 8) | 2);
        assert_eq!(u16::from_ne_bytes([req[6], req[7]]), 0x5);
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 7);
        assert_eq!(req[16], AF_INET6);
        assert_eq!(&req[NLMSG_HDRLEN + NFGENMSG_LEN..], &orig[..]);

        // Acknowledgements are matched by sequence number.
        let mut acks = nlmsg(NLMSG_ERROR, 6, &(-libc::EPERM).to_ne_bytes());
        acks.extend(nlmsg(NLMSG_ERROR, 7, &0i32.to_ne_bytes()));
        assert_eq!(parse_ack(&acks, 7), Some(0));
        assert_eq!(parse_ack(&acks, 6), Some(libc::EPERM));
        assert_eq!(parse_ack(&acks, 8), None);
    }
}

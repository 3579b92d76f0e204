//! Observes the network namespace weft runs in, read-only, for IPAM: routes of every routing
//! table, interface addresses, peers of established TCP connections and of the connection
//! tracking table. See [`crate::core::ipam`] for how these facts are used.
//!
//! Everything is read in the network namespace of the *calling thread*: the netlink sockets are
//! created on it, and TCP sockets are read from `/proc/thread-self/net` (not `/proc/net`, which
//! follows the namespace of the process's main thread).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteVia,
};
use netlink_packet_route::AddressFamily;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::core::ipam::{AddrFact, HostView, PeerFact, PeerSource, RouteFact};

/// Why the host could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum HostFactsError {
    /// The tokio runtime for the netlink requests could not be built.
    #[error("cannot start a runtime for netlink requests: {0}")]
    Runtime(#[source] io::Error),
    /// The route netlink socket could not be opened.
    #[error("cannot open a route netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// A netlink dump failed.
    #[error("cannot list the host's {what} over netlink: {source}")]
    Netlink {
        /// `links`, `addresses`, `IPv4 routes`, `IPv6 routes`.
        what: &'static str,
        /// The failure.
        #[source]
        source: rtnetlink::Error,
    },
    /// A procfs file could not be read.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The file.
        path: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The conntrack dump failed for a reason other than conntrack being absent.
    #[error("cannot dump the connection tracking table over ctnetlink: {0}")]
    Conntrack(#[source] io::Error),
}

/// Observes the network namespace of the calling thread: routes of all tables (both families),
/// addresses of all interfaces, peers of established TCP connections, then peers of the
/// connection tracking table (empty when conntrack is not available). Peers are deduplicated.
pub fn observe() -> Result<HostView, HostFactsError> {
    // A current-thread runtime runs everything on this thread, so the netlink socket created
    // inside `block_on` belongs to this thread's network namespace.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(HostFactsError::Runtime)?;
    let (routes, addresses) = rt.block_on(dump_rtnetlink())?;
    drop(rt);

    let mut peers = Vec::new();
    for (path, v6) in [
        ("/proc/thread-self/net/tcp", false),
        ("/proc/thread-self/net/tcp6", true),
    ] {
        match std::fs::read_to_string(path) {
            Ok(text) => peers.extend(parse_proc_net_tcp(&text, v6)),
            // No IPv6 in this kernel: no tcp6 file.
            Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(HostFactsError::Proc {
                    path: path.to_string(),
                    source,
                })
            }
        }
    }
    let local: HashSet<IpAddr> = addresses.iter().map(|a| a.addr.addr()).collect();
    peers.extend(conntrack_peers(&local)?);

    let mut seen = HashSet::new();
    peers.retain(|p| seen.insert(p.clone()));
    Ok(HostView {
        routes,
        addresses,
        peers,
    })
}

async fn dump_rtnetlink() -> Result<(Vec<RouteFact>, Vec<AddrFact>), HostFactsError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(HostFactsError::Socket)?;
    let conn_task = tokio::spawn(conn);
    let result = async {
        let netlink = |what| move |source| HostFactsError::Netlink { what, source };

        let mut names: HashMap<u32, String> = HashMap::new();
        let mut links = handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(netlink("links"))? {
            for attr in &link.attributes {
                if let LinkAttribute::IfName(name) = attr {
                    names.insert(link.header.index, name.clone());
                }
            }
        }

        let mut addresses = Vec::new();
        let mut addrs = handle.address().get().execute();
        while let Some(msg) = addrs.try_next().await.map_err(netlink("addresses"))? {
            if let Some(fact) = addr_fact(&msg, &names) {
                addresses.push(fact);
            }
        }

        let mut routes = Vec::new();
        for (family, what) in [
            (AddressFamily::Inet, "IPv4 routes"),
            (AddressFamily::Inet6, "IPv6 routes"),
        ] {
            let mut req = RouteMessage::default();
            req.header.address_family = family;
            req.header.table = RouteHeader::RT_TABLE_UNSPEC;
            let mut stream = handle.route().get(req).execute();
            while let Some(msg) = stream.try_next().await.map_err(netlink(what))? {
                if let Some(fact) = route_fact(&msg, &names) {
                    routes.push(fact);
                }
            }
        }
        Ok((routes, addresses))
    }
    .await;
    conn_task.abort();
    result
}

/// An interface address: `IFA_LOCAL` when present (on point-to-point links `IFA_ADDRESS` is the
/// remote end), else `IFA_ADDRESS`, with the header's prefix length.
fn addr_fact(msg: &AddressMessage, names: &HashMap<u32, String>) -> Option<AddrFact> {
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    let addr = IpNet::new(ip, msg.header.prefix_len).ok()?;
    let dev = names
        .get(&msg.header.index)
        .cloned()
        .unwrap_or_else(|| format!("if{}", msg.header.index));
    Some(AddrFact { addr, dev })
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// One route: destination (the family's default prefix when absent), table (`RTA_TABLE` when
/// present, else the header's 8-bit field), output device and next hop (of the first next hop
/// for a multipath route).
fn route_fact(msg: &RouteMessage, names: &HashMap<u32, String>) -> Option<RouteFact> {
    let h = &msg.header;
    let unspecified = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut dst = unspecified;
    let mut table = u32::from(h.table);
    let mut oif = None;
    let mut gateway = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_address(a)?,
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(a) => gateway = route_address(a),
            RouteAttribute::Via(RouteVia::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
            RouteAttribute::MultiPath(hops) => {
                if let Some(hop) = hops.first() {
                    oif = oif.or(Some(hop.interface_index));
                    for a in &hop.attributes {
                        match a {
                            RouteAttribute::Gateway(g) if gateway.is_none() => {
                                gateway = route_address(g)
                            }
                            RouteAttribute::Via(RouteVia::Inet(g)) if gateway.is_none() => {
                                gateway = Some(IpAddr::V4(*g))
                            }
                            RouteAttribute::Via(RouteVia::Inet6(g)) if gateway.is_none() => {
                                gateway = Some(IpAddr::V6(*g))
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let dst = IpNet::new(dst, h.destination_prefix_length).ok()?.trunc();
    let dev = oif
        .filter(|i| *i != 0)
        .map(|i| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}")));
    Some(RouteFact {
        dst,
        table,
        dev,
        gateway,
    })
}

// ---------------------------------------------------------------------------------------------
// /proc/net/tcp
// ---------------------------------------------------------------------------------------------

/// TCP state `ESTABLISHED` in `/proc/net/tcp*`.
const TCP_ESTABLISHED: u8 = 0x01;

/// Parses `ADDR:PORT` of `/proc/net/tcp` (`v6 = false`: 8 hex digits) or `/proc/net/tcp6`
/// (32 hex digits). The kernel prints each 32-bit word of the address as a native-endian
/// integer, so every word's bytes are recovered with `to_ne_bytes`; the port is plain hex.
fn parse_endpoint(field: &str, v6: bool) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut octets = [0u8; 16];
        for i in 0..4 {
            octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(octets)).to_canonical()
    } else {
        if addr.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some((ip, port))
}

/// Peers of the established connections listed in the text of `/proc/net/tcp` (`v6 = false`)
/// or `/proc/net/tcp6` (`v6 = true`). IPv4-mapped IPv6 peers are reported as IPv4. Lines that
/// do not parse (the header) are skipped.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<PeerFact> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_sl), Some(local), Some(remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if u8::from_str_radix(state, 16).ok() != Some(TCP_ESTABLISHED) {
            continue;
        }
        let (Some((_, local_port)), Some((addr, remote_port))) =
            (parse_endpoint(local, v6), parse_endpoint(remote, v6))
        else {
            continue;
        };
        out.push(PeerFact {
            addr,
            local_port,
            remote_port,
            source: PeerSource::Tcp,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// ctnetlink
// ---------------------------------------------------------------------------------------------

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const NFGENMSG_LEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff; // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Netlink attributes (`type` without flag bits, payload) of `buf`; stops at the first
/// malformed one.
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return None;
        }
        let payload = &rest[4..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((kind, payload))
    })
}

fn find_attr(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

/// The original direction of one conntrack entry: source, destination and ports (0 for
/// protocols without ports).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CtTuple {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

/// Parses the attributes (after the `nfgenmsg`) of one `IPCTNL_MSG_CT_NEW` message.
fn parse_ct_entry(attributes: &[u8]) -> Option<CtTuple> {
    let orig = find_attr(attributes, CTA_TUPLE_ORIG)?;
    let ip = find_attr(orig, CTA_TUPLE_IP)?;
    let mut src = None;
    let mut dst = None;
    for (kind, p) in attrs(ip) {
        let addr = match (kind, p.len()) {
            (CTA_IP_V4_SRC | CTA_IP_V4_DST, 4) => {
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(p).ok()?))
            }
            (CTA_IP_V6_SRC | CTA_IP_V6_DST, 16) => {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p).ok()?))
            }
            _ => continue,
        };
        match kind {
            CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = Some(addr),
            _ => dst = Some(addr),
        }
    }
    let port = |kind| {
        find_attr(orig, CTA_TUPLE_PROTO)
            .and_then(|proto| find_attr(proto, kind))
            .filter(|p| p.len() == 2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .unwrap_or(0)
    };
    Some(CtTuple {
        src: src?,
        dst: dst?,
        sport: port(CTA_PROTO_SRC_PORT),
        dport: port(CTA_PROTO_DST_PORT),
    })
}

/// Whether an address names a group rather than a peer (multicast, IPv4 broadcast).
fn is_group(a: &IpAddr) -> bool {
    match a.to_canonical() {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

/// The peers of one entry: its addresses that are not in `local`. Entries to or from a
/// multicast or broadcast group (IGMP reports, mDNS, DHCP) are not conversations with a peer
/// and are skipped, as their unicast side may be an address this host no longer has.
fn ct_peers(t: &CtTuple, local: &HashSet<IpAddr>) -> Vec<PeerFact> {
    let mut out = Vec::new();
    if is_group(&t.src) || is_group(&t.dst) {
        return out;
    }
    if !local.contains(&t.src) {
        out.push(PeerFact {
            addr: t.src.to_canonical(),
            local_port: t.dport,
            remote_port: t.sport,
            source: PeerSource::Conntrack,
        });
    }
    if !local.contains(&t.dst) {
        out.push(PeerFact {
            addr: t.dst.to_canonical(),
            local_port: t.sport,
            remote_port: t.dport,
            source: PeerSource::Conntrack,
        });
    }
    out
}

/// What one datagram of the dump said.
#[derive(Debug, PartialEq, Eq)]
enum CtChunk {
    /// More messages follow.
    More,
    /// `NLMSG_DONE` was seen.
    Done,
    /// An `NLMSG_ERROR` with this (positive) errno.
    Error(i32),
}

/// Parses the netlink messages of one datagram, pushing the entries found.
fn parse_ct_datagram(buf: &[u8], entries: &mut Vec<CtTuple>) -> CtChunk {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return CtChunk::Done,
            NLMSG_ERROR => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if code != 0 {
                    return CtChunk::Error(-code);
                }
            }
            k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                if let Some(t) = payload.get(NFGENMSG_LEN..).and_then(parse_ct_entry) {
                    entries.push(t);
                }
            }
            _ => {}
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    CtChunk::More
}

/// Whether an errno means "conntrack is not available here".
fn conntrack_absent(errno: i32) -> bool {
    matches!(
        errno,
        libc::EPROTONOSUPPORT | libc::ENOENT | libc::EOPNOTSUPP | libc::EAFNOSUPPORT
    )
}

/// Dumps the connection tracking table of the calling thread's namespace (both families) and
/// returns the peers that are not local addresses. Empty when conntrack is absent.
fn conntrack_peers(local: &HashSet<IpAddr>) -> Result<Vec<PeerFact>, HostFactsError> {
    let absent_or = |e: io::Error| -> Result<Vec<PeerFact>, HostFactsError> {
        match e.raw_os_error() {
            Some(errno) if conntrack_absent(errno) => Ok(Vec::new()),
            _ => Err(HostFactsError::Conntrack(e)),
        }
    };
    let mut socket = match Socket::new(NETLINK_NETFILTER) {
        Ok(s) => s,
        Err(e) => return absent_or(e),
    };
    if let Err(e) = socket.bind_auto() {
        return absent_or(e);
    }
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + NFGENMSG_LEN);
    let total = (NLMSG_HDRLEN + NFGENMSG_LEN) as u32;
    req.extend_from_slice(&total.to_ne_bytes());
    req.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
                                                // nfgenmsg: family AF_UNSPEC (every family), version NFNETLINK_V0, res_id 0.
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    if let Err(e) = socket.send_to(&req, &SocketAddr::new(0, 0), 0) {
        return absent_or(e);
    }
    let mut entries = Vec::new();
    loop {
        let buf = match socket.recv_from_full() {
            Ok((buf, _)) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
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
    Ok(entries.iter().flat_map(|t| ct_peers(t, local)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The kernel's hex form of an IPv4 address in `/proc/net/tcp`.
    fn hex4(a: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(a.octets()))
    }

    /// The kernel's hex form of an IPv6 address in `/proc/net/tcp6`.
    fn hex6(a: Ipv6Addr) -> String {
        a.octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect()
    }

    #[test]
    fn parses_proc_net_tcp_v4() {
        // Real lines from a little-endian machine; the hex is generated for other endiannesses.
        let text = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            \x20  0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
            \x20  1: {}:0016 {}:C822 01 00000000:00000000 02:000A7B1E 00000000     0        0 2 4 0 20 4 30 10 -1\n\
            \x20  2: {}:A1B2 {}:01BB 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 0 0 0 0 0\n\
            garbage line\n",
            hex4(Ipv4Addr::new(172, 42, 10, 112)),
            hex4(Ipv4Addr::new(172, 22, 5, 10)),
            hex4(Ipv4Addr::new(10, 0, 0, 1)),
            hex4(Ipv4Addr::new(10, 0, 0, 2)),
        );
        let peers = parse_proc_net_tcp(&text, false);
        assert_eq!(
            peers,
            [PeerFact {
                addr: ip("172.22.5.10"),
                local_port: 22,
                remote_port: 0xC822,
                source: PeerSource::Tcp,
            }]
        );
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_endpoint("0100007F:0050", false),
                Some((ip("127.0.0.1"), 80))
            );
            assert_eq!(
                parse_endpoint("0A052AAC:0016", false),
                Some((ip("172.42.5.10"), 22))
            );
        }
    }

    #[test]
    fn parses_proc_net_tcp_v6_and_mapped() {
        let text = format!(
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            \x20  0: {}:1F90 {}:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n\
            \x20  1: {}:0016 {}:E000 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n",
            hex6("fd00::1".parse().unwrap()),
            hex6("fd00:42::9".parse().unwrap()),
            hex6("::ffff:172.42.10.112".parse().unwrap()),
            hex6("::ffff:172.22.5.10".parse().unwrap()),
        );
        let peers = parse_proc_net_tcp(&text, true);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].addr, ip("fd00:42::9"));
        assert_eq!(peers[0].local_port, 8080);
        assert_eq!(peers[1].addr, ip("172.22.5.10"));
        assert_eq!(peers[1].local_port, 22);
        if cfg!(target_endian = "little") {
            // ::1 as the kernel prints it on x86.
            assert_eq!(
                parse_endpoint("00000000000000000000000001000000:0050", true),
                Some((ip("::1"), 80))
            );
        }
        assert_eq!(parse_endpoint("0100007F:0050", true), None);
        assert_eq!(parse_endpoint("0100007F", false), None);
        assert_eq!(parse_endpoint("0100007G:0050", false), None);
    }

    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
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

    fn ct_message(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
        let ips = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => vec![
                nla(CTA_IP_V4_SRC, &s.octets()),
                nla(CTA_IP_V4_DST, &d.octets()),
            ],
            (IpAddr::V6(s), IpAddr::V6(d)) => vec![
                nla(CTA_IP_V6_SRC, &s.octets()),
                nla(CTA_IP_V6_DST, &d.octets()),
            ],
            _ => unreachable!(),
        };
        let tuple = |ips: Vec<Vec<u8>>, sp: u16, dp: u16, kind: u16| {
            nested(
                kind,
                &[
                    nested(CTA_TUPLE_IP, &ips),
                    nested(
                        CTA_TUPLE_PROTO,
                        &[
                            nla(1, &[6]),
                            nla(CTA_PROTO_SRC_PORT | 0x4000, &sp.to_be_bytes()),
                            nla(CTA_PROTO_DST_PORT | 0x4000, &dp.to_be_bytes()),
                        ],
                    ),
                ],
            )
        };
        let mut attributes = tuple(ips.clone(), sport, dport, CTA_TUPLE_ORIG);
        // A reply tuple (CTA_TUPLE_REPLY = 2) with swapped values, to be ignored.
        attributes.extend(tuple(ips.into_iter().rev().collect(), dport, sport, 2));
        // CTA_STATUS (3), a plain u32.
        attributes.extend(nla(3, &8u32.to_be_bytes()));
        let mut msg = Vec::new();
        let len = (NLMSG_HDRLEN + NFGENMSG_LEN + attributes.len()) as u32;
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&(NFNL_SUBSYS_CTNETLINK << 8).to_ne_bytes());
        msg.extend_from_slice(&0x2u16.to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[2, 0, 0, 0]);
        msg.extend(attributes);
        msg
    }

    fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(payload);
        msg
    }

    #[test]
    fn parses_conntrack_dump() {
        let mut datagram = ct_message(ip("172.22.5.10"), ip("172.42.10.112"), 51000, 22);
        datagram.extend(ct_message(ip("fd00::1"), ip("2001:db8::5"), 40000, 443));
        let mut entries = Vec::new();
        assert_eq!(parse_ct_datagram(&datagram, &mut entries), CtChunk::More);
        assert_eq!(
            entries,
            [
                CtTuple {
                    src: ip("172.22.5.10"),
                    dst: ip("172.42.10.112"),
                    sport: 51000,
                    dport: 22
                },
                CtTuple {
                    src: ip("fd00::1"),
                    dst: ip("2001:db8::5"),
                    sport: 40000,
                    dport: 443
                },
            ]
        );
        let local: HashSet<IpAddr> = [ip("172.42.10.112"), ip("fd00::1")].into();
        let peers: Vec<PeerFact> = entries.iter().flat_map(|t| ct_peers(t, &local)).collect();
        assert_eq!(
            peers,
            [
                PeerFact {
                    addr: ip("172.22.5.10"),
                    local_port: 22,
                    remote_port: 51000,
                    source: PeerSource::Conntrack
                },
                PeerFact {
                    addr: ip("2001:db8::5"),
                    local_port: 40000,
                    remote_port: 443,
                    source: PeerSource::Conntrack
                },
            ]
        );

        let done = nlmsg(NLMSG_DONE, &0i32.to_ne_bytes());
        assert_eq!(parse_ct_datagram(&done, &mut entries), CtChunk::Done);
        let err = nlmsg(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(
            parse_ct_datagram(&err, &mut entries),
            CtChunk::Error(libc::ENOENT)
        );
        assert!(conntrack_absent(libc::ENOENT));
        assert!(!conntrack_absent(libc::EPERM));
        // Truncated input is ignored, not a panic.
        let mut short = ct_message(ip("10.0.0.1"), ip("10.0.0.2"), 1, 2);
        short.truncate(30);
        let before = entries.len();
        assert_eq!(parse_ct_datagram(&short, &mut entries), CtChunk::More);
        assert_eq!(entries.len(), before);
    }

    #[test]
    fn entry_without_ports_reports_zero() {
        let ips = [
            nla(CTA_IP_V4_SRC, &[192, 0, 2, 9]),
            nla(CTA_IP_V4_DST, &[10, 1, 1, 1]),
        ];
        let attributes = nested(CTA_TUPLE_ORIG, &[nested(CTA_TUPLE_IP, &ips)]);
        let t = parse_ct_entry(&attributes).unwrap();
        assert_eq!((t.sport, t.dport), (0, 0));
        assert_eq!(t.src, ip("192.0.2.9"));
    }
}

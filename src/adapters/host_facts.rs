//! Observes the network namespace weft runs in, read-only: for IPAM, routes of every routing
//! table, interface addresses, peers of established TCP connections and of the connection
//! tracking table, and the host's DNS servers ([`nameservers`]; see [`crate::core::ipam`] for
//! how these facts are used); for published ports, the sockets listening there
//! ([`listeners`]) and who holds them ([`socket_owner`]).
//!
//! Everything is read in the network namespace of the *calling thread*: the netlink sockets are
//! created on it, and sockets are read from `/proc/thread-self/net` (not `/proc/net`, which
//! follows the namespace of the process's main thread).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteVia,
};
use rtnetlink::packet_route::AddressFamily;

use crate::adapters::conntrack::{self, CtEntry};
use crate::adapters::libc_consts::{AF_INET, AF_INET6};
use crate::adapters::nla::{error_code, messages, Writer, NLMSG_DONE, NLMSG_ERROR};
use crate::core::ipam::{AddrFact, HostView, NameserverFact, PeerFact, PeerSource, RouteFact};
use crate::core::resolv;

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
    /// A resolver configuration file exists but could not be read.
    #[error("cannot read the resolver configuration {path}: {source}")]
    Resolver {
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
/// The nameservers are left empty: they come from files the configuration names, read by
/// [`nameservers`].
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
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let text = read_proc_net(file, v6).map_err(|source| HostFactsError::Proc {
            path: proc_net_path(file),
            source,
        })?;
        if let Some(text) = text {
            peers.extend(parse_proc_net_tcp(&text, v6));
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
        nameservers: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// Resolvers
// ---------------------------------------------------------------------------------------------

/// The text of a resolver file, `None` when it does not exist.
fn read_resolver_file(path: &Path) -> Result<Option<String>, HostFactsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HostFactsError::Resolver {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The DNS servers of this host: the nameservers of `resolv_conf` (normally
/// `/etc/resolv.conf`) and, when those are only systemd-resolved's stub (127.0.0.53), the
/// upstream servers resolved lists in `resolved_conf` (normally
/// `/run/systemd/resolve/resolv.conf`). Each is tagged with the file that names it. Missing
/// files contribute nothing. Loopback servers are reported too; IPAM does not count them.
pub fn nameservers(
    resolv_conf: &Path,
    resolved_conf: &Path,
) -> Result<Vec<NameserverFact>, HostFactsError> {
    let tag = |path: &Path| {
        let source = path.display().to_string();
        move |addr: IpAddr| NameserverFact {
            addr,
            source: source.clone(),
        }
    };
    let listed = read_resolver_file(resolv_conf)?
        .map(|t| resolv::nameservers(&t))
        .unwrap_or_default();
    let only_stub = resolv::all_resolved_stub(&listed);
    let mut out: Vec<NameserverFact> = listed.into_iter().map(tag(resolv_conf)).collect();
    if only_stub {
        if let Some(text) = read_resolver_file(resolved_conf)? {
            out.extend(
                resolv::nameservers(&text)
                    .into_iter()
                    .map(tag(resolved_conf)),
            );
        }
    }
    Ok(out)
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

/// The interface of the calling thread's network namespace that holds `addr`, with its MTU
/// (`None` when no interface has it): the underlay an overlay network's VXLAN traffic
/// leaves through.
pub fn interface_with(addr: IpAddr) -> Result<Option<(String, u32)>, HostFactsError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(HostFactsError::Runtime)?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(HostFactsError::Socket)?;
        let conn_task = tokio::spawn(conn);
        let result = async {
            let netlink = |what| move |source| HostFactsError::Netlink { what, source };
            let mut links: HashMap<u32, (String, u32)> = HashMap::new();
            let mut stream = handle.link().get().execute();
            while let Some(link) = stream.try_next().await.map_err(netlink("links"))? {
                let mut name = None;
                let mut mtu = None;
                for attr in &link.attributes {
                    match attr {
                        LinkAttribute::IfName(n) => name = Some(n.clone()),
                        LinkAttribute::Mtu(m) => mtu = Some(*m),
                        _ => {}
                    }
                }
                if let (Some(n), Some(m)) = (name, mtu) {
                    links.insert(link.header.index, (n, m));
                }
            }
            let names: HashMap<u32, String> =
                links.iter().map(|(i, (n, _))| (*i, n.clone())).collect();
            let mut addrs = handle.address().get().execute();
            while let Some(msg) = addrs.try_next().await.map_err(netlink("addresses"))? {
                if addr_fact(&msg, &names).is_some_and(|f| f.addr.addr() == addr) {
                    return Ok(links.get(&msg.header.index).cloned());
                }
            }
            Ok(None)
        }
        .await;
        conn_task.abort();
        result
    })
}

/// An interface address: `IFA_LOCAL` when present (on point-to-point links `IFA_ADDRESS` is the
/// remote end), else `IFA_ADDRESS`, with the header's prefix length.
pub(crate) fn addr_fact(msg: &AddressMessage, names: &HashMap<u32, String>) -> Option<AddrFact> {
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
pub(crate) fn route_fact(msg: &RouteMessage, names: &HashMap<u32, String>) -> Option<RouteFact> {
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

/// One socket line of `/proc/net/{tcp,udp}{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcSocket {
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    state: u8,
    /// 0 when the line has no inode field (or the socket none, as in `TIME_WAIT`).
    inode: u64,
}

/// Parses one line of `/proc/net/{tcp,udp}` (`v6 = false`) or `/proc/net/{tcp,udp}6`
/// (`v6 = true`): `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`. `None` for
/// lines that do not parse (the header).
fn parse_proc_net_line(line: &str, v6: bool) -> Option<ProcSocket> {
    let mut fields = line.split_whitespace();
    let (Some(_sl), Some(local), Some(remote), Some(state)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    Some(ProcSocket {
        local: parse_endpoint(local, v6)?,
        remote: parse_endpoint(remote, v6)?,
        state: u8::from_str_radix(state, 16).ok()?,
        inode: fields.nth(5).and_then(|i| i.parse().ok()).unwrap_or(0),
    })
}

/// `/proc/thread-self/net/FILE`: the file of the calling thread's network namespace.
fn proc_net_path(file: &str) -> String {
    format!("/proc/thread-self/net/{file}")
}

/// Reads `/proc/thread-self/net/FILE`; `None` for a missing IPv6 file (`v6`: no IPv6 in this
/// kernel).
fn read_proc_net(file: &str, v6: bool) -> io::Result<Option<String>> {
    match std::fs::read_to_string(proc_net_path(file)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Peers of the established connections listed in the text of `/proc/net/tcp` (`v6 = false`)
/// or `/proc/net/tcp6` (`v6 = true`). IPv4-mapped IPv6 peers are reported as IPv4. Lines that
/// do not parse (the header) are skipped.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<PeerFact> {
    text.lines()
        .filter_map(|line| parse_proc_net_line(line, v6))
        .filter(|s| s.state == TCP_ESTABLISHED)
        .map(|s| PeerFact {
            addr: s.remote.0,
            local_port: s.local.1,
            remote_port: s.remote.1,
            source: PeerSource::Tcp,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Listening sockets
// ---------------------------------------------------------------------------------------------

/// A socket that holds a local port: a listening TCP socket or a bound UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// IP protocol: 6 TCP, 17 UDP.
    pub proto: u8,
    /// Local address (unspecified for a wildcard bind; IPv4-mapped addresses as IPv4).
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// Inode of the socket, for [`socket_owner`].
    pub inode: u64,
}

/// IP protocol numbers.
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// The listening TCP sockets and bound UDP sockets of the calling thread's network namespace
/// (both families), from a `NETLINK_SOCK_DIAG` dump.
pub fn listeners() -> io::Result<Vec<Listener>> {
    // sock_diag walks only the sockets asked for (listening TCP, unconnected UDP); reading
    // /proc/net/tcp walks every TCP socket of every namespace (TIME_WAIT included), tens of
    // milliseconds on a busy host, on the path of every `-p`.
    let mut socket = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for (proto, states) in [
            (IPPROTO_TCP, 1u32 << TCP_LISTEN_STATE),
            (IPPROTO_UDP, 1u32 << TCP_CLOSE_STATE),
        ] {
            out.extend(
                sock_diag_dump(&mut socket, family, proto, states)?
                    .into_iter()
                    .filter(|l| l.port != 0),
            );
        }
    }
    Ok(out)
}

/// `TCP_LISTEN` in the kernel's state numbering.
const TCP_LISTEN_STATE: u32 = 10;
/// `TCP_CLOSE`: what an unconnected (bound) UDP socket reports.
const TCP_CLOSE_STATE: u32 = 7;

/// One `SOCK_DIAG_BY_FAMILY` dump of `family`/`proto` sockets in `states`.
fn sock_diag_dump(
    socket: &mut rtnetlink::sys::Socket,
    family: u8,
    proto: u8,
    states: u32,
) -> io::Result<Vec<Listener>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    // inet_diag_req_v2: family, protocol, ext, pad, states, sockid (48 bytes, zero: any).
    let mut w = Writer::default();
    let m = w.begin_plain_msg(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1);
    w.raw(&[family, proto, 0, 0]);
    w.raw(&states.to_ne_bytes());
    w.raw(&[0u8; 48]);
    w.end_msg(m);
    socket.send_to(&w.buf, &rtnetlink::sys::SocketAddr::new(0, 0), 0)?;
    let mut out = Vec::new();
    loop {
        let (buf, _) = socket.recv_from_full()?;
        if buf.is_empty() {
            return Ok(out);
        }
        for m in messages(&buf) {
            match m.msg_type {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => match error_code(m.payload) {
                    0 => {}
                    errno => return Err(io::Error::from_raw_os_error(errno)),
                },
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(l) = parse_inet_diag(m.payload, proto) {
                        out.push(l);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A listener from an `inet_diag_msg`: family at 0, source port (big-endian) at 4, source
/// address at 8, inode at 68.
fn parse_inet_diag(msg: &[u8], proto: u8) -> Option<Listener> {
    let family = *msg.first()?;
    let port = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
    let src = msg.get(8..24)?;
    let addr = if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(src).ok()?)).to_canonical()
    };
    let inode = u32::from_ne_bytes(msg.get(68..72)?.try_into().ok()?);
    Some(Listener {
        proto,
        addr,
        port,
        inode: u64::from(inode),
    })
}

/// The pid and command name (`/proc/PID/comm`) of the first process found holding the socket
/// with this inode among its `/proc/PID/fd/*`; `None` when no process visible here holds it.
/// Processes and descriptors that cannot be read (gone meanwhile, not permitted) are skipped.
/// Scans all of `/proc`: meant for explaining a conflict, not for hot paths.
pub fn socket_owner(inode: u64) -> Option<(u32, String)> {
    let target = std::path::PathBuf::from(format!("socket:[{inode}]"));
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|link| link == target));
        if !holds {
            continue;
        }
        if let Ok(comm) = std::fs::read_to_string(proc_entry.path().join("comm")) {
            return Some((pid, comm.trim_end_matches('\n').to_string()));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Peers of the connection tracking table
// ---------------------------------------------------------------------------------------------

/// Whether an address names a group rather than a peer (multicast, IPv4 broadcast).
fn is_group(a: &IpAddr) -> bool {
    match a.to_canonical() {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

/// The peers of one entry: the addresses of its original direction that are not in `local`.
/// Entries to or from a multicast or broadcast group (IGMP reports, mDNS, DHCP) are not
/// conversations with a peer and are skipped, as their unicast side may be an address this
/// host no longer has.
fn ct_peers(e: &CtEntry, local: &HashSet<IpAddr>) -> Vec<PeerFact> {
    let mut out = Vec::new();
    if is_group(&e.src) || is_group(&e.dst) {
        return out;
    }
    if !local.contains(&e.src) {
        out.push(PeerFact {
            addr: e.src.to_canonical(),
            local_port: e.dport,
            remote_port: e.sport,
            source: PeerSource::Conntrack,
        });
    }
    if !local.contains(&e.dst) {
        out.push(PeerFact {
            addr: e.dst.to_canonical(),
            local_port: e.sport,
            remote_port: e.dport,
            source: PeerSource::Conntrack,
        });
    }
    out
}

/// Dumps the connection tracking table of the calling thread's namespace (both families) and
/// returns the peers that are not local addresses. Empty when conntrack is absent.
fn conntrack_peers(local: &HashSet<IpAddr>) -> Result<Vec<PeerFact>, HostFactsError> {
    let entries = conntrack::dump().map_err(HostFactsError::Conntrack)?;
    Ok(entries.iter().flat_map(|e| ct_peers(e, local)).collect())
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
    fn resolveds_upstreams_count_only_behind_its_stub() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        let resolved = dir.path().join("resolved.conf");
        std::fs::write(&resolved, "nameserver 10.1.2.53\nnameserver 10.1.2.54\n").unwrap();
        let addrs = |v: Vec<NameserverFact>| -> Vec<(IpAddr, bool)> {
            v.into_iter()
                .map(|n| (n.addr, n.source == resolved.display().to_string()))
                .collect()
        };

        // Only the stub: resolved's upstreams, tagged with its file.
        std::fs::write(&resolv, "nameserver 127.0.0.53\noptions edns0\n").unwrap();
        let got = addrs(nameservers(&resolv, &resolved).unwrap());
        assert_eq!(
            got,
            [
                (ip("127.0.0.53"), false),
                (ip("10.1.2.53"), true),
                (ip("10.1.2.54"), true)
            ]
        );

        // Another loopback resolver (dnsmasq) or a real server: resolved's file is not read.
        for text in [
            "nameserver 127.0.0.1\n",
            "nameserver 127.0.0.53\nnameserver 10.9.0.1\n",
        ] {
            std::fs::write(&resolv, text).unwrap();
            let got = addrs(nameservers(&resolv, &resolved).unwrap());
            assert!(
                got.iter().all(|(_, from_resolved)| !from_resolved),
                "{text}: {got:?}"
            );
        }

        // Missing files are no error and no server.
        let none = dir.path().join("absent");
        assert!(nameservers(&none, &none).unwrap().is_empty());
        std::fs::write(&resolv, "nameserver 127.0.0.53\n").unwrap();
        assert_eq!(nameservers(&resolv, &none).unwrap().len(), 1);
        // A directory cannot be read: an error naming it.
        let err = nameservers(dir.path(), &none).unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
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

    #[test]
    fn conntrack_peers_are_the_non_local_unicast_ends() {
        let entries = [
            CtEntry::for_test(ip("172.22.5.10"), 51000, ip("172.42.10.112"), 22),
            CtEntry::for_test(ip("fd00::1"), 40000, ip("2001:db8::5"), 443),
            // mDNS and a broadcast: no peers.
            CtEntry::for_test(ip("172.42.10.9"), 5353, ip("224.0.0.251"), 5353),
            CtEntry::for_test(ip("0.0.0.0"), 68, ip("255.255.255.255"), 67),
        ];
        let local: HashSet<IpAddr> = [ip("172.42.10.112"), ip("fd00::1")].into();
        let peers: Vec<PeerFact> = entries.iter().flat_map(|e| ct_peers(e, &local)).collect();
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
    }

    /// An `inet_diag_msg` as the kernel lays it out.
    fn diag_msg(family: u8, port: u16, src: &[u8], inode: u32) -> Vec<u8> {
        let mut m = vec![family, 10, 0, 0];
        m.extend_from_slice(&port.to_be_bytes());
        m.extend_from_slice(&[0, 0]); // dport
        let mut a = [0u8; 16];
        a[..src.len()].copy_from_slice(src);
        m.extend_from_slice(&a);
        m.extend_from_slice(&[0u8; 16]); // dst
        m.extend_from_slice(&[0u8; 12]); // if, cookie
        m.extend_from_slice(&[0u8; 16]); // expires, rqueue, wqueue, uid
        m.extend_from_slice(&inode.to_ne_bytes());
        m
    }

    #[test]
    fn parses_inet_diag_listeners() {
        let v4 = diag_msg(AF_INET, 22, &[172, 42, 10, 112], 1234);
        assert_eq!(v4.len(), 72);
        assert_eq!(
            parse_inet_diag(&v4, 6),
            Some(Listener {
                proto: 6,
                addr: ip("172.42.10.112"),
                port: 22,
                inode: 1234
            })
        );
        let mapped: Ipv6Addr = "::ffff:127.0.0.53".parse().unwrap();
        let v6 = diag_msg(AF_INET6, 53, &mapped.octets(), 5678);
        assert_eq!(
            parse_inet_diag(&v6, 17).map(|l| l.addr),
            Some(ip("127.0.0.53"))
        );
        assert_eq!(parse_inet_diag(&v6[..40], 17), None, "truncated message");
    }
}

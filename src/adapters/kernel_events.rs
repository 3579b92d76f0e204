//! What the kernel announces about the namespace weft runs in: rtnetlink link, address,
//! route and neighbour (neighbour table and bridge FDB) notifications, and nf_tables notifications (one event per transaction, naming the
//! tables it touched and the process that sent it). The agent turns them into repairs.
//!
//! Sysctls are not announced by the kernel; the agent checks those on a timer.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use rtnetlink::MulticastGroup;

use super::host_facts::{addr_fact, route_fact};
use super::netlink::{mac_of, raw_ip};
use super::nla::{attrs, messages, NFNETLINK_V0};

/// A change of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Its alias (weft's tag), if any.
    pub alias: Option<String>,
    /// `bridge`, `veth`, ... when the kernel says.
    pub kind: Option<String>,
    /// The bridge it is a port of.
    pub master: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Deleted (else created or changed).
    pub deleted: bool,
    /// Its MTU, when the kernel says.
    pub mtu: Option<u32>,
}

/// A notification of the routing stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtEvent {
    /// An interface appeared, changed or went away.
    Link(LinkEvent),
    /// An address was removed from an interface.
    AddressRemoved {
        /// Interface index.
        index: u32,
        /// The address.
        addr: IpNet,
    },
    /// Notifications were lost (the socket's queue overflowed): anything may have changed.
    Lost,
    /// A neighbour or forwarding (FDB) entry of an interface was added, changed or removed.
    Neighbour {
        /// Interface index.
        index: u32,
        /// Whether the entry was removed (`RTM_DELNEIGH`) rather than added or changed.
        deleted: bool,
        /// A forwarding entry (`AF_BRIDGE`) rather than a neighbour entry.
        bridge: bool,
        /// `NDA_DST`: a neighbour entry's address; a VXLAN device's forwarding entry's
        /// remote VTEP (the bridge's own forwarding entries have none).
        dst: Option<IpAddr>,
        /// `NDA_LLADDR`: the entry's MAC, if it has one.
        mac: Option<[u8; 6]>,
    },
    /// A route was removed.
    RouteRemoved {
        /// Output interface index, if any.
        oif: Option<u32>,
        /// Destination.
        dst: IpNet,
        /// Routing table.
        table: u32,
    },
}

/// The rtnetlink notifications of the calling thread's namespace.
pub struct RtWatch {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl RtWatch {
    /// Subscribes to link, address and route notifications, and with `neighbours` to
    /// neighbour and FDB notifications too (many on a busy host: only an overlay's control
    /// plane needs them). Must be called inside a tokio runtime (the socket is driven by a
    /// task spawned on it).
    pub fn open(neighbours: bool) -> io::Result<RtWatch> {
        let mut groups = vec![
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ];
        if neighbours {
            groups.push(MulticastGroup::Neigh);
        }
        let (mut conn, _handle, messages) = rtnetlink::new_multicast_connection(&groups)?;
        large_queue(conn.socket_mut().as_raw_fd());
        tokio::spawn(conn);
        Ok(RtWatch { messages })
    }

    /// The next notification worth knowing; `None` when the socket closed.
    pub async fn next(&mut self) -> Option<RtEvent> {
        loop {
            let (msg, _) = self.messages.next().await?;
            let inner = match msg.payload {
                NetlinkPayload::InnerMessage(inner) => inner,
                // The kernel dropped notifications (our queue was full): whatever they said
                // is unknown now.
                NetlinkPayload::Overrun(_) => return Some(RtEvent::Lost),
                _ => continue,
            };
            let ev = match inner {
                RouteNetlinkMessage::NewNeighbour(m) => Some(neighbour_event(&m, false)),
                RouteNetlinkMessage::DelNeighbour(m) => Some(neighbour_event(&m, true)),
                RouteNetlinkMessage::NewLink(m) => Some(RtEvent::Link(link_event(&m, false))),
                RouteNetlinkMessage::DelLink(m) => Some(RtEvent::Link(link_event(&m, true))),
                RouteNetlinkMessage::DelAddress(m) => {
                    addr_fact(&m, &Default::default()).map(|f| RtEvent::AddressRemoved {
                        index: m.header.index,
                        addr: f.addr,
                    })
                }
                RouteNetlinkMessage::DelRoute(m) => {
                    let oif = m.attributes.iter().find_map(|a| match a {
                        rtnetlink::packet_route::route::RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    });
                    route_fact(&m, &Default::default()).map(|r| RtEvent::RouteRemoved {
                        oif,
                        dst: r.dst,
                        table: r.table,
                    })
                }
                _ => None,
            };
            if let Some(ev) = ev {
                return Some(ev);
            }
        }
    }
}

/// What a neighbour or forwarding entry notification names: enough for the agent to tell
/// which entry went without reading the device back.
fn neighbour_event(m: &NeighbourMessage, deleted: bool) -> RtEvent {
    let dst = m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(d) => raw_ip(d),
        _ => None,
    });
    RtEvent::Neighbour {
        index: m.header.ifindex,
        deleted,
        bridge: m.header.family == AddressFamily::Bridge,
        dst,
        mac: mac_of(&m.attributes),
    }
}

fn link_event(m: &LinkMessage, deleted: bool) -> LinkEvent {
    let mut ev = LinkEvent {
        name: String::new(),
        index: m.header.index,
        alias: None,
        kind: None,
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
        deleted,
        mtu: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => ev.name = n.clone(),
            LinkAttribute::IfAlias(s) => ev.alias = Some(s.clone()),
            LinkAttribute::Mtu(m) => ev.mtu = Some(*m),
            LinkAttribute::Controller(i) => ev.master = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        ev.kind = Some(match k {
                            InfoKind::Bridge => "bridge".into(),
                            InfoKind::Veth => "veth".into(),
                            other => format!("{other:?}").to_lowercase(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    ev
}

/// One nf_tables transaction as announced: what it touched and who sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftBatch {
    /// (family, table name) of every object the transaction changed.
    pub tables: BTreeSet<(u8, String)>,
    /// Deleted objects among them (tables, chains, rules, sets, elements).
    pub deletions: bool,
    /// (family, table name) of the tables the transaction created or deleted.
    pub remade_tables: BTreeSet<(u8, String)>,
    /// (family, table name, set name) of the sets the transaction created or deleted, or
    /// deleted elements from (a flush deletes each element): what they held is gone.
    pub emptied_sets: BTreeSet<(u8, String, String)>,
    /// `comm` of the sending process (`NFTA_GEN_PROC_NAME`), e.g. `nft`, `weft`.
    pub process: Option<String>,
    /// Its pid (`NFTA_GEN_PROC_PID`).
    pub pid: Option<u32>,
}

/// What the nf_tables watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftEvent {
    /// One transaction.
    Batch(NftBatch),
    /// Notifications were lost: anything may have changed.
    Lost,
}

/// Gives a notification socket a queue of 4 MiB (more than `rmem_max` allows, as root), so a
/// burst of notifications is less likely to be dropped; when it is, the watch says so.
fn large_queue(fd: std::os::fd::RawFd) {
    let bytes: libc::c_int = 4 << 20;
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&bytes).cast(),
            super::libc_consts::socklen_of::<libc::c_int>(),
        );
    }
}

/// `NFNLGRP_NFTABLES`: nf_tables change notifications.
const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;
/// In every object message (table, chain, rule, set, element list, object, flowtable) the
/// first attribute type names the table (for tables: its own name).
const NFTA_ANY_TABLE: u16 = 1;
/// In set and element list messages the second attribute type names the set
/// (`NFTA_SET_NAME`, `NFTA_SET_ELEM_LIST_SET`).
const NFTA_ANY_SET: u16 = 2;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_DESTROYTABLE: u16 = 26;
const NFT_MSG_DESTROYSET: u16 = 29;
const NFT_MSG_DESTROYSETELEM: u16 = 30;

/// nf_tables notifications of the calling thread's namespace, grouped per transaction.
pub struct NftWatch {
    socket: TokioSocket,
    current: NftBatch,
    ready: Vec<NftBatch>,
}

impl NftWatch {
    /// Subscribes to nf_tables notifications (inside a tokio runtime).
    pub fn open() -> io::Result<NftWatch> {
        let mut socket = TokioSocket::new(rtnetlink::sys::protocols::NETLINK_NETFILTER)?;
        socket.socket_mut().bind_auto()?;
        socket.socket_mut().add_membership(NFNLGRP_NFTABLES)?;
        large_queue(socket.as_raw_fd());
        Ok(NftWatch {
            socket,
            current: NftBatch::default(),
            ready: Vec::new(),
        })
    }

    /// The next finished transaction, or [`NftEvent::Lost`] when the kernel dropped
    /// notifications (a reload of a large rule set overflows any queue).
    pub async fn next(&mut self) -> io::Result<NftEvent> {
        loop {
            if let Some(b) = self.ready.pop() {
                return Ok(NftEvent::Batch(b));
            }
            match self.socket.recv_from_full().await {
                Ok((buf, _)) => {
                    self.feed(&buf);
                    self.ready.reverse();
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // What the transaction in progress touched is unknown now.
                    self.current = NftBatch::default();
                    return Ok(NftEvent::Lost);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn feed(&mut self, buf: &[u8]) {
        for m in messages(buf) {
            if m.msg_type >> 8 != NFNL_SUBSYS_NFTABLES {
                continue;
            }
            let kind = m.msg_type & 0xff;
            let (Some(&family), Some(&version)) = (m.payload.first(), m.payload.get(1)) else {
                continue;
            };
            let body = m.payload.get(4..).unwrap_or_default();
            if version != NFNETLINK_V0 {
                continue;
            }
            if kind == NFT_MSG_NEWGEN {
                let mut done = std::mem::take(&mut self.current);
                for (ty, p) in attrs(body) {
                    match ty {
                        NFTA_GEN_PROC_PID => {
                            done.pid = p
                                .get(..4)
                                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        }
                        NFTA_GEN_PROC_NAME => {
                            let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
                            done.process = Some(String::from_utf8_lossy(&p[..end]).into_owned());
                        }
                        _ => {}
                    }
                }
                self.ready.push(done);
                continue;
            }
            let name_of = |want: u16| {
                attrs(body).find(|(ty, _)| *ty == want).map(|(_, p)| {
                    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
                    String::from_utf8_lossy(&p[..end]).into_owned()
                })
            };
            if let Some(table) = name_of(NFTA_ANY_TABLE) {
                match kind {
                    NFT_MSG_NEWTABLE | NFT_MSG_DELTABLE | NFT_MSG_DESTROYTABLE => {
                        self.current.remade_tables.insert((family, table.clone()));
                    }
                    NFT_MSG_NEWSET
                    | NFT_MSG_DELSET
                    | NFT_MSG_DESTROYSET
                    | NFT_MSG_DELSETELEM
                    | NFT_MSG_DESTROYSETELEM => {
                        if let Some(set) = name_of(NFTA_ANY_SET) {
                            self.current
                                .emptied_sets
                                .insert((family, table.clone(), set));
                        }
                    }
                    _ => {}
                }
                self.current.tables.insert((family, table));
            }
            // DELTABLE 2, DELCHAIN 5, DELRULE 8, DELSET 11, DELSETELEM 14, DESTROY* 26.. 30.
            if matches!(kind, 2 | 5 | 8 | 11 | 14 | 26..=30) {
                self.current.deletions = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::neighbour::NeighbourAddress;

    fn msg(family: AddressFamily, attrs: Vec<NeighbourAttribute>) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        m.header.ifindex = 8;
        m.attributes = attrs;
        m
    }

    const MAC: [u8; 6] = [2, 0x42, 12, 0, 0, 2];

    #[test]
    fn neighbour_notifications_carry_the_entry_they_name() {
        // A VXLAN device's own forwarding entry: the VTEP comes as raw bytes (the family is
        // AF_BRIDGE), four for IPv4, sixteen for IPv6.
        let fdb = msg(
            AddressFamily::Bridge,
            vec![
                NeighbourAttribute::LinkLayerAddress(MAC.to_vec()),
                NeighbourAttribute::Destination(NeighbourAddress::Other(vec![10, 0, 0, 2])),
            ],
        );
        assert_eq!(
            neighbour_event(&fdb, true),
            RtEvent::Neighbour {
                index: 8,
                deleted: true,
                bridge: true,
                dst: Some("10.0.0.2".parse().unwrap()),
                mac: Some(MAC),
            }
        );
        let v6: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
        let fdb6 = msg(
            AddressFamily::Bridge,
            vec![
                NeighbourAttribute::LinkLayerAddress(MAC.to_vec()),
                NeighbourAttribute::Destination(NeighbourAddress::Other(v6.octets().to_vec())),
            ],
        );
        assert!(matches!(
            neighbour_event(&fdb6, true),
            RtEvent::Neighbour { dst: Some(d), .. } if d == std::net::IpAddr::V6(v6)
        ));
        // The bridge's entry: no destination.
        let bridge = msg(
            AddressFamily::Bridge,
            vec![NeighbourAttribute::LinkLayerAddress(MAC.to_vec())],
        );
        assert!(matches!(
            neighbour_event(&bridge, false),
            RtEvent::Neighbour {
                bridge: true,
                dst: None,
                mac: Some(MAC),
                deleted: false,
                ..
            }
        ));
        // A neighbour entry: its address; a MAC of another length is no MAC.
        let neigh = msg(
            AddressFamily::Inet,
            vec![
                NeighbourAttribute::Destination(NeighbourAddress::Inet(
                    "12.0.0.2".parse().unwrap(),
                )),
                NeighbourAttribute::LinkLayerAddress(vec![1, 2, 3]),
            ],
        );
        assert_eq!(
            neighbour_event(&neigh, true),
            RtEvent::Neighbour {
                index: 8,
                deleted: true,
                bridge: false,
                dst: Some("12.0.0.2".parse().unwrap()),
                mac: None,
            }
        );
    }
}

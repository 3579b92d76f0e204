//! Reading back what a namespace holds, for repairs: one dump each of links, addresses,
//! main-table routes and neighbours, on the executor's socket for that namespace, plus the sysctls a plan
//! names. Only repairs observe; the attach path never dumps.

use std::collections::HashMap;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoPortData, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteHeader, RouteMessage};
use rtnetlink::packet_route::AddressFamily;

use super::KernelExecutor;
use crate::adapters::host_facts::{addr_fact, route_fact};
use crate::adapters::{netns, sysctl};
use crate::core::plan::Ns;
use crate::core::reconcile::{LinkState, NeighState, NsView, RouteState};

/// The main routing table's id.
const RT_TABLE_MAIN: u32 = 254;

impl KernelExecutor {
    /// Links, addresses and main-table routes of `ns`, and the values of `sysctl_keys` there
    /// (keys that cannot be read are left out, so they count as unknown).
    pub fn observe(&mut self, ns: &Ns, sysctl_keys: &[String]) -> Result<NsView, String> {
        let h = self.handle(ns)?;
        let (links, addrs, routes, neighbours) = self.rt.block_on(async {
            let links: Vec<LinkMessage> = h
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| format!("listing links: {e}"))?;
            let addrs: Vec<_> = h
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| format!("listing addresses: {e}"))?;
            let mut routes = Vec::new();
            for family in [AddressFamily::Inet, AddressFamily::Inet6] {
                let mut req = RouteMessage::default();
                req.header.address_family = family;
                req.header.table = RouteHeader::RT_TABLE_UNSPEC;
                let got: Vec<RouteMessage> = h
                    .route()
                    .get(req)
                    .execute()
                    .try_collect()
                    .await
                    .map_err(|e| format!("listing routes: {e}"))?;
                routes.extend(got);
            }
            let mut neighbours = Vec::new();
            // Per family: an unspecified one would dump the bridges' forwarding databases too.
            for family in [AddressFamily::Inet, AddressFamily::Inet6] {
                let got: Vec<NeighbourMessage> = h
                    .neighbours()
                    .get()
                    .set_address_family(family)
                    .execute()
                    .try_collect()
                    .await
                    .map_err(|e| format!("listing neighbours: {e}"))?;
                neighbours.extend(got);
            }
            Ok::<_, String>((links, addrs, routes, neighbours))
        })?;
        let links: Vec<LinkState> = links.iter().filter_map(link_state).collect();
        // What was just read is fresher than any index remembered for this namespace.
        self.indexes.retain(|(n, _), _| n != ns);
        for l in &links {
            self.indexes.insert((ns.clone(), l.name.clone()), l.index);
        }
        let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
        let addrs = addrs
            .iter()
            .filter_map(|m| addr_fact(m, &names))
            .map(|f| (f.dev, f.addr))
            .collect();
        let routes = routes
            .iter()
            .filter_map(|m| route_fact(m, &names))
            .filter(|r| r.table == RT_TABLE_MAIN)
            .map(|r| RouteState {
                dst: r.dst,
                gateway: r.gateway,
                oif: r.dev,
            })
            .collect();
        let neighbours = neighbours
            .iter()
            .filter_map(|m| neigh_state(m, &names))
            .collect();
        let keys = sysctl_keys.to_vec();
        let read = move || {
            keys.into_iter()
                .filter_map(|k| sysctl::get(&k).ok().map(|v| (k, v)))
                .collect()
        };
        let sysctls = match ns {
            Ns::Host => read(),
            Ns::Sandbox(p) => netns::run_in(Path::new(p), read).map_err(|e| e.to_string())?,
        };
        Ok(NsView {
            links,
            addrs,
            routes,
            neighbours,
            sysctls,
        })
    }
}

/// The parts of a neighbour message a repair compares; `None` for an entry without an IP
/// address or on an unknown interface.
fn neigh_state(m: &NeighbourMessage, names: &HashMap<u32, String>) -> Option<NeighState> {
    let ifname = names.get(&m.header.ifindex)?.clone();
    let mut ip = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some((*v4).into()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => ip = Some((*v6).into()),
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    Some(NeighState {
        ifname,
        ip: ip?,
        mac,
        permanent: m.header.state == NeighbourState::Permanent,
    })
}

/// The parts of a link message a repair compares.
fn link_state(m: &LinkMessage) -> Option<LinkState> {
    let mut s = LinkState {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        ..LinkState::default()
    };
    let mut named = false;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => {
                s.name = n.clone();
                named = true;
            }
            LinkAttribute::IfAlias(a) => s.alias = Some(a.clone()),
            LinkAttribute::Controller(i) => s.master = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::PortData(InfoPortData::BridgePort(opts)) = info {
                        for o in opts {
                            match o {
                                InfoBridgePort::Isolated(v) => s.isolated = Some(*v),
                                InfoBridgePort::HairpinMode(v) => s.hairpin = Some(*v),
                                InfoBridgePort::GroupFwdMask(v) => s.group_fwd_mask = Some(*v),
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    named.then_some(s)
}

//! The overlay's data plane over rtnetlink: making a VXLAN device, writing and removing its
//! forwarding (FDB) entries, and reading back what the kernel has on it (for repairs) and the
//! underlay interface's MTU.
//!
//! Forwarding entries go to the VXLAN device itself (`NTF_SELF`): MAC → remote VTEP. For a
//! unicast MAC the bridge above it also gets a static, sticky entry MAC → the VXLAN port, so
//! the bridge sends those frames only into the tunnel (its VXLAN port does not learn, see
//! [`Op::CreateVxlan`]) and no sandbox's frame can move the entry to its own port.

use std::net::IpAddr;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridgePort, InfoData, InfoPortData,
    InfoPortKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan};

use super::{describe, errno_of, exec_err, KernelExecutor};
use crate::core::overlay_observed::{
    FdbEntry, OverlayNeighbour, UnderlayLink, VxlanConfig, VxlanObserved, FLOOD_MAC,
};
use crate::core::plan::{ExecError, Ns, Op};

/// VNIs are 24 bits.
const VNI_LIMIT: u32 = 1 << 24;

/// Sends one request that expects only an acknowledgement.
async fn ack(h: &Handle, msg: RouteNetlinkMessage, flags: u16) -> Result<(), rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut h = h.clone();
    let mut res = h.request(req)?;
    while let Some(m) = res.next().await {
        if let NetlinkPayload::Error(e) = m.payload {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

/// An FDB request for `mac` on the interface `idx`; `dst`: the VTEP, for the device's own
/// entry.
fn fdb_msg(
    idx: u32,
    mac: [u8; 6],
    dst: Option<IpAddr>,
    state: NeighbourState,
    flags: NeighbourFlags,
) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = idx;
    m.header.state = state;
    m.header.flags = flags;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    if let Some(d) = dst {
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(d)));
    }
    m
}

/// An FDB dump's destination: raw address bytes (the message's family is `AF_BRIDGE`, so
/// the parser cannot tell IPv4 from IPv6; the length does).
pub(crate) fn raw_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some((*v4).into()),
        NeighbourAddress::Inet6(v6) => Some((*v6).into()),
        NeighbourAddress::Other(b) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

/// The MAC (`NDA_LLADDR`) of a neighbour or forwarding entry, if it has a 6-byte one.
pub(crate) fn mac_of(a: &[NeighbourAttribute]) -> Option<[u8; 6]> {
    a.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok(),
        _ => None,
    })
}

fn is_enoent(e: &rtnetlink::Error) -> bool {
    matches!(errno_of(e), Some(libc::ENOENT) | Some(libc::ENODEV))
}

impl KernelExecutor {
    /// [`Op::CreateVxlan`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_vxlan(
        &mut self,
        op: &Op,
        name: &str,
        vni: u32,
        local: IpAddr,
        port: u16,
        mtu: u32,
        bridge: &str,
        alias: &str,
    ) -> Result<(), ExecError> {
        if vni >= VNI_LIMIT {
            return Err(exec_err(
                op,
                format!(
                    "VNI {vni} does not fit in 24 bits (at most {})",
                    VNI_LIMIT - 1
                ),
            ));
        }
        let h = self.handle(&Ns::Host).map_err(|e| exec_err(op, e))?;
        // Names made again by a repair get new indexes.
        self.indexes.remove(&(Ns::Host, name.to_string()));
        self.indexes.remove(&(Ns::Host, bridge.to_string()));
        let br = self.index_or_err(op, &Ns::Host, bridge)?;
        // No `dev`: the socket is the host namespace's UDP socket on `port`, and the route
        // to each VTEP picks the underlay interface (which may change).
        let mut msg = LinkVxlan::new(name, vni)
            .port(port)
            .learning(false)
            .proxy(true)
            .l2miss(false)
            .l3miss(false);
        msg = match local {
            IpAddr::V4(a) => msg.local(a),
            IpAddr::V6(a) => msg.local6(a),
        };
        // Made down and enslaved; brought up with its port options below.
        let msg = msg.mtu(mtu).controller(br).build();
        self.rt
            .block_on(h.link().add(msg).execute())
            .map_err(|e| match errno_of(&e) {
                Some(libc::EEXIST) => exec_err(
                    op,
                    format!(
                        "interface {name} already exists, or another VXLAN device already \
                         has VNI {vni} on UDP port {port}"
                    ),
                ),
                _ => exec_err(op, describe(&e)),
            })?;
        // Tagged, and without an IPv6 link-local address, while still down: brought up
        // first, it would make one, join its groups and send MLD reports and router
        // solicitations to every VTEP. IPv6 itself stays on: the kernel refuses IPv6
        // neighbour entries (what the ND proxy answers from) on a device without it.
        let tag = LinkUnspec::new_with_name(name)
            .alias(alias.to_string())
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]))
            .build();
        // Then no learning on its bridge port, and up. If either fails, the device is taken
        // away again, or nothing (not even gc, which goes by the tag) would know it is weft's.
        let port_msg = LinkUnspec::new_with_name(name)
            .up()
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::Learning(
                false,
            )]))
            .build();
        let res = match self.rt.block_on(h.link().set(tag).execute()) {
            Ok(()) => self.rt.block_on(h.link().set_port(port_msg).execute()),
            Err(e) => Err(e),
        };
        res.map_err(|e| {
            if let Ok(Some(idx)) = self.link_index(&Ns::Host, name) {
                let _ = self.rt.block_on(h.link().del(idx).execute());
                self.indexes.remove(&(Ns::Host, name.to_string()));
            }
            exec_err(op, describe(&e))
        })
    }

    /// [`Op::AddFdb`].
    pub(super) fn add_fdb(
        &mut self,
        op: &Op,
        ifname: &str,
        mac: [u8; 6],
        dst: IpAddr,
    ) -> Result<(), ExecError> {
        let h = self.handle(&Ns::Host).map_err(|e| exec_err(op, e))?;
        let idx = self.index_or_err(op, &Ns::Host, ifname)?;
        let flood = mac == FLOOD_MAC;
        // The device's own entry. A flood entry exists once per VTEP under the same MAC:
        // appended (appending one that is there is success). A unicast MAC lives at one
        // VTEP: replaced, so a sandbox that moved to another host is followed.
        let own = fdb_msg(
            idx,
            mac,
            Some(dst),
            NeighbourState::Permanent,
            NeighbourFlags::Own,
        );
        let how = if flood { NLM_F_APPEND } else { NLM_F_REPLACE };
        self.rt
            .block_on(ack(
                &h,
                RouteNetlinkMessage::NewNeighbour(own),
                NLM_F_CREATE | how,
            ))
            .map_err(|e| exec_err(op, describe(&e)))?;
        if flood {
            return Ok(());
        }
        // The bridge's entry: static (NUD_NOARP; NUD_PERMANENT would mean "the bridge's own
        // address") and sticky (never moved by a frame seen on another port).
        let master = fdb_msg(
            idx,
            mac,
            None,
            NeighbourState::Noarp,
            NeighbourFlags::Controller | NeighbourFlags::Sticky,
        );
        self.rt
            .block_on(ack(
                &h,
                RouteNetlinkMessage::NewNeighbour(master),
                NLM_F_CREATE | NLM_F_REPLACE,
            ))
            .map_err(|e| exec_err(op, format!("bridge entry: {}", describe(&e))))
    }

    /// [`Op::DeleteFdb`].
    pub(super) fn delete_fdb(
        &mut self,
        op: &Op,
        ifname: &str,
        mac: [u8; 6],
        dst: IpAddr,
    ) -> Result<(), ExecError> {
        let h = self.handle(&Ns::Host).map_err(|e| exec_err(op, e))?;
        // The device gone took its entries (and its bridge's entries for it) along.
        let Some(idx) = self
            .link_index(&Ns::Host, ifname)
            .map_err(|e| exec_err(op, e))?
        else {
            return Ok(());
        };
        // With a destination, the kernel removes only that VTEP of the MAC's entry.
        let own = fdb_msg(
            idx,
            mac,
            Some(dst),
            NeighbourState::None,
            NeighbourFlags::Own,
        );
        match self
            .rt
            .block_on(ack(&h, RouteNetlinkMessage::DelNeighbour(own), 0))
        {
            Ok(()) => {}
            Err(e) if is_enoent(&e) => {}
            Err(e) => return Err(exec_err(op, describe(&e))),
        }
        if mac == FLOOD_MAC {
            return Ok(());
        }
        // The bridge's entry goes with the tunnel's, unless the MAC is still tunnelled to
        // another VTEP (it moved, and this removes the old destination). The delete cannot
        // tell: the kernel also answers success when the MAC is there with another VTEP.
        // So one lookup of that MAC (not a dump).
        if self
            .fdb_has_mac(&h, idx, mac)
            .map_err(|e| exec_err(op, e))?
        {
            return Ok(());
        }
        let master = fdb_msg(
            idx,
            mac,
            None,
            NeighbourState::None,
            NeighbourFlags::Controller,
        );
        match self
            .rt
            .block_on(ack(&h, RouteNetlinkMessage::DelNeighbour(master), 0))
        {
            Ok(()) => Ok(()),
            Err(e) if is_enoent(&e) => Ok(()),
            Err(e) => Err(exec_err(op, format!("bridge entry: {}", describe(&e)))),
        }
    }

    /// Whether the device `idx` has an entry of its own for `mac` (one `RTM_GETNEIGH`).
    fn fdb_has_mac(&self, h: &Handle, idx: u32, mac: [u8; 6]) -> Result<bool, String> {
        let req = fdb_msg(idx, mac, None, NeighbourState::None, NeighbourFlags::Own);
        let mut msg = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(req));
        msg.header.flags = NLM_F_REQUEST;
        let res = self.rt.block_on(async {
            let mut h = h.clone();
            let mut res = h.request(msg)?;
            let mut found = false;
            while let Some(m) = res.next().await {
                match m.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(_)) => {
                        found = true
                    }
                    NetlinkPayload::Error(e) => return Err(rtnetlink::Error::NetlinkError(e)),
                    _ => {}
                }
            }
            Ok(found)
        });
        match res {
            Ok(found) => Ok(found),
            Err(e) if is_enoent(&e) => Ok(false),
            Err(e) => Err(format!("looking up a forwarding entry: {}", describe(&e))),
        }
    }

    /// The device `idx`'s own forwarding entries, and the MACs its bridge statically and
    /// stickily sends to it, both sorted. The kernel dumps every device's entries (it
    /// filters a dump by port only for strict sockets): filtered here.
    fn fdb_entries(&self, h: &Handle, idx: u32) -> Result<(Vec<FdbEntry>, Vec<[u8; 6]>), String> {
        let all: Vec<NeighbourMessage> = self
            .rt
            .block_on(
                h.neighbours()
                    .get()
                    .set_address_family(AddressFamily::Bridge)
                    .execute()
                    .try_collect(),
            )
            .map_err(|e| format!("listing forwarding entries: {}", describe(&e)))?;
        let mut own = Vec::new();
        let mut bridge = Vec::new();
        for m in all.iter().filter(|m| m.header.ifindex == idx) {
            let Some(mac) = mac_of(&m.attributes) else {
                continue;
            };
            if m.header.flags.contains(NeighbourFlags::Own) {
                let dst = m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(d) => raw_ip(d),
                    _ => None,
                });
                own.push(FdbEntry {
                    mac,
                    dst,
                    permanent: m.header.state == NeighbourState::Permanent,
                });
            } else if m
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::Controller(_)))
                && m.header.state == NeighbourState::Noarp
                && m.header.flags.contains(NeighbourFlags::Sticky)
            {
                bridge.push(mac);
            }
        }
        own.sort();
        bridge.sort();
        Ok((own, bridge))
    }

    /// What the kernel has on the VXLAN device `name` in the host namespace: settings,
    /// forwarding entries, neighbour entries. `None` if there is no such interface; an error
    /// if it is not a VXLAN device.
    pub fn observe_vxlan(&mut self, name: &str) -> Result<Option<VxlanObserved>, String> {
        let h = self.handle(&Ns::Host)?;
        let Some(link) = self.get_link(&h, name).map_err(|e| describe(&e))? else {
            return Ok(None);
        };
        let mut config =
            vxlan_config(&link).ok_or_else(|| format!("{name} is not a VXLAN device"))?;
        self.indexes
            .insert((Ns::Host, name.to_string()), config.index);
        if let Some(m) = master_index(&link) {
            let got = self
                .rt
                .block_on(async { h.link().get().match_index(m).execute().try_next().await });
            config.master = match got {
                Ok(Some(l)) => l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                }),
                Ok(None) => None,
                Err(e) if is_enoent(&e) => None,
                Err(e) => return Err(describe(&e)),
            };
        }
        let (fdb, bridge_macs) = self.fdb_entries(&h, config.index)?;
        let idx = config.index;
        let msgs = self.rt.block_on(async {
            let mut out = Vec::new();
            // Per family, asking the kernel for this device's entries only.
            for family in [AddressFamily::Inet, AddressFamily::Inet6] {
                let got: Vec<NeighbourMessage> = neighbours_of(&h, family, idx)
                    .await
                    .map_err(|e| format!("listing neighbours: {}", describe(&e)))?;
                out.extend(got);
            }
            Ok::<_, String>(out)
        })?;
        let mut neighbours: Vec<OverlayNeighbour> = msgs
            .iter()
            .filter(|m| m.header.ifindex == idx)
            .filter_map(|m| {
                let ip = m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        Some(IpAddr::from(*v4))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        Some(IpAddr::from(*v6))
                    }
                    _ => None,
                })?;
                Some(OverlayNeighbour {
                    ip,
                    mac: mac_of(&m.attributes),
                    state: u16::from(m.header.state),
                })
            })
            .collect();
        neighbours.sort();
        Ok(Some(VxlanObserved {
            config,
            fdb,
            bridge_macs,
            neighbours,
        }))
    }

    /// The host interface holding the address `local` (the advertised underlay address),
    /// with its MTU; `None` if no interface has it.
    pub fn underlay_link(&mut self, local: IpAddr) -> Result<Option<UnderlayLink>, String> {
        let h = self.handle(&Ns::Host)?;
        let addrs: Vec<AddressMessage> = self
            .rt
            .block_on(h.address().get().execute().try_collect())
            .map_err(|e| format!("listing addresses: {}", describe(&e)))?;
        let holder = addrs.iter().find(|m| {
            m.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Local(x) | AddressAttribute::Address(x) if *x == local)
            })
        });
        let Some(index) = holder.map(|m| m.header.index) else {
            return Ok(None);
        };
        let got = self
            .rt
            .block_on(async { h.link().get().match_index(index).execute().try_next().await });
        let link = match got {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(None),
            // Gone between the two requests.
            Err(e) if is_enoent(&e) => return Ok(None),
            Err(e) => return Err(describe(&e)),
        };
        let (mut name, mut mtu) = (None, None);
        for a in &link.attributes {
            match a {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Mtu(m) => mtu = Some(*m),
                _ => {}
            }
        }
        match (name, mtu) {
            (Some(name), Some(mtu)) => Ok(Some(UnderlayLink {
                name,
                index,
                mtu,
                local,
            })),
            _ => Err(format!("interface {index} reported no name or MTU")),
        }
    }
}

/// The neighbour entries of one family on interface `idx` (the kernel filters the dump by
/// `NDA_IFINDEX`).
async fn neighbours_of(
    h: &Handle,
    family: AddressFamily,
    idx: u32,
) -> Result<Vec<NeighbourMessage>, rtnetlink::Error> {
    let mut m = NeighbourMessage::default();
    m.header.family = family;
    m.attributes.push(NeighbourAttribute::IfIndex(idx));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(m));
    req.header.flags = NLM_F_REQUEST | rtnetlink::packet_core::NLM_F_DUMP;
    let mut h = h.clone();
    let mut res = h.request(req)?;
    let mut out = Vec::new();
    while let Some(msg) = res.next().await {
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) => out.push(n),
            NetlinkPayload::Error(e) => return Err(rtnetlink::Error::NetlinkError(e)),
            _ => {}
        }
    }
    Ok(out)
}

fn master_index(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

/// The VXLAN settings of a link message; `None` if it is not a VXLAN device.
fn vxlan_config(m: &LinkMessage) -> Option<VxlanConfig> {
    let mut c = VxlanConfig {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        ..VxlanConfig::default()
    };
    let mut vxlan = false;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => c.name = n.clone(),
            LinkAttribute::IfAlias(s) => c.alias = Some(s.clone()),
            LinkAttribute::Mtu(v) => c.mtu = Some(*v),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Data(InfoData::Vxlan(opts)) => {
                            vxlan = true;
                            for o in opts {
                                match o {
                                    InfoVxlan::Id(v) => c.vni = Some(*v),
                                    InfoVxlan::Local(v) => c.local = Some((*v).into()),
                                    InfoVxlan::Local6(v) => c.local = Some((*v).into()),
                                    InfoVxlan::Port(v) => c.port = Some(*v),
                                    InfoVxlan::Learning(v) => c.learning = Some(*v),
                                    InfoVxlan::Proxy(v) => c.proxy = Some(*v),
                                    InfoVxlan::L2Miss(v) => c.l2miss = Some(*v),
                                    InfoVxlan::L3Miss(v) => c.l3miss = Some(*v),
                                    _ => {}
                                }
                            }
                        }
                        LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
                            for o in opts {
                                if let InfoBridgePort::Learning(v) = o {
                                    c.port_learning = Some(*v);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    vxlan.then_some(c)
}

//! Level-triggered repair: what the kernel must hold for a record, compared with what it holds.
//!
//! The desired state of a network or an endpoint is the very plan that builds it
//! ([`plan_network`](super::driver::bridge::plan_network), [`plan_attach`](super::driver::bridge::plan_attach)),
//! read as a list of assertions: "this bridge exists, tagged as ours", "this address is on
//! it", "this sysctl has this value". [`unmet`] keeps the operations whose assertion the
//! observed kernel ([`NsView`]) does not satisfy, and turns the ones that cannot simply be
//! re-run (a veth that exists but lost its bridge) into the operation that fixes them. The same
//! function serves `weft gc`, the commands that depend on an object, and the agent's repairs
//! after a kernel event: repair is one diff, not a special case per kind of drift.
//!
//! Firewall state is repaired separately (its observation is a rule-set dump), so firewall
//! operations are never part of the result.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::firewall::guard::PORT_GROUP_FWD_MASK;
use super::plan::{Ns, Op};

/// One interface as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkState {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// `IFLA_IFALIAS`, where weft keeps its `weft:<instance>:<id>` tag.
    pub alias: Option<String>,
    /// Index of the bridge it is a port of.
    pub master: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Bridge port option `isolated`, when it is a bridge port.
    pub isolated: Option<bool>,
    /// Bridge port option `hairpin`, when it is a bridge port.
    pub hairpin: Option<bool>,
    /// Bridge port option `group_fwd_mask`, when it is a bridge port.
    pub group_fwd_mask: Option<u16>,
}

/// One route of the main table as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteState {
    /// Destination prefix (`0.0.0.0/0` for a default route).
    pub dst: IpNet,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface name, if any.
    pub oif: Option<String>,
}

/// One neighbour entry as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighState {
    /// Interface name.
    pub ifname: String,
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its MAC, if the entry has one.
    pub mac: Option<[u8; 6]>,
    /// Whether the entry is permanent (`NUD_PERMANENT`).
    pub permanent: bool,
}

/// What one network namespace holds, as far as weft's plans can ask.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NsView {
    /// Every interface.
    pub links: Vec<LinkState>,
    /// Every address, as (interface name, address with prefix length).
    pub addrs: Vec<(String, IpNet)>,
    /// Routes of the main table.
    pub routes: Vec<RouteState>,
    /// IPv4 and IPv6 neighbour entries.
    pub neighbours: Vec<NeighState>,
    /// Sysctl values read for the keys the plans mention; a key absent here is unknown, and
    /// an unknown value is never "repaired" blindly.
    pub sysctls: BTreeMap<String, String>,
}

impl NsView {
    /// The interface called `name`.
    pub fn link(&self, name: &str) -> Option<&LinkState> {
        self.links.iter().find(|l| l.name == name)
    }

    fn has_addr(&self, ifname: &str, addr: &IpNet) -> bool {
        self.addrs.iter().any(|(i, a)| i == ifname && a == addr)
    }

    fn has_route(&self, dst: &IpNet, oif: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.dst == *dst && r.oif.as_deref() == Some(oif))
    }

    fn has_permanent_neighbour(&self, ifname: &str, ip: IpAddr, mac: [u8; 6]) -> bool {
        self.neighbours
            .iter()
            .any(|n| n.ifname == ifname && n.ip == ip && n.mac == Some(mac) && n.permanent)
    }

    fn has_default_via(&self, gateway: IpAddr) -> bool {
        self.routes
            .iter()
            .any(|r| r.dst.prefix_len() == 0 && r.gateway == Some(gateway))
    }
}

/// What the kernel holds per namespace, for the namespaces a plan touches.
pub type Views = BTreeMap<Ns, NsView>;

/// Why an object cannot be repaired by weft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    /// An interface with weft's name exists but is not weft's (no tag, or another owner):
    /// weft never takes over someone else's interface.
    #[error("interface {name} exists but is not this weft's (alias {alias:?}); rename or remove it, then run `weft gc`")]
    Foreign {
        /// Interface name.
        name: String,
        /// Its alias, if any.
        alias: Option<String>,
    },
}

/// The sysctl keys the plan asserts, per namespace: what an observer must read.
pub fn sysctl_keys(desired: &[Op]) -> Vec<(Ns, String)> {
    desired
        .iter()
        .filter_map(|op| match op {
            Op::Sysctl { ns, key, .. } => Some((ns.clone(), key.clone())),
            _ => None,
        })
        .collect()
}

/// The operations of `desired` that `views` does not satisfy, in plan order, rewritten where
/// re-running the original operation would fail on what is already there.
///
/// Firewall operations, published ports and announcements are not kernel objects of these
/// views and are left out: the firewall has its own repair, and an announcement is a message,
/// not a state.
pub fn unmet(desired: &[Op], views: &Views) -> Result<Vec<Op>, RepairError> {
    let empty = NsView::default();
    let view = |ns: &Ns| views.get(ns).unwrap_or(&empty);
    let mut out = Vec::new();
    // Interfaces made again by this repair: everything on them is missing too, whatever the
    // (older) view says.
    let mut remade: Vec<(Ns, String)> = Vec::new();
    let fresh = |remade: &[(Ns, String)], ns: &Ns, name: &str| {
        remade.iter().any(|(n, i)| n == ns && i == name)
    };
    for op in desired {
        match op {
            Op::CreateBridge { name, alias, .. } => match view(&Ns::Host).link(name) {
                None => {
                    remade.push((Ns::Host, name.clone()));
                    out.push(op.clone());
                }
                Some(l) if l.alias.as_deref() != Some(alias.as_str()) => {
                    return Err(RepairError::Foreign {
                        name: name.clone(),
                        alias: l.alias.clone(),
                    })
                }
                Some(_) => {}
            },
            Op::CreateVeth {
                host_ifname,
                bridge,
                isolated,
                alias,
                peer_ns,
                peer_ifname,
                ..
            } => {
                let host = view(&Ns::Host);
                let sandbox = Ns::Sandbox(peer_ns.clone());
                let peer = view(&sandbox).link(peer_ifname);
                match (host.link(host_ifname), peer) {
                    (None, peer) => {
                        if peer.is_some() {
                            // Not our veth's other end (that one would have gone with it).
                            out.push(Op::DeleteLink {
                                ns: sandbox.clone(),
                                ifname: peer_ifname.clone(),
                            });
                        }
                        remade.push((sandbox, peer_ifname.clone()));
                        out.push(op.clone());
                    }
                    (Some(h), _) if h.alias.as_deref() != Some(alias.as_str()) => {
                        // A crash between making the veth and tagging it leaves it untagged:
                        // ours by name, finished by tagging it now. Another owner's tag is
                        // never overwritten.
                        if h.alias.as_deref().is_some_and(|a| a.starts_with("weft:")) {
                            return Err(RepairError::Foreign {
                                name: host_ifname.clone(),
                                alias: h.alias.clone(),
                            });
                        }
                        out.push(set_port(host_ifname, bridge, *isolated, alias));
                    }
                    (Some(h), _) => {
                        let br = host.link(bridge).map(|b| b.index);
                        let bridge_remade = fresh(&remade, &Ns::Host, bridge);
                        if bridge_remade
                            || br.is_none()
                            || h.master != br
                            || !h.up
                            || h.isolated != Some(*isolated)
                            || h.hairpin != Some(true)
                            || h.group_fwd_mask != Some(PORT_GROUP_FWD_MASK)
                        {
                            out.push(set_port(host_ifname, bridge, *isolated, alias));
                        }
                    }
                }
            }
            Op::AddAddress { ns, ifname, addr } => {
                let v = view(ns);
                if fresh(&remade, ns, ifname) || !v.has_addr(ifname, addr) {
                    out.push(op.clone());
                } else if *ns == Ns::Host && !v.has_route(&addr.trunc(), ifname) {
                    // The address is there but its prefix route was deleted: taking the
                    // address off and on again makes the kernel add the route back.
                    out.push(Op::DeleteAddress {
                        ns: ns.clone(),
                        ifname: ifname.clone(),
                        addr: *addr,
                    });
                    out.push(op.clone());
                }
            }
            Op::LinkUp { ns, ifname } => {
                let up = view(ns).link(ifname).is_some_and(|l| l.up);
                if fresh(&remade, ns, ifname) || !up {
                    out.push(op.clone());
                }
            }
            Op::Sysctl { ns, key, value } => {
                let on_fresh_link = remade
                    .iter()
                    .any(|(n, i)| n == ns && key.contains(&format!("/{i}/")));
                match view(ns).sysctls.get(key) {
                    Some(cur) if cur == value && !on_fresh_link => {}
                    Some(_) => out.push(op.clone()),
                    // Unread: only a link made by this repair is known to need it.
                    None if on_fresh_link => out.push(op.clone()),
                    None => {}
                }
            }
            Op::AddDefaultRoute { ns, gateway } => {
                let remade_here = remade.iter().any(|(n, _)| n == ns);
                if remade_here || !view(ns).has_default_via(*gateway) {
                    out.push(op.clone());
                }
            }
            Op::AddNeighbour {
                ns,
                ifname,
                ip,
                mac,
            } => {
                // Missing, or replaced (by someone, or by the kernel's learning when it was
                // not permanent): written again.
                if fresh(&remade, ns, ifname)
                    || !view(ns).has_permanent_neighbour(ifname, *ip, *mac)
                {
                    out.push(op.clone());
                }
            }
            // Missing, or no longer a port of its (possibly remade) bridge, or down: made
            // again, and everything on it with it (see `remade`). Its VXLAN settings and
            // forwarding entries are compared by the overlay's own repair, which observes
            // them.
            Op::CreateVxlan {
                name,
                alias,
                bridge,
                ..
            } => {
                let host = view(&Ns::Host);
                match host.link(name) {
                    None => {
                        remade.push((Ns::Host, name.clone()));
                        out.push(op.clone());
                    }
                    Some(l) if l.alias.as_deref() != Some(alias.as_str()) => {
                        return Err(RepairError::Foreign {
                            name: name.clone(),
                            alias: l.alias.clone(),
                        })
                    }
                    Some(l) => {
                        let br = host.link(bridge).map(|b| b.index);
                        if fresh(&remade, &Ns::Host, bridge)
                            || br.is_none()
                            || l.master != br
                            || !l.up
                        {
                            out.push(Op::DeleteLink {
                                ns: Ns::Host,
                                ifname: name.clone(),
                            });
                            remade.push((Ns::Host, name.clone()));
                            out.push(op.clone());
                        }
                    }
                }
            }
            // A device made again has no entries; otherwise they are the overlay repair's.
            Op::AddFdb { ifname, .. } => {
                if fresh(&remade, &Ns::Host, ifname) {
                    out.push(op.clone());
                }
            }
            Op::DeleteFdb { .. } => {}
            Op::CreateNetns { .. }
            | Op::DeleteNeighbour { .. }
            | Op::DeleteNetns { .. }
            | Op::FirewallAdd(_)
            | Op::FirewallRemove(_)
            | Op::FirewallAttach { .. }
            | Op::FirewallDetach { .. }
            | Op::ForgetConnections(_)
            | Op::Announce { .. }
            | Op::SetPort { .. }
            | Op::DeleteAddress { .. }
            | Op::DeleteLink { .. } => {}
        }
    }
    Ok(out)
}

fn set_port(ifname: &str, bridge: &str, isolated: bool, alias: &str) -> Op {
    Op::SetPort {
        ifname: ifname.to_string(),
        bridge: bridge.to_string(),
        isolated,
        alias: alias.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::driver::bridge::{bridge_mac, plan_attach, plan_network};
    use crate::core::model::{Endpoint, Network};
    use crate::core::plan::owner_alias;

    const INST: &str = "0a1b2c3d";
    const NS: &str = "/run/weft/netns/s1";

    fn net() -> Network {
        Network {
            id: "n1".into(),
            bridge: "wbr-n1".into(),
            ..Network::example()
        }
    }

    fn ep() -> Endpoint {
        Endpoint {
            network: "web".into(),
            network_id: "n1".into(),
            interface: "eth0".into(),
            host_interface: "wvs1".into(),
            ipv4: Some("172.18.0.2/16".parse().unwrap()),
            ipv6: None,
            mac: "02:42:ac:12:00:02".into(),
            aliases: vec![],
            announce: false,
            pending: None,
        }
    }

    fn link(name: &str, index: u32, alias: &str) -> LinkState {
        LinkState {
            name: name.into(),
            index,
            alias: Some(alias.into()),
            master: None,
            up: true,
            isolated: None,
            hairpin: None,
            group_fwd_mask: None,
        }
    }

    /// The kernel exactly as the plans made it.
    fn healthy() -> Views {
        let mut host = NsView::default();
        host.links.push(link("wbr-n1", 7, &owner_alias(INST, "n1")));
        host.links.push(LinkState {
            master: Some(7),
            isolated: Some(false),
            hairpin: Some(true),
            group_fwd_mask: Some(PORT_GROUP_FWD_MASK),
            ..link("wvs1", 9, &owner_alias(INST, "s1"))
        });
        host.addrs
            .push(("wbr-n1".into(), "172.18.0.1/16".parse().unwrap()));
        host.routes.push(RouteState {
            dst: "172.18.0.0/16".parse().unwrap(),
            gateway: None,
            oif: Some("wbr-n1".into()),
        });
        host.neighbours.push(NeighState {
            ifname: "wbr-n1".into(),
            ip: "172.18.0.2".parse().unwrap(),
            mac: Some([2, 0x42, 0xac, 0x12, 0, 2]),
            permanent: true,
        });
        for op in plan_network(&net(), INST, None) {
            if let Op::Sysctl { key, value, .. } = op {
                host.sysctls.insert(key, value);
            }
        }
        let mut sb = NsView::default();
        sb.links.push(link("lo", 1, ""));
        sb.links.push(link("eth0", 2, ""));
        sb.addrs
            .push(("eth0".into(), "172.18.0.2/16".parse().unwrap()));
        sb.routes.push(RouteState {
            dst: "0.0.0.0/0".parse().unwrap(),
            gateway: Some("172.18.0.1".parse().unwrap()),
            oif: Some("eth0".into()),
        });
        sb.neighbours.push(NeighState {
            ifname: "eth0".into(),
            ip: "172.18.0.1".parse().unwrap(),
            mac: Some(bridge_mac(&net())),
            permanent: true,
        });
        Views::from([(Ns::Host, host), (Ns::Sandbox(NS.into()), sb)])
    }

    fn desired() -> Vec<Op> {
        let mut ops = plan_network(&net(), INST, None);
        ops.extend(plan_attach(NS, "s1", &ep(), &net(), true, INST));
        ops
    }

    #[test]
    fn a_healthy_kernel_needs_nothing() {
        assert_eq!(unmet(&desired(), &healthy()), Ok(vec![]));
    }

    #[test]
    fn a_lost_or_changed_neighbour_entry_is_written_again() {
        let host_entry = |ops: &[Op]| {
            matches!(ops, [Op::AddNeighbour { ns: Ns::Host, ifname, ip, .. }]
                if ifname == "wbr-n1" && *ip == "172.18.0.2".parse::<IpAddr>().unwrap())
        };
        let mut v = healthy();
        v.get_mut(&Ns::Host).unwrap().neighbours.clear();
        assert!(host_entry(&unmet(&desired(), &v).unwrap()));
        // Learnt (not permanent), or pointing elsewhere: not weft's entry, replaced.
        let mut v = healthy();
        v.get_mut(&Ns::Host).unwrap().neighbours[0].permanent = false;
        assert!(host_entry(&unmet(&desired(), &v).unwrap()));
        let mut v = healthy();
        v.get_mut(&Ns::Host).unwrap().neighbours[0].mac = Some([2, 0, 0, 0, 0, 1]);
        assert!(host_entry(&unmet(&desired(), &v).unwrap()));
        let mut v = healthy();
        v.get_mut(&Ns::Sandbox(NS.into()))
            .unwrap()
            .neighbours
            .clear();
        assert!(matches!(
            &unmet(&desired(), &v).unwrap()[..],
            [Op::AddNeighbour { ns: Ns::Sandbox(_), ifname, .. }] if ifname == "eth0"
        ));
    }

    #[test]
    fn a_deleted_bridge_is_made_again_and_its_ports_attached_to_it() {
        let mut v = healthy();
        let host = v.get_mut(&Ns::Host).unwrap();
        host.links.retain(|l| l.name != "wbr-n1");
        host.addrs.clear();
        host.routes.clear();
        if let Some(p) = host.links.iter_mut().find(|l| l.name == "wvs1") {
            p.master = None;
        }
        let ops = unmet(&desired(), &v).unwrap();
        assert!(matches!(&ops[0], Op::CreateBridge { name, .. } if name == "wbr-n1"));
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::AddAddress { ifname, .. } if ifname == "wbr-n1")));
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::LinkUp { ifname, .. } if ifname == "wbr-n1")));
        // Its sysctls were lost with it.
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::Sysctl { key, .. } if key.contains("wbr-n1"))));
        assert!(ops.iter().any(|o| matches!(o, Op::SetPort { ifname, bridge, .. } if ifname == "wvs1" && bridge == "wbr-n1")));
        // The sandbox side is intact: no new veth, no address, no route.
        assert!(!ops.iter().any(|o| matches!(o, Op::CreateVeth { .. })));
        assert!(!ops.iter().any(|o| matches!(o, Op::AddDefaultRoute { .. })));
    }

    #[test]
    fn a_deleted_veth_is_made_again_with_address_and_route() {
        let mut v = healthy();
        v.get_mut(&Ns::Host)
            .unwrap()
            .links
            .retain(|l| l.name != "wvs1");
        let sb = v.get_mut(&Ns::Sandbox(NS.into())).unwrap();
        sb.links.retain(|l| l.name != "eth0");
        sb.addrs.clear();
        sb.routes.clear();
        let ops = unmet(&desired(), &v).unwrap();
        let kinds: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert!(matches!(&ops[0], Op::CreateVeth { .. }), "{kinds:?}");
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::AddAddress { ifname, .. } if ifname == "eth0")));
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::LinkUp { ifname, .. } if ifname == "eth0")));
        assert!(ops.iter().any(|o| matches!(o, Op::AddDefaultRoute { .. })));
        assert!(!ops.iter().any(|o| matches!(o, Op::CreateBridge { .. })));
    }

    #[test]
    fn an_untagged_veth_left_by_a_crash_is_tagged_not_remade() {
        let mut v = healthy();
        let host = v.get_mut(&Ns::Host).unwrap();
        let p = host.links.iter_mut().find(|l| l.name == "wvs1").unwrap();
        p.alias = None;
        let ops = unmet(&desired(), &v).unwrap();
        assert_eq!(
            ops,
            vec![Op::SetPort {
                ifname: "wvs1".into(),
                bridge: "wbr-n1".into(),
                isolated: false,
                alias: owner_alias(INST, "s1"),
            }]
        );
    }

    #[test]
    fn someone_elses_interface_is_never_taken_over() {
        let mut v = healthy();
        let host = v.get_mut(&Ns::Host).unwrap();
        host.links[0].alias = Some("the admin's".into());
        assert!(matches!(
            unmet(&desired(), &v),
            Err(RepairError::Foreign { name, .. }) if name == "wbr-n1"
        ));
        let mut v = healthy();
        let host = v.get_mut(&Ns::Host).unwrap();
        host.links[1].alias = Some(owner_alias("ffffffff", "s9"));
        assert!(matches!(
            unmet(&desired(), &v),
            Err(RepairError::Foreign { name, .. }) if name == "wvs1"
        ));
    }

    #[test]
    fn a_sysctl_turned_back_is_set_again_and_unknown_ones_are_left_alone() {
        let mut v = healthy();
        let host = v.get_mut(&Ns::Host).unwrap();
        let key = host
            .sysctls
            .keys()
            .find(|k| k.contains("route_localnet"))
            .unwrap()
            .clone();
        host.sysctls.insert(key.clone(), "0".into());
        let ops = unmet(&desired(), &v).unwrap();
        assert!(
            matches!(&ops[..], [Op::Sysctl { key: k, value, .. }] if *k == key && value == "1")
        );
        v.get_mut(&Ns::Host).unwrap().sysctls.clear();
        assert_eq!(unmet(&desired(), &v), Ok(vec![]));
    }

    #[test]
    fn a_deleted_prefix_route_comes_back_with_its_address() {
        let mut v = healthy();
        v.get_mut(&Ns::Host).unwrap().routes.clear();
        let ops = unmet(&desired(), &v).unwrap();
        assert!(matches!(
            &ops[..],
            [Op::DeleteAddress { .. }, Op::AddAddress { .. }]
        ));
    }

    #[test]
    fn a_detached_or_edited_port_is_attached_again() {
        for edit in [
            |l: &mut LinkState| l.master = None,
            |l: &mut LinkState| l.up = false,
            |l: &mut LinkState| l.isolated = Some(true),
            |l: &mut LinkState| l.hairpin = Some(false),
            // Link-local group frames passed up through the port again.
            |l: &mut LinkState| l.group_fwd_mask = Some(0),
        ] {
            let mut v = healthy();
            let host = v.get_mut(&Ns::Host).unwrap();
            edit(host.links.iter_mut().find(|l| l.name == "wvs1").unwrap());
            let ops = unmet(&desired(), &v).unwrap();
            assert!(matches!(&ops[..], [Op::SetPort { .. }]), "{ops:?}");
        }
    }

    #[test]
    fn a_lost_default_route_is_added_again() {
        let mut v = healthy();
        v.get_mut(&Ns::Sandbox(NS.into())).unwrap().routes.clear();
        let ops = unmet(&desired(), &v).unwrap();
        assert!(matches!(&ops[..], [Op::AddDefaultRoute { .. }]));
    }
}

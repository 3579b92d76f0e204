//! The bridge driver: a Linux bridge on this host holding the gateway addresses, sandboxes
//! attached by veth pairs, forwarding and firewall elements (Docker's `bridge`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Driver, DriverData, DriverError, Request, Underlay};
use crate::core::model::{mac_for, Endpoint, Network};
use crate::core::plan::{firewall_endpoint, firewall_of, owner_alias, parse_mac, Ns, Op};

/// MTU of a bridge network unless `--mtu` says otherwise.
pub const DEFAULT_MTU: u32 = 1500;

/// The bridge driver.
#[derive(Debug, Clone, Copy)]
pub struct Bridge;

impl Driver for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn needs_cluster(&self) -> bool {
        false
    }

    fn validate(&self, req: &Request<'_>) -> Result<DriverData, DriverError> {
        if req.vni.is_some() {
            return Err(DriverError::NotApplicable {
                flag: "--vni (or --opt com.docker.network.driver.overlay.vxlanid_list)",
                driver: "bridge",
                why: "a VXLAN network identifier is for --driver overlay",
            });
        }
        Ok(DriverData::None)
    }

    fn mtu(
        &self,
        _network: &str,
        requested: Option<u32>,
        _underlay: Option<&Underlay>,
    ) -> Result<u32, DriverError> {
        Ok(requested.unwrap_or(DEFAULT_MTU))
    }

    fn interfaces(&self, net: &Network) -> Vec<String> {
        vec![net.bridge.clone()]
    }

    fn plan_network(
        &self,
        net: &Network,
        instance: &str,
        dns_port: Option<u16>,
    ) -> Result<Vec<Op>, DriverError> {
        Ok(plan_network(net, instance, dns_port))
    }

    fn plan_network_teardown(&self, net: &Network) -> Vec<Op> {
        plan_network_teardown(net)
    }

    fn plan_attach(
        &self,
        netns: &str,
        sandbox_id: &str,
        ep: &Endpoint,
        net: &Network,
        default_route: bool,
        instance: &str,
    ) -> Vec<Op> {
        plan_attach(netns, sandbox_id, ep, net, default_route, instance)
    }

    fn plan_detach(&self, netns: &str, ep: &Endpoint, net: &Network) -> Vec<Op> {
        plan_detach(netns, ep, Some(&net.bridge))
    }
}

/// The fixed MAC of a network's bridge, derived from its gateways.
pub fn bridge_mac(net: &Network) -> [u8; 6] {
    let gw4 = net.v4().and_then(|s| match s.gateway {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    });
    let gw6 = net.v6().and_then(|s| match s.gateway {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    });
    mac_for(gw4, gw6)
}

/// Operations that make a network's bridge, addresses, forwarding and firewall elements
/// (`dns_port`: see [`firewall_of`]).
pub fn plan_network(net: &Network, instance: &str, dns_port: Option<u16>) -> Vec<Op> {
    let mut ops = vec![Op::CreateBridge {
        name: net.bridge.clone(),
        mtu: net.mtu,
        mac: bridge_mac(net),
        alias: owner_alias(instance, &net.id),
        ipv6: net.v6().is_some(),
    }];
    if net.v6().is_some() {
        // weft alone hands out addresses here: duplicate address detection would only keep
        // the gateway unusable for its first seconds.
        ops.push(Op::Sysctl {
            ns: Ns::Host,
            key: format!("net/ipv6/conf/{}/accept_dad", net.bridge),
            value: "0".into(),
        });
    }
    // Nothing a sandbox sends may change the host's routes or addresses: no router
    // advertisements (honoured on an IPv4-only network's bridge too, where IPv6 forwarding is
    // off), no SLAAC, no redirects; and the host sends no redirects into its networks (for
    // IPv4 the kernel ORs this with `all`; sandboxes ignore redirects anyway). The port guard
    // also drops these messages at the sandbox's port.
    for (key, value) in [
        ("net/ipv6/conf/{}/accept_ra", "0"),
        ("net/ipv6/conf/{}/autoconf", "0"),
        ("net/ipv6/conf/{}/accept_redirects", "0"),
        ("net/ipv4/conf/{}/accept_redirects", "0"),
        ("net/ipv4/conf/{}/send_redirects", "0"),
    ] {
        ops.push(Op::Sysctl {
            ns: Ns::Host,
            key: key.replace("{}", &net.bridge),
            value: value.into(),
        });
    }
    for s in &net.subnets {
        if let Ok(addr) = IpNet::new(s.gateway, s.subnet.prefix_len()) {
            ops.push(Op::AddAddress {
                ns: Ns::Host,
                ifname: net.bridge.clone(),
                addr,
            });
        }
    }
    ops.push(Op::LinkUp {
        ns: Ns::Host,
        ifname: net.bridge.clone(),
    });
    // Lets the host reach ports published on 127.0.0.1: the DNAT'd packet keeps its
    // loopback source until postrouting masquerades it (the input chain keeps sandboxes
    // from using this to reach the host's loopback services).
    ops.push(Op::Sysctl {
        ns: Ns::Host,
        key: format!("net/ipv4/conf/{}/route_localnet", net.bridge),
        value: "1".into(),
    });
    if !net.internal {
        ops.push(Op::Sysctl {
            ns: Ns::Host,
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        });
        if net.v6().is_some() {
            ops.push(Op::Sysctl {
                ns: Ns::Host,
                key: "net.ipv6.conf.all.forwarding".into(),
                value: "1".into(),
            });
        }
    }
    ops.push(Op::FirewallAdd(firewall_of(net, dns_port)));
    ops
}

/// Operations that remove a network's kernel objects (its endpoints must be gone first).
pub fn plan_network_teardown(net: &Network) -> Vec<Op> {
    vec![
        // Removal takes the DNS redirects' keys whatever port they lead to.
        Op::FirewallRemove(firewall_of(net, None)),
        Op::DeleteLink {
            ns: Ns::Host,
            ifname: net.bridge.clone(),
        },
    ]
}

/// Operations that attach a sandbox to a network through `ep`. The first network of a
/// sandbox also gives it its default routes.
pub fn plan_attach(
    netns: &str,
    sandbox_id: &str,
    ep: &Endpoint,
    net: &Network,
    default_route: bool,
    instance: &str,
) -> Vec<Op> {
    let ns = Ns::Sandbox(netns.to_string());
    let mac = parse_mac(&ep.mac).unwrap_or([0x02, 0x42, 0, 0, 0, 0]);
    let mut ops = vec![Op::CreateVeth {
        host_ifname: ep.host_interface.clone(),
        bridge: net.bridge.clone(),
        mtu: net.mtu,
        isolated: !net.icc(),
        alias: owner_alias(instance, sandbox_id),
        peer_ns: netns.to_string(),
        peer_ifname: ep.interface.clone(),
        peer_mac: mac,
        peer_ipv6: ep.ipv6.is_some(),
    }];
    if ep.ipv6.is_some() {
        // A namespace made without IPv6 (a later connect to an IPv6 network) turns it on for
        // this interface.
        ops.push(Op::Sysctl {
            ns: ns.clone(),
            key: format!("net/ipv6/conf/{}/disable_ipv6", ep.interface),
            value: "0".into(),
        });
    }
    for addr in [ep.ipv4, ep.ipv6].into_iter().flatten() {
        ops.push(Op::AddAddress {
            ns: ns.clone(),
            ifname: ep.interface.clone(),
            addr,
        });
    }
    // Up after the address is there, so the kernel's arp_notify announces it.
    ops.push(Op::LinkUp {
        ns: ns.clone(),
        ifname: ep.interface.clone(),
    });
    if default_route {
        for s in &net.subnets {
            if (s.subnet.addr().is_ipv4() && ep.ipv4.is_some())
                || (s.subnet.addr().is_ipv6() && ep.ipv6.is_some())
            {
                ops.push(Op::AddDefaultRoute {
                    ns: ns.clone(),
                    gateway: s.gateway,
                });
            }
        }
    }
    let addrs: Vec<IpAddr> = [ep.ipv4, ep.ipv6]
        .into_iter()
        .flatten()
        .map(|a| a.addr())
        .collect();
    if ep.announce {
        ops.push(Op::Announce {
            bridge: net.bridge.clone(),
            mac,
            addrs: addrs.clone(),
        });
    }
    // Host and sandbox know each other's MAC from the start (see [`Op::AddNeighbour`]); the
    // sandbox's entries only once its interface is up (taking a link down flushes even
    // permanent entries), the host's after the announcement, whose own entry it replaces.
    ops.extend(gateway_neighbours(netns, ep, net));
    ops.extend(addrs.into_iter().map(|ip| Op::AddNeighbour {
        ns: Ns::Host,
        ifname: net.bridge.clone(),
        ip,
        mac,
    }));
    ops
}

/// The sandbox's permanent entries for its gateways on `net`, one per address family the
/// endpoint has.
fn gateway_neighbours(netns: &str, ep: &Endpoint, net: &Network) -> Vec<Op> {
    let bridge = bridge_mac(net);
    net.subnets
        .iter()
        .filter(|s| {
            (s.gateway.is_ipv4() && ep.ipv4.is_some()) || (s.gateway.is_ipv6() && ep.ipv6.is_some())
        })
        .map(|s| Op::AddNeighbour {
            ns: Ns::Sandbox(netns.to_string()),
            ifname: ep.interface.clone(),
            ip: s.gateway,
            mac: bridge,
        })
        .collect()
}

/// Removes the host's permanent entries for an endpoint's addresses from its bridge.
pub(crate) fn forget_neighbours(ep: &Endpoint, bridge: &str) -> Vec<Op> {
    [ep.ipv4, ep.ipv6]
        .into_iter()
        .flatten()
        .map(|a| Op::DeleteNeighbour {
            ns: Ns::Host,
            ifname: bridge.to_string(),
            ip: a.addr(),
        })
        .collect()
}

/// Operations that detach a sandbox from a network (whose bridge is `bridge`; `None` when the
/// network is gone, and the host's entries for the sandbox with its bridge) while its
/// namespace lives on.
pub fn plan_detach(netns: &str, ep: &Endpoint, bridge: Option<&str>) -> Vec<Op> {
    let mut ops = vec![
        Op::DeleteLink {
            ns: Ns::Sandbox(netns.to_string()),
            ifname: ep.interface.clone(),
        },
        Op::FirewallDetach {
            endpoints: vec![firewall_endpoint(ep)],
            ports: vec![],
        },
    ];
    if let Some(bridge) = bridge {
        ops.extend(forget_neighbours(ep, bridge));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Sandbox;
    use crate::core::plan::plan_sandbox_teardown;
    use std::collections::BTreeMap;

    #[test]
    fn network_plan_has_bridge_gateway_forwarding_and_firewall() {
        let ops = plan_network(&Network::example(), "i1", None);
        assert!(matches!(&ops[0], Op::CreateBridge { name, .. } if name == "wbr-ab"));
        assert!(ops.contains(&Op::AddAddress {
            ns: Ns::Host,
            ifname: "wbr-ab".into(),
            addr: "172.18.0.1/16".parse().unwrap()
        }));
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::Sysctl { key, .. } if key == "net.ipv4.ip_forward")));
        match ops.last() {
            Some(Op::FirewallAdd(fw)) => {
                assert_eq!(fw.masq_v4, Some("172.18.0.0/16".parse().unwrap()));
                assert!(!fw.internal);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn internal_network_has_no_masquerade_and_no_forwarding() {
        let mut n = Network::example();
        n.internal = true;
        let ops = plan_network(&n, "i1", None);
        assert!(!ops
            .iter()
            .any(|o| matches!(o, Op::Sysctl { key, .. } if key.contains("forward"))));
        assert!(
            matches!(ops.last(), Some(Op::FirewallAdd(fw)) if fw.internal && fw.masq_v4.is_none())
        );
    }

    #[test]
    fn attach_orders_address_before_up_and_routes_last() {
        let ep = Endpoint {
            network: "web".into(),
            network_id: "ab".into(),
            interface: "eth0".into(),
            host_interface: "wv1".into(),
            ipv4: Some("172.18.0.2/16".parse().unwrap()),
            ipv6: None,
            mac: "02:42:ac:12:00:02".into(),
            aliases: vec![],
            announce: true,
            pending: None,
        };
        let ops = plan_attach(
            "/run/weft/netns/x",
            "sid",
            &ep,
            &Network::example(),
            true,
            "i1",
        );
        let pos = |f: &dyn Fn(&Op) -> bool| ops.iter().position(f).unwrap();
        let addr = pos(&|o| matches!(o, Op::AddAddress { .. }));
        let up = pos(&|o| matches!(o, Op::LinkUp { .. }));
        let route = pos(&|o| matches!(o, Op::AddDefaultRoute { .. }));
        assert!(addr < up && up < route);
        assert!(
            matches!(&ops[0], Op::CreateVeth { peer_mac, .. } if peer_mac == &[2, 0x42, 0xac, 0x12, 0, 2])
        );
        let no_route = plan_attach("/x", "sid", &ep, &Network::example(), false, "i1");
        assert!(!no_route
            .iter()
            .any(|o| matches!(o, Op::AddDefaultRoute { .. })));
        let announce = pos(&|o| matches!(o, Op::Announce { bridge, .. } if bridge == "wbr-ab"));
        // The host's permanent entry for the sandbox comes last, after the announcement
        // (which would otherwise be what the host believes).
        let host_neigh = pos(&|o| matches!(o, Op::AddNeighbour { ns: Ns::Host, .. }));
        assert!(announce < host_neigh && host_neigh == ops.len() - 1);
        // A never-used address has no stale neighbour entry to correct: no broadcast.
        let fresh = Endpoint {
            announce: false,
            ..ep
        };
        let quiet = plan_attach("/x", "sid", &fresh, &Network::example(), true, "i1");
        assert!(!quiet.iter().any(|o| matches!(o, Op::Announce { .. })));
    }

    #[test]
    fn attach_writes_permanent_neighbours_both_ways_and_detach_forgets_the_host_one() {
        let ep = Endpoint {
            network: "web".into(),
            network_id: "ab".into(),
            interface: "eth0".into(),
            host_interface: "wv1".into(),
            ipv4: Some("172.18.0.2/16".parse().unwrap()),
            ipv6: None,
            mac: "02:42:ac:12:00:02".into(),
            aliases: vec![],
            announce: false,
            pending: None,
        };
        let net = Network::example();
        let ops = plan_attach("/x", "sid", &ep, &net, false, "i1");
        let neigh: Vec<&Op> = ops
            .iter()
            .filter(|o| matches!(o, Op::AddNeighbour { .. }))
            .collect();
        let gw = net.v4().unwrap().gateway;
        assert_eq!(
            neigh,
            [
                &Op::AddNeighbour {
                    ns: Ns::Sandbox("/x".into()),
                    ifname: "eth0".into(),
                    ip: gw,
                    mac: bridge_mac(&net),
                },
                &Op::AddNeighbour {
                    ns: Ns::Host,
                    ifname: "wbr-ab".into(),
                    ip: "172.18.0.2".parse().unwrap(),
                    mac: [2, 0x42, 0xac, 0x12, 0, 2],
                },
            ]
        );
        // The sandbox's entry only once its link is up (down flushes it).
        let up = ops
            .iter()
            .position(|o| matches!(o, Op::LinkUp { ifname, .. } if ifname == "eth0"))
            .unwrap();
        let sb_neigh = ops
            .iter()
            .position(|o| {
                matches!(
                    o,
                    Op::AddNeighbour {
                        ns: Ns::Sandbox(_),
                        ..
                    }
                )
            })
            .unwrap();
        assert!(up < sb_neigh);
        // Rollback removes the host's entry; the sandbox's goes with its interface.
        assert_eq!(
            neigh[1].undo(),
            Some(Op::DeleteNeighbour {
                ns: Ns::Host,
                ifname: "wbr-ab".into(),
                ip: "172.18.0.2".parse().unwrap(),
            })
        );
        assert_eq!(neigh[0].undo(), None);
        let forget = Op::DeleteNeighbour {
            ns: Ns::Host,
            ifname: "wbr-ab".into(),
            ip: "172.18.0.2".parse().unwrap(),
        };
        assert!(plan_detach("/x", &ep, Some("wbr-ab")).contains(&forget));
        assert!(!plan_detach("/x", &ep, None)
            .iter()
            .any(|o| matches!(o, Op::DeleteNeighbour { .. })));
        let mut sb = Sandbox::example("s", "sid", crate::core::model::Status::Running);
        sb.netns = Some("/x".into());
        sb.endpoints = vec![ep];
        let bridges = BTreeMap::from([("ab".to_string(), "wbr-ab".to_string())]);
        assert!(plan_sandbox_teardown(&sb, &bridges).contains(&forget));
    }
}

//! Desired kernel state as a list of operations, and the rollback discipline that applies it.
//!
//! Planners are pure: they turn model records into [`Op`]s. An [`Executor`] (netlink and
//! nftables in production, a recording fake in tests) applies them one by one;
//! [`apply_all`] undoes the applied prefix in reverse when one fails, so a failed command
//! leaves nothing behind. [`plan_gc`] is the diff between what the state wants and what
//! the kernel has.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use thiserror::Error;

use super::driver::bridge::forget_neighbours;
use super::firewall::{FwEndpoint, FwNetwork, FwPort};
use super::model::{format_mac, Endpoint, Network, Sandbox};

/// Which network namespace an operation happens in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ns {
    /// The namespace weft runs in.
    Host,
    /// A sandbox namespace, by the path of its handle.
    Sandbox(String),
}

/// One change to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A Linux bridge, up, tagged with an alias so `gc` can tell it is weft's.
    CreateBridge {
        /// Interface name.
        name: String,
        /// MTU.
        mtu: u32,
        /// A fixed MAC: without one the bridge takes its ports' lowest MAC, changing it (and
        /// flushing its neighbour table) whenever a sandbox joins or leaves.
        mac: [u8; 6],
        /// `weft:<network id>`.
        alias: String,
        /// Whether the network has IPv6 (else the bridge gets no IPv6 link-local address).
        ipv6: bool,
    },
    /// An address on an interface.
    AddAddress {
        /// Namespace.
        ns: Ns,
        /// Interface.
        ifname: String,
        /// Address with prefix length.
        addr: IpNet,
    },
    /// Set an interface up.
    LinkUp {
        /// Namespace.
        ns: Ns,
        /// Interface.
        ifname: String,
    },
    /// Set a sysctl (not undone: forwarding stays on, as with Docker).
    Sysctl {
        /// Namespace.
        ns: Ns,
        /// Dotted key.
        key: String,
        /// Value.
        value: String,
    },
    /// Add a network's elements to weft's nftables sets (creating the table if needed).
    FirewallAdd(FwNetwork),
    /// Remove a network's elements from weft's nftables sets.
    FirewallRemove(FwNetwork),
    /// Add the port guard's elements of sandbox interfaces and the map elements of published
    /// ports, in one nftables batch.
    FirewallAttach {
        /// Sandbox interfaces (what their bridge ports may send).
        endpoints: Vec<FwEndpoint>,
        /// Published ports.
        ports: Vec<FwPort>,
    },
    /// Remove what a [`Op::FirewallAttach`] added.
    FirewallDetach {
        /// Sandbox interfaces.
        endpoints: Vec<FwEndpoint>,
        /// Published ports.
        ports: Vec<FwPort>,
    },
    /// Delete the conntrack entries of connections to these addresses, so no flow keeps
    /// pointing at a sandbox that is gone.
    ForgetConnections(Vec<IpAddr>),
    /// A network namespace held at a path.
    CreateNetns {
        /// Handle path.
        path: String,
        /// Whether its interfaces get IPv6 by default.
        ipv6: bool,
    },
    /// Remove a namespace handle; the kernel destroys it and its interfaces.
    DeleteNetns {
        /// Handle path.
        path: String,
    },
    /// A veth pair: host end enslaved to `bridge` and up, peer created directly inside the
    /// sandbox namespace with its final name and MAC.
    CreateVeth {
        /// Host end name.
        host_ifname: String,
        /// Bridge to enslave the host end to.
        bridge: String,
        /// MTU of both ends.
        mtu: u32,
        /// Isolated bridge port (`icc=false`): no traffic to other isolated ports.
        isolated: bool,
        /// `weft:<sandbox id>`.
        alias: String,
        /// Sandbox namespace handle.
        peer_ns: String,
        /// Sandbox end name (`eth0`, ...).
        peer_ifname: String,
        /// Sandbox end MAC.
        peer_mac: [u8; 6],
        /// Whether the sandbox end speaks IPv6 (else it gets no link-local address either).
        peer_ipv6: bool,
    },
    /// A default route via `gateway`.
    AddDefaultRoute {
        /// Namespace.
        ns: Ns,
        /// Next hop.
        gateway: IpAddr,
    },
    /// Announce a sandbox's addresses on its network so neighbours drop a stale MAC for a
    /// reused address: a gratuitous ARP / unsolicited NA carrying the sandbox's MAC, sent from
    /// the bridge (the sandbox's own bridge port only starts forwarding once the kernel has
    /// processed its carrier change, asynchronously). The host's own entry is the
    /// [`Op::AddNeighbour`] that follows.
    Announce {
        /// The network's bridge.
        bridge: String,
        /// The sandbox interface's MAC.
        mac: [u8; 6],
        /// Addresses to announce.
        addrs: Vec<IpAddr>,
    },
    /// Make an existing host-side veth a port of `bridge` again, tagged, with weft's port
    /// options, and up: the repair when its bridge was deleted and made again, or the port
    /// was detached or edited behind weft's back.
    SetPort {
        /// Host end name.
        ifname: String,
        /// Bridge to enslave it to.
        bridge: String,
        /// Isolated bridge port (`icc=false`).
        isolated: bool,
        /// `weft:<instance>:<sandbox id>`.
        alias: String,
    },
    /// Remove an address from an interface (to add it again with its prefix route).
    DeleteAddress {
        /// Namespace.
        ns: Ns,
        /// Interface.
        ifname: String,
        /// Address with prefix length.
        addr: IpNet,
    },
    /// A permanent neighbour entry: `ip` is at `mac` on `ifname`. Host and sandbox learn each
    /// other's MAC from weft, not from a broadcast ARP/NS: the bridge floods that to every
    /// port, and beyond ~1,000 ports the copies fill the CPU's input backlog
    /// (`netdev_max_backlog`) and the reply is dropped. Permanent, so a neighbour's forged
    /// ARP cannot replace it either.
    AddNeighbour {
        /// Namespace.
        ns: Ns,
        /// Interface.
        ifname: String,
        /// The neighbour's address.
        ip: IpAddr,
        /// Its MAC.
        mac: [u8; 6],
    },
    /// Remove the neighbour entry of `ip` on `ifname` (gone already is fine).
    DeleteNeighbour {
        /// Namespace.
        ns: Ns,
        /// Interface.
        ifname: String,
        /// The neighbour's address.
        ip: IpAddr,
    },
    /// Delete an interface (a veth takes its peer with it).
    DeleteLink {
        /// Namespace.
        ns: Ns,
        /// Interface.
        ifname: String,
    },
    // Overlay (VXLAN) data plane: one block, kept together.
    /// A VXLAN device in the host namespace (so its UDP socket is on the underlay), enslaved
    /// to `bridge`, up, tagged. Learning off and no miss notifications: every remote entry is
    /// written on purpose ([`Op::AddFdb`], [`Op::AddNeighbour`] on this device) and nothing
    /// ages. ARP/ND proxy on: the device answers ARP and neighbour solicitations from its own
    /// neighbour table and drops every other ARP, so no ARP (for the gateway or anyone)
    /// crosses the tunnel. Its bridge port does not learn either (a frame from the tunnel
    /// carrying a local sandbox's MAC would otherwise move that MAC to the tunnel); the
    /// bridge knows remote MACs from the static entries [`Op::AddFdb`] writes. No
    /// `neigh_suppress` on that port: the device's proxy already keeps ARP/ND off the
    /// tunnel, and sandbox ports must not have it (they rely on gratuitous ARP flooding).
    CreateVxlan {
        /// Interface name.
        name: String,
        /// VXLAN network identifier (24 bits).
        vni: u32,
        /// The advertised underlay address: source of the tunnel's packets.
        local: IpAddr,
        /// UDP destination port (4789 by default).
        port: u16,
        /// MTU (the underlay's minus 50; minus 70 over IPv6).
        mtu: u32,
        /// Bridge to enslave it to.
        bridge: String,
        /// `weft:<network id>`.
        alias: String,
    },
    /// A permanent forwarding entry on a VXLAN device: frames to `mac` are tunnelled to the
    /// VTEP `dst`. The all-zero MAC is the flood entry for broadcast and unknown traffic, one
    /// per remote host: those are appended, not replaced. A unicast MAC also gets a static,
    /// sticky entry on the device's bridge (frames to it go to the tunnel port, and no
    /// sandbox's frame can move it). The VTEP is reached on the device's own UDP port and
    /// VNI. Writing an entry that exists is success.
    AddFdb {
        /// The VXLAN device.
        ifname: String,
        /// The remote MAC (all zero: flood entry).
        mac: [u8; 6],
        /// The remote VTEP.
        dst: IpAddr,
    },
    /// Remove the forwarding entry `mac` → `dst` (and, for a unicast MAC, its bridge entry);
    /// the flood entries to other VTEPs stay. Gone already is fine.
    DeleteFdb {
        /// The VXLAN device.
        ifname: String,
        /// The remote MAC (all zero: flood entry).
        mac: [u8; 6],
        /// The remote VTEP.
        dst: IpAddr,
    },
}

impl Op {
    /// The operation that reverts this one, for rollback. `None` when reverting is either
    /// implied by an earlier undo (an address goes with its link) or not wanted (sysctls).
    pub fn undo(&self) -> Option<Op> {
        match self {
            Op::CreateBridge { name, .. } => Some(Op::DeleteLink {
                ns: Ns::Host,
                ifname: name.clone(),
            }),
            Op::FirewallAdd(f) => Some(Op::FirewallRemove(f.clone())),
            Op::FirewallAttach { endpoints, ports } => Some(Op::FirewallDetach {
                endpoints: endpoints.clone(),
                ports: ports.clone(),
            }),
            Op::CreateNetns { path, .. } => Some(Op::DeleteNetns { path: path.clone() }),
            Op::CreateVeth { host_ifname, .. } => Some(Op::DeleteLink {
                ns: Ns::Host,
                ifname: host_ifname.clone(),
            }),
            // A sandbox's entries go with its interface; the host's stay on the bridge.
            Op::AddNeighbour {
                ns: Ns::Host,
                ifname,
                ip,
                ..
            } => Some(Op::DeleteNeighbour {
                ns: Ns::Host,
                ifname: ifname.clone(),
                ip: *ip,
            }),
            Op::CreateVxlan { name, .. } => Some(Op::DeleteLink {
                ns: Ns::Host,
                ifname: name.clone(),
            }),
            Op::AddFdb { ifname, mac, dst } => Some(Op::DeleteFdb {
                ifname: ifname.clone(),
                mac: *mac,
                dst: *dst,
            }),
            Op::AddAddress { .. }
            | Op::DeleteFdb { .. }
            | Op::AddNeighbour { .. }
            | Op::DeleteNeighbour { .. }
            | Op::LinkUp { .. }
            | Op::Sysctl { .. }
            | Op::AddDefaultRoute { .. }
            | Op::Announce { .. }
            | Op::FirewallRemove(_)
            | Op::FirewallDetach { .. }
            | Op::ForgetConnections(_)
            | Op::DeleteNetns { .. }
            | Op::SetPort { .. }
            | Op::DeleteAddress { .. }
            | Op::DeleteLink { .. } => None,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = |n: &Ns| match n {
            Ns::Host => String::new(),
            Ns::Sandbox(p) => format!(" in {p}"),
        };
        match self {
            Op::CreateBridge { name, .. } => write!(f, "create bridge {name}"),
            Op::AddAddress {
                ns: n,
                ifname,
                addr,
            } => {
                write!(f, "add address {addr} to {ifname}{}", ns(n))
            }
            Op::LinkUp { ns: n, ifname } => write!(f, "set {ifname} up{}", ns(n)),
            Op::Sysctl { key, value, .. } => write!(f, "set {key}={value}"),
            Op::FirewallAdd(fw) => write!(f, "add nftables elements for {}", fw.bridge),
            Op::FirewallRemove(fw) => write!(f, "remove nftables elements for {}", fw.bridge),
            Op::FirewallAttach { endpoints, ports } => write!(
                f,
                "add nftables elements for {} interfaces and {} published ports",
                endpoints.len(),
                ports.len()
            ),
            Op::FirewallDetach { endpoints, ports } => write!(
                f,
                "remove nftables elements of {} interfaces and {} published ports",
                endpoints.len(),
                ports.len()
            ),
            Op::ForgetConnections(a) => write!(f, "forget connections to {a:?}"),
            Op::CreateNetns { path, .. } => write!(f, "create network namespace {path}"),
            Op::DeleteNetns { path } => write!(f, "delete network namespace {path}"),
            Op::CreateVeth {
                host_ifname,
                peer_ifname,
                bridge,
                ..
            } => write!(f, "create veth {host_ifname} on {bridge} <-> {peer_ifname}"),
            Op::AddDefaultRoute { ns: n, gateway } => {
                write!(f, "add default route via {gateway}{}", ns(n))
            }
            Op::Announce { bridge, addrs, .. } => write!(f, "announce {addrs:?} on {bridge}"),
            Op::SetPort { ifname, bridge, .. } => write!(f, "make {ifname} a port of {bridge}"),
            Op::DeleteAddress {
                ns: n,
                ifname,
                addr,
            } => write!(f, "delete address {addr} from {ifname}{}", ns(n)),
            Op::AddNeighbour {
                ns: n,
                ifname,
                ip,
                mac,
            } => write!(
                f,
                "add neighbour {ip} at {} on {ifname}{}",
                format_mac(mac),
                ns(n)
            ),
            Op::DeleteNeighbour { ns: n, ifname, ip } => {
                write!(f, "delete neighbour {ip} on {ifname}{}", ns(n))
            }
            Op::DeleteLink { ns: n, ifname } => write!(f, "delete {ifname}{}", ns(n)),
            Op::CreateVxlan {
                name, vni, bridge, ..
            } => write!(f, "create vxlan {name} vni {vni} on {bridge}"),
            Op::AddFdb { ifname, mac, dst } => {
                write!(f, "add fdb {} to {dst} on {ifname}", format_mac(mac))
            }
            Op::DeleteFdb { ifname, mac, dst } => {
                write!(f, "delete fdb {} to {dst} on {ifname}", format_mac(mac))
            }
        }
    }
}

/// An operation the kernel refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{op}: {message}")]
pub struct ExecError {
    /// The operation, as text.
    pub op: String,
    /// What the kernel said.
    pub message: String,
}

/// Something that applies operations to a kernel (or records them, in tests).
pub trait Executor {
    /// Applies one operation.
    fn apply(&mut self, op: &Op) -> Result<(), ExecError>;
}

/// A failed [`apply_all`]: the error, and any errors while rolling back.
#[derive(Debug, Error)]
#[error("{cause}{}", rollback_note(.rollback))]
pub struct ApplyError {
    /// The operation that failed.
    pub cause: ExecError,
    /// Undo operations that failed in turn (their objects are left for `weft gc`).
    pub rollback: Vec<ExecError>,
}

fn rollback_note(errs: &[ExecError]) -> String {
    if errs.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        format!(
            " (rollback also failed: {}; run `weft gc`)",
            list.join("; ")
        )
    }
}

/// Applies `ops` in order; on the first failure undoes what was applied, newest first.
pub fn apply_all(exec: &mut dyn Executor, ops: &[Op]) -> Result<(), ApplyError> {
    for (i, op) in ops.iter().enumerate() {
        if let Err(cause) = exec.apply(op) {
            let rollback = undo_all(exec, &ops[..i]);
            return Err(ApplyError { cause, rollback });
        }
    }
    Ok(())
}

/// Undoes `applied` (newest first), continuing past errors and returning them all.
pub fn undo_all(exec: &mut dyn Executor, applied: &[Op]) -> Vec<ExecError> {
    applied
        .iter()
        .rev()
        .filter_map(Op::undo)
        .filter_map(|u| exec.apply(&u).err())
        .collect()
}

/// Applies every operation, continuing past errors (for teardown), returning the errors.
pub fn apply_best_effort(exec: &mut dyn Executor, ops: &[Op]) -> Vec<ExecError> {
    ops.iter().filter_map(|op| exec.apply(op).err()).collect()
}

/// The firewall elements a network wants; `dns_port`: the port the host agent's DNS server
/// recorded, if any (used only if the network has DNS).
pub fn firewall_of(net: &Network, dns_port: Option<u16>) -> FwNetwork {
    let masq = net.masquerade();
    FwNetwork {
        bridge: net.bridge.clone(),
        internal: net.internal,
        icc: net.icc(),
        masq_v4: net.v4().and_then(|s| match s.subnet {
            IpNet::V4(n) if masq => Some(n),
            _ => None,
        }),
        masq_v6: net.v6().and_then(|s| match s.subnet {
            IpNet::V6(n) if masq => Some(n),
            _ => None,
        }),
        subnet_v4: net.v4().and_then(|s| match s.subnet {
            IpNet::V4(n) => Some(n),
            _ => None,
        }),
        subnet_v6: net.v6().and_then(|s| match s.subnet {
            IpNet::V6(n) => Some(n),
            _ => None,
        }),
        gateways: net.subnets.iter().map(|s| s.gateway).collect(),
        dns_port: dns_port.filter(|_| net.dns()),
    }
}

/// The alias weft puts on the interfaces it creates: `weft:<instance>:<id>`, naming the state
/// directory (instance) and the network or sandbox that owns the interface.
pub fn owner_alias(instance: &str, id: &str) -> String {
    format!("weft:{instance}:{id}")
}

/// The owner id in an alias made by [`owner_alias`] for `instance`; `None` for an interface
/// that is not weft's or belongs to another state directory.
pub fn alias_owner<'a>(instance: &str, alias: &'a str) -> Option<&'a str> {
    alias
        .strip_prefix("weft:")?
        .strip_prefix(instance)?
        .strip_prefix(':')
}

/// The instance named by an alias made by [`owner_alias`] (of any instance); `None` for an
/// interface that is not weft's.
pub fn alias_instance(alias: &str) -> Option<&str> {
    let (instance, id) = alias.strip_prefix("weft:")?.split_once(':')?;
    (!instance.is_empty() && !id.is_empty()).then_some(instance)
}

/// Operations that make a sandbox's namespace with `lo` up; IPv6 stays off on its
/// interfaces unless `ipv6`.
pub fn plan_sandbox(netns: &str, ipv6: bool) -> Vec<Op> {
    vec![
        Op::CreateNetns {
            path: netns.to_string(),
            ipv6,
        },
        Op::LinkUp {
            ns: Ns::Sandbox(netns.to_string()),
            ifname: "lo".into(),
        },
    ]
}

/// The firewall view of a sandbox's published ports: each mapping goes to the sandbox's
/// first address of the mapping's family.
pub fn firewall_ports(sb: &Sandbox) -> Vec<FwPort> {
    let first = |v6: bool| {
        sb.endpoints
            .iter()
            .find_map(|e| if v6 { e.ipv6 } else { e.ipv4 })
            .map(|n| n.addr())
    };
    sb.ports
        .iter()
        .filter_map(|m| {
            let target = first(m.host_ip.is_ipv6())?;
            Some(FwPort {
                proto: m.protocol.number(),
                host_ip: (!m.host_ip.is_unspecified()).then_some(m.host_ip),
                host_port: m.host_port,
                target,
                target_port: m.container_port,
            })
        })
        .collect()
}

/// Operations that remove a sandbox: its published ports and the connections to it, then
/// its namespace (the kernel takes the veths along), then the host's neighbour entries for
/// it on the bridges `bridges` names (network id -> bridge; a network not named is gone, and
/// its bridge with it).
pub fn plan_sandbox_teardown(sb: &Sandbox, bridges: &BTreeMap<String, String>) -> Vec<Op> {
    let mut ops = Vec::new();
    let ports = firewall_ports(sb);
    let endpoints: Vec<FwEndpoint> = sb.endpoints.iter().map(firewall_endpoint).collect();
    if !ports.is_empty() || !endpoints.is_empty() {
        ops.push(Op::FirewallDetach {
            endpoints,
            ports: ports.clone(),
        });
    }
    if !ports.is_empty() {
        let addrs: Vec<IpAddr> = sb
            .endpoints
            .iter()
            .flat_map(|e| [e.ipv4, e.ipv6])
            .flatten()
            .map(|n| n.addr())
            .collect();
        ops.push(Op::ForgetConnections(addrs));
    }
    if let Some(ns) = &sb.netns {
        ops.push(Op::DeleteNetns { path: ns.clone() });
    }
    for ep in &sb.endpoints {
        if let Some(bridge) = bridges.get(&ep.network_id) {
            ops.extend(forget_neighbours(ep, bridge));
        }
    }
    ops
}

/// The port guard's view of an endpoint: its bridge port, MAC and addresses.
pub fn firewall_endpoint(ep: &Endpoint) -> FwEndpoint {
    FwEndpoint {
        port: ep.host_interface.clone(),
        mac: parse_mac(&ep.mac).unwrap_or([0x02, 0x42, 0, 0, 0, 0]),
        ipv4: ep.ipv4.and_then(|n| match n.addr() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }),
        ipv6: ep.ipv6.and_then(|n| match n.addr() {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }),
    }
}

/// The one firewall operation of an attach: the port guard's elements of `endpoints` and
/// the published ports, added before the interfaces exist (so a port is guarded from its
/// first frame; a port without elements can send nothing).
pub fn plan_firewall_attach(endpoints: &[Endpoint], ports: Vec<FwPort>) -> Op {
    Op::FirewallAttach {
        endpoints: endpoints.iter().map(firewall_endpoint).collect(),
        ports,
    }
}

/// Parses `02:42:ac:11:00:02`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// What `weft gc` finds in the kernel that looks like weft's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Host interfaces whose alias is `weft:<id>`: (name, id).
    pub owned_links: Vec<(String, String)>,
    /// Namespace handle paths under the run directory.
    pub netns_files: Vec<String>,
}

/// What the state store says should exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Ids of networks and sandboxes that own kernel objects.
    pub owner_ids: BTreeSet<String>,
    /// Namespace handle paths of live sandboxes.
    pub netns_files: BTreeSet<String>,
}

/// The diff for `weft gc`: delete every weft-made link and namespace nothing owns.
pub fn plan_gc(desired: &Desired, observed: &Observed) -> Vec<Op> {
    let mut ops = Vec::new();
    for path in &observed.netns_files {
        if !desired.netns_files.contains(path) {
            ops.push(Op::DeleteNetns { path: path.clone() });
        }
    }
    for (name, id) in &observed.owned_links {
        if !desired.owner_ids.contains(id) {
            ops.push(Op::DeleteLink {
                ns: Ns::Host,
                ifname: name.clone(),
            });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::driver::bridge::plan_network;

    /// Records applied operations and fails on the n-th one.
    struct Fake {
        applied: Vec<Op>,
        fail_at: Option<usize>,
    }

    impl Executor for Fake {
        fn apply(&mut self, op: &Op) -> Result<(), ExecError> {
            if self.fail_at == Some(self.applied.len()) {
                self.fail_at = None;
                return Err(ExecError {
                    op: op.to_string(),
                    message: "boom".into(),
                });
            }
            self.applied.push(op.clone());
            Ok(())
        }
    }

    #[test]
    fn failure_rolls_back_in_reverse() {
        let ops = plan_network(&Network::example(), "i1", None);
        let mut fake = Fake {
            applied: vec![],
            fail_at: Some(ops.len() - 1),
        };
        let err = apply_all(&mut fake, &ops).unwrap_err();
        assert_eq!(err.cause.message, "boom");
        // The firewall op failed; the bridge made first is deleted last.
        assert_eq!(
            fake.applied.last(),
            Some(&Op::DeleteLink {
                ns: Ns::Host,
                ifname: "wbr-ab".into()
            })
        );
    }

    #[test]
    fn gc_deletes_only_what_nothing_owns() {
        let desired = Desired {
            owner_ids: ["n1".to_string(), "s1".to_string()].into(),
            netns_files: ["/r/netns/s1".to_string()].into(),
        };
        let observed = Observed {
            owned_links: vec![
                ("wbr-n1".into(), "n1".into()),
                ("wvs1".into(), "s1".into()),
                ("wvs2".into(), "s2".into()),
            ],
            netns_files: vec!["/r/netns/s1".into(), "/r/netns/s2".into()],
        };
        let ops = plan_gc(&desired, &observed);
        assert_eq!(
            ops,
            vec![
                Op::DeleteNetns {
                    path: "/r/netns/s2".into()
                },
                Op::DeleteLink {
                    ns: Ns::Host,
                    ifname: "wvs2".into()
                }
            ]
        );
    }

    #[test]
    fn aliases_name_their_instance() {
        let a = owner_alias("0a1b2c3d", "ab12");
        assert_eq!(a, "weft:0a1b2c3d:ab12");
        assert_eq!(alias_owner("0a1b2c3d", &a), Some("ab12"));
        assert_eq!(alias_owner("ffffffff", &a), None);
        assert_eq!(alias_owner("0a1b2c3d", "weft:ab12"), None);
        assert_eq!(alias_owner("0a1b2c3d", "someone else's"), None);
        assert_eq!(alias_instance(&a), Some("0a1b2c3d"));
        assert_eq!(alias_instance("weft:ab12"), None);
        assert_eq!(alias_instance("someone else's"), None);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(parse_mac("02:42"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:02:ff"), None);
    }
}

//! Weft's own nftables rule set, as pure data.
//!
//! Two tables, whose rules never change per network or sandbox: networks, sandboxes and
//! published ports only add and remove *set elements*. So attaching is one small batch, no
//! rule is ever searched for or deleted, and the whole rule set can be rebuilt at any time
//! (after a host firewall reload, an `nft flush ruleset`, or an upgrade of weft) from the
//! records, atomically (see [`drift`]).
//!
//! `inet weft` filters between networks and does NAT ([`inet`]); `bridge weft` guards the
//! sandboxes' bridge ports against spoofed addresses and router messages ([`guard`]). Both
//! carry their owner in their comment, `weft:<instance> <state dir>`, and every rule weft adds
//! carries its fingerprint in its userdata, so a dump tells exactly what drifted.
//!
//! ```text
//! table inet weft {
//!   comment "weft:<instance> <state dir>"
//!   set bridges  { type ifname; }                    # every weft bridge
//!   set pairs    { type ifname . ifname; }           # (br, br): traffic inside one network
//!   set noicc    { type ifname . ifname; }           # (br, br) of icc=false networks
//!   set internal { type ifname; }                    # bridges of --internal networks
//!   set masq4    { type ipv4_addr; flags interval; } # subnets to masquerade
//!   set masq6    { type ipv6_addr; flags interval; }
//!   set nets4    { type ipv4_addr; flags interval; } # every weft subnet (hairpin NAT)
//!   set nets6    { type ipv6_addr; flags interval; }
//!   map dnat4    { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
//!   map dnat4any { type inet_proto . inet_service : ipv4_addr . inet_service; }
//!   map dnat6    { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
//!   map dnat6any { type inet_proto . inet_service : ipv6_addr . inet_service; }
//!   map dns4     { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
//!   map dns6     { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
//!                                                    # (gateway, udp|tcp, 53) to (gateway, agent's port)
//!   set ports    { type ifname; }                    # weft's bridge ports (host veth ends)
//!   chain user { }                                   # the users' own: never flushed by weft
//!   chain forward { type filter hook forward priority 0; policy accept;
//!     (per VXLAN port P of this host's overlay networks:)
//!     udp dport P iifname @bridges ip daddr @vteps4 drop  # a sandbox's VXLAN to a member
//!     udp dport P iifname @bridges ip6 daddr @vteps6 drop
//!     jump user
//!     iifname . oifname @noicc drop                  # routed between isolated ports
//!     iifname . oifname @pairs accept
//!     iifname @internal drop                         # internal: its own network only
//!     oifname @internal drop
//!     ct status dnat accept                          # published ports, from anywhere
//!     iifname @bridges oifname @bridges drop
//!     oifname @bridges ct state established,related accept
//!     oifname @bridges drop
//!     (when weft turned forwarding on and ip_forward_no_drop is off:)
//!     iifname @bridges accept
//!     meta nfproto ipv4 drop                         # the host is no router for others
//!     meta nfproto ipv6 drop
//!   }
//!   set vteps4   { type ipv4_addr; }                 # the cluster's VTEPs (the agent's)
//!   set vteps6   { type ipv6_addr; }
//!   chain input { type filter hook input priority 0; policy accept;
//!     iifname @bridges ip daddr 127.0.0.0/8 ct status & dnat == 0 drop # route_localnet=1
//!     (per VXLAN port P of this host's overlay networks:)
//!     udp dport P ip saddr != @vteps4 drop           # only member VTEPs feed the tunnels
//!     udp dport P ip6 saddr != @vteps6 drop
//!   }
//!   chain raw { type filter hook prerouting priority -300; policy accept;
//!     iifname @ports drop                            # passed up by a port, not the bridge
//!     (per VXLAN port P:) udp dport P ip saddr @vteps4 iifname != @bridges notrack return
//!                                                    # the tunnel itself (and ip6, @vteps6)
//!     iifname != @bridges return
//!     ip daddr @gateways4 return                     # may be a published port: tracked
//!     ip saddr . ip daddr @local4 notrack            # inside one network: bridged only
//!     (the same for IPv6)
//!   }
//!   chain prerouting { type nat hook prerouting priority -100; policy accept;
//!     ip daddr 127.0.0.0/8 return                    # loopback ports: never from outside
//!     ip6 daddr ::1 return
//!     iifname @bridges dnat ip to ip daddr . meta l4proto . th dport map @dns4   # DNS: the agent
//!     iifname @bridges dnat ip6 to ip6 daddr . meta l4proto . th dport map @dns6
//!     dnat ip to ip daddr . meta l4proto . th dport map @dnat4
//!     fib daddr type local dnat ip to meta l4proto . th dport map @dnat4any
//!     dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6
//!     fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6any
//!   }
//!   chain raw_output { type filter hook output priority -300; policy accept;
//!     (per VXLAN port P:) udp dport P ip daddr @vteps4 notrack   # (and ip6, @vteps6)
//!   }
//!   chain output { type nat hook output priority -100; policy accept;
//!     ip6 daddr ::1 return                           # IPv6 cannot route ::1 out of the host
//!     (the four dnat rules of prerouting: the host reaches its own published ports)
//!   }
//!   chain postrouting { type nat hook postrouting priority 100; policy accept;
//!     oifname @bridges ct status dnat ip saddr @nets4 masquerade      # hairpin, cross-network
//!     oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade # from the host's loopback
//!     oifname @bridges ct status dnat ip6 saddr @nets6 masquerade
//!     oifname @bridges return
//!     ip saddr @masq4 masquerade
//!     ip6 saddr @masq6 masquerade
//!   }
//! }
//! table bridge weft { ... }                          # the port guard, see [`guard`]
//! ```
//!
//! A published port is one map element, whatever the number of ports: publishing and
//! unpublishing add and remove elements, and the rule set never grows.
//!
//! DNS: a sandbox asks its gateway's port 53; `dns4`/`dns6` send what arrives on a weft bridge
//! there to the port the host agent's DNS server recorded (`RUN_DIR/dns.port`), on the same
//! gateway address. Only sandboxes' packets are redirected (a host process holding port 53 sees
//! none of them), before published ports (a sandbox publishing port 53 takes nothing from
//! its neighbours' lookups). No element without a recorded port, none for `dns=false` networks.
//!
//! VXLAN: a VXLAN device takes the inner frame of any UDP datagram to its port that carries
//! its VNI, whoever sent it. With overlay networks on this host, `input` drops what arrives
//! for their ports from an address that is no member's VTEP. The members (`vteps4`,
//! `vteps6`) are the host agent's: its cluster task keeps them equal to the cluster's live
//! hosts, so the firewall's own check and repair leave those sets' elements alone
//! ([`agent_owned`]) — a repair keeps them, a set made anew starts empty (everything dropped)
//! until the agent fills it. The tunnel's own datagrams between members (received from outside
//! the bridges in `raw`, sent by the host in `raw_output`) are not tracked: conntrack would
//! only cost them a look-up each and an entry per inner flow and direction.

pub mod drift;
pub mod foreign;
pub mod guard;
pub mod inet;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

pub use inet::{
    forward_rules, input_rules, output_rules, postrouting_rules, prerouting_rules,
    raw_output_rules, raw_rules,
};

use crate::core::nft::{
    concat, BaseChain, Batch, Chain, ChainType, DataType, Elem, ElemData, Expr, Family, Hook,
    KeyType, Policy, SetSpec,
};

/// The filter/NAT table's family: one table for IPv4 and IPv6.
pub const FAMILY: Family = Family::Inet;
/// The tables' name (in both families).
pub const TABLE: &str = "weft";
/// The port guard's family.
pub const GUARD_FAMILY: Family = Family::Bridge;

/// Set of every weft bridge.
pub const SET_BRIDGES: &str = "bridges";
/// Set of `(bridge, bridge)` pairs: traffic that stays inside one network.
pub const SET_PAIRS: &str = "pairs";
/// Set of `(bridge, bridge)` pairs of `icc=false` networks: only published ports may be
/// reached between their ports through the host.
pub const SET_NOICC: &str = "noicc";
/// Set of the bridges of internal networks.
pub const SET_INTERNAL: &str = "internal";
/// IPv4 subnets to masquerade.
pub const SET_MASQ4: &str = "masq4";
/// IPv6 subnets to masquerade.
pub const SET_MASQ6: &str = "masq6";
/// Every weft IPv4 subnet.
pub const SET_NETS4: &str = "nets4";
/// Every weft IPv6 subnet.
pub const SET_NETS6: &str = "nets6";
/// (subnet, subnet) of every IPv4 network: traffic that stays inside one network.
pub const SET_LOCAL4: &str = "local4";
/// (subnet, subnet) of every IPv6 network.
pub const SET_LOCAL6: &str = "local6";
/// Gateway addresses: traffic to them may be a published port (DNAT), so it is tracked.
pub const SET_GATEWAYS4: &str = "gateways4";
/// IPv6 gateway addresses.
pub const SET_GATEWAYS6: &str = "gateways6";
/// Published IPv4 ports on one host address: (address, protocol, port) to (sandbox, port).
pub const MAP_DNAT4: &str = "dnat4";
/// Published IPv4 ports on every host address: (protocol, port) to (sandbox, port).
pub const MAP_DNAT4_ANY: &str = "dnat4any";
/// Published IPv6 ports on one host address.
pub const MAP_DNAT6: &str = "dnat6";
/// Published IPv6 ports on every host address.
pub const MAP_DNAT6_ANY: &str = "dnat6any";
/// Sandboxes' DNS queries: (gateway, protocol, 53) to (gateway, the agent's DNS port).
pub const MAP_DNS4: &str = "dns4";
/// The same for IPv6 gateways.
pub const MAP_DNS6: &str = "dns6";
/// The port sandboxes send their DNS queries to (on their gateway's address).
pub const DNS_PORT: u16 = 53;
/// The IPv4 underlay addresses of the cluster's live hosts (this one's included): the only
/// sources whose datagrams to a VXLAN port are let in. Filled by the agent.
pub const SET_VTEPS4: &str = "vteps4";
/// The same for IPv6 underlays.
pub const SET_VTEPS6: &str = "vteps6";
/// Port guard: (port, MAC, IPv4 address) a sandbox may send from.
pub const SET_GUARD4: &str = "src4";
/// Port guard: (port, MAC, IPv6 address) a sandbox may send from.
pub const SET_GUARD6: &str = "src6";
/// weft's bridge ports (the host ends of its veths), in both tables: the port guard polices
/// exactly these, and `inet weft` drops what the IP stack receives on them directly.
pub const SET_PORTS: &str = "ports";

/// The users' chain, jumped to first from `forward`; weft creates it but never flushes it.
pub const CHAIN_USER: &str = "user";
/// The filter chain on the forward hook.
pub const CHAIN_FORWARD: &str = "forward";
/// The nat chain on the postrouting hook.
pub const CHAIN_POSTROUTING: &str = "postrouting";
/// The filter chain on the input hook.
pub const CHAIN_INPUT: &str = "input";
/// The raw chain on the prerouting hook (before connection tracking).
pub const CHAIN_RAW: &str = "raw";
/// The raw chain on the output hook (before connection tracking): the host's own VXLAN
/// datagrams to the other members go untracked.
pub const CHAIN_RAW_OUTPUT: &str = "raw_output";
/// The nat chain on the prerouting hook (published ports from outside and from sandboxes).
pub const CHAIN_PREROUTING: &str = "prerouting";
/// The nat chain on the output hook (published ports from the host itself).
pub const CHAIN_OUTPUT: &str = "output";

/// What the firewall needs to know about one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwNetwork {
    /// The Linux bridge's name.
    pub bridge: String,
    /// Internal networks have no route out: traffic to or from other interfaces is dropped.
    pub internal: bool,
    /// Inter-container communication (`icc=false`: sandboxes reach the gateway only).
    pub icc: bool,
    /// IPv4 subnet whose traffic leaving the host is masqueraded.
    pub masq_v4: Option<Ipv4Net>,
    /// IPv6 subnet whose traffic leaving the host is masqueraded.
    pub masq_v6: Option<Ipv6Net>,
    /// The network's IPv4 subnet (for hairpin NAT of published ports).
    pub subnet_v4: Option<Ipv4Net>,
    /// The network's IPv6 subnet.
    pub subnet_v6: Option<Ipv6Net>,
    /// The gateway addresses (the bridge's).
    pub gateways: Vec<IpAddr>,
    /// The host agent's DNS port, for a network with DNS while the agent has recorded one:
    /// queries to a gateway's port 53 go there.
    pub dns_port: Option<u16>,
}

/// One published port, as the firewall sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwPort {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
    /// The host address it is published on; `None` means every address of its family.
    pub host_ip: Option<IpAddr>,
    /// Port on the host.
    pub host_port: u16,
    /// The sandbox address (its family decides the map).
    pub target: IpAddr,
    /// Port in the sandbox.
    pub target_port: u16,
}

/// One sandbox interface, as the port guard sees it: what may come in through its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwEndpoint {
    /// The host end of its veth (a bridge port, `wv…`).
    pub port: String,
    /// The sandbox interface's MAC.
    pub mac: [u8; 6],
    /// Its IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// Its IPv6 address; its link-local address (EUI-64 of `mac`) is allowed with it.
    pub ipv6: Option<Ipv6Addr>,
}

/// What the rules depend on besides the records: the configuration and what weft found on
/// the host before it changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwOptions {
    /// Police the sandbox ports' source addresses (`anti_spoofing` in the config).
    pub anti_spoofing: bool,
    /// Drop forwarded IPv4 traffic that touches no weft bridge (weft turned forwarding on).
    pub forward_drop_v4: bool,
    /// The same for IPv6.
    pub forward_drop_v6: bool,
    /// The UDP ports of this host's overlay networks' VXLAN devices (sorted, each once):
    /// datagrams to them from no member VTEP are dropped. Empty without overlay networks.
    pub vxlan_ports: Vec<u16>,
}

impl Default for FwOptions {
    fn default() -> Self {
        FwOptions {
            anti_spoofing: true,
            forward_drop_v4: false,
            forward_drop_v6: false,
            vxlan_ports: Vec::new(),
        }
    }
}

/// The state directory that owns weft's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its instance id (8 hex digits).
    pub instance: String,
    /// The state directory's path, for messages.
    pub state_dir: String,
}

impl Owner {
    /// The tables' comment: `weft:<instance> <state dir>`.
    pub fn comment(&self) -> String {
        format!("weft:{} {}", self.instance, self.state_dir)
    }

    /// The owner named by a table comment made by [`Owner::comment`]; `None` for any other
    /// comment (or none).
    pub fn parse(comment: &str) -> Option<Owner> {
        let rest = comment.strip_prefix("weft:")?;
        let (instance, dir) = rest.split_once(' ').unwrap_or((rest, ""));
        (!instance.is_empty()).then(|| Owner {
            instance: instance.to_string(),
            state_dir: dir.to_string(),
        })
    }
}

/// A chain of one of weft's tables and the rules weft keeps in it; `rules` is `None` for
/// the user chain, whose rules are the users' own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDef {
    /// The chain.
    pub chain: Chain,
    /// Its rules, in order.
    pub rules: Option<Vec<Vec<Expr>>>,
}

/// One of weft's tables: its chains (base chains and the chains they jump to) and sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Family.
    pub family: Family,
    /// Name.
    pub name: &'static str,
    /// Chains, in the order they are created.
    pub chains: Vec<ChainDef>,
    /// Sets and maps.
    pub sets: Vec<SetSpec>,
}

/// The sets and maps of `inet weft`, with the exact definitions the kernel compares on every
/// re-add (a set with another definition is `EEXIST`: [`drift`] replaces it).
fn inet_sets() -> Vec<SetSpec> {
    vec![
        SetSpec::new(SET_BRIDGES, KeyType::Ifname),
        SetSpec::new(SET_PAIRS, KeyType::IfnamePair),
        SetSpec::new(SET_NOICC, KeyType::IfnamePair),
        SetSpec::new(SET_INTERNAL, KeyType::Ifname),
        SetSpec::new(SET_MASQ4, KeyType::Ipv4Addr).interval(),
        SetSpec::new(SET_MASQ6, KeyType::Ipv6Addr).interval(),
        SetSpec::new(SET_NETS4, KeyType::Ipv4Addr).interval(),
        SetSpec::new(SET_NETS6, KeyType::Ipv6Addr).interval(),
        SetSpec::new(MAP_DNAT4, KeyType::Ipv4ProtoService)
            .map(DataType::Value(KeyType::Ipv4Service)),
        SetSpec::new(MAP_DNAT4_ANY, KeyType::ProtoService)
            .map(DataType::Value(KeyType::Ipv4Service)),
        SetSpec::new(MAP_DNAT6, KeyType::Ipv6ProtoService)
            .map(DataType::Value(KeyType::Ipv6Service)),
        SetSpec::new(MAP_DNAT6_ANY, KeyType::ProtoService)
            .map(DataType::Value(KeyType::Ipv6Service)),
        SetSpec::new(SET_LOCAL4, KeyType::Ipv4Pair).interval(),
        SetSpec::new(SET_LOCAL6, KeyType::Ipv6Pair).interval(),
        SetSpec::new(SET_GATEWAYS4, KeyType::Ipv4Addr),
        SetSpec::new(SET_GATEWAYS6, KeyType::Ipv6Addr),
        SetSpec::new(SET_PORTS, KeyType::Ifname),
        SetSpec::new(MAP_DNS4, KeyType::Ipv4ProtoService)
            .map(DataType::Value(KeyType::Ipv4Service)),
        SetSpec::new(MAP_DNS6, KeyType::Ipv6ProtoService)
            .map(DataType::Value(KeyType::Ipv6Service)),
        SetSpec::new(SET_VTEPS4, KeyType::Ipv4Addr),
        SetSpec::new(SET_VTEPS6, KeyType::Ipv6Addr),
    ]
}

/// Whether a set's elements belong to the host agent rather than to the records: the
/// firewall's check neither requires nor removes them, its repair keeps them, and
/// [`flush_elements`] leaves them (the agent's cluster task fills and repairs them).
pub fn agent_owned(family: Family, set: &str) -> bool {
    family == FAMILY && (set == SET_VTEPS4 || set == SET_VTEPS6)
}

/// The elements of `vteps4` and `vteps6` for these VTEP addresses.
fn vtep_elements(vteps: &[IpAddr]) -> [(&'static str, Vec<Elem>); 2] {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for a in vteps {
        match a {
            IpAddr::V4(a) => v4.push(Elem::new(a.octets())),
            IpAddr::V6(a) => v6.push(Elem::new(a.octets())),
        }
    }
    [(SET_VTEPS4, v4), (SET_VTEPS6, v6)]
}

/// Adds member VTEPs (re-adding one is no error).
pub fn add_vteps(batch: &mut Batch, vteps: &[IpAddr]) {
    for (set, elems) in vtep_elements(vteps) {
        batch.add_elements(FAMILY, TABLE, set, elems);
    }
}

/// Removes member VTEPs (an absent one is no error).
pub fn remove_vteps(batch: &mut Batch, vteps: &[IpAddr]) {
    for (set, elems) in vtep_elements(vteps) {
        batch.destroy_elements(FAMILY, TABLE, set, elems);
    }
}

/// The addresses held by `vteps4` (`v4`) and `vteps6` (`v6`), from their elements' keys;
/// keys of another length are left out.
pub fn vteps_of(v4: &[Vec<u8>], v6: &[Vec<u8>]) -> Vec<IpAddr> {
    let a4 = v4
        .iter()
        .filter_map(|k| <[u8; 4]>::try_from(k.as_slice()).ok())
        .map(|o| IpAddr::V4(Ipv4Addr::from(o)));
    let a6 = v6
        .iter()
        .filter_map(|k| <[u8; 16]>::try_from(k.as_slice()).ok())
        .map(|o| IpAddr::V6(Ipv6Addr::from(o)));
    a4.chain(a6).collect()
}

fn base(name: &str, hook: Hook, priority: i32, kind: ChainType) -> Chain {
    Chain {
        name: name.into(),
        base: Some(BaseChain {
            hook,
            priority,
            kind,
            policy: Policy::Accept,
        }),
    }
}

fn regular(name: &str) -> Chain {
    Chain {
        name: name.into(),
        base: None,
    }
}

/// Weft's two tables, as `opts` wants them.
pub fn tables(opts: &FwOptions) -> Vec<TableDef> {
    let def = |chain, rules| ChainDef {
        chain,
        rules: Some(rules),
    };
    let inet = TableDef {
        family: FAMILY,
        name: TABLE,
        chains: vec![
            ChainDef {
                chain: regular(CHAIN_USER),
                rules: None,
            },
            def(
                base(CHAIN_FORWARD, Hook::Forward, 0, ChainType::Filter),
                forward_rules(opts),
            ),
            def(
                base(CHAIN_INPUT, Hook::Input, 0, ChainType::Filter),
                input_rules(opts),
            ),
            def(
                base(CHAIN_RAW, Hook::Prerouting, -300, ChainType::Filter),
                raw_rules(opts),
            ),
            def(
                base(CHAIN_RAW_OUTPUT, Hook::Output, -300, ChainType::Filter),
                raw_output_rules(opts),
            ),
            def(
                base(CHAIN_PREROUTING, Hook::Prerouting, -100, ChainType::Nat),
                prerouting_rules(),
            ),
            def(
                base(CHAIN_OUTPUT, Hook::Output, -100, ChainType::Nat),
                output_rules(),
            ),
            def(
                base(CHAIN_POSTROUTING, Hook::Postrouting, 100, ChainType::Nat),
                postrouting_rules(),
            ),
        ],
        sets: inet_sets(),
    };
    // Regular chains first: the base chains' gotos need them.
    let (bases, regulars): (Vec<ChainDef>, Vec<ChainDef>) = guard::chains(opts)
        .into_iter()
        .map(|(name, rules)| {
            let chain = match name {
                guard::CHAIN_GUARD => base(name, Hook::Prerouting, -300, ChainType::Filter),
                guard::CHAIN_GUARD_INPUT => base(name, Hook::Input, -300, ChainType::Filter),
                _ => regular(name),
            };
            def(chain, rules)
        })
        .partition(|c| c.chain.base.is_some());
    let bridge = TableDef {
        family: GUARD_FAMILY,
        name: TABLE,
        chains: regulars.into_iter().chain(bases).collect(),
        sets: vec![
            SetSpec::new(SET_PORTS, KeyType::Ifname),
            SetSpec::new(SET_GUARD4, KeyType::IfnameEtherIpv4),
            SetSpec::new(SET_GUARD6, KeyType::IfnameEtherIpv6),
        ],
    };
    vec![inet, bridge]
}

/// Adds to `batch` everything weft's tables need, on an empty or complete rule set: the
/// tables (owned by `owner`), the sets and chains if absent, and the rules of every chain but
/// the user chain, flushed and re-added. Idempotent and atomic within the batch; set
/// elements and the user chain's rules survive. (Repairing an arbitrary state is
/// [`drift::repair`]'s job.)
pub fn ensure_base(batch: &mut Batch, opts: &FwOptions, owner: &Owner) {
    for t in tables(opts) {
        batch.add_table_with_comment(t.family, t.name, &owner.comment());
        for s in t.sets {
            batch.add_set(t.family, t.name, s);
        }
        for c in &t.chains {
            batch.add_chain(t.family, t.name, c.chain.clone());
        }
        for c in t.chains {
            if let Some(rules) = c.rules {
                batch.flush_chain(t.family, t.name, &c.chain.name);
                for r in rules {
                    batch.add_rule_tagged(t.family, t.name, &c.chain.name, r);
                }
            }
        }
    }
}

/// Empties every set and map of both tables (never the user chain), e.g. before the elements
/// of the records are re-added in the same batch; the agent's sets ([`agent_owned`]) keep
/// theirs.
pub fn flush_elements(batch: &mut Batch) {
    for t in tables(&FwOptions::default()) {
        for s in t.sets {
            if !agent_owned(t.family, &s.name) {
                batch.flush_set(t.family, t.name, &s.name);
            }
        }
    }
}

/// The elements a network owns, per (family, set).
fn elements(net: &FwNetwork, for_removal: bool) -> Vec<(Family, &'static str, Vec<Elem>)> {
    let br = &net.bridge;
    let mut v = vec![
        (SET_BRIDGES, vec![Elem::ifname(br)]),
        (SET_PAIRS, vec![Elem::ifname_pair(br, br)]),
    ];
    // Removal also clears `internal` and `noicc` whatever the record says: destroying an
    // absent element is free, and it cleans up after a record that changed.
    if net.internal || for_removal {
        v.push((SET_INTERNAL, vec![Elem::ifname(br)]));
    }
    if !net.icc || for_removal {
        v.push((SET_NOICC, vec![Elem::ifname_pair(br, br)]));
    }
    if let Some(p) = net.masq_v4 {
        v.push((SET_MASQ4, Elem::prefix_v4(p)));
    }
    if let Some(p) = net.masq_v6 {
        v.push((SET_MASQ6, Elem::prefix_v6(p)));
    }
    if let Some(p) = net.subnet_v4 {
        v.push((SET_NETS4, Elem::prefix_v4(p)));
    }
    if let Some(p) = net.subnet_v6 {
        v.push((SET_NETS6, Elem::prefix_v6(p)));
    }
    if let Some(p) = net.subnet_v4 {
        let (a, b) = (p.network().octets(), p.broadcast().octets());
        v.push((SET_LOCAL4, vec![range_pair(&a, &b)]));
    }
    if let Some(p) = net.subnet_v6 {
        let (a, b) = (p.network().octets(), p.broadcast().octets());
        v.push((SET_LOCAL6, vec![range_pair(&a, &b)]));
    }
    let gw4: Vec<Elem> = net
        .gateways
        .iter()
        .filter_map(|g| match g {
            IpAddr::V4(a) => Some(Elem::new(a.octets())),
            IpAddr::V6(_) => None,
        })
        .collect();
    let gw6: Vec<Elem> = net
        .gateways
        .iter()
        .filter_map(|g| match g {
            IpAddr::V6(a) => Some(Elem::new(a.octets())),
            IpAddr::V4(_) => None,
        })
        .collect();
    if !gw4.is_empty() {
        v.push((SET_GATEWAYS4, gw4));
    }
    if !gw6.is_empty() {
        v.push((SET_GATEWAYS6, gw6));
    }
    // Removal destroys the keys whatever the port (the one recorded may have changed since).
    if net.dns_port.is_some() || for_removal {
        let (dns4, dns6) = dns_elements(net);
        if !dns4.is_empty() {
            v.push((MAP_DNS4, dns4));
        }
        if !dns6.is_empty() {
            v.push((MAP_DNS6, dns6));
        }
    }
    v.into_iter().map(|(s, e)| (FAMILY, s, e)).collect()
}

/// The DNS redirects of a network, IPv4 and IPv6: for every gateway address G, (G, UDP, 53)
/// and (G, TCP, 53) to (G, the agent's port); keys only when there is no port (removal).
fn dns_elements(net: &FwNetwork) -> (Vec<Elem>, Vec<Elem>) {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for g in &net.gateways {
        let addr = match g {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        for proto in [UDP, TCP] {
            let key = concat(&[&addr, &[proto], &DNS_PORT.to_be_bytes()]);
            let elem = match net.dns_port {
                Some(p) => {
                    Elem::new(key).with_data(ElemData::Value(concat(&[&addr, &p.to_be_bytes()])))
                }
                None => Elem::new(key),
            };
            match g {
                IpAddr::V4(_) => v4.push(elem),
                IpAddr::V6(_) => v6.push(elem),
            }
        }
    }
    (v4, v6)
}

/// The IPv6 link-local address the kernel gives an interface with this MAC (EUI-64, the
/// default `addr_gen_mode` of a fresh namespace).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// The elements of an endpoint, per (family, set): its port in both tables' `ports`, and
/// the port guard's (port, MAC, address) of each of its addresses.
fn endpoint_elements(ep: &FwEndpoint) -> Vec<(Family, &'static str, Elem)> {
    let mut v = vec![
        (GUARD_FAMILY, SET_PORTS, Elem::ifname(&ep.port)),
        (FAMILY, SET_PORTS, Elem::ifname(&ep.port)),
    ];
    if let Some(a) = ep.ipv4 {
        v.push((
            GUARD_FAMILY,
            SET_GUARD4,
            Elem::port_mac_ipv4(&ep.port, ep.mac, a),
        ));
    }
    if let Some(a) = ep.ipv6 {
        v.push((
            GUARD_FAMILY,
            SET_GUARD6,
            Elem::port_mac_ipv6(&ep.port, ep.mac, a),
        ));
        v.push((
            GUARD_FAMILY,
            SET_GUARD6,
            Elem::port_mac_ipv6(&ep.port, ep.mac, link_local(ep.mac)),
        ));
    }
    v
}

/// Every element of sandbox interfaces and published ports, grouped per (family, set).
fn attach_elements(eps: &[FwEndpoint], ports: &[FwPort]) -> Vec<(Family, &'static str, Vec<Elem>)> {
    let mut out: Vec<(Family, &'static str, Vec<Elem>)> = Vec::new();
    let mut push = |family, set, e| match out.iter_mut().find(|(f, s, _)| *f == family && *s == set)
    {
        Some((_, _, v)) => v.push(e),
        None => out.push((family, set, vec![e])),
    };
    for ep in eps {
        for (family, set, e) in endpoint_elements(ep) {
            push(family, set, e);
        }
    }
    for p in ports {
        let (map, e) = port_elem(p);
        push(FAMILY, map, e);
    }
    out
}

/// Adds the elements of sandbox interfaces (the port guard's) and of published ports: what
/// one attach adds, in one batch.
pub fn attach(batch: &mut Batch, eps: &[FwEndpoint], ports: &[FwPort]) {
    for (family, set, elems) in attach_elements(eps, ports) {
        batch.add_elements(family, TABLE, set, elems);
    }
}

/// Removes what [`attach`] added; absent elements are no error.
pub fn detach(batch: &mut Batch, eps: &[FwEndpoint], ports: &[FwPort]) {
    for (family, set, elems) in attach_elements(eps, ports) {
        batch.destroy_elements(family, TABLE, set, elems);
    }
}

/// [`detach`] as one batch per table, for when one of the tables is gone (the whole batch
/// would fail with `ENOENT`) and the other's elements must still go.
pub fn detach_per_table(eps: &[FwEndpoint], ports: &[FwPort]) -> Vec<Batch> {
    [FAMILY, GUARD_FAMILY]
        .into_iter()
        .map(|f| {
            let mut b = Batch::new();
            for (family, set, elems) in attach_elements(eps, ports) {
                if family == f {
                    b.destroy_elements(family, TABLE, set, elems);
                }
            }
            b
        })
        .collect()
}

/// Adds published ports: one element each, grouped per map.
pub fn publish(batch: &mut Batch, ports: &[FwPort]) {
    attach(batch, &[], ports);
}

/// Removes published ports; absent elements are no error.
pub fn unpublish(batch: &mut Batch, ports: &[FwPort]) {
    detach(batch, &[], ports);
}

/// Adds the network's elements (its bridge, its pair, its masquerade prefixes). Re-adding
/// existing elements is no error.
pub fn add_network(batch: &mut Batch, net: &FwNetwork) {
    for (family, set, elems) in elements(net, false) {
        batch.add_elements(family, TABLE, set, elems);
    }
}

/// Removes the network's elements; absent elements are no error.
pub fn remove_network(batch: &mut Batch, net: &FwNetwork) {
    for (family, set, elems) in elements(net, true) {
        batch.destroy_elements(family, TABLE, set, elems);
    }
}

/// Every element weft's sets should hold for these networks, interfaces and ports, per
/// (family, set): the desired content that [`drift`] compares with the kernel's.
pub fn all_elements(
    nets: &[FwNetwork],
    eps: &[FwEndpoint],
    ports: &[FwPort],
) -> Vec<(Family, &'static str, Vec<Elem>)> {
    let mut out = attach_elements(eps, ports);
    for n in nets {
        for (family, set, elems) in elements(n, false) {
            match out.iter_mut().find(|(f, s, _)| *f == family && *s == set) {
                Some((_, _, v)) => v.extend(elems),
                None => out.push((family, set, elems)),
            }
        }
    }
    out
}

/// The interval-concatenation element `first . first` to `last . last`: both addresses of
/// the pair anywhere in the subnet.
fn range_pair(first: &[u8], last: &[u8]) -> Elem {
    Elem {
        key: concat(&[first, first]),
        key_end: Some(concat(&[last, last])),
        interval_end: false,
        data: None,
    }
}

/// The map and element of a published port.
fn port_elem(p: &FwPort) -> (&'static str, Elem) {
    let proto_port = |port: u16| concat(&[&[p.proto], &port.to_be_bytes()]);
    let (map, key, data) = match p.target {
        IpAddr::V4(t) => {
            let data = concat(&[&t.octets(), &p.target_port.to_be_bytes()]);
            match p.host_ip {
                Some(IpAddr::V4(h)) if !h.is_unspecified() => (
                    MAP_DNAT4,
                    concat(&[&h.octets(), &[p.proto], &p.host_port.to_be_bytes()]),
                    data,
                ),
                _ => (MAP_DNAT4_ANY, proto_port(p.host_port), data),
            }
        }
        IpAddr::V6(t) => {
            let data = concat(&[&t.octets(), &p.target_port.to_be_bytes()]);
            match p.host_ip {
                Some(IpAddr::V6(h)) if !h.is_unspecified() => (
                    MAP_DNAT6,
                    concat(&[&h.octets(), &[p.proto], &p.host_port.to_be_bytes()]),
                    data,
                ),
                _ => (MAP_DNAT6_ANY, proto_port(p.host_port), data),
            }
        }
    };
    (map, Elem::new(key).with_data(ElemData::Value(data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nft::{CmpOp, Expr, MetaKey, Msg, Reg, Verdict};

    fn net(internal: bool) -> FwNetwork {
        FwNetwork {
            bridge: "weft-br1".into(),
            internal,
            icc: true,
            masq_v4: Some("172.18.0.0/16".parse().unwrap()),
            masq_v6: Some("fd00:1::/64".parse().unwrap()),
            subnet_v4: None,
            subnet_v6: None,
            gateways: vec![],
            dns_port: None,
        }
    }

    fn owner() -> Owner {
        Owner {
            instance: "0a1b2c3d".into(),
            state_dir: "/var/lib/weft".into(),
        }
    }

    fn base_ops(opts: &FwOptions) -> Vec<String> {
        let mut b = Batch::new();
        ensure_base(&mut b, opts, &owner());
        b.ops()
    }

    #[test]
    fn ensure_base_is_deterministic() {
        let mut a = Batch::new();
        ensure_base(&mut a, &FwOptions::default(), &owner());
        let mut b = Batch::new();
        ensure_base(&mut b, &FwOptions::default(), &owner());
        assert_eq!(a.encode(7).unwrap(), b.encode(7).unwrap());
    }

    #[test]
    fn ensure_base_shape() {
        let ops = base_ops(&FwOptions::default());
        assert_eq!(ops[0], "add table inet weft");
        assert!(ops.contains(&"add table bridge weft".to_string()));
        // The user chain is created but never flushed; the base chains are flushed before
        // their rules are re-added.
        assert!(ops.contains(&"add chain inet weft user".to_string()));
        assert!(!ops.iter().any(|o| o == "flush chain inet weft user"));
        let flush_fwd = ops
            .iter()
            .position(|o| o == "flush chain inet weft forward")
            .unwrap();
        let first_rule = ops
            .iter()
            .position(|o| o == "add rule to inet weft forward")
            .unwrap();
        assert!(flush_fwd < first_rule);
        let count = |p: &str| ops.iter().filter(|o| o.starts_with(p)).count();
        assert_eq!(count("add rule to inet weft forward"), 9);
        assert_eq!(count("add rule to inet weft postrouting"), 6);
        assert_eq!(count("add rule to inet weft prerouting"), 8);
        assert_eq!(count("add set inet"), 21);
        assert_eq!(count("add set bridge"), 3);
        // The port guard hooks prerouting (every frame) and input (frames passed up).
        assert!(ops.contains(&"add chain bridge weft prerouting".to_string()));
        assert!(ops.contains(&"add chain bridge weft input".to_string()));
        // Nothing touches set elements.
        assert!(!ops
            .iter()
            .any(|o| o.contains("elements") || o.starts_with("flush set")));
        // Every rule carries its fingerprint; tables carry their owner.
        let mut b = Batch::new();
        ensure_base(&mut b, &FwOptions::default(), &owner());
        for m in b.msgs() {
            match m {
                Msg::AddRule { tag, .. } => assert!(tag.is_some()),
                Msg::AddTable { comment, .. } => {
                    assert_eq!(comment.as_deref(), Some("weft:0a1b2c3d /var/lib/weft"))
                }
                _ => {}
            }
        }
    }

    #[test]
    fn forward_drop_rules_follow_the_options() {
        let with = |v4, v6| FwOptions {
            forward_drop_v4: v4,
            forward_drop_v6: v6,
            ..FwOptions::default()
        };
        assert_eq!(forward_rules(&with(false, false)).len(), 9);
        let r = forward_rules(&with(true, false));
        assert_eq!(r.len(), 11);
        assert_eq!(
            r.last().unwrap(),
            &vec![
                Expr::meta(MetaKey::Nfproto, Reg::R0),
                Expr::cmp_eq(Reg::R0, vec![2]),
                Expr::Verdict(Verdict::Drop)
            ]
        );
        assert_eq!(forward_rules(&with(true, true)).len(), 12);
    }

    #[test]
    fn flush_elements_flushes_only_sets() {
        let mut b = Batch::new();
        flush_elements(&mut b);
        assert_eq!(b.len(), 22);
        assert!(b.ops().iter().all(|o| o.starts_with("flush set ")));
    }

    #[test]
    fn first_forward_rule_jumps_to_user() {
        assert_eq!(
            forward_rules(&FwOptions::default())[0],
            vec![Expr::Verdict(Verdict::Jump("user".into()))]
        );
    }

    #[test]
    fn forward_order_isolates_icc_false_and_internal_before_published_ports() {
        let r = forward_rules(&FwOptions::default());
        let lookup_of = |rule: &Vec<Expr>| {
            rule.iter().find_map(|e| match e {
                Expr::Lookup { set, .. } => Some(set.clone()),
                _ => None,
            })
        };
        let sets: Vec<Option<String>> = r.iter().map(lookup_of).collect();
        let pos = |s: &str| sets.iter().position(|x| x.as_deref() == Some(s)).unwrap();
        let dnat_accept = r
            .iter()
            .position(|rule| matches!(rule.first(), Some(Expr::Ct { .. })))
            .unwrap();
        assert!(pos(SET_NOICC) < pos(SET_PAIRS));
        assert!(pos(SET_INTERNAL) < dnat_accept);
        // noicc: the pair lookup uses consecutive registers, and the rule drops.
        assert_eq!(r[1][0], Expr::meta(MetaKey::Iifname, Reg::r32(0)));
        assert_eq!(r[1][1], Expr::meta(MetaKey::Oifname, Reg::r32(4)));
        assert_eq!(r[1].last(), Some(&Expr::Verdict(Verdict::Drop)));
    }

    #[test]
    fn masquerade_rules_are_guarded_by_nfproto() {
        for (rule, proto) in postrouting_rules()[4..].iter().zip([2u8, 10]) {
            assert_eq!(rule[0], Expr::meta(MetaKey::Nfproto, Reg::R0));
            assert_eq!(rule[1], Expr::cmp_eq(Reg::R0, vec![proto]));
            assert_eq!(rule.last(), Some(&Expr::Masquerade));
        }
    }

    #[test]
    fn add_network_elements() {
        let mut b = Batch::new();
        add_network(&mut b, &net(false));
        assert_eq!(
            b.ops(),
            [
                "add elements to inet weft bridges",
                "add elements to inet weft pairs",
                "add elements to inet weft masq4",
                "add elements to inet weft masq6",
            ]
        );
        let mut b = Batch::new();
        add_network(
            &mut b,
            &FwNetwork {
                masq_v4: None,
                masq_v6: None,
                icc: false,
                ..net(true)
            },
        );
        assert_eq!(b.ops()[2], "add elements to inet weft internal");
        assert_eq!(b.ops()[3], "add elements to inet weft noicc");
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn remove_network_uses_destroy() {
        let mut b = Batch::new();
        remove_network(&mut b, &net(false));
        let ops = b.ops();
        assert_eq!(ops.len(), 6);
        assert!(ops
            .iter()
            .all(|o| o.starts_with("destroy elements in inet weft ")));
        assert!(b
            .msgs()
            .iter()
            .all(|m| matches!(m, Msg::DestroyElems { .. })));
    }

    #[test]
    fn attach_is_one_batch_for_guard_and_ports() {
        let ep = FwEndpoint {
            port: "wv0123456789a0".into(),
            mac: [2, 0x42, 10, 1, 0, 2],
            ipv4: Some("10.1.0.2".parse().unwrap()),
            ipv6: Some("fd00:1::2".parse().unwrap()),
        };
        let port = FwPort {
            proto: 6,
            host_ip: None,
            host_port: 8080,
            target: "10.1.0.2".parse().unwrap(),
            target_port: 80,
        };
        let mut b = Batch::new();
        attach(&mut b, std::slice::from_ref(&ep), &[port]);
        assert_eq!(
            b.ops(),
            [
                "add elements to bridge weft ports",
                "add elements to inet weft ports",
                "add elements to bridge weft src4",
                "add elements to bridge weft src6",
                "add elements to inet weft dnat4any",
            ]
        );
        match &b.msgs()[3] {
            Msg::AddElems { elems, .. } => {
                assert_eq!(elems.len(), 2, "the address and the link-local one");
                assert_eq!(elems[1].key.len(), 40);
                assert_eq!(
                    &elems[1].key[24..],
                    &"fe80::42:aff:fe01:2".parse::<Ipv6Addr>().unwrap().octets()
                );
            }
            other => panic!("{other:?}"),
        }
        let mut b = Batch::new();
        detach(&mut b, &[ep], &[port]);
        assert!(b.ops().iter().all(|o| o.starts_with("destroy elements")));
    }

    fn elems_of(b: &Batch, set: &str) -> Vec<Elem> {
        b.msgs()
            .iter()
            .filter_map(|m| match m {
                Msg::AddElems { set: s, elems, .. } | Msg::DestroyElems { set: s, elems, .. }
                    if s == set =>
                {
                    Some(elems.clone())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn dns_redirects_each_gateway_udp_and_tcp_to_the_agents_port() {
        let with = |port| FwNetwork {
            gateways: vec!["10.1.0.1".parse().unwrap(), "fd00:1::1".parse().unwrap()],
            dns_port: port,
            ..net(false)
        };
        let mut b = Batch::new();
        add_network(&mut b, &with(Some(40053)));
        let v4 = elems_of(&b, MAP_DNS4);
        assert_eq!(v4.len(), 2);
        // (Each part of a concatenation fills whole 4-byte registers.)
        assert_eq!(v4[0].key, [10, 1, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(v4[1].key, [10, 1, 0, 1, 6, 0, 0, 0, 0, 53, 0, 0]);
        for e in &v4 {
            assert_eq!(
                e.data,
                Some(ElemData::Value(vec![10, 1, 0, 1, 0x9c, 0x75, 0, 0])),
                "the gateway itself, the agent's port"
            );
        }
        let v6 = elems_of(&b, MAP_DNS6);
        assert_eq!(v6.len(), 2);
        let g6 = "fd00:1::1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(v6[0].key, concat(&[&g6, &[17], &53u16.to_be_bytes()]));
        assert_eq!(
            v6[1].data,
            Some(ElemData::Value(concat(&[&g6, &40053u16.to_be_bytes()])))
        );
        // No port recorded: no redirect (queries meet a closed port at the gateway).
        let mut b = Batch::new();
        add_network(&mut b, &with(None));
        assert!(elems_of(&b, MAP_DNS4).is_empty() && elems_of(&b, MAP_DNS6).is_empty());
        // Removal takes the keys whatever port they lead to now.
        let mut b = Batch::new();
        remove_network(&mut b, &with(None));
        let gone = elems_of(&b, MAP_DNS4);
        assert_eq!(gone.len(), 2);
        assert!(gone.iter().all(|e| e.data.is_none()));
        assert_eq!(elems_of(&b, MAP_DNS6).len(), 2);
    }

    #[test]
    fn dns_rules_come_after_the_loopback_returns_and_before_published_ports() {
        let r = prerouting_rules();
        let map_of = |rule: &Vec<Expr>| {
            rule.iter().find_map(|e| match e {
                Expr::Lookup {
                    set, dreg: Some(_), ..
                } => Some(set.clone()),
                _ => None,
            })
        };
        let maps: Vec<Option<String>> = r.iter().map(map_of).collect();
        assert_eq!(
            maps,
            [
                None,
                None,
                Some(MAP_DNS4.into()),
                Some(MAP_DNS6.into()),
                Some(MAP_DNAT4.into()),
                Some(MAP_DNAT4_ANY.into()),
                Some(MAP_DNAT6.into()),
                Some(MAP_DNAT6_ANY.into()),
            ]
        );
        // Only what arrives on a weft bridge: the sandboxes' queries.
        for rule in &r[2..4] {
            assert_eq!(rule[0], Expr::meta(MetaKey::Iifname, Reg::R0));
            assert_eq!(rule[1], Expr::lookup(SET_BRIDGES, Reg::R0));
        }
        // The host's own traffic (output) is never redirected.
        assert!(output_rules()
            .iter()
            .filter_map(map_of)
            .all(|m| m != MAP_DNS4 && m != MAP_DNS6));
    }

    #[test]
    fn link_local_is_eui64() {
        assert_eq!(
            link_local([0x02, 0x42, 0xac, 0x12, 0x00, 0x02]),
            "fe80::42:acff:fe12:2".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn owners_round_trip() {
        let o = owner();
        assert_eq!(Owner::parse(&o.comment()), Some(o));
        assert_eq!(Owner::parse("made by hand"), None);
        assert_eq!(
            Owner::parse("weft:12345678").map(|o| o.instance),
            Some("12345678".into())
        );
    }

    #[test]
    fn ct_state_mask_matches_nft() {
        // nft sends mask 06 00 00 00 for `ct state established,related` (host order on x86).
        let r = &forward_rules(&FwOptions::default())[7];
        // (rule 7: `oifname @bridges ct state established,related accept`)
        match &r[3] {
            Expr::Bitwise { mask, .. } => assert_eq!(mask, &6u32.to_ne_bytes().to_vec()),
            other => panic!("expected bitwise, got {other:?}"),
        }
        assert!(matches!(&r[4], Expr::Cmp { op: CmpOp::Neq, .. }));
    }

    #[test]
    fn vxlan_ports_take_datagrams_from_member_vteps_only() {
        use crate::core::nft::PayloadBase;
        assert_eq!(input_rules(&FwOptions::default()).len(), 1);
        let opts = FwOptions {
            vxlan_ports: vec![4789, 8472],
            ..FwOptions::default()
        };
        let r = input_rules(&opts);
        assert_eq!(r.len(), 5);
        for (rule, (port, set, nfproto, saddr)) in r[1..].iter().zip([
            (4789u16, SET_VTEPS4, 2u8, (12, 4)),
            (4789, SET_VTEPS6, 10, (8, 16)),
            (8472, SET_VTEPS4, 2, (12, 4)),
            (8472, SET_VTEPS6, 10, (8, 16)),
        ]) {
            assert_eq!(rule[1], Expr::cmp_eq(Reg::R0, vec![nfproto]));
            assert_eq!(rule[2], Expr::meta(MetaKey::L4proto, Reg::R0));
            assert_eq!(rule[3], Expr::cmp_eq(Reg::R0, vec![17]));
            assert_eq!(
                rule[4],
                Expr::Payload {
                    base: PayloadBase::Transport,
                    offset: 2,
                    len: 2,
                    dreg: Reg::R0
                }
            );
            assert_eq!(rule[5], Expr::cmp_eq(Reg::R0, port.to_be_bytes().to_vec()));
            assert_eq!(
                rule[6],
                Expr::Payload {
                    base: PayloadBase::Network,
                    offset: saddr.0,
                    len: saddr.1,
                    dreg: Reg::R0
                }
            );
            assert_eq!(
                rule[7],
                Expr::Lookup {
                    set: set.into(),
                    sreg: Reg::R0,
                    dreg: None,
                    invert: true
                }
            );
            assert_eq!(rule[8], Expr::Verdict(Verdict::Drop));
        }
    }

    #[test]
    fn only_the_members_tunnel_skips_conntrack() {
        let none = FwOptions::default();
        assert_eq!(raw_rules(&none).len(), 6);
        assert!(raw_output_rules(&none).is_empty());
        let opts = FwOptions {
            vxlan_ports: vec![4789, 8472],
            ..FwOptions::default()
        };
        let raw = raw_rules(&opts);
        assert_eq!(raw.len(), 10);
        // After the drop of what a port passes up, before the return of what comes from
        // outside the bridges (which would skip it).
        assert_eq!(raw[0].last(), Some(&Expr::Verdict(Verdict::Drop)));
        assert_eq!(
            raw[5][1],
            Expr::Lookup {
                set: SET_BRIDGES.into(),
                sreg: Reg::R0,
                dreg: None,
                invert: true
            }
        );
        let out = raw_output_rules(&opts);
        assert_eq!(out.len(), 4);
        for (i, (port, set, nfproto)) in [
            (4789u16, SET_VTEPS4, 2u8),
            (4789, SET_VTEPS6, 10),
            (8472, SET_VTEPS4, 2),
            (8472, SET_VTEPS6, 10),
        ]
        .into_iter()
        .enumerate()
        {
            let (saddr, daddr) = if nfproto == 2 {
                ((12, 4), (16, 4))
            } else {
                ((8, 16), (24, 16))
            };
            let addr = |(offset, len)| Expr::Payload {
                base: crate::core::nft::PayloadBase::Network,
                offset,
                len,
                dreg: Reg::R0,
            };
            let udp_to = |r: &[Expr]| {
                r[1] == Expr::cmp_eq(Reg::R0, vec![nfproto])
                    && r[3] == Expr::cmp_eq(Reg::R0, vec![17])
                    && r[5] == Expr::cmp_eq(Reg::R0, port.to_be_bytes().to_vec())
            };
            // Received: from a member's VTEP, never from a weft bridge (a sandbox forging a
            // member's address stays tracked), untracked, and the chain ends there.
            let r = &raw[1 + i];
            assert!(udp_to(r), "{r:?}");
            assert_eq!(
                r[6..],
                [
                    addr(saddr),
                    Expr::lookup(set, Reg::R0),
                    Expr::meta(MetaKey::Iifname, Reg::R0),
                    Expr::Lookup {
                        set: SET_BRIDGES.into(),
                        sreg: Reg::R0,
                        dreg: None,
                        invert: true
                    },
                    Expr::Notrack,
                    Expr::Verdict(Verdict::Return),
                ]
            );
            // Sent by the host: to a member's VTEP.
            let r = &out[i];
            assert!(udp_to(r), "{r:?}");
            assert_eq!(
                r[6..],
                [addr(daddr), Expr::lookup(set, Reg::R0), Expr::Notrack]
            );
        }
        // The egress rule tests the protocol and port before its set look-ups.
        let fwd = forward_rules(&opts);
        assert!(udp_to_first(&fwd[0]));
    }

    /// Whether a rule's first look-up comes after its `udp dport` comparison.
    fn udp_to_first(rule: &[Expr]) -> bool {
        let first_lookup = rule.iter().position(|e| matches!(e, Expr::Lookup { .. }));
        let dport = rule.iter().position(|e| {
            matches!(
                e,
                Expr::Payload {
                    base: crate::core::nft::PayloadBase::Transport,
                    offset: 2,
                    ..
                }
            )
        });
        matches!((dport, first_lookup), (Some(d), Some(l)) if d < l)
    }

    #[test]
    fn member_vteps_go_to_their_family_s_set_and_are_never_flushed() {
        let vteps: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let mut b = Batch::new();
        add_vteps(&mut b, &vteps);
        remove_vteps(&mut b, &vteps[..1]);
        assert_eq!(
            b.ops(),
            [
                "add elements to inet weft vteps4",
                "add elements to inet weft vteps6",
                "destroy elements in inet weft vteps4",
            ]
        );
        assert_eq!(
            elems_of(&b, SET_VTEPS6)[0].key,
            vteps[1].to_string().parse::<Ipv6Addr>().unwrap().octets()
        );
        let back = vteps_of(
            &[vec![10, 0, 0, 2], vec![1]],
            &[elems_of(&b, SET_VTEPS6)[0].key.clone()],
        );
        assert_eq!(back, vteps);
        let mut b = Batch::new();
        flush_elements(&mut b);
        assert!(!b.ops().iter().any(|o| o.contains("vteps")));
        assert!(agent_owned(Family::Inet, SET_VTEPS4) && !agent_owned(Family::Bridge, SET_VTEPS4));
    }
}

//! Weft's own nftables rule set, as pure data.
//!
//! Everything lives in one table, `inet weft`, whose rules never change per network: networks
//! only add and remove *set elements*. So attaching a network is one small batch, no rule is
//! ever searched for or deleted, and [`ensure_base`] can be re-run at any time (after a host
//! firewall reload, or after an upgrade of weft) to put the rules back atomically.
//!
//! ```text
//! table inet weft {
//!   set bridges  { type ifname; }                    # every weft bridge
//!   set pairs    { type ifname . ifname; }           # (br, br): traffic inside one network
//!   set internal { type ifname; }                    # bridges of --internal networks
//!   set masq4    { type ipv4_addr; flags interval; } # subnets to masquerade
//!   set masq6    { type ipv6_addr; flags interval; }
//!   set nets4    { type ipv4_addr; flags interval; } # every weft subnet (hairpin NAT)
//!   set nets6    { type ipv6_addr; flags interval; }
//!   map dnat4    { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
//!   map dnat4any { type inet_proto . inet_service : ipv4_addr . inet_service; }
//!   map dnat6    { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
//!   map dnat6any { type inet_proto . inet_service : ipv6_addr . inet_service; }
//!   chain user { }                                   # the users' own: never flushed by weft
//!   chain forward { type filter hook forward priority 0; policy accept;
//!     jump user
//!     iifname . oifname @pairs accept
//!     ct status dnat accept                          # published ports, from anywhere
//!     iifname @internal drop
//!     oifname @internal drop
//!     iifname @bridges oifname @bridges drop
//!     oifname @bridges ct state established,related accept
//!     oifname @bridges drop
//!   }
//!   chain input { type filter hook input priority 0; policy accept;
//!     iifname @bridges ip daddr 127.0.0.0/8 ct status & dnat == 0 drop # route_localnet=1
//!   }
//!   chain raw { type filter hook prerouting priority -300; policy accept;
//!     iifname != @bridges return
//!     ip daddr @gateways4 return                     # may be a published port: tracked
//!     ip saddr . ip daddr @local4 notrack            # inside one network: bridged only
//!     (the same for IPv6)
//!   }
//!   chain prerouting { type nat hook prerouting priority -100; policy accept;
//!     ip daddr 127.0.0.0/8 return                    # loopback ports: never from outside
//!     ip6 daddr ::1 return
//!     dnat ip to ip daddr . meta l4proto . th dport map @dnat4
//!     fib daddr type local dnat ip to meta l4proto . th dport map @dnat4any
//!     dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6
//!     fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6any
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
//! ```
//!
//! A published port is one map element, whatever the number of ports: publishing and
//! unpublishing add and remove elements, and the rule set never grows.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::core::nft::{
    concat, ct_state, BaseChain, Batch, Chain, ChainType, CmpOp, CtKey, DataType, Elem, ElemData,
    Expr, Family, Hook, IpFamily, KeyType, MetaKey, NatKind, PayloadBase, Policy, Reg, SetSpec,
    Verdict,
};

/// The table's family: one table for IPv4 and IPv6.
pub const FAMILY: Family = Family::Inet;
/// The table's name.
pub const TABLE: &str = "weft";

/// Set of every weft bridge.
pub const SET_BRIDGES: &str = "bridges";
/// Set of `(bridge, bridge)` pairs: traffic that stays inside one network.
pub const SET_PAIRS: &str = "pairs";
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

/// The sets and maps, with the exact definitions the kernel compares on every re-add
/// (changing one later needs a migration: an existing set with another definition is
/// `EEXIST`; new sets can be added freely).
fn sets() -> [SetSpec; 15] {
    [
        SetSpec::new(SET_BRIDGES, KeyType::Ifname),
        SetSpec::new(SET_PAIRS, KeyType::IfnamePair),
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
    ]
}

/// `iifname`/`oifname` `@set` into register 0.
fn ifname_in(key: MetaKey, set: &str) -> [Expr; 2] {
    [Expr::meta(key, Reg::R0), Expr::lookup(set, Reg::R0)]
}

fn verdict(v: Verdict) -> Expr {
    Expr::Verdict(v)
}

/// The rules of `forward`, in order.
pub fn forward_rules() -> Vec<Vec<Expr>> {
    use MetaKey::{Iifname, Oifname};
    let accept = || verdict(Verdict::Accept);
    let drop = || verdict(Verdict::Drop);
    // `iifname . oifname`: the second name goes right after the first's 16 bytes.
    let second = Reg::R0.after(16);
    let pair = vec![
        Expr::meta(Iifname, Reg::R0),
        Expr::meta(Oifname, second),
        Expr::lookup(SET_PAIRS, Reg::R0),
        accept(),
    ];
    // `ct state established,related`: (state & (est|rel)) != 0, 4 bytes host order.
    let ct_est_rel = [
        Expr::Ct {
            key: CtKey::State,
            dreg: Reg::R0,
        },
        Expr::Bitwise {
            sreg: Reg::R0,
            dreg: Reg::R0,
            mask: (ct_state::ESTABLISHED | ct_state::RELATED)
                .to_ne_bytes()
                .to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: Reg::R0,
            op: CmpOp::Neq,
            data: vec![0; 4],
        },
    ];
    vec![
        vec![verdict(Verdict::Jump(CHAIN_USER.into()))],
        pair,
        // Published ports early: every packet of their connections comes through here, and
        // ports are never published into internal networks (refused when created).
        [&ct_status_dnat()[..], &[accept()]].concat(),
        [&ifname_in(Iifname, SET_INTERNAL)[..], &[drop()]].concat(),
        [&ifname_in(Oifname, SET_INTERNAL)[..], &[drop()]].concat(),
        [
            &ifname_in(Iifname, SET_BRIDGES)[..],
            &ifname_in(Oifname, SET_BRIDGES),
            &[drop()],
        ]
        .concat(),
        [
            &ifname_in(Oifname, SET_BRIDGES)[..],
            &ct_est_rel,
            &[accept()],
        ]
        .concat(),
        [&ifname_in(Oifname, SET_BRIDGES)[..], &[drop()]].concat(),
    ]
}

/// `ct status dnat`: the connection's destination was rewritten (a published port).
fn ct_status_dnat() -> [Expr; 3] {
    ct_dnat_test(CmpOp::Neq)
}

/// `ct status & dnat == 0` (with `Eq`) or `!= 0` (with `Neq`).
fn ct_dnat_test(op: CmpOp) -> [Expr; 3] {
    const IPS_DST_NAT: u32 = 1 << 5;
    [
        Expr::Ct {
            key: CtKey::Status,
            dreg: Reg::R0,
        },
        Expr::Bitwise {
            sreg: Reg::R0,
            dreg: Reg::R0,
            mask: IPS_DST_NAT.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: Reg::R0,
            op,
            data: vec![0; 4],
        },
    ]
}

/// `meta nfproto ipv4|ipv6`: in an `inet` table every header load needs this guard.
fn nfproto(family: IpFamily) -> [Expr; 2] {
    [
        Expr::meta(MetaKey::Nfproto, Reg::R0),
        Expr::cmp_eq(Reg::R0, vec![family.nfproto()]),
    ]
}

/// Offset and length of the source or destination address in the network header.
fn addr_field(family: IpFamily, dst: bool) -> (u32, u32) {
    match (family, dst) {
        (IpFamily::V4, false) => (12, 4),
        (IpFamily::V4, true) => (16, 4),
        (IpFamily::V6, false) => (8, 16),
        (IpFamily::V6, true) => (24, 16),
    }
}

fn load_addr(family: IpFamily, dst: bool, dreg: Reg) -> Expr {
    let (offset, len) = addr_field(family, dst);
    Expr::Payload {
        base: PayloadBase::Network,
        offset,
        len,
        dreg,
    }
}

/// `ip daddr 127.0.0.0/8` / `ip6 daddr ::1` (or saddr): the host's loopback.
fn is_loopback(family: IpFamily, dst: bool) -> Vec<Expr> {
    let mut v = nfproto(family).to_vec();
    v.push(load_addr(family, dst, Reg::R0));
    match family {
        IpFamily::V4 => {
            v.push(Expr::Bitwise {
                sreg: Reg::R0,
                dreg: Reg::R0,
                mask: vec![255, 0, 0, 0],
                xor: vec![0; 4],
            });
            v.push(Expr::cmp_eq(Reg::R0, vec![127, 0, 0, 0]));
        }
        IpFamily::V6 => v.push(Expr::cmp_eq(Reg::R0, Ipv6Addr::LOCALHOST.octets().to_vec())),
    }
    v
}

/// `dnat ip to ip daddr . meta l4proto . th dport map @dnat4` (or the `any` variant keyed by
/// protocol and port only, guarded by `fib daddr type local`).
fn dnat_rule(family: IpFamily, any: bool) -> Vec<Expr> {
    let mut v = nfproto(family).to_vec();
    let addr_len = addr_field(family, true).1;
    let map = match (family, any) {
        (IpFamily::V4, false) => MAP_DNAT4,
        (IpFamily::V4, true) => MAP_DNAT4_ANY,
        (IpFamily::V6, false) => MAP_DNAT6,
        (IpFamily::V6, true) => MAP_DNAT6_ANY,
    };
    let proto_reg = if any {
        const RTN_LOCAL: u32 = 2;
        v.push(Expr::FibDaddrType { dreg: Reg::R0 });
        v.push(Expr::cmp_eq(Reg::R0, RTN_LOCAL.to_ne_bytes().to_vec()));
        Reg::R0
    } else {
        v.push(load_addr(family, true, Reg::R0));
        Reg::R0.after(addr_len)
    };
    v.push(Expr::meta(MetaKey::L4proto, proto_reg));
    v.push(Expr::Payload {
        base: PayloadBase::Transport,
        offset: 2, // th dport: the same place in TCP, UDP and SCTP
        len: 2,
        dreg: proto_reg.after(4),
    });
    v.push(Expr::Lookup {
        set: map.into(),
        sreg: Reg::R0,
        dreg: Some(Reg::R0),
        invert: false,
    });
    v.push(Expr::Nat {
        kind: NatKind::Dnat,
        family,
        addr: Some(Reg::R0),
        port: Some(Reg::R0.after(addr_len)),
        flags: 0,
    });
    v
}

/// The four DNAT rules, shared by `prerouting` and `output`.
fn dnat_rules() -> Vec<Vec<Expr>> {
    vec![
        dnat_rule(IpFamily::V4, false),
        dnat_rule(IpFamily::V4, true),
        dnat_rule(IpFamily::V6, false),
        dnat_rule(IpFamily::V6, true),
    ]
}

/// The rules of `prerouting`: never DNAT a loopback destination arriving from outside (a
/// port published on 127.0.0.1 is for the host only), then the published ports.
pub fn prerouting_rules() -> Vec<Vec<Expr>> {
    let ret = || Expr::Verdict(Verdict::Return);
    let mut v = vec![
        [&is_loopback(IpFamily::V4, true)[..], &[ret()]].concat(),
        [&is_loopback(IpFamily::V6, true)[..], &[ret()]].concat(),
    ];
    v.extend(dnat_rules());
    v
}

/// The rules of `raw` (prerouting, before conntrack): traffic between two sandboxes of one
/// network is only bridged — no NAT, no stateful filter ever applies to it — but
/// br_netfilter would still track every packet of it. Skipping conntrack there is safe and
/// is most of the gap between a bridge and a bare veth. Traffic to a gateway stays tracked:
/// it may be a published port.
pub fn raw_rules() -> Vec<Vec<Expr>> {
    // Traffic not coming from a weft bridge (published ports from outside, the host's own)
    // leaves after one lookup.
    let mut v = vec![vec![
        Expr::meta(MetaKey::Iifname, Reg::R0),
        Expr::Lookup {
            set: SET_BRIDGES.into(),
            sreg: Reg::R0,
            dreg: None,
            invert: true,
        },
        Expr::Verdict(Verdict::Return),
    ]];
    for (family, gateways, local) in [
        (IpFamily::V4, SET_GATEWAYS4, SET_LOCAL4),
        (IpFamily::V6, SET_GATEWAYS6, SET_LOCAL6),
    ] {
        let len = addr_field(family, false).1;
        v.push(
            [
                &nfproto(family)[..],
                &[
                    load_addr(family, true, Reg::R0),
                    Expr::lookup(gateways, Reg::R0),
                    Expr::Verdict(Verdict::Return),
                ],
            ]
            .concat(),
        );
        v.push(
            [
                &nfproto(family)[..],
                &[
                    load_addr(family, false, Reg::R0),
                    load_addr(family, true, Reg::R0.after(len)),
                    Expr::lookup(local, Reg::R0),
                    Expr::Notrack,
                ],
            ]
            .concat(),
        );
    }
    v
}

/// The rules of `output`: the host reaching its own published ports. IPv6 cannot route a
/// `::1` source out of the host, so `[::1]:port` is left alone (refused by the host's own
/// stack) rather than translated into a black hole.
pub fn output_rules() -> Vec<Vec<Expr>> {
    let mut v = vec![[
        &is_loopback(IpFamily::V6, true)[..],
        &[Expr::Verdict(Verdict::Return)],
    ]
    .concat()];
    v.extend(dnat_rules());
    v
}

/// The rules of `input`: bridges have `route_localnet=1` (so the host can reach ports
/// published on 127.0.0.1); a sandbox must still not reach the host's loopback services.
/// Replies of the host's own connections to such ports come back with a loopback
/// destination too, and carry `ct status dnat`: they pass.
pub fn input_rules() -> Vec<Vec<Expr>> {
    vec![[
        &ifname_in(MetaKey::Iifname, SET_BRIDGES)[..],
        &is_loopback(IpFamily::V4, true),
        &ct_dnat_test(CmpOp::Eq),
        &[verdict(Verdict::Drop)],
    ]
    .concat()]
}

/// `oifname @bridges ct status dnat <src match> masquerade`.
fn hairpin_rule(src: Vec<Expr>) -> Vec<Expr> {
    [
        &ifname_in(MetaKey::Oifname, SET_BRIDGES)[..],
        &ct_status_dnat(),
        &src,
        &[Expr::Masquerade],
    ]
    .concat()
}

/// `ip saddr @set masquerade` / `ip6 saddr @set masquerade`. In an `inet` table the address
/// load must be guarded by `meta nfproto`, or IPv6 packets would be read as IPv4 headers.
fn masq_rule(family: IpFamily, set: &str) -> Vec<Expr> {
    let (offset, len) = match family {
        IpFamily::V4 => (12, 4), // iphdr.saddr
        IpFamily::V6 => (8, 16), // ipv6hdr.saddr
    };
    vec![
        Expr::meta(MetaKey::Nfproto, Reg::R0),
        Expr::cmp_eq(Reg::R0, vec![family.nfproto()]),
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len,
            dreg: Reg::R0,
        },
        Expr::lookup(set, Reg::R0),
        Expr::Masquerade,
    ]
}

/// The rules of `postrouting`, in order.
pub fn postrouting_rules() -> Vec<Vec<Expr>> {
    let src_in = |family, set: &str| {
        let mut v = nfproto(family).to_vec();
        v.push(load_addr(family, false, Reg::R0));
        v.push(Expr::lookup(set, Reg::R0));
        v
    };
    vec![
        hairpin_rule(src_in(IpFamily::V4, SET_NETS4)),
        hairpin_rule(is_loopback(IpFamily::V4, false)),
        hairpin_rule(src_in(IpFamily::V6, SET_NETS6)),
        [
            &ifname_in(MetaKey::Oifname, SET_BRIDGES)[..],
            &[verdict(Verdict::Return)],
        ]
        .concat(),
        masq_rule(IpFamily::V4, SET_MASQ4),
        masq_rule(IpFamily::V6, SET_MASQ6),
    ]
}

/// Adds to `batch` everything weft's table needs: the table, the sets and the user chain if
/// absent, the two base chains, whose rules are flushed and re-added. Running it again is
/// idempotent (and atomic within the batch); set elements and the user chain's rules survive.
pub fn ensure_base(batch: &mut Batch) {
    batch.add_table(FAMILY, TABLE);
    for set in sets() {
        batch.add_set(FAMILY, TABLE, set);
    }
    batch.add_chain(
        FAMILY,
        TABLE,
        Chain {
            name: CHAIN_USER.into(),
            base: None,
        },
    );
    let base = |name: &str, hook, priority, kind| Chain {
        name: name.into(),
        base: Some(BaseChain {
            hook,
            priority,
            kind,
            policy: Policy::Accept,
        }),
    };
    batch.add_chain(
        FAMILY,
        TABLE,
        base(CHAIN_FORWARD, Hook::Forward, 0, ChainType::Filter),
    );
    let chains = [
        (
            base(CHAIN_FORWARD, Hook::Forward, 0, ChainType::Filter),
            forward_rules(),
        ),
        (
            base(CHAIN_INPUT, Hook::Input, 0, ChainType::Filter),
            input_rules(),
        ),
        (
            base(CHAIN_RAW, Hook::Prerouting, -300, ChainType::Filter),
            raw_rules(),
        ),
        (
            base(CHAIN_PREROUTING, Hook::Prerouting, -100, ChainType::Nat),
            prerouting_rules(),
        ),
        (
            base(CHAIN_OUTPUT, Hook::Output, -100, ChainType::Nat),
            output_rules(),
        ),
        (
            base(CHAIN_POSTROUTING, Hook::Postrouting, 100, ChainType::Nat),
            postrouting_rules(),
        ),
    ];
    for (chain, _) in &chains {
        batch.add_chain(FAMILY, TABLE, chain.clone());
    }
    for (chain, rules) in chains {
        batch.flush_chain(FAMILY, TABLE, &chain.name);
        for rule in rules {
            batch.add_rule(FAMILY, TABLE, &chain.name, rule);
        }
    }
}

/// Empties the sets and maps (never the user chain), e.g. before garbage collection re-adds the
/// elements of the networks on record in the same batch, so that the sets match the records
/// exactly and atomically.
pub fn flush_elements(batch: &mut Batch) {
    for set in sets() {
        batch.flush_set(FAMILY, TABLE, &set.name);
    }
}

/// The elements a network owns, per set.
fn elements(net: &FwNetwork, for_removal: bool) -> Vec<(&'static str, Vec<Elem>)> {
    let br = &net.bridge;
    let mut v = vec![
        (SET_BRIDGES, vec![Elem::ifname(br)]),
        (SET_PAIRS, vec![Elem::ifname_pair(br, br)]),
    ];
    // Removal also clears `internal` when the network is not internal: destroying an absent
    // element is free, and it cleans up after a record that changed.
    if net.internal || for_removal {
        v.push((SET_INTERNAL, vec![Elem::ifname(br)]));
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
    v
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

/// Adds published ports: one element each, grouped per map.
pub fn publish(batch: &mut Batch, ports: &[FwPort]) {
    for (map, elems) in group(ports) {
        batch.add_elements(FAMILY, TABLE, map, elems);
    }
}

/// Removes published ports; absent elements are no error.
pub fn unpublish(batch: &mut Batch, ports: &[FwPort]) {
    for (map, elems) in group(ports) {
        batch.destroy_elements(FAMILY, TABLE, map, elems);
    }
}

fn group(ports: &[FwPort]) -> Vec<(&'static str, Vec<Elem>)> {
    let mut out: Vec<(&'static str, Vec<Elem>)> = Vec::new();
    for p in ports {
        let (map, elem) = port_elem(p);
        match out.iter_mut().find(|(m, _)| *m == map) {
            Some((_, v)) => v.push(elem),
            None => out.push((map, vec![elem])),
        }
    }
    out
}

/// Adds the network's elements (its bridge, its pair, its masquerade prefixes). Re-adding
/// existing elements is no error.
pub fn add_network(batch: &mut Batch, net: &FwNetwork) {
    for (set, elems) in elements(net, false) {
        batch.add_elements(FAMILY, TABLE, set, elems);
    }
}

/// Removes the network's elements; absent elements are no error.
pub fn remove_network(batch: &mut Batch, net: &FwNetwork) {
    for (set, elems) in elements(net, true) {
        batch.destroy_elements(FAMILY, TABLE, set, elems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(internal: bool) -> FwNetwork {
        FwNetwork {
            bridge: "weft-br1".into(),
            internal,
            masq_v4: Some("172.18.0.0/16".parse().unwrap()),
            masq_v6: Some("fd00:1::/64".parse().unwrap()),
            subnet_v4: None,
            subnet_v6: None,
            gateways: vec![],
        }
    }

    #[test]
    fn ensure_base_is_deterministic() {
        let mut a = Batch::new();
        ensure_base(&mut a);
        let mut b = Batch::new();
        ensure_base(&mut b);
        assert_eq!(a.encode(7).unwrap(), b.encode(7).unwrap());
    }

    #[test]
    fn ensure_base_shape() {
        let mut b = Batch::new();
        ensure_base(&mut b);
        let ops = b.ops();
        assert_eq!(ops[0], "add table inet weft");
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
        assert_eq!(
            ops.iter()
                .filter(|o| o.starts_with("add rule to inet weft forward"))
                .count(),
            8
        );
        assert_eq!(
            ops.iter()
                .filter(|o| o.starts_with("add rule to inet weft postrouting"))
                .count(),
            6
        );
        assert_eq!(
            ops.iter()
                .filter(|o| o.starts_with("add rule to inet weft prerouting"))
                .count(),
            6
        );
        assert_eq!(ops.iter().filter(|o| o.starts_with("add set")).count(), 15);
        // Nothing touches set elements.
        assert!(!ops
            .iter()
            .any(|o| o.contains("elements") || o.starts_with("flush set")));
    }

    #[test]
    fn flush_elements_flushes_only_sets() {
        let mut b = Batch::new();
        flush_elements(&mut b);
        assert_eq!(b.len(), 15);
        assert!(b
            .ops()
            .iter()
            .all(|o| o.starts_with("flush set inet weft ")));
    }

    #[test]
    fn first_forward_rule_jumps_to_user() {
        assert_eq!(
            forward_rules()[0],
            vec![Expr::Verdict(Verdict::Jump("user".into()))]
        );
    }

    #[test]
    fn pair_rule_uses_consecutive_registers() {
        let r = &forward_rules()[1];
        assert_eq!(r[0], Expr::meta(MetaKey::Iifname, Reg::r32(0)));
        assert_eq!(r[1], Expr::meta(MetaKey::Oifname, Reg::r32(4)));
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
                ..net(true)
            },
        );
        assert_eq!(b.ops()[2], "add elements to inet weft internal");
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn remove_network_uses_destroy() {
        let mut b = Batch::new();
        remove_network(&mut b, &net(false));
        let ops = b.ops();
        assert_eq!(ops.len(), 5);
        assert!(ops
            .iter()
            .all(|o| o.starts_with("destroy elements in inet weft ")));
        assert!(b
            .msgs()
            .iter()
            .all(|m| matches!(m, crate::core::nft::Msg::DestroyElems { .. })));
    }

    #[test]
    fn ct_state_mask_matches_nft() {
        // nft sends mask 06 00 00 00 for `ct state established,related` (host order on x86).
        let r = &forward_rules()[6];
        // (rule 6: `oifname @bridges ct state established,related accept`)
        match &r[3] {
            Expr::Bitwise { mask, .. } => assert_eq!(mask, &6u32.to_ne_bytes().to_vec()),
            other => panic!("expected bitwise, got {other:?}"),
        }
    }
}

//! The rules of weft's `inet` table: filtering between networks, published ports (DNAT),
//! masquerade, and the raw-table shortcut for traffic inside one network.

use std::net::Ipv6Addr;

use super::*;
use crate::core::nft::{
    ct_state, CmpOp, CtKey, Expr, IpFamily, MetaKey, NatKind, PayloadBase, Reg, Verdict,
};

/// `iifname`/`oifname` `@set` into register 0.
fn ifname_in(key: MetaKey, set: &str) -> [Expr; 2] {
    [Expr::meta(key, Reg::R0), Expr::lookup(set, Reg::R0)]
}

pub(super) fn verdict(v: Verdict) -> Expr {
    Expr::Verdict(v)
}

/// The rules of `forward`, in order. Traffic inside one network is accepted first, except
/// routed traffic between the ports of an `icc=false` bridge (a sandbox that points its
/// neighbour entry for a peer at the bridge's MAC would be routed back into the same bridge);
/// internal networks are cut off before published ports are accepted (so they reach
/// nothing outside their own network, published ports included).
pub fn forward_rules(opts: &FwOptions) -> Vec<Vec<Expr>> {
    use MetaKey::{Iifname, Oifname};
    let accept = || verdict(Verdict::Accept);
    let drop = || verdict(Verdict::Drop);
    let pair_in = |set: &str| {
        // `iifname . oifname`: the second name goes right after the first's 16 bytes.
        [
            Expr::meta(Iifname, Reg::R0),
            Expr::meta(Oifname, Reg::R0.after(16)),
            Expr::lookup(set, Reg::R0),
        ]
    };
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
    // First, before the user's chain can accept it: a sandbox's VXLAN to a member VTEP.
    let mut v: Vec<Vec<Expr>> = opts
        .vxlan_ports
        .iter()
        .flat_map(|p| [IpFamily::V4, IpFamily::V6].map(|f| vxlan_egress_rule(f, *p)))
        .collect();
    v.extend([
        vec![verdict(Verdict::Jump(CHAIN_USER.into()))],
        // Routed between the ports of an icc=false bridge (tracked or not, see `raw`). A
        // published port of the same network cannot be reached this way either: br_netfilter
        // bridges such DNAT'd frames between the ports, and the isolated ports stop them.
        [&pair_in(SET_NOICC)[..], &[drop()]].concat(),
        [&pair_in(SET_PAIRS)[..], &[accept()]].concat(),
        [&ifname_in(Iifname, SET_INTERNAL)[..], &[drop()]].concat(),
        [&ifname_in(Oifname, SET_INTERNAL)[..], &[drop()]].concat(),
        // Published ports: every packet of their connections comes through here.
        [&ct_status_dnat()[..], &[accept()]].concat(),
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
    ]);
    if opts.forward_drop_v4 || opts.forward_drop_v6 {
        // weft turned forwarding on for its sandboxes, not to make the host a router:
        // forwarded traffic that touches no weft bridge is dropped (as Docker does with
        // FORWARD's policy when it enables forwarding itself).
        v.push([&ifname_in(Iifname, SET_BRIDGES)[..], &[accept()]].concat());
        for (on, family) in [
            (opts.forward_drop_v4, IpFamily::V4),
            (opts.forward_drop_v6, IpFamily::V6),
        ] {
            if on {
                v.push([&nfproto(family)[..], &[drop()]].concat());
            }
        }
    }
    v
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
pub(super) fn nfproto(family: IpFamily) -> [Expr; 2] {
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
    let map = match (family, any) {
        (IpFamily::V4, false) => MAP_DNAT4,
        (IpFamily::V4, true) => MAP_DNAT4_ANY,
        (IpFamily::V6, false) => MAP_DNAT6,
        (IpFamily::V6, true) => MAP_DNAT6_ANY,
    };
    dnat_by_map(family, any, map)
}

/// `iifname @bridges dnat ip to ip daddr . meta l4proto . th dport map @dns4` (or `ip6`,
/// `@dns6`): a sandbox's DNS query to its gateway goes to the agent's port there.
fn dns_rule(family: IpFamily) -> Vec<Expr> {
    let map = match family {
        IpFamily::V4 => MAP_DNS4,
        IpFamily::V6 => MAP_DNS6,
    };
    [
        &ifname_in(MetaKey::Iifname, SET_BRIDGES)[..],
        &dnat_by_map(family, false, map),
    ]
    .concat()
}

/// The DNAT through `map`, keyed by (address, protocol, port), or by (protocol, port) with
/// `any` (guarded by `fib daddr type local`).
fn dnat_by_map(family: IpFamily, any: bool, map: &str) -> Vec<Expr> {
    let mut v = nfproto(family).to_vec();
    let addr_len = addr_field(family, true).1;
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
/// port published on 127.0.0.1 is for the host only), then sandboxes' DNS queries to their
/// gateway (before published ports: a sandbox publishing port 53 does not take its
/// neighbours' lookups), then the published ports.
pub fn prerouting_rules() -> Vec<Vec<Expr>> {
    let ret = || Expr::Verdict(Verdict::Return);
    let mut v = vec![
        [&is_loopback(IpFamily::V4, true)[..], &[ret()]].concat(),
        [&is_loopback(IpFamily::V6, true)[..], &[ret()]].concat(),
        dns_rule(IpFamily::V4),
        dns_rule(IpFamily::V6),
    ];
    v.extend(dnat_rules());
    v
}

/// The rules of `raw` (prerouting, before conntrack): traffic between two sandboxes of one
/// network is only bridged — no NAT, no stateful filter ever applies to it — but
/// br_netfilter would still track every packet of it. Skipping conntrack there is safe and
/// is most of the gap between a bridge and a bare veth. Traffic to a gateway stays tracked:
/// it may be a published port.
///
/// Then, per VXLAN port of the host's overlay networks, [`vxlan_notrack_in_rule`]: the
/// tunnel's own datagrams from the other members are not tracked either.
pub fn raw_rules(opts: &FwOptions) -> Vec<Vec<Expr>> {
    let mut v = vec![
        // Received on a weft bridge *port* itself: a frame the bridge passed up through the
        // port device instead of forwarding it (IEEE link-local group addresses), past the
        // port guard. Sandbox traffic arrives on the bridge (br_netfilter too reports the
        // bridge), so nothing legitimate comes this way: dropped before it reaches the host
        // or is routed.
        vec![
            Expr::meta(MetaKey::Iifname, Reg::R0),
            Expr::lookup(SET_PORTS, Reg::R0),
            Expr::Verdict(Verdict::Drop),
        ],
    ];
    for port in &opts.vxlan_ports {
        v.push(vxlan_notrack_in_rule(IpFamily::V4, *port));
        v.push(vxlan_notrack_in_rule(IpFamily::V6, *port));
    }
    // Traffic not coming from a weft bridge (published ports from outside, the host's own)
    // leaves after one more lookup.
    v.push(vec![
        Expr::meta(MetaKey::Iifname, Reg::R0),
        Expr::lookup_not(SET_BRIDGES, Reg::R0),
        Expr::Verdict(Verdict::Return),
    ]);
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

/// `udp dport PORT ip saddr @vteps4 iifname != @bridges notrack return` (or `ip6`,
/// `@vteps6`): a VXLAN datagram from another member's VTEP, received from outside weft's
/// bridges, skips connection tracking. Each of them carries a whole frame of the overlay
/// (up to 64 KB once GRO has merged them), none is ever NATed, and their source ports are a
/// hash of the inner flow: tracked, every inner flow made an `[UNREPLIED]` entry per
/// direction and every datagram paid a conntrack look-up, refresh and confirm (measured:
/// about half of weft's extra CPU per byte on the overlay, `bench/README.md`). What comes
/// from a weft bridge never takes this path: a sandbox forging a member's address stays
/// tracked, so the rules that read `ct` (the loopback guard of `input`, published ports) see
/// its packets as before. `input` still drops datagrams from non-members (none of them
/// matches here) and sees only whole datagrams (defragmentation runs before this hook).
pub fn vxlan_notrack_in_rule(family: IpFamily, port: u16) -> Vec<Expr> {
    [
        &nfproto(family)[..],
        &udp_dport_is(port),
        &[
            load_addr(family, false, Reg::R0),
            Expr::lookup(vtep_set(family), Reg::R0),
            Expr::meta(MetaKey::Iifname, Reg::R0),
            Expr::lookup_not(SET_BRIDGES, Reg::R0),
            Expr::Notrack,
            verdict(Verdict::Return),
        ],
    ]
    .concat()
}

/// The rules of `raw_output` (output, before conntrack): per VXLAN port of the host's
/// overlay networks and per family, `udp dport PORT ip daddr @vteps4 notrack`: the host's
/// VXLAN datagrams to the other members, untracked as on the receiving side (see
/// [`vxlan_notrack_in_rule`]). Without overlay networks the chain is empty.
pub fn raw_output_rules(opts: &FwOptions) -> Vec<Vec<Expr>> {
    let mut v = Vec::new();
    for port in &opts.vxlan_ports {
        for family in [IpFamily::V4, IpFamily::V6] {
            v.push(
                [
                    &nfproto(family)[..],
                    &udp_dport_is(*port),
                    &[
                        load_addr(family, true, Reg::R0),
                        Expr::lookup(vtep_set(family), Reg::R0),
                        Expr::Notrack,
                    ],
                ]
                .concat(),
            );
        }
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
/// destination too, and carry `ct status dnat`: they pass. Then, per VXLAN port of the
/// host's overlay networks and per family, [`vxlan_member_rule`].
pub fn input_rules(opts: &FwOptions) -> Vec<Vec<Expr>> {
    let mut v = vec![[
        &ifname_in(MetaKey::Iifname, SET_BRIDGES)[..],
        &is_loopback(IpFamily::V4, true),
        &ct_dnat_test(CmpOp::Eq),
        &[verdict(Verdict::Drop)],
    ]
    .concat()];
    for port in &opts.vxlan_ports {
        v.push(vxlan_member_rule(IpFamily::V4, *port));
        v.push(vxlan_member_rule(IpFamily::V6, *port));
    }
    v
}

/// `udp dport PORT iifname @bridges ip daddr @vteps4 drop` (or `ip6`, `@vteps6`): a
/// sandbox's datagram to another host's VXLAN port. Routed out and masqueraded, it would
/// leave with this host's VTEP as its source, a member's, and the other host's device would
/// take its inner frame (any source, past every port guard) into the overlay. A sandbox's
/// VXLAN to any other address is left alone.
///
/// The cheap comparisons come first: every forwarded packet crosses this rule, and TCP (most
/// of an overlay's bytes) leaves it at the protocol, before any set look-up.
pub fn vxlan_egress_rule(family: IpFamily, port: u16) -> Vec<Expr> {
    [
        &nfproto(family)[..],
        &udp_dport_is(port),
        &ifname_in(MetaKey::Iifname, SET_BRIDGES),
        &[
            load_addr(family, true, Reg::R0),
            Expr::lookup(vtep_set(family), Reg::R0),
            verdict(Verdict::Drop),
        ],
    ]
    .concat()
}

/// The set of member VTEPs of `family`.
fn vtep_set(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => SET_VTEPS4,
        IpFamily::V6 => SET_VTEPS6,
    }
}

/// `meta l4proto udp udp dport PORT`.
fn udp_dport_is(port: u16) -> [Expr; 4] {
    const IPPROTO_UDP: u8 = 17;
    [
        Expr::meta(MetaKey::L4proto, Reg::R0),
        Expr::cmp_eq(Reg::R0, vec![IPPROTO_UDP]),
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2, // udp dport
            len: 2,
            dreg: Reg::R0,
        },
        Expr::cmp_eq(Reg::R0, port.to_be_bytes().to_vec()),
    ]
}

/// `udp dport PORT ip saddr != @vteps4 drop` (or `ip6`, `@vteps6`): a VXLAN device accepts
/// the inner frame of any datagram to its port with its VNI, so only the cluster's members
/// may send there. Whatever arrives — from the underlay, from a sandbox through its gateway,
/// from the host itself — is dropped unless its source is a member's VTEP (fragments are
/// reassembled before this hook: weft's NAT chains bring connection tracking's defrag).
pub fn vxlan_member_rule(family: IpFamily, port: u16) -> Vec<Expr> {
    [
        &nfproto(family)[..],
        &udp_dport_is(port),
        &[
            load_addr(family, false, Reg::R0),
            Expr::lookup_not(vtep_set(family), Reg::R0),
            verdict(Verdict::Drop),
        ],
    ]
    .concat()
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

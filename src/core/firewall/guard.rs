//! The port guard: weft's `bridge` table, which sees every frame a sandbox sends before the
//! bridge forwards it (and before br_netfilter hands it to the IP hooks).
//!
//! A sandbox may only send from its own addresses: IPv4 and ARP with its MAC and IPv4
//! address, IPv6 with its MAC and IPv6 addresses (its link-local included), neighbour
//! solicitations and advertisements only with its own MAC and for its own addresses, and with
//! no options but that one. Router advertisements, router solicitations and redirects are
//! dropped whatever the addresses: no sandbox may change a route anywhere. Everything else —
//! VLAN-tagged frames, other ethertypes — is dropped. Each check is one lookup in a hash set
//! keyed by `port . MAC . address`, so the cost per frame does not depend on the number of
//! sandboxes.
//!
//! ```text
//! table bridge weft {
//!   set ports { type ifname; }                           # weft's bridge ports (host ends)
//!   set src4 { type ifname . ether_addr . ipv4_addr; }   # one element per sandbox address
//!   set src6 { type ifname . ether_addr . ipv6_addr; }
//!   chain prerouting { type filter hook prerouting priority -300; policy accept;
//!     iifname != @ports return             # not a sandbox port
//!     ether type ip goto ipv4
//!     ether type ip6 goto ipv6
//!     ether type arp goto arp4
//!     drop                                 # VLAN tags, other ethertypes
//!   }
//!   chain input { type filter hook input priority -300; policy accept;
//!     ether daddr & ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00 iifname @ports drop
//!   }
//!   chain ipv4 { iifname . ether saddr . ip saddr != @src4 drop; icmp type redirect drop }
//!   chain ipv6 { iifname . ether saddr . ip6 saddr != @src6 drop; meta l4proto ipv6-icmp goto nd }
//!   chain nd { RS, RA, redirect drop;
//!              NA: target own; NS, NA: no extension header, no option or exactly one:
//!              NA's target link-layer address, NS's source link-layer address, own }
//!   chain arp4 { iifname . ether saddr . arp saddr ip != @src4 drop
//!               iifname . arp saddr ether . arp saddr ip != @src4 drop }
//! }
//! ```
//!
//! Ports are weft's by membership of `ports`, whose element is added with the port's other
//! elements, before the interface exists: an interface of someone else's that happens to be
//! called `wv…` is never policed, and a weft port without its address elements (being
//! attached, or whose elements were lost) can send nothing — the guard fails closed. (The
//! kernel here has no `meta ibrname`.) With `anti_spoofing = false` only the router
//! advertisement, solicitation and redirect drops remain.
//!
//! **Frames to the IEEE link-local group addresses** (`01:80:c2:00:00:0X`) are not forwarded
//! by a bridge: it passes them up through the *port* device — for `:02`…`:0f` after the
//! bridge `input` hook, for LLDP (`:0e`) and STP (`:00`, with STP on) without any bridge
//! hook — so they would reach the host's IP stack from the port, past this guard. Three
//! layers stop that: every weft port forwards them instead (its `group_fwd_mask`, set with its
//! other port options, see [`PORT_GROUP_FWD_MASK`]), so they meet this guard like any frame;
//! the `input` chain drops them should they come up anyway; and `inet weft`'s raw chain drops
//! every packet the IP stack receives on a port device itself (legitimate traffic arrives on
//! the bridge, with br_netfilter too).

use super::inet::verdict;
use super::{FwOptions, SET_GUARD4, SET_GUARD6, SET_PORTS};
use crate::core::nft::{CmpOp, Expr, MetaKey, PayloadBase, Reg, Verdict};

/// The bridge table's base chain on the prerouting hook: every frame a port receives.
pub const CHAIN_GUARD: &str = "prerouting";
/// The bridge table's base chain on the input hook: frames passed up to the host.
pub const CHAIN_GUARD_INPUT: &str = "input";
/// IPv4 frames.
pub const CHAIN_GUARD4: &str = "ipv4";
/// IPv6 frames.
pub const CHAIN_GUARD6: &str = "ipv6";
/// ICMPv6 (neighbour discovery). (Chain and set names avoid nft's keywords — `icmpv6`,
/// `arp`, `ip6` — so that `nft list chain bridge weft nd` works.)
pub const CHAIN_GUARD_ICMP6: &str = "nd";
/// ARP frames.
pub const CHAIN_GUARD_ARP: &str = "arp4";

/// Prefix of the host end of every weft veth (for advice to other tables; the guard goes by
/// the `ports` set).
pub const PORT_PREFIX: &str = "wv";

/// `IFLA_BRPORT_GROUP_FWD_MASK` of every weft port: frames to `01:80:c2:00:00:0X` are
/// forwarded (through the bridge `prerouting` hook, so through this guard) instead of passed
/// up through the port device, for every X but 1 (pause frames, which the kernel always
/// drops and refuses in the mask).
pub const PORT_GROUP_FWD_MASK: u16 = 0xfffd;

/// The IEEE 802.1D link-local group addresses `01:80:c2:00:00:00`/44 (bridges never forward
/// them by default).
const LINK_LOCAL_GROUP: [u8; 6] = [0x01, 0x80, 0xc2, 0, 0, 0];
const LINK_LOCAL_GROUP_MASK: [u8; 6] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xf0];

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_REDIRECT: u8 = 5;
const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
/// The one option an NS / NA may carry: source (1) or target (2) link-layer address, 1 unit
/// of 8 bytes long; it sits right after the 24-byte message.
const ND_OPT_SLLA: [u8; 2] = [1, 1];
const ND_OPT_TLLA: [u8; 2] = [2, 1];
/// ICMPv6 length of an NS / NA without options, and with exactly one link-layer option.
const ND_LEN_BARE: u16 = 24;
const ND_LEN_ONE_OPTION: u16 = 32;

fn load(base: PayloadBase, offset: u32, len: u32, dreg: Reg) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg,
    }
}

/// `ether type T goto CHAIN`.
fn ethertype_goto(ty: u16, chain: &str) -> Vec<Expr> {
    vec![
        load(PayloadBase::LinkLayer, 12, 2, Reg::R0),
        Expr::cmp_eq(Reg::R0, ty.to_be_bytes().to_vec()),
        verdict(Verdict::Goto(chain.into())),
    ]
}

/// `iifname . MAC . ADDRESS != @set drop`, the MAC and the address loaded by `mac` and `addr`.
fn not_own(mac: Expr, addr: Expr, set: &str) -> Vec<Expr> {
    vec![
        Expr::meta(MetaKey::Iifname, Reg::R0),
        mac,
        addr,
        Expr::lookup_not(set, Reg::R0),
        verdict(Verdict::Drop),
    ]
}

/// The MAC (6 bytes, 2 registers) right after the 16-byte port name.
const MAC_REG: Reg = Reg::R0.after(16);
/// The address right after the MAC.
const ADDR_REG: Reg = MAC_REG.after(6);

fn ether_saddr() -> Expr {
    load(PayloadBase::LinkLayer, 6, 6, MAC_REG)
}

/// `icmpv6 type T` (the chain is only entered for ICMPv6).
fn icmp6_type(ty: u8) -> [Expr; 2] {
    [
        load(PayloadBase::Transport, 0, 1, Reg::R0),
        Expr::cmp_eq(Reg::R0, vec![ty]),
    ]
}

/// The rules for a neighbour solicitation (`NS`, whose option says the sender's MAC for the
/// IPv6 source) or advertisement (`NA`, whose option says the MAC of the target), in order.
/// The kernel reads every option of the message (the first of each type counts): so only a
/// message with no options or exactly the one link-layer option is let through, that option
/// checked as the sandbox's own, and only without extension headers (which would move the
/// message).
fn nd_rules(ty: u8) -> Vec<Vec<Expr>> {
    let drop = || verdict(Verdict::Drop);
    let (option, addr) = if ty == ND_NEIGHBOR_SOLICIT {
        (ND_OPT_SLLA, load(PayloadBase::Network, 8, 16, ADDR_REG))
    } else {
        (ND_OPT_TLLA, load(PayloadBase::Transport, 8, 16, ADDR_REG))
    };
    let payload_len = || load(PayloadBase::Network, 4, 2, Reg::R0);
    let mut v = Vec::new();
    if ty == ND_NEIGHBOR_ADVERT {
        // An advertisement only for its own address.
        v.push(
            [
                &icmp6_type(ty)[..],
                &not_own(
                    ether_saddr(),
                    load(PayloadBase::Transport, 8, 16, ADDR_REG),
                    SET_GUARD6,
                ),
            ]
            .concat(),
        );
    }
    // No extension header between the IPv6 header and the message.
    v.push(
        [
            &icmp6_type(ty)[..],
            &[
                load(PayloadBase::Network, 6, 1, Reg::R0),
                Expr::Cmp {
                    sreg: Reg::R0,
                    op: CmpOp::Neq,
                    data: vec![IPPROTO_ICMPV6],
                },
                drop(),
            ],
        ]
        .concat(),
    );
    // Without options it teaches no MAC: done.
    v.push(
        [
            &icmp6_type(ty)[..],
            &[
                payload_len(),
                Expr::cmp_eq(Reg::R0, ND_LEN_BARE.to_be_bytes().to_vec()),
                verdict(Verdict::Accept),
            ],
        ]
        .concat(),
    );
    // Else exactly one option...
    v.push(
        [
            &icmp6_type(ty)[..],
            &[
                payload_len(),
                Expr::Cmp {
                    sreg: Reg::R0,
                    op: CmpOp::Neq,
                    data: ND_LEN_ONE_OPTION.to_be_bytes().to_vec(),
                },
                drop(),
            ],
        ]
        .concat(),
    );
    // ...the link-layer address one...
    v.push(
        [
            &icmp6_type(ty)[..],
            &[
                load(PayloadBase::Transport, 24, 2, Reg::R0),
                Expr::Cmp {
                    sreg: Reg::R0,
                    op: CmpOp::Neq,
                    data: option.to_vec(),
                },
                drop(),
            ],
        ]
        .concat(),
    );
    // ...naming the sandbox's own MAC for its own address.
    v.push(
        [
            &icmp6_type(ty)[..],
            &not_own(
                load(PayloadBase::Transport, 26, 6, MAC_REG),
                addr,
                SET_GUARD6,
            ),
        ]
        .concat(),
    );
    v
}

/// The rules of the bridge table's input chain: frames to the IEEE link-local group
/// addresses that a weft port passes up to the host are dropped (see the module docs).
fn input_rules() -> Vec<Vec<Expr>> {
    vec![vec![
        load(PayloadBase::LinkLayer, 0, 6, Reg::R0),
        Expr::Bitwise {
            sreg: Reg::R0,
            dreg: Reg::R0,
            mask: LINK_LOCAL_GROUP_MASK.to_vec(),
            xor: vec![0; 6],
        },
        Expr::cmp_eq(Reg::R0, LINK_LOCAL_GROUP.to_vec()),
        Expr::meta(MetaKey::Iifname, Reg::R0),
        Expr::lookup(SET_PORTS, Reg::R0),
        verdict(Verdict::Drop),
    ]]
}

/// The chains of the bridge table and their rules: the two base chains ([`CHAIN_GUARD`],
/// [`CHAIN_GUARD_INPUT`]) first.
pub fn chains(opts: &FwOptions) -> Vec<(&'static str, Vec<Vec<Expr>>)> {
    let anti = opts.anti_spoofing;
    let drop = || verdict(Verdict::Drop);

    let mut pre = vec![
        vec![
            Expr::meta(MetaKey::Iifname, Reg::R0),
            Expr::lookup_not(SET_PORTS, Reg::R0),
            verdict(Verdict::Return),
        ],
        ethertype_goto(ETH_P_IP, CHAIN_GUARD4),
        ethertype_goto(ETH_P_IPV6, CHAIN_GUARD6),
    ];
    if anti {
        pre.push(ethertype_goto(ETH_P_ARP, CHAIN_GUARD_ARP));
        pre.push(vec![drop()]);
    }

    let mut v4 = Vec::new();
    if anti {
        v4.push(not_own(
            ether_saddr(),
            load(PayloadBase::Network, 12, 4, ADDR_REG),
            SET_GUARD4,
        ));
    }
    v4.push(vec![
        Expr::meta(MetaKey::L4proto, Reg::R0),
        Expr::cmp_eq(Reg::R0, vec![IPPROTO_ICMP]),
        load(PayloadBase::Transport, 0, 1, Reg::R0),
        Expr::cmp_eq(Reg::R0, vec![ICMP_REDIRECT]),
        drop(),
    ]);

    let mut v6 = Vec::new();
    if anti {
        v6.push(not_own(
            ether_saddr(),
            load(PayloadBase::Network, 8, 16, ADDR_REG),
            SET_GUARD6,
        ));
    }
    v6.push(vec![
        Expr::meta(MetaKey::L4proto, Reg::R0),
        Expr::cmp_eq(Reg::R0, vec![IPPROTO_ICMPV6]),
        verdict(Verdict::Goto(CHAIN_GUARD_ICMP6.into())),
    ]);

    let mut icmp6: Vec<Vec<Expr>> = [ND_ROUTER_SOLICIT, ND_ROUTER_ADVERT, ND_REDIRECT]
        .into_iter()
        .map(|t| [&icmp6_type(t)[..], &[drop()]].concat())
        .collect();
    if anti {
        icmp6.extend(nd_rules(ND_NEIGHBOR_ADVERT));
        icmp6.extend(nd_rules(ND_NEIGHBOR_SOLICIT));
    }

    let mut chains = vec![
        (CHAIN_GUARD, pre),
        (CHAIN_GUARD_INPUT, input_rules()),
        (CHAIN_GUARD4, v4),
        (CHAIN_GUARD6, v6),
        (CHAIN_GUARD_ICMP6, icmp6),
    ];
    if anti {
        // ARP: the sender hardware and protocol addresses (offsets 8 and 14 of the ARP
        // header for Ethernet/IPv4, the only kind the kernel processes) and the frame's
        // source MAC.
        let spa = || load(PayloadBase::Network, 14, 4, ADDR_REG);
        chains.push((
            CHAIN_GUARD_ARP,
            vec![
                not_own(ether_saddr(), spa(), SET_GUARD4),
                not_own(load(PayloadBase::Network, 8, 6, MAC_REG), spa(), SET_GUARD4),
            ],
        ));
    } else {
        chains.push((CHAIN_GUARD_ARP, vec![]));
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_of_the_concatenation() {
        assert_eq!(MAC_REG, Reg::r32(4));
        assert_eq!(ADDR_REG, Reg::r32(6));
    }

    #[test]
    fn without_anti_spoofing_only_router_messages_are_dropped() {
        let off = chains(&FwOptions {
            anti_spoofing: false,
            ..FwOptions::default()
        });
        let lookups: Vec<&str> = off
            .iter()
            .flat_map(|(_, r)| r.iter().flatten())
            .filter_map(|e| match e {
                Expr::Lookup { set, .. } => Some(set.as_str()),
                _ => None,
            })
            .collect();
        // Only "is it a weft port" (prerouting, input): no address is checked.
        assert_eq!(lookups, [SET_PORTS, SET_PORTS]);
        let icmp6 = &off.iter().find(|(n, _)| *n == CHAIN_GUARD_ICMP6).unwrap().1;
        assert_eq!(icmp6.len(), 3);
        let on = chains(&FwOptions::default());
        let pre = &on[0].1;
        assert_eq!(pre.last(), Some(&vec![Expr::Verdict(Verdict::Drop)]));
    }

    #[test]
    fn only_weft_ports_are_policed() {
        let on = chains(&FwOptions::default());
        assert_eq!(on[0].0, CHAIN_GUARD);
        assert_eq!(
            on[0].1[0],
            vec![
                Expr::meta(MetaKey::Iifname, Reg::R0),
                Expr::Lookup {
                    set: SET_PORTS.into(),
                    sreg: Reg::R0,
                    dreg: None,
                    invert: true,
                },
                Expr::Verdict(Verdict::Return),
            ]
        );
        // Link-local group frames passed up through a weft port are dropped at input.
        assert_eq!(on[1].0, CHAIN_GUARD_INPUT);
        let input = &on[1].1;
        assert_eq!(input.len(), 1);
        assert!(input[0].contains(&Expr::cmp_eq(Reg::R0, LINK_LOCAL_GROUP.to_vec())));
        assert!(input[0].contains(&Expr::lookup(SET_PORTS, Reg::R0)));
        assert_eq!(input[0].last(), Some(&Expr::Verdict(Verdict::Drop)));
    }

    #[test]
    fn neighbour_messages_carry_no_option_but_their_own_link_layer_address() {
        let on = chains(&FwOptions::default());
        let nd = &on.iter().find(|(n, _)| *n == CHAIN_GUARD_ICMP6).unwrap().1;
        let neq = |data: Vec<u8>| Expr::Cmp {
            sreg: Reg::R0,
            op: CmpOp::Neq,
            data,
        };
        for (ty, option) in [
            (ND_NEIGHBOR_SOLICIT, ND_OPT_SLLA),
            (ND_NEIGHBOR_ADVERT, ND_OPT_TLLA),
        ] {
            let rules: Vec<&Vec<Expr>> = nd.iter().filter(|r| r[..2] == icmp6_type(ty)).collect();
            let accept = rules
                .iter()
                .position(|r| r.last() == Some(&Expr::Verdict(Verdict::Accept)))
                .unwrap();
            // Before the accept of a bare message: no extension header (and for an NA, its
            // own target).
            assert!(rules[..accept]
                .iter()
                .any(|r| r.contains(&neq(vec![IPPROTO_ICMPV6]))));
            assert_eq!(accept, if ty == ND_NEIGHBOR_ADVERT { 2 } else { 1 });
            assert!(rules[accept].contains(&Expr::cmp_eq(Reg::R0, 24u16.to_be_bytes().to_vec())));
            // After it: exactly one option, the link-layer one, with the sandbox's own MAC.
            let after = &rules[accept + 1..];
            assert_eq!(after.len(), 3);
            assert!(after[0].contains(&neq(32u16.to_be_bytes().to_vec())));
            assert!(after[1].contains(&neq(option.to_vec())));
            assert!(matches!(
                after[2][after[2].len() - 2],
                Expr::Lookup { invert: true, .. }
            ));
            assert!(after
                .iter()
                .all(|r| r.last() == Some(&Expr::Verdict(Verdict::Drop))));
        }
    }
}

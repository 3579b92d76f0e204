//! The port guard: weft's `bridge` table, which sees every frame a sandbox sends before the
//! bridge forwards it (and before br_netfilter hands it to the IP hooks).
//!
//! A sandbox may only send from its own addresses: IPv4 and ARP with its MAC and IPv4
//! address, IPv6 with its MAC and IPv6 addresses (its link-local included), neighbour
//! advertisements only for its own addresses and with its own MAC. Router advertisements,
//! router solicitations and redirects are dropped whatever the addresses: no sandbox may
//! change a route anywhere. Everything else — VLAN-tagged frames, other ethertypes — is
//! dropped. Each check is one lookup in a hash set keyed by `port . MAC . address`, so the
//! cost per frame does not depend on the number of sandboxes.
//!
//! ```text
//! table bridge weft {
//!   set src4 { type ifname . ether_addr . ipv4_addr; }   # one element per sandbox address
//!   set src6 { type ifname . ether_addr . ipv6_addr; }
//!   chain prerouting { type filter hook prerouting priority -300; policy accept;
//!     iifname != "wv*" return              # not a sandbox port
//!     ether type ip goto ipv4
//!     ether type ip6 goto ipv6
//!     ether type arp goto arp4
//!     drop                                 # VLAN tags, other ethertypes
//!   }
//!   chain ipv4 { iifname . ether saddr . ip saddr != @src4 drop; icmp type redirect drop }
//!   chain ipv6 { iifname . ether saddr . ip6 saddr != @src6 drop; meta l4proto ipv6-icmp goto nd }
//!   chain nd { RS, RA, redirect drop; NA: target and target link-layer address own;
//!                  NS: source link-layer address own }
//!   chain arp4 { iifname . ether saddr . arp saddr ip != @src4 drop
//!               iifname . arp saddr ether . arp saddr ip != @src4 drop }
//! }
//! ```
//!
//! Ports are recognised by name: every host end of a weft veth is called `wv…` (see
//! [`crate::core::names::host_veth_name`]); the kernel here has no `meta ibrname`. A weft port
//! without elements (being attached, or whose elements were lost) can send nothing: the
//! guard fails closed. With `anti_spoofing = false` only the router advertisement,
//! solicitation and redirect drops remain.

use super::inet::verdict;
use super::{FwOptions, SET_GUARD4, SET_GUARD6};
use crate::core::nft::{CmpOp, Expr, MetaKey, PayloadBase, Reg, Verdict};

/// The bridge table's base chain.
pub const CHAIN_GUARD: &str = "prerouting";
/// IPv4 frames.
pub const CHAIN_GUARD4: &str = "ipv4";
/// IPv6 frames.
pub const CHAIN_GUARD6: &str = "ipv6";
/// ICMPv6 (neighbour discovery). (Chain and set names avoid nft's keywords — `icmpv6`,
/// `arp`, `ip6` — so that `nft list chain bridge weft nd` works.)
pub const CHAIN_GUARD_ICMP6: &str = "nd";
/// ARP frames.
pub const CHAIN_GUARD_ARP: &str = "arp4";

/// Prefix of the host end of every weft veth.
pub const PORT_PREFIX: &str = "wv";

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
/// The first option of an NS / NA: source (1) or target (2) link-layer address, 1 unit of 8
/// bytes long; it sits right after the 24-byte message.
const ND_OPT_SLLA: [u8; 2] = [1, 1];
const ND_OPT_TLLA: [u8; 2] = [2, 1];

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
        Expr::Lookup {
            set: set.into(),
            sreg: Reg::R0,
            dreg: None,
            invert: true,
        },
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

/// The chains of the bridge table and their rules, base chain first.
pub fn chains(opts: &FwOptions) -> Vec<(&'static str, Vec<Vec<Expr>>)> {
    let anti = opts.anti_spoofing;
    let drop = || verdict(Verdict::Drop);

    let mut pre = vec![
        vec![
            Expr::meta(MetaKey::Iifname, Reg::R0),
            Expr::Cmp {
                sreg: Reg::R0,
                op: CmpOp::Neq,
                data: PORT_PREFIX.as_bytes().to_vec(),
            },
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
        let target = || load(PayloadBase::Transport, 8, 16, ADDR_REG);
        let option = || load(PayloadBase::Transport, 24, 2, Reg::R0);
        let option_mac = || load(PayloadBase::Transport, 26, 6, MAC_REG);
        // An advertisement only for its own address...
        icmp6.push(
            [
                &icmp6_type(ND_NEIGHBOR_ADVERT)[..],
                &not_own(ether_saddr(), target(), SET_GUARD6),
            ]
            .concat(),
        );
        // ...whose first option (the one the kernel uses) is the target link-layer
        // address (an advertisement without options changes no neighbour's MAC)...
        icmp6.push(
            [
                &icmp6_type(ND_NEIGHBOR_ADVERT)[..],
                &[
                    option(),
                    Expr::Cmp {
                        sreg: Reg::R0,
                        op: CmpOp::Neq,
                        data: ND_OPT_TLLA.to_vec(),
                    },
                    drop(),
                ],
            ]
            .concat(),
        );
        // ...and is its own MAC.
        icmp6.push(
            [
                &icmp6_type(ND_NEIGHBOR_ADVERT)[..],
                &not_own(option_mac(), target(), SET_GUARD6),
            ]
            .concat(),
        );
        // A solicitation teaches its receiver the sender's MAC: its own.
        icmp6.push(
            [
                &icmp6_type(ND_NEIGHBOR_SOLICIT)[..],
                &[option(), Expr::cmp_eq(Reg::R0, ND_OPT_SLLA.to_vec())],
                &not_own(
                    option_mac(),
                    load(PayloadBase::Network, 8, 16, ADDR_REG),
                    SET_GUARD6,
                ),
            ]
            .concat(),
        );
    }

    let mut chains = vec![
        (CHAIN_GUARD, pre),
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
        let all: Vec<&Expr> = off.iter().flat_map(|(_, r)| r.iter().flatten()).collect();
        assert!(!all.iter().any(|e| matches!(e, Expr::Lookup { .. })));
        let icmp6 = &off.iter().find(|(n, _)| *n == CHAIN_GUARD_ICMP6).unwrap().1;
        assert_eq!(icmp6.len(), 3);
        let on = chains(&FwOptions::default());
        let pre = &on[0].1;
        assert_eq!(pre.last(), Some(&vec![Expr::Verdict(Verdict::Drop)]));
    }
}

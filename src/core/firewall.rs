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
//!   chain user { }                                   # the users' own: never flushed by weft
//!   chain forward { type filter hook forward priority 0; policy accept;
//!     jump user
//!     iifname . oifname @pairs accept
//!     iifname @internal drop
//!     oifname @internal drop
//!     iifname @bridges oifname @bridges drop
//!     oifname @bridges ct state established,related accept
//!     oifname @bridges drop
//!   }
//!   chain postrouting { type nat hook postrouting priority 100; policy accept;
//!     oifname @bridges return
//!     ip saddr @masq4 masquerade
//!     ip6 saddr @masq6 masquerade
//!   }
//! }
//! ```

use ipnet::{Ipv4Net, Ipv6Net};

use crate::adapters::nftables::{
    ct_state, BaseChain, Batch, Chain, ChainType, CmpOp, CtKey, Elem, Expr, Family, Hook, IpFamily,
    KeyType, MetaKey, PayloadBase, Policy, Reg, SetSpec, Verdict,
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

/// The users' chain, jumped to first from `forward`; weft creates it but never flushes it.
pub const CHAIN_USER: &str = "user";
/// The filter chain on the forward hook.
pub const CHAIN_FORWARD: &str = "forward";
/// The nat chain on the postrouting hook.
pub const CHAIN_POSTROUTING: &str = "postrouting";

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
}

/// The five sets, with the exact definitions the kernel compares on every re-add (changing
/// one later needs a migration: an existing set with another definition is `EEXIST`).
fn sets() -> [SetSpec; 5] {
    [
        SetSpec::new(SET_BRIDGES, KeyType::Ifname),
        SetSpec::new(SET_PAIRS, KeyType::IfnamePair),
        SetSpec::new(SET_INTERNAL, KeyType::Ifname),
        SetSpec::new(SET_MASQ4, KeyType::Ipv4Addr).interval(),
        SetSpec::new(SET_MASQ6, KeyType::Ipv6Addr).interval(),
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
    vec![
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
    batch.add_chain(
        FAMILY,
        TABLE,
        base(CHAIN_POSTROUTING, Hook::Postrouting, 100, ChainType::Nat),
    );
    batch.flush_chain(FAMILY, TABLE, CHAIN_FORWARD);
    batch.flush_chain(FAMILY, TABLE, CHAIN_POSTROUTING);
    for rule in forward_rules() {
        batch.add_rule(FAMILY, TABLE, CHAIN_FORWARD, rule);
    }
    for rule in postrouting_rules() {
        batch.add_rule(FAMILY, TABLE, CHAIN_POSTROUTING, rule);
    }
}

/// Empties the five sets (never the user chain), e.g. before garbage collection re-adds the
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
    v
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
        }
    }

    #[test]
    fn ensure_base_is_deterministic() {
        let mut a = Batch::new();
        ensure_base(&mut a);
        let mut b = Batch::new();
        ensure_base(&mut b);
        assert_eq!(a.encode(7), b.encode(7));
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
            7
        );
        assert_eq!(
            ops.iter()
                .filter(|o| o.starts_with("add rule to inet weft postrouting"))
                .count(),
            3
        );
        assert_eq!(ops.iter().filter(|o| o.starts_with("add set")).count(), 5);
        // Nothing touches set elements.
        assert!(!ops
            .iter()
            .any(|o| o.contains("elements") || o.starts_with("flush set")));
    }

    #[test]
    fn flush_elements_flushes_only_sets() {
        let mut b = Batch::new();
        flush_elements(&mut b);
        assert_eq!(b.len(), 5);
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
        for (rule, proto) in postrouting_rules()[1..].iter().zip([2u8, 10]) {
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
        let bytes = b.encode(0);
        // Every message after the batch begin is NFT_MSG_DESTROYSETELEM (0x0a1e).
        let mut off = 20;
        for _ in 0..5 {
            assert_eq!(u16::from_ne_bytes([bytes[off + 4], bytes[off + 5]]), 0x0a1e);
            off += u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        }
    }

    #[test]
    fn ct_state_mask_matches_nft() {
        // nft sends mask 06 00 00 00 for `ct state established,related` (host order on x86).
        let r = &forward_rules()[5];
        match &r[3] {
            Expr::Bitwise { mask, .. } => assert_eq!(mask, &6u32.to_ne_bytes().to_vec()),
            other => panic!("expected bitwise, got {other:?}"),
        }
    }
}

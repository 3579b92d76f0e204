//! Other tables' forward chains that drop by policy (firewalld, ufw, `iptables -P FORWARD
//! DROP`): every forwarded packet must pass every base chain of the hook, so such a chain
//! silently cuts off all sandbox traffic (bridged traffic too: br_netfilter hands it to the
//! forward hook). Weft does not touch other tables; it says what to add.

use crate::core::nft::{ChainInfo, Family, Hook, Policy};

use super::guard::PORT_PREFIX;
use super::TABLE;

/// Base chains on the forward hook of tables other than weft's whose policy is drop.
pub fn forward_drops(chains: &[ChainInfo]) -> Vec<&ChainInfo> {
    chains
        .iter()
        .filter(|c| {
            let weft = c.table == TABLE && matches!(c.family, Family::Inet | Family::Bridge);
            !weft
                && c.base
                    .is_some_and(|b| b.hook == Hook::Forward && b.policy == Policy::Drop)
        })
        .collect()
}

/// Whether the chain looks like one of iptables-nft's (`iptables -P FORWARD DROP` makes
/// `table ip filter` chain `FORWARD`): then the iptables commands are the ones to give.
fn iptables_tool(c: &ChainInfo) -> Option<&'static str> {
    match (c.family, c.table.as_str(), c.name.as_str()) {
        (Family::Ip, "filter", "FORWARD") => Some("iptables"),
        (Family::Ip6, "filter", "FORWARD") => Some("ip6tables"),
        _ => None,
    }
}

/// The interface name whose mention in `c`'s rules means the advice for `bridge` was
/// followed: the bridge, or in a bridge-family chain weft's port prefix.
pub fn mention(c: &ChainInfo, bridge: &str) -> String {
    if c.family == Family::Bridge {
        PORT_PREFIX.to_string()
    } else {
        bridge.to_string()
    }
}

/// The commands that let the traffic of `bridge` through `c`.
pub fn allow_commands(c: &ChainInfo, bridge: &str) -> Vec<String> {
    if let Some(tool) = iptables_tool(c) {
        return ["-i", "-o"]
            .iter()
            .map(|dir| format!("{tool} -I {} {dir} {bridge} -j ACCEPT", c.name))
            .collect();
    }
    // In the bridge family, the interfaces are the bridge ports: weft's are all `wv…`.
    let name = if c.family == Family::Bridge {
        format!("{PORT_PREFIX}*")
    } else {
        bridge.to_string()
    };
    ["iifname", "oifname"]
        .iter()
        .map(|dir| {
            format!(
                "nft insert rule {} {} {} {dir} \"{name}\" accept",
                c.family, c.table, c.name
            )
        })
        .collect()
}

/// The warning for one chain and the bridges it would cut off.
pub fn warning(c: &ChainInfo, bridges: &[String]) -> String {
    let mut s = format!(
        "warning: nftables chain `{} {} {}` drops forwarded traffic by policy, the traffic of \
         weft's sandboxes included; to let it through, run:",
        c.family, c.table, c.name
    );
    for b in bridges {
        for cmd in allow_commands(c, b) {
            s.push_str("\n  ");
            s.push_str(&cmd);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nft::{BaseChain, ChainType};

    fn chain(family: Family, table: &str, name: &str, hook: Hook, policy: Policy) -> ChainInfo {
        ChainInfo {
            family,
            table: table.into(),
            name: name.into(),
            base: Some(BaseChain {
                hook,
                priority: 0,
                kind: ChainType::Filter,
                policy,
            }),
            other_base: false,
            use_count: None,
        }
    }

    #[test]
    fn finds_only_foreign_forward_drops() {
        let chains = vec![
            chain(Family::Inet, "fw", "forward", Hook::Forward, Policy::Drop),
            chain(Family::Inet, "fw", "input", Hook::Input, Policy::Drop),
            chain(Family::Inet, "weft", "forward", Hook::Forward, Policy::Drop),
            chain(Family::Ip, "filter", "FORWARD", Hook::Forward, Policy::Drop),
            chain(Family::Ip, "weft", "f", Hook::Forward, Policy::Drop),
            chain(Family::Inet, "x", "forward", Hook::Forward, Policy::Accept),
        ];
        let found: Vec<String> = forward_drops(&chains)
            .iter()
            .map(|c| format!("{} {}", c.table, c.name))
            .collect();
        // `ip weft` is not weft's (weft's tables are inet and bridge).
        assert_eq!(found, ["fw forward", "filter FORWARD", "weft f"]);
    }

    #[test]
    fn advice_names_the_chain_and_the_commands() {
        let c = chain(Family::Inet, "fw", "forward", Hook::Forward, Policy::Drop);
        let w = warning(&c, &["wbr-1".into()]);
        assert!(w.contains("`inet fw forward`"), "{w}");
        assert!(
            w.contains("nft insert rule inet fw forward iifname \"wbr-1\" accept"),
            "{w}"
        );
        assert!(
            w.contains("nft insert rule inet fw forward oifname \"wbr-1\" accept"),
            "{w}"
        );
        let ipt = chain(Family::Ip, "filter", "FORWARD", Hook::Forward, Policy::Drop);
        assert_eq!(
            allow_commands(&ipt, "wbr-1"),
            [
                "iptables -I FORWARD -i wbr-1 -j ACCEPT",
                "iptables -I FORWARD -o wbr-1 -j ACCEPT"
            ]
        );
        let br = chain(Family::Bridge, "t", "fwd", Hook::Forward, Policy::Drop);
        assert!(allow_commands(&br, "wbr-1")[0].contains("iifname \"wv*\""));
    }
}

//! The cluster store's key layout, defined once. Every key lives under [`PREFIX`]; values
//! are JSON records ([`super::records`]).
//!
//! - `hosts/<node>`: a node's [`HostRecord`](super::records::HostRecord), under its lease;
//! - `networks/<name>`: an overlay network's record; `network-ids/<id>`: its name;
//! - `vnis/<vni>`: the id of the network holding a VNI;
//! - `addresses/<network id>/<ip>`: who holds an address (no lease: survivors free a dead
//!   node's addresses after a quarantine);
//! - `endpoints/<network id>/<node>/<sandbox id>`: an attached sandbox, under its node's lease.

use std::net::IpAddr;

/// The root of everything weft keeps in the cluster store. Versioned, so that a later layout
/// can live next to this one during an upgrade.
pub const PREFIX: &str = "/weft/v1/";

/// A parsed key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A node's liveness and tunnel endpoint.
    Host {
        /// Node name.
        node: String,
    },
    /// An overlay network by name.
    Network {
        /// Network name.
        name: String,
    },
    /// An overlay network's id, to its name.
    NetworkId {
        /// Network id.
        id: String,
    },
    /// A VNI taken by a network.
    Vni(u32),
    /// An address held on a network.
    Address {
        /// Network id.
        network: String,
        /// The address.
        ip: IpAddr,
    },
    /// A sandbox attached to a network on a node.
    Endpoint {
        /// Network id.
        network: String,
        /// Node the sandbox runs on.
        node: String,
        /// Sandbox id.
        sandbox: String,
    },
}

pub use crate::core::driver::overlay::VNI_MAX;

/// Whether `s` may be one path segment of a key: a node, network or sandbox name or id.
/// Refuses what could change a key's meaning (`/`, empty, `.`/`..`) or hide in logs
/// (control characters, spaces).
pub fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Key {
    /// The key's text.
    pub fn render(&self) -> String {
        match self {
            Key::Host { node } => format!("{PREFIX}hosts/{node}"),
            Key::Network { name } => format!("{PREFIX}networks/{name}"),
            Key::NetworkId { id } => format!("{PREFIX}network-ids/{id}"),
            Key::Vni(vni) => format!("{PREFIX}vnis/{vni}"),
            Key::Address { network, ip } => format!("{PREFIX}addresses/{network}/{ip}"),
            Key::Endpoint {
                network,
                node,
                sandbox,
            } => format!("{PREFIX}endpoints/{network}/{node}/{sandbox}"),
        }
    }

    /// Parses a key; `None` for anything that is not exactly one of weft's (a key someone
    /// else wrote under the prefix is ignored, never half-understood).
    pub fn parse(key: &str) -> Option<Key> {
        let rest = key.strip_prefix(PREFIX)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let seg = |s: &str| valid_segment(s).then(|| s.to_string());
        match parts.as_slice() {
            ["hosts", node] => Some(Key::Host { node: seg(node)? }),
            ["networks", name] => Some(Key::Network { name: seg(name)? }),
            ["network-ids", id] => Some(Key::NetworkId { id: seg(id)? }),
            ["vnis", vni] => {
                // Canonical decimal only, so one VNI has one key.
                let v: u32 = vni.parse().ok()?;
                ((1..=VNI_MAX).contains(&v) && v.to_string() == *vni).then_some(Key::Vni(v))
            }
            ["addresses", network, ip] => {
                let parsed: IpAddr = ip.parse().ok()?;
                // Canonical text only: `010.0.0.1` or an uncompressed IPv6 would be a second
                // key for the same address, and two claims could both succeed.
                (parsed.to_string() == *ip).then_some(())?;
                Some(Key::Address {
                    network: seg(network)?,
                    ip: parsed,
                })
            }
            ["endpoints", network, node, sandbox] => Some(Key::Endpoint {
                network: seg(network)?,
                node: seg(node)?,
                sandbox: seg(sandbox)?,
            }),
            _ => None,
        }
    }
}

/// Prefix of every node's record.
pub fn hosts_prefix() -> String {
    format!("{PREFIX}hosts/")
}

/// Prefix of every network's endpoints.
pub fn endpoints_prefix() -> String {
    format!("{PREFIX}endpoints/")
}

/// Prefix of one network's address claims.
pub fn addresses_prefix(network: &str) -> String {
    format!("{PREFIX}addresses/{network}/")
}

/// Prefix of every overlay network record.
pub fn networks_prefix() -> String {
    format!("{PREFIX}networks/")
}

/// Prefix of the nodes' underlay records ([`super::records::UnderlayRecord`]).
pub fn underlays_prefix() -> String {
    format!("{PREFIX}underlays/")
}

/// Key of `node`'s underlay record, written under its lease with its host record. Not a
/// [`Key`]: only network creation reads it (to fit the MTU to every live node's underlay).
pub fn underlay_key(node: &str) -> String {
    format!("{PREFIX}underlays/{node}")
}

/// The key every network creation rewrites, in the same transaction that stores the network,
/// with a compare on the revision it had when the creation read the other networks' subnets:
/// two creations that read the same set cannot both store a network, so two overlapping
/// subnets never both get in (an overlap is no equality, so it cannot be a create-if-absent
/// claim of its own). Its value is the name of the last network stored, for people reading
/// the store. Not a [`Key`]: nothing watches it.
pub fn subnets_guard() -> String {
    format!("{PREFIX}subnets-guard")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(k: Key) {
        assert_eq!(Key::parse(&k.render()), Some(k));
    }

    #[test]
    fn every_key_round_trips() {
        round_trip(Key::Host { node: "h1".into() });
        round_trip(Key::Network { name: "ovl".into() });
        round_trip(Key::NetworkId { id: "ab12".into() });
        round_trip(Key::Vni(1));
        round_trip(Key::Vni(VNI_MAX));
        round_trip(Key::Address {
            network: "ab12".into(),
            ip: "12.12.12.2".parse().unwrap(),
        });
        round_trip(Key::Address {
            network: "ab12".into(),
            ip: "fd00::2".parse().unwrap(),
        });
        round_trip(Key::Endpoint {
            network: "ab12".into(),
            node: "h-2.lan".into(),
            sandbox: "cafe".into(),
        });
    }

    #[test]
    fn foreign_and_non_canonical_keys_are_ignored() {
        for k in [
            "/weft/v1/hosts/",
            "/weft/v1/hosts/a/b",
            "/weft/v1/hosts/..",
            "/weft/v1/hosts/a b",
            "/weft/v2/hosts/a",
            "/other/hosts/a",
            "/weft/v1/vnis/0",
            "/weft/v1/vnis/16777216",
            "/weft/v1/vnis/042",
            "/weft/v1/vnis/+42",
            "/weft/v1/addresses/n/010.0.0.1",
            "/weft/v1/addresses/n/fd00:0:0::2",
            "/weft/v1/addresses/n/not-an-ip",
            "/weft/v1/endpoints/n/h",
            "/weft/v1/endpoints/n/h/s/extra",
            "/weft/v1/unknown/x",
            "/weft/v1/subnets-guard",
        ] {
            assert_eq!(Key::parse(k), None, "{k}");
        }
    }

    #[test]
    fn segments_refuse_separators_and_controls() {
        assert!(valid_segment("node-1.example"));
        for bad in ["", ".", "..", "a/b", "a\nb", "a b", "é"] {
            assert!(!valid_segment(bad), "{bad:?}");
        }
        assert!(!valid_segment(&"a".repeat(254)));
    }
}

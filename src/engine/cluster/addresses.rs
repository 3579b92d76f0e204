//! Overlay addresses, claimed cluster-wide: a create-if-absent transaction on
//! `addresses/<network id>/<ip>`, retried with the lost address added to the taken ones, so
//! two nodes never get the same address. A claim carries no lease (see
//! [`crate::core::cluster::quarantine`]).
//!
//! Which addresses are taken, and which one the sandbox already holds, come from what the
//! agent's cluster task keeps of the claims ([`Known`]) when it has them: an attach then
//! reads and writes only the keys it claims, however many claims the network has. Without
//! them (before the task's first sync) the network's claims are read from the store.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::adapters::cluster::{ClusterStore, Compare, Txn, TxnOp};
use crate::core::cluster::alloc::choose_address;
use crate::core::cluster::claims::Claims;
use crate::core::cluster::keys::{addresses_prefix, Key};
use crate::core::cluster::records::AddressRecord;
use crate::core::ipam;
use crate::core::model::Network;
use crate::engine::sandbox::addresses::space;

use super::networks::{id_key, id_value, ATTEMPTS};
use super::ClusterError;

fn address_key(network_id: &str, ip: IpAddr) -> String {
    Key::Address {
        network: network_id.into(),
        ip,
    }
    .render()
}

/// What the agent knows of one network's claims, for one attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// The claims the attaching sandbox holds: key, address, revision.
    pub mine: Vec<(String, IpAddr, i64)>,
    /// Every claimed address of the network.
    pub taken: BTreeSet<IpAddr>,
}

impl Known {
    /// What `claims` says of network `network_id`'s claims, for `sandbox` (O(claims of that
    /// network), in memory).
    pub fn of(claims: &Claims, network_id: &str, sandbox: &str) -> Known {
        let prefix = addresses_prefix(network_id);
        let mut k = Known::default();
        for (key, c, rev) in claims.under(&prefix) {
            if let Some(Key::Address { ip, .. }) = Key::parse(key) {
                k.taken.insert(ip);
                if c.sandbox == sandbox {
                    k.mine.push((key.clone(), ip, rev));
                }
            }
        }
        k
    }
}

/// A claim as written: what the agent's copy of the claims is to hold at once (its watch
/// reports the write a moment later, and an attach tried again meanwhile must find it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The address.
    pub ip: IpAddr,
    /// Its claim's key.
    pub key: String,
    /// The claim's revision.
    pub revision: i64,
}

/// Claims an address of `net` (family `v6`) for `sandbox` on `node`: `want` if given and
/// free, else the lowest free one by the bridge networks' rules. The claim also rewrites
/// `network-ids/<id>`, which makes a concurrent removal of the network retry and see it.
/// `known`: the network's claims as the agent keeps them (`None`: read from the store).
pub fn claim_address(
    store: &dyn ClusterStore,
    net: &Network,
    node: &str,
    sandbox: &str,
    v6: bool,
    want: Option<IpAddr>,
    known: Option<&Known>,
) -> Result<IpAddr, ClusterError> {
    claim(store, net, node, sandbox, v6, want, known).map(|c| c.ip)
}

/// [`claim_address`], saying which key and revision the claim has.
pub fn claim(
    store: &dyn ClusterStore,
    net: &Network,
    node: &str,
    sandbox: &str,
    v6: bool,
    want: Option<IpAddr>,
    known: Option<&Known>,
) -> Result<Claimed, ClusterError> {
    let Some(sp) = space(net, v6) else {
        return Err(ClusterError::Address {
            network: net.name.clone(),
            detail: format!("no {} subnet", if v6 { "IPv6" } else { "IPv4" }),
        });
    };
    let record = AddressRecord {
        sandbox: sandbox.into(),
        node: node.into(),
    }
    .encode();
    // Idempotent: an attach tried again (after an answer lost on the way) gets the address
    // the sandbox already holds, never a second one.
    let held: Vec<(String, IpAddr, i64)> = match known {
        Some(k) => k.mine.clone(),
        None => store
            .snapshot(&addresses_prefix(&net.id))?
            .kvs
            .into_iter()
            .filter(|kv| AddressRecord::decode(&kv.value).is_ok_and(|r| r.sandbox == sandbox))
            .filter_map(|kv| match Key::parse(&kv.key) {
                Some(Key::Address { ip, .. }) => Some((kv.key, ip, kv.mod_revision)),
                _ => None,
            })
            .collect(),
    };
    if let Some((key, ip, rev)) = held
        .into_iter()
        .find(|(_, ip, _)| ip.is_ipv6() == v6 && want.is_none_or(|w| w == *ip))
    {
        // Written again, compared on its revision: a claim the agent's orphan sweep is
        // timing (one left by a disconnect while etcd was away, now wanted again) starts its
        // grace over with the new revision instead of being deleted before this attach is
        // recorded here. What the agent keeps may be a revision behind: read again once.
        let touch = |rev: i64| {
            Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .and_then(TxnOp::Put {
                    key: key.clone(),
                    value: record.clone(),
                    lease: None,
                })
        };
        let done = store.txn(touch(rev))?;
        if done.succeeded {
            return Ok(Claimed {
                ip,
                key,
                revision: done.revision,
            });
        }
        if let Some(kv) = store.get(&key)? {
            let still = AddressRecord::decode(&kv.value).is_ok_and(|r| r.sandbox == sandbox);
            if still {
                let done = store.txn(touch(kv.mod_revision))?;
                if done.succeeded {
                    return Ok(Claimed {
                        ip,
                        key,
                        revision: done.revision,
                    });
                }
            }
        }
        // Deleted or taken meanwhile: claimed afresh below.
    }
    let mut lost: BTreeSet<IpAddr> = BTreeSet::new();
    for _ in 0..ATTEMPTS {
        let ip = match want {
            Some(ip) => {
                let holder = store
                    .get(&address_key(&net.id, ip))?
                    .map(|kv| {
                        AddressRecord::decode(&kv.value)
                            .map(|r| r.sandbox)
                            .unwrap_or_else(|_| "an unreadable claim".into())
                    })
                    .filter(|s| s != sandbox);
                ipam::check_static(&sp, ip, holder).map_err(|e| ClusterError::Address {
                    network: net.name.clone(),
                    detail: e.to_string(),
                })?;
                ip
            }
            None => {
                let mut taken = lost.clone();
                match known {
                    Some(k) => taken.extend(k.taken.iter().copied()),
                    None => {
                        for kv in store.snapshot(&addresses_prefix(&net.id))?.kvs {
                            if let Some(Key::Address { ip, .. }) = Key::parse(&kv.key) {
                                taken.insert(ip);
                            }
                        }
                    }
                }
                choose_address(&sp, None, &taken)?
            }
        };
        let key = address_key(&net.id, ip);
        let txn = Txn::new()
            .when(Compare::Absent(key.clone()))
            .when(Compare::Value(id_key(&net.id), id_value(&net.name)))
            .and_then(TxnOp::Put {
                key: key.clone(),
                value: record.clone(),
                lease: None,
            })
            .and_then(TxnOp::Put {
                key: id_key(&net.id),
                value: id_value(&net.name),
                lease: None,
            });
        let done = store.txn(txn)?;
        if done.succeeded {
            return Ok(Claimed {
                ip,
                key,
                revision: done.revision,
            });
        }
        if store.get(&id_key(&net.id))?.map(|kv| kv.value) != Some(id_value(&net.name)) {
            return Err(ClusterError::NoSuchNetwork(net.name.clone()));
        }
        // Another node took it between the snapshot (or the agent's last watch event) and
        // the claim.
        lost.insert(ip);
    }
    Err(ClusterError::Contention {
        endpoints: store.endpoints(),
        attempts: ATTEMPTS,
    })
}

/// Releases `sandbox`'s claims on network `network_id` (only `ip` when given), each only if
/// it is still that sandbox's (a compare on the revision it was read at). Returns how many
/// were released. The keys come from `ip`, else from `known` (the agent's claims), else
/// (neither says: none known, or the agent's watch is behind) from a read of the network's
/// claims.
pub fn release_address(
    store: &dyn ClusterStore,
    network_id: &str,
    sandbox: &str,
    ip: Option<IpAddr>,
    known: Option<&Known>,
) -> Result<usize, ClusterError> {
    let candidates: Vec<String> = match (ip, known) {
        (Some(ip), _) => vec![address_key(network_id, ip)],
        (None, Some(k)) if !k.mine.is_empty() => {
            k.mine.iter().map(|(key, _, _)| key.clone()).collect()
        }
        (None, _) => {
            let mut released = 0;
            for kv in store.snapshot(&addresses_prefix(network_id))?.kvs {
                if Key::parse(&kv.key).is_some() && release_if_held(store, &kv, sandbox)? {
                    released += 1;
                }
            }
            return Ok(released);
        }
    };
    let mut released = 0;
    for key in candidates {
        if let Some(kv) = store.get(&key)? {
            if release_if_held(store, &kv, sandbox)? {
                released += 1;
            }
        }
    }
    Ok(released)
}

/// Deletes claim `kv` if `sandbox` holds it, compared on the revision it was read at.
fn release_if_held(
    store: &dyn ClusterStore,
    kv: &crate::adapters::cluster::KeyValue,
    sandbox: &str,
) -> Result<bool, ClusterError> {
    if !matches!(Key::parse(&kv.key), Some(Key::Address { .. })) {
        return Ok(false);
    }
    if !AddressRecord::decode(&kv.value).is_ok_and(|r| r.sandbox == sandbox) {
        return Ok(false);
    }
    let txn = Txn::new()
        .when(Compare::ModRevision(kv.key.clone(), kv.mod_revision))
        .and_then(TxnOp::Delete(kv.key.clone()));
    Ok(store.txn(txn)?.succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::cluster::memory::MemoryStore;
    use crate::engine::cluster::create_network::{create_network, tests::overlay};
    use std::sync::Arc;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// [`super::release_address`] reading the network's claims from the store.
    fn release_address(
        s: &dyn ClusterStore,
        network_id: &str,
        sandbox: &str,
        ip: Option<IpAddr>,
    ) -> Result<usize, ClusterError> {
        super::release_address(s, network_id, sandbox, ip, None)
    }

    /// [`super::claim_address`] reading the network's claims from the store.
    fn claim_address(
        s: &dyn ClusterStore,
        n: &Network,
        node: &str,
        sandbox: &str,
        v6: bool,
        want: Option<IpAddr>,
    ) -> Result<IpAddr, ClusterError> {
        super::claim_address(s, n, node, sandbox, v6, want, None)
    }

    #[test]
    fn with_the_agent_s_claims_an_attach_reads_only_the_keys_it_claims() {
        let s = MemoryStore::new();
        let n = create_network(&s, overlay("ovl", "12.12.12.0/24", 0), 4789).unwrap();
        let claim =
            |sb: &str, k: &Known| super::claim_address(&s, &n, "h1", sb, false, None, Some(k));
        // The agent knows .2 is taken (the store does not say so): skipped, without reading
        // the network's claims.
        let k = Known {
            taken: [ip("12.12.12.2")].into(),
            ..Known::default()
        };
        assert_eq!(claim("sa", &k).unwrap(), ip("12.12.12.3"));
        // It does not know of .3 yet (its watch is behind): the guarded claim loses, the next
        // is tried.
        assert_eq!(claim("sb", &Known::default()).unwrap(), ip("12.12.12.2"));
        assert_eq!(claim("sc", &k).unwrap(), ip("12.12.12.4"));
        // sa's claim, known at an older revision (touched since): read again, kept.
        let key = address_key(&n.id, ip("12.12.12.3"));
        let rev = s.get(&key).unwrap().unwrap().mod_revision;
        let stale = Known {
            mine: vec![(key.clone(), ip("12.12.12.3"), rev - 1)],
            taken: [ip("12.12.12.2"), ip("12.12.12.3"), ip("12.12.12.4")].into(),
        };
        assert_eq!(claim("sa", &stale).unwrap(), ip("12.12.12.3"));
        assert!(s.get(&key).unwrap().unwrap().mod_revision > rev);
        // A claim the agent thinks sd holds, now another sandbox's: sd gets a fresh one.
        let wrong = Known {
            mine: vec![(key.clone(), ip("12.12.12.3"), rev)],
            taken: stale.taken.clone(),
        };
        assert_eq!(claim("sd", &wrong).unwrap(), ip("12.12.12.5"));
        assert_eq!(
            AddressRecord::decode(&s.get(&key).unwrap().unwrap().value)
                .unwrap()
                .sandbox,
            "sa"
        );
        // What the agent keeps, read from its index.
        let mut c = Claims::default();
        for kv in s.snapshot(&addresses_prefix(&n.id)).unwrap().kvs {
            c.insert(
                kv.key,
                AddressRecord::decode(&kv.value).unwrap(),
                kv.mod_revision,
            );
        }
        c.insert(
            "/weft/v1/addresses/other/10.0.0.1".into(),
            AddressRecord {
                sandbox: "sa".into(),
                node: "h1".into(),
            },
            1,
        );
        let k = Known::of(&c, &n.id, "sa");
        assert_eq!(k.taken.len(), 4);
        assert_eq!(k.mine.len(), 1);
        assert_eq!(k.mine[0].1, ip("12.12.12.3"));
        // Released by the key the agent knows, compared on the holder: sa's goes, and a
        // known claim that is another sandbox's stays.
        let not_sd = Known::of(&c, &n.id, "sa");
        assert_eq!(
            super::release_address(&s, &n.id, "sd", None, Some(&not_sd)).unwrap(),
            0
        );
        assert_eq!(
            super::release_address(&s, &n.id, "sa", None, Some(&k)).unwrap(),
            1
        );
        assert!(s.get(&key).unwrap().is_none());
        // Nothing known of sb's: its claims are read from the store.
        assert_eq!(
            super::release_address(&s, &n.id, "sb", None, Some(&Known::default())).unwrap(),
            1
        );
    }

    #[test]
    fn dynamic_and_static_claims_follow_the_bridge_rules() {
        let s = MemoryStore::new();
        let n = create_network(&s, overlay("ovl", "12.12.12.0/24", 0), 4789).unwrap();
        assert_eq!(
            claim_address(&s, &n, "h1", "sa", false, None).unwrap(),
            ip("12.12.12.2")
        );
        assert_eq!(
            claim_address(&s, &n, "h2", "sb", false, None).unwrap(),
            ip("12.12.12.3")
        );
        assert_eq!(
            claim_address(&s, &n, "h1", "sc", false, Some(ip("12.12.12.9"))).unwrap(),
            ip("12.12.12.9")
        );
        let e = claim_address(&s, &n, "h2", "sd", false, Some(ip("12.12.12.9"))).unwrap_err();
        assert!(e.to_string().starts_with("network \"ovl\": "), "{e}");
        assert!(e.to_string().contains("sc"), "{e}");
        let e = claim_address(&s, &n, "h2", "sd", false, Some(ip("12.12.12.1"))).unwrap_err();
        assert!(e.to_string().contains("gateway"), "{e}");
        let e = claim_address(&s, &n, "h2", "sd", false, Some(ip("12.12.13.1"))).unwrap_err();
        assert!(matches!(e, ClusterError::Address { .. }), "{e}");
        // Release compares the holder: another sandbox's claim stays.
        assert_eq!(release_address(&s, &n.id, "sd", None).unwrap(), 0);
        // Claiming again for the same sandbox gives what it holds, written again (a new
        // revision restarts the grace of an orphan sweep timing it).
        let key = address_key(&n.id, ip("12.12.12.9"));
        let before = s.get(&key).unwrap().unwrap().mod_revision;
        assert_eq!(
            claim_address(&s, &n, "h1", "sc", false, None).unwrap(),
            ip("12.12.12.9")
        );
        assert!(s.get(&key).unwrap().unwrap().mod_revision > before);
        assert_eq!(
            claim_address(&s, &n, "h1", "sc", false, Some(ip("12.12.12.9"))).unwrap(),
            ip("12.12.12.9")
        );
        assert_eq!(s.snapshot(&addresses_prefix(&n.id)).unwrap().kvs.len(), 3);
        assert_eq!(
            release_address(&s, &n.id, "sa", Some(ip("12.12.12.2"))).unwrap(),
            1
        );
        assert_eq!(
            claim_address(&s, &n, "h2", "se", false, None).unwrap(),
            ip("12.12.12.2")
        );
    }

    #[test]
    fn a_removed_network_hands_out_nothing() {
        let s = MemoryStore::new();
        let n = create_network(&s, overlay("ovl", "12.12.12.0/24", 0), 4789).unwrap();
        crate::engine::cluster::remove_network::remove_network(&s, "ovl").unwrap();
        assert!(matches!(
            claim_address(&s, &n, "h1", "sa", false, None),
            Err(ClusterError::NoSuchNetwork(_))
        ));
        assert!(s.snapshot(&addresses_prefix(&n.id)).unwrap().kvs.is_empty());
    }

    #[test]
    fn concurrent_claims_from_many_nodes_never_collide() {
        let s = Arc::new(MemoryStore::new());
        let n =
            Arc::new(create_network(s.as_ref(), overlay("ovl", "12.12.12.0/26", 0), 4789).unwrap());
        let threads: Vec<_> = (0..3)
            .map(|node| {
                let (s, n) = (s.clone(), n.clone());
                std::thread::spawn(move || {
                    (0..20)
                        .map(|i| {
                            claim_address(
                                s.as_ref(),
                                &n,
                                &format!("h{node}"),
                                &format!("s{node}x{i}"),
                                false,
                                None,
                            )
                            .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<IpAddr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let distinct: BTreeSet<IpAddr> = all.iter().copied().collect();
        assert_eq!(all.len(), 60);
        assert_eq!(distinct.len(), 60, "an address was handed out twice");
        assert_eq!(s.snapshot(&addresses_prefix(&n.id)).unwrap().kvs.len(), 60);
        // The /26 has 61 usable addresses beside the gateway: one left, then none.
        claim_address(s.as_ref(), &n, "h9", "last", false, None).unwrap();
        assert!(matches!(
            claim_address(s.as_ref(), &n, "h9", "over", false, None),
            Err(ClusterError::Alloc(_))
        ));
    }
}

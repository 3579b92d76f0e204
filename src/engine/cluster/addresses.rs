//! Overlay addresses, claimed cluster-wide: a create-if-absent transaction on
//! `addresses/<network id>/<ip>`, retried with the lost address added to the taken ones, so
//! two nodes never get the same address. A claim carries no lease (see
//! [`crate::core::cluster::quarantine`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::adapters::cluster::{ClusterStore, Compare, Txn, TxnOp};
use crate::core::cluster::alloc::choose_address;
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

/// Claims an address of `net` (family `v6`) for `sandbox` on `node`: `want` if given and
/// free, else the lowest free one by the bridge networks' rules. The claim also rewrites
/// `network-ids/<id>`, which makes a concurrent removal of the network retry and see it.
pub fn claim_address(
    store: &dyn ClusterStore,
    net: &Network,
    node: &str,
    sandbox: &str,
    v6: bool,
    want: Option<IpAddr>,
) -> Result<IpAddr, ClusterError> {
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
    for kv in store.snapshot(&addresses_prefix(&net.id))?.kvs {
        if let Some(Key::Address { ip, .. }) = Key::parse(&kv.key) {
            let mine = AddressRecord::decode(&kv.value).is_ok_and(|r| r.sandbox == sandbox);
            if mine && ip.is_ipv6() == v6 && want.is_none_or(|w| w == ip) {
                // Written again, compared on its revision: a claim the agent's orphan sweep
                // is timing (one left by a disconnect while etcd was away, now wanted again)
                // starts its grace over with the new revision instead of being deleted
                // before this attach is recorded here.
                let touch = Txn::new()
                    .when(Compare::ModRevision(kv.key.clone(), kv.mod_revision))
                    .and_then(TxnOp::Put {
                        key: kv.key.clone(),
                        value: record.clone(),
                        lease: None,
                    });
                if store.txn(touch)?.succeeded {
                    return Ok(ip);
                }
                // Deleted or changed meanwhile: claimed afresh below.
                break;
            }
        }
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
                for kv in store.snapshot(&addresses_prefix(&net.id))?.kvs {
                    if let Some(Key::Address { ip, .. }) = Key::parse(&kv.key) {
                        taken.insert(ip);
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
        if store.txn(txn)?.succeeded {
            return Ok(ip);
        }
        if store.get(&id_key(&net.id))?.map(|kv| kv.value) != Some(id_value(&net.name)) {
            return Err(ClusterError::NoSuchNetwork(net.name.clone()));
        }
        // Another node took it between the snapshot and the claim.
        lost.insert(ip);
    }
    Err(ClusterError::Contention {
        endpoints: store.endpoints(),
        attempts: ATTEMPTS,
    })
}

/// Releases `sandbox`'s claims on network `network_id` (only `ip` when given), each only if
/// it is still that sandbox's (a compare on the revision it was read at). Returns how many
/// were released.
pub fn release_address(
    store: &dyn ClusterStore,
    network_id: &str,
    sandbox: &str,
    ip: Option<IpAddr>,
) -> Result<usize, ClusterError> {
    let mut released = 0;
    for kv in store.snapshot(&addresses_prefix(network_id))?.kvs {
        let Some(Key::Address { ip: held, .. }) = Key::parse(&kv.key) else {
            continue;
        };
        if ip.is_some_and(|ip| ip != held) {
            continue;
        }
        if AddressRecord::decode(&kv.value).is_ok_and(|r| r.sandbox == sandbox) {
            let txn = Txn::new()
                .when(Compare::ModRevision(kv.key.clone(), kv.mod_revision))
                .and_then(TxnOp::Delete(kv.key.clone()));
            if store.txn(txn)?.succeeded {
                released += 1;
            }
        }
    }
    Ok(released)
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

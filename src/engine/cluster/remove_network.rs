//! Removing an overlay network from the cluster: refused while any node has a sandbox on it;
//! else its record, id, VNI and address claims go in one transaction.

use std::collections::BTreeMap;

use crate::adapters::cluster::{ClusterStore, Compare, Txn, TxnOp};
use crate::core::cluster::keys::{addresses_prefix, Key};
use crate::core::driver::DriverData;
use crate::core::model::Network;

use super::networks::{self, id_key, network_endpoints_prefix, network_key, ATTEMPTS};
use super::ClusterError;

/// Removes overlay network `name`; returns the record removed.
///
/// Race-free against attachments: every address claim rewrites `network-ids/<id>`
/// ([`super::addresses::claim_address`]), and the removal holds only if that key is
/// unchanged since the endpoints were found absent; an endpoint registered after the removal
/// finds `network-ids/<id>` gone and fails.
pub fn remove_network(store: &dyn ClusterStore, name: &str) -> Result<Network, ClusterError> {
    for _ in 0..ATTEMPTS {
        let Some((net, net_rev)) = networks::by_name(store, name)? else {
            return Err(ClusterError::NoSuchNetwork(name.to_string()));
        };
        let id_rev = store
            .get(&id_key(&net.id))?
            .map(|kv| kv.mod_revision)
            .unwrap_or(0);
        let endpoints = store.snapshot(&network_endpoints_prefix(&net.id))?;
        let mut nodes: BTreeMap<String, usize> = BTreeMap::new();
        for kv in &endpoints.kvs {
            if let Some(Key::Endpoint { node, .. }) = Key::parse(&kv.key) {
                *nodes.entry(node).or_default() += 1;
            }
        }
        if !nodes.is_empty() {
            let nodes: Vec<String> = nodes.iter().map(|(n, c)| format!("{n} ({c})")).collect();
            return Err(ClusterError::InUse {
                name: name.to_string(),
                nodes: nodes.join(", "),
            });
        }
        let mut txn = Txn::new()
            .when(Compare::ModRevision(network_key(name), net_rev))
            .when(Compare::ModRevision(id_key(&net.id), id_rev))
            .and_then(TxnOp::Delete(network_key(name)))
            .and_then(TxnOp::Delete(id_key(&net.id)))
            .and_then(TxnOp::DeletePrefix(addresses_prefix(&net.id)));
        if let DriverData::Overlay(cfg) = &net.driver_data {
            // Only its own VNI claim: a record naming a VNI another network holds (written
            // by hand) must not free that one.
            let vni_key = Key::Vni(cfg.vni).render();
            let holder = store.get(&vni_key)?;
            if holder.is_some_and(|kv| kv.value == serde_json::to_vec(&net.id).unwrap_or_default())
            {
                txn = txn.and_then(TxnOp::Delete(vni_key));
            }
        }
        if store.txn(txn)?.succeeded {
            return Ok(net);
        }
    }
    Err(ClusterError::Contention {
        endpoints: store.endpoints(),
        attempts: ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::cluster::memory::MemoryStore;
    use crate::core::cluster::keys::PREFIX;
    use crate::engine::cluster::create_network::{create_network, tests::overlay};

    #[test]
    fn a_network_without_endpoints_goes_with_its_keys_and_claims() {
        let s = MemoryStore::new();
        let n = create_network(&s, overlay("ovl", "12.12.12.0/24", 0), 4789).unwrap();
        s.put(
            &Key::Address {
                network: n.id.clone(),
                ip: "12.12.12.2".parse().unwrap(),
            }
            .render(),
            b"{}",
            None,
        )
        .unwrap();
        assert_eq!(remove_network(&s, "ovl").unwrap().id, n.id);
        // Only the creations' guard stays: deleting it would let a creation that read it
        // absent before the last one pass its compare.
        let left: Vec<String> = s
            .snapshot(PREFIX)
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(left, vec![crate::core::cluster::keys::subnets_guard()]);
        assert!(matches!(
            remove_network(&s, "ovl"),
            Err(ClusterError::NoSuchNetwork(_))
        ));
    }

    #[test]
    fn a_network_with_endpoints_anywhere_stays_naming_the_nodes() {
        let s = MemoryStore::new();
        let n = create_network(&s, overlay("ovl", "12.12.12.0/24", 0), 4789).unwrap();
        for (node, sb) in [("h2", "a"), ("h2", "b"), ("h3", "c")] {
            let key = Key::Endpoint {
                network: n.id.clone(),
                node: node.into(),
                sandbox: sb.into(),
            };
            s.put(&key.render(), b"{}", None).unwrap();
        }
        assert_eq!(
            remove_network(&s, "ovl").unwrap_err().to_string(),
            "network \"ovl\" has sandboxes attached on h2 (2), h3 (1); remove or disconnect them first"
        );
        assert!(networks::by_name(&s, "ovl").unwrap().is_some());
    }
}

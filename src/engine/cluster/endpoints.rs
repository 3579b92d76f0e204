//! Registering this node's sandboxes on overlay networks: their endpoint records, under the
//! node's lease, so they vanish with the node.

use crate::adapters::cluster::{ClusterStore, Compare, StoreError, Txn, TxnOp};
use crate::core::cluster::keys::Key;
use crate::core::cluster::records::EndpointRecord;

use super::networks::{id_key, id_value};
use super::{ClusterError, Membership};

fn endpoint_key(network_id: &str, node: &str, sandbox: &str) -> String {
    Key::Endpoint {
        network: network_id.into(),
        node: node.into(),
        sandbox: sandbox.into(),
    }
    .render()
}

/// Writes `record` (this node's) under the membership's lease, if network `network_name`
/// (id `record.network`) still exists. Without a lease, or with the store unreachable, the
/// error names the store's endpoint.
pub fn register_endpoint(
    m: &Membership,
    network_name: &str,
    record: &EndpointRecord,
) -> Result<(), ClusterError> {
    let no_lease = || ClusterError::NoLease {
        endpoints: m.store.endpoints(),
    };
    let lease = m.lease().ok_or_else(no_lease)?;
    let txn = Txn::new()
        .when(Compare::Value(
            id_key(&record.network),
            id_value(network_name),
        ))
        .and_then(TxnOp::Put {
            key: endpoint_key(&record.network, &m.node, &record.sandbox),
            value: record.encode(),
            lease: Some(lease),
        });
    match m.store.txn(txn) {
        Ok(o) if o.succeeded => Ok(()),
        Ok(_) => Err(ClusterError::NoSuchNetwork(network_name.to_string())),
        Err(StoreError::LeaseNotFound(_)) => Err(no_lease()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes this node's endpoint record of `sandbox` on network `network_id` (nothing if
/// there is none).
pub fn unregister_endpoint(
    store: &dyn ClusterStore,
    node: &str,
    network_id: &str,
    sandbox: &str,
) -> Result<(), ClusterError> {
    store.delete(&endpoint_key(network_id, node, sandbox))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::cluster::memory::MemoryStore;
    use crate::engine::cluster::create_network::{create_network, tests::overlay};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn membership(
        store: Arc<MemoryStore>,
        lease: bool,
    ) -> (Membership, Option<crate::adapters::cluster::Lease>) {
        let held = lease.then(|| store.grant_lease(Duration::from_secs(5)).unwrap());
        let m = Membership {
            store,
            node: "h1".into(),
            vtep: "10.99.0.1".parse().unwrap(),
            vxlan_port: 4789,
            lease: Mutex::new(held.as_ref().map(|l| l.id())),
            claims: Mutex::new(None),
        };
        (m, held)
    }

    fn record(net: &str) -> EndpointRecord {
        EndpointRecord::new(
            "h1",
            net,
            "sb1",
            "pink",
            Some("12.12.12.2".parse().unwrap()),
            None,
            [2, 0x42, 12, 12, 12, 2],
        )
    }

    #[test]
    fn endpoints_live_under_the_lease_and_only_on_existing_networks() {
        let s = Arc::new(MemoryStore::new());
        let n = create_network(s.as_ref(), overlay("ovl", "12.12.12.0/24", 0), 4789).unwrap();
        let (m, lease) = membership(s.clone(), true);
        register_endpoint(&m, "ovl", &record(&n.id)).unwrap();
        let key = endpoint_key(&n.id, "h1", "sb1");
        let kv = s.get(&key).unwrap().unwrap();
        assert_eq!(kv.lease, lease.as_ref().map(|l| l.id()));
        assert_eq!(
            EndpointRecord::decode(&n.id, "h1", "sb1", &kv.value)
                .unwrap()
                .record,
            record(&n.id)
        );
        unregister_endpoint(s.as_ref(), "h1", &n.id, "sb1").unwrap();
        assert!(s.get(&key).unwrap().is_none());
        // A network removed meanwhile takes no endpoint.
        crate::engine::cluster::remove_network::remove_network(s.as_ref(), "ovl").unwrap();
        assert!(matches!(
            register_endpoint(&m, "ovl", &record(&n.id)),
            Err(ClusterError::NoSuchNetwork(_))
        ));
    }

    #[test]
    fn without_a_lease_or_a_store_the_error_names_the_endpoint() {
        let s = Arc::new(MemoryStore::new());
        let n = create_network(s.as_ref(), overlay("ovl", "12.12.12.0/24", 0), 4789).unwrap();
        let (m, _) = membership(s.clone(), false);
        let e = register_endpoint(&m, "ovl", &record(&n.id)).unwrap_err();
        assert_eq!(e.to_string(), format!("cluster store {} is unreachable or this host's lease expired: new overlay attachments fail until it is back", s.endpoints()));
        // A lease the store let expire.
        let (m, lease) = membership(s.clone(), true);
        drop(lease);
        s.advance(Duration::from_secs(6));
        assert!(matches!(
            register_endpoint(&m, "ovl", &record(&n.id)),
            Err(ClusterError::NoLease { .. })
        ));
        let (m, _lease) = membership(s.clone(), true);
        s.set_reachable(false);
        let e = register_endpoint(&m, "ovl", &record(&n.id)).unwrap_err();
        assert!(e.to_string().contains(&s.endpoints()), "{e}");
        assert!(
            matches!(e, ClusterError::Store(StoreError::Unavailable { .. })),
            "{e}"
        );
    }
}

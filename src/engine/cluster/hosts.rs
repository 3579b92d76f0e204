//! `weft cluster hosts`: the nodes the store knows, live or gone, with their endpoints.

use std::collections::BTreeMap;

use crate::adapters::cluster::ClusterStore;
use crate::core::agent::HostListing;
use crate::core::cluster::keys::{endpoints_prefix, hosts_prefix, Key, PREFIX};
use crate::core::cluster::records::{AddressRecord, HostRecord};

use super::ClusterError;

/// Every node with a host record (alive: its lease holds it), then every node that still
/// holds address claims without one (gone, its claims waiting out the quarantine), each with
/// how many endpoints it has registered.
pub fn hosts(store: &dyn ClusterStore) -> Result<Vec<HostListing>, ClusterError> {
    let mut endpoints: BTreeMap<String, usize> = BTreeMap::new();
    for kv in store.snapshot(&endpoints_prefix())?.kvs {
        if let Some(Key::Endpoint { node, .. }) = Key::parse(&kv.key) {
            *endpoints.entry(node).or_default() += 1;
        }
    }
    let mut out: BTreeMap<String, HostListing> = BTreeMap::new();
    for kv in store.snapshot(&hosts_prefix())?.kvs {
        let Some(Key::Host { node }) = Key::parse(&kv.key) else {
            continue;
        };
        let Ok(h) = HostRecord::decode(&node, &kv.value) else {
            continue;
        };
        out.insert(
            node.clone(),
            HostListing {
                endpoints: endpoints.get(&node).copied().unwrap_or(0),
                node,
                vtep: Some(h.vtep),
                vxlan_port: Some(h.vxlan_port),
                alive: true,
                started: Some(h.started),
            },
        );
    }
    for kv in store.snapshot(&format!("{PREFIX}addresses/"))?.kvs {
        if let Ok(c) = AddressRecord::decode(&kv.value) {
            out.entry(c.node.clone()).or_insert_with(|| HostListing {
                endpoints: endpoints.get(&c.node).copied().unwrap_or(0),
                node: c.node,
                vtep: None,
                vxlan_port: None,
                alive: false,
                started: None,
            });
        }
    }
    Ok(out.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::cluster::memory::MemoryStore;
    use std::time::Duration;

    #[test]
    fn live_hosts_count_endpoints_and_dead_ones_show_by_their_claims() {
        let s = MemoryStore::new();
        let lease = s.grant_lease(Duration::from_secs(5)).unwrap();
        let h = HostRecord {
            node: "h1".into(),
            vtep: "10.99.0.1".parse().unwrap(),
            vxlan_port: 4789,
            started: 7,
        };
        s.put(
            &Key::Host { node: "h1".into() }.render(),
            &h.encode(),
            Some(lease.id()),
        )
        .unwrap();
        for sb in ["a", "b"] {
            let k = Key::Endpoint {
                network: "n".into(),
                node: "h1".into(),
                sandbox: sb.into(),
            };
            s.put(&k.render(), b"{}", Some(lease.id())).unwrap();
        }
        let claim = AddressRecord {
            sandbox: "x".into(),
            node: "h2".into(),
        };
        let k = Key::Address {
            network: "n".into(),
            ip: "12.12.12.9".parse().unwrap(),
        };
        s.put(&k.render(), &claim.encode(), None).unwrap();
        let got = hosts(&s).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].node.as_str(),
                got[0].alive,
                got[0].endpoints,
                got[0].vtep
            ),
            ("h1", true, 2, Some(h.vtep))
        );
        assert_eq!(
            (got[1].node.as_str(), got[1].alive, got[1].endpoints),
            ("h2", false, 0)
        );
        drop(lease);
        s.advance(Duration::from_secs(6));
        let got = hosts(&s).unwrap();
        assert_eq!(
            got.iter()
                .map(|h| (h.node.as_str(), h.alive))
                .collect::<Vec<_>>(),
            [("h2", false)]
        );
    }
}

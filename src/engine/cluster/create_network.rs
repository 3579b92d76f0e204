//! Storing a new overlay network in the cluster: its record, its id and its VNI, claimed in
//! one transaction so that two hosts creating at once never share a name, an id or a VNI.

use std::collections::BTreeSet;

use crate::adapters::cluster::{ClusterStore, Compare, Txn, TxnOp};
use crate::core::cluster::alloc::{choose_vni, vni_free};
use crate::core::cluster::keys::Key;
use crate::core::driver::overlay::VNI_TO_ALLOCATE;
use crate::core::driver::{DriverData, DriverError};
use crate::core::model::{Network, Status};

use super::networks::{self, id_key, id_value, network_key, vnis_prefix, ATTEMPTS};
use super::ClusterError;

/// Stores `net` (driver overlay, subnets chosen, VNI [`VNI_TO_ALLOCATE`] when not given)
/// with the cluster's VXLAN port; a VNI is chosen when none was given, again after a lost
/// race. Returns the record as stored.
pub fn create_network(
    store: &dyn ClusterStore,
    mut net: Network,
    vxlan_port: u16,
) -> Result<Network, ClusterError> {
    let DriverData::Overlay(cfg) = &mut net.driver_data else {
        return Err(ClusterError::Corrupt {
            key: network_key(&net.name),
            detail: DriverError::MissingData {
                network: net.name.clone(),
                driver: "overlay",
            }
            .to_string(),
        });
    };
    cfg.port = vxlan_port;
    let wanted = cfg.vni;
    net.status = Status::Created;
    net.owner_pid = None;
    net.owner_start = None;
    for _ in 0..ATTEMPTS {
        let existing = networks::all(store)?;
        if existing.iter().any(|n| n.name == net.name) {
            return Err(ClusterError::NameTaken {
                name: net.name.clone(),
            });
        }
        check_overlap(&net, &existing)?;
        let vnis = store.snapshot(&vnis_prefix())?;
        let holders: Vec<(u32, String)> = vnis
            .kvs
            .iter()
            .filter_map(|kv| match Key::parse(&kv.key) {
                Some(Key::Vni(v)) => {
                    let id: String = serde_json::from_slice(&kv.value).unwrap_or_default();
                    let name = existing
                        .iter()
                        .find(|n| n.id == id)
                        .map(|n| n.name.clone())
                        .unwrap_or(id);
                    Some((v, name))
                }
                _ => None,
            })
            .collect();
        let taken: BTreeSet<u32> = holders.iter().map(|(v, _)| *v).collect();
        let vni = if wanted == VNI_TO_ALLOCATE {
            choose_vni(|v| taken.contains(&v))?
        } else {
            vni_free(wanted, |v| {
                holders
                    .iter()
                    .find(|(h, _)| *h == v)
                    .map(|(_, n)| n.clone())
            })?
        };
        if let DriverData::Overlay(cfg) = &mut net.driver_data {
            cfg.vni = vni;
        }
        let vni_key = Key::Vni(vni).render();
        let put = |key: String, value: Vec<u8>| TxnOp::Put {
            key,
            value,
            lease: None,
        };
        let txn = Txn::new()
            .when(Compare::Absent(network_key(&net.name)))
            .when(Compare::Absent(id_key(&net.id)))
            .when(Compare::Absent(vni_key.clone()))
            .and_then(put(network_key(&net.name), networks::encode(&net)))
            .and_then(put(id_key(&net.id), id_value(&net.name)))
            .and_then(put(
                vni_key,
                serde_json::to_vec(&net.id).unwrap_or_default(),
            ));
        if store.txn(txn)?.succeeded {
            return Ok(net);
        }
        // Another node took the name or the VNI meanwhile: the next snapshot says which.
    }
    Err(ClusterError::Contention {
        endpoints: store.endpoints(),
        attempts: ATTEMPTS,
    })
}

/// Refuses a subnet overlapping another overlay network's: they share every host's routing
/// table.
fn check_overlap(net: &Network, others: &[Network]) -> Result<(), ClusterError> {
    for s in &net.subnets {
        for o in others {
            for os in &o.subnets {
                if s.subnet.contains(&os.subnet.network())
                    || os.subnet.contains(&s.subnet.network())
                {
                    return Err(ClusterError::SubnetOverlap {
                        subnet: s.subnet,
                        other: o.name.clone(),
                        other_subnet: os.subnet,
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::adapters::cluster::memory::MemoryStore;
    use crate::core::driver::Driver as _;
    use crate::core::model::SubnetConfig;

    /// An overlay network record as the CLI sends it.
    pub(crate) fn overlay(name: &str, subnet: &str, vni: u32) -> Network {
        let mut n = Network::example();
        n.name = name.into();
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        n.id = format!("{hex:0<64}");
        n.driver = "overlay".into();
        // Through the driver's own check, as the CLI makes it (no struct literal: the
        // driver's data may grow fields).
        n.driver_data = crate::core::driver::overlay::Overlay
            .validate(&crate::core::driver::Request {
                network: name,
                vni: (vni != 0).then_some(u64::from(vni)),
                subnets: &[subnet.parse().unwrap()],
                ..Default::default()
            })
            .unwrap();
        let subnet: ipnet::IpNet = subnet.parse().unwrap();
        let cfg: SubnetConfig =
            crate::core::ipam::validate_subnet(subnet, None, None, &[]).unwrap();
        n.subnets = vec![cfg];
        n
    }

    fn vni_of(n: &Network) -> u32 {
        match &n.driver_data {
            DriverData::Overlay(c) => c.vni,
            DriverData::None => 0,
        }
    }

    #[test]
    fn a_network_gets_a_high_vni_and_the_cluster_port() {
        let s = MemoryStore::new();
        let n = create_network(&s, overlay("ovl", "12.12.12.0/24", 0), 8472).unwrap();
        let DriverData::Overlay(c) = &n.driver_data else {
            panic!("{n:?}")
        };
        assert_eq!((c.vni, c.port), (4096, 8472));
        assert_eq!(n.status, Status::Created);
        let stored = networks::by_name(&s, "ovl").unwrap().unwrap().0;
        assert_eq!(stored, n);
        let id = s.get(&id_key(&n.id)).unwrap().unwrap();
        assert_eq!(id.value, br#""ovl""#);
        let vni = s.get(&Key::Vni(4096).render()).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<String>(&vni.value).unwrap(), n.id);
        let m = create_network(&s, overlay("ovm", "12.12.13.0/24", 0), 8472).unwrap();
        assert_eq!(vni_of(&m), 4097);
    }

    #[test]
    fn a_taken_name_vni_or_subnet_is_refused_naming_the_holder() {
        let s = MemoryStore::new();
        create_network(&s, overlay("blue", "12.12.12.0/24", 42), 4789).unwrap();
        let e = create_network(&s, overlay("red", "12.12.13.0/24", 42), 4789).unwrap_err();
        assert_eq!(e.to_string(), "VNI 42 is already used by overlay network blue: choose another --vni, or leave it out to get a free one");
        let e = create_network(&s, overlay("blue", "12.12.14.0/24", 43), 4789).unwrap_err();
        assert_eq!(e.to_string(), "network \"blue\" already exists; choose another name or remove it with `weft network rm blue`");
        let e = create_network(&s, overlay("green", "12.12.0.0/16", 44), 4789).unwrap_err();
        assert_eq!(e.to_string(), "--subnet 12.12.0.0/16 overlaps 12.12.12.0/24 of overlay network \"blue\"; choose a subnet no other overlay network uses");
        // Nothing of the refused ones was stored.
        assert_eq!(networks::all(&s).unwrap().len(), 1);
        assert_eq!(s.snapshot(&vnis_prefix()).unwrap().kvs.len(), 1);
    }

    #[test]
    fn concurrent_creations_never_share_a_vni() {
        let s = std::sync::Arc::new(MemoryStore::new());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    create_network(
                        s.as_ref(),
                        overlay(&format!("n{i}"), &format!("10.{i}.0.0/24"), 0),
                        4789,
                    )
                    .unwrap()
                })
            })
            .collect();
        let vnis: BTreeSet<u32> = threads
            .into_iter()
            .map(|t| vni_of(&t.join().unwrap()))
            .collect();
        assert_eq!(vnis, (4096..4104).collect());
    }

    #[test]
    fn the_same_name_created_concurrently_is_stored_once() {
        let s = std::sync::Arc::new(MemoryStore::new());
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut n = overlay("same", "10.9.0.0/24", 0);
                    n.id = format!("{i:064x}");
                    create_network(s.as_ref(), n, 4789).is_ok()
                })
            })
            .collect();
        let won = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap().then_some(()))
            .count();
        assert_eq!(won, 1);
        assert_eq!(s.snapshot(&vnis_prefix()).unwrap().kvs.len(), 1);
    }
}

//! Storing a new overlay network in the cluster: its record, its id and its VNI, claimed in
//! one transaction so that two hosts creating at once never share a name, an id or a VNI,
//! and never store overlapping subnets: the transaction also rewrites
//! [`subnets_guard`] with a compare on the revision it had before the other networks were
//! read, so a network stored meanwhile makes it fail and the next round sees that network.
//!
//! A network given without an IPv4 subnet gets one here, from candidates the creating host
//! found free of its own routes, addresses, local networks and avoided ranges (the same
//! pools and rules as bridge networks, [`crate::core::ipam::choose_subnet`]): the first
//! that overlaps no overlay network of the cluster, chosen and stored in the same guarded
//! transaction. Other hosts' routes cannot be known from here; a host whose routes collide
//! refuses to build the network and says so in its status.

use std::collections::BTreeSet;

use crate::adapters::cluster::{ClusterStore, Compare, Txn, TxnOp};
use crate::core::cluster::alloc::{choose_vni, vni_free};
use crate::core::cluster::keys::{hosts_prefix, subnets_guard, underlays_prefix, Key};
use crate::core::cluster::records::UnderlayRecord;
use crate::core::driver::overlay::VNI_TO_ALLOCATE;
use crate::core::driver::{DriverData, DriverError};
use crate::core::model::{Network, Status, SubnetConfig};

use super::networks::{self, id_key, id_value, network_key, vnis_prefix, ATTEMPTS};
use super::ClusterError;

/// Stores `net` (driver overlay, subnets chosen, VNI [`VNI_TO_ALLOCATE`] when not given)
/// with the cluster's VXLAN port; a VNI is chosen when none was given, again after a lost
/// race. Returns the record as stored.
pub fn create_network(
    store: &dyn ClusterStore,
    net: Network,
    vxlan_port: u16,
) -> Result<Network, ClusterError> {
    create_network_choosing(store, net, vxlan_port, &[], true)
}

/// [`create_network`] for a network that may come without an IPv4 subnet: it then gets the
/// first of `candidates` (IPv4, in the creating host's order of preference) that overlaps
/// no overlay network of the cluster, chosen again in every round of the transaction.
///
/// The MTU must fit every live node's underlay (their underlay records): one that does not
/// is refused naming the node when the user gave it (`mtu_given`), else (the creating host's
/// own underlay minus the overhead) lowered to the largest every live node carries. A node
/// joining later with a smaller underlay refuses to build the network and says why.
pub fn create_network_choosing(
    store: &dyn ClusterStore,
    mut net: Network,
    vxlan_port: u16,
    candidates: &[SubnetConfig],
    mtu_given: bool,
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
    let choose = !net.subnets.iter().any(|s| s.subnet.addr().is_ipv4());
    let given = net.subnets.clone();
    for _ in 0..ATTEMPTS {
        // Read before the networks: any network stored after this read rewrote the guard,
        // and the compare below fails.
        let guard = store.get(&subnets_guard())?.map_or(0, |kv| kv.mod_revision);
        let existing = networks::all(store)?;
        if existing.iter().any(|n| n.name == net.name) {
            return Err(ClusterError::NameTaken {
                name: net.name.clone(),
            });
        }
        if choose {
            net.subnets = given.clone();
            net.subnets
                .push(choose_subnet(&net.name, candidates, &existing)?);
            net.subnets.sort_by_key(|s| s.subnet.addr().is_ipv6());
        }
        check_overlap(&net, &existing)?;
        fit_mtu(store, &mut net, mtu_given)?;
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
            .when(Compare::ModRevision(subnets_guard(), guard))
            .and_then(put(subnets_guard(), id_value(&net.name)))
            .and_then(put(network_key(&net.name), networks::encode(&net)))
            .and_then(put(id_key(&net.id), id_value(&net.name)))
            .and_then(put(
                vni_key,
                serde_json::to_vec(&net.id).unwrap_or_default(),
            ));
        if store.txn(txn)?.succeeded {
            return Ok(net);
        }
        // Another node took the name or the VNI, or stored a network, meanwhile: the next
        // round's reads say which.
    }
    Err(ClusterError::Contention {
        endpoints: store.endpoints(),
        attempts: ATTEMPTS,
    })
}

/// Fits `net`'s MTU to the live nodes' underlays (see [`create_network_choosing`]).
fn fit_mtu(store: &dyn ClusterStore, net: &mut Network, given: bool) -> Result<(), ClusterError> {
    let live: BTreeSet<String> = store
        .snapshot(&hosts_prefix())?
        .kvs
        .iter()
        .filter_map(|kv| match Key::parse(&kv.key) {
            Some(Key::Host { node }) => Some(node),
            _ => None,
        })
        .collect();
    let prefix = underlays_prefix();
    let tightest = store
        .snapshot(&prefix)?
        .kvs
        .iter()
        .filter_map(|kv| {
            let node = kv.key.strip_prefix(&prefix)?;
            if !live.contains(node) {
                return None;
            }
            let u = UnderlayRecord::decode(&kv.value).ok()?;
            Some((node.to_string(), u))
        })
        .min_by_key(|(_, u)| u.max_mtu());
    let Some((node, u)) = tightest else {
        return Ok(());
    };
    let max = u.max_mtu();
    if net.mtu <= max {
        return Ok(());
    }
    if given || max < MIN_MTU {
        return Err(ClusterError::MtuTooLargeForHost {
            network: net.name.clone(),
            mtu: net.mtu,
            node,
            underlay: u.ifname,
            underlay_mtu: u.mtu,
            overhead: u.overhead,
            max,
        });
    }
    net.mtu = max;
    Ok(())
}

/// The smallest MTU IPv4 allows: an underlay leaving less is refused rather than fitted.
const MIN_MTU: u32 = 68;

/// The first candidate (IPv4) overlapping no subnet of `others`.
fn choose_subnet(
    name: &str,
    candidates: &[SubnetConfig],
    others: &[Network],
) -> Result<SubnetConfig, ClusterError> {
    let v4: Vec<&SubnetConfig> = candidates
        .iter()
        .filter(|c| c.subnet.addr().is_ipv4())
        .collect();
    v4.iter()
        .find(|c| {
            !others.iter().flat_map(|o| &o.subnets).any(|os| {
                c.subnet.contains(&os.subnet.network()) || os.subnet.contains(&c.subnet.network())
            })
        })
        .map(|c| (*c).clone())
        .ok_or_else(|| ClusterError::NoFreeSubnet {
            network: name.to_string(),
            tried: v4
                .iter()
                .map(|c| c.subnet.to_string())
                .collect::<Vec<_>>()
                .join(", "),
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

    /// A memory store whose snapshots of the networks take a while: every creation reads
    /// the others' subnets, then writes, and two creations that overlap in time both read
    /// before either writes (what two hosts on a real network do now and then).
    struct SlowReads(MemoryStore);

    impl ClusterStore for SlowReads {
        fn endpoints(&self) -> String {
            self.0.endpoints()
        }
        fn get(
            &self,
            key: &str,
        ) -> Result<Option<crate::adapters::cluster::KeyValue>, crate::adapters::cluster::StoreError>
        {
            self.0.get(key)
        }
        fn snapshot(
            &self,
            prefix: &str,
        ) -> Result<crate::adapters::cluster::Snapshot, crate::adapters::cluster::StoreError>
        {
            let snap = self.0.snapshot(prefix);
            if prefix == crate::core::cluster::keys::networks_prefix() {
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
            snap
        }
        fn txn(
            &self,
            txn: Txn,
        ) -> Result<crate::adapters::cluster::TxnOutcome, crate::adapters::cluster::StoreError>
        {
            self.0.txn(txn)
        }
        fn grant_lease(
            &self,
            ttl: std::time::Duration,
        ) -> Result<crate::adapters::cluster::Lease, crate::adapters::cluster::StoreError> {
            self.0.grant_lease(ttl)
        }
        fn revoke_lease(
            &self,
            id: crate::adapters::cluster::LeaseId,
        ) -> Result<(), crate::adapters::cluster::StoreError> {
            self.0.revoke_lease(id)
        }
        fn watch(
            &self,
            prefix: &str,
            from: crate::adapters::cluster::Revision,
        ) -> Result<crate::adapters::cluster::Watch, crate::adapters::cluster::StoreError> {
            self.0.watch(prefix, from)
        }
        fn compact(
            &self,
            revision: crate::adapters::cluster::Revision,
        ) -> Result<(), crate::adapters::cluster::StoreError> {
            self.0.compact(revision)
        }
    }

    /// Whether two stored networks' subnets overlap.
    fn overlapping(nets: &[Network]) -> Option<(String, String)> {
        for (i, a) in nets.iter().enumerate() {
            for b in &nets[i + 1..] {
                for sa in &a.subnets {
                    for sb in &b.subnets {
                        if sa.subnet.contains(&sb.subnet.network())
                            || sb.subnet.contains(&sa.subnet.network())
                        {
                            return Some((a.name.clone(), b.name.clone()));
                        }
                    }
                }
            }
        }
        None
    }

    #[test]
    fn concurrent_overlapping_creations_never_both_get_in() {
        let s = std::sync::Arc::new(SlowReads(MemoryStore::new()));
        for round in 0..20u8 {
            let start = std::sync::Arc::new(std::sync::Barrier::new(2));
            // Two "hosts" at once: a /16 and a /24 inside it, each with a free VNI.
            let threads: Vec<_> = [
                (format!("a{round}"), format!("10.{round}.0.0/16")),
                (format!("b{round}"), format!("10.{round}.7.0/24")),
            ]
            .into_iter()
            .map(|(name, subnet)| {
                let (s, start) = (s.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    create_network(s.as_ref(), overlay(&name, &subnet, 0), 4789)
                })
            })
            .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let won = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(won, 1, "round {round}: {results:?}");
            let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
            assert!(
                matches!(lost, ClusterError::SubnetOverlap { .. }),
                "round {round}: {lost}"
            );
        }
        let all = networks::all(s.as_ref()).unwrap();
        assert_eq!(all.len(), 20);
        assert_eq!(overlapping(&all), None);
        // The guard names the last network stored, and is no key the control plane reads.
        assert!(s.get(&subnets_guard()).unwrap().is_some());
        assert_eq!(Key::parse(&subnets_guard()), None);
    }

    fn candidate(subnet: &str) -> SubnetConfig {
        crate::core::ipam::validate_subnet(subnet.parse().unwrap(), None, None, &[]).unwrap()
    }

    /// A network as the CLI sends it without `--subnet`.
    fn without_subnet(name: &str) -> Network {
        let mut n = overlay(name, "10.250.0.0/24", 0);
        n.subnets.clear();
        n
    }

    #[test]
    fn without_a_subnet_the_first_candidate_free_in_the_cluster_is_stored() {
        let s = MemoryStore::new();
        create_network(&s, overlay("blue", "172.18.0.0/16", 0), 4789).unwrap();
        let candidates = [candidate("172.18.0.0/16"), candidate("172.19.0.0/16")];
        let n =
            create_network_choosing(&s, without_subnet("red"), 4789, &candidates, false).unwrap();
        assert_eq!(n.subnets, vec![candidate("172.19.0.0/16")]);
        assert_eq!(networks::by_name(&s, "red").unwrap().unwrap().0, n);
        let e = create_network_choosing(&s, without_subnet("green"), 4789, &candidates, false)
            .unwrap_err();
        assert_eq!(e.to_string(), "no free subnet for overlay network \"green\": the candidates free on this host (172.18.0.0/16, 172.19.0.0/16) all overlap other overlay networks of the cluster; pass --subnet");
        // A given subnet is kept as given, whatever the candidates.
        let n = create_network_choosing(
            &s,
            overlay("pink", "172.20.0.0/24", 0),
            4789,
            &[candidate("172.21.0.0/16")],
            false,
        )
        .unwrap();
        assert_eq!(n.subnets, vec![candidate("172.20.0.0/24")]);
    }

    #[test]
    fn concurrent_creations_without_a_subnet_get_distinct_ones() {
        let s = std::sync::Arc::new(SlowReads(MemoryStore::new()));
        let candidates: Vec<SubnetConfig> = (0..16u8)
            .map(|i| candidate(&format!("172.{}.0.0/16", 16 + i)))
            .collect();
        let candidates = std::sync::Arc::new(candidates);
        let start = std::sync::Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let (s, c, start) = (s.clone(), candidates.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    create_network_choosing(
                        s.as_ref(),
                        without_subnet(&format!("n{i}")),
                        4789,
                        &c,
                        false,
                    )
                    .unwrap()
                })
            })
            .collect();
        let made: Vec<Network> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(overlapping(&made), None, "{made:?}");
        let chosen: BTreeSet<String> = made
            .iter()
            .map(|n| n.subnets[0].subnet.to_string())
            .collect();
        let expected: BTreeSet<String> = candidates[..6]
            .iter()
            .map(|c| c.subnet.to_string())
            .collect();
        assert_eq!(chosen, expected);
    }

    #[test]
    fn the_mtu_fits_every_live_node_s_underlay() {
        use crate::core::cluster::keys::underlay_key;
        let s = MemoryStore::new();
        let lease = s.grant_lease(std::time::Duration::from_secs(10)).unwrap();
        let join = |node: &str, ifname: &str, mtu: u32| {
            let h = crate::core::cluster::records::HostRecord {
                node: node.into(),
                vtep: "10.0.0.1".parse().unwrap(),
                vxlan_port: 4789,
                started: 0,
            };
            s.put(
                &Key::Host { node: node.into() }.render(),
                &h.encode(),
                Some(lease.id()),
            )
            .unwrap();
            let u = UnderlayRecord {
                ifname: ifname.into(),
                mtu,
                overhead: 50,
            };
            s.put(&underlay_key(node), &u.encode(), Some(lease.id()))
                .unwrap();
        };
        join("h1", "eth0", 1500);
        join("h3", "ul0", 1400);
        // A dead node's record (no host record) does not count.
        s.put(
            &underlay_key("gone"),
            &UnderlayRecord {
                ifname: "x".into(),
                mtu: 600,
                overhead: 50,
            }
            .encode(),
            None,
        )
        .unwrap();
        let mut net = overlay("ovl", "12.12.12.0/24", 0);
        net.mtu = 1450;
        // Given: refused, naming the node and the arithmetic; nothing stored.
        let e = create_network_choosing(&s, net.clone(), 4789, &[], true).unwrap_err();
        assert_eq!(e.to_string(), "--mtu 1450 is too large for overlay ovl: host h3's underlay ul0 has MTU 1400 and VXLAN needs 50 bytes, so at most 1350");
        assert!(networks::all(&s).unwrap().is_empty());
        // The default (the creating host's underlay minus 50): lowered to fit h3.
        let made = create_network_choosing(&s, net, 4789, &[], false).unwrap();
        assert_eq!(made.mtu, 1350);
        let mut small = overlay("small", "12.12.13.0/24", 0);
        small.mtu = 1300;
        assert_eq!(
            create_network_choosing(&s, small, 4789, &[], true)
                .unwrap()
                .mtu,
            1300
        );
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

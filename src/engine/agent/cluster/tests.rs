//! The cluster task's decisions, against the in-memory store and a recording host.

use super::*;
use crate::adapters::cluster::memory::MemoryStore;
use crate::core::cluster::orphans::LocalSandbox;
use crate::core::driver::overlay::OverlayConfig;

/// A host that records what it is asked and whose devices hold what was applied.
#[derive(Default)]
struct Recording {
    up: Vec<String>,
    down: Vec<String>,
    ops: Vec<Op>,
    local: Vec<String>,
    own: Vec<EndpointRecord>,
    /// Sandboxes of the local store beside those of `own`.
    sandboxes: BTreeSet<String>,
    /// Networks (by name) this host refuses to build, with the error it gives.
    refuse: BTreeMap<String, String>,
    /// Devices that exist, with the entries applied to them.
    devices: BTreeMap<String, BTreeSet<crate::core::cluster::entries::Entry>>,
    /// The firewall's member VTEPs (`None`: no table).
    vteps: Option<BTreeSet<IpAddr>>,
    /// Every change of them: (added, removed).
    vtep_changes: Vec<(Vec<IpAddr>, Vec<IpAddr>)>,
    /// How many times a device was read back.
    observed: usize,
    /// The underlay as it is now.
    underlay: Option<UnderlayRecord>,
}

impl Host for Recording {
    fn network_up(&mut self, net: &Network) -> Result<()> {
        if let Some(why) = self.refuse.get(&net.name) {
            anyhow::bail!("{why}");
        }
        self.up.push(net.name.clone());
        self.devices.entry(vxlan_name(&net.id)).or_default();
        if !self.local.contains(&net.id) {
            self.local.push(net.id.clone());
        }
        Ok(())
    }
    fn network_down(&mut self, id: &str) -> Result<()> {
        self.down.push(id.to_string());
        self.local.retain(|l| l != id);
        self.devices.remove(&vxlan_name(id));
        Ok(())
    }
    fn local_overlays(&mut self) -> Result<Vec<String>> {
        Ok(self.local.clone())
    }
    fn apply(&mut self, ops: &[Op]) -> Vec<String> {
        use crate::core::cluster::entries::Entry;
        let mut errors = Vec::new();
        for op in ops {
            self.ops.push(op.clone());
            let (dev, add, entry) = match op {
                Op::AddNeighbour {
                    ifname, ip, mac, ..
                } => (ifname, true, Entry::Neigh { ip: *ip, mac: *mac }),
                Op::DeleteNeighbour { ifname, ip, .. } => {
                    if let Some(d) = self.devices.get_mut(ifname) {
                        d.retain(|e| !matches!(e, Entry::Neigh { ip: i, .. } if i == ip));
                    }
                    continue;
                }
                Op::AddFdb { ifname, mac, dst } => (
                    ifname,
                    true,
                    Entry::Fdb {
                        mac: *mac,
                        dst: *dst,
                    },
                ),
                Op::DeleteFdb { ifname, mac, dst } => (
                    ifname,
                    false,
                    Entry::Fdb {
                        mac: *mac,
                        dst: *dst,
                    },
                ),
                _ => continue,
            };
            match self.devices.get_mut(dev) {
                Some(d) if add => {
                    if let Entry::Neigh { ip, .. } = entry {
                        d.retain(|e| !matches!(e, Entry::Neigh { ip: i, .. } if *i == ip));
                    }
                    d.insert(entry);
                }
                Some(d) => {
                    d.remove(&entry);
                }
                None => errors.push(format!("{dev}: no such device")),
            }
        }
        errors
    }
    fn observe_vxlan(&mut self, ifname: &str) -> Result<Option<VxlanObserved>> {
        use crate::core::cluster::entries::Entry;
        use crate::core::overlay_observed::{FdbEntry, OverlayNeighbour, NUD_PERMANENT};
        self.observed += 1;
        Ok(self.devices.get(ifname).map(|d| {
            let mut o = VxlanObserved::default();
            for e in d {
                match e {
                    Entry::Neigh { ip, mac } => o.neighbours.push(OverlayNeighbour {
                        ip: *ip,
                        mac: Some(*mac),
                        state: NUD_PERMANENT,
                    }),
                    Entry::Fdb { mac, dst } => {
                        o.fdb.push(FdbEntry {
                            mac: *mac,
                            dst: Some(*dst),
                            permanent: true,
                        });
                        o.bridge_macs.push(*mac);
                    }
                }
            }
            o
        }))
    }
    fn own_endpoints(&mut self, _node: &str) -> Result<Vec<EndpointRecord>> {
        Ok(self.own.clone())
    }
    fn local_sandboxes(&mut self) -> Result<BTreeMap<String, LocalSandbox>> {
        // `own` says which networks; the others may be on any (as an unreadable record).
        let mut all: BTreeMap<String, LocalSandbox> = self
            .sandboxes
            .iter()
            .map(|s| (s.clone(), LocalSandbox::Unreadable))
            .collect();
        for r in &self.own {
            match all
                .entry(r.sandbox.clone())
                .or_insert_with(|| LocalSandbox::On(BTreeSet::new()))
            {
                LocalSandbox::On(nets) => {
                    nets.insert(r.network.clone());
                }
                LocalSandbox::Unreadable => {}
            }
        }
        Ok(all)
    }
    fn vteps(&mut self) -> Result<Option<BTreeSet<IpAddr>>> {
        Ok(self.vteps.clone())
    }
    fn underlay(&mut self) -> Result<Option<UnderlayRecord>> {
        Ok(self.underlay.clone())
    }
    fn change_vteps(&mut self, add: &[IpAddr], remove: &[IpAddr]) -> Result<()> {
        let Some(v) = self.vteps.as_mut() else {
            anyhow::bail!("no such table");
        };
        for a in remove {
            v.remove(a);
        }
        v.extend(add.iter().copied());
        self.vtep_changes.push((add.to_vec(), remove.to_vec()));
        Ok(())
    }
}

const TTL: Duration = Duration::from_secs(10);

fn member(store: &Arc<MemoryStore>, node: &str, vtep: &str) -> Arc<Membership> {
    Arc::new(Membership {
        store: store.clone(),
        node: node.into(),
        vtep: vtep.parse().unwrap(),
        vxlan_port: 4789,
        lease: Mutex::new(None),
        claims: Mutex::new(None),
    })
}

fn control(store: &Arc<MemoryStore>, node: &str, vtep: &str) -> Control {
    Control::new(member(store, node, vtep), TTL, Default::default())
}

fn overlay(name: &str, id_byte: &str) -> Network {
    let mut net = Network::example();
    net.name = name.into();
    net.id = id_byte.repeat(32);
    net.driver = "overlay".into();
    net.driver_data = DriverData::Overlay(OverlayConfig::new(42, 4789));
    net
}

/// Puts endpoint `r` under `owner`'s lease, as `owner`'s agent registers it.
fn register(store: &MemoryStore, owner: &Control, r: &EndpointRecord) -> Revision {
    store.put(&ep_key(r), &r.encode(), owner.m.lease()).unwrap()
}

fn put_network(store: &MemoryStore, net: &Network) {
    let key = Key::Network {
        name: net.name.clone(),
    }
    .render();
    store
        .put(&key, &serde_json::to_vec(net).unwrap(), None)
        .unwrap();
}

/// An in-memory cluster store holding the overlay network `ovl`.
fn store_with_ovl() -> (Arc<MemoryStore>, Network) {
    let store = Arc::new(MemoryStore::new());
    let net = overlay("ovl", "ab");
    put_network(&store, &net);
    (store, net)
}

fn endpoint(net: &Network, node: &str, sb: &str, ip: &str, last: u8) -> EndpointRecord {
    EndpointRecord::new(
        node,
        &net.id,
        sb,
        sb,
        Some(ip.parse().unwrap()),
        None,
        [2, 0x42, 12, 0, 0, last],
    )
}

fn ep_key(r: &EndpointRecord) -> String {
    Key::Endpoint {
        network: r.network.clone(),
        node: r.node.clone(),
        sandbox: r.sandbox.clone(),
    }
    .render()
}

/// Drains a watch's changes into the control plane.
fn pump(c: &mut Control, w: &crate::adapters::cluster::Watch, host: &mut Recording) {
    let mut evs = Vec::new();
    while let Ok(ev) = w.try_recv() {
        evs.push(ev);
    }
    c.apply_events(&evs, host);
}

#[test]
fn a_node_name_held_by_a_live_host_with_another_vtep_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let mut a = control(&store, "h1", "10.0.0.1");
    a.join().unwrap();
    let mut b = control(&store, "h1", "10.0.0.2");
    let e = b.join().unwrap_err();
    assert_eq!(
        e.to_string(),
        "node name \"h1\" is taken: a live host registered it with VTEP 10.0.0.1 (this host advertises 10.0.0.2); give this host another --node"
    );
    assert!(!b.holds_lease());
    // The same host restarted (same VTEP) takes its record over, under its new lease.
    let mut again = control(&store, "h1", "10.0.0.1");
    again.join().unwrap();
    let kv = store
        .get(&Key::Host { node: "h1".into() }.render())
        .unwrap()
        .unwrap();
    assert_eq!(kv.lease, again.m.lease());
    // Once the live host is gone (its lease expired), the name is free.
    drop(a);
    drop(again);
    store.advance(TTL + Duration::from_secs(1));
    b.join().unwrap();
}

#[test]
fn sync_builds_networks_and_entries_then_events_change_them_incrementally() {
    let (store, net) = store_with_ovl();
    let mut h2 = control(&store, "h2", "10.0.0.2");
    h2.join().unwrap();
    let first = endpoint(&net, "h2", "sb1", "12.12.12.2", 2);
    register(&store, &h2, &first);

    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    // A network this host still mirrors but the cluster no longer has goes.
    host.local.push("cd".repeat(32));
    c.join().unwrap();
    let rev = c.resync(&mut host).unwrap();
    assert_eq!(host.up, ["ovl"]);
    assert_eq!(host.down, ["cd".repeat(32)]);
    let dev = vxlan_name(&net.id);
    // Neighbour, FDB, flood entry: written by the repair after the sync.
    assert_eq!(host.devices[&dev].len(), 3, "{:?}", host.ops);
    assert_eq!(c.view().desired(&net.id), host.devices[&dev]);

    let w = store.watch(keys::PREFIX, rev + 1).unwrap();
    host.ops.clear();
    // A second endpoint on the same node: its neighbour and FDB entry only, in one batch.
    let second = endpoint(&net, "h2", "sb2", "12.12.12.3", 3);
    register(&store, &h2, &second);
    pump(&mut c, &w, &mut host);
    assert_eq!(host.ops.len(), 2, "{:?}", host.ops);
    assert!(host.ops.iter().all(|o| matches!(o,
        Op::AddNeighbour { ifname, .. } | Op::AddFdb { ifname, .. } if *ifname == dev)));
    // Deleted: its entries go; the flood entry stays for the first.
    host.ops.clear();
    store.delete(&ep_key(&second)).unwrap();
    pump(&mut c, &w, &mut host);
    assert_eq!(host.ops.len(), 2, "{:?}", host.ops);
    assert_eq!(host.devices[&dev].len(), 3);
    // The node's lease expires: every entry of it goes.
    drop(h2);
    store.advance(TTL + Duration::from_secs(1));
    pump(&mut c, &w, &mut host);
    assert!(host.devices[&dev].is_empty(), "{:?}", host.devices);
    // The network is deleted from the cluster: removed here.
    store
        .delete(&Key::Network { name: "ovl".into() }.render())
        .unwrap();
    pump(&mut c, &w, &mut host);
    assert_eq!(host.down.last(), Some(&net.id));
}

#[test]
fn a_removal_is_written_back_only_while_wanted_and_never_reads_a_device_back() {
    use crate::core::cluster::entries::{Entry, Removed, FLOOD_MAC};
    let (store, net) = store_with_ovl();
    let mut h2 = control(&store, "h2", "10.0.0.2");
    h2.join().unwrap();
    let a = endpoint(&net, "h2", "sb1", "12.12.12.2", 2);
    let b = endpoint(&net, "h2", "sb2", "12.12.12.3", 3);
    for r in [&a, &b] {
        register(&store, &h2, r);
    }
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    c.join().unwrap();
    let rev = c.resync(&mut host).unwrap();
    let w = store.watch(keys::PREFIX, rev + 1).unwrap();
    let dev = vxlan_name(&net.id);
    let vtep: IpAddr = "10.0.0.2".parse().unwrap();
    let (ip_a, mac_a): (IpAddr, [u8; 6]) = ("12.12.12.2".parse().unwrap(), [2, 0x42, 12, 0, 0, 2]);
    let removals =
        |r: &[Removed]| -> Vec<(String, Removed)> { r.iter().map(|r| (dev.clone(), *r)).collect() };
    let a_all = [
        Removed::Neigh { ip: ip_a },
        Removed::Fdb {
            mac: mac_a,
            dst: vtep,
        },
        Removed::BridgeFdb { mac: mac_a },
    ];
    let reads = host.observed;
    host.ops.clear();

    // Someone else deletes sb1's neighbour and FDB entries and the node's flood entry: each
    // is written back, as the view has it (the bridge's half with its FDB entry, once).
    let d = host.devices.get_mut(&dev).unwrap();
    d.clear();
    let mut gone = removals(&a_all);
    gone.push((
        dev.clone(),
        Removed::Fdb {
            mac: FLOOD_MAC,
            dst: vtep,
        },
    ));
    assert_eq!(c.restore(&gone, &mut host), 3);
    assert_eq!(
        host.devices[&dev],
        [
            Entry::Neigh {
                ip: ip_a,
                mac: mac_a
            },
            Entry::Fdb {
                mac: mac_a,
                dst: vtep
            },
            Entry::Fdb {
                mac: FLOOD_MAC,
                dst: vtep
            },
        ]
        .into()
    );
    assert_eq!(host.ops.len(), 3, "{:?}", host.ops);

    // sb1 leaves: the task removes its entries, and the kernel's notifications of those
    // removals come back; wanted no more, they cost nothing: no write, no read-back.
    store.delete(&ep_key(&a)).unwrap();
    pump(&mut c, &w, &mut host);
    host.ops.clear();
    assert_eq!(c.restore(&removals(&a_all), &mut host), 0);
    assert!(host.ops.is_empty(), "{:?}", host.ops);
    // Removals on a device of no network of the cluster's: nothing either.
    let foreign = vec![("wv-ffffffffffff".to_string(), Removed::Neigh { ip: ip_a })];
    assert_eq!(c.restore(&foreign, &mut host), 0);
    assert_eq!(host.observed, reads, "no device was read back");

    // A write back that fails (the device went meanwhile) ends in a repair of that network.
    host.devices.remove(&dev);
    let flood = removals(&[Removed::Fdb {
        mac: FLOOD_MAC,
        dst: vtep,
    }]);
    assert_eq!(c.restore(&flood, &mut host), 1);
    assert!(host.observed > reads);
    assert_eq!(host.devices[&dev], c.view().desired(&net.id));
}

#[test]
fn a_changed_entry_reads_its_device_back_only_when_the_view_disagrees() {
    use crate::core::cluster::entries::Entry;
    let (store, net) = store_with_ovl();
    let mut h2 = control(&store, "h2", "10.0.0.2");
    h2.join().unwrap();
    register(&store, &h2, &endpoint(&net, "h2", "sb1", "12.12.12.2", 2));
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    let dev = vxlan_name(&net.id);
    let (ip, mac): (IpAddr, [u8; 6]) = ("12.12.12.2".parse().unwrap(), [2, 0x42, 12, 0, 0, 2]);
    let vtep: IpAddr = "10.0.0.2".parse().unwrap();
    let reads = host.observed;
    // The task's own writes, come back as notifications: one lookup each, no read-back.
    let own = vec![
        (dev.clone(), Entry::Neigh { ip, mac }),
        (dev.clone(), Entry::Fdb { mac, dst: vtep }),
    ];
    assert_eq!(c.check_changed(&own, &mut host), 0);
    assert_eq!(host.observed, reads);
    // A foreign device's: nothing.
    let rogue: IpAddr = "10.77.0.99".parse().unwrap();
    let foreign = vec![(
        "wv-ffffffffffff".to_string(),
        Entry::Fdb { mac, dst: rogue },
    )];
    assert_eq!(c.check_changed(&foreign, &mut host), 0);
    assert_eq!(host.observed, reads);
    // sb1's MAC sent to a rogue VTEP and its address answered with another MAC behind the
    // agent's back: the device is read back (once) and put right.
    let other = [2, 0x42, 0xc, 0xc, 0xc, 0xee];
    let d = host.devices.get_mut(&dev).unwrap();
    d.retain(|e| *e != Entry::Neigh { ip, mac } && *e != Entry::Fdb { mac, dst: vtep });
    d.insert(Entry::Neigh { ip, mac: other });
    d.insert(Entry::Fdb { mac, dst: rogue });
    let drift = vec![
        (dev.clone(), Entry::Neigh { ip, mac: other }),
        (dev.clone(), Entry::Fdb { mac, dst: rogue }),
    ];
    assert_eq!(c.check_changed(&drift, &mut host), 1);
    assert_eq!(host.observed, reads + 1);
    assert_eq!(host.devices[&dev], c.view().desired(&net.id));
}

#[test]
fn drift_hands_over_removals_bounded_or_one_read_back() {
    let d = Drift::default();
    let r = |n: usize| {
        vec![
            (
                "wv-0".to_string(),
                Removed::BridgeFdb {
                    mac: [2, 0, 0, 0, 0, 1]
                }
            );
            n
        ]
    };
    assert_eq!(d.take(), DriftWork::default());
    d.removed(r(2));
    d.removed(r(1));
    assert_eq!(
        d.take(),
        DriftWork {
            everything: false,
            removed: r(3),
            changed: Vec::new(),
            members: false,
            underlay: false,
        }
    );
    assert_eq!(d.take(), DriftWork::default());
    // The members asked for: handed over once.
    d.members();
    assert_eq!(
        d.take(),
        DriftWork {
            members: true,
            ..DriftWork::default()
        }
    );
    assert_eq!(d.take(), DriftWork::default());
    // A read-back asked for covers the removals (and the members).
    d.removed(r(1));
    d.members();
    d.repair_all();
    assert_eq!(
        d.take(),
        DriftWork {
            everything: true,
            ..DriftWork::default()
        }
    );
    // Past the bound: a read-back, nothing kept.
    d.removed(r(MAX_REMOVED));
    d.removed(r(1));
    assert_eq!(
        d.take(),
        DriftWork {
            everything: true,
            ..DriftWork::default()
        }
    );
    // Additions and changes: handed over beside the removals, bounded the same way.
    let added = |n: usize| {
        vec![
            (
                "wv-0".to_string(),
                crate::core::cluster::entries::Entry::Fdb {
                    mac: [2, 0, 0, 0, 0, 1],
                    dst: "10.0.0.2".parse().unwrap()
                }
            );
            n
        ]
    };
    d.changed(added(2));
    d.removed(r(1));
    assert_eq!(
        d.take(),
        DriftWork {
            everything: false,
            removed: r(1),
            changed: added(2),
            members: false,
            underlay: false,
        }
    );
    d.changed(added(MAX_REMOVED));
    d.changed(added(1));
    assert_eq!(
        d.take(),
        DriftWork {
            everything: true,
            ..DriftWork::default()
        }
    );
}

#[test]
fn drift_is_repaired_from_the_view_and_a_missing_device_is_rebuilt() {
    let (store, net) = store_with_ovl();
    let mut h2 = control(&store, "h2", "10.0.0.2");
    h2.join().unwrap();
    let r = endpoint(&net, "h2", "sb1", "12.12.12.2", 2);
    register(&store, &h2, &r);
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    let dev = vxlan_name(&net.id);
    let want = host.devices[&dev].clone();
    // Someone deletes entries and adds a foreign one.
    let d = host.devices.get_mut(&dev).unwrap();
    d.clear();
    d.insert(crate::core::cluster::entries::Entry::Fdb {
        mac: [2, 0, 0, 0, 0, 9],
        dst: "10.0.0.9".parse().unwrap(),
    });
    c.repair_all(&mut host);
    assert_eq!(host.devices[&dev], want);
    // The device is deleted: built again, entries and all.
    host.devices.remove(&dev);
    c.repair_all(&mut host);
    assert_eq!(host.up, ["ovl", "ovl"]);
    assert_eq!(host.devices[&dev], want);
}

#[test]
fn own_endpoints_are_registered_under_the_new_lease_and_stale_ones_expire_with_the_old() {
    let (store, net) = store_with_ovl();
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    let mine = endpoint(&net, "h1", "sb1", "12.12.12.2", 2);
    let stale = endpoint(&net, "h1", "gone", "12.12.12.9", 9);
    // An agent before this one registered both, then died.
    let mut before = control(&store, "h1", "10.0.0.1");
    before.join().unwrap();
    for r in [&mine, &stale] {
        register(&store, &before, r);
    }
    drop(before);
    host.own.push(mine.clone());
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    let kv = store.get(&ep_key(&mine)).unwrap().expect("registered");
    assert_eq!(kv.lease, c.m.lease());
    store.advance(TTL + Duration::from_secs(1));
    assert!(store.get(&ep_key(&stale)).unwrap().is_none());
    assert!(store.get(&ep_key(&mine)).unwrap().is_some());
}

#[test]
fn lease_loss_is_seen_and_a_new_join_registers_again() {
    let (store, net) = store_with_ovl();
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    let mine = endpoint(&net, "h1", "sb1", "12.12.12.2", 2);
    host.own.push(mine.clone());
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    // An outage longer than the TTL: the lease is lost and its keys go.
    store.set_reachable(false);
    store.advance(TTL + Duration::from_secs(1));
    assert!(c.lease_lost().is_some());
    assert!(c.join().is_err(), "etcd is still unreachable");
    store.set_reachable(true);
    assert!(store.get(&ep_key(&mine)).unwrap().is_none());
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    assert!(store.get(&ep_key(&mine)).unwrap().is_some());
    assert!(store
        .get(&Key::Host { node: "h1".into() }.render())
        .unwrap()
        .is_some());
}

#[test]
fn a_dead_node_s_addresses_are_released_after_the_quarantine_only() {
    let store = Arc::new(MemoryStore::new());
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    let claim = |node: &str| {
        AddressRecord {
            sandbox: "sb".into(),
            node: node.into(),
        }
        .encode()
    };
    let dead = Key::Address {
        network: "ab".repeat(32),
        ip: "12.12.12.7".parse().unwrap(),
    }
    .render();
    let alive = Key::Address {
        network: "ab".repeat(32),
        ip: "12.12.12.8".parse().unwrap(),
    }
    .render();
    store.put(&dead, &claim("h9"), None).unwrap();
    store.put(&alive, &claim("h1"), None).unwrap();
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    let period = quarantine_period(TTL).as_secs();
    assert_eq!(period, 60);
    assert_eq!(c.release_quarantined(1000).unwrap(), 0);
    assert_eq!(c.release_quarantined(1000 + period - 1).unwrap(), 0);
    assert_eq!(c.release_quarantined(1000 + period).unwrap(), 1);
    assert!(store.get(&dead).unwrap().is_none());
    assert!(store.get(&alive).unwrap().is_some());
    assert_eq!(quarantine_period(Duration::from_secs(30)).as_secs(), 180);
}

#[test]
fn network_records_are_checked_before_they_name_devices() {
    let net = overlay("ovl", "ab");
    let text = serde_json::to_vec(&net).unwrap();
    let got = decode_network("ovl", &text).unwrap();
    assert_eq!(got.bridge, overlay_bridge_name(&net.id));
    assert!(
        decode_network("other", &text).is_none(),
        "name differs from the key"
    );
    let mut bridge = net.clone();
    bridge.driver = "bridge".into();
    assert!(decode_network("ovl", &serde_json::to_vec(&bridge).unwrap()).is_none());
    let mut odd = net.clone();
    odd.id = "../../x".into();
    assert!(decode_network("ovl", &serde_json::to_vec(&odd).unwrap()).is_none());
    // A tunnel source in the cluster's record is ignored: each host uses its own.
    let mut sourced = net;
    sourced.driver_data = DriverData::Overlay(OverlayConfig {
        local: Some("10.0.0.9".parse().unwrap()),
        ..OverlayConfig::new(42, 4789)
    });
    let got = decode_network("ovl", &serde_json::to_vec(&sourced).unwrap()).unwrap();
    assert_eq!(
        got.driver_data,
        DriverData::Overlay(OverlayConfig::new(42, 4789))
    );
}

/// A recording host shared with the test while the task's loop owns it.
struct SharedHost(Arc<Mutex<Recording>>);

impl Host for SharedHost {
    fn network_up(&mut self, net: &Network) -> Result<()> {
        self.0.lock().unwrap().network_up(net)
    }
    fn network_down(&mut self, id: &str) -> Result<()> {
        self.0.lock().unwrap().network_down(id)
    }
    fn local_overlays(&mut self) -> Result<Vec<String>> {
        self.0.lock().unwrap().local_overlays()
    }
    fn apply(&mut self, ops: &[Op]) -> Vec<String> {
        self.0.lock().unwrap().apply(ops)
    }
    fn observe_vxlan(&mut self, ifname: &str) -> Result<Option<VxlanObserved>> {
        self.0.lock().unwrap().observe_vxlan(ifname)
    }
    fn own_endpoints(&mut self, node: &str) -> Result<Vec<EndpointRecord>> {
        self.0.lock().unwrap().own_endpoints(node)
    }
    fn local_sandboxes(&mut self) -> Result<BTreeMap<String, LocalSandbox>> {
        self.0.lock().unwrap().local_sandboxes()
    }
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn the_loop_follows_the_cluster_keeps_entries_through_an_outage_and_joins_again() {
    let (store, net) = store_with_ovl();
    let mut h2 = control(&store, "h2", "10.0.0.2");
    h2.join().unwrap();
    let status: Arc<Mutex<AgentStatus>> = Default::default();
    let c = Control::new(member(&store, "h1", "10.0.0.1"), TTL, status.clone());
    let host = Arc::new(Mutex::new(Recording::default()));
    let mine = endpoint(&net, "h1", "sb1", "12.12.12.1", 1);
    host.lock().unwrap().own.push(mine.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let soon = Arc::new(Drift::default());
    let task = {
        let (host, stop, soon) = (SharedHost(host.clone()), stop.clone(), soon.clone());
        std::thread::spawn(move || run(c, host, &stop, &soon))
    };
    let dev = vxlan_name(&net.id);
    let entries = |host: &Arc<Mutex<Recording>>| {
        host.lock()
            .unwrap()
            .devices
            .get(&dev)
            .map(|d| d.len())
            .unwrap_or(0)
    };
    // Joined, synchronised, own endpoint registered; a remote endpoint arrives by the watch.
    assert!(eventually(|| store.get(&ep_key(&mine)).unwrap().is_some()));
    let theirs = endpoint(&net, "h2", "sb2", "12.12.12.2", 2);
    register(&store, &h2, &theirs);
    assert!(eventually(|| entries(&host) == 3));
    assert!(status.lock().unwrap().cluster.connected);

    // An outage longer than the TTL: nothing is removed here meanwhile.
    store.set_reachable(false);
    store.advance(TTL + Duration::from_secs(1));
    assert!(eventually(|| !status.lock().unwrap().cluster.connected));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(entries(&host), 3, "entries are kept while etcd is away");
    // Back: h1 joins again under a new lease and registers its endpoint again (the old lease
    // took it); h2 joins again too (its agent's part, done by hand here).
    store.set_reachable(true);
    h2.join().unwrap();
    register(&store, &h2, &theirs);
    assert!(eventually(|| {
        store
            .get(&ep_key(&mine))
            .unwrap()
            .is_some_and(|kv| kv.lease.is_some() && status.lock().unwrap().cluster.lease.is_some())
    }));
    assert!(eventually(|| status.lock().unwrap().cluster.connected));
    assert!(eventually(|| entries(&host) == 3));

    // A repair request is served without waiting for the periodic one (far beyond
    // `eventually`'s 5 s): the device is read back and filled again.
    assert!(REPAIR_EVERY > Duration::from_secs(10));
    let before = host.lock().unwrap().observed;
    host.lock().unwrap().devices.get_mut(&dev).unwrap().clear();
    soon.repair_all();
    assert!(eventually(|| entries(&host) == 3));
    assert!(
        host.lock().unwrap().observed > before,
        "read back on request"
    );
    // So is a removal handed over, by writing back the entry alone (no read-back).
    let reads = host.lock().unwrap().observed;
    let neigh = crate::core::cluster::entries::Entry::Neigh {
        ip: "12.12.12.2".parse().unwrap(),
        mac: [2, 0x42, 12, 0, 0, 2],
    };
    host.lock()
        .unwrap()
        .devices
        .get_mut(&dev)
        .unwrap()
        .remove(&neigh);
    soon.removed(vec![(
        dev.clone(),
        Removed::Neigh {
            ip: "12.12.12.2".parse().unwrap(),
        },
    )]);
    assert!(eventually(|| entries(&host) == 3));
    let reads = host.lock().unwrap().observed - reads;
    assert!(
        reads <= 1,
        "read back {reads} times (the periodic repair at most)"
    );
    stop.store(true, Ordering::Relaxed);
    task.join().unwrap();
}

/// A sandbox id as weft makes them.
fn sandbox_id(n: u8) -> String {
    format!("{n:064x}")
}

fn claim_key(net: &Network, ip: &str) -> String {
    Key::Address {
        network: net.id.clone(),
        ip: ip.parse().unwrap(),
    }
    .render()
}

fn put_claim(store: &MemoryStore, net: &Network, ip: &str, sandbox: &str, node: &str) -> String {
    let key = claim_key(net, ip);
    let rec = AddressRecord {
        sandbox: sandbox.into(),
        node: node.into(),
    };
    store.put(&key, &rec.encode(), None).unwrap();
    key
}

#[test]
fn records_of_sandboxes_removed_while_etcd_was_away_are_deleted_after_the_grace() {
    let (store, net) = store_with_ovl();
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    c.join().unwrap();
    // sb1 still runs here; "gone" was removed while etcd was unreachable, so its claim and
    // its endpoint record (under the lease, which a short outage keeps) stayed; h2's
    // records are h2's business.
    let kept = endpoint(&net, "h1", &sandbox_id(1), "12.12.12.2", 2);
    let gone = endpoint(&net, "h1", &sandbox_id(9), "12.12.12.9", 9);
    // Written by hand under this node's name: no weft sandbox id, never judged.
    let manual = endpoint(&net, "h1", "manual", "12.12.12.8", 8);
    let theirs = endpoint(&net, "h2", "sbx", "12.12.12.5", 5);
    host.own.push(kept.clone());
    register(&store, &c, &gone);
    register(&store, &c, &manual);
    let manual_claim = put_claim(&store, &net, "12.12.12.8", "manual", "h1");
    let kept_claim = put_claim(&store, &net, "12.12.12.2", &sandbox_id(1), "h1");
    let gone_claim = put_claim(&store, &net, "12.12.12.9", &sandbox_id(9), "h1");
    let their_claim = put_claim(&store, &net, "12.12.12.5", "sbx", "h2");
    store.put(&ep_key(&theirs), &theirs.encode(), None).unwrap();
    // sb1 was disconnected from ovl2 while etcd was unreachable: it runs, but its records
    // on ovl2 belong to nothing here.
    let net2 = overlay("ovl2", "cd");
    put_network(&store, &net2);
    let off = endpoint(&net2, "h1", &sandbox_id(1), "12.12.13.2", 2);
    register(&store, &c, &off);
    let off_claim = put_claim(&store, &net2, "12.12.13.2", &sandbox_id(1), "h1");
    c.resync(&mut host).unwrap();
    let grace = ORPHAN_GRACE.as_secs();
    let t0 = 1_000_000;
    // Seen, not deleted at first sight (a sandbox being made claims before it is recorded
    // here), nor before the grace is over.
    assert_eq!(c.sweep_orphans(&mut host, t0).unwrap(), 0);
    assert_eq!(c.sweep_orphans(&mut host, t0 + grace - 1).unwrap(), 0);
    assert!(store.get(&gone_claim).unwrap().is_some());
    // The store unreachable at the due time: an error, nothing forgotten.
    store.set_reachable(false);
    assert!(c.sweep_orphans(&mut host, t0 + grace).is_err());
    store.set_reachable(true);
    assert_eq!(c.sweep_orphans(&mut host, t0 + grace + 1).unwrap(), 4);
    assert!(store.get(&gone_claim).unwrap().is_none());
    assert!(store.get(&ep_key(&gone)).unwrap().is_none());
    assert!(store.get(&off_claim).unwrap().is_none());
    assert!(store.get(&ep_key(&off)).unwrap().is_none());
    for kept in [
        kept_claim,
        their_claim,
        manual_claim,
        ep_key(&kept),
        ep_key(&theirs),
        ep_key(&manual),
    ] {
        assert!(store.get(&kept).unwrap().is_some(), "{kept} was deleted");
    }
    assert_eq!(c.sweep_orphans(&mut host, t0 + 10 * grace).unwrap(), 0);
}

#[test]
fn the_loop_deletes_orphans_it_learns_of_by_the_watch_only_after_the_grace() {
    let (store, net) = store_with_ovl();
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording::default();
    c.join().unwrap();
    let rev = c.resync(&mut host).unwrap();
    let w = store.watch(keys::PREFIX, rev + 1).unwrap();
    // A sandbox being made: claimed through the agent, not yet in the local store.
    let claim = put_claim(&store, &net, "12.12.12.7", &sandbox_id(7), "h1");
    pump(&mut c, &w, &mut host);
    assert_eq!(c.sweep_orphans(&mut host, 50).unwrap(), 0);
    // Recorded here before the grace ran out: never deleted.
    host.sandboxes.insert(sandbox_id(7));
    assert_eq!(
        c.sweep_orphans(&mut host, 50 + ORPHAN_GRACE.as_secs())
            .unwrap(),
        0
    );
    assert!(store.get(&claim).unwrap().is_some());
    // Removed while its release failed: deleted a grace after it is first seen orphaned.
    host.sandboxes.clear();
    assert_eq!(c.sweep_orphans(&mut host, 100).unwrap(), 0);
    assert_eq!(
        c.sweep_orphans(&mut host, 100 + ORPHAN_GRACE.as_secs())
            .unwrap(),
        1
    );
    pump(&mut c, &w, &mut host);
    assert!(store.get(&claim).unwrap().is_none());
}

#[test]
fn a_compacted_watch_resyncs_from_a_snapshot_and_converges() {
    let (store, net) = store_with_ovl();
    let mut h2 = control(&store, "h2", "10.0.0.2");
    h2.join().unwrap();
    let e1 = endpoint(&net, "h2", "sb1", "12.12.12.2", 2);
    let e2 = endpoint(&net, "h2", "sb2", "12.12.12.3", 3);
    for e in [&e1, &e2] {
        register(&store, &h2, e);
    }
    let c = control(&store, "h1", "10.0.0.1");
    let host = Arc::new(Mutex::new(Recording::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let soon = Arc::new(Drift::default());
    let task = {
        let (host, stop, soon) = (SharedHost(host.clone()), stop.clone(), soon.clone());
        std::thread::spawn(move || run(c, host, &stop, &soon))
    };
    let dev = vxlan_name(&net.id);
    let neighbours = |host: &Arc<Mutex<Recording>>| -> BTreeSet<std::net::IpAddr> {
        use crate::core::cluster::entries::Entry;
        host.lock()
            .unwrap()
            .devices
            .get(&dev)
            .map(|d| {
                d.iter()
                    .filter_map(|e| match e {
                        Entry::Neigh { ip, .. } => Some(*ip),
                        Entry::Fdb { .. } => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let ips = |v: &[&str]| -> BTreeSet<std::net::IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    };
    assert!(eventually(
        || neighbours(&host) == ips(&["12.12.12.2", "12.12.12.3"])
    ));
    // h1's watch is cut off; meanwhile e1 goes, e3 comes, a second network appears, and the
    // history h1's watch needs is compacted away.
    store.disconnect_watches();
    store.delete(&ep_key(&e1)).unwrap();
    let e3 = endpoint(&net, "h2", "sb3", "12.12.12.4", 4);
    register(&store, &h2, &e3);
    let other = overlay("ovm", "cd");
    put_network(&store, &other);
    let e4 = endpoint(&other, "h2", "sb4", "12.12.12.5", 5);
    let last = register(&store, &h2, &e4);
    store.compact(last).unwrap();
    store.reconnect_watches();
    // Read again from a snapshot: the deletion the watch never delivered is applied too.
    assert!(
        eventually(|| neighbours(&host) == ips(&["12.12.12.3", "12.12.12.4"])),
        "{:?}",
        neighbours(&host)
    );
    assert!(eventually(|| host
        .lock()
        .unwrap()
        .up
        .contains(&"ovm".to_string())));
    let desired = {
        let h = host.lock().unwrap();
        h.devices
            .get(&vxlan_name(&other.id))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(desired.len(), 3, "{desired:?}");
    // And it follows the live changes again.
    store.delete(&ep_key(&e2)).unwrap();
    assert!(eventually(|| neighbours(&host) == ips(&["12.12.12.4"])));
    stop.store(true, Ordering::Relaxed);
    task.join().unwrap();
}

#[test]
fn the_underlay_is_published_with_the_host_record_under_the_lease() {
    let store = Arc::new(MemoryStore::new());
    let mut c = control(&store, "h1", "10.0.0.1");
    let u = UnderlayRecord {
        ifname: "ul0".into(),
        mtu: 1400,
        overhead: 50,
    };
    c.set_underlay(Some(u.clone()));
    c.join().unwrap();
    let kv = store.get(&keys::underlay_key("h1")).unwrap().unwrap();
    assert_eq!(UnderlayRecord::decode(&kv.value).unwrap(), u);
    assert_eq!(kv.lease, c.m.lease());
    // Joined again (a restarted agent): rewritten under the new lease.
    let mut again = control(&store, "h1", "10.0.0.1");
    again.set_underlay(Some(u));
    again.join().unwrap();
    let kv = store.get(&keys::underlay_key("h1")).unwrap().unwrap();
    assert_eq!(kv.lease, again.m.lease());
}

#[test]
fn a_network_this_host_refuses_is_reported_once_and_never_half_built() {
    let (store, _) = store_with_ovl();
    let status: Arc<Mutex<AgentStatus>> = Default::default();
    let mut c = Control::new(member(&store, "h3", "10.0.0.3"), TTL, status.clone());
    let mut host = Recording::default();
    host.refuse
        .insert("ovl".into(), "its MTU is too large here".into());
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    // The periodic repair tries again (the underlay may have grown), and fails the same way.
    for _ in 0..3 {
        c.repair_all(&mut host);
    }
    assert_eq!(
        status.lock().unwrap().cluster.errors,
        vec!["building overlay network \"ovl\": its MTU is too large here".to_string()]
    );
    assert!(host.devices.is_empty() && host.local.is_empty());
    // Fixed (the underlay's MTU raised): the next repair builds it.
    host.refuse.clear();
    c.repair_all(&mut host);
    assert_eq!(host.up, ["ovl"]);
}

#[test]
fn the_underlay_s_mtu_changing_is_published_builds_what_fits_and_reports_what_no_longer_does() {
    let store = Arc::new(MemoryStore::new());
    let mut net = overlay("ovl", "ab");
    net.mtu = 1450;
    put_network(&store, &net);
    let status: Arc<Mutex<AgentStatus>> = Default::default();
    let mut c = Control::new(member(&store, "h3", "10.0.0.3"), TTL, status.clone());
    let ul = |mtu: u32| UnderlayRecord {
        ifname: "ul0".into(),
        mtu,
        overhead: 50,
    };
    c.set_underlay(Some(ul(1400)));
    let mut host = Recording {
        underlay: Some(ul(1400)),
        ..Recording::default()
    };
    let refusal = "building overlay network \"ovl\": its MTU is too large here";
    host.refuse
        .insert("ovl".into(), "its MTU is too large here".into());
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    assert_eq!(status.lock().unwrap().cluster.errors, [refusal]);
    let published = |store: &MemoryStore| {
        let kv = store.get(&keys::underlay_key("h3")).unwrap().unwrap();
        (UnderlayRecord::decode(&kv.value).unwrap().mtu, kv.lease)
    };
    assert_eq!(published(&store), (1400, c.m.lease()));
    // Unchanged: nothing read, nothing built.
    let observed = host.observed;
    c.follow_underlay(&mut host);
    assert_eq!(host.observed, observed);
    // Raised: published under the lease, the network built, the refusal gone.
    host.underlay = Some(ul(1500));
    host.refuse.clear();
    c.follow_underlay(&mut host);
    assert_eq!(host.up, ["ovl"]);
    assert_eq!(published(&store), (1500, c.m.lease()));
    assert!(status.lock().unwrap().cluster.errors.is_empty());
    // Lowered: left running, and reported.
    host.underlay = Some(ul(1400));
    c.follow_underlay(&mut host);
    assert!(host.down.is_empty() && host.devices.contains_key(&vxlan_name(&net.id)));
    assert_eq!(published(&store).0, 1400);
    assert_eq!(
        status.lock().unwrap().cluster.errors,
        ["overlay network \"ovl\" no longer fits host h3's underlay: its MTU is 1450, but ul0 has MTU 1400 now and VXLAN needs 50 bytes, so at most 1350; it keeps running here and drops larger packets; raise ul0's MTU to 1500, or recreate the network with --mtu 1350"]
    );
}

fn addrs(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn the_firewall_s_members_follow_the_live_hosts_one_element_at_a_time() {
    let (store, _) = store_with_ovl();
    let mut h2 = control(&store, "h2", "10.0.0.2");
    h2.join().unwrap();
    let mut h3 = control(&store, "h3", "fd00::3");
    h3.join().unwrap();
    let mut c = control(&store, "h1", "10.0.0.1");
    let mut host = Recording {
        vteps: Some(addrs(&["10.0.0.9"])),
        ..Recording::default()
    };
    // Before the cluster was read, the members the kernel has stay (etcd may be down).
    c.sync_vteps(&mut host, true);
    c.repair_all(&mut host);
    assert!(host.vtep_changes.is_empty());
    c.join().unwrap();
    let rev = c.resync(&mut host).unwrap();
    assert_eq!(
        host.vteps,
        Some(addrs(&["10.0.0.2", "fd00::3"])),
        "the other live hosts; the stale address gone"
    );
    // A host joins: one element added; one leaves: one removed — no re-set.
    let w = store.watch(keys::PREFIX, rev + 1).unwrap();
    host.vtep_changes.clear();
    let mut h4 = control(&store, "h4", "10.0.0.4");
    h4.join().unwrap();
    pump(&mut c, &w, &mut host);
    assert_eq!(
        host.vtep_changes,
        [(vec!["10.0.0.4".parse().unwrap()], vec![])]
    );
    drop(h3);
    store.advance(TTL + Duration::from_secs(1));
    pump(&mut c, &w, &mut host);
    assert_eq!(
        host.vtep_changes[1],
        (vec![], vec!["fd00::3".parse().unwrap()])
    );
    let live = addrs(&["10.0.0.2", "10.0.0.4"]);
    assert_eq!(host.vteps.as_ref(), Some(&live));
    // Emptied behind the agent's back: the repair reads the sets back and refills them.
    host.vteps = Some(BTreeSet::new());
    c.repair_all(&mut host);
    assert_eq!(host.vteps.as_ref(), Some(&live));
    // The table gone: pending until it is made again, then filled.
    host.vteps = None;
    c.repair_all(&mut host);
    assert!(c.vteps_pending());
    host.vteps = Some(BTreeSet::new());
    c.sync_vteps(&mut host, true);
    assert!(!c.vteps_pending());
    assert_eq!(host.vteps.as_ref(), Some(&live));
    drop((h2, h4));
}

#[test]
fn other_nodes_endpoints_go_to_dns_as_they_change() {
    use crate::core::dns::remote::{NameChange, RemoteNames};
    let (store, net) = store_with_ovl();
    let mut h2 = control(&store, "h2", "10.0.0.2");
    h2.join().unwrap();
    let pink2 = endpoint(&net, "h2", "pink2", "12.12.12.2", 2);
    register(&store, &h2, &pink2);
    let mut c = control(&store, "h1", "10.0.0.1");
    let sent: Arc<Mutex<Vec<NameChange>>> = Arc::default();
    let to = sent.clone();
    c.send_names_to(move |ch| to.lock().unwrap().push(ch));
    let mut host = Recording::default();
    c.join().unwrap();
    // This node's own endpoint is never sent (its local store has it).
    let own = endpoint(&net, "h1", "pink", "12.12.12.3", 3);
    register(&store, &c, &own);
    let rev = c.resync(&mut host).unwrap();
    assert_eq!(
        *sent.lock().unwrap(),
        [NameChange::Reset(vec![pink2.clone()])]
    );
    let w = store.watch(keys::PREFIX, rev + 1).unwrap();
    sent.lock().unwrap().clear();
    // One event, one change: no re-dump.
    let blue = endpoint(&net, "h2", "blue", "12.12.12.4", 4);
    register(&store, &h2, &blue);
    let mine = endpoint(&net, "h1", "mine", "12.12.12.5", 5);
    store.put(&ep_key(&mine), &mine.encode(), None).unwrap();
    pump(&mut c, &w, &mut host);
    assert_eq!(*sent.lock().unwrap(), [NameChange::Put(blue.clone())]);
    // A record turned to garbage counts as gone; a deleted one goes.
    store.put(&ep_key(&blue), b"{}", h2.m.lease()).unwrap();
    store.delete(&ep_key(&pink2)).unwrap();
    pump(&mut c, &w, &mut host);
    let mut names = RemoteNames::default();
    names.apply(NameChange::Reset(vec![pink2.clone(), blue.clone()]));
    for ch in sent.lock().unwrap().drain(..) {
        names.apply(ch);
    }
    assert!(names.is_empty(), "{names:?}");
    // The node gone (its lease expired): its endpoints go with it.
    register(&store, &h2, &blue);
    pump(&mut c, &w, &mut host);
    names.apply(sent.lock().unwrap().remove(0));
    assert_eq!(names.len(), 1);
    drop(h2);
    store.advance(TTL + Duration::from_secs(1));
    pump(&mut c, &w, &mut host);
    for ch in sent.lock().unwrap().drain(..) {
        names.apply(ch);
    }
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_sandbox_whose_claim_was_released_while_away_claims_it_again_or_stays_unregistered() {
    let (store, net) = store_with_ovl();
    let status: Arc<Mutex<AgentStatus>> = Default::default();
    let mut c = Control::new(member(&store, "h1", "10.0.0.1"), TTL, status.clone());
    // Two sandboxes run here; while this host was away (past the quarantine) their claims
    // were released, and h2 gave the second one's address to a sandbox of its own.
    let kept = endpoint(&net, "h1", &sandbox_id(1), "12.12.12.2", 2);
    let lost = endpoint(&net, "h1", &sandbox_id(2), "12.12.12.3", 3);
    let mut host = Recording {
        own: vec![kept.clone(), lost.clone()],
        ..Recording::default()
    };
    let theirs = put_claim(&store, &net, "12.12.12.3", &sandbox_id(7), "h2");
    c.join().unwrap();
    c.resync(&mut host).unwrap();
    let claim = store.get(&claim_key(&net, "12.12.12.2")).unwrap().unwrap();
    let claim = AddressRecord::decode(&claim.value).unwrap();
    assert_eq!(
        (claim.sandbox, claim.node),
        (sandbox_id(1), "h1".to_string())
    );
    assert!(store.get(&ep_key(&kept)).unwrap().is_some());
    // The taken address stays the other sandbox's, and no endpoint answers for it twice.
    let held = AddressRecord::decode(&store.get(&theirs).unwrap().unwrap().value).unwrap();
    assert_eq!(held.sandbox, sandbox_id(7));
    assert!(store.get(&ep_key(&lost)).unwrap().is_none());
    let errors = status.lock().unwrap().cluster.errors.clone();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("12.12.12.3") && e.contains(&sandbox_id(7))),
        "{errors:?}"
    );
}

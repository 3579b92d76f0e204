//! A node's view of the cluster's hosts and endpoints, kept current one watch event at a
//! time, and the entry changes each event implies for this node's VXLAN devices.
//!
//! Every entry is owned by the endpoints that call for it (a flood entry by every endpoint
//! of its node on the network); an entry is written when its first owner appears and removed
//! with its last. When two records claim one address or MAC (a stale record, or a forged
//! one), the lowest (network, node, sandbox) key wins, the same on every node, and the other
//! takes over if the winner goes: the outcome never depends on the order events arrived in.
//! An event costs time in the entries it touches, not in the size of the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::entries::{Change, Entry, Removed, FLOOD_MAC};
use super::keys::Key;
use super::records::{Endpoint, EndpointRecord, HostRecord};

/// An endpoint's identity: (network id, node, sandbox id).
pub type EndpointKey = (String, String, String);

/// What an entry is keyed by on a device: one neighbour per address, one FDB entry per MAC,
/// one flood entry per destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Neigh(IpAddr),
    Fdb([u8; 6]),
    Flood(IpAddr),
}

/// The cluster as one node sees it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    me: String,
    hosts: BTreeMap<String, HostRecord>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
    by_node: BTreeMap<String, BTreeSet<EndpointKey>>,
    claims: BTreeMap<(String, Slot), BTreeMap<EndpointKey, Entry>>,
    rejected: u64,
}

impl ClusterView {
    /// An empty view for node `me` (whose own endpoints need no entries).
    pub fn new(me: &str) -> Self {
        ClusterView {
            me: me.to_string(),
            hosts: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            by_node: BTreeMap::new(),
            claims: BTreeMap::new(),
            rejected: 0,
        }
    }

    /// Live nodes, by name.
    pub fn hosts(&self) -> &BTreeMap<String, HostRecord> {
        &self.hosts
    }

    /// How many endpoints the cluster has, on every node (constant time: the agent's status
    /// is published after every watch batch).
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// How many endpoints node `node` has (constant time, as [`Self::endpoint_count`]).
    pub fn endpoints_on(&self, node: &str) -> usize {
        self.by_node.get(node).map_or(0, BTreeSet::len)
    }

    /// Every endpoint of a network, on every node (for name resolution).
    pub fn endpoints_of<'a>(&'a self, network: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints
            .iter()
            .filter(move |((n, _, _), _)| n == network)
            .map(|(_, e)| e)
    }

    /// One endpoint, if the view has it (a record that did not decode is not had).
    pub fn endpoint(&self, key: &EndpointKey) -> Option<&Endpoint> {
        self.endpoints.get(key)
    }

    /// Every endpoint of the other nodes (for name resolution: this node's own are in its
    /// local store).
    pub fn remote_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(|((_, node, _), _)| *node != self.me)
            .map(|(_, e)| e)
    }

    /// Records refused since the view was made (undecodable, or not matching their key).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Applies one stored key's new value (`None`: deleted) and returns the entry changes.
    /// Keys outside the view's concern (networks, addresses, foreign keys) change nothing.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Vec<Change> {
        match Key::parse(key) {
            Some(Key::Host { node }) => self.apply_host(&node, value),
            Some(Key::Endpoint {
                network,
                node,
                sandbox,
            }) => self.apply_endpoint((network, node, sandbox), value),
            _ => Vec::new(),
        }
    }

    fn apply_host(&mut self, node: &str, value: Option<&[u8]>) -> Vec<Change> {
        let new = match value.map(|v| HostRecord::decode(node, v)) {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => {
                // An undecodable record counts as no record: its node's entries go rather
                // than point somewhere stale.
                self.rejected = self.rejected.saturating_add(1);
                None
            }
        };
        let keys: Vec<EndpointKey> = self
            .by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let old: Vec<_> = keys
            .iter()
            .map(|k| self.entries_of(k, self.endpoints.get(k)))
            .collect();
        match new {
            Some(h) => self.hosts.insert(node.to_string(), h),
            None => self.hosts.remove(node),
        };
        let mut out = Vec::new();
        for (k, old) in keys.iter().zip(old) {
            let new = self.entries_of(k, self.endpoints.get(k));
            out.extend(self.update(k, old, new));
        }
        out
    }

    fn apply_endpoint(&mut self, key: EndpointKey, value: Option<&[u8]>) -> Vec<Change> {
        let new = match value.map(|v| EndpointRecord::decode(&key.0, &key.1, &key.2, v)) {
            None => None,
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => {
                self.rejected = self.rejected.saturating_add(1);
                None
            }
        };
        let old_entries = self.entries_of(&key, self.endpoints.get(&key));
        let new_entries = self.entries_of(&key, new.as_ref());
        match new {
            Some(e) => {
                self.by_node
                    .entry(key.1.clone())
                    .or_default()
                    .insert(key.clone());
                self.endpoints.insert(key.clone(), e);
            }
            None => {
                self.endpoints.remove(&key);
                if let Some(set) = self.by_node.get_mut(&key.1) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_node.remove(&key.1);
                    }
                }
            }
        }
        self.update(&key, old_entries, new_entries)
    }

    /// The entries one endpoint calls for: none for this node's own, or while its node is
    /// not live (its tunnel endpoint is unknown).
    fn entries_of(&self, key: &EndpointKey, ep: Option<&Endpoint>) -> Vec<(Slot, Entry)> {
        let Some(ep) = ep else { return Vec::new() };
        if key.1 == self.me {
            return Vec::new();
        }
        let Some(host) = self.hosts.get(&key.1) else {
            return Vec::new();
        };
        // A node claiming our own VTEP would make us tunnel to ourselves.
        if self.hosts.get(&self.me).map(|h| h.vtep) == Some(host.vtep) {
            return Vec::new();
        }
        let mut v: Vec<(Slot, Entry)> = ep
            .addresses()
            .map(|ip| (Slot::Neigh(ip), Entry::Neigh { ip, mac: ep.mac }))
            .collect();
        v.push((
            Slot::Fdb(ep.mac),
            Entry::Fdb {
                mac: ep.mac,
                dst: host.vtep,
            },
        ));
        v.push((
            Slot::Flood(host.vtep),
            Entry::Fdb {
                mac: FLOOD_MAC,
                dst: host.vtep,
            },
        ));
        v
    }

    fn effective(&self, slot: &(String, Slot)) -> Option<Entry> {
        self.claims
            .get(slot)
            .and_then(|owners| owners.values().next().copied())
    }

    /// Moves `key`'s claims from `old` to `new` and returns how the effective entries changed.
    fn update(
        &mut self,
        key: &EndpointKey,
        old: Vec<(Slot, Entry)>,
        new: Vec<(Slot, Entry)>,
    ) -> Vec<Change> {
        let network = &key.0;
        let slots: BTreeSet<Slot> = old.iter().chain(new.iter()).map(|(s, _)| *s).collect();
        let before: Vec<Option<Entry>> = slots
            .iter()
            .map(|s| self.effective(&(network.clone(), *s)))
            .collect();
        for (slot, _) in &old {
            let k = (network.clone(), *slot);
            if let Some(owners) = self.claims.get_mut(&k) {
                owners.remove(key);
                if owners.is_empty() {
                    self.claims.remove(&k);
                }
            }
        }
        for (slot, entry) in &new {
            self.claims
                .entry((network.clone(), *slot))
                .or_default()
                .insert(key.clone(), *entry);
        }
        let mut out = Vec::new();
        for (slot, before) in slots.iter().zip(before) {
            let after = self.effective(&(network.clone(), *slot));
            if before == after {
                continue;
            }
            // Add before remove: an FDB entry moving to another VTEP briefly has both (the
            // kernel replicates to both), never none; a neighbour add replaces in place.
            if let Some(a) = after {
                out.push(Change::Add {
                    network: network.clone(),
                    entry: a,
                });
            }
            match (before, after) {
                (Some(Entry::Neigh { .. }), Some(Entry::Neigh { .. })) => {}
                (Some(b), _) => out.push(Change::Remove {
                    network: network.clone(),
                    entry: b,
                }),
                (None, _) => {}
            }
        }
        out
    }

    /// Every entry this node's device for `network` should hold now (for repair).
    pub fn desired(&self, network: &str) -> BTreeSet<Entry> {
        self.claims
            .iter()
            .filter(|((n, _), _)| n == network)
            .filter_map(|(_, owners)| owners.values().next().copied())
            .collect()
    }

    /// The entry to write back when `removed` went from `network`'s device, if the view
    /// still wants it there (someone else deleted it: drift); `None` when it no longer does
    /// (the agent's own removal, come back as a notification). One lookup, O(log n) in the
    /// cluster's entries: a leave costs no host a read of its devices.
    pub fn wanted(&self, network: &str, removed: &Removed) -> Option<Entry> {
        let slot = match *removed {
            Removed::Neigh { ip } => Slot::Neigh(ip),
            Removed::Fdb { mac, dst } if mac == FLOOD_MAC => Slot::Flood(dst),
            Removed::Fdb { mac, .. } | Removed::BridgeFdb { mac } => Slot::Fdb(mac),
        };
        let entry = self.effective(&(network.to_string(), slot))?;
        match (*removed, entry) {
            // The MAC is wanted at another VTEP: this was the old destination, removed after
            // the new one was written.
            (Removed::Fdb { dst, .. }, Entry::Fdb { dst: want, .. }) if dst != want => None,
            _ => Some(entry),
        }
    }

    /// Whether `seen`, an entry the kernel announced as added to or changed on `network`'s
    /// device, is exactly what the view wants there: the agent's own write, come back as a
    /// notification. `false` for anything else (someone else added or changed it: drift).
    /// One lookup, O(log n): the agent's writes cost no host a read of its devices.
    pub fn agrees(&self, network: &str, seen: &Entry) -> bool {
        let slot = match *seen {
            Entry::Neigh { ip, .. } => Slot::Neigh(ip),
            Entry::Fdb { mac, dst } if mac == FLOOD_MAC => Slot::Flood(dst),
            Entry::Fdb { mac, .. } => Slot::Fdb(mac),
        };
        self.effective(&(network.to_string(), slot)) == Some(*seen)
    }

    /// Networks that have at least one endpoint on some node.
    pub fn networks(&self) -> BTreeSet<String> {
        self.endpoints.keys().map(|(n, _, _)| n.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cluster::keys::Key;

    fn host(node: &str, vtep: &str) -> (String, Vec<u8>) {
        (
            Key::Host { node: node.into() }.render(),
            HostRecord {
                node: node.into(),
                vtep: vtep.parse().unwrap(),
                vxlan_port: 4789,
                started: 0,
            }
            .encode(),
        )
    }

    fn ep(net: &str, node: &str, sb: &str, ip: &str, last: u8) -> (String, Vec<u8>) {
        (
            Key::Endpoint {
                network: net.into(),
                node: node.into(),
                sandbox: sb.into(),
            }
            .render(),
            EndpointRecord::new(
                node,
                net,
                sb,
                sb,
                Some(ip.parse().unwrap()),
                None,
                [2, 0x42, 0, 0, 0, last],
            )
            .encode(),
        )
    }

    fn ep_key(net: &str, node: &str, sb: &str) -> String {
        Key::Endpoint {
            network: net.into(),
            node: node.into(),
            sandbox: sb.into(),
        }
        .render()
    }

    fn put(v: &mut ClusterView, kv: &(String, Vec<u8>)) -> Vec<Change> {
        v.apply(&kv.0, Some(&kv.1))
    }

    fn adds(c: &[Change]) -> usize {
        c.iter().filter(|c| matches!(c, Change::Add { .. })).count()
    }

    fn removes(c: &[Change]) -> usize {
        c.iter()
            .filter(|c| matches!(c, Change::Remove { .. }))
            .count()
    }

    #[test]
    fn a_remote_endpoint_brings_neighbour_fdb_and_flood() {
        let mut v = ClusterView::new("h1");
        assert!(put(&mut v, &host("h1", "10.0.0.1")).is_empty());
        assert!(put(&mut v, &host("h2", "10.0.0.2")).is_empty());
        let c = put(&mut v, &ep("n", "h2", "a", "12.0.0.2", 2));
        assert_eq!((adds(&c), removes(&c)), (3, 0));
        // A second sandbox on the same node shares the flood entry.
        let c = put(&mut v, &ep("n", "h2", "b", "12.0.0.3", 3));
        assert_eq!((adds(&c), removes(&c)), (2, 0));
        assert_eq!(v.desired("n").len(), 5);
        // Our own sandboxes need nothing.
        assert!(put(&mut v, &ep("n", "h1", "c", "12.0.0.4", 4)).is_empty());
        // The flood entry goes with the node's last sandbox.
        let c = v.apply(&ep_key("n", "h2", "a"), None);
        assert_eq!((adds(&c), removes(&c)), (0, 2));
        let c = v.apply(&ep_key("n", "h2", "b"), None);
        assert_eq!((adds(&c), removes(&c)), (0, 3));
        assert!(v.desired("n").is_empty());
    }

    #[test]
    fn endpoint_counts_follow_puts_and_deletes_per_node() {
        let mut v = ClusterView::new("h1");
        put(&mut v, &ep("n", "h2", "a", "12.0.0.2", 2));
        put(&mut v, &ep("m", "h2", "b", "12.0.1.2", 3));
        put(&mut v, &ep("n", "h1", "c", "12.0.0.4", 4));
        // A record written again is still one endpoint.
        put(&mut v, &ep("n", "h2", "a", "12.0.0.2", 2));
        assert_eq!(v.endpoint_count(), 3);
        assert_eq!((v.endpoints_on("h1"), v.endpoints_on("h2")), (1, 2));
        v.apply(&ep_key("n", "h2", "a"), None);
        v.apply(&ep_key("m", "h2", "b"), None);
        assert_eq!((v.endpoint_count(), v.endpoints_on("h2")), (1, 0));
        assert_eq!(v.endpoints_on("nobody"), 0);
    }

    #[test]
    fn order_of_host_and_endpoint_does_not_matter() {
        let mut a = ClusterView::new("h1");
        put(&mut a, &ep("n", "h2", "a", "12.0.0.2", 2));
        put(&mut a, &host("h2", "10.0.0.2"));
        let mut b = ClusterView::new("h1");
        put(&mut b, &host("h2", "10.0.0.2"));
        put(&mut b, &ep("n", "h2", "a", "12.0.0.2", 2));
        assert_eq!(a.desired("n"), b.desired("n"));
        assert_eq!(a.desired("n").len(), 3);
    }

    #[test]
    fn a_node_gone_takes_its_entries_and_a_new_vtep_moves_them() {
        let mut v = ClusterView::new("h1");
        put(&mut v, &host("h2", "10.0.0.2"));
        put(&mut v, &ep("n", "h2", "a", "12.0.0.2", 2));
        put(&mut v, &ep("m", "h2", "b", "13.0.0.2", 2));
        let c = put(&mut v, &host("h2", "10.0.0.22"));
        // FDB and flood move on both networks (add new, remove old); neighbours stay.
        assert_eq!((adds(&c), removes(&c)), (4, 4));
        assert!(matches!(c[0], Change::Add { .. }));
        let c = v.apply(&Key::Host { node: "h2".into() }.render(), None);
        assert_eq!((adds(&c), removes(&c)), (0, 6));
        assert!(v.desired("n").is_empty() && v.desired("m").is_empty());
    }

    #[test]
    fn two_claims_on_one_address_resolve_the_same_everywhere() {
        let first = ep("n", "h2", "a", "12.0.0.2", 2);
        let second = ep("n", "h3", "b", "12.0.0.2", 3);
        let mut x = ClusterView::new("h1");
        let mut y = ClusterView::new("h1");
        for v in [&mut x, &mut y] {
            put(v, &host("h2", "10.0.0.2"));
            put(v, &host("h3", "10.0.0.3"));
        }
        put(&mut x, &first);
        put(&mut x, &second);
        put(&mut y, &second);
        put(&mut y, &first);
        assert_eq!(x.desired("n"), y.desired("n"));
        // The winner (h2's) leaves: the other takes over the address.
        let c = x.apply(&first.0, None);
        assert!(c.contains(&Change::Add {
            network: "n".into(),
            entry: Entry::Neigh {
                ip: "12.0.0.2".parse().unwrap(),
                mac: [2, 0x42, 0, 0, 0, 3]
            }
        }));
    }

    #[test]
    fn garbage_records_are_counted_and_change_nothing_live() {
        let mut v = ClusterView::new("h1");
        put(&mut v, &host("h2", "10.0.0.2"));
        let k = ep_key("n", "h2", "a");
        assert!(v.apply(&k, Some(b"not json")).is_empty());
        assert!(v.apply("/weft/v1/endpoints/../x/y", Some(b"{}")).is_empty());
        assert_eq!(v.rejected(), 1);
        // A host record turning to garbage withdraws the host.
        put(&mut v, &ep("n", "h2", "a", "12.0.0.2", 2));
        let c = v.apply(&Key::Host { node: "h2".into() }.render(), Some(b"{}"));
        assert_eq!(removes(&c), 3);
    }

    #[test]
    fn a_removal_is_drift_only_while_the_view_still_wants_the_entry() {
        let mut v = ClusterView::new("h1");
        put(&mut v, &host("h2", "10.0.0.2"));
        put(&mut v, &host("h3", "10.0.0.3"));
        let a = ep("n", "h2", "a", "12.0.0.2", 2);
        put(&mut v, &a);
        put(&mut v, &ep("n", "h2", "b", "12.0.0.3", 3));
        let mac = [2, 0x42, 0, 0, 0, 2];
        let (vtep, other): (IpAddr, IpAddr) =
            ("10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let neigh = Removed::Neigh {
            ip: "12.0.0.2".parse().unwrap(),
        };
        let fdb = Removed::Fdb { mac, dst: vtep };
        let bridge = Removed::BridgeFdb { mac };
        let flood = Removed::Fdb {
            mac: FLOOD_MAC,
            dst: vtep,
        };
        // Someone else deleted wanted entries: each is to be written back, as the view has it.
        assert_eq!(
            v.wanted("n", &neigh),
            Some(Entry::Neigh {
                ip: "12.0.0.2".parse().unwrap(),
                mac
            })
        );
        assert_eq!(v.wanted("n", &fdb), Some(Entry::Fdb { mac, dst: vtep }));
        assert_eq!(v.wanted("n", &bridge), Some(Entry::Fdb { mac, dst: vtep }));
        assert_eq!(
            v.wanted("n", &flood),
            Some(Entry::Fdb {
                mac: FLOOD_MAC,
                dst: vtep
            })
        );
        // The same entries on another network, or to a VTEP not wanted: nothing.
        assert_eq!(v.wanted("m", &neigh), None);
        assert_eq!(v.wanted("n", &Removed::Fdb { mac, dst: other }), None);
        assert_eq!(
            v.wanted(
                "n",
                &Removed::Fdb {
                    mac: FLOOD_MAC,
                    dst: other
                }
            ),
            None
        );
        // Its node moved to another VTEP: the old destination's removal is the agent's own
        // (written after the new one), the bridge's half still wanted.
        put(&mut v, &host("h2", "10.0.0.22"));
        let moved = Entry::Fdb {
            mac,
            dst: "10.0.0.22".parse().unwrap(),
        };
        assert_eq!(v.wanted("n", &fdb), None);
        assert_eq!(v.wanted("n", &flood), None);
        assert_eq!(v.wanted("n", &bridge), Some(moved));
        // The sandbox left: its removals are the agent's own, wanted no more; the flood entry
        // stays wanted while its node has another sandbox on the network.
        v.apply(&a.0, None);
        assert_eq!(v.wanted("n", &neigh), None);
        assert_eq!(v.wanted("n", &fdb), None);
        assert_eq!(v.wanted("n", &bridge), None);
        let flood = Removed::Fdb {
            mac: FLOOD_MAC,
            dst: "10.0.0.22".parse().unwrap(),
        };
        assert!(v.wanted("n", &flood).is_some());
    }

    #[test]
    fn an_addition_agrees_only_when_it_is_exactly_the_wanted_entry() {
        let mut v = ClusterView::new("h1");
        put(&mut v, &host("h2", "10.0.0.2"));
        put(&mut v, &ep("n", "h2", "a", "12.0.0.2", 2));
        let mac = [2, 0x42, 0, 0, 0, 2];
        let ip: IpAddr = "12.0.0.2".parse().unwrap();
        let vtep: IpAddr = "10.0.0.2".parse().unwrap();
        let rogue: IpAddr = "10.77.0.99".parse().unwrap();
        // The agent's own writes.
        assert!(v.agrees("n", &Entry::Neigh { ip, mac }));
        assert!(v.agrees("n", &Entry::Fdb { mac, dst: vtep }));
        assert!(v.agrees(
            "n",
            &Entry::Fdb {
                mac: FLOOD_MAC,
                dst: vtep
            }
        ));
        // Changed behind its back: another MAC for the address, the MAC to another VTEP, a
        // flood entry to a stranger, an entry of no sandbox, another network.
        let other = [2, 0x42, 0xc, 0xc, 0xc, 0xee];
        assert!(!v.agrees("n", &Entry::Neigh { ip, mac: other }));
        assert!(!v.agrees("n", &Entry::Fdb { mac, dst: rogue }));
        assert!(!v.agrees(
            "n",
            &Entry::Fdb {
                mac: FLOOD_MAC,
                dst: rogue
            }
        ));
        assert!(!v.agrees(
            "n",
            &Entry::Fdb {
                mac: other,
                dst: vtep
            }
        ));
        assert!(!v.agrees("m", &Entry::Neigh { ip, mac }));
    }

    #[test]
    fn a_node_claiming_our_vtep_gets_no_tunnel() {
        let mut v = ClusterView::new("h1");
        put(&mut v, &host("h1", "10.0.0.1"));
        put(&mut v, &host("h2", "10.0.0.1"));
        assert!(put(&mut v, &ep("n", "h2", "a", "12.0.0.2", 2)).is_empty());
    }
}

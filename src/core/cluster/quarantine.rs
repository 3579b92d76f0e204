//! When a dead node's addresses may be handed out again.
//!
//! Address claims carry no lease: a node cut off from etcd for longer than its lease TTL
//! loses its host and endpoint records, but its sandboxes still use their addresses, and it
//! registers them again when it is back. Freeing a claim the moment the lease ends would let
//! another node hand the same address out meanwhile. So survivors note when a node left and
//! free its claims only after a quarantine, unless it came back first.

use std::collections::{BTreeMap, BTreeSet};

use super::records::AddressRecord;

/// Nodes that left, and since when.
#[derive(Debug, Clone, Default)]
pub struct Quarantine {
    gone: BTreeMap<String, u64>,
    period: u64,
}

impl Quarantine {
    /// A quarantine of `period` seconds.
    pub fn new(period: u64) -> Self {
        Quarantine {
            gone: BTreeMap::new(),
            period,
        }
    }

    /// `node`'s host record went away at `now` (or was first seen missing then: a survivor
    /// that starts after a node died counts from its own start, never from nothing).
    pub fn host_gone(&mut self, node: &str, now: u64) {
        self.gone.entry(node.to_string()).or_insert(now);
    }

    /// `node` registered again: its claims are its own again.
    pub fn host_back(&mut self, node: &str) {
        self.gone.remove(node);
    }

    /// Nodes whose quarantine is over at `now`.
    pub fn due(&self, now: u64) -> BTreeSet<String> {
        self.gone
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) >= self.period)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Forgets a node whose claims were all freed.
    pub fn done(&mut self, node: &str) {
        self.gone.remove(node);
    }

    /// Nodes that hold claims (`holders`, each once) but have no host record, not yet in
    /// quarantine: call at start and after a resynchronisation with what the store holds.
    pub fn notice_missing<'a>(
        &mut self,
        holders: impl Iterator<Item = &'a str>,
        live: &BTreeSet<String>,
        now: u64,
    ) {
        for node in holders {
            if !live.contains(node) {
                self.host_gone(node, now);
            }
        }
    }
}

/// The claims to free: those of nodes whose quarantine is over and that are still not live.
/// Each comes with the revision it was read at, so that the delete is a compare-and-delete
/// and a claim taken again meanwhile is never freed.
pub fn releasable<'a, K: Clone + 'a>(
    claims: impl Iterator<Item = (&'a K, &'a AddressRecord, i64)>,
    live: &BTreeSet<String>,
    due: &BTreeSet<String>,
) -> Vec<(K, i64)> {
    claims
        .filter(|(_, c, _)| due.contains(&c.node) && !live.contains(&c.node))
        .map(|(k, _, rev)| (k.clone(), rev))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(node: &str) -> AddressRecord {
        AddressRecord {
            sandbox: "s".into(),
            node: node.into(),
        }
    }

    #[test]
    fn claims_are_freed_only_after_the_period_and_never_for_a_returning_node() {
        let mut q = Quarantine::new(60);
        q.host_gone("h2", 100);
        // A second notice does not restart the clock.
        q.host_gone("h2", 150);
        assert!(q.due(159).is_empty());
        assert_eq!(q.due(160), ["h2".to_string()].into());
        q.host_back("h2");
        assert!(q.due(1000).is_empty());
    }

    #[test]
    fn only_due_dead_nodes_claims_are_released() {
        let claims = [
            ("k1".to_string(), claim("h2"), 7),
            ("k2".to_string(), claim("h3"), 8),
            ("k3".to_string(), claim("h4"), 9),
        ];
        let live: BTreeSet<String> = ["h4".to_string()].into();
        let due: BTreeSet<String> = ["h2".to_string(), "h4".to_string()].into();
        let out = releasable(claims.iter().map(|(k, c, r)| (k, c, *r)), &live, &due);
        assert_eq!(out, vec![("k1".to_string(), 7)]);
    }

    #[test]
    fn missing_nodes_are_noticed_from_their_claims() {
        let mut q = Quarantine::new(10);
        let live: BTreeSet<String> = ["h1".to_string()].into();
        q.notice_missing(["h2", "h1"].into_iter(), &live, 5);
        assert_eq!(q.due(15), ["h2".to_string()].into());
    }
}

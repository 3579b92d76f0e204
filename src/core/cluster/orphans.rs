//! When this node's own records in the cluster, left behind by sandboxes that no longer
//! exist here, may be deleted.
//!
//! A sandbox removed while etcd is unreachable cannot release its address claim or delete
//! its endpoint record; nothing would ever do it later (a claim has no lease, and an endpoint
//! record lives as long as the node's lease, which a short outage keeps). So the agent
//! compares, level-triggered, its node's claims and endpoints in the cluster with the
//! sandboxes of its local store, and deletes the orphans. Not at first sight: a sandbox being
//! made claims its address before its local record is written, so a record must stay orphaned,
//! unchanged (same revision), for a grace period before it goes.

use std::collections::{BTreeMap, BTreeSet};

/// Whether `sandbox` is an id weft gives sandboxes (64 lowercase hex digits). Only records of
/// such ids are ever deleted as orphans: a record naming anything else was not written by
/// this node's weft (by hand, by a test, by another tool) and is not the agent's to judge.
pub fn weft_made(sandbox: &str) -> bool {
    sandbox.len() == 64
        && sandbox
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What the local store says of one sandbox, for judging its records in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalSandbox {
    /// Its record cannot be read: it may be on any network, none of its records is judged.
    Unreadable,
    /// The ids of the networks it has an endpoint on (one being attached included).
    On(BTreeSet<String>),
}

/// Whether this node's record (a claim or an endpoint) of `sandbox` on `network` has nothing
/// here to belong to: the sandbox is gone, or it is no longer on that network (disconnected
/// while etcd was unreachable). Only weft-made ids are judged.
pub fn orphaned(local: &BTreeMap<String, LocalSandbox>, sandbox: &str, network: &str) -> bool {
    weft_made(sandbox)
        && match local.get(sandbox) {
            None => true,
            Some(LocalSandbox::Unreadable) => false,
            Some(LocalSandbox::On(networks)) => !networks.contains(network),
        }
}

/// Records seen orphaned, with the revision they had and when they were first seen so.
#[derive(Debug, Clone, Default)]
pub struct Orphans {
    seen: BTreeMap<String, (i64, u64)>,
    grace: u64,
}

impl Orphans {
    /// A tracker deleting records orphaned for `grace` seconds.
    pub fn new(grace: u64) -> Self {
        Orphans {
            seen: BTreeMap::new(),
            grace,
        }
    }

    /// Takes the records orphaned now (key and revision) at `now` (seconds): returns those
    /// seen orphaned with the same revision for at least the grace period; forgets the ones no
    /// longer orphaned. A record rewritten meanwhile (another revision) starts over.
    pub fn due(
        &mut self,
        orphaned: impl IntoIterator<Item = (String, i64)>,
        now: u64,
    ) -> Vec<(String, i64)> {
        let mut next = BTreeMap::new();
        let mut due = Vec::new();
        for (key, rev) in orphaned {
            let since = match self.seen.get(&key) {
                Some((r, since)) if *r == rev => *since,
                _ => now,
            };
            if now.saturating_sub(since) >= self.grace {
                due.push((key.clone(), rev));
            }
            next.insert(key, (rev, since));
        }
        self.seen = next;
        due
    }

    /// `key` was deleted (or found gone): forget it.
    pub fn done(&mut self, key: &str) {
        self.seen.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str, rev: i64) -> (String, i64) {
        (s.to_string(), rev)
    }

    #[test]
    fn a_record_goes_only_after_staying_orphaned_and_unchanged_for_the_grace() {
        let mut o = Orphans::new(10);
        assert!(o.due([k("a", 5), k("b", 6)], 100).is_empty());
        assert!(o.due([k("a", 5), k("b", 6)], 109).is_empty());
        // b was rewritten (a sandbox of that id attached again): its grace starts over.
        assert_eq!(o.due([k("a", 5), k("b", 8)], 110), vec![k("a", 5)]);
        o.done("a");
        assert!(o.due([k("b", 8)], 119).is_empty());
        // b's sandbox appeared locally: b is forgotten, and starts over if orphaned again.
        assert!(o.due([], 120).is_empty());
        assert!(o.due([k("b", 8)], 121).is_empty());
        assert_eq!(o.due([k("b", 8)], 131), vec![k("b", 8)]);
    }

    #[test]
    fn only_weft_sandbox_ids_are_judged() {
        assert!(weft_made(&"0123456789abcdef".repeat(4)));
        for other in [
            "sb1",
            "",
            &"0123456789ABCDEF".repeat(4),
            &"a".repeat(63),
            &"g".repeat(64),
        ] {
            assert!(!weft_made(other), "{other}");
        }
    }

    #[test]
    fn a_record_is_orphaned_when_its_sandbox_is_gone_or_off_its_network() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        let local = BTreeMap::from([
            (
                a.clone(),
                LocalSandbox::On(BTreeSet::from(["n1".to_string()])),
            ),
            (b.clone(), LocalSandbox::Unreadable),
        ]);
        assert!(!orphaned(&local, &a, "n1"));
        assert!(orphaned(&local, &a, "n2"), "disconnected from n2");
        assert!(!orphaned(&local, &b, "n2"), "unreadable: kept");
        assert!(orphaned(&local, &c, "n1"), "gone");
        assert!(!orphaned(&local, "sb1", "n1"), "not weft's");
    }

    #[test]
    fn no_grace_deletes_at_once() {
        let mut o = Orphans::new(0);
        assert_eq!(o.due([k("a", 1)], 0), vec![k("a", 1)]);
    }
}

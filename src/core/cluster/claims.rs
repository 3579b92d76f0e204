//! The cluster's address claims as one node sees them, indexed by the node holding each, so
//! that what the agent does with them periodically costs as much as the nodes concerned
//! hold: its own claims for the orphan sweep, a dead node's for the quarantine, never a walk
//! of every claim in the cluster.

use std::collections::{BTreeMap, BTreeSet};

use super::records::AddressRecord;

/// The claims, by key and by node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// Key → (claim, mod revision).
    by_key: BTreeMap<String, (AddressRecord, i64)>,
    /// Node → the keys of its claims.
    by_node: BTreeMap<String, BTreeSet<String>>,
}

impl Claims {
    /// Records claim `c` under `key` at revision `rev` (replacing what the key held).
    pub fn insert(&mut self, key: String, c: AddressRecord, rev: i64) {
        self.remove(&key);
        self.by_node
            .entry(c.node.clone())
            .or_default()
            .insert(key.clone());
        self.by_key.insert(key, (c, rev));
    }

    /// Forgets the claim under `key`, if any.
    pub fn remove(&mut self, key: &str) {
        let Some((old, _)) = self.by_key.remove(key) else {
            return;
        };
        if let Some(keys) = self.by_node.get_mut(&old.node) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_node.remove(&old.node);
            }
        }
    }

    /// The nodes holding at least one claim.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.by_node.keys().map(String::as_str)
    }

    /// `node`'s claims: key, claim, revision.
    pub fn of_node<'a>(
        &'a self,
        node: &str,
    ) -> impl Iterator<Item = (&'a String, &'a AddressRecord, i64)> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| self.by_key.get(k).map(|(c, rev)| (k, c, *rev)))
    }

    /// The claims whose keys start with `prefix` (a network's: `addresses/<id>/`), in key
    /// order: key, claim, revision.
    pub fn under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a AddressRecord, i64)> + 'a {
        self.by_key
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, (c, rev))| (k, c, *rev))
    }

    /// How many claims there are.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(node: &str, sandbox: &str) -> AddressRecord {
        AddressRecord {
            sandbox: sandbox.into(),
            node: node.into(),
        }
    }

    #[test]
    fn claims_are_found_by_node_and_follow_changes_of_holder() {
        let mut c = Claims::default();
        c.insert("k1".into(), claim("h1", "a"), 1);
        c.insert("k2".into(), claim("h2", "b"), 2);
        c.insert("k3".into(), claim("h2", "c"), 3);
        assert_eq!(c.nodes().collect::<Vec<_>>(), ["h1", "h2"]);
        let h2: Vec<(String, i64)> = c.of_node("h2").map(|(k, _, r)| (k.clone(), r)).collect();
        assert_eq!(h2, [("k2".to_string(), 2), ("k3".to_string(), 3)]);
        // A key claimed again by another node moves to it.
        c.insert("k1".into(), claim("h2", "d"), 4);
        assert_eq!(c.nodes().collect::<Vec<_>>(), ["h2"]);
        assert_eq!(c.of_node("h1").count(), 0);
        assert_eq!(c.of_node("h2").count(), 3);
        c.remove("k2");
        c.remove("k2");
        c.remove("nothing");
        assert_eq!(c.len(), 2);
        assert_eq!(c.of_node("h2").count(), 2);
        c.insert("p/2".into(), claim("h1", "e"), 5);
        c.insert("q".into(), claim("h1", "f"), 6);
        c.insert("o".into(), claim("h1", "g"), 7);
        let under: Vec<&String> = c.under("p/").map(|(k, _, _)| k).collect();
        assert_eq!(under, ["p/2"]);
        c.remove("p/2");
        c.remove("q");
        c.remove("o");
        c.remove("k1");
        c.remove("k3");
        assert!(c.is_empty());
        assert_eq!(c.nodes().count(), 0);
        assert_eq!(c, Claims::default());
    }
}

//! Names of sandboxes on other hosts of the cluster: their endpoint records as the cluster
//! task last saw them, kept for the DNS table. The cluster task sends [`NameChange`]s as its
//! watch sees endpoints come and go; the DNS task applies them and builds its table with
//! them ([`super::table::Table::build_with_remote`]).
//!
//! Only other nodes' endpoints are kept: this host's own sandboxes are in its local store,
//! with their statuses, and are answered from there.

use std::collections::BTreeMap;

use crate::core::cluster::records::EndpointRecord;

/// An endpoint's identity: (network id, node, sandbox id).
pub type RemoteKey = (String, String, String);

/// A change of the remote endpoints, in watch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameChange {
    /// Everything, after the cluster was read again (join, resync).
    Reset(Vec<EndpointRecord>),
    /// An endpoint appeared or changed.
    Put(EndpointRecord),
    /// An endpoint went (or its record became unusable).
    Remove(RemoteKey),
}

/// The other nodes' endpoints, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteNames {
    by_key: BTreeMap<RemoteKey, EndpointRecord>,
}

/// An endpoint record's key.
pub fn key_of(r: &EndpointRecord) -> RemoteKey {
    (r.network.clone(), r.node.clone(), r.sandbox.clone())
}

impl RemoteNames {
    /// Applies one change.
    pub fn apply(&mut self, change: NameChange) {
        match change {
            NameChange::Reset(all) => {
                self.by_key = all.into_iter().map(|r| (key_of(&r), r)).collect();
            }
            NameChange::Put(r) => {
                self.by_key.insert(key_of(&r), r);
            }
            NameChange::Remove(k) => {
                self.by_key.remove(&k);
            }
        }
    }

    /// The endpoints, in key order.
    pub fn records(&self) -> impl Iterator<Item = &EndpointRecord> {
        self.by_key.values()
    }

    /// How many endpoints are kept.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, sb: &str, ip: &str) -> EndpointRecord {
        EndpointRecord::new(
            node,
            "net",
            sb,
            sb,
            Some(ip.parse().unwrap()),
            None,
            [2, 0x42, 0, 0, 0, 9],
        )
    }

    #[test]
    fn changes_apply_in_order_and_a_reset_replaces_everything() {
        let mut n = RemoteNames::default();
        n.apply(NameChange::Put(rec("h2", "a", "12.0.0.2")));
        n.apply(NameChange::Put(rec("h3", "b", "12.0.0.3")));
        // A put of the same key replaces (the sandbox's address changed).
        n.apply(NameChange::Put(rec("h2", "a", "12.0.0.22")));
        assert_eq!(n.len(), 2);
        assert_eq!(
            n.records().next().unwrap().ipv4,
            Some("12.0.0.22".parse().unwrap())
        );
        n.apply(NameChange::Remove(("net".into(), "h2".into(), "a".into())));
        assert_eq!(n.len(), 1);
        // Removing what is not there changes nothing.
        n.apply(NameChange::Remove(("net".into(), "h9".into(), "a".into())));
        assert_eq!(n.len(), 1);
        n.apply(NameChange::Reset(vec![rec("h4", "c", "12.0.0.4")]));
        assert_eq!(
            n.records().map(|r| r.node.as_str()).collect::<Vec<_>>(),
            ["h4"]
        );
        n.apply(NameChange::Reset(vec![]));
        assert!(n.is_empty());
    }
}

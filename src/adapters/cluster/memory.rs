//! The cluster store in memory, with etcd's semantics: one store-wide revision, create and
//! modification revisions per key, transactions, leases that expire and take their keys,
//! watches that replay history and follow live changes, compaction.
//!
//! Time is a clock the test advances ([`MemoryStore::advance`]), so lease expiry is exact and
//! instant in tests. A lease whose handle lives is kept alive continuously (as a keeper
//! renewing well within the TTL would); dropping the handle stops that, and the lease expires
//! one TTL later. [`MemoryStore::set_reachable`] simulates an outage: calls fail with
//! [`StoreError::Unavailable`], watches get [`WatchEvent::Disconnected`] then
//! [`WatchEvent::Resumed`] and the changes made meanwhile (lease expiries), and a lease not
//! renewed for a whole TTL meanwhile is lost ([`LeaseLost::NotRenewed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::{
    check_branch, ttl_seconds, ClusterStore, Compare, KeyValue, Lease, LeaseId, LeaseLost,
    LeaseState, Revision, Snapshot, StoreError, Txn, TxnOp, TxnOutcome, Watch, WatchEvent,
};

/// What [`ClusterStore::endpoints`] says for the memory store.
const ENDPOINT: &str = "memory";

/// The in-memory cluster store. Clones share the same store (one to hand to the code under
/// test, one for the test to advance the clock with).
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

/// A change a commit applies.
enum Change {
    Put(KeyValue),
    Delete(String),
}

struct LeaseEntry {
    ttl: Duration,
    /// When it expires unless renewed.
    deadline: Duration,
    /// Whether a live handle keeps it alive.
    kept: bool,
    keys: BTreeSet<String>,
    handle: Weak<LeaseState>,
}

struct Watcher {
    prefix: String,
    events: Sender<WatchEvent>,
    /// The next revision to deliver.
    next: Revision,
    /// Disconnected by a simulated outage: gets nothing until the store is reachable again.
    disconnected: bool,
}

struct State {
    now: Duration,
    revision: Revision,
    /// History before this revision is gone (0: never compacted).
    compacted: Revision,
    keys: BTreeMap<String, KeyValue>,
    /// Every change since the compaction, in order.
    history: Vec<WatchEvent>,
    leases: BTreeMap<i64, LeaseEntry>,
    next_lease: i64,
    watchers: BTreeMap<u64, Watcher>,
    next_watcher: u64,
    reachable: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            now: Duration::ZERO,
            // A fresh etcd is at revision 1.
            revision: 1,
            compacted: 0,
            keys: BTreeMap::new(),
            history: Vec::new(),
            leases: BTreeMap::new(),
            // Lease ids are large numbers in etcd: start far from 0 so that no test can
            // confuse a lease id with a count.
            next_lease: 0x7e57_0000,
            watchers: BTreeMap::new(),
            next_watcher: 0,
            reachable: true,
        }
    }
}

/// The key a change is about.
fn key_of(event: &WatchEvent) -> Option<&str> {
    match event {
        WatchEvent::Put(kv) => Some(&kv.key),
        WatchEvent::Delete { key, .. } => Some(key),
        _ => None,
    }
}

fn unavailable() -> StoreError {
    StoreError::Unavailable {
        endpoints: ENDPOINT.into(),
        reason: "unreachable (simulated outage)".into(),
    }
}

impl State {
    fn check_reachable(&self) -> Result<(), StoreError> {
        if self.reachable {
            Ok(())
        } else {
            Err(unavailable())
        }
    }

    /// Applies `changes` at one new revision (none if there is nothing to change) and tells
    /// the watchers.
    fn commit(&mut self, changes: Vec<Change>) {
        let changes: Vec<Change> = changes
            .into_iter()
            .filter(|c| match c {
                Change::Delete(key) => self.keys.contains_key(key),
                Change::Put(_) => true,
            })
            .collect();
        if changes.is_empty() {
            return;
        }
        self.revision = self.revision.saturating_add(1);
        let revision = self.revision;
        let mut events = Vec::with_capacity(changes.len());
        for change in changes {
            let event = match change {
                Change::Put(mut kv) => {
                    kv.create_revision = self
                        .keys
                        .get(&kv.key)
                        .map_or(revision, |old| old.create_revision);
                    kv.mod_revision = revision;
                    if let Some(old) = self.keys.get(&kv.key).and_then(|old| old.lease) {
                        if let Some(lease) = self.leases.get_mut(&old.0) {
                            lease.keys.remove(&kv.key);
                        }
                    }
                    if let Some(lease) = kv.lease.and_then(|id| self.leases.get_mut(&id.0)) {
                        lease.keys.insert(kv.key.clone());
                    }
                    self.keys.insert(kv.key.clone(), kv.clone());
                    WatchEvent::Put(kv)
                }
                Change::Delete(key) => {
                    // Deleted already by an overlapping delete of the same transaction.
                    let Some(old) = self.keys.remove(&key) else {
                        continue;
                    };
                    if let Some(old) = old.lease {
                        if let Some(lease) = self.leases.get_mut(&old.0) {
                            lease.keys.remove(&key);
                        }
                    }
                    WatchEvent::Delete { key, revision }
                }
            };
            events.push(event);
        }
        self.deliver(revision, &events);
        self.history.extend(events);
    }

    /// Sends the events of one revision to the connected watchers that want them.
    fn deliver(&mut self, revision: Revision, events: &[WatchEvent]) {
        self.watchers.retain(|_, w| {
            if w.disconnected || revision < w.next {
                return true;
            }
            w.next = revision.saturating_add(1);
            events
                .iter()
                .filter(|e| key_of(e).is_some_and(|k| k.starts_with(&w.prefix)))
                .all(|e| w.events.send(e.clone()).is_ok())
        });
    }

    /// Resumes every disconnected watch where it was (or tells it its history was
    /// compacted meanwhile); drops those whose receiver is gone.
    fn resume_watchers(&mut self) {
        let mut watchers = std::mem::take(&mut self.watchers);
        watchers.retain(|_, w| {
            if !w.disconnected {
                return true;
            }
            w.disconnected = false;
            if w.next >= self.compacted
                && w.events
                    .send(WatchEvent::Resumed {
                        from_revision: w.next,
                    })
                    .is_err()
            {
                return false;
            }
            self.replay(w)
        });
        self.watchers = watchers;
    }

    /// Sends a (re)connected watcher the recorded changes from its next revision; false if
    /// the watcher is finished (compacted or dropped).
    fn replay(&self, w: &mut Watcher) -> bool {
        if w.next < self.compacted {
            let _ = w.events.send(WatchEvent::Compacted {
                compact_revision: self.compacted,
            });
            return false;
        }
        for event in &self.history {
            let (Some(key), Some(revision)) = (key_of(event), event.revision()) else {
                continue;
            };
            if revision >= w.next
                && key.starts_with(&w.prefix)
                && w.events.send(event.clone()).is_err()
            {
                return false;
            }
        }
        w.next = w.next.max(self.revision.saturating_add(1));
        true
    }

    fn holds(&self, compare: &Compare) -> bool {
        match compare {
            Compare::Absent(key) => !self.keys.contains_key(key),
            // etcd compares an absent key's revision as 0.
            Compare::ModRevision(key, rev) => {
                self.keys.get(key).map_or(0, |kv| kv.mod_revision) == *rev
            }
            Compare::Value(key, value) => self.keys.get(key).is_some_and(|kv| kv.value == *value),
        }
    }

    /// Removes a lease and deletes its keys at one revision; tells its handle why.
    fn end_lease(&mut self, id: i64, why: LeaseLost) {
        if let Some(lease) = self.leases.remove(&id) {
            if let Some(handle) = lease.handle.upgrade() {
                handle.lose(why);
            }
            self.commit(lease.keys.into_iter().map(Change::Delete).collect());
        }
    }
}

impl MemoryStore {
    /// An empty store at revision 1, clock at zero, reachable.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Advances the clock: leases still kept alive are renewed, the others expire once their
    /// TTL has passed since their last renewal, deleting their keys.
    pub fn advance(&self, by: Duration) {
        let mut s = self.lock();
        s.now = s.now.saturating_add(by);
        let now = s.now;
        let reachable = s.reachable;
        let mut expired = Vec::new();
        for (id, lease) in s.leases.iter_mut() {
            if lease.kept && reachable {
                lease.deadline = now.saturating_add(lease.ttl);
            } else if lease.deadline <= now {
                expired.push(*id);
            }
        }
        for id in expired {
            // A handle that still lives but could not renew (outage) learns it the client's
            // way; otherwise the store expired it.
            let why = if reachable {
                LeaseLost::Expired
            } else {
                LeaseLost::NotRenewed
            };
            s.end_lease(id, why);
        }
    }

    /// Breaks every watch's connection while the store keeps answering: this client's watch
    /// stream is cut off, the rest of the cluster keeps writing (and may compact the history
    /// the watches need). [`MemoryStore::reconnect_watches`] ends it.
    pub fn disconnect_watches(&self) {
        let mut s = self.lock();
        for w in s.watchers.values_mut() {
            if !w.disconnected {
                w.disconnected = true;
                let _ = w.events.send(WatchEvent::Disconnected);
            }
        }
    }

    /// Re-establishes the watches [`MemoryStore::disconnect_watches`] broke: each resumes
    /// where it was, or learns that its history was compacted meanwhile.
    pub fn reconnect_watches(&self) {
        self.lock().resume_watchers();
    }

    /// Simulates an outage (`false`) and its end (`true`). During an outage every call fails
    /// with [`StoreError::Unavailable`], leases are not renewed, and watches are disconnected;
    /// at its end watches resume where they were and leases still alive are kept again.
    pub fn set_reachable(&self, reachable: bool) {
        let mut s = self.lock();
        if s.reachable == reachable {
            return;
        }
        s.reachable = reachable;
        // Kept leases count their TTL from here: at the outage's start (not renewed during
        // it) and at its end (renewed again).
        let now = s.now;
        for lease in s.leases.values_mut() {
            if lease.kept {
                lease.deadline = now.saturating_add(lease.ttl);
            }
        }
        if !reachable {
            for w in s.watchers.values_mut() {
                w.disconnected = true;
                let _ = w.events.send(WatchEvent::Disconnected);
            }
            return;
        }
        s.resume_watchers();
    }
}

/// Stops keeping a memory lease alive when its handle is dropped.
struct Keeper {
    state: Weak<Mutex<State>>,
    id: i64,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            let now = s.now;
            let reachable = s.reachable;
            if let Some(lease) = s.leases.get_mut(&self.id) {
                if lease.kept && reachable {
                    lease.deadline = now.saturating_add(lease.ttl);
                }
                lease.kept = false;
            }
        }
    }
}

/// Unregisters a memory watcher when its [`Watch`] is dropped.
struct Unwatch {
    state: Weak<Mutex<State>>,
    id: u64,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.watchers.remove(&self.id);
        }
    }
}

impl ClusterStore for MemoryStore {
    fn endpoints(&self) -> String {
        ENDPOINT.into()
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let s = self.lock();
        s.check_reachable()?;
        Ok(s.keys.get(key).cloned())
    }

    fn snapshot(&self, prefix: &str) -> Result<Snapshot, StoreError> {
        let s = self.lock();
        s.check_reachable()?;
        let kvs = s
            .keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Snapshot {
            revision: s.revision,
            kvs,
        })
    }

    fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let mut s = self.lock();
        s.check_reachable()?;
        let succeeded = txn.compares.iter().all(|c| s.holds(c));
        let ops = if succeeded { txn.then } else { txn.otherwise };
        check_branch(&ops)?;
        let mut changes = Vec::new();
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    if let Some(id) = lease {
                        if !s.leases.contains_key(&id.0) {
                            return Err(StoreError::LeaseNotFound(id));
                        }
                    }
                    changes.push(Change::Put(KeyValue {
                        key,
                        value,
                        create_revision: 0,
                        mod_revision: 0,
                        lease,
                    }));
                }
                TxnOp::Delete(key) => changes.push(Change::Delete(key)),
                TxnOp::DeletePrefix(prefix) => {
                    let keys: Vec<String> = s
                        .keys
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, _)| k.clone())
                        .collect();
                    changes.extend(keys.into_iter().map(Change::Delete));
                }
            }
        }
        s.commit(changes);
        Ok(TxnOutcome {
            succeeded,
            revision: s.revision,
        })
    }

    fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let secs = ttl_seconds(ttl)?;
        let ttl = Duration::from_secs(secs.unsigned_abs());
        let mut s = self.lock();
        s.check_reachable()?;
        let id = s.next_lease;
        s.next_lease = id.saturating_add(1);
        let state = Arc::new(LeaseState::default());
        let deadline = s.now.saturating_add(ttl);
        s.leases.insert(
            id,
            LeaseEntry {
                ttl,
                deadline,
                kept: true,
                keys: BTreeSet::new(),
                handle: Arc::downgrade(&state),
            },
        );
        let keeper = Keeper {
            state: Arc::downgrade(&self.state),
            id,
        };
        Ok(Lease::new(LeaseId(id), ttl, state, Box::new(keeper)))
    }

    fn revoke_lease(&self, id: LeaseId) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.check_reachable()?;
        s.end_lease(id.0, LeaseLost::Revoked);
        Ok(())
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        if from < 1 {
            return Err(StoreError::Invalid(format!(
                "a watch starts at revision 1 or later, not {from}"
            )));
        }
        let mut s = self.lock();
        s.check_reachable()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut w = Watcher {
            prefix: prefix.to_string(),
            events: tx,
            next: from,
            disconnected: false,
        };
        let id = s.next_watcher;
        s.next_watcher = id.saturating_add(1);
        if s.replay(&mut w) {
            s.watchers.insert(id, w);
        }
        let guard = Unwatch {
            state: Arc::downgrade(&self.state),
            id,
        };
        Ok(Watch::new(rx, Box::new(guard)))
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.check_reachable()?;
        if revision > s.revision {
            return Err(StoreError::Invalid(format!(
                "cannot compact at revision {revision}: the store is at {}",
                s.revision
            )));
        }
        if revision <= s.compacted {
            return Err(StoreError::Compacted(revision));
        }
        s.compacted = revision;
        s.history
            .retain(|e| e.revision().is_some_and(|r| r >= revision));
        Ok(())
    }
}

impl super::conformance::Clock for MemoryStore {
    fn pass(&self, by: Duration) {
        self.advance(by);
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance as c;
    use super::*;
    use crate::adapters::cluster::WatchRecvError;

    #[test]
    fn revisions() {
        c::revisions(&MemoryStore::new(), "/t/");
    }

    #[test]
    fn snapshots() {
        c::snapshots(&MemoryStore::new(), "/t/");
    }

    #[test]
    fn transactions() {
        c::transactions(&MemoryStore::new(), "/t/");
    }

    #[test]
    fn concurrent_claims() {
        c::concurrent_claims(&MemoryStore::new(), "/t/", 3, 50);
    }

    #[test]
    fn watch_follows_changes() {
        c::watch_follows_changes(&MemoryStore::new(), "/t/");
    }

    #[test]
    fn watch_replays_history() {
        c::watch_replays_history(&MemoryStore::new(), "/t/");
    }

    #[test]
    fn lease_revoke() {
        let s = MemoryStore::new();
        c::lease_revoke(&s, &s, "/t/");
    }

    #[test]
    fn lease_expires_unkept() {
        let s = MemoryStore::new();
        c::lease_expires_unkept(&s, &s, "/t/");
    }

    #[test]
    fn invalid_requests() {
        c::invalid_requests(&MemoryStore::new(), "/t/");
    }

    #[test]
    fn compaction() {
        c::compaction(&MemoryStore::new(), "/t/");
    }

    #[test]
    fn checks_share_one_store() {
        let s = MemoryStore::new();
        c::revisions(&s, "/a/");
        c::transactions(&s, "/b/");
        c::watch_follows_changes(&s, "/c/");
        c::lease_expires_unkept(&s, &s, "/d/");
    }

    /// A dropped lease lasts exactly its TTL, not a moment less.
    #[test]
    fn unkept_lease_lasts_its_ttl() {
        let s = MemoryStore::new();
        let lease = s.grant_lease(Duration::from_millis(1500)).unwrap();
        assert_eq!(lease.ttl(), Duration::from_secs(2), "rounded up to seconds");
        s.put("/k", b"v", Some(lease.id())).unwrap();
        drop(lease);
        s.advance(Duration::from_millis(1999));
        assert!(s.get("/k").unwrap().is_some());
        s.advance(Duration::from_millis(1));
        assert_eq!(s.get("/k").unwrap(), None);
    }

    /// An outage: calls fail naming the store, watches are told and resume without losing
    /// what changed meanwhile, a lease not renewed for a TTL is lost and its keys go; a
    /// shorter outage costs nothing.
    #[test]
    fn outage_disconnects_and_resumes() {
        let s = MemoryStore::new();
        let short = s.grant_lease(Duration::from_secs(10)).unwrap();
        let long = s.grant_lease(Duration::from_secs(2)).unwrap();
        s.put("/o/short", b"1", Some(short.id())).unwrap();
        let r = s.put("/o/long", b"2", Some(long.id())).unwrap();
        let watch = s.watch("/o/", r + 1).unwrap();

        s.set_reachable(false);
        let err = s.get("/o/short").unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }));
        assert!(err.to_string().contains("memory"), "{err}");
        assert_eq!(
            watch.recv_timeout(Duration::ZERO),
            Ok(WatchEvent::Disconnected)
        );
        s.advance(Duration::from_secs(3));
        assert_eq!(long.lost(), Some(LeaseLost::NotRenewed));
        assert_eq!(short.lost(), None);
        assert_eq!(watch.try_recv(), Err(WatchRecvError::Timeout));

        s.set_reachable(true);
        assert_eq!(
            watch.recv_timeout(Duration::ZERO),
            Ok(WatchEvent::Resumed {
                from_revision: r + 1
            })
        );
        assert_eq!(
            watch.recv_timeout(Duration::ZERO),
            Ok(WatchEvent::Delete {
                key: "/o/long".into(),
                revision: r + 1
            })
        );
        let next = s.put("/o/after", b"3", None).unwrap();
        assert_eq!(watch.try_recv().unwrap().revision(), Some(next));
        s.advance(Duration::from_secs(30));
        assert_eq!(short.lost(), None, "kept again after the outage");
        assert!(s.get("/o/short").unwrap().is_some());
    }

    /// A watch whose next revision was compacted during an outage learns it on resuming.
    #[test]
    fn compaction_during_outage() {
        let s = MemoryStore::new();
        let r = s.put("/c/a", b"1", None).unwrap();
        let watch = s.watch("/c/", r + 1).unwrap();
        s.set_reachable(false);
        assert_eq!(watch.try_recv(), Ok(WatchEvent::Disconnected));
        // Written by the rest of the cluster meanwhile (the outage is this client's only).
        {
            let mut st = s.lock();
            st.reachable = true;
        }
        let later = s.put("/c/b", b"2", None).unwrap();
        s.put("/c/b", b"3", None).unwrap();
        s.compact(later + 1).unwrap();
        {
            let mut st = s.lock();
            st.reachable = false;
        }
        s.set_reachable(true);
        assert_eq!(
            watch.try_recv(),
            Ok(WatchEvent::Compacted {
                compact_revision: later + 1
            })
        );
        assert_eq!(watch.try_recv(), Err(WatchRecvError::Ended));
    }
}

//! The cluster state store port: what the overlay control plane (a task of the host agent)
//! needs from a distributed key-value store, and nothing more. Keys are `/`-separated text
//! (the layout lives in `core::cluster`), values are bytes (JSON records).
//!
//! The store offers:
//! - **revisions**: every change gets the store-wide revision it was made at; a key remembers
//!   the revision that created it and the one that last changed it;
//! - **snapshots** of a prefix, consistent at one revision;
//! - **small transactions**: compares (key absent, `mod_revision == N`, value equal), then
//!   operations if they all hold, else operations otherwise; the way to allocate an address or
//!   a VNI cluster-wide without two hosts getting the same one;
//! - **leases**: a TTL kept alive in the background while the [`Lease`] handle lives; keys
//!   written under a lease vanish when it expires, which is how a dead host's records go away;
//! - **watches** of a prefix from a revision: ordered [`WatchEvent::Put`] /
//!   [`WatchEvent::Delete`] events, and explicit signals ([`WatchEvent::Compacted`],
//!   [`WatchEvent::Disconnected`] then [`WatchEvent::Resumed`]) so the caller knows when it must
//!   resynchronise and when nothing was lost.
//!
//! **Threads, not async.** The CLI never talks to the cluster (only the agent does, design
//! decision 1), and the agent runs the control plane on a plain thread, as its other tasks.
//! So the port is blocking: every call returns when the store answered or failed (with a
//! bounded timeout for the etcd adapter), watch events arrive through a channel read with
//! [`Watch::recv_timeout`], and a lease's loss is read with [`Lease::lost`] /
//! [`Lease::wait_lost`]. The etcd adapter owns a small tokio runtime (one worker) for its gRPC
//! connection, keep-alives and watch streams; callers never see it. Do not call the port from
//! inside an async task: it blocks the calling thread.
//!
//! Implementations: [`etcd::EtcdStore`] (the cluster) and [`memory::MemoryStore`] (same
//! semantics in memory, with a clock tests advance, for unit tests of use cases without root
//! or etcd). [`conformance`] holds the behaviour both must show, written once.

pub mod conformance;
pub mod etcd;
pub mod memory;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A store-wide revision: increases by one with every change that writes something.
pub type Revision = i64;

/// A lease's identifier, as the store gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // etcd's own tools print lease ids in hex.
        write!(f, "{:x}", self.0)
    }
}

/// One key with its value and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key. Keys written by weft are UTF-8; anything else found under a watched prefix is
    /// converted lossily (it was not written by weft).
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the key's last change.
    pub mod_revision: Revision,
    /// The lease the key lives under, if any.
    pub lease: Option<LeaseId>,
}

/// Every key under a prefix, as of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The store's revision when the snapshot was read: watch from `revision + 1` to follow
    /// every later change.
    pub revision: Revision,
    /// The keys, sorted.
    pub kvs: Vec<KeyValue>,
}

/// A condition of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key was last changed at this revision (compare-and-swap); 0 holds for an absent
    /// key, as etcd compares.
    ModRevision(String, Revision),
    /// The key exists and holds exactly this value.
    Value(String, Vec<u8>),
}

/// A write of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Writes a key, under a lease or none (a put without a lease detaches the key from one).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The lease the key will live under.
        lease: Option<LeaseId>,
    },
    /// Deletes one key (nothing if it does not exist).
    Delete(String),
    /// Deletes every key starting with this prefix (byte-wise: end it with `/`).
    DeletePrefix(String),
}

/// A transaction: if every compare holds, the `then` writes, else the `otherwise` writes, all
/// at one revision. A key may appear in at most one write of a branch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// Writes when they hold.
    pub then: Vec<TxnOp>,
    /// Writes when one does not.
    pub otherwise: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction (no compare: `then` always runs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds a write to the branch taken when the conditions hold.
    pub fn and_then(mut self, op: TxnOp) -> Self {
        self.then.push(op);
        self
    }

    /// Adds a write to the branch taken when a condition fails.
    pub fn or_else(mut self, op: TxnOp) -> Self {
        self.otherwise.push(op);
        self
    }
}

/// What a [`Txn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether the compares held (the `then` branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction (its own if it wrote something).
    pub revision: Revision,
}

/// A change seen by a [`Watch`], or a signal about the watch itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was written; its `mod_revision` is the event's revision.
    Put(KeyValue),
    /// A key was deleted (also when its lease expired or was revoked).
    Delete {
        /// The key.
        key: String,
        /// The revision of the deletion.
        revision: Revision,
    },
    /// The revision the watch had to continue from is no longer in the store's history
    /// (compacted): events are lost. The watch ends here; resynchronise from a
    /// [`ClusterStore::snapshot`] and watch again from its revision + 1.
    Compacted {
        /// The oldest revision still in the history.
        compact_revision: Revision,
    },
    /// The connection to the store broke. The watch keeps trying to re-establish itself;
    /// nothing arrives until [`WatchEvent::Resumed`]. If the history it needs was compacted
    /// meanwhile, [`WatchEvent::Compacted`] follows it (etcd) or comes instead (memory).
    Disconnected,
    /// The watch is established again, from the revision after the last event delivered: no
    /// event is lost, the ones made meanwhile follow.
    Resumed {
        /// The first revision the re-established watch can deliver.
        from_revision: Revision,
    },
}

impl WatchEvent {
    /// The revision of a change (`None` for the signals).
    pub fn revision(&self) -> Option<Revision> {
        match self {
            WatchEvent::Put(kv) => Some(kv.mod_revision),
            WatchEvent::Delete { revision, .. } => Some(*revision),
            _ => None,
        }
    }
}

/// Why [`Watch::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchRecvError {
    /// Nothing arrived in time.
    #[error("no watch event within the timeout")]
    Timeout,
    /// The watch ended (after [`WatchEvent::Compacted`], or the store was dropped).
    #[error("the watch ended")]
    Ended,
}

/// Stops whatever feeds a [`Watch`] or keeps a [`Lease`] alive when dropped.
pub trait Guard: Send + Sync {}
impl<T: Send + Sync> Guard for T {}

/// A watch of a prefix: events arrive in revision order. Dropping it cancels the watch.
/// Events wait in an unbounded queue until read: read them promptly (the control plane's
/// loop does nothing else).
pub struct Watch {
    events: std::sync::mpsc::Receiver<WatchEvent>,
    _feeder: Box<dyn Guard>,
}

impl Watch {
    /// A watch fed through `events`; `feeder` is dropped (stopping the feed) with the watch.
    fn new(events: std::sync::mpsc::Receiver<WatchEvent>, feeder: Box<dyn Guard>) -> Self {
        Watch {
            events,
            _feeder: feeder,
        }
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<WatchEvent, WatchRecvError> {
        use std::sync::mpsc::RecvTimeoutError;
        self.events.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => WatchRecvError::Timeout,
            RecvTimeoutError::Disconnected => WatchRecvError::Ended,
        })
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Result<WatchEvent, WatchRecvError> {
        use std::sync::mpsc::TryRecvError;
        self.events.try_recv().map_err(|e| match e {
            TryRecvError::Empty => WatchRecvError::Timeout,
            TryRecvError::Disconnected => WatchRecvError::Ended,
        })
    }
}

/// Why a lease is no longer held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseLost {
    /// The store says the lease no longer exists: it expired (keep-alives did not reach the
    /// store in time) or someone revoked it. Its keys are gone.
    #[error("the store expired the lease")]
    Expired,
    /// No keep-alive got through for a whole TTL (the store was unreachable): the rest of the
    /// cluster must assume the lease expired. The adapter revokes it as soon as the store
    /// answers again, so its keys go away even if the store kept it (a restarted etcd
    /// restores leases with a fresh TTL).
    #[error("no keep-alive reached the store for a whole TTL")]
    NotRenewed,
    /// This process revoked it ([`ClusterStore::revoke_lease`]).
    #[error("the lease was revoked")]
    Revoked,
}

/// The state a [`Lease`] handle shares with whatever keeps it alive.
#[derive(Default)]
struct LeaseState {
    lost: Mutex<Option<LeaseLost>>,
    changed: Condvar,
}

impl LeaseState {
    /// Records the loss (the first reason wins) and wakes waiters.
    fn lose(&self, why: LeaseLost) {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            *lost = Some(why);
        }
        self.changed.notify_all();
    }

    fn get(&self) -> Option<LeaseLost> {
        *self.lost.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A granted lease, kept alive in the background while this handle lives. Dropping the handle
/// stops the keep-alives: the lease then expires within its TTL, taking its keys with it (what
/// a killed agent's lease does).
pub struct Lease {
    id: LeaseId,
    ttl: Duration,
    state: Arc<LeaseState>,
    _keeper: Box<dyn Guard>,
}

impl Lease {
    fn new(id: LeaseId, ttl: Duration, state: Arc<LeaseState>, keeper: Box<dyn Guard>) -> Self {
        Lease {
            id,
            ttl,
            state,
            _keeper: keeper,
        }
    }

    /// The lease's id, to write keys under it.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The TTL the store granted (it may round the requested one up).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the lease was lost, and why. Once lost it stays lost: grant a new one and write
    /// the keys again.
    pub fn lost(&self) -> Option<LeaseLost> {
        self.state.get()
    }

    /// Waits at most `timeout` for the lease to be lost; returns why, or `None` if it is still
    /// held.
    pub fn wait_lost(&self, timeout: Duration) -> Option<LeaseLost> {
        let guard = self.state.lost.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .state
            .changed
            .wait_timeout_while(guard, timeout, |lost| lost.is_none())
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// Errors of the cluster store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer (down, unreachable, no leader, timed out). Names the
    /// endpoint(s), so that a failed command tells the user where it looked.
    #[error("cluster store {endpoints} is unreachable: {reason}")]
    Unavailable {
        /// The endpoint(s) tried, comma-separated.
        endpoints: String,
        /// What failed.
        reason: String,
    },
    /// A write named a lease the store does not have (expired or revoked).
    #[error("lease {0} does not exist (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// The revision asked for was compacted away (or the compaction asked for is not newer
    /// than the last one).
    #[error("revision {0} was compacted away")]
    Compacted(Revision),
    /// A request the port refuses before sending it (a TTL under a second, a revision below 1,
    /// the same key twice in a transaction branch).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The store answered with an error other than the above.
    #[error("cluster store {endpoints} refused the request: {reason}")]
    Rejected {
        /// The endpoint(s), comma-separated.
        endpoints: String,
        /// The store's message.
        reason: String,
    },
    /// The adapter could not be set up (bad endpoint URL, unreadable TLS file).
    #[error("cluster store configuration: {0}")]
    Config(String),
}

/// The cluster state store. Every method blocks until the store answered or failed.
pub trait ClusterStore: Send + Sync {
    /// The endpoint(s) this store talks to, for messages.
    fn endpoints(&self) -> String;

    /// One key, if it exists.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key under `prefix`, at one revision.
    fn snapshot(&self, prefix: &str) -> Result<Snapshot, StoreError>;

    /// Runs a transaction.
    fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// Grants a lease of at least `ttl` (whole seconds, at least one) and keeps it alive
    /// while the returned handle lives.
    fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError>;

    /// Revokes a lease now, deleting its keys; a lease that is already gone is no error. A
    /// local handle of it reports [`LeaseLost::Revoked`].
    fn revoke_lease(&self, id: LeaseId) -> Result<(), StoreError>;

    /// Watches every key under `prefix` from revision `from` (inclusive, at least 1): first
    /// the recorded changes since `from`, then live ones. Fails only if the watch cannot be
    /// established now; a compacted `from` arrives as [`WatchEvent::Compacted`].
    fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError>;

    /// Drops the history before `revision` (watches from earlier revisions get
    /// [`WatchEvent::Compacted`]).
    fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// Writes one key; returns the revision of the write.
    fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision, StoreError> {
        let op = TxnOp::Put {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
        };
        Ok(self.txn(Txn::new().and_then(op))?.revision)
    }

    /// Writes a key only if it does not exist: whether this call created it (the way to
    /// claim an address or a VNI cluster-wide).
    fn create(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when(Compare::Absent(key.to_string()))
            .and_then(TxnOp::Put {
                key: key.to_string(),
                value: value.to_vec(),
                lease,
            });
        Ok(self.txn(txn)?.succeeded)
    }

    /// Deletes one key; returns the store's revision after it.
    fn delete(&self, key: &str) -> Result<Revision, StoreError> {
        Ok(self
            .txn(Txn::new().and_then(TxnOp::Delete(key.to_string())))?
            .revision)
    }
}

/// A branch writes each key at most once: no key put twice, none put and deleted (etcd
/// refuses such a transaction; the memory store refuses it too, so tests catch it early).
fn check_branch(ops: &[TxnOp]) -> Result<(), StoreError> {
    let mut puts = std::collections::BTreeSet::new();
    for op in ops {
        if let TxnOp::Put { key, .. } = op {
            if !puts.insert(key.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "key {key:?} is written twice in one transaction branch"
                )));
            }
        }
    }
    for op in ops {
        let clash = match op {
            TxnOp::Delete(key) => puts.contains(key.as_str()),
            TxnOp::DeletePrefix(prefix) => puts.iter().any(|k| k.starts_with(prefix.as_str())),
            TxnOp::Put { .. } => false,
        };
        if clash {
            return Err(StoreError::Invalid(format!(
                "{op:?} deletes a key the same transaction branch writes"
            )));
        }
    }
    Ok(())
}

/// A TTL in whole seconds (rounded up), at least one.
fn ttl_seconds(ttl: Duration) -> Result<i64, StoreError> {
    let mut secs = ttl.as_secs();
    if ttl.subsec_nanos() > 0 {
        secs = secs.saturating_add(1);
    }
    if secs == 0 {
        return Err(StoreError::Invalid(
            "a lease TTL is at least one second".into(),
        ));
    }
    i64::try_from(secs).map_err(|_| StoreError::Invalid(format!("lease TTL {secs} s is too long")))
}

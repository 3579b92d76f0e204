//! The behaviour every [`ClusterStore`] must show, written once and run against each
//! implementation: the memory store in `cargo test --lib`, a real etcd in
//! `tests/cluster_store.rs`. Each check panics (an assertion) on a deviation. Each works under
//! its own key prefix, so checks may share a store; [`compaction`] compacts the whole store,
//! so give it a store of its own.
//!
//! Time: lease checks let time pass through a [`Clock`] (the memory store advances its own;
//! against etcd, [`Sleep`] sleeps).

use std::time::Duration;

use super::{
    ClusterStore, Compare, LeaseLost, Revision, StoreError, Txn, TxnOp, WatchEvent, WatchRecvError,
};

/// Lets time pass for the store.
pub trait Clock {
    /// Lets `by` pass.
    fn pass(&self, by: Duration);
}

/// Real time: sleeps.
pub struct Sleep;

impl Clock for Sleep {
    fn pass(&self, by: Duration) {
        std::thread::sleep(by);
    }
}

/// How long a check waits for a watch event that must come (an etcd watch delivers within
/// milliseconds; this only bounds a failing test).
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// The next change of a watch, skipping nothing: panics on a signal or a timeout.
pub fn next_change(watch: &super::Watch) -> WatchEvent {
    match watch.recv_timeout(EVENT_WAIT) {
        Ok(e @ (WatchEvent::Put(_) | WatchEvent::Delete { .. })) => e,
        other => panic!("expected a change from the watch, got {other:?}"),
    }
}

/// Asserts that no event is waiting on the watch (after a short grace for etcd).
fn assert_quiet(watch: &super::Watch) {
    match watch.recv_timeout(Duration::from_millis(200)) {
        Err(WatchRecvError::Timeout) => {}
        other => panic!("expected no watch event, got {other:?}"),
    }
}

fn put_event(e: &WatchEvent) -> (&str, &[u8], Revision) {
    match e {
        WatchEvent::Put(kv) => (&kv.key, &kv.value, kv.mod_revision),
        other => panic!("expected a put, got {other:?}"),
    }
}

fn delete_event(e: &WatchEvent) -> (&str, Revision) {
    match e {
        WatchEvent::Delete { key, revision } => (key, *revision),
        other => panic!("expected a delete, got {other:?}"),
    }
}

/// Puts raise the revision by one; a key keeps its create revision and gets a new mod
/// revision when rewritten, a new create revision after deletion; deletes of absent keys
/// write nothing.
pub fn revisions(store: &dyn ClusterStore, p: &str) {
    let a = format!("{p}a");
    assert_eq!(store.get(&a).unwrap(), None);
    let r1 = store.put(&a, b"one", None).unwrap();
    let kv = store.get(&a).unwrap().expect("a was just written");
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"one"[..], r1, r1)
    );
    assert_eq!(kv.lease, None);
    let r2 = store.put(&a, b"two", None).unwrap();
    assert_eq!(r2, r1 + 1, "a put writes at the next revision");
    let kv = store.get(&a).unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r2));
    let r3 = store.delete(&a).unwrap();
    assert_eq!(r3, r2 + 1);
    assert_eq!(store.get(&a).unwrap(), None);
    let unchanged = store.delete(&a).unwrap();
    assert_eq!(unchanged, r3, "deleting an absent key writes nothing");
    let r4 = store.put(&a, b"again", None).unwrap();
    let kv = store.get(&a).unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));
}

/// A snapshot holds exactly the keys under the prefix (byte-wise), sorted, at the store's
/// revision.
pub fn snapshots(store: &dyn ClusterStore, p: &str) {
    for k in ["b", "a", "c/1", "c/2"] {
        store.put(&format!("{p}{k}"), k.as_bytes(), None).unwrap();
    }
    // Neighbours that share the prefix's text but not its directory.
    let outside = format!("{}-other/x", p.trim_end_matches('/'));
    let last = store.put(&outside, b"x", None).unwrap();
    let snap = store.snapshot(p).unwrap();
    let keys: Vec<&str> = snap.kvs.iter().map(|kv| kv.key.as_str()).collect();
    let want: Vec<String> = ["a", "b", "c/1", "c/2"]
        .iter()
        .map(|k| format!("{p}{k}"))
        .collect();
    assert_eq!(keys, want);
    assert!(
        snap.revision >= last,
        "a snapshot is at least as new as what was written"
    );
    let sub = store.snapshot(&format!("{p}c/")).unwrap();
    assert_eq!(sub.kvs.len(), 2);
    assert_eq!(sub.kvs[1].value, b"c/2");
    assert!(store.snapshot(&format!("{p}none/")).unwrap().kvs.is_empty());
}

/// Compares (absent, mod revision, value) choose the branch; both branches write; all writes
/// of one transaction share one revision.
pub fn transactions(store: &dyn ClusterStore, p: &str) {
    let k = format!("{p}k");
    let log = format!("{p}log");
    assert!(store.create(&k, b"first", None).unwrap());
    assert!(!store.create(&k, b"second", None).unwrap(), "k exists");
    assert_eq!(store.get(&k).unwrap().unwrap().value, b"first");

    let rev = store.get(&k).unwrap().unwrap().mod_revision;
    // Compare-and-swap on the mod revision: the stale one loses and runs the else branch.
    let cas = |expect: Revision, value: &[u8]| {
        store
            .txn(
                Txn::new()
                    .when(Compare::ModRevision(k.clone(), expect))
                    .and_then(TxnOp::Put {
                        key: k.clone(),
                        value: value.to_vec(),
                        lease: None,
                    })
                    .or_else(TxnOp::Put {
                        key: log.clone(),
                        value: b"lost".to_vec(),
                        lease: None,
                    }),
            )
            .unwrap()
    };
    let won = cas(rev, b"swapped");
    assert!(won.succeeded);
    assert_eq!(store.get(&k).unwrap().unwrap().mod_revision, won.revision);
    let lost = cas(rev, b"stale");
    assert!(!lost.succeeded);
    assert_eq!(store.get(&k).unwrap().unwrap().value, b"swapped");
    assert_eq!(store.get(&log).unwrap().unwrap().value, b"lost");
    assert_eq!(lost.revision, won.revision + 1, "the else branch wrote");

    // Value compare; a failed compare with an empty else branch writes nothing.
    let by_value = |v: &[u8]| {
        store
            .txn(
                Txn::new()
                    .when(Compare::Value(k.clone(), v.to_vec()))
                    .and_then(TxnOp::Delete(log.clone())),
            )
            .unwrap()
    };
    let miss = by_value(b"first");
    assert_eq!((miss.succeeded, miss.revision), (false, lost.revision));
    let hit = by_value(b"swapped");
    assert!(hit.succeeded);
    assert_eq!(store.get(&log).unwrap(), None);
    let absent = format!("{p}absent");
    let on_absent = store
        .txn(
            Txn::new()
                .when(Compare::Value(absent.clone(), Vec::new()))
                .and_then(TxnOp::Delete(k.clone())),
        )
        .unwrap();
    assert!(
        !on_absent.succeeded,
        "a value compare on an absent key fails"
    );

    // Several writes in one transaction: one revision; delete-prefix takes only the prefix.
    let many = store
        .txn(
            Txn::new()
                .and_then(TxnOp::Put {
                    key: format!("{p}d/1"),
                    value: b"1".to_vec(),
                    lease: None,
                })
                .and_then(TxnOp::Put {
                    key: format!("{p}d/2"),
                    value: b"2".to_vec(),
                    lease: None,
                })
                .and_then(TxnOp::Put {
                    key: format!("{p}dd"),
                    value: b"3".to_vec(),
                    lease: None,
                }),
        )
        .unwrap();
    for key in ["d/1", "d/2", "dd"] {
        let kv = store.get(&format!("{p}{key}")).unwrap().unwrap();
        assert_eq!(kv.mod_revision, many.revision);
    }
    let gone = store
        .txn(
            Txn::new()
                .when(Compare::Absent(absent.clone()))
                .and_then(TxnOp::DeletePrefix(format!("{p}d/"))),
        )
        .unwrap();
    assert!(gone.succeeded);
    assert_eq!(gone.revision, many.revision + 1);
    assert!(store.snapshot(&format!("{p}d/")).unwrap().kvs.is_empty());
    assert!(store.get(&format!("{p}dd")).unwrap().is_some());

    // The same key twice in a branch is refused, and nothing is written.
    let twice = store.txn(
        Txn::new()
            .and_then(TxnOp::Put {
                key: absent.clone(),
                value: b"1".to_vec(),
                lease: None,
            })
            .and_then(TxnOp::Put {
                key: absent.clone(),
                value: b"2".to_vec(),
                lease: None,
            }),
    );
    assert!(
        matches!(twice, Err(StoreError::Invalid(_))),
        "got {twice:?}"
    );
    assert_eq!(store.get(&absent).unwrap(), None);
}

/// `threads` threads claim the same `keys` keys with create-if-absent, all at once: every key
/// is won by exactly one thread, and each winner's value is what the store holds.
pub fn concurrent_claims(store: &dyn ClusterStore, p: &str, threads: usize, keys: usize) {
    let wins: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let me = format!("thread {t}");
                    // Each thread starts at a different key so that they collide all along
                    // the key space, not only at its start.
                    (0..keys)
                        .map(|i| (i + t * keys / threads.max(1)) % keys)
                        .filter(|i| {
                            store
                                .create(&format!("{p}{i}"), me.as_bytes(), None)
                                .expect("a claim gets an answer")
                        })
                        .collect::<Vec<usize>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a claiming thread panicked"))
            .collect()
    });
    let mut owner = vec![None; keys];
    for (t, won) in wins.iter().enumerate() {
        for &i in won {
            assert_eq!(owner[i], None, "key {i} was given to two claimants");
            owner[i] = Some(t);
        }
    }
    for (i, o) in owner.iter().enumerate() {
        let t = o.unwrap_or_else(|| panic!("key {i} was won by nobody"));
        let kv = store.get(&format!("{p}{i}")).unwrap().unwrap();
        assert_eq!(kv.value, format!("thread {t}").into_bytes());
    }
}

/// A watch from a revision delivers every later change under its prefix, in order, with its
/// revision; the writes of one transaction share a revision; other prefixes are not seen.
pub fn watch_follows_changes(store: &dyn ClusterStore, p: &str) {
    let start = store.snapshot(p).unwrap().revision;
    let watch = store.watch(p, start + 1).unwrap();
    let r1 = store.put(&format!("{p}x"), b"1", None).unwrap();
    store
        .put(&format!("{}-not/x", p.trim_end_matches('/')), b"no", None)
        .unwrap();
    let both = store
        .txn(
            Txn::new()
                .and_then(TxnOp::Put {
                    key: format!("{p}y"),
                    value: b"2".to_vec(),
                    lease: None,
                })
                .and_then(TxnOp::Delete(format!("{p}x"))),
        )
        .unwrap();
    let e = next_change(&watch);
    assert_eq!(put_event(&e), (format!("{p}x").as_str(), &b"1"[..], r1));
    let mut same = [next_change(&watch), next_change(&watch)];
    same.sort_by_key(|e| matches!(e, WatchEvent::Delete { .. }));
    assert_eq!(
        put_event(&same[0]),
        (format!("{p}y").as_str(), &b"2"[..], both.revision)
    );
    assert_eq!(
        delete_event(&same[1]),
        (format!("{p}x").as_str(), both.revision)
    );
    if let WatchEvent::Put(kv) = &same[0] {
        assert_eq!(kv.create_revision, both.revision);
    }
    assert_quiet(&watch);
}

/// A watch from an old revision replays the recorded changes in order, then follows.
pub fn watch_replays_history(store: &dyn ClusterStore, p: &str) {
    let mut written = Vec::new();
    for i in 0..10 {
        let key = format!("{p}{}", i % 3);
        let rev = store.put(&key, i.to_string().as_bytes(), None).unwrap();
        written.push((key, i.to_string().into_bytes(), rev));
    }
    let del = store.delete(&format!("{p}0")).unwrap();
    let watch = store.watch(p, written[0].2).unwrap();
    for (key, value, rev) in &written {
        let e = next_change(&watch);
        assert_eq!(put_event(&e), (key.as_str(), value.as_slice(), *rev));
    }
    assert_eq!(
        delete_event(&next_change(&watch)),
        (format!("{p}0").as_str(), del)
    );
    let live = store.put(&format!("{p}live"), b"l", None).unwrap();
    assert_eq!(put_event(&next_change(&watch)).2, live);
    // From the middle: only what followed.
    let mid = store.watch(p, written[5].2).unwrap();
    assert_eq!(put_event(&next_change(&mid)).2, written[5].2);
}

/// Keys under a lease carry its id; a kept lease outlives its TTL; revoking deletes its keys
/// (watched) and the handle says so; writes under a revoked lease fail; revoking twice is no
/// error.
pub fn lease_revoke(store: &dyn ClusterStore, clock: &dyn Clock, p: &str) {
    let lease = store.grant_lease(Duration::from_secs(2)).unwrap();
    assert!(lease.ttl() >= Duration::from_secs(2));
    let k = format!("{p}held");
    let r = store.put(&k, b"v", Some(lease.id())).unwrap();
    assert_eq!(store.get(&k).unwrap().unwrap().lease, Some(lease.id()));
    clock.pass(lease.ttl() * 2);
    assert_eq!(lease.lost(), None, "a kept lease outlives its TTL");
    assert!(store.get(&k).unwrap().is_some());
    let watch = store.watch(p, r + 1).unwrap();
    store.revoke_lease(lease.id()).unwrap();
    assert_eq!(lease.wait_lost(EVENT_WAIT), Some(LeaseLost::Revoked));
    assert_eq!(delete_event(&next_change(&watch)).0, k);
    assert_eq!(store.get(&k).unwrap(), None);
    let late = store.put(&format!("{p}late"), b"v", Some(lease.id()));
    assert_eq!(late, Err(StoreError::LeaseNotFound(lease.id())));
    store.revoke_lease(lease.id()).unwrap();
}

/// A lease whose handle is dropped (its keeper gone, as with a killed agent) expires within
/// its TTL and takes its keys with it, seen by a watch; keys of other leases stay.
pub fn lease_expires_unkept(store: &dyn ClusterStore, clock: &dyn Clock, p: &str) {
    let dead = store.grant_lease(Duration::from_secs(2)).unwrap();
    let alive = store.grant_lease(Duration::from_secs(2)).unwrap();
    let ttl = dead.ttl();
    let r = store
        .put(&format!("{p}dead/1"), b"1", Some(dead.id()))
        .unwrap();
    store
        .put(&format!("{p}dead/2"), b"2", Some(dead.id()))
        .unwrap();
    store
        .put(&format!("{p}alive"), b"3", Some(alive.id()))
        .unwrap();
    let watch = store.watch(p, r + 3).unwrap();
    drop(dead);
    assert_eq!(store.snapshot(&format!("{p}dead/")).unwrap().kvs.len(), 2);
    clock.pass(ttl);
    let events = [next_change(&watch), next_change(&watch)];
    let mut deleted: Vec<(&str, Revision)> = events.iter().map(delete_event).collect();
    deleted.sort();
    assert_eq!(deleted[0].0, format!("{p}dead/1"));
    assert_eq!(deleted[1].0, format!("{p}dead/2"));
    assert_eq!(
        deleted[0].1, deleted[1].1,
        "one revision deletes a lease's keys"
    );
    assert!(store.snapshot(&format!("{p}dead/")).unwrap().kvs.is_empty());
    assert!(store.get(&format!("{p}alive")).unwrap().is_some());
    assert_eq!(alive.lost(), None);
}

/// Requests the port refuses: a TTL under a second, a watch from revision 0.
pub fn invalid_requests(store: &dyn ClusterStore, p: &str) {
    assert!(matches!(
        store.grant_lease(Duration::from_millis(0)),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(store.watch(p, 0), Err(StoreError::Invalid(_))));
}

/// After a compaction, a watch from before it gets [`WatchEvent::Compacted`] and ends; one
/// from the compaction revision works. Compacts the whole store.
pub fn compaction(store: &dyn ClusterStore, p: &str) {
    let r1 = store.put(&format!("{p}a"), b"1", None).unwrap();
    let r2 = store.put(&format!("{p}a"), b"2", None).unwrap();
    let r3 = store.put(&format!("{p}b"), b"3", None).unwrap();
    store.compact(r2).unwrap();
    let old = store.watch(p, r1).unwrap();
    assert_eq!(
        old.recv_timeout(EVENT_WAIT),
        Ok(WatchEvent::Compacted {
            compact_revision: r2
        })
    );
    assert_eq!(old.recv_timeout(EVENT_WAIT), Err(WatchRecvError::Ended));
    let ok = store.watch(p, r2).unwrap();
    assert_eq!(put_event(&next_change(&ok)).2, r2);
    assert_eq!(put_event(&next_change(&ok)).2, r3);
    assert_eq!(store.compact(r1), Err(StoreError::Compacted(r1)));
}

//! The cluster store on a real etcd (Debian's etcd-server, started by each test inside its
//! own network namespace): the behaviour shared with the memory store
//! (`weft::adapters::cluster::conformance`), then what only a real server shows: concurrent
//! claims from several connections, a lease whose keeper dies, etcd killed and restarted
//! under a watch and leases, unreachable endpoints, TLS.

mod common;

use std::time::{Duration, Instant};

use common::etcd::{etcd_or_skip, store_in, Etcd};
use common::*;
use weft::adapters::cluster::conformance as c;
use weft::adapters::cluster::etcd::{EtcdConfig, TlsFiles};
use weft::adapters::cluster::{
    ClusterStore, LeaseLost, Revision, StoreError, WatchEvent, WatchRecvError,
};

fn runnable(test: &str) -> bool {
    root_or_skip(test) && etcd_or_skip(test)
}

/// The shared semantics without leases: revisions, snapshots, transactions, watches (live
/// and replayed from an old revision), refused requests. One etcd, one prefix per check.
#[test]
fn shared_semantics() {
    if !runnable("shared_semantics") {
        return;
    }
    let etcd = Etcd::start("cs");
    let store = etcd.store();
    c::revisions(&store, "/t/rev/");
    c::snapshots(&store, "/t/snap/");
    c::transactions(&store, "/t/txn/");
    c::watch_follows_changes(&store, "/t/watch/");
    c::watch_replays_history(&store, "/t/replay/");
    c::invalid_requests(&store, "/t/invalid/");
}

/// The shared lease semantics, in real time.
#[test]
fn shared_lease_semantics() {
    if !runnable("shared_lease_semantics") {
        return;
    }
    let etcd = Etcd::start("cs");
    let store = etcd.store();
    c::lease_revoke(&store, &c::Sleep, "/t/revoke/");
    c::lease_expires_unkept(&store, &c::Sleep, "/t/unkept/");
}

/// Compaction (store-wide, hence its own etcd).
#[test]
fn shared_compaction() {
    if !runnable("shared_compaction") {
        return;
    }
    let etcd = Etcd::start("cs");
    c::compaction(&etcd.store(), "/t/compact/");
}

/// 3 threads x 50 create-if-absent claims on the same keys, through one connection and then
/// through one connection per claimant: no key is ever given to two.
#[test]
fn concurrent_claims_never_collide() {
    if !runnable("concurrent_claims_never_collide") {
        return;
    }
    let etcd = Etcd::start("cs");
    let store = etcd.store();
    c::concurrent_claims(&store, "/t/shared/", 3, 50);

    // Separate clients, as separate hosts would be.
    let stores: Vec<_> = (0..3).map(|_| etcd.store()).collect();
    let won: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(t, st)| {
                s.spawn(move || {
                    (0..50)
                        .filter(|i| {
                            st.create(&format!("/t/hosts/{i}"), format!("{t}").as_bytes(), None)
                                .unwrap()
                        })
                        .collect::<Vec<usize>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<usize> = won.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..50).collect::<Vec<_>>(),
        "each key won exactly once"
    );
    for (t, keys) in won.iter().enumerate() {
        for i in keys {
            let kv = store.get(&format!("/t/hosts/{i}")).unwrap().unwrap();
            assert_eq!(kv.value, t.to_string().into_bytes());
        }
    }
}

/// Waits for a delete of each of `keys` on `watch`; returns when the last arrived.
fn await_deletes(watch: &weft::adapters::cluster::Watch, keys: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut missing: Vec<&String> = keys.iter().collect();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match watch.recv_timeout(left) {
            Ok(WatchEvent::Delete { key, .. }) => missing.retain(|k| **k != key),
            Ok(other) => panic!("unexpected watch event {other:?}"),
            Err(e) => panic!("no delete of {missing:?} within {limit:?}: {e}"),
        }
    }
}

/// A lease whose keeper stops (its handle dropped; then its whole store dropped, as when the
/// agent is killed) takes its keys away within its TTL, and a watch sees the deletes; a lease
/// still kept outlives both.
#[test]
fn unkept_lease_takes_its_keys_within_ttl() {
    if !runnable("unkept_lease_takes_its_keys_within_ttl") {
        return;
    }
    let etcd = Etcd::start("cs");
    let observer = etcd.store();
    let kept = observer.grant_lease(Duration::from_secs(2)).unwrap();
    let start = observer.put("/t/kept", b"k", Some(kept.id())).unwrap();
    let watch = observer.watch("/t/", start + 1).unwrap();

    let lease = observer.grant_lease(Duration::from_secs(2)).unwrap();
    let ttl = lease.ttl();
    let keys: Vec<String> = (0..3).map(|i| format!("/t/a/{i}")).collect();
    for k in &keys {
        observer.put(k, b"v", Some(lease.id())).unwrap();
        assert!(matches!(c::next_change(&watch), WatchEvent::Put(_)));
    }
    // Renewed for a while first: expiry counts from the last renewal, not the grant.
    std::thread::sleep(ttl);
    assert_eq!(lease.lost(), None);
    let dropped = Instant::now();
    drop(lease);
    // etcd checks expiries every 500 ms; the rest is slack for a loaded machine.
    await_deletes(&watch, &keys, ttl + Duration::from_secs(2));
    let took = dropped.elapsed();
    assert!(
        took <= ttl + Duration::from_secs(1),
        "the keys went {took:?} after the keeper stopped (TTL {ttl:?})"
    );

    // The whole client gone (its runtime and keep-alive stream with it).
    let agent = etcd.store();
    let lease = agent.grant_lease(Duration::from_secs(2)).unwrap();
    agent.put("/t/b", b"v", Some(lease.id())).unwrap();
    assert!(matches!(c::next_change(&watch), WatchEvent::Put(_)));
    let killed = Instant::now();
    drop(agent);
    await_deletes(&watch, &["/t/b".to_string()], ttl + Duration::from_secs(2));
    assert!(killed.elapsed() <= ttl + Duration::from_secs(1));
    drop(lease);

    assert_eq!(kept.lost(), None);
    assert!(observer.get("/t/kept").unwrap().is_some());
}

/// A lease revoked by another client (another host's agent cleaning up, an operator): its
/// keeper learns from the store that it is gone, within a third of the TTL.
#[test]
fn lease_revoked_elsewhere_is_reported_expired() {
    if !runnable("lease_revoked_elsewhere_is_reported_expired") {
        return;
    }
    let etcd = Etcd::start("cs");
    let mine = etcd.store();
    let other = etcd.store();
    let lease = mine.grant_lease(Duration::from_secs(3)).unwrap();
    mine.put("/t/mine", b"v", Some(lease.id())).unwrap();
    other.revoke_lease(lease.id()).unwrap();
    assert_eq!(other.get("/t/mine").unwrap(), None);
    assert_eq!(
        lease.wait_lost(lease.ttl() / 3 + Duration::from_secs(1)),
        Some(LeaseLost::Expired)
    );
    assert_eq!(
        mine.put("/t/again", b"v", Some(lease.id())),
        Err(StoreError::LeaseNotFound(lease.id()))
    );
}

/// The change events of a watch until `n` of them arrived; panics on a signal.
fn changes(watch: &weft::adapters::cluster::Watch, n: usize) -> Vec<WatchEvent> {
    (0..n).map(|_| c::next_change(watch)).collect()
}

/// etcd killed, then restarted on the same data: meanwhile calls fail fast with
/// Unavailable naming the endpoint, the watch says Disconnected, a lease not renewed for its
/// TTL is reported lost while a longer one survives; afterwards the watch resumes from the
/// revision after the last event it delivered, losing none (every revision of the store is
/// seen exactly once), and the lost lease is revoked, its key deleted.
#[test]
fn etcd_restart_disconnects_and_resumes() {
    if !runnable("etcd_restart_disconnects_and_resumes") {
        return;
    }
    let mut etcd = Etcd::start("cs");
    let store = etcd.store();
    let short = store.grant_lease(Duration::from_secs(2)).unwrap();
    let long = store.grant_lease(Duration::from_secs(60)).unwrap();
    let first = store.put("/r/short", b"s", Some(short.id())).unwrap();
    store.put("/r/long", b"l", Some(long.id())).unwrap();
    let before = store.put("/r/plain", b"p", None).unwrap();
    let watch = store.watch("/r/", first).unwrap();
    let seen = changes(&watch, 3);
    assert_eq!(seen.last().unwrap().revision(), Some(before));

    etcd.kill();
    assert_eq!(
        watch.recv_timeout(Duration::from_secs(5)),
        Ok(WatchEvent::Disconnected)
    );
    let asked = Instant::now();
    let err = store.get("/r/plain").unwrap_err();
    assert!(
        asked.elapsed() <= Duration::from_millis(3500),
        "an unreachable etcd took {:?} to fail",
        asked.elapsed()
    );
    assert!(
        matches!(&err, StoreError::Unavailable { endpoints, .. } if endpoints == &etcd.url()),
        "{err:?}"
    );
    assert!(err.to_string().contains("http://127.0.0.1:2379"), "{err}");
    assert!(matches!(
        store.put("/r/x", b"x", None),
        Err(StoreError::Unavailable { .. })
    ));
    assert!(matches!(
        store.grant_lease(Duration::from_secs(5)),
        Err(StoreError::Unavailable { .. })
    ));
    assert_eq!(
        short.wait_lost(Duration::from_secs(4)),
        Some(LeaseLost::NotRenewed)
    );
    assert_eq!(long.lost(), None);

    etcd.start_again();
    // Written at once, likely before the watch re-established itself: resuming from "now"
    // instead of from its next revision would lose these.
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(store.put(&format!("/r/after/{i}"), b"a", None).unwrap());
    }
    assert_eq!(
        watch.recv_timeout(Duration::from_secs(10)),
        Ok(WatchEvent::Resumed {
            from_revision: before + 1
        })
    );
    // The five puts and the revocation of the lost lease's key, in some order of revisions.
    let after = changes(&watch, 6);
    let revisions: Vec<Revision> = after.iter().filter_map(WatchEvent::revision).collect();
    let expected: Vec<Revision> = (before + 1..=before + 6).collect();
    assert_eq!(
        revisions, expected,
        "every revision once, in order: {after:?}"
    );
    assert!(after
        .iter()
        .any(|e| matches!(e, WatchEvent::Delete { key, .. } if key == "/r/short")));
    for r in written {
        assert!(after.iter().any(|e| e.revision() == Some(r)));
    }
    assert_eq!(store.get("/r/short").unwrap(), None);
    assert!(store.get("/r/long").unwrap().is_some());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(long.lost(), None, "the long lease is kept alive again");
    assert_eq!(watch.try_recv(), Err(WatchRecvError::Timeout));
}

/// A store call whose answer does not matter, only its error.
type Call<'a> = Box<dyn Fn() -> Result<(), StoreError> + 'a>;

/// An endpoint nobody answers on: refused (a namespace address with no listener) and a black
/// hole (an address behind a veth whose far end has no such address and a neighbour entry
/// pointing at a MAC nobody has, so connection attempts vanish without an answer). Every
/// call fails within the request timeout with Unavailable naming the endpoint; making the
/// store itself does not fail.
#[test]
fn unreachable_endpoint_fails_fast_naming_it() {
    if !runnable("unreachable_endpoint_fails_fast_naming_it") {
        return;
    }
    let ns = Netns::new("cs");
    let sink = Netns::new("csk");
    ns.ip(&[
        "link", "add", "hole", "type", "veth", "peer", "name", "sink", "netns", &sink.name,
    ]);
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "hole"]);
    ns.ip(&["link", "set", "hole", "up"]);
    sink.ip(&["link", "set", "sink", "up"]);
    ns.ip(&[
        "neigh",
        "add",
        "10.99.0.2",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "hole",
        "nud",
        "permanent",
    ]);
    // A refusal fails at once; a black hole at the connect timeout (2 s).
    for (url, limit) in [
        ("http://127.0.0.1:2379", Duration::from_millis(500)),
        ("http://10.99.0.2:2379", Duration::from_millis(2500)),
    ] {
        let config = EtcdConfig::new(vec![url.to_string()]);
        let store = store_in(&ns, &config).expect("making a store does not need etcd");
        let calls: [(&str, Call); 4] = [
            ("get", Box::new(|| store.get("/k").map(|_| ()))),
            ("put", Box::new(|| store.put("/k", b"v", None).map(|_| ()))),
            (
                "grant",
                Box::new(|| store.grant_lease(Duration::from_secs(5)).map(|_| ())),
            ),
            ("watch", Box::new(|| store.watch("/", 1).map(|_| ()))),
        ];
        for (what, call) in calls {
            let t = Instant::now();
            let err = call().expect_err("nobody answers");
            let took = t.elapsed();
            assert!(took <= limit, "{what} on {url} took {took:?}");
            assert!(
                matches!(err, StoreError::Unavailable { .. }),
                "{what} on {url}: {err:?}"
            );
            assert!(err.to_string().contains(url), "{what}: {err}");
        }
    }
}

/// TLS with client certificates made for the test: the store works with the CA, its
/// certificate and key; without a client certificate, or trusting another CA, it fails
/// naming the endpoint.
#[test]
fn tls_with_client_certificates() {
    if !runnable("tls_with_client_certificates") {
        return;
    }
    let etcd = Etcd::start_tls("cs");
    let store = etcd.store();
    let rev = store.put("/tls/k", b"v", None).unwrap();
    assert_eq!(store.get("/tls/k").unwrap().unwrap().mod_revision, rev);

    let mut no_cert = etcd.config();
    no_cert.tls = Some(TlsFiles {
        ca: etcd.tls_files().ca,
        cert: None,
        key: None,
    });
    let mut wrong_ca = etcd.config();
    wrong_ca.tls = Some(TlsFiles {
        ca: Some(etcd.dir.join("server.crt")),
        ..etcd.tls_files()
    });
    for (what, config) in [("no client certificate", no_cert), ("wrong CA", wrong_ca)] {
        let store = store_in(&etcd.ns, &config).unwrap();
        let err = store.get("/tls/k").expect_err(what);
        assert!(err.to_string().contains(&etcd.url()), "{what}: {err}");
    }

    let mut missing = etcd.config();
    missing.tls = Some(TlsFiles {
        key: None,
        ..etcd.tls_files()
    });
    assert!(matches!(
        store_in(&etcd.ns, &missing),
        Err(StoreError::Config(_))
    ));
}

//! The agent's cluster task: this host's part of the overlay control plane, on its own
//! thread (as the DNS server), started when a cluster is configured.
//!
//! - **Join**: a lease of `lease_ttl`, and `hosts/<node>` written under it. A record of the
//!   same node with another VTEP under a live lease is another host using this `--node`: the
//!   task refuses to take its place.
//! - **Sync**: a snapshot of `/weft/v1/` builds the [`ClusterView`] and the set of overlay
//!   networks; each network is mirrored into the local store (so `network ls` and local
//!   commands find it) and built in the kernel; every VXLAN device's entries are repaired
//!   against the view; this node's own endpoints are registered again under the lease
//!   (records of endpoints gone meanwhile were under an earlier lease, and go with it).
//! - **Watch** from the snapshot's revision + 1: events that arrive together are applied as
//!   one batch, each becoming the neighbour/FDB changes the view computes (never a re-dump).
//!   A lost connection keeps everything as it is (traffic keeps flowing); a compacted
//!   history, or a lost lease, ends in a new join and sync.
//! - **Drift**: when the agent sees a neighbour or FDB entry of a VXLAN device removed
//!   ([`Drift::removed`]), the entry is written back if the view still wants it (someone else
//!   deleted it), with one lookup in the view: the task's own removals (a sandbox leaving
//!   elsewhere) come back as notifications too, and must not cost every host a read of its
//!   devices. An entry added or changed ([`Drift::changed`]) is looked up the same way (the
//!   task's own writes agree with the view); one that does not makes its device read back.
//!   When notifications were lost, or a VXLAN device was made again or set down or up
//!   ([`Drift::repair_all`]), and every [`REPAIR_EVERY`] in any case, each device's entries
//!   are read back and repaired (level-triggered, never by replaying the notifications), and
//!   a device found missing is built again.
//! - **Quarantine**: address claims of nodes gone for [`QUARANTINE`] are released.
//! - **Members**: the firewall's `vteps4`/`vteps6` (only their addresses may send to a VXLAN
//!   port) follow the view's live hosts, with this one: element adds and deletes as hosts
//!   join and leave, a read-back and repair with every entry repair and resync. Until the
//!   first resync the sets are left as they are (an agent restarted while etcd is down keeps
//!   the members it had).
//! - **Orphans**: this node's own address claims and endpoint records whose sandbox is not in
//!   the local store (removed while etcd was unreachable, or by a command killed half-way)
//!   are deleted once they stayed so for [`ORPHAN_GRACE`], at every sync and every
//!   [`QUARANTINE_EVERY`] (level-triggered: compared, never remembered from the failure).
//! - **Names**: other nodes' endpoints go to the DNS task as the view changes (all of them
//!   after each sync, then one change per endpoint event), so that sandboxes here resolve
//!   sandboxes elsewhere on the overlay networks they share ([`Control::send_names_to`]).
//!
//! The decisions live in [`Control`], which takes the store and a [`Host`] (local store and
//! kernel) as parameters, so they are tested with the in-memory store and a recording host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::adapters::cluster::etcd::{EtcdConfig, EtcdStore, TlsFiles};
use crate::adapters::cluster::{
    ClusterStore, Compare, Lease, Revision, StoreError, Txn, TxnOp, WatchEvent, WatchRecvError,
};
use crate::core::agent::{AgentStatus, ClusterHost};
use crate::core::cluster::claims::Claims;
use crate::core::cluster::entries::{self, Change, Entry, Removed};
use crate::core::cluster::keys::{self, Key};
use crate::core::cluster::orphans::{orphaned, LocalSandbox, Orphans};
use crate::core::cluster::quarantine::{releasable, Quarantine};
use crate::core::cluster::records::{AddressRecord, EndpointRecord, HostRecord, UnderlayRecord};
use crate::core::cluster::view::{ClusterView, EndpointKey};
use crate::core::cluster_config::ClusterConfig;
use crate::core::dns::remote::NameChange;
use crate::core::driver::overlay::{overlay_bridge_name, vxlan_name};
use crate::core::driver::DriverData;
use crate::core::model::Network;
use crate::core::overlay_observed::VxlanObserved;
use crate::core::plan::Op;
use crate::engine::cluster::Membership;

use super::watch::MAX_REMOVED;

/// How long the task waits for a watch event before doing its periodic work.
const TICK: Duration = Duration::from_millis(100);
/// How often every VXLAN device's entries are read back and repaired without a notification
/// asking for it. Rare: a read-back costs as much as the cluster is large, and every drift
/// the kernel announces is handled as it comes (an entry removed or changed: looked up; a
/// device made again or set down or up, or notifications lost: read back at once). This
/// covers what nothing announces.
pub const REPAIR_EVERY: Duration = Duration::from_secs(30);
/// How long the task waits before trying etcd again after a failure.
const RETRY: Duration = Duration::from_secs(1);
/// How often the firewall's members are tried again while unknown (their table was being
/// rebuilt, or a write failed): soon, but not on every tick of a lasting failure.
const VTEPS_RETRY: Duration = Duration::from_millis(300);
/// How often dead nodes' address claims are looked at.
const QUARANTINE_EVERY: Duration = Duration::from_secs(5);
/// How long a node must have been gone before its address claims are released: long enough
/// that an agent restarting (or a host rebooting, or cut off from etcd for a while) finds its
/// sandboxes' addresses still its own and re-registers them, short enough that a dead host's
/// addresses come back within minutes. At least six lease TTLs, so that a node whose lease
/// expired through a brief etcd outage has several TTLs to join again.
pub fn quarantine_period(ttl: Duration) -> Duration {
    Duration::from_secs(60).max(ttl.saturating_mul(6))
}
/// How long one of this node's claims or endpoint records must stay without a local sandbox
/// before it is deleted: a sandbox being made claims its address through the agent a moment
/// before its local record is written.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10);
/// How many errors the status keeps.
const KEEP_ERRORS: usize = 10;

/// The local side of the control plane: this host's store and kernel.
pub trait Host {
    /// Mirrors the cluster's network into the local store (with this host's tunnel source)
    /// and builds what is missing of its kernel objects.
    fn network_up(&mut self, net: &Network) -> Result<()>;
    /// Removes a network's local mirror and kernel objects.
    fn network_down(&mut self, id: &str) -> Result<()>;
    /// The ids of the overlay networks mirrored locally.
    fn local_overlays(&mut self) -> Result<Vec<String>>;
    /// Applies entry operations; returns the errors.
    fn apply(&mut self, ops: &[Op]) -> Vec<String>;
    /// Reads back a VXLAN device (`None`: it does not exist).
    fn observe_vxlan(&mut self, ifname: &str) -> Result<Option<VxlanObserved>>;
    /// This node's settled endpoints on overlay networks, from the local store.
    fn own_endpoints(&mut self, node: &str) -> Result<Vec<EndpointRecord>>;
    /// The member VTEPs the firewall lets send to VXLAN ports (`None`: weft's table or its
    /// sets are not there).
    fn vteps(&mut self) -> Result<Option<BTreeSet<IpAddr>>> {
        Ok(None)
    }
    /// Adds and removes member VTEPs, in one batch.
    fn change_vteps(&mut self, _add: &[IpAddr], _remove: &[IpAddr]) -> Result<()> {
        Ok(())
    }
    /// This host's underlay as it is now (`None`: not known here).
    fn underlay(&mut self) -> Result<Option<UnderlayRecord>> {
        Ok(None)
    }
    /// Every sandbox in the local store, whatever its state (one being made or removed
    /// included), with the overlay-relevant networks it is on.
    fn local_sandboxes(&mut self) -> Result<BTreeMap<String, LocalSandbox>>;
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The store failed; try again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another live host uses this node name.
    #[error("node name {node:?} is taken: a live host registered it with VTEP {theirs} (this host advertises {ours}); give this host another --node")]
    NodeTaken {
        /// The name.
        node: String,
        /// Their VTEP.
        theirs: IpAddr,
        /// Ours.
        ours: IpAddr,
    },
}

/// The control plane's state and decisions.
pub struct Control {
    m: Arc<Membership>,
    ttl: Duration,
    lease: Option<Lease>,
    view: ClusterView,
    /// The cluster's overlay networks by id.
    networks: BTreeMap<String, Network>,
    /// This node's endpoint records: key → (sandbox id, mod revision).
    own_records: BTreeMap<String, (String, Revision)>,
    orphans: Orphans,
    quarantine: Quarantine,
    revision: Revision,
    status: Arc<Mutex<AgentStatus>>,
    /// Whether the view was read from the store at least once (before that it says nothing
    /// about who the members are).
    view_ready: bool,
    /// The member VTEPs last written to (or read from) the firewall; `None`: unknown, read
    /// back next time.
    vteps: Option<BTreeSet<IpAddr>>,
    /// This host's underlay, published with the host record (none if it could not be read).
    underlay: Option<UnderlayRecord>,
    /// Where other nodes' endpoints go for DNS, as they change ([`Control::send_names_to`]).
    names: Option<Box<dyn FnMut(NameChange) + Send>>,
}

impl Control {
    /// A control plane for `m`, not yet joined.
    pub fn new(m: Arc<Membership>, ttl: Duration, status: Arc<Mutex<AgentStatus>>) -> Self {
        let view = ClusterView::new(&m.node);
        Control {
            m,
            ttl,
            lease: None,
            view,
            networks: BTreeMap::new(),
            own_records: BTreeMap::new(),
            orphans: Orphans::new(ORPHAN_GRACE.as_secs()),
            quarantine: Quarantine::new(quarantine_period(ttl).as_secs()),
            revision: 0,
            status,
            view_ready: false,
            vteps: None,
            underlay: None,
            names: None,
        }
    }

    /// Sends other nodes' endpoints to `to` as they change: all of them after each sync,
    /// then each endpoint that appears, changes or goes (the DNS task answers their names).
    pub fn send_names_to(&mut self, to: impl FnMut(NameChange) + Send + 'static) {
        self.names = Some(Box::new(to));
    }

    /// Sends every other node's endpoint (after a sync).
    fn names_reset(&mut self) {
        if let Some(send) = self.names.as_mut() {
            let all = self
                .view
                .remote_endpoints()
                .map(|e| e.record.clone())
                .collect();
            send(NameChange::Reset(all));
        }
    }

    /// Sends what became of endpoint `key` in the view (after its watch event).
    fn name_changed(&mut self, key: EndpointKey) {
        if key.1 == self.m.node {
            return;
        }
        if let Some(send) = self.names.as_mut() {
            match self.view.endpoint(&key) {
                Some(e) => send(NameChange::Put(e.record.clone())),
                None => send(NameChange::Remove(key)),
            }
        }
    }

    /// Sets the underlay published at the next join (networks created elsewhere then fit
    /// their MTU to it).
    pub fn set_underlay(&mut self, underlay: Option<UnderlayRecord>) {
        self.underlay = underlay;
    }

    /// Reads this host's underlay again (its MTU changed): publishes it under the lease
    /// (networks created from now on fit it), builds the networks refused for their MTU that
    /// fit now, and reports those built here that no longer fit. Those keep running: their
    /// MTU is the same on every host, and tearing one down would cut its sandboxes here off
    /// altogether rather than drop only the packets larger than the underlay carries; the
    /// status says which network, the numbers and what to do.
    pub fn follow_underlay(&mut self, host: &mut dyn Host) {
        let now = match host.underlay() {
            Ok(Some(u)) => u,
            Ok(None) => return,
            Err(e) => {
                self.error(format!("reading this host's underlay: {e:#}"));
                return;
            }
        };
        if self.underlay.as_ref() == Some(&now) {
            return;
        }
        tracing::info!(ifname = %now.ifname, mtu = now.mtu, "cluster: this host's underlay changed");
        self.underlay = Some(now.clone());
        // Without a lease, the next join publishes it.
        if let Some(lease) = self.lease.as_ref().filter(|l| l.lost().is_none()) {
            let key = keys::underlay_key(&self.m.node);
            if let Err(e) = self.m.store.put(&key, &now.encode(), Some(lease.id())) {
                self.error(format!("publishing this host's underlay: {e}"));
            }
        }
        let nets: Vec<Network> = self.networks.values().cloned().collect();
        for net in nets {
            let building = format!("building overlay network {:?}: ", net.name);
            let too_small = format!("overlay network {:?} no longer fits", net.name);
            if net.mtu <= now.max_mtu() {
                self.forget_errors(&[&building, &too_small]);
                // Built if it was refused (its device is missing); else entries checked.
                self.repair(&net.id, host);
                continue;
            }
            match host.observe_vxlan(&vxlan_name(&net.id)) {
                Ok(Some(_)) => self.error(format!(
                    "{too_small} host {}'s underlay: its MTU is {}, but {} has MTU {} now and VXLAN needs {} bytes, so at most {}; it keeps running here and drops larger packets; raise {}'s MTU to {}, or recreate the network with --mtu {}",
                    self.m.node,
                    net.mtu,
                    now.ifname,
                    now.mtu,
                    now.overhead,
                    now.max_mtu(),
                    now.ifname,
                    u64::from(net.mtu) + u64::from(now.overhead),
                    now.max_mtu(),
                )),
                // Refused already: the refusal again, with the new numbers.
                _ => self.repair(&net.id, host),
            }
        }
    }

    /// Drops the status's errors that start with any of `prefixes` (what they said is
    /// over).
    fn forget_errors(&self, prefixes: &[&str]) {
        if let Ok(mut s) = self.status.lock() {
            s.cluster
                .errors
                .retain(|e| !prefixes.iter().any(|p| e.starts_with(p)));
        }
    }

    /// The view (for tests and names).
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// Whether the lease is held (granted and not lost).
    pub fn holds_lease(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.lost().is_none())
    }

    /// Why the lease was lost, if it was.
    pub fn lease_lost(&self) -> Option<crate::adapters::cluster::LeaseLost> {
        self.lease.as_ref().and_then(|l| l.lost())
    }

    /// Grants a lease and writes this node's host record under it.
    pub fn join(&mut self) -> Result<(), JoinError> {
        self.m.set_lease(None);
        self.lease = None;
        let store = self.m.store.clone();
        let lease = store.grant_lease(self.ttl)?;
        let key = Key::Host {
            node: self.m.node.clone(),
        }
        .render();
        let record = HostRecord {
            node: self.m.node.clone(),
            vtep: self.m.vtep,
            vxlan_port: self.m.vxlan_port,
            started: crate::engine::now(),
        }
        .encode();
        let put = TxnOp::Put {
            key: key.clone(),
            value: record,
            lease: Some(lease.id()),
        };
        let underlay = self.underlay.as_ref().map(|u| TxnOp::Put {
            key: keys::underlay_key(&self.m.node),
            value: u.encode(),
            lease: Some(lease.id()),
        });
        let with_underlay = |txn: Txn| match &underlay {
            Some(op) => txn.and_then(op.clone()),
            None => txn,
        };
        // A few rounds: the record may come and go between the compare and the read.
        for _ in 0..5 {
            let fresh = with_underlay(
                Txn::new()
                    .when(Compare::Absent(key.clone()))
                    .and_then(put.clone()),
            );
            if store.txn(fresh)?.succeeded {
                self.lease = Some(lease);
                self.m.set_lease(self.lease.as_ref().map(|l| l.id()));
                return Ok(());
            }
            let Some(cur) = store.get(&key)? else {
                continue;
            };
            // A record of ours (same VTEP: this host's agent, restarted), or one without a
            // lease (not a live host's), is taken over; a live other host's is not.
            let theirs = HostRecord::decode(&self.m.node, &cur.value).ok();
            let ours = theirs.as_ref().is_none_or(|h| h.vtep == self.m.vtep);
            if !ours && cur.lease.is_some() {
                let _ = store.revoke_lease(lease.id());
                return Err(JoinError::NodeTaken {
                    node: self.m.node.clone(),
                    theirs: theirs.map(|h| h.vtep).unwrap_or(self.m.vtep),
                    ours: self.m.vtep,
                });
            }
            let swap = with_underlay(
                Txn::new()
                    .when(Compare::ModRevision(key.clone(), cur.mod_revision))
                    .and_then(put.clone()),
            );
            if store.txn(swap)?.succeeded {
                self.lease = Some(lease);
                self.m.set_lease(self.lease.as_ref().map(|l| l.id()));
                return Ok(());
            }
        }
        Err(JoinError::Store(StoreError::Rejected {
            endpoints: store.endpoints(),
            reason: format!("the record {key} kept changing while this node joined"),
        }))
    }

    /// Reads the whole cluster and makes this host match it: networks, entries, own
    /// endpoints. Returns the snapshot's revision (watch from the next).
    pub fn resync(&mut self, host: &mut dyn Host) -> Result<Revision, StoreError> {
        let snap = self.m.store.snapshot(keys::PREFIX)?;
        let mut view = ClusterView::new(&self.m.node);
        let mut networks = BTreeMap::new();
        let mut claims = Claims::default();
        let mut own_records = BTreeMap::new();
        for kv in &snap.kvs {
            if let Some(Key::Endpoint { node, sandbox, .. }) = Key::parse(&kv.key) {
                if node == self.m.node {
                    own_records.insert(kv.key.clone(), (sandbox, kv.mod_revision));
                }
            }
            match Key::parse(&kv.key) {
                Some(Key::Network { name }) => {
                    if let Some(net) = decode_network(&name, &kv.value) {
                        networks.insert(net.id.clone(), net);
                    }
                }
                Some(Key::Address { .. }) => {
                    if let Ok(c) = AddressRecord::decode(&kv.value) {
                        claims.insert(kv.key.clone(), c, kv.mod_revision);
                    }
                }
                _ => {
                    view.apply(&kv.key, Some(&kv.value));
                }
            }
        }
        self.view = view;
        self.view_ready = true;
        self.names_reset();
        // Shared with the attaches ([`Membership::claims`]).
        *self.m.claims() = Some(claims);
        self.own_records = own_records;
        self.revision = snap.revision;
        // Members first: a device (re)built below takes datagrams from the members only.
        self.sync_vteps(host, true);
        let gone: Vec<String> = match host.local_overlays() {
            Ok(ids) => ids
                .into_iter()
                .filter(|id| !networks.contains_key(id))
                .collect(),
            Err(e) => {
                self.error(format!("listing local overlay networks: {e:#}"));
                Vec::new()
            }
        };
        for id in gone {
            if let Err(e) = host.network_down(&id) {
                self.error(format!("removing overlay network {id}: {e:#}"));
            }
        }
        self.networks = networks;
        let all: Vec<Network> = self.networks.values().cloned().collect();
        for net in &all {
            if let Err(e) = host.network_up(net) {
                self.error(format!("building overlay network {:?}: {e:#}", net.name));
            }
        }
        self.repair_all(host);
        self.register_own(host)?;
        self.publish();
        tracing::info!(
            revision = snap.revision,
            hosts = self.view.hosts().len(),
            networks = self.networks.len(),
            "cluster: synchronised"
        );
        Ok(snap.revision)
    }

    /// Writes this node's endpoints under the lease. Records of endpoints that no longer
    /// exist here are left alone: they were written under an earlier lease (of this process
    /// or of an agent before it), which expires with them.
    fn register_own(&mut self, host: &mut dyn Host) -> Result<(), StoreError> {
        let Some(lease) = self.lease.as_ref().map(|l| l.id()) else {
            return Ok(());
        };
        let mine = match host.own_endpoints(&self.m.node) {
            Ok(v) => v,
            Err(e) => {
                self.error(format!("reading this host's endpoints: {e:#}"));
                return Ok(());
            }
        };
        for r in mine {
            let Some(net_name) = self.networks.get(&r.network).map(|n| n.name.clone()) else {
                continue;
            };
            // Its addresses first: claims carry no lease, so a host cut off for longer than
            // the quarantine finds them released, and perhaps given to another sandbox. An
            // endpoint registered over another's address would make two sandboxes answer for
            // it: it stays unregistered, and the status says why.
            if let Some((ip, holder)) = self.reclaim(&r)? {
                self.error(format!(
                    "sandbox {:?} is not registered on overlay network {net_name:?}: its address {ip} was released while this host was away and is now sandbox {holder}'s; remove it and run it again",
                    r.name
                ));
                continue;
            }
            let key = Key::Endpoint {
                network: r.network.clone(),
                node: self.m.node.clone(),
                sandbox: r.sandbox.clone(),
            }
            .render();
            self.m.store.put(&key, &r.encode(), Some(lease))?;
        }
        Ok(())
    }

    /// Makes sure each address of this node's endpoint `r` is claimed for its sandbox (claims
    /// it again, create-if-absent, when it is not): `Some((ip, holder))` when another sandbox
    /// holds one of them.
    fn reclaim(&mut self, r: &EndpointRecord) -> Result<Option<(IpAddr, String)>, StoreError> {
        let ips = [r.ipv4.map(IpAddr::V4), r.ipv6.map(IpAddr::V6)];
        for ip in ips.into_iter().flatten() {
            let key = Key::Address {
                network: r.network.clone(),
                ip,
            }
            .render();
            let holder = |kv: &crate::adapters::cluster::KeyValue| {
                AddressRecord::decode(&kv.value)
                    .map(|c| c.sandbox)
                    .unwrap_or_else(|_| "an unreadable claim".into())
            };
            let held = match self.m.store.get(&key)? {
                Some(kv) => Some(holder(&kv)),
                None => {
                    let claim = AddressRecord {
                        sandbox: r.sandbox.clone(),
                        node: self.m.node.clone(),
                    };
                    let txn = Txn::new()
                        .when(Compare::Absent(key.clone()))
                        .and_then(TxnOp::Put {
                            key: key.clone(),
                            value: claim.encode(),
                            lease: None,
                        });
                    if self.m.store.txn(txn)?.succeeded {
                        tracing::info!(%key, "cluster: claimed a released address of a sandbox here again");
                        None
                    } else {
                        // Taken between the read and the claim.
                        self.m.store.get(&key)?.map(|kv| holder(&kv))
                    }
                }
            };
            if let Some(h) = held.filter(|h| *h != r.sandbox) {
                return Ok(Some((ip, h)));
            }
        }
        Ok(None)
    }

    /// Applies a batch of watch changes (signals are the caller's): the networks' mirrors,
    /// then every entry change as one list of operations.
    pub fn apply_events(&mut self, events: &[WatchEvent], host: &mut dyn Host) {
        let mut changes: Vec<Change> = Vec::new();
        let mut rebuilt: BTreeSet<String> = BTreeSet::new();
        let now = crate::engine::now();
        for ev in events {
            let (key, value) = match ev {
                WatchEvent::Put(kv) => (kv.key.as_str(), Some(kv)),
                WatchEvent::Delete { key, .. } => (key.as_str(), None),
                _ => continue,
            };
            if let Some(r) = ev.revision() {
                self.revision = self.revision.max(r);
            }
            if let Some(Key::Endpoint { node, sandbox, .. }) = Key::parse(key) {
                if node == self.m.node {
                    match value {
                        Some(kv) => {
                            self.own_records
                                .insert(key.to_string(), (sandbox, kv.mod_revision));
                        }
                        None => {
                            self.own_records.remove(key);
                        }
                    }
                }
            }
            match Key::parse(key) {
                Some(Key::Network { name }) => {
                    let old = self.networks.values().find(|n| n.name == name).cloned();
                    let new = value.and_then(|kv| decode_network(&name, &kv.value));
                    if let Some(o) = &old {
                        if new.as_ref().map(|n| &n.id) != Some(&o.id) {
                            self.networks.remove(&o.id);
                            if let Err(e) = host.network_down(&o.id) {
                                self.error(format!("removing overlay network {name:?}: {e:#}"));
                            }
                        }
                    }
                    if let Some(n) = new {
                        self.networks.insert(n.id.clone(), n.clone());
                        match host.network_up(&n) {
                            Ok(()) => {
                                rebuilt.insert(n.id.clone());
                            }
                            Err(e) => {
                                self.error(format!("building overlay network {name:?}: {e:#}"))
                            }
                        }
                    }
                }
                Some(Key::Address { .. }) => match value {
                    Some(kv) => {
                        if let Ok(c) = AddressRecord::decode(&kv.value) {
                            if let Some(claims) = self.m.claims().as_mut() {
                                claims.insert(key.to_string(), c, kv.mod_revision);
                            }
                        }
                    }
                    None => {
                        if let Some(claims) = self.m.claims().as_mut() {
                            claims.remove(key);
                        }
                    }
                },
                Some(Key::Host { node }) => {
                    let known = self.view.hosts().contains_key(&node);
                    match value {
                        Some(_) => {
                            if !known {
                                tracing::info!(%node, "cluster: node joined");
                            }
                            self.quarantine.host_back(&node)
                        }
                        None => {
                            tracing::info!(%node, "cluster: node left");
                            self.quarantine.host_gone(&node, now)
                        }
                    }
                    changes.extend(self.view.apply(key, value.map(|kv| kv.value.as_slice())));
                }
                Some(Key::Endpoint {
                    network,
                    node,
                    sandbox,
                }) => {
                    changes.extend(self.view.apply(key, value.map(|kv| kv.value.as_slice())));
                    self.name_changed((network, node, sandbox));
                }
                _ => changes.extend(self.view.apply(key, value.map(|kv| kv.value.as_slice()))),
            }
        }
        let ops = self.ops_of(&changes);
        let errors = host.apply(&ops);
        if !errors.is_empty() {
            tracing::info!(
                "cluster: entry writes failed, repairing instead: {}",
                errors.join("; ")
            );
            // The device may have been missing or half-made: read back and repair the
            // networks concerned rather than trusting the failed writes.
            let nets: BTreeSet<String> = changes.iter().map(|c| network_of(c).clone()).collect();
            for n in nets {
                self.repair(&n, host);
            }
        }
        for id in rebuilt {
            self.repair(&id, host);
        }
        self.sync_vteps(host, false);
        self.publish();
    }

    /// Whether the firewall's members are unknown while overlay networks are here (their
    /// table was missing or a write failed): the task tries again shortly (`VTEPS_RETRY`).
    pub fn vteps_pending(&self) -> bool {
        self.view_ready && self.vteps.is_none() && !self.networks.is_empty()
    }

    /// Makes the firewall's member VTEPs the view's live hosts and this one: reads the sets
    /// back first with `read_back` (or when what they hold is unknown), else changes them by
    /// the difference from what was written last (incremental: one join or leave, one
    /// element). Nothing before the view was read from the store.
    pub fn sync_vteps(&mut self, host: &mut dyn Host, read_back: bool) {
        if !self.view_ready {
            return;
        }
        let want = crate::core::cluster::vteps::members(&self.view, self.m.vtep);
        let have = match self.vteps.take() {
            Some(h) if !read_back => h,
            _ => match host.vteps() {
                Ok(Some(h)) => h,
                // No table yet: nothing to protect until a network makes it.
                Ok(None) => return,
                Err(e) => {
                    self.error(format!("reading the firewall's member VTEPs: {e:#}"));
                    return;
                }
            },
        };
        let changes = crate::core::cluster::vteps::changes(&want, &have);
        if changes.is_empty() {
            self.vteps = Some(want);
            return;
        }
        tracing::info!(
            add = ?changes.add,
            remove = ?changes.remove,
            "cluster: member VTEPs in the firewall"
        );
        match host.change_vteps(&changes.add, &changes.remove) {
            Ok(()) => self.vteps = Some(want),
            Err(e) => self.error(format!("updating the firewall's member VTEPs: {e:#}")),
        }
    }

    /// The device operations of `changes` (only on networks this host has).
    fn ops_of(&self, changes: &[Change]) -> Vec<Op> {
        changes
            .iter()
            .filter(|c| self.networks.contains_key(network_of(c)))
            .map(|c| c.op(&vxlan_name(network_of(c))))
            .collect()
    }

    /// Reads back one network's device and makes its entries what the view wants; builds
    /// the network again if its device is gone.
    pub fn repair(&mut self, id: &str, host: &mut dyn Host) {
        let Some(net) = self.networks.get(id).cloned() else {
            return;
        };
        let ifname = vxlan_name(id);
        let observed = match host.observe_vxlan(&ifname) {
            Ok(Some(o)) => o,
            Ok(None) => {
                if let Err(e) = host.network_up(&net) {
                    self.error(format!("building overlay network {:?}: {e:#}", net.name));
                    return;
                }
                match host.observe_vxlan(&ifname) {
                    Ok(Some(o)) => o,
                    _ => return,
                }
            }
            Err(e) => {
                self.error(format!("reading {ifname}: {e:#}"));
                return;
            }
        };
        let changes = entries::repair(id, &self.view.desired(id), &observed);
        if changes.is_empty() {
            return;
        }
        let ops = self.ops_of(&changes);
        tracing::info!(
            network = %net.name,
            "repairing {} neighbour/FDB entries on {ifname}",
            ops.len()
        );
        for e in host.apply(&ops) {
            self.error(format!("repairing {ifname}: {e}"));
        }
    }

    /// Repairs every network's entries, and the firewall's member VTEPs (read back).
    pub fn repair_all(&mut self, host: &mut dyn Host) {
        let ids: Vec<String> = self.networks.keys().cloned().collect();
        for id in ids {
            self.repair(&id, host);
        }
        self.sync_vteps(host, true);
    }

    /// Writes back the entries of `removed` (each a removal the kernel announced from the
    /// VXLAN device it names) that the view still wants: someone else deleted them (drift).
    /// The rest — the agent's own removals, a sandbox leaving elsewhere — cost one lookup
    /// each and nothing more: no device is read back. A network whose writes fail is read
    /// back and repaired, once. Returns how many entries were written back.
    pub fn restore(&mut self, removed: &[(String, Removed)], host: &mut dyn Host) -> usize {
        // Device name → network id: a few networks, looked up per removal.
        let ids: BTreeMap<String, &String> = self
            .networks
            .keys()
            .map(|id| (vxlan_name(id), id))
            .collect();
        let changes: BTreeSet<Change> = removed
            .iter()
            .filter_map(|(ifname, r)| {
                let id = *ids.get(ifname)?;
                let entry = self.view.wanted(id, r)?;
                Some(Change::Add {
                    network: id.clone(),
                    entry,
                })
            })
            .collect();
        if changes.is_empty() {
            return 0;
        }
        let changes: Vec<Change> = changes.into_iter().collect();
        let ops = self.ops_of(&changes);
        tracing::info!(
            "cluster: {} neighbour/FDB entries deleted behind the agent's back: writing them back",
            ops.len()
        );
        let errors = host.apply(&ops);
        if !errors.is_empty() {
            tracing::info!(
                "cluster: writing entries back failed, repairing instead: {}",
                errors.join("; ")
            );
            let nets: BTreeSet<String> = changes.iter().map(|c| network_of(c).clone()).collect();
            for n in nets {
                self.repair(&n, host);
            }
        }
        changes.len()
    }

    /// Reads back the devices on which `changed` (each an entry the kernel announced as
    /// added or changed on the VXLAN device it names) is not what the view wants: someone
    /// else wrote it (a MAC sent to a rogue VTEP, an address answered with another MAC).
    /// The task's own writes agree with the view and cost one lookup each, no read-back.
    /// Returns how many devices were read back.
    pub fn check_changed(&mut self, changed: &[(String, Entry)], host: &mut dyn Host) -> usize {
        let ids: BTreeMap<String, &String> = self
            .networks
            .keys()
            .map(|id| (vxlan_name(id), id))
            .collect();
        let drifted: BTreeSet<String> = changed
            .iter()
            .filter_map(|(ifname, seen)| {
                let id = *ids.get(ifname)?;
                (!self.view.agrees(id, seen)).then(|| id.clone())
            })
            .collect();
        for id in &drifted {
            tracing::info!(
                network = %id,
                "cluster: neighbour/FDB entries changed behind the agent's back: reading the device back"
            );
            self.repair(id, host);
        }
        drifted.len()
    }

    /// Releases the address claims of nodes gone for longer than the quarantine, each with a
    /// compare on its revision (a claim taken again meanwhile stays). Returns how many.
    pub fn release_quarantined(&mut self, now: u64) -> Result<usize, StoreError> {
        let live: BTreeSet<String> = self.view.hosts().keys().cloned().collect();
        let (due, free) = {
            let claims = self.m.claims();
            let Some(claims) = claims.as_ref() else {
                return Ok(0);
            };
            self.quarantine.notice_missing(claims.nodes(), &live, now);
            let due = self.quarantine.due(now);
            // Only the due nodes' claims: the others are not walked.
            let free = releasable(due.iter().flat_map(|n| claims.of_node(n)), &live, &due);
            (due, free)
        };
        if due.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        for (key, rev) in free {
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .and_then(TxnOp::Delete(key.clone()));
            if self.m.store.txn(txn)?.succeeded {
                n += 1;
                if let Some(claims) = self.m.claims().as_mut() {
                    claims.remove(&key);
                }
            }
        }
        for node in due {
            tracing::info!(%node, "node gone for the quarantine: its addresses are released");
            self.quarantine.done(&node);
        }
        Ok(n)
    }

    /// Deletes this node's address claims and endpoint records whose sandbox the local store
    /// does not have, once they stayed so, unchanged, for [`ORPHAN_GRACE`] (`now` in seconds on a monotonic clock);
    /// each delete compares the revision it was seen at. Only records naming a weft sandbox
    /// id are judged ([`orphaned`]). Returns how many went.
    pub fn sweep_orphans(&mut self, host: &mut dyn Host, now: u64) -> Result<usize, StoreError> {
        let local = match host.local_sandboxes() {
            Ok(l) => l,
            Err(e) => {
                self.error(format!("listing this host's sandboxes: {e:#}"));
                return Ok(0);
            }
        };
        let node = self.m.node.clone();
        // The network a record is on, from its key.
        let network_of = |key: &str| match Key::parse(key) {
            Some(Key::Address { network, .. } | Key::Endpoint { network, .. }) => Some(network),
            _ => None,
        };
        // This node's claims only (indexed by node): the sweep costs as much as this host
        // has, however many claims the cluster holds.
        let claims: Vec<(String, Revision)> = self
            .m
            .claims()
            .as_ref()
            .map(|claims| {
                claims
                    .of_node(&node)
                    .filter(|(k, c, _)| {
                        network_of(k).is_some_and(|net| orphaned(&local, &c.sandbox, &net))
                    })
                    .map(|(k, _, rev)| (k.clone(), rev))
                    .collect()
            })
            .unwrap_or_default();
        let records = self
            .own_records
            .iter()
            .filter(|(k, (sandbox, _))| {
                network_of(k).is_some_and(|net| orphaned(&local, sandbox, &net))
            })
            .map(|(k, (_, rev))| (k.clone(), *rev));
        let due = self
            .orphans
            .due(claims.into_iter().chain(records).collect::<Vec<_>>(), now);
        let mut n = 0;
        for (key, rev) in due {
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .and_then(TxnOp::Delete(key.clone()));
            if self.m.store.txn(txn)?.succeeded {
                tracing::info!(%key, "cluster: deleted a record of a sandbox this host no longer has");
                n += 1;
                if let Some(claims) = self.m.claims().as_mut() {
                    claims.remove(&key);
                }
                self.own_records.remove(&key);
            }
            self.orphans.done(&key);
        }
        Ok(n)
    }

    /// Records a problem (logged, and kept in the status).
    ///
    /// A problem the status still lists (one that persists, as a network this host refuses
    /// to build, comes back at every repair) is logged at debug level only, so that it does
    /// not flood the log every few seconds.
    fn error(&self, msg: String) {
        if let Ok(mut s) = self.status.lock() {
            let errs = &mut s.cluster.errors;
            if errs.contains(&msg) {
                tracing::debug!("cluster (again): {msg}");
                return;
            }
            tracing::warn!("cluster: {msg}");
            errs.push(msg);
            let extra = errs.len().saturating_sub(KEEP_ERRORS);
            errs.drain(..extra);
        } else {
            tracing::warn!("cluster: {msg}");
        }
    }

    /// Sets whether etcd is reached, in the status.
    fn set_connected(&self, up: bool) {
        if let Ok(mut s) = self.status.lock() {
            s.cluster.connected = up;
        }
    }

    /// Copies the view's summary into the status.
    fn publish(&self) {
        // Counts, not walks: this runs after every watch batch, so it must not cost more with
        // every endpoint in the cluster (join cost flat from 10 to 1,000 endpoints).
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        if let Ok(mut s) = self.status.lock() {
            let c = &mut s.cluster;
            c.lease = self
                .lease
                .as_ref()
                .filter(|l| l.lost().is_none())
                .map(|l| l.id().to_string());
            c.hosts = self
                .view
                .hosts()
                .values()
                .map(|h| ClusterHost {
                    node: h.node.clone(),
                    vtep: h.vtep,
                    endpoints: count(self.view.endpoints_on(&h.node)),
                })
                .collect();
            c.networks = self.networks.values().map(|n| n.name.clone()).collect();
            c.endpoints = count(self.view.endpoint_count());
            c.revision = self.revision;
        }
    }
}

fn network_of(c: &Change) -> &String {
    match c {
        Change::Add { network, .. } | Change::Remove { network, .. } => network,
    }
}

/// An overlay network record stored under `networks/<name>`; `None` for anything else (a
/// record that does not match its key, another driver, an id that cannot name a device).
/// The bridge's name is always weft's, whatever the record says.
pub fn decode_network(name: &str, bytes: &[u8]) -> Option<Network> {
    let mut net: Network = serde_json::from_slice(bytes).ok()?;
    if net.name != name || net.driver != "overlay" || !keys::valid_segment(&net.id) {
        return None;
    }
    if net.id.len() < 12 || !net.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let DriverData::Overlay(c) = &mut net.driver_data else {
        return None;
    };
    c.local = None;
    net.bridge = overlay_bridge_name(&net.id);
    Some(net)
}

/// What the agent's event loop and request handlers share with the cluster task.
#[derive(Clone)]
pub struct Shared {
    /// This host's membership, for the agent's request handlers (the overlay use cases).
    pub membership: Arc<Membership>,
    /// What the agent's event loop asks of the task about the VXLAN devices' entries.
    pub drift: Arc<Drift>,
}

/// What the agent's event loop hands the cluster task between two of its ticks: removed
/// entries to look up one by one, or a read-back of every device.
#[derive(Debug, Default)]
pub struct Drift {
    /// Every device is to be read back and repaired (and the firewall's members).
    everything: AtomicBool,
    /// The firewall's members are to be read back and filled in (their table or sets were
    /// made again, or emptied).
    members: AtomicBool,
    /// The underlay's MTU changed: read it again.
    underlay: AtomicBool,
    /// Entries removed from VXLAN devices (device name, entry), to write back if the view
    /// still wants them.
    removed: Mutex<Vec<(String, Removed)>>,
    /// Entries added to or changed on VXLAN devices (device name, entry), to check against
    /// the view.
    changed: Mutex<Vec<(String, Entry)>>,
}

/// What [`Drift::take`] hands over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DriftWork {
    /// Read every device back.
    pub everything: bool,
    /// Removed entries to look up (empty when `everything`: the read-back covers them).
    pub removed: Vec<(String, Removed)>,
    /// Added or changed entries to check (empty when `everything`).
    pub changed: Vec<(String, Entry)>,
    /// Read the firewall's members back (false when `everything`: the read-back covers
    /// them).
    pub members: bool,
    /// Read the underlay again.
    pub underlay: bool,
}

impl Drift {
    /// Asks for every device to be read back and repaired at the task's next tick.
    pub fn repair_all(&self) {
        self.everything.store(true, Ordering::Relaxed);
    }

    /// Asks for the underlay to be read again at the task's next tick.
    pub fn underlay(&self) {
        self.underlay.store(true, Ordering::Relaxed);
    }

    /// Asks for the firewall's members to be read back and filled in at the task's next
    /// tick.
    pub fn members(&self) {
        self.members.store(true, Ordering::Relaxed);
    }

    /// Hands over entries removed from VXLAN devices. Bounded: past [`MAX_REMOVED`] waiting
    /// (a task busy elsewhere), one read-back instead.
    pub fn removed(&self, entries: Vec<(String, Removed)>) {
        self.hand_over(&self.removed, entries);
    }

    /// Hands over entries added to or changed on VXLAN devices. Bounded as
    /// [`Drift::removed`].
    pub fn changed(&self, entries: Vec<(String, Entry)>) {
        self.hand_over(&self.changed, entries);
    }

    /// Appends `entries` to `inbox`, or asks for one read-back of every device instead when
    /// that would hold more than [`MAX_REMOVED`] (or the inbox is unusable).
    fn hand_over<T>(&self, inbox: &Mutex<Vec<T>>, mut entries: Vec<T>) {
        let Ok(mut inbox) = inbox.lock() else {
            self.repair_all();
            return;
        };
        if inbox.len().saturating_add(entries.len()) > MAX_REMOVED {
            inbox.clear();
            drop(inbox);
            self.repair_all();
            return;
        }
        inbox.append(&mut entries);
    }

    /// Takes what was asked since the last call.
    pub fn take(&self) -> DriftWork {
        let removed = self
            .removed
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        let changed = self
            .changed
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        let members = self.members.swap(false, Ordering::Relaxed);
        let underlay = self.underlay.swap(false, Ordering::Relaxed);
        if self.everything.swap(false, Ordering::Relaxed) {
            return DriftWork {
                everything: true,
                underlay,
                ..DriftWork::default()
            };
        }
        DriftWork {
            everything: false,
            removed,
            changed,
            members,
            underlay,
        }
    }
}

/// What the agent keeps of its cluster task.
pub struct Handle {
    /// What the rest of the agent uses.
    pub shared: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Stops the task and waits for it. Its lease is not revoked: this host's records stay
    /// until the TTL runs out, so a restarted agent finds them and traffic keeps flowing.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the task needs to start.
pub struct Setup {
    /// The cluster configuration.
    pub config: ClusterConfig,
    /// State directory (the task opens its own store connection).
    pub state_dir: PathBuf,
    /// Run directory.
    pub run_dir: PathBuf,
    /// Config file.
    pub config_path: PathBuf,
    /// The agent's status.
    pub status: Arc<Mutex<AgentStatus>>,
    /// The DNS task's inbox for other nodes' endpoints (`None`: no DNS server runs).
    pub names: Option<tokio::sync::mpsc::UnboundedSender<NameChange>>,
}

/// Connects the store (lazily: an unreachable etcd is not an error here, a bad TLS file
/// is) and starts the task.
pub fn start(setup: Setup) -> Result<Handle> {
    let c = &setup.config;
    let mut ec = EtcdConfig::new(c.etcd.clone());
    if c.etcd_ca.is_some() || c.etcd_cert.is_some() || c.etcd_key.is_some() {
        ec.tls = Some(TlsFiles {
            ca: c.etcd_ca.clone(),
            cert: c.etcd_cert.clone(),
            key: c.etcd_key.clone(),
        });
    }
    let store: Arc<dyn ClusterStore> =
        Arc::new(EtcdStore::connect(&ec).context("setting up the etcd client")?);
    let membership = Arc::new(Membership {
        store,
        node: c.node.clone(),
        vtep: c.advertise,
        vxlan_port: c.vxlan_port,
        lease: Mutex::new(None),
        claims: Mutex::new(None),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let drift = Arc::new(Drift::default());
    let ttl = Duration::from_secs(u64::from(c.lease_ttl));
    let mut control = Control::new(membership.clone(), ttl, setup.status.clone());
    match crate::engine::underlay::find(c.advertise) {
        Ok(u) => control.set_underlay(Some(UnderlayRecord {
            ifname: u.ifname,
            mtu: u.mtu,
            overhead: u.overhead,
        })),
        Err(e) => tracing::warn!("cluster: reading this host's underlay: {e:#}"),
    }
    if let Some(tx) = setup.names.clone() {
        // A DNS task gone (it failed) needs no names.
        control.send_names_to(move |c| {
            let _ = tx.send(c);
        });
    }
    let vtep = c.advertise;
    let thread = {
        let stop = stop.clone();
        let drift = drift.clone();
        std::thread::Builder::new()
            .name("weft".into())
            .spawn(move || {
                // Opened on the task's thread, after the agent's own connections: the
                // store is being made by the agent's first gc pass meanwhile.
                let mut said = false;
                while !stop.load(Ordering::Relaxed) {
                    match KernelHost::open(&setup, vtep) {
                        Ok(host) => return run(control, host, &stop, &drift),
                        Err(e) => {
                            if !said {
                                tracing::error!(
                                    "cluster: opening the state store: {e:#}; retrying"
                                );
                                said = true;
                            }
                            std::thread::sleep(RETRY);
                        }
                    }
                }
            })
            .context("starting the agent's cluster thread")?
    };
    Ok(Handle {
        shared: Shared { membership, drift },
        stop,
        thread: Some(thread),
    })
}

/// The task's loop: join, sync, watch; writes back entries `drift` says were removed while
/// still wanted; repairs when `drift` asks and periodically; quarantine throughout.
pub fn run(mut c: Control, mut host: impl Host, stop: &AtomicBool, drift: &Drift) {
    // The orphan sweep's clock: monotonic, so that a clock step (NTP at boot) cannot cut a
    // record's grace short.
    let epoch = Instant::now();
    let mono = || epoch.elapsed().as_secs();
    let mut watch = None;
    let mut joined = false;
    let mut synced = false;
    let mut up: Option<bool> = None;
    let mut lost_logged = false;
    let mut next_try = Instant::now();
    let mut next_repair = Instant::now() + REPAIR_EVERY;
    let mut next_quarantine = Instant::now() + QUARANTINE_EVERY;
    let mut next_vteps = Instant::now();
    let mut say_up = |c: &Control, now_up: bool, why: &str| {
        if up != Some(now_up) {
            if now_up {
                tracing::info!("cluster: connected to etcd {}", c.m.store.endpoints());
            } else {
                tracing::warn!(
                    "cluster: etcd {} unreachable: {why}; keeping this host's entries as they are",
                    c.m.store.endpoints()
                );
            }
            c.set_connected(now_up);
            up = Some(now_up);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if joined {
            if let Some(why) = c.lease_lost() {
                if !lost_logged {
                    tracing::warn!("cluster: lease lost ({why}); joining again");
                    lost_logged = true;
                }
                joined = false;
                c.m.set_lease(None);
                c.publish();
            }
        }
        if (!joined || !synced) && Instant::now() >= next_try {
            if !joined {
                match c.join() {
                    Ok(()) => {
                        tracing::info!(node = %c.m.node, vtep = %c.m.vtep, "cluster: joined");
                        say_up(&c, true, "");
                        joined = true;
                        lost_logged = false;
                        synced = false;
                    }
                    Err(e @ JoinError::NodeTaken { .. }) => {
                        say_up(&c, true, "");
                        tracing::error!("cluster: {e}");
                        c.error(e.to_string());
                        // Another host holds the name: try again only after its lease could
                        // have run out, never in a tight loop.
                        next_try = Instant::now() + c.ttl;
                    }
                    Err(JoinError::Store(e)) => {
                        say_up(&c, false, &e.to_string());
                        next_try = Instant::now() + RETRY;
                    }
                }
            }
            if joined && !synced {
                watch = None;
                match c
                    .resync(&mut host)
                    .and_then(|rev| c.m.store.watch(keys::PREFIX, rev.saturating_add(1)))
                {
                    Ok(w) => {
                        watch = Some(w);
                        synced = true;
                        say_up(&c, true, "");
                        // Notes this node's orphans now; they go at a later sweep.
                        if let Err(e) = c.sweep_orphans(&mut host, mono()) {
                            tracing::debug!("cluster: deleting orphaned records: {e}");
                        }
                    }
                    Err(e) => {
                        say_up(&c, false, &e.to_string());
                        next_try = Instant::now() + RETRY;
                    }
                }
            }
        }
        match watch.as_ref().map(|w| w.recv_timeout(TICK)) {
            None => std::thread::sleep(TICK),
            Some(Err(WatchRecvError::Timeout)) => {}
            Some(Err(WatchRecvError::Ended)) => {
                synced = false;
                watch = None;
            }
            Some(Ok(first)) => {
                let mut batch = vec![first];
                if let Some(w) = watch.as_ref() {
                    while let Ok(ev) = w.try_recv() {
                        batch.push(ev);
                    }
                }
                let mut changes = Vec::new();
                for ev in batch {
                    match ev {
                        WatchEvent::Put(_) | WatchEvent::Delete { .. } => changes.push(ev),
                        WatchEvent::Disconnected => {
                            c.apply_events(&std::mem::take(&mut changes), &mut host);
                            say_up(&c, false, "the watch's connection broke");
                        }
                        WatchEvent::Resumed { .. } => say_up(&c, true, ""),
                        WatchEvent::Compacted { compact_revision } => {
                            tracing::warn!(
                                compact_revision,
                                "cluster: the watch's history was compacted; reading the cluster again"
                            );
                            synced = false;
                        }
                    }
                }
                c.apply_events(&changes, &mut host);
                if !synced {
                    watch = None;
                }
            }
        }
        let work = drift.take();
        let periodic = Instant::now() >= next_repair;
        // Also with the periodic repair: a change the notifications missed (between the
        // agent's first read and its watch) is caught within REPAIR_EVERY.
        if work.underlay || periodic {
            c.follow_underlay(&mut host);
        }
        if !work.removed.is_empty() {
            c.restore(&work.removed, &mut host);
        }
        if !work.changed.is_empty() {
            c.check_changed(&work.changed, &mut host);
        }
        if work.everything || periodic {
            c.repair_all(&mut host);
            next_repair = Instant::now() + REPAIR_EVERY;
        } else if work.members || (c.vteps_pending() && Instant::now() >= next_vteps) {
            c.sync_vteps(&mut host, true);
            next_vteps = Instant::now() + VTEPS_RETRY;
        }
        if joined && synced && Instant::now() >= next_quarantine {
            next_quarantine = Instant::now() + QUARANTINE_EVERY;
            if let Err(e) = c.release_quarantined(crate::engine::now()) {
                tracing::debug!("cluster: releasing quarantined addresses: {e}");
            }
            if let Err(e) = c.sweep_orphans(&mut host, mono()) {
                tracing::debug!("cluster: deleting orphaned records: {e}");
            }
        }
    }
}

mod host;
pub use host::KernelHost;

#[cfg(test)]
mod tests;

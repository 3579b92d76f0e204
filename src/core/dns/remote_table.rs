//! The DNS table's part for sandboxes of other hosts: their names and addresses indexed apart
//! from the local ones, so that a local change (a sandbox made or removed here, which
//! rebuilds the local part from the store) costs as much as this host has, not as much as
//! the cluster has, and a remote change touches only its own sandbox's entries.
//!
//! What depends only on the network (its index, name and subnets) is applied here, when a
//! record is indexed: an address outside the network's subnets is dropped, `NAME.NETWORK` is
//! spelt. What depends on the local sandboxes (a remote record never takes a local name, a
//! local address or a gateway) is applied by [`super::table::Table`] when it answers, so the
//! entries here survive local rebuilds untouched. Only a change of the networks themselves
//! (created, removed, renumbered) indexes every record again.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;
use ipnet::IpNet;

use super::remote::{key_of, RemoteKey};
use super::table::NetIdx;
use crate::core::cluster::records::EndpointRecord;

/// A DNS-enabled network as remote records are indexed against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetShape {
    /// Its index in the table.
    pub idx: NetIdx,
    /// Its name (for `NAME.NETWORK`).
    pub name: String,
    /// Its subnets (addresses outside them are not answered).
    pub subnets: Vec<IpNet>,
}

/// One remote sandbox answering to a name on one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteName {
    /// The network.
    pub net: NetIdx,
    /// Which record added it (tells entries of different sandboxes apart).
    pub owner: u32,
    /// Its IPv4 address, if inside the network's subnets.
    pub v4: Option<Ipv4Addr>,
    /// Its IPv6 address, likewise.
    pub v6: Option<Ipv6Addr>,
    /// NXDOMAIN for askers not on `net` (as for a local name).
    pub hides: bool,
}

/// One remote address's owner on one network, for PTR.
#[derive(Debug, Clone)]
pub struct RemotePtr {
    /// The network.
    pub net: NetIdx,
    /// Which record added it.
    pub owner: u32,
    /// `NAME.NETWORK.`.
    pub target: Name,
    /// `name.network`, lower-case: a local sandbox answering to it on `net` takes the PTR.
    pub qualified: Box<str>,
}

/// What one record added, to take it out again on its own.
#[derive(Debug, Default, Clone)]
struct Added {
    owner: u32,
    names: Vec<Box<str>>,
    ptrs: Vec<IpAddr>,
}

/// The remote part of the table.
#[derive(Debug, Default, Clone)]
pub struct RemoteTable {
    /// The networks the entries were indexed against, by id.
    shapes: HashMap<String, NetShape>,
    /// Every record, indexed or not (its network may be made here later).
    records: HashMap<RemoteKey, EndpointRecord>,
    /// What each indexed record added.
    added: HashMap<RemoteKey, Added>,
    names: HashMap<Box<str>, Vec<RemoteName>>,
    ptrs: HashMap<IpAddr, Vec<RemotePtr>>,
    /// How many name and PTR entries there are.
    count: usize,
    next_owner: u32,
}

/// Lower-case ASCII, as names are keyed.
pub(super) fn key(s: &str) -> Box<str> {
    s.to_ascii_lowercase().into_boxed_str()
}

impl RemoteTable {
    /// Indexes against `shapes` (the local table's networks) from now on; every record is
    /// indexed again when they differ from the last ones. Returns whether they did.
    pub fn set_networks(&mut self, shapes: HashMap<String, NetShape>) -> bool {
        if shapes == self.shapes {
            return false;
        }
        self.shapes = shapes;
        self.names.clear();
        self.ptrs.clear();
        self.added.clear();
        self.count = 0;
        let keys: Vec<RemoteKey> = self.records.keys().cloned().collect();
        for k in keys {
            self.index(&k);
        }
        true
    }

    /// Replaces every record.
    pub fn reset(&mut self, all: &[EndpointRecord]) {
        self.records.clear();
        self.added.clear();
        self.names.clear();
        self.ptrs.clear();
        self.count = 0;
        for r in all {
            self.put(r);
        }
    }

    /// Adds record `r`, or replaces an earlier version of it.
    pub fn put(&mut self, r: &EndpointRecord) {
        let k = key_of(r);
        self.unindex(&k);
        self.records.insert(k.clone(), r.clone());
        self.index(&k);
    }

    /// Removes record `k`, if there.
    pub fn remove(&mut self, k: &RemoteKey) {
        self.unindex(k);
        self.records.remove(k);
    }

    /// The entries of `name` (lower-case).
    pub fn names(&self, name: &str) -> &[RemoteName] {
        self.names.get(name).map_or(&[], Vec::as_slice)
    }

    /// The PTR entries of `addr`.
    pub fn ptrs(&self, addr: &IpAddr) -> &[RemotePtr] {
        self.ptrs.get(addr).map_or(&[], Vec::as_slice)
    }

    /// How many name and PTR entries there are (before the local sandboxes' precedence).
    pub fn count(&self) -> usize {
        self.count
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Indexes record `k` on its network, when this host has the network and the record an
    /// address inside its subnets.
    fn index(&mut self, k: &RemoteKey) {
        let Some(r) = self.records.get(k) else {
            return;
        };
        let Some(shape) = self.shapes.get(&r.network) else {
            return;
        };
        let inside = |a: IpAddr| shape.subnets.iter().any(|n| n.contains(&a));
        let v4 = r.ipv4.filter(|a| inside(IpAddr::V4(*a)));
        let v6 = r.ipv6.filter(|a| inside(IpAddr::V6(*a)));
        if v4.is_none() && v6.is_none() {
            return;
        }
        let net = shape.idx;
        let owner = self.next_owner;
        self.next_owner = self.next_owner.wrapping_add(1);
        let mut added = Added {
            owner,
            ..Added::default()
        };
        let qualified = format!("{}.{}", r.name, shape.name);
        let entry = RemoteName {
            net,
            owner,
            v4,
            v6,
            hides: false,
        };
        let hostname = r.hostname.as_deref().unwrap_or_default();
        let names = [r.name.as_str(), hostname, qualified.as_str()];
        for n in names
            .into_iter()
            .chain(r.aliases.iter().map(String::as_str))
        {
            if n.is_empty() {
                continue;
            }
            let hides = !n.contains('.') || n == qualified;
            let list = self.names.entry(key(n)).or_default();
            match list.iter_mut().find(|e| e.owner == owner) {
                Some(e) => e.hides |= hides,
                None => {
                    list.push(RemoteName { hides, ..entry });
                    self.count = self.count.saturating_add(1);
                    added.names.push(key(n));
                }
            }
        }
        if let Ok(target) = Name::from_ascii(format!("{qualified}.")) {
            for a in [v4.map(IpAddr::V4), v6.map(IpAddr::V6)]
                .into_iter()
                .flatten()
            {
                self.ptrs.entry(a).or_default().push(RemotePtr {
                    net,
                    owner,
                    target: target.clone(),
                    qualified: key(&qualified),
                });
                self.count = self.count.saturating_add(1);
                added.ptrs.push(a);
            }
        }
        self.added.insert(k.clone(), added);
    }

    /// Takes out what record `k` added, if anything.
    fn unindex(&mut self, k: &RemoteKey) {
        let Some(added) = self.added.remove(k) else {
            return;
        };
        for n in &added.names {
            if let Some(list) = self.names.get_mut(n) {
                let before = list.len();
                list.retain(|e| e.owner != added.owner);
                self.count = self.count.saturating_sub(before - list.len());
                if list.is_empty() {
                    self.names.remove(n);
                }
            }
        }
        for a in &added.ptrs {
            if let Some(list) = self.ptrs.get_mut(a) {
                let before = list.len();
                list.retain(|e| e.owner != added.owner);
                self.count = self.count.saturating_sub(before - list.len());
                if list.is_empty() {
                    self.ptrs.remove(a);
                }
            }
        }
    }
}

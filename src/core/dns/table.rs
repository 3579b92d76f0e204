//! The lookup table: which DNS-enabled network a query arrives on (by its gateway), which
//! sandbox asks (by its address on that network), and the names and addresses each asker may
//! see. Its local part is built from the store's networks and sandboxes, rebuilt whenever they
//! change; other hosts' sandboxes are kept apart ([`RemoteTable`]), changed in place as the
//! cluster's watch reports them and untouched by local rebuilds, and weighed against the
//! local part when a query is answered.
//!
//! Visibility follows Docker's rule: a sandbox sees every sandbox that shares at least
//! one DNS-enabled network with it, with the addresses it has on the shared networks; a
//! sandbox only on network B does not exist for one only on network A. Which statuses are
//! answered: [`answered`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::rr::Name;

use super::remote::{NameChange, RemoteNames};
use super::remote_table::{key, NetShape, RemoteName, RemoteTable};
use crate::core::model::{NetMode, Network, Sandbox, Status};

/// Index of a network in [`Table::networks`].
pub type NetIdx = u32;
/// Index of a sandbox in the table's asker list.
pub type AskerIdx = u32;

/// A DNS-enabled network as the server needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetInfo {
    /// Network name.
    pub name: String,
    /// Its Linux bridge: queries must arrive on it.
    pub bridge: String,
    /// Its gateway addresses (one per family).
    pub gateways: Vec<IpAddr>,
}

/// A sandbox that may ask.
#[derive(Debug, Clone)]
pub struct AskerInfo {
    /// Sandbox name (for logs).
    pub name: String,
    /// The DNS-enabled networks it is on, sorted.
    pub nets: Vec<NetIdx>,
    /// Its `--dns` servers (port 53), empty for the host's resolvers.
    pub servers: Arc<[SocketAddr]>,
}

/// One sandbox answering to a name on one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameEntry {
    net: NetIdx,
    sandbox: u32,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    /// Whether the name is NXDOMAIN for askers not on `net`: a single label or
    /// `NAME.NETWORK` (weft's own names). A dotted name, hostname or alias (`github.com`) is
    /// not: a sandbox on another network must not take a public name away from everyone.
    hides: bool,
}

/// One address's owner on one network, for PTR.
#[derive(Debug, Clone)]
struct PtrEntry {
    net: NetIdx,
    /// `NAME.NETWORK.`, as Docker answers.
    target: Name,
}

/// What a name means to one asker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No sandbox has this name on any network: not ours (forwarded).
    Unknown,
    /// A sandbox has it, but on no network the asker shares: NXDOMAIN.
    Hidden,
    /// Visible: the addresses (possibly none of the family asked: NODATA).
    Found {
        /// IPv4 addresses, deduplicated, in table order.
        v4: Vec<Ipv4Addr>,
        /// IPv6 addresses.
        v6: Vec<Ipv6Addr>,
    },
}

/// What a name is to one asker, without its addresses ([`Table::lookup_each`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not ours: forwarded.
    Unknown,
    /// Another network's: NXDOMAIN.
    Hidden,
    /// Visible.
    Found,
}

/// The table.
#[derive(Debug, Default, Clone)]
pub struct Table {
    networks: Vec<NetInfo>,
    by_gateway: HashMap<IpAddr, NetIdx>,
    askers: Vec<AskerInfo>,
    by_source: HashMap<(NetIdx, IpAddr), AskerIdx>,
    names: HashMap<Box<str>, Vec<NameEntry>>,
    ptrs: HashMap<IpAddr, Vec<PtrEntry>>,
    /// How many local name and PTR records there are.
    records: usize,
    /// The networks as remote records are indexed against them, by id.
    shapes: HashMap<String, NetShape>,
    /// Other hosts' sandboxes.
    remote: RemoteTable,
}

/// Whether a sandbox in `status` is answered. Docker answers running containers only,
/// because a stopped container gives its address back and the next one may get it. A weft
/// sandbox keeps its namespace, interfaces and addresses from `create` until `rm`, whether a
/// process runs or not (`weft exec` runs one in a created or exited sandbox), and no other
/// sandbox can get them: its name is answered all that time, so that `create` makes it
/// visible at once and a restart's back-off does not make it flap. Not while being created
/// (its attach may still be rolled back) or removed.
pub fn answered(status: Status) -> bool {
    matches!(
        status,
        Status::Created | Status::Running | Status::Exited | Status::Restarting
    )
}

impl Table {
    /// Builds the table. Networks count when created and DNS-enabled; a sandbox may ask
    /// whatever its status (its processes ask). A sandbox is answered once made and until it
    /// is being removed ([`answered`]).
    pub fn build(networks: &[Network], sandboxes: &[Sandbox]) -> Table {
        Table::build_with_remote(networks, sandboxes, &RemoteNames::default())
    }

    /// [`Table::build`] with the sandboxes of other hosts of the cluster (`remote`): each is
    /// answered on its network when this host has that network (an overlay network mirrored
    /// here), by name, hostname, aliases and `NAME.NETWORK`, with the same visibility as a
    /// local sandbox's. They never ask here (their own host answers them).
    pub fn build_with_remote(
        networks: &[Network],
        sandboxes: &[Sandbox],
        remote: &RemoteNames,
    ) -> Table {
        let mut t = Table::build_local(networks, sandboxes);
        t.remote.set_networks(t.shapes.clone());
        for r in remote.records() {
            t.remote.put(r);
        }
        t
    }

    /// Builds the local part again from the store's `networks` and `sandboxes`, keeping the
    /// remote part as it is: O(local), however many sandboxes the cluster has (the remote
    /// records are indexed again only when the networks themselves changed).
    pub fn rebuild_local(&mut self, networks: &[Network], sandboxes: &[Sandbox]) {
        let remote = std::mem::take(&mut self.remote);
        *self = Table::build_local(networks, sandboxes);
        self.remote = remote;
        self.remote.set_networks(self.shapes.clone());
    }

    /// The local part alone.
    fn build_local(networks: &[Network], sandboxes: &[Sandbox]) -> Table {
        let mut t = Table::default();
        let mut net_by_id: HashMap<&str, NetIdx> = HashMap::new();
        for n in networks
            .iter()
            .filter(|n| n.status == Status::Created && n.dns())
        {
            let Ok(idx) = NetIdx::try_from(t.networks.len()) else {
                break;
            };
            let gateways: Vec<IpAddr> = n.subnets.iter().map(|s| s.gateway).collect();
            for g in &gateways {
                t.by_gateway.insert(*g, idx);
            }
            net_by_id.insert(&n.id, idx);
            t.shapes.insert(
                n.id.clone(),
                NetShape {
                    idx,
                    name: n.name.clone(),
                    subnets: n.subnets.iter().map(|s| s.subnet).collect(),
                },
            );
            t.networks.push(NetInfo {
                name: n.name.clone(),
                bridge: n.bridge.clone(),
                gateways,
            });
        }
        for sb in sandboxes {
            if sb.mode != NetMode::Bridge || sb.status == Status::Removing {
                continue;
            }
            let Ok(sidx) = AskerIdx::try_from(t.askers.len()) else {
                break;
            };
            let mut nets = Vec::new();
            for ep in &sb.endpoints {
                let Some(&net) = net_by_id.get(ep.network_id.as_str()) else {
                    continue;
                };
                nets.push(net);
                let (v4, v6) = (ep.v4(), ep.v6());
                for a in [v4.map(IpAddr::V4), v6.map(IpAddr::V6)]
                    .into_iter()
                    .flatten()
                {
                    t.by_source.insert((net, a), sidx);
                }
                if !answered(sb.status) {
                    continue;
                }
                t.add_names(net, sidx, &sb.name, &sb.hostname, &ep.aliases, v4, v6);
            }
            nets.sort_unstable();
            nets.dedup();
            let servers: Vec<SocketAddr> = sb
                .run
                .dns
                .servers
                .iter()
                .map(|ip| SocketAddr::new(*ip, 53))
                .collect();
            t.askers.push(AskerInfo {
                name: sb.name.clone(),
                nets,
                servers: servers.into(),
            });
        }
        t
    }

    /// Applies one change of the remote records in place: only the names and addresses of
    /// the records it concerns are touched (a join or leave elsewhere costs the same with
    /// ten or a thousand remote sandboxes), with the same answers as
    /// [`Table::build_with_remote`].
    pub fn apply_remote(&mut self, change: &NameChange) {
        match change {
            NameChange::Reset(all) => self.remote.reset(all),
            NameChange::Put(r) => self.remote.put(r),
            NameChange::Remove(k) => self.remote.remove(k),
        }
    }

    /// Whether a remote record may be answered at `a` on network `net`: another node's
    /// record is input, and an address that is a gateway or a local sandbox's on that network
    /// (forged to take its traffic or its PTR) is not. (Its subnet was checked when it was
    /// indexed.)
    fn usable(&self, net: NetIdx, a: IpAddr) -> bool {
        !self.by_gateway.contains_key(&a) && !self.by_source.contains_key(&(net, a))
    }

    /// Whether a sandbox of this host answers to `name` (lower-case) on `net`: the name
    /// stays its own, a remote sandbox's entry for it is not answered.
    fn local_has(&self, name: &str, net: NetIdx) -> bool {
        self.names
            .get(name)
            .is_some_and(|l| l.iter().any(|e| e.net == net))
    }

    /// Remote entry `e` of `name` as answered, with its usable addresses; `None` when the
    /// name is a local sandbox's on its network or none of its addresses is usable.
    fn remote_entry(
        &self,
        name: &str,
        e: &RemoteName,
    ) -> Option<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
        if self.local_has(name, e.net) {
            return None;
        }
        let v4 = e.v4.filter(|a| self.usable(e.net, IpAddr::V4(*a)));
        let v6 = e.v6.filter(|a| self.usable(e.net, IpAddr::V6(*a)));
        (v4.is_some() || v6.is_some()).then_some((v4, v6))
    }

    /// Makes one local sandbox's addresses on network `net` answer to its name, hostname,
    /// `NAME.NETWORK` and aliases, and its addresses' PTR to `NAME.NETWORK.`.
    #[allow(clippy::too_many_arguments)]
    fn add_names(
        &mut self,
        net: NetIdx,
        owner: u32,
        name: &str,
        hostname: &str,
        aliases: &[String],
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) {
        let Some(info) = self.networks.get(net as usize) else {
            return;
        };
        let entry = NameEntry {
            net,
            sandbox: owner,
            v4,
            v6,
            hides: false,
        };
        let qualified = format!("{}.{}", name, info.name);
        let names = [name, hostname, qualified.as_str()];
        for n in names.into_iter().chain(aliases.iter().map(String::as_str)) {
            if n.is_empty() {
                continue;
            }
            let hides = !n.contains('.') || n == qualified;
            let list = self.names.entry(key(n)).or_default();
            match list.iter_mut().find(|e| {
                NameEntry {
                    hides: e.hides,
                    ..entry
                } == **e
            }) {
                Some(e) => e.hides |= hides,
                None => {
                    list.push(NameEntry { hides, ..entry });
                    self.records += 1;
                }
            }
        }
        if let Ok(target) = Name::from_ascii(format!("{qualified}.")) {
            for a in [v4.map(IpAddr::V4), v6.map(IpAddr::V6)]
                .into_iter()
                .flatten()
            {
                self.ptrs.entry(a).or_default().push(PtrEntry {
                    net,
                    target: target.clone(),
                });
                self.records += 1;
            }
        }
    }

    /// The networks, by index.
    pub fn networks(&self) -> &[NetInfo] {
        &self.networks
    }

    /// How many name and PTR records the table holds: the local ones, and the remote ones
    /// indexed (some of which a local sandbox's name or address may keep from being
    /// answered).
    pub fn records(&self) -> usize {
        self.records.saturating_add(self.remote.count())
    }

    /// How many other hosts' sandboxes the table keeps.
    pub fn remote_len(&self) -> usize {
        self.remote.len()
    }

    /// The network whose gateway is `dst`.
    pub fn network_of(&self, dst: IpAddr) -> Option<NetIdx> {
        self.by_gateway.get(&dst).copied()
    }

    /// The sandbox asking from `src` on network `net`.
    pub fn asker(&self, net: NetIdx, src: IpAddr) -> Option<AskerIdx> {
        self.by_source.get(&(net, src)).copied()
    }

    /// An asker's details.
    pub fn asker_info(&self, asker: AskerIdx) -> Option<&AskerInfo> {
        self.askers.get(asker as usize)
    }

    fn shares(&self, asker: AskerIdx, net: NetIdx) -> bool {
        self.askers
            .get(asker as usize)
            .is_some_and(|a| a.nets.binary_search(&net).is_ok())
    }

    /// What `name` (lower-case, no trailing dot) means to `asker`.
    pub fn lookup(&self, asker: AskerIdx, name: &str) -> Lookup {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        let kind = self.lookup_each(asker, name, |a4, a6| {
            if let Some(a) = a4.filter(|a| !v4.contains(a)) {
                v4.push(a);
            }
            if let Some(a) = a6.filter(|a| !v6.contains(a)) {
                v6.push(a);
            }
        });
        match kind {
            Kind::Unknown => Lookup::Unknown,
            Kind::Hidden => Lookup::Hidden,
            Kind::Found => Lookup::Found { v4, v6 },
        }
    }

    /// [`Table::lookup`] without allocating: calls `each` with the addresses of every entry
    /// of `name` that `asker` sees, in table order (not deduplicated), and says what the name
    /// is to it. The hot path of local answers.
    pub fn lookup_each(
        &self,
        asker: AskerIdx,
        name: &str,
        mut each: impl FnMut(Option<Ipv4Addr>, Option<Ipv6Addr>),
    ) -> Kind {
        let (mut found, mut hides) = (false, false);
        for e in self.names.get(name).map_or(&[][..], Vec::as_slice) {
            hides |= e.hides;
            if self.shares(asker, e.net) {
                found = true;
                each(e.v4, e.v6);
            }
        }
        for e in self.remote.names(name) {
            let Some((v4, v6)) = self.remote_entry(name, e) else {
                continue;
            };
            hides |= e.hides;
            if self.shares(asker, e.net) {
                found = true;
                each(v4, v6);
            }
        }
        if found {
            Kind::Found
        } else if hides {
            Kind::Hidden
        } else {
            Kind::Unknown
        }
    }

    /// What a reverse lookup of `addr` means to `asker`: `Err(true)` when the address is a
    /// sandbox's on a network the asker does not share (NXDOMAIN), `Err(false)` when it is no
    /// sandbox's (forwarded).
    pub fn reverse(&self, asker: AskerIdx, addr: IpAddr) -> Result<Vec<&Name>, bool> {
        let local = self.ptrs.get(&addr).map_or(&[][..], Vec::as_slice);
        // A remote address's PTR, unless the address is a gateway's or a local sandbox's,
        // or its name a local sandbox's (it would name a sandbox it is not).
        let remote = self
            .remote
            .ptrs(&addr)
            .iter()
            .filter(|e| self.usable(e.net, addr) && !self.local_has(&e.qualified, e.net));
        let mut any = false;
        let mut names = Vec::new();
        for (net, target) in local
            .iter()
            .map(|e| (e.net, &e.target))
            .chain(remote.map(|e| (e.net, &e.target)))
        {
            any = true;
            if self.shares(asker, net) {
                names.push(target);
            }
        }
        if names.is_empty() {
            Err(any)
        } else {
            Ok(names)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::cluster::records::EndpointRecord;
    use crate::core::dns::remote::{key_of, NameChange};
    use crate::core::model::{Endpoint, SubnetConfig};

    pub(crate) fn net(
        name: &str,
        id: &str,
        v4: &str,
        gw: &str,
        v6: Option<(&str, &str)>,
    ) -> Network {
        let mut subnets = vec![SubnetConfig {
            subnet: v4.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            ip_range: None,
        }];
        if let Some((s, g)) = v6 {
            subnets.push(SubnetConfig {
                subnet: s.parse().unwrap(),
                gateway: g.parse().unwrap(),
                ip_range: None,
            });
        }
        Network {
            name: name.into(),
            id: id.into(),
            ipv6: v6.is_some(),
            bridge: format!("wbr-{name}"),
            subnets,
            ..Network::example()
        }
    }

    pub(crate) fn ep(net: &Network, v4: &str, v6: Option<&str>, aliases: &[&str]) -> Endpoint {
        Endpoint {
            network: net.name.clone(),
            network_id: net.id.clone(),
            interface: "eth0".into(),
            host_interface: "veth".into(),
            ipv4: Some(format!("{v4}/24").parse().unwrap()),
            ipv6: v6.map(|a| format!("{a}/64").parse().unwrap()),
            mac: String::new(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            announce: false,
            pending: None,
        }
    }

    pub(crate) fn sb(name: &str, status: Status, eps: Vec<Endpoint>) -> Sandbox {
        let mut s = Sandbox::example(name, &format!("{name}-id"), status);
        s.hostname = format!("{name}-host");
        s.endpoints = eps;
        s
    }

    /// Networks a (10.1.0.0/24, with IPv6) and b (10.2.0.0/24); sandboxes: x on a (alias
    /// "db"), y on a and b, z on b, w on a but still being created, v on a and exited.
    pub(crate) fn fixture() -> Table {
        let a = net(
            "a",
            "aid",
            "10.1.0.0/24",
            "10.1.0.1",
            Some(("fd00:1::/64", "fd00:1::1")),
        );
        let b = net("b", "bid", "10.2.0.0/24", "10.2.0.1", None);
        let x = sb(
            "x",
            Status::Running,
            vec![ep(&a, "10.1.0.2", Some("fd00:1::2"), &["db"])],
        );
        let y = sb(
            "y",
            Status::Running,
            vec![ep(&a, "10.1.0.3", None, &[]), ep(&b, "10.2.0.3", None, &[])],
        );
        let z = sb(
            "z",
            Status::Running,
            vec![ep(&b, "10.2.0.4", None, &["db"])],
        );
        let w = sb("w", Status::Creating, vec![ep(&a, "10.1.0.5", None, &[])]);
        let v = sb("v", Status::Exited, vec![ep(&a, "10.1.0.6", None, &[])]);
        Table::build(&[a, b], &[x, y, z, w, v])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn asker(t: &Table, gw: &str, src: &str) -> AskerIdx {
        t.asker(t.network_of(ip(gw)).unwrap(), ip(src)).unwrap()
    }

    #[test]
    fn askers_are_found_by_gateway_and_source_only() {
        let t = fixture();
        assert!(t.network_of(ip("10.1.0.1")).is_some());
        assert!(t.network_of(ip("fd00:1::1")).is_some());
        assert!(t.network_of(ip("10.1.0.2")).is_none());
        let a = t.network_of(ip("10.1.0.1")).unwrap();
        let b = t.network_of(ip("10.2.0.1")).unwrap();
        assert!(t.asker(a, ip("10.1.0.2")).is_some());
        // x's address asked on b's gateway: not x.
        assert!(t.asker(b, ip("10.1.0.2")).is_none());
        assert!(t.asker(a, ip("10.1.0.99")).is_none());
        // A sandbox being created may already ask, but is not answered yet.
        let w = t.asker(a, ip("10.1.0.5")).unwrap();
        assert_eq!(t.asker_info(w).unwrap().name, "w");
        let x = asker(&t, "10.1.0.1", "10.1.0.2");
        assert_eq!(t.lookup(x, "w"), Lookup::Unknown);
        // An exited one keeps its address, and its name.
        assert_eq!(
            t.lookup(x, "v"),
            Lookup::Found {
                v4: vec!["10.1.0.6".parse().unwrap()],
                v6: vec![]
            }
        );
        assert!(!answered(Status::Removing));
    }

    #[test]
    fn a_dotted_name_on_another_network_takes_no_public_name_away() {
        let a = net("a", "aid", "10.1.0.0/24", "10.1.0.1", None);
        let b = net("b", "bid", "10.2.0.0/24", "10.2.0.1", None);
        let x = sb("x", Status::Running, vec![ep(&a, "10.1.0.2", None, &[])]);
        let mut evil = sb(
            "github.com",
            Status::Running,
            vec![ep(&b, "10.2.0.9", None, &["api.example.org", "solo"])],
        );
        evil.hostname = "mail.corp.example".into();
        let t = Table::build(&[a, b], &[x, evil]);
        let x = asker(&t, "10.1.0.1", "10.1.0.2");
        // Forwarded for x (the public answer), not NXDOMAIN.
        for name in ["github.com", "api.example.org", "mail.corp.example"] {
            assert_eq!(t.lookup(x, name), Lookup::Unknown, "{name}");
        }
        // weft's own names stay hidden: a single label, and NAME.NETWORK.
        assert_eq!(t.lookup(x, "solo"), Lookup::Hidden);
        assert_eq!(t.lookup(x, "github.com.b"), Lookup::Hidden);
        // On its own network, the name is answered, as Docker does.
        let peer = t.asker(t.network_of(ip("10.2.0.1")).unwrap(), ip("10.2.0.9"));
        let found = Lookup::Found {
            v4: vec!["10.2.0.9".parse().unwrap()],
            v6: vec![],
        };
        assert_eq!(t.lookup(peer.unwrap(), "github.com"), found);
    }

    #[test]
    fn names_aliases_qualified_names_and_hostnames_on_shared_networks() {
        let t = fixture();
        let x = asker(&t, "10.1.0.1", "10.1.0.2");
        let found = |v4: &[&str], v6: &[&str]| Lookup::Found {
            v4: v4.iter().map(|a| a.parse().unwrap()).collect(),
            v6: v6.iter().map(|a| a.parse().unwrap()).collect(),
        };
        assert_eq!(t.lookup(x, "y"), found(&["10.1.0.3"], &[]));
        assert_eq!(t.lookup(x, "y-host"), found(&["10.1.0.3"], &[]));
        assert_eq!(t.lookup(x, "y.a"), found(&["10.1.0.3"], &[]));
        assert_eq!(t.lookup(x, "x"), found(&["10.1.0.2"], &["fd00:1::2"]));
        // The alias db is x's on a and z's on b: x sees only its own network's.
        assert_eq!(
            t.lookup(x, "db"),
            found(&["10.1.0.2"], &[]).with_v6("fd00:1::2")
        );
        // z is only on b: hidden from x, and y.b too.
        assert_eq!(t.lookup(x, "z"), Lookup::Hidden);
        assert_eq!(t.lookup(x, "y.b"), Lookup::Hidden);
        assert_eq!(t.lookup(x, "nosuch"), Lookup::Unknown);
        // y shares both: sees both db's, and its own addresses on both networks.
        let y = asker(&t, "10.2.0.1", "10.2.0.3");
        assert_eq!(
            t.lookup(y, "db"),
            found(&["10.1.0.2", "10.2.0.4"], &["fd00:1::2"])
        );
        assert_eq!(t.lookup(y, "y"), found(&["10.1.0.3", "10.2.0.3"], &[]));
        assert_eq!(t.lookup(y, "z.b"), found(&["10.2.0.4"], &[]));
    }

    impl Lookup {
        fn with_v6(self, a: &str) -> Lookup {
            match self {
                Lookup::Found { v4, mut v6 } => {
                    v6.push(a.parse().unwrap());
                    Lookup::Found { v4, v6 }
                }
                other => other,
            }
        }
    }

    #[test]
    fn reverse_names_are_name_dot_network_on_shared_networks() {
        let t = fixture();
        let x = asker(&t, "10.1.0.1", "10.1.0.2");
        let names = t.reverse(x, ip("10.1.0.3")).unwrap();
        assert_eq!(names[0].to_ascii(), "y.a.");
        assert_eq!(t.reverse(x, ip("fd00:1::2")).unwrap()[0].to_ascii(), "x.a.");
        assert_eq!(t.reverse(x, ip("10.2.0.4")), Err(true));
        assert_eq!(t.reverse(x, ip("10.9.9.9")), Err(false));
    }

    #[test]
    fn networks_without_dns_and_sandboxes_without_bridges_are_left_out() {
        let mut a = net("a", "aid", "10.1.0.0/24", "10.1.0.1", None);
        a.options.insert("dns".into(), "false".into());
        let x = sb("x", Status::Running, vec![ep(&a, "10.1.0.2", None, &[])]);
        let t = Table::build(&[a], &[x]);
        assert!(t.network_of(ip("10.1.0.1")).is_none());
        assert_eq!(t.records(), 0);
    }

    fn remote(net: &Network, node: &str, name: &str, v4: &str, aliases: &[&str]) -> EndpointRecord {
        let mut r = EndpointRecord::new(
            node,
            &net.id,
            &format!("{name}-id"),
            name,
            Some(v4.parse().unwrap()),
            None,
            [2, 0x42, 1, 2, 3, 4],
        );
        r.aliases = aliases.iter().map(|s| s.to_string()).collect();
        r
    }

    #[test]
    fn remote_sandboxes_answer_on_shared_networks_only() {
        let ovl = net("ovl", "oid", "12.12.12.0/24", "12.12.12.1", None);
        let other = net("other", "xid", "13.13.13.0/24", "13.13.13.1", None);
        let pink = sb(
            "pink",
            Status::Running,
            vec![ep(&ovl, "12.12.12.2", None, &[])],
        );
        let blue = sb(
            "blue",
            Status::Running,
            vec![ep(&other, "13.13.13.2", None, &[])],
        );
        let mut names = RemoteNames::default();
        let mut pink2 = remote(&ovl, "h2", "pink2", "12.12.12.3", &["db"]);
        pink2.hostname = Some("p2host".into());
        names.apply(NameChange::Put(pink2));
        // A network this host does not have: nothing.
        names.apply(NameChange::Put(EndpointRecord {
            network: "elsewhere".into(),
            ..remote(&ovl, "h3", "ghost", "12.12.12.9", &[])
        }));
        // An address outside the network's subnet: not answered.
        names.apply(NameChange::Put(remote(&ovl, "h3", "liar", "10.0.0.1", &[])));
        let t = Table::build_with_remote(&[ovl, other], &[pink, blue], &names);
        let p = asker(&t, "12.12.12.1", "12.12.12.2");
        let found = Lookup::Found {
            v4: vec!["12.12.12.3".parse().unwrap()],
            v6: vec![],
        };
        for name in ["pink2", "pink2.ovl", "db", "p2host"] {
            assert_eq!(t.lookup(p, name), found, "{name}");
        }
        assert_eq!(
            t.reverse(p, ip("12.12.12.3")).unwrap()[0].to_ascii(),
            "pink2.ovl."
        );
        assert_eq!(t.lookup(p, "ghost"), Lookup::Unknown);
        assert_eq!(t.lookup(p, "liar"), Lookup::Unknown);
        assert_eq!(t.reverse(p, ip("10.0.0.1")), Err(false));
        // A sandbox on another network: NXDOMAIN, for the name and its address.
        let b = asker(&t, "13.13.13.1", "13.13.13.2");
        assert_eq!(t.lookup(b, "pink2"), Lookup::Hidden);
        assert_eq!(t.lookup(b, "pink2.ovl"), Lookup::Hidden);
        assert_eq!(t.reverse(b, ip("12.12.12.3")), Err(true));
        // Remote sandboxes never ask here.
        let ovl_idx = t.network_of(ip("12.12.12.1")).unwrap();
        assert!(t.asker(ovl_idx, ip("12.12.12.3")).is_none());
    }

    #[test]
    fn a_remote_record_cannot_take_a_local_name_address_or_the_gateway() {
        let ovl = net("ovl", "oid", "12.12.12.0/24", "12.12.12.1", None);
        let pink = sb(
            "pink",
            Status::Running,
            vec![ep(&ovl, "12.12.12.2", None, &["db"])],
        );
        let mut names = RemoteNames::default();
        // Another host's sandbox claiming pink's name, alias and qualified name, and one
        // recording pink's own address and one the gateway's.
        names.apply(NameChange::Put(remote(
            &ovl,
            "h2",
            "pink",
            "12.12.12.7",
            &["db", "pink.ovl", "spare"],
        )));
        names.apply(NameChange::Put(remote(
            &ovl,
            "h3",
            "twin",
            "12.12.12.2",
            &[],
        )));
        names.apply(NameChange::Put(remote(&ovl, "h3", "gw", "12.12.12.1", &[])));
        let t = Table::build_with_remote(std::slice::from_ref(&ovl), &[pink], &names);
        let p = asker(&t, "12.12.12.1", "12.12.12.2");
        let local = Lookup::Found {
            v4: vec!["12.12.12.2".parse().unwrap()],
            v6: vec![],
        };
        for name in ["pink", "db", "pink.ovl"] {
            assert_eq!(t.lookup(p, name), local, "{name} stays the local sandbox's");
        }
        // What is its own still answers.
        assert_eq!(
            t.lookup(p, "spare"),
            Lookup::Found {
                v4: vec!["12.12.12.7".parse().unwrap()],
                v6: vec![]
            }
        );
        // Its address has no PTR to a name that is pink's.
        assert_eq!(t.reverse(p, ip("12.12.12.7")), Err(false));
        assert_eq!(t.lookup(p, "twin"), Lookup::Unknown);
        assert_eq!(t.lookup(p, "gw"), Lookup::Unknown);
        let ptr: Vec<String> = t
            .reverse(p, ip("12.12.12.2"))
            .unwrap()
            .iter()
            .map(|n| n.to_ascii())
            .collect();
        assert_eq!(ptr, ["pink.ovl."]);
    }

    /// What every asker of `t` gets for each of `names` and `addrs`, order-free (a table
    /// changed in place numbers and orders entries differently from a rebuilt one).
    fn answers(t: &Table, names: &[&str], addrs: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for a in 0..u32::try_from(t.askers.len()).unwrap() {
            for n in names {
                let got = match t.lookup(a, n) {
                    Lookup::Found { mut v4, mut v6 } => {
                        v4.sort();
                        v6.sort();
                        format!("{v4:?} {v6:?}")
                    }
                    other => format!("{other:?}"),
                };
                out.push(format!("{a} {n}: {got}"));
            }
            for ip in addrs {
                let got = match t.reverse(a, ip.parse().unwrap()) {
                    Ok(names) => {
                        let mut v: Vec<String> = names.iter().map(|n| n.to_ascii()).collect();
                        v.sort();
                        format!("{v:?}")
                    }
                    Err(hidden) => format!("Err({hidden})"),
                };
                out.push(format!("{a} {ip}: {got}"));
            }
        }
        out
    }

    /// Networks `ovl` and `other`, with local sandboxes `pink` (on ovl, alias db) and `blue`
    /// (on other).
    fn two_networks() -> (Network, Network, Sandbox, Sandbox) {
        let ovl = net("ovl", "oid", "12.12.12.0/24", "12.12.12.1", None);
        let other = net("other", "xid", "13.13.13.0/24", "13.13.13.1", None);
        let pink = sb(
            "pink",
            Status::Running,
            vec![ep(&ovl, "12.12.12.2", None, &["db"])],
        );
        let blue = sb(
            "blue",
            Status::Running,
            vec![ep(&other, "13.13.13.2", None, &[])],
        );
        (ovl, other, pink, blue)
    }

    #[test]
    fn remote_changes_applied_in_place_answer_as_a_rebuild_does() {
        let (ovl, other, pink, blue) = two_networks();
        let (nets, sbs) = (vec![ovl.clone(), other.clone()], vec![pink, blue]);
        let mut p2 = remote(&ovl, "h2", "pink2", "12.12.12.3", &["cache"]);
        p2.hostname = Some("p2host".into());
        let changes = vec![
            NameChange::Reset(vec![
                p2.clone(),
                remote(&ovl, "h3", "pink3", "12.12.12.4", &[]),
            ]),
            NameChange::Put(remote(&other, "h2", "blue2", "13.13.13.3", &["cache"])),
            // A name and alias of the local pink's: yields.
            NameChange::Put(remote(&ovl, "h3", "pink", "12.12.12.5", &["db", "free"])),
            // pink2 moves to another address and loses its alias.
            NameChange::Put(EndpointRecord {
                ipv4: Some("12.12.12.6".parse().unwrap()),
                aliases: vec![],
                ..p2.clone()
            }),
            NameChange::Remove(key_of(&remote(&ovl, "h3", "pink3", "12.12.12.4", &[]))),
            NameChange::Put(remote(&ovl, "h4", "ghost", "10.0.0.1", &[])),
        ];
        let names = [
            "pink",
            "pink2",
            "pink3",
            "blue2",
            "db",
            "cache",
            "free",
            "p2host",
            "pink2.ovl",
            "pink.ovl",
            "blue2.other",
            "ghost",
        ];
        let addrs = [
            "12.12.12.2",
            "12.12.12.3",
            "12.12.12.4",
            "12.12.12.5",
            "12.12.12.6",
            "13.13.13.3",
            "10.0.0.1",
        ];
        let mut live = Table::build(&nets, &sbs);
        let mut kept = RemoteNames::default();
        for c in changes {
            live.apply_remote(&c);
            kept.apply(c);
            let rebuilt = Table::build_with_remote(&nets, &sbs, &kept);
            assert_eq!(
                answers(&live, &names, &addrs),
                answers(&rebuilt, &names, &addrs)
            );
            assert_eq!(live.records(), rebuilt.records());
        }
        // Everything gone: only the local names are left.
        live.apply_remote(&NameChange::Reset(vec![]));
        let local = Table::build(&nets, &sbs);
        assert_eq!(
            answers(&live, &names, &addrs),
            answers(&local, &names, &addrs)
        );
        assert_eq!(live.records(), local.records());
        assert_eq!(live.remote_len(), 0);
    }

    #[test]
    fn local_rebuilds_keep_the_remote_part_and_answer_as_a_full_build_does() {
        let (ovl, other, pink, blue) = two_networks();
        // A local sandbox that comes later with a remote one's name, and one with another
        // remote one's address.
        let red = sb(
            "red",
            Status::Running,
            vec![ep(&ovl, "12.12.12.9", None, &[])],
        );
        let thief = sb(
            "thief",
            Status::Running,
            vec![ep(&ovl, "12.12.12.3", None, &[])],
        );
        let mut kept = RemoteNames::default();
        let mut live = Table::build(std::slice::from_ref(&ovl), std::slice::from_ref(&pink));
        for c in [
            NameChange::Put(remote(&ovl, "h2", "pink2", "12.12.12.3", &["cache"])),
            NameChange::Put(remote(&ovl, "h3", "red", "12.12.12.4", &[])),
            NameChange::Put(remote(&other, "h2", "blue2", "13.13.13.3", &[])),
        ] {
            live.apply_remote(&c);
            kept.apply(c);
        }
        let names = [
            "pink",
            "pink2",
            "cache",
            "red",
            "red.ovl",
            "blue2",
            "blue2.other",
            "thief",
            "db",
        ];
        let addrs = [
            "12.12.12.2",
            "12.12.12.3",
            "12.12.12.4",
            "12.12.12.9",
            "13.13.13.3",
        ];
        let removing = Sandbox {
            status: Status::Removing,
            ..red.clone()
        };
        let steps: Vec<(Vec<Network>, Vec<Sandbox>)> = vec![
            // The network of blue2 made here: it is answered.
            (
                vec![ovl.clone(), other.clone()],
                vec![pink.clone(), blue.clone()],
            ),
            // A local red: the name and its PTR are its own.
            (
                vec![ovl.clone(), other.clone()],
                vec![pink.clone(), blue.clone(), red.clone()],
            ),
            // A local sandbox at pink2's address: pink2 is not answered at all.
            (
                vec![ovl.clone(), other.clone()],
                vec![pink.clone(), blue.clone(), red.clone(), thief.clone()],
            ),
            // Both go (red being removed first): the remote ones are answered again.
            (
                vec![ovl.clone(), other.clone()],
                vec![pink.clone(), blue.clone(), removing],
            ),
            // The networks in another order (renumbered), then blue2's network gone.
            (
                vec![other.clone(), ovl.clone()],
                vec![blue.clone(), pink.clone()],
            ),
            (vec![ovl.clone()], vec![pink.clone()]),
        ];
        let found = |a: &str| Lookup::Found {
            v4: vec![a.parse().unwrap()],
            v6: vec![],
        };
        for (i, (nets, sbs)) in steps.iter().enumerate() {
            live.rebuild_local(nets, sbs);
            // A remote change between two local rebuilds, undone at once.
            let extra = remote(&ovl, "h4", "extra", "12.12.12.7", &[]);
            live.apply_remote(&NameChange::Put(extra.clone()));
            live.apply_remote(&NameChange::Remove(key_of(&extra)));
            let rebuilt = Table::build_with_remote(nets, sbs, &kept);
            assert_eq!(
                answers(&live, &names, &addrs),
                answers(&rebuilt, &names, &addrs),
                "step {i}"
            );
            assert_eq!(live.records(), rebuilt.records(), "step {i}");
            let p = asker(&live, "12.12.12.1", "12.12.12.2");
            match i {
                0 => {
                    let b = asker(&live, "13.13.13.1", "13.13.13.2");
                    assert_eq!(live.lookup(b, "blue2"), found("13.13.13.3"));
                    assert_eq!(live.lookup(p, "red"), found("12.12.12.4"));
                }
                1 => {
                    assert_eq!(live.lookup(p, "red"), found("12.12.12.9"));
                    assert_eq!(live.lookup(p, "red.ovl"), found("12.12.12.9"));
                    assert_eq!(live.reverse(p, ip("12.12.12.4")), Err(false));
                }
                2 => {
                    assert_eq!(live.lookup(p, "pink2"), Lookup::Unknown);
                    assert_eq!(live.lookup(p, "cache"), Lookup::Unknown);
                    let ptr = live.reverse(p, ip("12.12.12.3")).unwrap();
                    assert_eq!(ptr.len(), 1);
                    assert_eq!(ptr[0].to_ascii(), "thief.ovl.");
                }
                3 => {
                    assert_eq!(live.lookup(p, "red"), found("12.12.12.4"));
                    assert_eq!(live.lookup(p, "pink2"), found("12.12.12.3"));
                    assert_eq!(
                        live.reverse(p, ip("12.12.12.4")).unwrap()[0].to_ascii(),
                        "red.ovl."
                    );
                }
                5 => {
                    assert_eq!(live.lookup(p, "blue2"), Lookup::Unknown);
                    assert_eq!(live.lookup(p, "pink2"), found("12.12.12.3"));
                }
                _ => {}
            }
        }
        assert_eq!(live.remote_len(), 3);
    }

    #[test]
    fn a_remote_name_gone_is_no_longer_answered() {
        let ovl = net("ovl", "oid", "12.12.12.0/24", "12.12.12.1", None);
        let pink = sb(
            "pink",
            Status::Running,
            vec![ep(&ovl, "12.12.12.2", None, &[])],
        );
        let mut names = RemoteNames::default();
        let r = remote(&ovl, "h2", "pink2", "12.12.12.3", &[]);
        names.apply(NameChange::Put(r.clone()));
        let t = Table::build_with_remote(
            std::slice::from_ref(&ovl),
            std::slice::from_ref(&pink),
            &names,
        );
        let p = asker(&t, "12.12.12.1", "12.12.12.2");
        assert!(matches!(t.lookup(p, "pink2"), Lookup::Found { .. }));
        names.apply(NameChange::Remove((r.network, r.node, r.sandbox)));
        let t = Table::build_with_remote(&[ovl], &[pink], &names);
        let p = asker(&t, "12.12.12.1", "12.12.12.2");
        assert_eq!(t.lookup(p, "pink2"), Lookup::Unknown);
        assert_eq!(t.reverse(p, ip("12.12.12.3")), Err(false));
    }
}

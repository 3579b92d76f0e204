//! IP address management: choosing a network's subnet and handing out addresses inside it.
//!
//! Pure logic: everything the host looks like arrives as a [`HostView`] (observed by
//! `adapters::host_facts`), everything weft already owns as [`ExistingNetwork`]s, and the
//! operator's off-limits ranges as [`AvoidEntry`]s.
//!
//! The rule behind subnet choice (scenario S1): weft never picks a range that contains a network
//! the host talks to: a route of any table, an interface address, a weft network, a declared
//! off-limits range, one of the host's DNS servers, or a peer of a live connection (a client
//! reached through the default route has no route of its own; only its connections show that
//! it exists).
//!
//! Address arithmetic is checked (no wrapping at the top of the address space).

#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::core::model::{AllocationReport, Skipped, SubnetConfig};

/// The configuration file that holds `default_address_pools`, named in hints.
pub const CONFIG_PATH: &str = "/etc/weft/weft.toml";

/// At most this many refused candidates are listed in an [`AllocationReport`]; later ones are
/// still checked but not recorded.
pub const SKIPPED_LIMIT: usize = 256;

/// IPv6 address allocation gives up after this many probes: a /64 is never walked in full.
pub const V6_PROBE_LIMIT: u128 = 65_536;

/// At most this many obstacles are spelled out in one reason or error message.
const OBSTACLES_SHOWN: usize = 8;

// ---------------------------------------------------------------------------------------------
// Facts about the host
// ---------------------------------------------------------------------------------------------

/// Facts observed about the network namespace weft runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    /// Routes of every routing table, both address families.
    pub routes: Vec<RouteFact>,
    /// Addresses of every interface, both address families.
    pub addresses: Vec<AddrFact>,
    /// Remote ends of live connections.
    pub peers: Vec<PeerFact>,
    /// The DNS servers the host's resolver uses.
    #[serde(default)]
    pub nameservers: Vec<NameserverFact>,
}

/// A DNS server named in the host's resolver configuration. A bridge subnet containing it
/// would capture every lookup, the host's and every sandbox's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NameserverFact {
    /// The server's address.
    pub addr: IpAddr,
    /// The file that names it, e.g. `/etc/resolv.conf`.
    pub source: String,
}

/// One route of one routing table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteFact {
    /// Destination prefix (`0.0.0.0/0` for a default route).
    pub dst: IpNet,
    /// Routing table id (254 = main, 255 = local, 253 = default).
    pub table: u32,
    /// Output device, when the route has one.
    pub dev: Option<String>,
    /// Next hop, when the route has one.
    pub gateway: Option<IpAddr>,
}

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrFact {
    /// The address with its prefix length, e.g. `192.168.1.5/24`.
    pub addr: IpNet,
    /// Interface name.
    pub dev: String,
}

/// Where a peer was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerSource {
    /// An established TCP connection of this namespace (`/proc/net/tcp*`).
    Tcp,
    /// An entry of the connection tracking table.
    Conntrack,
}

/// The remote end of a live connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerFact {
    /// The remote address.
    pub addr: IpAddr,
    /// The port on this host's side (for an incoming connection: the service's port).
    pub local_port: u16,
    /// The port on the peer's side.
    pub remote_port: u16,
    /// Where the connection was seen.
    pub source: PeerSource,
}

/// A range the operator declared off-limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvoidEntry {
    /// The range.
    pub cidr: IpNet,
    /// Where it was declared: `config` or `weft ipam avoid`.
    pub source: String,
}

/// An address pool in Docker's `default-address-pools` sense: `base` is cut into prefixes of
/// length `size`, tried in ascending order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The range the candidates are taken from.
    pub base: IpNet,
    /// Prefix length of each candidate.
    pub size: u8,
}

/// A subnet a weft network already uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingNetwork {
    /// Network name.
    pub name: String,
    /// Its subnet.
    pub subnet: IpNet,
}

/// Docker's IPv4 defaults: 172.17.0.0/16 to 172.31.0.0/16 (one pool per /16, so the first
/// candidate is 172.17.0.0/16), then 192.168.0.0/16 cut into /20s.
pub fn default_pools() -> Vec<Pool> {
    let mut pools: Vec<Pool> = (17..=31u8)
        .map(|b| Pool {
            base: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("valid /16")),
            size: 16,
        })
        .collect();
    pools.push(Pool {
        base: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16).expect("valid /16")),
        size: 20,
    });
    pools
}

/// weft's IPv6 default: the fixed ULA prefix `fd5e:f7a1:7c00::/48` cut into /64s.
pub fn default_v6_pools() -> Vec<Pool> {
    vec![Pool {
        base: IpNet::V6(
            Ipv6Net::new(Ipv6Addr::new(0xfd5e, 0xf7a1, 0x7c00, 0, 0, 0, 0, 0), 48)
                .expect("valid /48"),
        ),
        size: 64,
    }]
}

// ---------------------------------------------------------------------------------------------
// Obstacles
// ---------------------------------------------------------------------------------------------

/// One reason a candidate subnet would break traffic. Its `Display` names the candidate, the
/// offending value and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Obstacle {
    /// The candidate overlaps a route of some routing table.
    Route {
        /// The refused prefix.
        candidate: IpNet,
        /// The route.
        route: RouteFact,
    },
    /// The candidate overlaps the prefix of an interface address.
    Address {
        /// The refused prefix.
        candidate: IpNet,
        /// The address.
        addr: AddrFact,
    },
    /// The candidate overlaps a weft network.
    Network {
        /// The refused prefix.
        candidate: IpNet,
        /// The network.
        network: ExistingNetwork,
    },
    /// The candidate overlaps a range declared off-limits.
    Avoid {
        /// The refused prefix.
        candidate: IpNet,
        /// The declaration.
        entry: AvoidEntry,
    },
    /// The candidate contains one of the host's DNS servers.
    Nameserver {
        /// The refused prefix.
        candidate: IpNet,
        /// The server.
        nameserver: NameserverFact,
    },
    /// The candidate contains the address of a peer of a live connection.
    Peer {
        /// The refused prefix.
        candidate: IpNet,
        /// The connection.
        peer: PeerFact,
    },
}

/// `main`, `local`, `default` or the number.
fn table_name(table: u32) -> String {
    match table {
        253 => "default".to_string(),
        254 => "main".to_string(),
        255 => "local".to_string(),
        n => n.to_string(),
    }
}

impl fmt::Display for Obstacle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obstacle::Route { candidate, route } => {
                write!(f, "{candidate} overlaps route {}", route.dst)?;
                if let Some(gw) = route.gateway {
                    write!(f, " via {gw}")?;
                }
                if let Some(dev) = &route.dev {
                    write!(f, " dev {dev}")?;
                }
                write!(f, " (table {})", table_name(route.table))
            }
            Obstacle::Address { candidate, addr } => {
                write!(
                    f,
                    "{candidate} overlaps address {} on {}",
                    addr.addr, addr.dev
                )
            }
            Obstacle::Network { candidate, network } => write!(
                f,
                "{candidate} overlaps weft network \"{}\" ({})",
                network.name, network.subnet
            ),
            Obstacle::Avoid { candidate, entry } => write!(
                f,
                "{candidate} overlaps {}, declared off-limits ({})",
                entry.cidr, entry.source
            ),
            Obstacle::Nameserver {
                candidate,
                nameserver,
            } => write!(
                f,
                "{candidate} contains {}, a nameserver of this host ({})",
                nameserver.addr, nameserver.source
            ),
            Obstacle::Peer { candidate, peer } => match peer.source {
                PeerSource::Tcp => write!(
                    f,
                    "{candidate} contains {}, a peer of an established TCP connection on port {}",
                    peer.addr, peer.local_port
                ),
                PeerSource::Conntrack => write!(
                    f,
                    "{candidate} contains {}, a peer in the connection tracking table",
                    peer.addr
                ),
            },
        }
    }
}

/// Whether two prefixes share an address (same family only; one then contains the other).
fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let (a, b) = (a.trunc(), b.trunc());
    match (a, b) {
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)) => {
            a.contains(&b) || b.contains(&a)
        }
        _ => false,
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Whether a route is a network for the purpose of subnet choice: default-like routes (shorter
/// than /8, which covers `0.0.0.0/0`, `::/0` and a VPN's `0.0.0.0/1` + `128.0.0.0/1`), IPv6
/// link-local and multicast routes are not.
fn route_counts(route: &RouteFact) -> bool {
    if route.dst.prefix_len() < 8 {
        return false;
    }
    let first = route.dst.network();
    !(first.is_multicast() || matches!(route.dst, IpNet::V6(_)) && is_link_local(&first))
}

/// Whether a peer or nameserver address is one that a bridge subnet could capture (a
/// loopback or link-local address never leaves through a bridge).
fn peer_counts(addr: &IpAddr) -> bool {
    !(addr.is_loopback() || addr.is_unspecified() || is_link_local(addr))
}

fn contains_addr(net: &IpNet, addr: &IpAddr) -> bool {
    match (net, addr) {
        (IpNet::V4(n), IpAddr::V4(a)) => n.contains(a),
        (IpNet::V6(n), IpAddr::V6(a)) => n.contains(a),
        _ => false,
    }
}

/// Every reason `candidate` would break traffic, in the order routes, addresses, weft networks,
/// avoid entries, nameservers, peers (one obstacle per distinct nameserver or peer address: the
/// first fact seen for it). Loopback and link-local nameservers and peers are no obstacle.
/// Empty means the candidate is safe.
pub fn obstacles(
    candidate: IpNet,
    host: &HostView,
    networks: &[ExistingNetwork],
    avoid: &[AvoidEntry],
) -> Vec<Obstacle> {
    let candidate = candidate.trunc();
    let mut out = Vec::new();
    for route in &host.routes {
        if route_counts(route) && overlaps(&candidate, &route.dst) {
            out.push(Obstacle::Route {
                candidate,
                route: route.clone(),
            });
        }
    }
    for addr in &host.addresses {
        if overlaps(&candidate, &addr.addr) {
            out.push(Obstacle::Address {
                candidate,
                addr: addr.clone(),
            });
        }
    }
    for network in networks {
        if overlaps(&candidate, &network.subnet) {
            out.push(Obstacle::Network {
                candidate,
                network: network.clone(),
            });
        }
    }
    for entry in avoid {
        if overlaps(&candidate, &entry.cidr) {
            out.push(Obstacle::Avoid {
                candidate,
                entry: entry.clone(),
            });
        }
    }
    let mut seen = HashSet::new();
    for ns in &host.nameservers {
        let addr = ns.addr.to_canonical();
        if peer_counts(&addr) && contains_addr(&candidate, &addr) && seen.insert(addr) {
            out.push(Obstacle::Nameserver {
                candidate,
                nameserver: NameserverFact { addr, ..ns.clone() },
            });
        }
    }
    let mut seen = HashSet::new();
    for peer in &host.peers {
        let addr = peer.addr.to_canonical();
        if peer_counts(&addr) && contains_addr(&candidate, &addr) && seen.insert(addr) {
            out.push(Obstacle::Peer {
                candidate,
                peer: PeerFact {
                    addr,
                    ..peer.clone()
                },
            });
        }
    }
    out
}

/// The obstacles joined by `; `, at most [`OBSTACLES_SHOWN`] of them, then `and N more`.
fn join_obstacles(obstacles: &[Obstacle]) -> String {
    let mut parts: Vec<String> = obstacles
        .iter()
        .take(OBSTACLES_SHOWN)
        .map(|o| o.to_string())
        .collect();
    if obstacles.len() > OBSTACLES_SHOWN {
        parts.push(format!(
            "and {} more",
            obstacles.len().saturating_sub(OBSTACLES_SHOWN)
        ));
    }
    parts.join("; ")
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What IPAM refuses, one line each, naming the value and giving a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// No candidate of any pool is free of obstacles.
    #[error("no free subnet left in the address pools ({tried} candidates tried); {hint}")]
    PoolsExhausted {
        /// Number of candidates examined.
        tried: usize,
        /// What to do about it.
        hint: String,
    },
    /// An explicit subnet would capture traffic the host relies on.
    #[error(
        "subnet {subnet} would break traffic: {}; use another --subnet, or --allow-overlap if you are sure",
        join_obstacles(obstacles)
    )]
    Overlap {
        /// The subnet asked for.
        subnet: IpNet,
        /// Every reason.
        obstacles: Vec<Obstacle>,
    },
    /// A pool that cannot be cut into usable subnets.
    #[error("address pool {base} with size {size} is invalid: {reason}")]
    InvalidPool {
        /// The pool's base.
        base: IpNet,
        /// The pool's size.
        size: u8,
        /// Why, and what would work.
        reason: String,
    },
    /// The subnet has host bits set.
    #[error("subnet {subnet} is not a network address: did you mean {network}?")]
    NotNetworkAddress {
        /// As given.
        subnet: IpNet,
        /// The network it lies in.
        network: IpNet,
    },
    /// The subnet has no room for a gateway and a sandbox.
    #[error("subnet {subnet} is too small for a network: {hint}")]
    SubnetTooSmall {
        /// As given.
        subnet: IpNet,
        /// What would work.
        hint: String,
    },
    /// A value of the other address family.
    #[error("{what} {value} is {value_family} but subnet {subnet} is {subnet_family}; give an {subnet_family} {what}")]
    FamilyMismatch {
        /// `gateway`, `ip range`, `aux address "name"`, `address`.
        what: String,
        /// The value, as text.
        value: String,
        /// `IPv4` or `IPv6`.
        value_family: &'static str,
        /// The subnet.
        subnet: IpNet,
        /// `IPv4` or `IPv6`.
        subnet_family: &'static str,
    },
    /// An address outside the subnet.
    #[error("{what} {ip} is outside subnet {subnet}; pick an address inside it, e.g. {example}")]
    OutsideSubnet {
        /// `gateway`, `aux address "name"`, `address`.
        what: String,
        /// The address.
        ip: IpAddr,
        /// The subnet.
        subnet: IpNet,
        /// A usable address of the subnet.
        example: IpAddr,
    },
    /// An address that cannot be given to anything (network, broadcast, gateway, reserved).
    #[error("{what} {ip} is {role}; pick another address, e.g. {example}")]
    ReservedAddress {
        /// `gateway`, `aux address "name"`, `address`.
        what: String,
        /// The address.
        ip: IpAddr,
        /// What the address is, e.g. `the network address of 172.18.0.0/16`.
        role: String,
        /// A usable address of the subnet.
        example: IpAddr,
    },
    /// `--ip-range` with host bits set.
    #[error("ip range {ip_range} is not a network address: did you mean {network}?")]
    IpRangeNotNetwork {
        /// As given.
        ip_range: IpNet,
        /// The network it lies in.
        network: IpNet,
    },
    /// `--ip-range` not inside the subnet.
    #[error("ip range {ip_range} is not inside subnet {subnet}; pick a range inside it")]
    IpRangeOutside {
        /// As given.
        ip_range: IpNet,
        /// The subnet.
        subnet: IpNet,
    },
    /// A prefix or address in a range that cannot hold a network or a sandbox address
    /// (loopback, link-local, multicast, ...).
    #[error("{what} {value} {relation} ({range}): {hint}")]
    SpecialRange {
        /// Where the value came from: `--subnet`, `--gateway`, `--ip`, `address pool` ...
        what: String,
        /// The value as given (for aux addresses `NAME=IP`).
        value: String,
        /// What it is: `is loopback`, `contains multicast addresses` ...
        relation: String,
        /// The special range.
        range: IpNet,
        /// What to use instead.
        hint: String,
    },
    /// No free address in the subnet (or its ip range). For IPv6 this also means that
    /// [`V6_PROBE_LIMIT`] addresses after the cursor were all taken.
    #[error("no free address left in {subnet}; remove unused sandboxes, or use a network with a larger --subnet or --ip-range")]
    SubnetExhausted {
        /// The prefix that was scanned: the ip range if the network has one, else the subnet.
        subnet: IpNet,
    },
    /// A static address already held by someone else.
    #[error(
        "address {ip} is already in use by sandbox \"{by}\"; pick another address, or let weft choose one"
    )]
    AddressInUse {
        /// The address.
        ip: IpAddr,
        /// Name (or id) of the sandbox holding it.
        by: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Subnet choice
// ---------------------------------------------------------------------------------------------

fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

fn addr_family(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// Checks that a pool can be cut into usable bridge subnets: `size` at least the base's prefix
/// length, at most /30 (IPv4) or /126 (IPv6), and a base outside the special ranges (see
/// [`check_usable_net`]).
pub fn validate_pool(pool: &Pool) -> Result<(), IpamError> {
    check_usable_net("address pool", pool.base)?;
    let max = match pool.base {
        IpNet::V4(_) => 30,
        IpNet::V6(_) => 126,
    };
    let invalid = |reason: String| IpamError::InvalidPool {
        base: pool.base,
        size: pool.size,
        reason,
    };
    if pool.size < pool.base.prefix_len() {
        return Err(invalid(format!(
            "size must be at least the base's prefix length ({})",
            pool.base.prefix_len()
        )));
    }
    if pool.size > max {
        return Err(invalid(format!(
            "subnets of /{} leave no room for a gateway and a sandbox; use a size of at most {max}",
            pool.size
        )));
    }
    Ok(())
}

/// Copies of the facts that overlap `pool`: the only ones that can refuse its candidates.
fn relevant(
    pool: &IpNet,
    host: &HostView,
    networks: &[ExistingNetwork],
    avoid: &[AvoidEntry],
) -> (HostView, Vec<ExistingNetwork>, Vec<AvoidEntry>) {
    let view = HostView {
        routes: host
            .routes
            .iter()
            .filter(|r| overlaps(pool, &r.dst))
            .cloned()
            .collect(),
        addresses: host
            .addresses
            .iter()
            .filter(|a| overlaps(pool, &a.addr))
            .cloned()
            .collect(),
        peers: host
            .peers
            .iter()
            .filter(|p| contains_addr(pool, &p.addr.to_canonical()))
            .cloned()
            .collect(),
        nameservers: host
            .nameservers
            .iter()
            .filter(|n| contains_addr(pool, &n.addr.to_canonical()))
            .cloned()
            .collect(),
    };
    let nets = networks
        .iter()
        .filter(|n| overlaps(pool, &n.subnet))
        .cloned()
        .collect();
    let avoid = avoid
        .iter()
        .filter(|a| overlaps(pool, &a.cidr))
        .cloned()
        .collect();
    (view, nets, avoid)
}

/// Chooses a subnet automatically: walks `pools` of the requested family (`v6`) in order and
/// each pool's candidates in ascending order, and returns the first candidate without
/// [`obstacles`].
///
/// The report names the pool the subnet came from and lists every candidate refused before it,
/// across all pools walked, with its reasons; the list is capped at [`SKIPPED_LIMIT`] entries
/// (later refusals are not recorded), and each reason at a few obstacles.
pub fn choose_subnet(
    pools: &[Pool],
    v6: bool,
    host: &HostView,
    networks: &[ExistingNetwork],
    avoid: &[AvoidEntry],
) -> Result<(IpNet, AllocationReport), IpamError> {
    let mut skipped = Vec::new();
    let mut tried = 0usize;
    let mut any_pool = false;
    for pool in pools
        .iter()
        .filter(|p| matches!(p.base, IpNet::V6(_)) == v6)
    {
        validate_pool(pool)?;
        any_pool = true;
        let base = pool.base.trunc();
        let (view, nets, avoid) = relevant(&base, host, networks, avoid);
        let candidates = base
            .subnets(pool.size)
            .map_err(|_| IpamError::InvalidPool {
                base: pool.base,
                size: pool.size,
                reason: "size is not a valid prefix length".to_string(),
            })?;
        for candidate in candidates {
            tried = tried.saturating_add(1);
            let found = obstacles(candidate, &view, &nets, &avoid);
            if found.is_empty() {
                return Ok((
                    candidate,
                    AllocationReport {
                        pool: base,
                        skipped,
                    },
                ));
            }
            if skipped.len() < SKIPPED_LIMIT {
                skipped.push(Skipped {
                    candidate,
                    reason: join_obstacles(&found),
                });
            }
        }
    }
    let fam = if v6 { "IPv6" } else { "IPv4" };
    let hint = if any_pool {
        format!(
            "every candidate overlaps a route, address, nameserver, peer, weft network or avoided range; pass --subnet, or add an {fam} pool to default_address_pools in {CONFIG_PATH}"
        )
    } else {
        format!("no {fam} pool is configured; pass --subnet, or add an {fam} pool to default_address_pools in {CONFIG_PATH}")
    };
    Err(IpamError::PoolsExhausted { tried, hint })
}

/// Refuses an explicit subnet that would capture traffic the host relies on, listing every
/// reason (see [`obstacles`]).
pub fn check_explicit(
    subnet: IpNet,
    host: &HostView,
    networks: &[ExistingNetwork],
    avoid: &[AvoidEntry],
) -> Result<(), IpamError> {
    let found = obstacles(subnet, host, networks, avoid);
    if found.is_empty() {
        Ok(())
    } else {
        Err(IpamError::Overlap {
            subnet,
            obstacles: found,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Special ranges
// ---------------------------------------------------------------------------------------------

/// A range no network and no address may come from: what a value inside it is, and what a
/// prefix containing it contains.
struct Special {
    range: IpNet,
    is: &'static str,
    contains: &'static str,
}

/// The ranges the kernel gives a meaning of their own (loopback, link-local, multicast,
/// broadcast, unspecified, IPv4-mapped): on a bridge they fail late ("Invalid argument"),
/// or work and break the host.
fn specials() -> [Special; 10] {
    let net = |a: IpAddr, len: u8| IpNet::new(a, len).expect("a valid prefix length");
    let v4 = |a: u8, b: u8, c: u8, d: u8, len| net(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), len);
    let v6 = |first: u16, last: u16, len| {
        net(
            IpAddr::V6(Ipv6Addr::new(first, 0, 0, 0, 0, last, 0, 0)),
            len,
        )
    };
    [
        Special {
            range: v4(0, 0, 0, 0, 8),
            is: "unspecified (\"this network\")",
            contains: "unspecified (\"this network\") addresses",
        },
        Special {
            range: v4(127, 0, 0, 0, 8),
            is: "loopback",
            contains: "loopback addresses",
        },
        Special {
            range: v4(169, 254, 0, 0, 16),
            is: "link-local",
            contains: "link-local addresses",
        },
        Special {
            range: v4(224, 0, 0, 0, 4),
            is: "multicast",
            contains: "multicast addresses",
        },
        Special {
            range: v4(255, 255, 255, 255, 32),
            is: "the limited broadcast address",
            contains: "the limited broadcast address",
        },
        Special {
            range: net(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128),
            is: "the unspecified address",
            contains: "the unspecified address",
        },
        Special {
            range: net(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            is: "the loopback address",
            contains: "the loopback address",
        },
        Special {
            range: v6(0, 0xffff, 96),
            is: "IPv4-mapped",
            contains: "IPv4-mapped addresses",
        },
        Special {
            range: v6(0xfe80, 0, 10),
            is: "link-local",
            contains: "link-local addresses",
        },
        Special {
            range: v6(0xff00, 0, 8),
            is: "multicast",
            contains: "multicast addresses",
        },
    ]
}

/// What to use instead of a special prefix.
fn range_hint(v6: bool) -> String {
    if v6 {
        "choose a unique local range such as fd00::/8, e.g. fd12:3456:789a::/64".to_string()
    } else {
        "choose a private range such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16".to_string()
    }
}

/// Refuses a prefix that is, or overlaps, a special range (loopback, link-local, multicast,
/// the limited broadcast address, unspecified, IPv4-mapped). `what` names where it came
/// from in the message (`--subnet`, `--ip-range`, `address pool`).
pub fn check_usable_net(what: &str, net: IpNet) -> Result<(), IpamError> {
    let prefix = net.trunc();
    for sp in specials() {
        if !overlaps(&prefix, &sp.range) {
            continue;
        }
        let relation = if sp.range.contains(&prefix) {
            format!("is {}", sp.is)
        } else {
            format!("contains {}", sp.contains)
        };
        return Err(IpamError::SpecialRange {
            what: what.to_string(),
            value: net.to_string(),
            relation,
            range: sp.range,
            hint: range_hint(is_v6(&net)),
        });
    }
    Ok(())
}

/// Refuses an address in a special range (see [`check_usable_net`]). `what` names where it
/// came from (`--gateway`, `--ip`), `value` is the text to show (the address, or `NAME=IP`
/// for an aux address), `hint` what to give instead.
pub fn check_usable_addr(what: &str, value: &str, ip: IpAddr, hint: &str) -> Result<(), IpamError> {
    for sp in specials() {
        if contains_addr(&sp.range, &ip) {
            return Err(IpamError::SpecialRange {
                what: what.to_string(),
                value: value.to_string(),
                relation: format!("is {}", sp.is),
                range: sp.range,
                hint: hint.to_string(),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Subnet configuration
// ---------------------------------------------------------------------------------------------

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        // Callers only pass values that came from IPv4 addresses.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX)))
    }
}

fn is_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(_))
}

/// The first address after the network address.
fn first_usable(subnet: &IpNet) -> IpAddr {
    let n = to_u128(subnet.network());
    from_u128(n.saturating_add(1), is_v6(subnet))
}

/// A usable address of `subnet` other than `taken`: the first one, or the one after it.
fn other_than(subnet: &IpNet, taken: IpAddr) -> IpAddr {
    let first = first_usable(subnet);
    if first == taken {
        from_u128(to_u128(first).saturating_add(1), is_v6(subnet))
    } else {
        first
    }
}

/// Why `ip` cannot be assigned in `subnet`, if it is the network address or (IPv4) the
/// broadcast address.
fn special_role(subnet: &IpNet, ip: &IpAddr) -> Option<String> {
    if *ip == subnet.network() {
        return Some(format!("the network address of {subnet}"));
    }
    if !is_v6(subnet) && *ip == subnet.broadcast() {
        return Some(format!("the broadcast address of {subnet}"));
    }
    None
}

/// Checks that `ip` (called `what` in messages) is of the subnet's family, inside it and not
/// its network or broadcast address.
fn check_member(subnet: &IpNet, what: &str, ip: IpAddr) -> Result<(), IpamError> {
    if ip.is_ipv6() != is_v6(subnet) {
        return Err(IpamError::FamilyMismatch {
            what: what.to_string(),
            value: ip.to_string(),
            value_family: addr_family(&ip),
            subnet: *subnet,
            subnet_family: family(subnet),
        });
    }
    if !contains_addr(subnet, &ip) {
        return Err(IpamError::OutsideSubnet {
            what: what.to_string(),
            ip,
            subnet: *subnet,
            example: first_usable(subnet),
        });
    }
    if let Some(role) = special_role(subnet, &ip) {
        return Err(IpamError::ReservedAddress {
            what: what.to_string(),
            ip,
            role,
            example: first_usable(subnet),
        });
    }
    Ok(())
}

/// Validates one address family's configuration of a network and fills in the default gateway
/// (the first usable address).
///
/// Refused: a subnet with host bits set, IPv4 /31 and /32, IPv6 /127 and /128, a gateway or aux
/// address outside the subnet or equal to its network or (IPv4) broadcast address, an aux
/// address equal to the gateway, an ip range with host bits set or not inside the subnet, and
/// any value of the other address family (a dual-stack network passes each call only its own
/// family's aux addresses). Special ranges are refused before, with the flag that gave them
/// ([`check_usable_net`], [`check_usable_addr`]).
pub fn validate_subnet(
    subnet: IpNet,
    gateway: Option<IpAddr>,
    ip_range: Option<IpNet>,
    aux: &[(String, IpAddr)],
) -> Result<SubnetConfig, IpamError> {
    if subnet != subnet.trunc() {
        return Err(IpamError::NotNetworkAddress {
            subnet,
            network: subnet.trunc(),
        });
    }
    let too_small = match subnet {
        IpNet::V4(_) => subnet.prefix_len() > 30,
        IpNet::V6(_) => subnet.prefix_len() > 126,
    };
    if too_small {
        let (max, example) = match subnet {
            IpNet::V4(_) => (30, IpNet::new(subnet.network(), 30)),
            IpNet::V6(_) => (126, IpNet::new(subnet.network(), 126)),
        };
        let example = example.map(|e| e.trunc().to_string()).unwrap_or_default();
        return Err(IpamError::SubnetTooSmall {
            subnet,
            hint: format!(
                "it leaves no address for both a gateway and a sandbox; use /{max} or larger, e.g. {example}"
            ),
        });
    }
    let gateway = match gateway {
        Some(gw) => {
            check_member(&subnet, "gateway", gw)?;
            gw
        }
        None => first_usable(&subnet),
    };
    if let Some(range) = ip_range {
        if is_v6(&range) != is_v6(&subnet) {
            return Err(IpamError::FamilyMismatch {
                what: "ip range".to_string(),
                value: range.to_string(),
                value_family: family(&range),
                subnet,
                subnet_family: family(&subnet),
            });
        }
        if range != range.trunc() {
            return Err(IpamError::IpRangeNotNetwork {
                ip_range: range,
                network: range.trunc(),
            });
        }
        if !subnet.contains(&range) {
            return Err(IpamError::IpRangeOutside {
                ip_range: range,
                subnet,
            });
        }
    }
    for (name, ip) in aux {
        let what = format!("aux address \"{name}\"");
        check_member(&subnet, &what, *ip)?;
        // The bridge holds the gateway; an aux address there would reserve nothing.
        if *ip == gateway {
            return Err(IpamError::ReservedAddress {
                what,
                ip: *ip,
                role: format!("the gateway of {subnet}"),
                example: other_than(&subnet, gateway),
            });
        }
    }
    Ok(SubnetConfig {
        subnet,
        gateway,
        ip_range,
    })
}

// ---------------------------------------------------------------------------------------------
// Addresses inside a subnet
// ---------------------------------------------------------------------------------------------

/// The addresses of one subnet that can be handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSpace {
    /// The network's subnet.
    pub subnet: IpNet,
    /// The gateway (the bridge's address), never handed out.
    pub gateway: IpAddr,
    /// Dynamic allocation is limited to this range when set.
    pub ip_range: Option<IpNet>,
    /// Addresses never handed out (aux addresses).
    pub reserved: Vec<IpAddr>,
}

impl AddressSpace {
    /// The space of a validated subnet configuration with the given reserved addresses.
    pub fn from_config(config: &SubnetConfig, reserved: Vec<IpAddr>) -> Self {
        AddressSpace {
            subnet: config.subnet,
            gateway: config.gateway,
            ip_range: config.ip_range,
            reserved,
        }
    }
}

/// Hands out the next free address: scans forward from the address after `cursor` (the last
/// address handed out; the start of the range when `None` or outside it), wrapping around,
/// through the ip range (or the whole subnet), skipping the network address, the IPv4
/// broadcast address, the gateway, reserved addresses and addresses for which `is_taken`
/// returns true. A freed address is thus reused only after every other one.
///
/// Cost: one `is_taken` call per probe, and probes stop at the first free address, so a
/// sparsely used /16 costs a handful of lookups. IPv6 scans give up after [`V6_PROBE_LIMIT`]
/// probes.
pub fn allocate(
    space: &AddressSpace,
    cursor: Option<IpAddr>,
    mut is_taken: impl FnMut(IpAddr) -> bool,
) -> Result<IpAddr, IpamError> {
    let range = space.ip_range.unwrap_or(space.subnet).trunc();
    let v6 = is_v6(&range);
    let first = to_u128(range.network());
    let last = to_u128(range.broadcast());
    let size = last.saturating_sub(first).saturating_add(1);
    let limit = if v6 { size.min(V6_PROBE_LIMIT) } else { size };
    // The address after the cursor, wrapping to the start of the range (`c < last` here,
    // so `c + 1` cannot overflow).
    let start = match cursor {
        Some(c) if contains_addr(&range, &c) && to_u128(c) < last => to_u128(c).saturating_add(1),
        _ => first,
    };
    let net = to_u128(space.subnet.network());
    let bcast = to_u128(space.subnet.broadcast());
    // Forward from `start` to the end of the range, then from its beginning: every address
    // once, at most `limit` of them.
    let order = (start..=last).chain(first..start);
    for cur in order.take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        let ip = from_u128(cur, v6);
        let excluded = cur == net
            || (!v6 && cur == bcast)
            || ip == space.gateway
            || space.reserved.contains(&ip);
        if !excluded && !is_taken(ip) {
            return Ok(ip);
        }
    }
    Err(IpamError::SubnetExhausted { subnet: range })
}

/// Checks a static address (`--ip`): inside the subnet (not necessarily the ip range), not
/// the network, broadcast or gateway address, not reserved, and not held by a sandbox
/// (`taken_by`: the name, or id, of the sandbox holding it, if any).
pub fn check_static(
    space: &AddressSpace,
    ip: IpAddr,
    taken_by: Option<String>,
) -> Result<(), IpamError> {
    check_member(&space.subnet, "address", ip)?;
    let example = first_usable(&space.subnet);
    if ip == space.gateway {
        return Err(IpamError::ReservedAddress {
            what: "address".to_string(),
            ip,
            role: format!("the gateway of {}", space.subnet),
            example: from_u128(to_u128(space.gateway).saturating_add(1), ip.is_ipv6()),
        });
    }
    if space.reserved.contains(&ip) {
        return Err(IpamError::ReservedAddress {
            what: "address".to_string(),
            ip,
            role: format!("reserved (an aux address of {})", space.subnet),
            example,
        });
    }
    if let Some(by) = taken_by {
        return Err(IpamError::AddressInUse { ip, by });
    }
    Ok(())
}

#[cfg(test)]
// Tests compute expected values directly; an overflow there panics the test (debug build).
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::HashSet;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn route(dst: &str, gw: Option<&str>, dev: &str, table: u32) -> RouteFact {
        RouteFact {
            dst: net(dst),
            table,
            dev: Some(dev.to_string()),
            gateway: gw.map(ip),
        }
    }

    fn tcp_peer(addr: &str, local_port: u16) -> PeerFact {
        PeerFact {
            addr: ip(addr),
            local_port,
            remote_port: 51234,
            source: PeerSource::Tcp,
        }
    }

    /// The server of scenario S1.
    fn s1_host() -> HostView {
        HostView {
            routes: vec![
                route("0.0.0.0/0", Some("172.42.10.1"), "eno8303", 254),
                route("172.42.10.0/24", None, "eno8303", 254),
                route("127.0.0.0/8", None, "lo", 255),
                route("172.42.10.112/32", None, "eno8303", 255),
            ],
            addresses: vec![
                AddrFact {
                    addr: net("127.0.0.1/8"),
                    dev: "lo".into(),
                },
                AddrFact {
                    addr: net("172.42.10.112/24"),
                    dev: "eno8303".into(),
                },
            ],
            peers: vec![tcp_peer("172.22.5.10", 22)],
            nameservers: vec![],
        }
    }

    fn existing(name: &str, subnet: &str) -> ExistingNetwork {
        ExistingNetwork {
            name: name.into(),
            subnet: net(subnet),
        }
    }

    #[test]
    fn default_pools_start_like_docker() {
        let pools = default_pools();
        assert_eq!(pools[0].base, net("172.17.0.0/16"));
        assert_eq!(pools[0].size, 16);
        assert_eq!(pools[14].base, net("172.31.0.0/16"));
        assert_eq!(pools.last().unwrap().base, net("192.168.0.0/16"));
        assert_eq!(pools.last().unwrap().size, 20);
        for p in pools.iter().chain(default_v6_pools().iter()) {
            validate_pool(p).unwrap();
        }
        assert_eq!(default_v6_pools()[0].size, 64);
    }

    #[test]
    fn s1_skips_the_clients_network_and_says_why() {
        let host = s1_host();
        let networks: Vec<_> = (17..=21)
            .map(|b| existing(&format!("n{b}"), &format!("172.{b}.0.0/16")))
            .collect();
        let (subnet, report) =
            choose_subnet(&default_pools(), false, &host, &networks, &[]).unwrap();
        assert_eq!(subnet, net("172.23.0.0/16"));
        assert_eq!(report.pool, net("172.23.0.0/16"));
        assert_eq!(report.skipped.len(), 6);
        let last = &report.skipped[5];
        assert_eq!(last.candidate, net("172.22.0.0/16"));
        assert_eq!(
            last.reason,
            "172.22.0.0/16 contains 172.22.5.10, a peer of an established TCP connection on port 22"
        );
        assert_eq!(
            report.skipped[0].reason,
            "172.17.0.0/16 overlaps weft network \"n17\" (172.17.0.0/16)"
        );
    }

    #[test]
    fn s1_with_nothing_else_picks_172_17() {
        let (subnet, report) =
            choose_subnet(&default_pools(), false, &s1_host(), &[], &[]).unwrap();
        assert_eq!(subnet, net("172.17.0.0/16"));
        assert!(report.skipped.is_empty());
    }

    #[test]
    fn s1_never_picks_the_hosts_own_network() {
        let pools = [Pool {
            base: net("172.40.0.0/14"),
            size: 16,
        }];
        let host = s1_host();
        let networks = [
            existing("a", "172.40.0.0/16"),
            existing("b", "172.41.0.0/16"),
        ];
        let (subnet, report) = choose_subnet(&pools, false, &host, &networks, &[]).unwrap();
        assert_eq!(subnet, net("172.43.0.0/16"));
        let skipped = &report.skipped[2];
        assert_eq!(skipped.candidate, net("172.42.0.0/16"));
        assert_eq!(
            skipped.reason,
            "172.42.0.0/16 overlaps route 172.42.10.0/24 dev eno8303 (table main); \
             172.42.0.0/16 overlaps route 172.42.10.112/32 dev eno8303 (table local); \
             172.42.0.0/16 overlaps address 172.42.10.112/24 on eno8303"
        );
        // Small candidates inside the host's /24 are refused too, others are not.
        let pools = [Pool {
            base: net("172.42.10.0/23"),
            size: 25,
        }];
        let (subnet, report) = choose_subnet(&pools, false, &host, &[], &[]).unwrap();
        assert_eq!(subnet, net("172.42.11.0/25"));
        assert_eq!(report.skipped.len(), 2);
    }

    #[test]
    fn vpn_split_default_routes_do_not_block_pools() {
        let mut host = s1_host();
        host.routes
            .push(route("0.0.0.0/1", Some("10.8.0.1"), "tun0", 254));
        host.routes
            .push(route("128.0.0.0/1", Some("10.8.0.1"), "tun0", 254));
        host.routes
            .push(route("::/0", Some("fe80::1"), "eno8303", 254));
        let (subnet, _) = choose_subnet(&default_pools(), false, &host, &[], &[]).unwrap();
        assert_eq!(subnet, net("172.17.0.0/16"));
    }

    #[test]
    fn routes_of_any_length_from_8_count_and_contain_either_way() {
        let host = HostView {
            routes: vec![
                route("172.16.0.0/12", Some("10.0.0.1"), "eth0", 100),
                route("10.1.2.0/24", None, "eth1", 254),
            ],
            ..Default::default()
        };
        let o = obstacles(net("172.18.0.0/16"), &host, &[], &[]);
        assert_eq!(
            o.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            ["172.18.0.0/16 overlaps route 172.16.0.0/12 via 10.0.0.1 dev eth0 (table 100)"]
        );
        assert_eq!(obstacles(net("10.0.0.0/8"), &host, &[], &[]).len(), 1);
        assert!(obstacles(net("10.1.3.0/24"), &host, &[], &[]).is_empty());
    }

    #[test]
    fn loopback_route_refuses_overlapping_candidate() {
        let host = s1_host();
        let o = obstacles(net("127.0.0.0/16"), &host, &[], &[]);
        assert_eq!(
            o[0].to_string(),
            "127.0.0.0/16 overlaps route 127.0.0.0/8 dev lo (table local)"
        );
        assert_eq!(
            o[1].to_string(),
            "127.0.0.0/16 overlaps address 127.0.0.1/8 on lo"
        );
    }

    #[test]
    fn link_local_and_multicast_routes_are_ignored() {
        let host = HostView {
            routes: vec![
                route("fe80::/64", None, "eth0", 254),
                route("ff00::/8", None, "eth0", 255),
                route("224.0.0.0/4", None, "eth0", 254),
            ],
            ..Default::default()
        };
        assert!(obstacles(net("fe80::/64"), &host, &[], &[]).is_empty());
        assert!(obstacles(net("ff02::/16"), &host, &[], &[]).is_empty());
        assert!(obstacles(net("224.1.0.0/16"), &host, &[], &[]).is_empty());
    }

    #[test]
    fn avoid_list_and_networks_are_respected() {
        let avoid = [
            AvoidEntry {
                cidr: net("172.16.0.0/13"),
                source: "config".into(),
            },
            AvoidEntry {
                cidr: net("172.24.0.0/16"),
                source: "weft ipam avoid".into(),
            },
        ];
        let networks = [existing("web", "172.25.0.0/16")];
        let (subnet, report) = choose_subnet(
            &default_pools(),
            false,
            &HostView::default(),
            &networks,
            &avoid,
        )
        .unwrap();
        assert_eq!(subnet, net("172.26.0.0/16"));
        assert_eq!(report.skipped.len(), 9);
        assert_eq!(
            report.skipped[0].reason,
            "172.17.0.0/16 overlaps 172.16.0.0/13, declared off-limits (config)"
        );
        assert_eq!(
            report.skipped[7].reason,
            "172.24.0.0/16 overlaps 172.24.0.0/16, declared off-limits (weft ipam avoid)"
        );
        assert_eq!(
            report.skipped[8].reason,
            "172.25.0.0/16 overlaps weft network \"web\" (172.25.0.0/16)"
        );
    }

    #[test]
    fn obstacle_order_and_peer_dedup() {
        let host = HostView {
            routes: vec![route("10.0.0.0/16", None, "br-x", 254)],
            addresses: vec![AddrFact {
                addr: net("10.0.0.1/16"),
                dev: "br-x".into(),
            }],
            peers: vec![
                tcp_peer("10.0.3.4", 443),
                tcp_peer("10.0.3.4", 80),
                PeerFact {
                    addr: ip("10.0.9.9"),
                    local_port: 5000,
                    remote_port: 80,
                    source: PeerSource::Conntrack,
                },
                tcp_peer("127.0.0.1", 22),
            ],
            nameservers: vec![],
        };
        let avoid = [AvoidEntry {
            cidr: net("10.0.0.0/8"),
            source: "config".into(),
        }];
        let networks = [existing("web", "10.0.0.0/16")];
        let o = obstacles(net("10.0.0.0/16"), &host, &networks, &avoid);
        let text: Vec<String> = o.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            text,
            [
                "10.0.0.0/16 overlaps route 10.0.0.0/16 dev br-x (table main)",
                "10.0.0.0/16 overlaps address 10.0.0.1/16 on br-x",
                "10.0.0.0/16 overlaps weft network \"web\" (10.0.0.0/16)",
                "10.0.0.0/16 overlaps 10.0.0.0/8, declared off-limits (config)",
                "10.0.0.0/16 contains 10.0.3.4, a peer of an established TCP connection on port 443",
                "10.0.0.0/16 contains 10.0.9.9, a peer in the connection tracking table",
            ]
        );
    }

    #[test]
    fn loopback_link_local_unspecified_and_mapped_peers() {
        let host = HostView {
            peers: vec![
                tcp_peer("127.0.0.1", 22),
                tcp_peer("0.0.0.0", 22),
                tcp_peer("169.254.3.3", 22),
                tcp_peer("fe80::1", 22),
                tcp_peer("::ffff:10.9.0.7", 22),
            ],
            ..Default::default()
        };
        assert!(obstacles(net("127.0.0.0/8"), &host, &[], &[]).is_empty());
        assert!(obstacles(net("169.254.0.0/16"), &host, &[], &[]).is_empty());
        assert!(obstacles(net("fe80::/64"), &host, &[], &[]).is_empty());
        assert!(obstacles(net("0.0.0.0/8"), &host, &[], &[]).is_empty());
        let o = obstacles(net("10.9.0.0/16"), &host, &[], &[]);
        assert_eq!(
            o[0].to_string(),
            "10.9.0.0/16 contains 10.9.0.7, a peer of an established TCP connection on port 22"
        );
    }

    #[test]
    fn families_are_not_mixed() {
        let host = HostView {
            routes: vec![route("::/8", None, "eth0", 254)],
            addresses: vec![AddrFact {
                addr: net("fd00::1/8"),
                dev: "eth0".into(),
            }],
            peers: vec![tcp_peer("::a00:1", 1)],
            nameservers: vec![],
        };
        assert!(obstacles(net("10.0.0.0/8"), &host, &[], &[]).is_empty());
        assert!(obstacles(net("0.0.0.0/8"), &host, &[], &[]).is_empty());
    }

    #[test]
    fn explicit_subnet_refusal_names_everything() {
        let err = check_explicit(net("172.22.0.0/16"), &s1_host(), &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 172.22.0.0/16 would break traffic: 172.22.0.0/16 contains 172.22.5.10, \
             a peer of an established TCP connection on port 22; use another --subnet, or \
             --allow-overlap if you are sure"
        );
        let err = check_explicit(
            net("172.42.0.0/16"),
            &s1_host(),
            &[existing("web", "172.42.0.0/20")],
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("overlaps address 172.42.10.112/24 on eno8303"),
            "{text}"
        );
        assert!(
            text.contains("overlaps weft network \"web\" (172.42.0.0/20)"),
            "{text}"
        );
        assert!(!text.contains('\n'));
        match err {
            IpamError::Overlap { obstacles, .. } => assert_eq!(obstacles.len(), 4),
            other => panic!("{other:?}"),
        }
        check_explicit(net("10.99.0.0/16"), &s1_host(), &[], &[]).unwrap();
    }

    fn nameserver(addr: &str, source: &str) -> NameserverFact {
        NameserverFact {
            addr: ip(addr),
            source: source.into(),
        }
    }

    #[test]
    fn nameservers_are_obstacles_unless_loopback() {
        let host = HostView {
            nameservers: vec![
                nameserver("10.255.255.53", "/etc/resolv.conf"),
                nameserver("10.255.255.53", "/run/systemd/resolve/resolv.conf"),
                nameserver("127.0.0.53", "/etc/resolv.conf"),
                nameserver("::1", "/etc/resolv.conf"),
                nameserver("fe80::1", "/etc/resolv.conf"),
                nameserver("fd00:53::1", "/etc/resolv.conf"),
            ],
            ..Default::default()
        };
        let err = check_explicit(net("10.255.255.0/24"), &host, &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 10.255.255.0/24 would break traffic: 10.255.255.0/24 contains 10.255.255.53, a nameserver of this host (/etc/resolv.conf); use another --subnet, or --allow-overlap if you are sure"
        );
        check_explicit(net("10.255.254.0/24"), &host, &[], &[]).unwrap();
        // Loopback and link-local servers are never captured by a bridge.
        assert!(obstacles(net("127.0.0.0/8"), &host, &[], &[]).is_empty());
        assert!(obstacles(net("::/64"), &host, &[], &[]).is_empty());
        assert!(obstacles(net("fe80::/64"), &host, &[], &[]).is_empty());
        assert_eq!(obstacles(net("fd00:53::/64"), &host, &[], &[]).len(), 1);

        // Automatic choice skips the candidate and says why.
        let pools = [Pool {
            base: net("10.255.0.0/16"),
            size: 24,
        }];
        let host = HostView {
            nameservers: vec![nameserver("10.255.0.53", "/tmp/r.conf")],
            ..Default::default()
        };
        let (subnet, report) = choose_subnet(&pools, false, &host, &[], &[]).unwrap();
        assert_eq!(subnet, net("10.255.1.0/24"));
        assert_eq!(
            report.skipped,
            [Skipped {
                candidate: net("10.255.0.0/24"),
                reason:
                    "10.255.0.0/24 contains 10.255.0.53, a nameserver of this host (/tmp/r.conf)"
                        .into()
            }]
        );
        // Older records without nameservers still read.
        let old: HostView =
            serde_json::from_str(r#"{"routes":[],"addresses":[],"peers":[]}"#).unwrap();
        assert!(old.nameservers.is_empty());
    }

    #[test]
    fn special_ranges_are_refused_naming_value_kind_and_fix() {
        let err = check_usable_net("--subnet", net("127.0.0.0/24")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--subnet 127.0.0.0/24 is loopback (127.0.0.0/8): choose a private range such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
        );
        for (value, says) in [
            (
                "0.0.0.0/16",
                "is unspecified (\"this network\") (0.0.0.0/8)",
            ),
            ("169.254.3.0/24", "is link-local (169.254.0.0/16)"),
            ("239.1.0.0/16", "is multicast (224.0.0.0/4)"),
            (
                "255.255.255.0/24",
                "contains the limited broadcast address (255.255.255.255/32)",
            ),
            ("96.0.0.0/3", "contains loopback addresses (127.0.0.0/8)"),
            (
                "0.0.0.0/0",
                "contains unspecified (\"this network\") addresses",
            ),
            ("::/64", "contains the unspecified address (::/128)"),
            ("::1/128", "is the loopback address (::1/128)"),
            ("::ffff:10.0.0.0/120", "is IPv4-mapped (::ffff:0.0.0.0/96)"),
            ("fe80::/64", "is link-local (fe80::/10)"),
            ("ff05::/64", "is multicast (ff00::/8)"),
        ] {
            let err = check_usable_net("--subnet", net(value)).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("--subnet {value} {says}")),
                "{value}: {text}"
            );
        }
        let err = check_usable_net("--subnet", net("fe80::/64")).unwrap_err();
        assert!(
            err.to_string().ends_with("e.g. fd12:3456:789a::/64"),
            "{err}"
        );
        for ok in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "1.0.0.0/8",
            "128.0.0.0/3",
            "240.0.0.0/5",
            "fd00::/8",
            "2001:db8::/32",
            "::2/127",
        ] {
            check_usable_net("--subnet", net(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }

        let err =
            check_usable_addr("--ip", "224.0.0.5", ip("224.0.0.5"), "use another").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--ip 224.0.0.5 is multicast (224.0.0.0/4): use another"
        );
        for bad in [
            "0.0.0.0",
            "127.0.0.5",
            "169.254.1.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::5",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                matches!(
                    check_usable_addr("--ip", bad, ip(bad), "x"),
                    Err(IpamError::SpecialRange { .. })
                ),
                "{bad}"
            );
        }
        check_usable_addr("--ip", "10.0.0.1", ip("10.0.0.1"), "x").unwrap();
        check_usable_addr("--ip", "fd00::1", ip("fd00::1"), "x").unwrap();

        // Pools are refused the same way.
        let pool = Pool {
            base: net("169.254.0.0/16"),
            size: 24,
        };
        let err = choose_subnet(&[pool], false, &HostView::default(), &[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("address pool 169.254.0.0/16 is link-local (169.254.0.0/16)"),
            "{err}"
        );
    }

    #[test]
    fn an_aux_address_cannot_be_the_gateway() {
        let aux = [("r".to_string(), ip("10.20.0.1"))];
        let err = validate_subnet(net("10.20.0.0/24"), None, None, &aux).unwrap_err();
        assert_eq!(
            err.to_string(),
            "aux address \"r\" 10.20.0.1 is the gateway of 10.20.0.0/24; pick another address, e.g. 10.20.0.2"
        );
        let aux = [("r".to_string(), ip("10.20.0.9"))];
        let err =
            validate_subnet(net("10.20.0.0/24"), Some(ip("10.20.0.9")), None, &aux).unwrap_err();
        assert!(err.to_string().contains("e.g. 10.20.0.1"), "{err}");
        let aux = [("r".to_string(), ip("fd00::1"))];
        assert!(validate_subnet(net("fd00::/64"), None, None, &aux).is_err());
        let aux = [("r".to_string(), ip("10.20.0.2"))];
        validate_subnet(net("10.20.0.0/24"), None, None, &aux).unwrap();
    }

    #[test]
    fn long_obstacle_lists_are_capped_in_messages() {
        let host = HostView {
            peers: (1..=20)
                .map(|i| tcp_peer(&format!("10.0.0.{i}"), 22))
                .collect(),
            ..Default::default()
        };
        let err = check_explicit(net("10.0.0.0/24"), &host, &[], &[]).unwrap_err();
        assert!(
            err.to_string().contains("; and 12 more; use another"),
            "{err}"
        );
    }

    #[test]
    fn exhaustion_suggests_subnet_and_config() {
        let pools = [Pool {
            base: net("10.10.0.0/23"),
            size: 24,
        }];
        let avoid = [AvoidEntry {
            cidr: net("10.0.0.0/8"),
            source: "config".into(),
        }];
        let err = choose_subnet(&pools, false, &HostView::default(), &[], &avoid).unwrap_err();
        assert!(matches!(err, IpamError::PoolsExhausted { tried: 2, .. }));
        let text = err.to_string();
        assert!(text.contains("--subnet"), "{text}");
        assert!(
            text.contains("default_address_pools in /etc/weft/weft.toml"),
            "{text}"
        );
        let err = choose_subnet(&pools, true, &HostView::default(), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("no IPv6 pool"), "{err}");
    }

    #[test]
    fn pool_with_small_candidates_walks_in_order() {
        let pools = [Pool {
            base: net("10.10.0.0/16"),
            size: 24,
        }];
        let networks = [existing("a", "10.10.0.0/24"), existing("b", "10.10.1.0/24")];
        let (subnet, report) =
            choose_subnet(&pools, false, &HostView::default(), &networks, &[]).unwrap();
        assert_eq!(subnet, net("10.10.2.0/24"));
        assert_eq!(report.pool, net("10.10.0.0/16"));
        assert_eq!(report.skipped.len(), 2);
    }

    #[test]
    fn skipped_list_is_capped() {
        let pools = [Pool {
            base: net("10.0.0.0/8"),
            size: 24,
        }];
        let avoid = [AvoidEntry {
            cidr: net("10.0.0.0/12"),
            source: "config".into(),
        }];
        let (subnet, report) =
            choose_subnet(&pools, false, &HostView::default(), &[], &avoid).unwrap();
        assert_eq!(subnet, net("10.16.0.0/24"));
        assert_eq!(report.skipped.len(), SKIPPED_LIMIT);
    }

    #[test]
    fn invalid_pools_are_refused() {
        let bad = [Pool {
            base: net("10.0.0.0/16"),
            size: 8,
        }];
        let err = choose_subnet(&bad, false, &HostView::default(), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("size must be at least"), "{err}");
        let bad = [Pool {
            base: net("10.0.0.0/16"),
            size: 31,
        }];
        assert!(matches!(
            choose_subnet(&bad, false, &HostView::default(), &[], &[]),
            Err(IpamError::InvalidPool { .. })
        ));
    }

    #[test]
    fn ipv6_choice() {
        let host = HostView {
            routes: vec![route("fd5e:f7a1:7c00::/64", None, "br-a", 254)],
            addresses: vec![AddrFact {
                addr: net("fd5e:f7a1:7c00:1::1/64"),
                dev: "br-b".into(),
            }],
            peers: vec![tcp_peer("fd5e:f7a1:7c00:2::9", 8080)],
            nameservers: vec![],
        };
        let (subnet, report) = choose_subnet(&default_v6_pools(), true, &host, &[], &[]).unwrap();
        assert_eq!(subnet, net("fd5e:f7a1:7c00:3::/64"));
        assert_eq!(report.pool, net("fd5e:f7a1:7c00::/48"));
        assert_eq!(
            report.skipped[2].reason,
            "fd5e:f7a1:7c00:2::/64 contains fd5e:f7a1:7c00:2::9, a peer of an established TCP connection on port 8080"
        );
        // IPv4 pools are not used for IPv6 and vice versa.
        let (subnet, _) = choose_subnet(&default_pools(), false, &host, &[], &[]).unwrap();
        assert_eq!(subnet, net("172.17.0.0/16"));
    }

    #[test]
    fn validate_subnet_defaults_and_errors() {
        let cfg = validate_subnet(net("172.18.0.0/16"), None, None, &[]).unwrap();
        assert_eq!(cfg.gateway, ip("172.18.0.1"));
        let cfg = validate_subnet(net("fd00:1::/64"), None, None, &[]).unwrap();
        assert_eq!(cfg.gateway, ip("fd00:1::1"));

        let err = validate_subnet(net("172.18.0.5/16"), None, None, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 172.18.0.5/16 is not a network address: did you mean 172.18.0.0/16?"
        );
        for s in ["10.0.0.0/31", "10.0.0.1/32", "fd00::/127", "fd00::1/128"] {
            let err = validate_subnet(net(s), None, None, &[]).unwrap_err();
            assert!(
                matches!(err, IpamError::SubnetTooSmall { .. }),
                "{s}: {err}"
            );
        }
        let err = validate_subnet(net("10.0.0.0/31"), None, None, &[]).unwrap_err();
        assert!(err.to_string().contains("e.g. 10.0.0.0/30"), "{err}");
        validate_subnet(net("10.0.0.0/30"), None, None, &[]).unwrap();

        let err =
            validate_subnet(net("172.18.0.0/16"), Some(ip("10.0.0.1")), None, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gateway 10.0.0.1 is outside subnet 172.18.0.0/16; pick an address inside it, e.g. 172.18.0.1"
        );
        let err =
            validate_subnet(net("172.18.0.0/16"), Some(ip("172.18.0.0")), None, &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("the network address of 172.18.0.0/16"),
            "{err}"
        );
        let err = validate_subnet(net("172.18.0.0/16"), Some(ip("172.18.255.255")), None, &[])
            .unwrap_err();
        assert!(err.to_string().contains("the broadcast address"), "{err}");
        let err =
            validate_subnet(net("172.18.0.0/16"), Some(ip("fd00::1")), None, &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("is IPv6 but subnet 172.18.0.0/16 is IPv4"),
            "{err}"
        );
        let cfg = validate_subnet(
            net("fd00::/64"),
            Some(ip("fd00::ffff:ffff:ffff:ffff")),
            None,
            &[],
        )
        .unwrap();
        assert_eq!(cfg.gateway, ip("fd00::ffff:ffff:ffff:ffff"));

        let cfg = validate_subnet(
            net("172.20.0.0/16"),
            Some(ip("172.20.0.1")),
            Some(net("172.20.5.0/24")),
            &[],
        )
        .unwrap();
        assert_eq!(cfg.ip_range, Some(net("172.20.5.0/24")));
        let err = validate_subnet(net("172.20.0.0/16"), None, Some(net("172.21.5.0/24")), &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ip range 172.21.5.0/24 is not inside subnet 172.20.0.0/16; pick a range inside it"
        );
        let err = validate_subnet(net("172.20.0.0/16"), None, Some(net("172.20.5.3/24")), &[])
            .unwrap_err();
        assert!(
            err.to_string().contains("did you mean 172.20.5.0/24?"),
            "{err}"
        );
        let err = validate_subnet(net("172.20.0.0/24"), None, Some(net("172.20.0.0/16")), &[])
            .unwrap_err();
        assert!(matches!(err, IpamError::IpRangeOutside { .. }));

        let aux = [("router".to_string(), ip("172.20.0.2"))];
        validate_subnet(net("172.20.0.0/16"), None, None, &aux).unwrap();
        let aux = [("router".to_string(), ip("172.21.0.2"))];
        let err = validate_subnet(net("172.20.0.0/16"), None, None, &aux).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("aux address \"router\" 172.21.0.2 is outside"));
        let aux = [("b".to_string(), ip("172.20.255.255"))];
        assert!(validate_subnet(net("172.20.0.0/16"), None, None, &aux).is_err());
    }

    fn space(subnet: &str) -> AddressSpace {
        let cfg = validate_subnet(net(subnet), None, None, &[]).unwrap();
        AddressSpace::from_config(&cfg, vec![])
    }

    #[test]
    fn allocation_order_skips_special_addresses() {
        let s = space("172.18.0.0/16");
        let taken: HashSet<IpAddr> = HashSet::new();
        let a = allocate(&s, None, |i| taken.contains(&i)).unwrap();
        assert_eq!(a, ip("172.18.0.2"));
        let b = allocate(&s, Some(a), |i| taken.contains(&i)).unwrap();
        assert_eq!(b, ip("172.18.0.3"));
    }

    #[test]
    fn allocation_wraps_and_does_not_reuse_quickly() {
        // /29: .0 network, .1 gateway, .2-.6 usable, .7 broadcast.
        let s = space("10.0.0.0/29");
        let mut taken: HashSet<IpAddr> = HashSet::new();
        let mut cursor = None;
        let mut order = vec![];
        for _ in 0..3 {
            let a = allocate(&s, cursor, |i| taken.contains(&i)).unwrap();
            taken.insert(a);
            cursor = Some(a);
            order.push(a);
        }
        assert_eq!(order, [ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")]);
        // Free .2: the next ones are still .5, .6, and only then .2 again.
        taken.remove(&ip("10.0.0.2"));
        let mut more = vec![];
        for _ in 0..3 {
            let a = allocate(&s, cursor, |i| taken.contains(&i)).unwrap();
            taken.insert(a);
            cursor = Some(a);
            more.push(a);
        }
        assert_eq!(more, [ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.2")]);
        let err = allocate(&s, cursor, |i| taken.contains(&i)).unwrap_err();
        assert_eq!(
            err,
            IpamError::SubnetExhausted {
                subnet: net("10.0.0.0/29")
            }
        );
        assert!(err
            .to_string()
            .starts_with("no free address left in 10.0.0.0/29"));
    }

    #[test]
    fn smallest_subnet_has_one_address() {
        let s = space("10.0.0.0/30");
        let a = allocate(&s, None, |_| false).unwrap();
        assert_eq!(a, ip("10.0.0.2"));
        let err = allocate(&s, Some(a), |i| i == a).unwrap_err();
        assert!(matches!(err, IpamError::SubnetExhausted { .. }));
    }

    #[test]
    fn allocation_honours_ip_range_and_reserved() {
        let cfg = validate_subnet(
            net("172.20.0.0/16"),
            Some(ip("172.20.5.1")),
            Some(net("172.20.5.0/30")),
            &[("r".into(), ip("172.20.5.2"))],
        )
        .unwrap();
        let s = AddressSpace::from_config(&cfg, vec![ip("172.20.5.2")]);
        // Range .0-.3: .0 is only the range's first address, not the subnet's network address.
        let a = allocate(&s, None, |_| false).unwrap();
        assert_eq!(a, ip("172.20.5.0"));
        let b = allocate(&s, Some(a), |_| false).unwrap();
        assert_eq!(b, ip("172.20.5.3"));
        let c = allocate(&s, Some(b), |i| i == b).unwrap();
        assert_eq!(c, ip("172.20.5.0"));
        let err = allocate(&s, Some(b), |i| i == a || i == b).unwrap_err();
        assert_eq!(
            err,
            IpamError::SubnetExhausted {
                subnet: net("172.20.5.0/30")
            }
        );
        // A cursor outside the range starts at its beginning.
        let d = allocate(&s, Some(ip("172.20.9.9")), |_| false).unwrap();
        assert_eq!(d, ip("172.20.5.0"));
    }

    #[test]
    fn sixteen_allocation_does_few_probes() {
        let s = space("172.18.0.0/16");
        let taken: HashSet<IpAddr> = (2..=11)
            .map(|i| IpAddr::V4(Ipv4Addr::new(172, 18, 0, i)))
            .collect();
        let probes = Cell::new(0);
        let a = allocate(&s, None, |i| {
            probes.set(probes.get() + 1);
            taken.contains(&i)
        })
        .unwrap();
        assert_eq!(a, ip("172.18.0.12"));
        assert_eq!(probes.get(), 11);
        // Cursor near the end wraps without walking the middle.
        probes.set(0);
        let b = allocate(&s, Some(ip("172.18.255.253")), |i| {
            probes.set(probes.get() + 1);
            taken.contains(&i)
        })
        .unwrap();
        assert_eq!(b, ip("172.18.255.254"));
        assert_eq!(probes.get(), 1);
        probes.set(0);
        let c = allocate(&s, Some(ip("172.18.255.254")), |i| {
            probes.set(probes.get() + 1);
            taken.contains(&i)
        })
        .unwrap();
        assert_eq!(c, ip("172.18.0.12"));
        assert_eq!(probes.get(), 11);
    }

    #[test]
    fn allocation_wraps_at_the_top_of_the_address_space() {
        // Pure arithmetic: these ranges are refused as subnets, but the walk must not
        // overflow at 255.255.255.255 or ffff:...:ffff.
        let s = AddressSpace {
            subnet: net("255.255.255.248/29"),
            gateway: ip("255.255.255.249"),
            ip_range: None,
            reserved: vec![],
        };
        let a = allocate(&s, Some(ip("255.255.255.254")), |_| false).unwrap();
        assert_eq!(a, ip("255.255.255.250"));
        let s = AddressSpace {
            subnet: net("ffff:ffff:ffff:ffff::/64"),
            gateway: ip("ffff:ffff:ffff:ffff::1"),
            ip_range: None,
            reserved: vec![],
        };
        let top = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(
            allocate(&s, Some(top), |_| false).unwrap(),
            ip("ffff:ffff:ffff:ffff::2")
        );
        let b = allocate(
            &s,
            Some(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")),
            |_| false,
        );
        assert_eq!(b.unwrap(), top);
    }

    #[test]
    fn ipv6_allocation_is_bounded() {
        let s = space("fd00::/64");
        let a = allocate(&s, None, |_| false).unwrap();
        assert_eq!(a, ip("fd00::2"));
        let probes = Cell::new(0u64);
        let err = allocate(&s, None, |_| {
            probes.set(probes.get() + 1);
            true
        })
        .unwrap_err();
        assert!(matches!(err, IpamError::SubnetExhausted { .. }));
        assert!(probes.get() <= 65_536);
        // The last address of an IPv6 subnet is usable (no broadcast).
        let b = allocate(&s, Some(ip("fd00::ffff:ffff:ffff:fffe")), |_| false).unwrap();
        assert_eq!(b, ip("fd00::ffff:ffff:ffff:ffff"));
    }

    #[test]
    fn static_addresses() {
        let mut s = space("172.18.0.0/16");
        s.reserved.push(ip("172.18.0.9"));
        check_static(&s, ip("172.18.0.5"), None).unwrap();
        let err = check_static(&s, ip("172.19.0.5"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "address 172.19.0.5 is outside subnet 172.18.0.0/16; pick an address inside it, e.g. 172.18.0.1"
        );
        for (a, role) in [
            ("172.18.0.0", "the network address"),
            ("172.18.255.255", "the broadcast address"),
            ("172.18.0.1", "the gateway"),
            ("172.18.0.9", "reserved"),
        ] {
            let err = check_static(&s, ip(a), None).unwrap_err();
            assert!(err.to_string().contains(role), "{a}: {err}");
        }
        let err = check_static(&s, ip("172.18.0.5"), Some("web".into())).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("address 172.18.0.5 is already in use by sandbox \"web\""));
        assert!(check_static(&s, ip("fd00::5"), None).is_err());
    }

    #[test]
    fn facts_round_trip_through_json() {
        let host = s1_host();
        let json = serde_json::to_string(&host).unwrap();
        assert!(json.contains("\"source\":\"tcp\""), "{json}");
        let back: HostView = serde_json::from_str(&json).unwrap();
        assert_eq!(back, host);
        let pool: Pool = serde_json::from_str(r#"{"base":"10.10.0.0/16","size":24}"#).unwrap();
        assert_eq!(pool.size, 24);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A small IPv4 or IPv6 subnet, sometimes at the very top of the address space.
        fn small_subnet() -> impl Strategy<Value = IpNet> {
            prop_oneof![
                (any::<u32>(), 24u8..=30).prop_map(|(a, len)| IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc()
                )),
                (any::<u128>(), 120u8..=126).prop_map(|(a, len)| IpNet::V6(
                    Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc()
                )),
                (24u8..=30).prop_map(|len| IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::BROADCAST, len).unwrap().trunc()
                )),
            ]
        }

        fn nth(net: &IpNet, i: u128) -> IpAddr {
            from_u128(to_u128(net.network()).saturating_add(i), is_v6(net))
        }

        fn size(net: &IpNet) -> u128 {
            to_u128(net.broadcast()) - to_u128(net.network()) + 1
        }

        proptest! {
            #[test]
            fn allocation_hands_out_only_usable_free_addresses(
                subnet in small_subnet(),
                taken_bits in proptest::collection::vec(any::<bool>(), 256),
                cursor in any::<u8>(),
                with_cursor: bool,
            ) {
                let cfg = validate_subnet(subnet, None, None, &[]).unwrap();
                let space = AddressSpace::from_config(&cfg, vec![nth(&subnet, 3)]);
                let n = size(&subnet);
                let taken = |ip: IpAddr| {
                    let i = to_u128(ip) - to_u128(subnet.network());
                    taken_bits[usize::try_from(i).unwrap() % taken_bits.len()]
                };
                let cursor = with_cursor.then(|| nth(&subnet, u128::from(cursor) % n));
                match allocate(&space, cursor, taken) {
                    Ok(a) => {
                        prop_assert!(subnet.contains(&a));
                        prop_assert!(a != subnet.network() && a != cfg.gateway);
                        prop_assert!(is_v6(&subnet) || a != subnet.broadcast());
                        prop_assert!(a != nth(&subnet, 3), "reserved");
                        prop_assert!(!taken(a));
                        check_static(&space, a, None).unwrap();
                    }
                    Err(e) => {
                        let exhausted = matches!(e, IpamError::SubnetExhausted { .. });
                        prop_assert!(exhausted, "{}", e);
                        // Exhausted means every usable address is taken.
                        for i in 0..n {
                            let a = nth(&subnet, i);
                            if check_static(&space, a, None).is_ok() {
                                prop_assert!(taken(a), "{a} was free");
                            }
                        }
                    }
                }
            }

            #[test]
            fn chosen_subnets_have_no_obstacles_and_skipped_ones_do(
                avoid in proptest::collection::vec((0u8..=255, 16u8..=24), 0..12),
                nets in proptest::collection::vec((0u8..=255, 20u8..=26), 0..6),
                nameserver in any::<u16>(),
            ) {
                let pools = [Pool { base: net("10.77.0.0/16"), size: 22 }];
                let avoid: Vec<AvoidEntry> = avoid
                    .iter()
                    .map(|(b, len)| AvoidEntry {
                        cidr: IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 77, *b, 0)), *len).unwrap().trunc(),
                        source: "config".into(),
                    })
                    .collect();
                let networks: Vec<ExistingNetwork> = nets
                    .iter()
                    .map(|(b, len)| ExistingNetwork {
                        name: format!("n{b}"),
                        subnet: IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 77, *b, 0)), *len).unwrap().trunc(),
                    })
                    .collect();
                let [hi, lo] = nameserver.to_be_bytes();
                let host = HostView {
                    nameservers: vec![NameserverFact {
                        addr: IpAddr::V4(Ipv4Addr::new(10, 77, hi, lo)),
                        source: "/etc/resolv.conf".into(),
                    }],
                    ..Default::default()
                };
                match choose_subnet(&pools, false, &host, &networks, &avoid) {
                    Ok((subnet, report)) => {
                        prop_assert!(obstacles(subnet, &host, &networks, &avoid).is_empty());
                        prop_assert!(pools[0].base.contains(&subnet));
                        prop_assert_eq!(subnet.prefix_len(), 22);
                        check_explicit(subnet, &host, &networks, &avoid).unwrap();
                        for sk in &report.skipped {
                            prop_assert!(!obstacles(sk.candidate, &host, &networks, &avoid).is_empty());
                            prop_assert!(sk.candidate.network() < subnet.network());
                        }
                    }
                    Err(e) => {
                        let exhausted = matches!(e, IpamError::PoolsExhausted { tried: 64, .. });
                        prop_assert!(exhausted, "{}", e);
                    }
                }
            }

            #[test]
            fn a_usable_subnet_holds_no_special_address(subnet in prop_oneof![
                (any::<u32>(), 1u8..=30).prop_map(|(a, len)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc())),
                (any::<u128>(), 1u8..=126).prop_map(|(a, len)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc())),
                (prop_oneof![Just(0xfe80u16), Just(0xff00), Just(0), Just(0xfd00)], any::<u128>(), 8u8..=126).prop_map(|(top, a, len)| {
                    let a = (u128::from(top) << 112) | (a >> 16);
                    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc())
                }),
            ], probe in any::<u128>()) {
                let usable = check_usable_net("--subnet", subnet).is_ok();
                let n = size(&subnet);
                for a in [subnet.network(), subnet.broadcast(), nth(&subnet, probe % n)] {
                    let addr_ok = check_usable_addr("--ip", &a.to_string(), a, "x").is_ok();
                    if usable {
                        prop_assert!(addr_ok, "{} is usable but holds {}", subnet, a);
                    }
                }
                // A refused subnet overlaps one of the special ranges.
                if !usable {
                    prop_assert!(specials().iter().any(|sp| overlaps(&sp.range, &subnet)));
                }
            }

            #[test]
            fn validated_gateways_are_members(subnet in small_subnet(), offset in any::<u8>()) {
                let gw = nth(&subnet, u128::from(offset) % size(&subnet));
                match validate_subnet(subnet, Some(gw), None, &[]) {
                    Ok(cfg) => {
                        prop_assert!(subnet.contains(&cfg.gateway));
                        prop_assert!(cfg.gateway != subnet.network());
                        prop_assert!(is_v6(&subnet) || cfg.gateway != subnet.broadcast());
                    }
                    Err(e) => {
                        let reserved = matches!(e, IpamError::ReservedAddress { .. });
                        prop_assert!(reserved, "{}", e);
                    }
                }
            }
        }
    }
}

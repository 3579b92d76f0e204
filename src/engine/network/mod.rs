//! `weft network create | ls | inspect`, the default network and lookups; removal is in
//! [`remove`], networks that live in a cluster in [`cluster`].

pub mod cluster;
pub mod remove;

use crate::adapters::store::Store as _;
use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context as _, Result};
use ipnet::IpNet;

use super::{firewall, new_id, now, parse_kv, Ctx};
use crate::adapters::host_facts;
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::store::{Mode, StoreError, Txn};
use crate::core::driver;
use crate::core::firewall::drift::Depth;
use crate::core::ipam::{self, AvoidEntry, ExistingNetwork, HostView};
use crate::core::model::{Network, Status, SubnetConfig};
use crate::core::names::{bridge_name, validate_ifname, validate_name};
use crate::core::netopts;
use crate::user_err;

/// Name of the network `weft run` uses when no `--network` is given (like `bridge`).
pub const DEFAULT_NETWORK: &str = "weft";
/// Bridge of the default network (like `docker0`).
pub const DEFAULT_BRIDGE: &str = "weft0";

/// Everything `weft network create` accepts.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Network name.
    pub name: String,
    /// A driver [`driver::lookup`] knows; empty means `bridge`.
    pub driver: String,
    /// `--vni`: the VXLAN network identifier of an overlay network.
    pub vni: Option<u64>,
    /// `--subnet`, once per family.
    pub subnets: Vec<String>,
    /// `--ip-range`, matched to subnets by family.
    pub ip_ranges: Vec<String>,
    /// `--gateway`, matched to subnets by family.
    pub gateways: Vec<String>,
    /// `--aux-address NAME=IP`.
    pub aux: Vec<String>,
    /// `--ipv6`.
    pub ipv6: bool,
    /// `--internal`.
    pub internal: bool,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--opt K=V`.
    pub opts: Vec<String>,
    /// `--bridge-name`.
    pub bridge_name: Option<String>,
    /// `--label K=V`.
    pub labels: Vec<String>,
    /// `--allow-overlap`.
    pub allow_overlap: bool,
}

fn parse_net(flag: &str, s: &str) -> Result<IpNet> {
    s.parse::<IpNet>().map_err(|_| {
        user_err!("invalid {flag} {s:?}: expected a CIDR like 172.20.0.0/16 or fd00:1::/64")
    })
}

fn parse_ip(flag: &str, s: &str) -> Result<IpAddr> {
    s.parse::<IpAddr>()
        .map_err(|_| user_err!("invalid {flag} {s:?}: expected an IP address like 172.20.0.1"))
}

/// Avoid ranges from the config file and from `weft ipam avoid`.
pub fn avoid_entries(ctx: &Ctx, tx: &dyn Txn) -> Result<Vec<AvoidEntry>> {
    let mut out: Vec<AvoidEntry> = ctx
        .config
        .avoid
        .iter()
        .map(|c| AvoidEntry {
            cidr: *c,
            source: "config".into(),
        })
        .collect();
    out.extend(tx.avoid_ranges()?.into_iter().map(|c| AvoidEntry {
        cidr: c,
        source: "weft ipam avoid".into(),
    }));
    Ok(out)
}

/// The subnets given with `--subnet` (with their gateways, ranges and aux addresses),
/// validated and, unless `allow_overlap`, checked against the host and weft's other networks:
/// the same for every driver.
pub(crate) fn explicit_subnets(
    p: &Parsed,
    allow_overlap: bool,
    host: &HostView,
    others: &[ExistingNetwork],
    avoid: &[AvoidEntry],
) -> Result<Vec<SubnetConfig>> {
    let mut subnets = Vec::new();
    for (net, gw, range) in &p.explicit {
        let aux: Vec<(String, IpAddr)> = p
            .aux
            .iter()
            .filter(|(_, ip)| ip.is_ipv6() == net.addr().is_ipv6())
            .cloned()
            .collect();
        let cfg = ipam::validate_subnet(*net, *gw, *range, &aux)?;
        if !allow_overlap {
            ipam::check_explicit(*net, host, others, avoid)?;
        }
        subnets.push(cfg);
    }
    Ok(subnets)
}

fn existing(nets: &[Network]) -> Vec<ExistingNetwork> {
    nets.iter()
        .flat_map(|n| {
            n.subnets.iter().map(|s| ExistingNetwork {
                name: n.name.clone(),
                subnet: s.subnet,
            })
        })
        .collect()
}

/// Validated, family-sorted inputs of a create request.
pub(crate) struct Parsed {
    /// The driver.
    pub(crate) driver: &'static dyn driver::Driver,
    /// Its data, as far as the request says (an overlay's VXLAN port and a VNI not given are
    /// the cluster's, filled in when it stores the network).
    pub(crate) driver_data: driver::DriverData,
    pub(crate) explicit: Vec<(IpNet, Option<IpAddr>, Option<IpNet>)>,
    pub(crate) aux: Vec<(String, IpAddr)>,
    pub(crate) options: BTreeMap<String, String>,
    pub(crate) labels: BTreeMap<String, String>,
    bridge: Option<String>,
    pub(crate) mtu: Option<u32>,
}

fn parse_request(req: &CreateRequest) -> Result<Parsed> {
    validate_name("network", &req.name)?;
    if req.name == "host" || req.name == "none" {
        return Err(user_err!(
            "network name {:?} is reserved (it is a network mode); choose another name",
            req.name
        ));
    }
    let name = if req.driver.is_empty() {
        "bridge"
    } else {
        &req.driver
    };
    let driver = driver::lookup(name).ok_or_else(|| {
        user_err!(
            "{}",
            driver::DriverError::Unknown {
                name: name.to_string()
            }
        )
    })?;
    // Docker's option names are aliases of weft's flags and options.
    let resolved = netopts::resolve(&req.opts, req.mtu, req.bridge_name.as_deref(), req.vni)?;
    if let Some(m) = resolved.mtu {
        if !(68..=65535).contains(&m) {
            return Err(user_err!("invalid --mtu {m}: must be between 68 and 65535"));
        }
    }
    let options = resolved.options;
    let labels = parse_kv("--label", &req.labels)?;
    let mut aux = Vec::new();
    for a in &req.aux {
        let (n, ip) = a
            .split_once('=')
            .ok_or_else(|| user_err!("invalid --aux-address {a:?}: expected NAME=IP"))?;
        aux.push((n.to_string(), parse_ip("--aux-address", ip)?));
    }
    let mut explicit = Vec::new();
    let mut seen = [false, false];
    for s in &req.subnets {
        let net = parse_net("--subnet", s)?;
        ipam::check_usable_net("--subnet", net)?;
        let fam = net.addr().is_ipv6() as usize;
        if seen[fam] {
            return Err(user_err!(
                "more than one {} --subnet: give at most one IPv4 and one IPv6 subnet",
                if fam == 1 { "IPv6" } else { "IPv4" }
            ));
        }
        seen[fam] = true;
        if fam == 1 && !req.ipv6 {
            return Err(user_err!(
                "--subnet {net} is IPv6 but --ipv6 is not set; add --ipv6"
            ));
        }
        explicit.push((net, None, None));
    }
    for g in &req.gateways {
        let ip = parse_ip("--gateway", g)?;
        ipam::check_usable_addr(
            "--gateway",
            g,
            ip,
            "give an address inside the --subnet, or leave --gateway out for its first address",
        )?;
        let slot = explicit
            .iter_mut()
            .find(|(n, _, _)| n.addr().is_ipv6() == ip.is_ipv6())
            .ok_or_else(|| user_err!("--gateway {ip} needs a --subnet of the same family"))?;
        slot.1 = Some(ip);
    }
    for r in &req.ip_ranges {
        let net = parse_net("--ip-range", r)?;
        ipam::check_usable_net("--ip-range", net)?;
        let slot = explicit
            .iter_mut()
            .find(|(n, _, _)| n.addr().is_ipv6() == net.addr().is_ipv6())
            .ok_or_else(|| user_err!("--ip-range {net} needs a --subnet of the same family"))?;
        slot.2 = Some(net);
    }
    for (text, (_, ip)) in req.aux.iter().zip(&aux) {
        ipam::check_usable_addr(
            "--aux-address",
            text,
            *ip,
            "give an address inside the --subnet",
        )?;
    }
    if !aux.is_empty() && explicit.is_empty() {
        return Err(user_err!(
            "--aux-address needs an explicit --subnet to lie in"
        ));
    }
    if let Some(b) = &resolved.bridge_name {
        validate_ifname(b)?;
    }
    let subnets: Vec<IpNet> = explicit.iter().map(|(n, _, _)| *n).collect();
    let driver_data = driver
        .validate(&driver::Request {
            network: &req.name,
            vni: resolved.vni,
            bridge_name: resolved.bridge_name.as_deref(),
            subnets: &subnets,
            vxlan_port: None,
        })
        .map_err(|e| user_err!("{e}"))?;
    Ok(Parsed {
        driver,
        driver_data,
        explicit,
        aux,
        options,
        labels,
        bridge: resolved.bridge_name,
        mtu: resolved.mtu,
    })
}

/// Creates a network: validates, chooses subnets, records the intent, builds the bridge,
/// addresses and firewall elements, and records the result. Nothing is left on failure.
pub fn create(ctx: &Ctx, req: &CreateRequest) -> Result<Network> {
    let p = parse_request(req)?;
    if p.driver.needs_cluster() {
        return cluster::create(ctx, req, p);
    }
    let mtu = p
        .driver
        .mtu(&req.name, p.mtu, None)
        .map_err(|e| user_err!("{e}"))?;
    let need_auto_v4 = !p.explicit.iter().any(|(n, _, _)| n.addr().is_ipv4());
    let need_auto_v6 = req.ipv6 && !p.explicit.iter().any(|(n, _, _)| n.addr().is_ipv6());
    let host = if req.allow_overlap && !need_auto_v4 && !need_auto_v6 {
        HostView::default()
    } else {
        let mut host =
            host_facts::observe().context("observing the host's routes, addresses and peers")?;
        host.nameservers =
            host_facts::nameservers(&ctx.config.resolv_conf(), &ctx.config.resolved_conf())?;
        host
    };
    let id = new_id()?;
    let bridge = p.bridge.clone().unwrap_or_else(|| {
        if req.name == DEFAULT_NETWORK {
            DEFAULT_BRIDGE.to_string()
        } else {
            bridge_name(&id)
        }
    });

    let tx = ctx.store.begin(Mode::Write)?;
    if tx.network(&req.name)?.is_some_and(|n| n.name == req.name) {
        return Err(user_err!(
            "network {:?} already exists; choose another name or remove it with `weft network rm {}`",
            req.name,
            req.name
        ));
    }
    let nets = tx.networks()?;
    if let Some(other) = nets.iter().find(|n| n.bridge == bridge) {
        return Err(user_err!(
            "bridge {bridge:?} is already used by network {:?}; choose another --bridge-name",
            other.name
        ));
    }
    let others = existing(&nets);
    let avoid = avoid_entries(ctx, tx.as_ref())?;
    let mut subnets = explicit_subnets(&p, req.allow_overlap, &host, &others, &avoid)?;
    let mut allocation = None;
    for (v6, needed) in [(false, need_auto_v4), (true, need_auto_v6)] {
        if !needed {
            continue;
        }
        let (net, report) = ipam::choose_subnet(&ctx.config.pools(v6), v6, &host, &others, &avoid)?;
        subnets.push(ipam::validate_subnet(net, None, None, &[])?);
        if !v6 {
            allocation = Some(report);
        }
    }
    subnets.sort_by_key(|s: &SubnetConfig| s.subnet.addr().is_ipv6());
    let network = Network {
        name: req.name.clone(),
        id,
        driver: p.driver.name().into(),
        driver_data: p.driver_data,
        internal: req.internal,
        ipv6: req.ipv6,
        mtu,
        bridge,
        subnets,
        options: p.options,
        labels: p.labels,
        aux_addresses: p.aux.into_iter().collect(),
        allocation,
        status: Status::Creating,
        owner_pid: Some(super::me().0),
        owner_start: super::me().1,
        created: now(),
    };
    tx.put_network(&network)?;
    firewall::record_forwarding(tx.as_ref(), &network)?;
    tx.commit()?;

    // The whole firewall is checked (elements too) and rebuilt if anything drifted: a
    // network create is rare, and the moment to notice what a host firewall reload broke.
    let built = firewall::ensure(ctx, Depth::Elements, std::slice::from_ref(&network.bridge))
        .and_then(|_| {
            let mut exec = KernelExecutor::new()?;
            let dns_port = crate::adapters::dns_port::read(&ctx.run_dir);
            firewall::apply_with_repair(
                ctx,
                &mut exec,
                &p.driver.plan_network(&network, &ctx.instance, dns_port)?,
            )
        });
    if let Err(e) = built {
        let tx = ctx.store.begin(Mode::Write)?;
        tx.delete_network(&network.id)?;
        tx.commit()?;
        return Err(e.context(format!("creating network {:?}", network.name)));
    }
    let mut done = network;
    done.status = Status::Created;
    done.owner_pid = None;
    done.owner_start = None;
    let tx = ctx.store.begin(Mode::Write)?;
    // Only finish our own intent: never bring back a record someone removed meanwhile.
    match tx.network(&done.id)? {
        Some(cur)
            if cur.status == Status::Creating && cur.owner_pid == Some(std::process::id()) =>
        {
            tx.put_network(&done)?;
            tx.commit()?;
            if let Err(e) = crate::engine::agent::client::ensure_running(ctx) {
                // Without an agent everything still works; only repairs wait for a command.
                eprintln!("warning: cannot start the weft agent: {e:#}");
            }
            Ok(done)
        }
        _ => Err(user_err!(
            "network {:?} was removed while it was being created",
            done.name
        )),
    }
}

/// The default network, created on first use. Concurrent first uses agree on one network.
pub fn ensure_default(ctx: &Ctx) -> Result<Network> {
    for _ in 0..200 {
        {
            let tx = ctx.store.begin(Mode::Read)?;
            if let Some(n) = tx.network(DEFAULT_NETWORK)? {
                if n.status == Status::Created {
                    return Ok(n);
                }
                // Another process is creating it right now: wait for it.
                if super::owner_alive(n.owner_pid, n.owner_start) {
                    drop(tx);
                    std::thread::sleep(std::time::Duration::from_millis(25));
                    continue;
                }
                return Err(user_err!(
                    "default network {DEFAULT_NETWORK:?} is half-made by a process that died; run `weft gc`"
                ));
            }
        }
        let req = CreateRequest {
            name: DEFAULT_NETWORK.into(),
            ..Default::default()
        };
        match create(ctx, &req) {
            Ok(n) => return Ok(n),
            Err(e)
                if e.downcast_ref::<super::UserError>()
                    .is_some_and(|u| u.0.contains("already exists")) =>
            {
                continue
            }
            Err(e)
                if matches!(
                    e.downcast_ref::<StoreError>(),
                    Some(StoreError::NameTaken { .. })
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(user_err!(
        "timed out waiting for the default network to be created"
    ))
}

/// Looks a network up by name or id prefix, or says how to list them.
pub fn find(tx: &dyn Txn, name: &str) -> Result<Network> {
    tx.network(name)?
        .ok_or_else(|| user_err!("no such network {name:?}; `weft network ls` lists the networks"))
}

/// [`find`] for a command that attaches to the network: when this host has no network
/// `name` but its agent reports that the cluster has an overlay network of that name which
/// this host refuses to build (its underlay too small for the network's MTU, say), that
/// reason is the error rather than "no such network". Only the error path asks the agent
/// (from its memory: no store access, so `tx` may be held).
pub fn find_here(ctx: &Ctx, tx: &dyn Txn, name: &str) -> Result<Network> {
    if let Some(net) = tx.network(name)? {
        return Ok(net);
    }
    let prefix = format!("building overlay network {name:?}: ");
    let refused = crate::engine::agent::client::status(ctx)
        .ok()
        .flatten()
        .and_then(|s| {
            s.cluster
                .errors
                .iter()
                .rev()
                .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
        });
    Err(match refused {
        Some(why) => user_err!("network {name:?} is not on this host: {why}"),
        None => user_err!("no such network {name:?}; `weft network ls` lists the networks"),
    })
}

//! `weft network create | ls | inspect | rm | prune`.

use crate::adapters::store::Store as _;
use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context as _, Result};
use ipnet::IpNet;

use super::{new_id, now, parse_kv, Ctx};
use crate::adapters::host_facts;
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::store::{Mode, StoreError, Txn};
use crate::core::ipam::{self, AvoidEntry, ExistingNetwork, HostView};
use crate::core::model::{Network, Sandbox, Status, SubnetConfig};
use crate::core::names::{bridge_name, validate_ifname, validate_name};
use crate::core::plan::{
    apply_all, apply_best_effort, plan_network, plan_network_teardown, Ns, Op,
};
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
    /// Only `bridge`.
    pub driver: String,
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
struct Parsed {
    explicit: Vec<(IpNet, Option<IpAddr>, Option<IpNet>)>,
    aux: Vec<(String, IpAddr)>,
    options: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    bridge: Option<String>,
}

fn parse_request(req: &CreateRequest) -> Result<Parsed> {
    validate_name("network", &req.name)?;
    if req.name == "host" || req.name == "none" {
        return Err(user_err!(
            "network name {:?} is reserved (it is a network mode); choose another name",
            req.name
        ));
    }
    if !req.driver.is_empty() && req.driver != "bridge" {
        return Err(user_err!(
            "unknown driver {:?}: only \"bridge\" is supported",
            req.driver
        ));
    }
    if let Some(m) = req.mtu {
        if !(68..=65535).contains(&m) {
            return Err(user_err!("invalid --mtu {m}: must be between 68 and 65535"));
        }
    }
    let options = parse_kv("--opt", &req.opts)?;
    for (k, v) in &options {
        match k.as_str() {
            "icc" | "masquerade" => {
                if v != "true" && v != "false" {
                    return Err(user_err!("invalid --opt {k}={v}: use true or false"));
                }
            }
            _ => {
                return Err(user_err!(
                    "unknown --opt {k:?}: supported options are icc and masquerade"
                ))
            }
        }
    }
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
        let slot = explicit
            .iter_mut()
            .find(|(n, _, _)| n.addr().is_ipv6() == ip.is_ipv6())
            .ok_or_else(|| user_err!("--gateway {ip} needs a --subnet of the same family"))?;
        slot.1 = Some(ip);
    }
    for r in &req.ip_ranges {
        let net = parse_net("--ip-range", r)?;
        let slot = explicit
            .iter_mut()
            .find(|(n, _, _)| n.addr().is_ipv6() == net.addr().is_ipv6())
            .ok_or_else(|| user_err!("--ip-range {net} needs a --subnet of the same family"))?;
        slot.2 = Some(net);
    }
    if !aux.is_empty() && explicit.is_empty() {
        return Err(user_err!(
            "--aux-address needs an explicit --subnet to lie in"
        ));
    }
    if let Some(b) = &req.bridge_name {
        validate_ifname(b)?;
    }
    Ok(Parsed {
        explicit,
        aux,
        options,
        labels,
        bridge: req.bridge_name.clone(),
    })
}

/// Creates a network: validates, chooses subnets, records the intent, builds the bridge,
/// addresses and firewall elements, and records the result. Nothing is left on failure.
pub fn create(ctx: &Ctx, req: &CreateRequest) -> Result<Network> {
    let p = parse_request(req)?;
    let need_auto_v4 = !p.explicit.iter().any(|(n, _, _)| n.addr().is_ipv4());
    let need_auto_v6 = req.ipv6 && !p.explicit.iter().any(|(n, _, _)| n.addr().is_ipv6());
    let host = if req.allow_overlap && !need_auto_v4 && !need_auto_v6 {
        HostView::default()
    } else {
        host_facts::observe().context("observing the host's routes, addresses and peers")?
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
    let mut subnets = Vec::new();
    let mut allocation = None;
    for (net, gw, range) in &p.explicit {
        let aux: Vec<(String, IpAddr)> = p
            .aux
            .iter()
            .filter(|(_, ip)| ip.is_ipv6() == net.addr().is_ipv6())
            .cloned()
            .collect();
        let cfg = ipam::validate_subnet(*net, *gw, *range, &aux)?;
        if !req.allow_overlap {
            ipam::check_explicit(*net, &host, &others, &avoid)?;
        }
        subnets.push(cfg);
    }
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
        driver: "bridge".into(),
        internal: req.internal,
        ipv6: req.ipv6,
        mtu: req.mtu.unwrap_or(1500),
        bridge,
        subnets,
        options: p.options,
        labels: p.labels,
        aux_addresses: p.aux.into_iter().collect(),
        allocation,
        status: Status::Creating,
        owner_pid: Some(std::process::id()),
        created: now(),
    };
    tx.put_network(&network)?;
    tx.commit()?;

    let mut exec = KernelExecutor::new()?;
    if let Err(e) = apply_all(&mut exec, &plan_network(&network)) {
        let tx = ctx.store.begin(Mode::Write)?;
        tx.delete_network(&network.id)?;
        tx.commit()?;
        return Err(anyhow::Error::new(e).context(format!("creating network {:?}", network.name)));
    }
    let mut done = network;
    done.status = Status::Created;
    done.owner_pid = None;
    let tx = ctx.store.begin(Mode::Write)?;
    // Only finish our own intent: never bring back a record someone removed meanwhile.
    match tx.network(&done.id)? {
        Some(cur)
            if cur.status == Status::Creating && cur.owner_pid == Some(std::process::id()) =>
        {
            tx.put_network(&done)?;
            tx.commit()?;
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
                if n.owner_pid.is_some_and(crate::adapters::process::alive) {
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

/// Removes networks; with `force`, disconnects their sandboxes first.
pub fn remove(ctx: &Ctx, names: &[String], force: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in names {
        let found = {
            let tx = ctx.store.begin(Mode::Read)?;
            find(tx.as_ref(), name)
        };
        let net = match found {
            Ok(net) => net,
            Err(e) => match e.downcast_ref::<StoreError>() {
                // A record that cannot be read must not keep its own removal from working.
                Some(StoreError::Corrupt {
                    table: "networks",
                    key,
                    name: real,
                    ..
                }) => {
                    if !remove_unreadable(ctx, key, real, force)? {
                        return Err(user_err!(
                            "no such network {name:?}: another weft process removed it meanwhile"
                        ));
                    }
                    removed.push(real.clone());
                    continue;
                }
                _ => return Err(e),
            },
        };
        if force {
            for sb in users(ctx, &net)? {
                super::sandbox::disconnect(ctx, &net.name, &sb)?;
            }
        }
        claim_removal(ctx, &net)?;
        teardown(ctx, &net)?;
        removed.push(net.name.clone());
    }
    Ok(removed)
}

/// Removes a network whose record cannot be read (`network rm`, `gc`), finding everything
/// by its id: its bridge (tagged with it), its allocations, the endpoints sandboxes have on
/// it. Refuses while sandboxes are attached, unless `force`, which detaches them. Returns
/// false if the record was gone already.
pub fn remove_unreadable(ctx: &Ctx, id: &str, name: &str, force: bool) -> Result<bool> {
    let attached: Vec<Sandbox> = {
        let tx = ctx.store.begin(Mode::Read)?;
        tx.sandboxes()?
            .into_iter()
            .filter(|s| s.endpoints.iter().any(|e| e.network_id == id))
            .collect()
    };
    if !attached.is_empty() && !force {
        return Err(user_err!(
            "network {name:?} (unreadable record) has sandboxes attached ({}); remove them, or use `weft network rm --force`",
            attached.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut exec = KernelExecutor::new()?;
    // Deleting a veth's host end deletes the pair: the sandbox loses that interface.
    let mut ops: Vec<Op> = attached
        .iter()
        .flat_map(|s| s.endpoints.iter().filter(|e| e.network_id == id))
        .map(|e| Op::DeleteLink {
            ns: Ns::Host,
            ifname: e.host_interface.clone(),
        })
        .collect();
    let links = exec
        .owned_links()
        .map_err(|e| anyhow::anyhow!("listing links: {e}"))?;
    ops.extend(
        links
            .into_iter()
            .filter(|(_, owner)| owner == id)
            .map(|(ifname, _)| Op::DeleteLink {
                ns: Ns::Host,
                ifname,
            }),
    );
    if let Some(e) = apply_best_effort(&mut exec, &ops).first() {
        return Err(anyhow::anyhow!("removing network {name:?}: {e}"));
    }
    {
        let tx = ctx.store.begin(Mode::Write)?;
        // Only that same unreadable record: never one rewritten meanwhile.
        match tx.network(id) {
            Err(StoreError::Corrupt { .. }) => {}
            Ok(None) => return Ok(false),
            Ok(Some(_)) => {
                return Err(user_err!(
                    "network {name:?} was rewritten by another weft process meanwhile; try again"
                ))
            }
            Err(e) => return Err(e.into()),
        }
        for s in tx.sandboxes()? {
            if s.endpoints.iter().any(|e| e.network_id == id) {
                let mut cur = s;
                cur.endpoints.retain(|e| e.network_id != id);
                tx.put_sandbox(&cur)?;
            }
        }
        tx.delete_network(id)?;
        tx.commit()?;
    }
    // Its elements (bridge, masquerade prefixes) cannot be derived from the record.
    super::firewall_sync::rebuild(ctx)?;
    Ok(true)
}

/// Names of the sandboxes attached to a network.
fn users(ctx: &Ctx, net: &Network) -> Result<Vec<String>> {
    let tx = ctx.store.begin(Mode::Read)?;
    Ok(tx
        .sandboxes()?
        .into_iter()
        .filter(|s| s.endpoints.iter().any(|e| e.network_id == net.id))
        .map(|s| s.name)
        .collect())
}

/// Marks a network as being removed, in the same write transaction that checks that no
/// sandbox uses it: attaching refuses networks that are not `created`, so none can join
/// between the check and the teardown.
fn claim_removal(ctx: &Ctx, net: &Network) -> Result<()> {
    let tx = ctx.store.begin(Mode::Write)?;
    // Of concurrent removals exactly one claims the network; the others say why they did not.
    let Some(mut cur) = tx.network(&net.id)? else {
        return Err(user_err!(
            "no such network {:?}: another weft process removed it meanwhile",
            net.name
        ));
    };
    let owner = cur
        .owner_pid
        .filter(|p| *p != std::process::id() && crate::adapters::process::alive(*p));
    match (cur.status, owner) {
        (Status::Creating, Some(_)) => {
            return Err(user_err!(
                "network {:?} is still being created; try again in a moment",
                net.name
            ))
        }
        (Status::Removing, Some(pid)) => {
            return Err(user_err!(
                "network {:?} is being removed by process {pid}",
                net.name
            ))
        }
        _ => {}
    }
    let users: Vec<String> = tx
        .sandboxes()?
        .into_iter()
        .filter(|s| s.endpoints.iter().any(|e| e.network_id == net.id))
        .map(|s| s.name)
        .collect();
    if !users.is_empty() {
        return Err(user_err!(
            "network {:?} has sandboxes attached ({}); disconnect or remove them, or use `weft network rm --force`",
            net.name,
            users.join(", ")
        ));
    }
    cur.status = Status::Removing;
    cur.owner_pid = Some(std::process::id());
    tx.put_network(&cur)?;
    tx.commit()?;
    Ok(())
}

/// Deletes a network's kernel objects and record (used by rm, prune and gc).
pub fn teardown(ctx: &Ctx, net: &Network) -> Result<()> {
    let mut exec = KernelExecutor::new()?;
    let errs = apply_best_effort(&mut exec, &plan_network_teardown(net));
    if let Some(e) = errs.first() {
        return Err(anyhow::anyhow!("removing network {:?}: {e}", net.name));
    }
    let tx = ctx.store.begin(Mode::Write)?;
    tx.delete_network(&net.id)?;
    tx.commit()?;
    Ok(())
}

/// Removes every network no sandbox uses.
pub fn prune(ctx: &Ctx) -> Result<Vec<String>> {
    let unused: Vec<Network> = {
        let tx = ctx.store.begin(Mode::Read)?;
        let sbs = tx.sandboxes()?;
        tx.networks()?
            .into_iter()
            .filter(|n| n.status == Status::Created)
            .filter(|n| {
                !sbs.iter()
                    .any(|s| s.endpoints.iter().any(|e| e.network_id == n.id))
            })
            .collect()
    };
    let mut out = Vec::new();
    for n in unused {
        // A sandbox may have joined since the listing: then the network stays.
        if claim_removal(ctx, &n).is_ok() {
            teardown(ctx, &n)?;
            out.push(n.name);
        }
    }
    Ok(out)
}

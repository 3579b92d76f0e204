//! `weft network create | rm` for a driver whose networks live in the cluster (overlay):
//! only the host agent talks to etcd, so the command asks it; without an agent that has a
//! cluster configured, the request fails naming the flags to set.
//!
//! The command chooses nothing the cluster must agree on: it checks the subnet against this
//! host (routes, interfaces, the local networks) and the MTU against the underlay, or, without
//! `--subnet`, lists subnets free on this host; the agent claims the name, id, VNI and subnet
//! cluster-wide (the first candidate no other overlay overlaps) and fits the MTU to every
//! live host's underlay. The record is then kept in the local
//! store too, so that `network ls` shows it at once; building the bridge and VXLAN device on
//! every host (this one included) is the agent's cluster task, from its watch.

use anyhow::{Context as _, Result};

use super::{avoid_entries, existing, explicit_subnets, CreateRequest, Parsed};
use crate::adapters::host_facts;
use crate::adapters::store::{Mode, Store as _};
use crate::core::agent::Request;
use crate::core::driver::overlay::overlay_bridge_name;
use crate::core::driver::DriverError;
use crate::core::model::{Network, Status, SubnetConfig};
use crate::engine::{agent, new_id, now, underlay, Ctx};
use crate::user_err;

/// Creates an overlay network through the agent: see the module's documentation.
pub(crate) fn create(ctx: &Ctx, req: &CreateRequest, p: Parsed) -> Result<Network> {
    // Never starts an agent: one started on demand has no cluster flags, and the file's
    // [cluster] would have started with the one that runs already.
    let cluster = agent::client::status(ctx)?
        .map(|s| s.cluster)
        .filter(|c| c.configured);
    let Some(cluster) = cluster else {
        return Err(user_err!("{}", DriverError::NeedsCluster));
    };
    let advertise = cluster
        .advertise
        .ok_or_else(|| user_err!("{}", DriverError::NeedsCluster))?;
    let underlay = underlay::find(advertise)?;
    let mtu_given = p.mtu.is_some();
    let mtu = p
        .driver
        .mtu(&req.name, p.mtu, Some(&underlay))
        .map_err(|e| user_err!("{e}"))?;
    let mut host =
        host_facts::observe().context("observing the host's routes, addresses and peers")?;
    host.nameservers =
        host_facts::nameservers(&ctx.config.resolv_conf(), &ctx.config.resolved_conf())?;
    let mut candidates = Vec::new();
    let mut subnets = {
        let tx = ctx.store.begin(Mode::Read)?;
        if tx.network(&req.name)?.is_some_and(|n| n.name == req.name) {
            return Err(user_err!(
                "network {:?} already exists; choose another name or remove it with `weft network rm {}`",
                req.name,
                req.name
            ));
        }
        let others = existing(&tx.networks()?);
        let avoid = avoid_entries(ctx, tx.as_ref())?;
        let subnets = explicit_subnets(&p, req.allow_overlap, &host, &others, &avoid)?;
        if !subnets.iter().any(|s| s.subnet.addr().is_ipv4()) {
            candidates = candidates_v4(ctx, &host, others, &avoid)?;
        }
        subnets
    };
    subnets.sort_by_key(|s| s.subnet.addr().is_ipv6());
    let id = new_id()?;
    let network = Network {
        name: req.name.clone(),
        bridge: overlay_bridge_name(&id),
        id,
        driver: p.driver.name().into(),
        driver_data: p.driver_data,
        internal: req.internal,
        ipv6: req.ipv6,
        mtu,
        subnets,
        options: p.options,
        labels: p.labels,
        aux_addresses: p.aux.into_iter().collect(),
        allocation: None,
        status: Status::Created,
        owner_pid: None,
        owner_start: None,
        created: now(),
    };
    let stored = agent::client::cluster(
        ctx,
        &Request::ClusterCreateNetwork {
            network: Box::new(network),
            candidates,
            mtu_given,
        },
    )?
    .network
    .ok_or_else(|| anyhow::anyhow!("the agent stored the network but did not return it"))?;
    record_locally(ctx, &stored)?;
    Ok(*stored)
}

/// How many subnets free on this host a creation without `--subnet` offers the cluster:
/// the cluster takes the first no other overlay network overlaps (this host's copy of the
/// cluster's networks may lag behind by a moment, so the first is not always free).
const CANDIDATES: usize = 16;

/// IPv4 subnets free on this host (routes, addresses, nameservers, peers, weft's networks,
/// avoided ranges), from the configured pools in the bridge networks' order: each one found
/// is counted as taken to find the next. The first's failure is the user's error (no pool
/// has room on this host); later ones just end the list.
fn candidates_v4(
    ctx: &Ctx,
    host: &crate::core::ipam::HostView,
    mut others: Vec<crate::core::ipam::ExistingNetwork>,
    avoid: &[crate::core::ipam::AvoidEntry],
) -> Result<Vec<SubnetConfig>> {
    let pools = ctx.config.pools(false);
    let mut out = Vec::new();
    while out.len() < CANDIDATES {
        let net = match crate::core::ipam::choose_subnet(&pools, false, host, &others, avoid) {
            Ok((net, _)) => net,
            Err(e) if out.is_empty() => return Err(e.into()),
            Err(_) => break,
        };
        out.push(crate::core::ipam::validate_subnet(net, None, None, &[])?);
        others.push(crate::core::ipam::ExistingNetwork {
            name: "(a candidate)".into(),
            subnet: net,
        });
    }
    Ok(out)
}

/// Keeps the cluster's record in the local store (the agent's watch writes the same record;
/// whichever comes second finds it there).
fn record_locally(ctx: &Ctx, net: &Network) -> Result<()> {
    let tx = ctx.store.begin(Mode::Write)?;
    if tx.network(&net.id)?.is_none() {
        tx.put_network(net)?;
        tx.commit()?;
    }
    Ok(())
}

/// Removes an overlay network from the cluster through the agent (refused while any host
/// has a sandbox on it), then from this host.
pub(crate) fn remove(ctx: &Ctx, net: &Network) -> Result<()> {
    match agent::client::cluster(
        ctx,
        &Request::ClusterRemoveNetwork {
            name: net.name.clone(),
        },
    ) {
        Ok(_) => {}
        // Gone from the cluster already (removed from another host): only this host's copy
        // is left to remove.
        Err(e) if e.to_string().starts_with("no such overlay network") => {}
        Err(e) => return Err(e),
    }
    super::remove::teardown(ctx, net)
}

//! `weft network connect | disconnect`: attaching a sandbox to one more network while it may
//! be running, and detaching it.

use anyhow::{Context as _, Result};

use super::addresses::{allocate_endpoint, parse_ips, restore_cursors, CursorMove};
use super::files::rewrite_files;
use super::{check_settled, find};
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::process;
use crate::adapters::store::Store as _;
use crate::adapters::store::{Mode, Txn};
use crate::core::driver;
use crate::core::model::{Endpoint, EndpointChange, NetMode, Pending, Sandbox, Status};
use crate::core::plan::{apply_all, apply_best_effort, plan_firewall_attach, Ns, Op};
use crate::engine::network::{find as find_network, find_here};
use crate::engine::Ctx;
use crate::user_err;

/// `weft network connect`: a new interface (next `ethN`) while the sandbox may be running.
pub fn connect(
    ctx: &Ctx,
    network: &str,
    sandbox: &str,
    ips: &[String],
    aliases: &[String],
) -> Result<Endpoint> {
    let want = parse_ips(ips)?;
    // An overlay network's address comes from the cluster: claimed (through the agent)
    // outside the local write transaction, which is then made again; released by `claims`'
    // drop on every failure below.
    let mut claims: Option<super::overlay::Claims> = None;
    let (tx, net, sb) = loop {
        let tx = ctx.store.begin(Mode::Write)?;
        let net = find_here(ctx, tx.as_ref(), network)?;
        let sb = find(tx.as_ref(), sandbox)?;
        check_settled(&sb)?;
        if sb.mode != NetMode::Bridge {
            return Err(user_err!(
                "sandbox {:?} uses --network {:?}; it cannot join other networks",
                sb.name,
                format!("{:?}", sb.mode).to_lowercase()
            ));
        }
        if net.status != Status::Created {
            return Err(user_err!("network {network:?} is not ready; try `weft gc`"));
        }
        if sb.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(user_err!(
                "sandbox {:?} is already connected to network {:?}",
                sb.name,
                net.name
            ));
        }
        let nets = std::slice::from_ref(&net);
        if !super::overlay::is_overlay(&net) {
            break (tx, net, sb);
        }
        if let Some(c) = &claims {
            if c.cover(nets) && c.sandbox() == sb.id {
                break (tx, net, sb);
            }
            return Err(user_err!(
                "network {network:?} or sandbox {sandbox:?} was removed and made again meanwhile; try again"
            ));
        }
        drop(tx);
        let mut c = super::overlay::Claims::new(ctx, &sb.id);
        // The sandbox's hostname only when it differs from its name.
        let hostname = Some(sb.hostname.as_str()).filter(|h| *h != sb.name);
        let who = super::overlay::Who {
            id: &sb.id,
            name: &sb.name,
            hostname,
            aliases,
            ip: want.0,
            mac: None,
        };
        let attached = c.attach(nets, &who);
        claims = Some(c);
        attached?;
    };
    let want = match claims.as_ref().and_then(|c| c.ip_for(&net.id)) {
        Some(ip) => (Some(ip), None),
        None => want,
    };
    let index = sb
        .endpoints
        .iter()
        .filter_map(|e| {
            e.interface
                .strip_prefix("eth")
                .and_then(|n| n.parse::<usize>().ok())
        })
        .max()
        .map(|m| m + 1)
        .unwrap_or(0);
    let mut moves = Vec::new();
    let mut ep = allocate_endpoint(tx.as_ref(), &net, &sb.id, index, want, aliases, &mut moves)?;
    // The endpoint is recorded as being attached by this process: if it dies before the
    // end, gc undoes the attach instead of taking the half-made interface for a finished one.
    ep.pending = Some(mine(EndpointChange::Attach));
    let mut updated = sb.clone();
    updated.endpoints.push(ep.clone());
    tx.put_sandbox(&updated)?;
    tx.commit()?;

    let ns = sb.netns.clone().unwrap_or_default();
    let mut ops = vec![plan_firewall_attach(std::slice::from_ref(&ep), vec![])];
    ops.extend(driver::of(&net)?.plan_attach(
        &ns,
        &sb.id,
        &ep,
        &net,
        sb.endpoints.is_empty(),
        &ctx.instance,
    ));
    let mut exec = KernelExecutor::new()?;
    let applied = super::attach(ctx, &mut exec, std::slice::from_ref(&net), &ops);
    if let Err(e) = applied {
        forget_endpoint(ctx, &sb.id, &net.id, &moves)?;
        return Err(e.context(format!(
            "connecting sandbox {:?} to network {:?}",
            sb.name, net.name
        )));
    }
    // From here the sandbox's removal or disconnection releases the cluster's claim.
    if let Some(c) = claims {
        c.keep();
    }
    // Only finish our own intent: never bring back an endpoint someone removed meanwhile.
    let tx = ctx.store.begin(Mode::Write)?;
    let mut cur = tx.sandbox(&sb.id)?.ok_or_else(|| {
        user_err!(
            "sandbox {:?} was removed while it was being connected",
            sb.name
        )
    })?;
    let Some(done) = cur
        .endpoints
        .iter_mut()
        .find(|e| e.network_id == net.id && e.pending == ep.pending)
    else {
        return Err(user_err!(
            "sandbox {:?} was disconnected from {:?} while it was being connected",
            sb.name,
            net.name
        ));
    };
    done.pending = None;
    let ep = done.clone();
    tx.put_sandbox(&cur)?;
    tx.commit()?;
    let _ = rewrite_files(ctx, &cur);
    Ok(ep)
}

/// This process's claim on an endpoint.
fn mine(change: EndpointChange) -> Pending {
    let pid = std::process::id();
    Pending {
        change,
        owner_pid: pid,
        owner_start: process::start_time(pid),
    }
}

/// Releases an endpoint's addresses (putting back the cursors a failed attach moved) and
/// drops it from the sandbox's record.
fn forget_endpoint(
    ctx: &Ctx,
    sandbox_id: &str,
    network_id: &str,
    moves: &[CursorMove],
) -> Result<Option<Sandbox>> {
    let tx = ctx.store.begin(Mode::Write)?;
    tx.release_addresses(sandbox_id, Some(network_id))?;
    restore_cursors(tx.as_ref(), moves)?;
    let mut updated = None;
    if let Some(mut cur) = tx.sandbox(sandbox_id)? {
        cur.endpoints.retain(|x| x.network_id != network_id);
        tx.put_sandbox(&cur)?;
        updated = Some(cur);
    }
    tx.commit()?;
    Ok(updated)
}

/// The kernel side of removing `ep` from `sb`: its interface, and when it carried the default
/// routes, the next network's routes instead (as with Docker).
fn detach_ops(tx: &dyn Txn, sb: &Sandbox, ep: &Endpoint) -> Result<Vec<Op>> {
    let Some(ns) = &sb.netns else {
        return Ok(vec![]);
    };
    let mut ops = match tx.network(&ep.network_id)? {
        Some(net) => driver::of(&net)?.plan_detach(ns, ep, &net),
        // The network is gone, and the host's side of the endpoint with it.
        None => driver::bridge::plan_detach(ns, ep, None),
    };
    let first = sb.endpoints.first().map(|e| &e.network_id) == Some(&ep.network_id);
    if let (true, Some(next)) = (first, sb.endpoints.get(1)) {
        if let Some(next_net) = tx.network(&next.network_id)? {
            for sub in &next_net.subnets {
                if (sub.subnet.addr().is_ipv4() && next.ipv4.is_some())
                    || (sub.subnet.addr().is_ipv6() && next.ipv6.is_some())
                {
                    ops.push(Op::AddDefaultRoute {
                        ns: Ns::Sandbox(ns.clone()),
                        gateway: sub.gateway,
                    });
                }
            }
        }
    }
    Ok(ops)
}

/// `weft network disconnect`: removes the sandbox's interface on that network.
pub fn disconnect(ctx: &Ctx, network: &str, sandbox: &str) -> Result<()> {
    let (sb, ep, overlay) = {
        let tx = ctx.store.begin(Mode::Write)?;
        let net = find_network(tx.as_ref(), network)?;
        let mut sb = find(tx.as_ref(), sandbox)?;
        check_settled(&sb)?;
        let overlay = super::overlay::is_overlay(&net);
        let Some(ep) = sb.endpoints.iter_mut().find(|e| e.network_id == net.id) else {
            return Err(user_err!(
                "sandbox {:?} is not connected to network {:?}",
                sb.name,
                net.name
            ));
        };
        if let Some(p) = ep.pending.filter(alive) {
            return Err(user_err!(
                "sandbox {:?} is being {} network {:?} by process {}; try again in a moment",
                sb.name,
                match p.change {
                    EndpointChange::Attach => "connected to",
                    EndpointChange::Detach => "disconnected from",
                },
                net.name,
                p.owner_pid
            ));
        }
        ep.pending = Some(mine(EndpointChange::Detach));
        let ep = ep.clone();
        tx.put_sandbox(&sb)?;
        tx.commit()?;
        (sb, ep, overlay)
    };
    let ops = {
        let tx = ctx.store.begin(Mode::Read)?;
        detach_ops(tx.as_ref(), &sb, &ep)?
    };
    let mut exec = KernelExecutor::new()?;
    apply_all(&mut exec, &ops)?;
    if let Some(u) = forget_endpoint(ctx, &sb.id, &ep.network_id, &[])? {
        let _ = rewrite_files(ctx, &u);
    }
    // The cluster's record and claim last: an address given back while the interface still
    // held it could go to another sandbox.
    if overlay {
        super::overlay::detach(ctx, &ep.network_id, &sb.id).with_context(|| {
            format!(
                "sandbox {:?} is disconnected from {:?} here; its endpoint and address in the cluster are released by the agent once it reaches etcd again",
                sb.name, ep.network
            )
        })?;
    }
    Ok(())
}

/// Whether the process that claimed an endpoint still runs.
fn alive(p: &Pending) -> bool {
    process::alive_since(p.owner_pid, p.owner_start)
}

/// For `weft gc`: endpoints whose connect or disconnect was interrupted (its process died) are
/// taken away, interface and addresses: an unfinished attach is undone, an unfinished detach
/// finished. Returns what was settled, as `sandbox/network` names.
pub fn settle_interrupted(ctx: &Ctx, sandbox_id: &str) -> Result<Vec<String>> {
    let mut settled = Vec::new();
    loop {
        let found = {
            let tx = ctx.store.begin(Mode::Write)?;
            let Some(sb) = tx.sandbox(sandbox_id)? else {
                return Ok(settled);
            };
            let Some(ep) = sb
                .endpoints
                .iter()
                .find(|e| e.pending.is_some_and(|p| !alive(&p)))
                .cloned()
            else {
                return Ok(settled);
            };
            // Claimed by this gc, so a second gc leaves it alone.
            let mut claimed = sb.clone();
            if let Some(e) = claimed
                .endpoints
                .iter_mut()
                .find(|e| e.network_id == ep.network_id)
            {
                e.pending = Some(mine(EndpointChange::Detach));
            }
            tx.put_sandbox(&claimed)?;
            let ops = detach_ops(tx.as_ref(), &sb, &ep)?;
            let overlay = tx
                .network(&ep.network_id)?
                .is_some_and(|n| super::overlay::is_overlay(&n));
            tx.commit()?;
            (sb, ep, ops, overlay)
        };
        let (sb, ep, ops, overlay) = found;
        let mut exec = KernelExecutor::new()?;
        let errors = apply_best_effort(&mut exec, &ops);
        if let Some(e) = errors.first() {
            anyhow::bail!("settling sandbox {:?} on {:?}: {e}", sb.name, ep.network);
        }
        if let Some(u) = forget_endpoint(ctx, &sb.id, &ep.network_id, &[])? {
            let _ = rewrite_files(ctx, &u);
        }
        // An overlay endpoint's claim and record in the cluster go too. Best effort: with the
        // agent or etcd unreachable the record goes with this node's lease, the claim stays.
        if overlay {
            if let Err(e) = super::overlay::detach(ctx, &ep.network_id, &sb.id) {
                eprintln!(
                    "warning: settling sandbox {:?} on {:?}: releasing its cluster endpoint: {e:#}",
                    sb.name, ep.network
                );
            }
        }
        settled.push(format!("{}/{}", sb.name, ep.network));
    }
}

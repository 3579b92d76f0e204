//! `weft network rm | prune`, and the teardown gc shares with them.

use anyhow::Result;

use super::find;
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::store::Store as _;
use crate::adapters::store::{Mode, StoreError};
use crate::core::driver;
use crate::core::model::{Network, Sandbox, Status};
use crate::core::plan::{apply_best_effort, Ns, Op};
use crate::engine::sandbox::connect::disconnect;
use crate::engine::Ctx;
use crate::user_err;

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
                disconnect(ctx, &net.name, &sb)?;
            }
        }
        if driver::of(&net).is_ok_and(|d| d.needs_cluster()) {
            super::cluster::remove(ctx, &net)?;
            removed.push(net.name.clone());
            continue;
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
        .owned_links(&ctx.instance)
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
    crate::engine::firewall::reconcile(ctx)?;
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
    let owner = cur.owner_pid.filter(|p| {
        *p != std::process::id() && crate::engine::owner_alive(Some(*p), cur.owner_start)
    });
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
    (cur.owner_pid, cur.owner_start) = {
        let (pid, start) = crate::engine::me();
        (Some(pid), start)
    };
    tx.put_network(&cur)?;
    tx.commit()?;
    Ok(())
}

/// Deletes a network's kernel objects and record (used by rm, prune and gc).
pub fn teardown(ctx: &Ctx, net: &Network) -> Result<()> {
    let mut exec = KernelExecutor::new()?;
    // A driver this weft does not know made objects it cannot name: the bridge's teardown
    // removes what every driver has, its firewall elements and its bridge.
    let ops = match driver::of(net) {
        Ok(d) => d.plan_network_teardown(net),
        Err(_) => driver::bridge::plan_network_teardown(net),
    };
    let errs = apply_best_effort(&mut exec, &ops);
    if let Some(e) = errs.first() {
        return Err(anyhow::anyhow!("removing network {:?}: {e}", net.name));
    }
    let tx = ctx.store.begin(Mode::Write)?;
    tx.delete_network(&net.id)?;
    tx.commit()?;
    Ok(())
}

/// Removes every network no sandbox uses, except the default network.
pub fn prune(ctx: &Ctx) -> Result<Vec<String>> {
    let unused: Vec<Network> = {
        let tx = ctx.store.begin(Mode::Read)?;
        let sbs = tx.sandboxes()?;
        tx.networks()?
            .into_iter()
            .filter(|n| n.status == Status::Created)
            // The default network is weft's `bridge`: there even when unused, as Docker's.
            .filter(|n| n.name != super::DEFAULT_NETWORK)
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

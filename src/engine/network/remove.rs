//! `weft network rm | prune`, and the teardown gc shares with them.

use anyhow::Result;

use super::find;
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::store::Mode;
use crate::adapters::store::Store as _;
use crate::core::model::{Network, Status};
use crate::core::plan::{apply_best_effort, plan_network_teardown};
use crate::engine::sandbox::connect::disconnect;
use crate::engine::Ctx;
use crate::user_err;

/// Removes networks; with `force`, disconnects their sandboxes first.
pub fn remove(ctx: &Ctx, names: &[String], force: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in names {
        let net = {
            let tx = ctx.store.begin(Mode::Read)?;
            find(tx.as_ref(), name)?
        };
        if force {
            for sb in users(ctx, &net)? {
                disconnect(ctx, &net.name, &sb)?;
            }
        }
        claim_removal(ctx, &net)?;
        teardown(ctx, &net)?;
        removed.push(net.name.clone());
    }
    Ok(removed)
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
    let Some(mut cur) = tx.network(&net.id)? else {
        return Ok(());
    };
    if cur.status == Status::Creating && cur.owner_pid.is_some_and(crate::adapters::process::alive)
    {
        return Err(user_err!(
            "network {:?} is still being created; try again in a moment",
            net.name
        ));
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

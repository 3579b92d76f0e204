//! `weft network connect | disconnect`: attaching a sandbox to one more network while it may
//! be running, and detaching it.

use anyhow::Result;

use super::addresses::{allocate_endpoint, parse_ips};
use super::files::write_files;
use super::{check_settled, find};
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::store::Mode;
use crate::adapters::store::Store as _;
use crate::core::firewall::drift::Depth;
use crate::core::model::{Endpoint, NetMode, Status};
use crate::core::plan::{apply_all, plan_attach, plan_detach, plan_firewall_attach, Op};
use crate::engine::firewall;
use crate::engine::network::find as find_network;
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
    let tx = ctx.store.begin(Mode::Write)?;
    let net = find_network(tx.as_ref(), network)?;
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
    let ep = allocate_endpoint(tx.as_ref(), &net, &sb.id, index, want, aliases)?;
    let mut updated = sb.clone();
    updated.endpoints.push(ep.clone());
    tx.put_sandbox(&updated)?;
    tx.commit()?;

    let ns = sb.netns.clone().unwrap_or_default();
    let mut ops = vec![plan_firewall_attach(std::slice::from_ref(&ep), vec![])];
    ops.extend(plan_attach(
        &ns,
        &sb.id,
        &ep,
        &net,
        sb.endpoints.is_empty(),
        &ctx.instance,
    ));
    let built =
        firewall::ensure(ctx, Depth::Chains, std::slice::from_ref(&net.bridge)).and_then(|_| {
            let mut exec = KernelExecutor::new()?;
            firewall::apply_with_repair(ctx, &mut exec, &ops)
        });
    if let Err(e) = built {
        let tx = ctx.store.begin(Mode::Write)?;
        tx.release_addresses(&sb.id, Some(&net.id))?;
        if let Some(mut cur) = tx.sandbox(&sb.id)? {
            cur.endpoints.retain(|x| x.network_id != net.id);
            tx.put_sandbox(&cur)?;
        }
        tx.commit()?;
        return Err(e.context(format!(
            "connecting sandbox {:?} to network {:?}",
            sb.name, net.name
        )));
    }
    let _ = write_files(ctx, &updated);
    Ok(ep)
}

/// `weft network disconnect`: removes the sandbox's interface on that network.
pub fn disconnect(ctx: &Ctx, network: &str, sandbox: &str) -> Result<()> {
    let (net, sb) = {
        let tx = ctx.store.begin(Mode::Read)?;
        (
            find_network(tx.as_ref(), network)?,
            find(tx.as_ref(), sandbox)?,
        )
    };
    let Some(ep) = sb
        .endpoints
        .iter()
        .find(|e| e.network_id == net.id)
        .cloned()
    else {
        return Err(user_err!(
            "sandbox {:?} is not connected to network {:?}",
            sb.name,
            net.name
        ));
    };
    if let Some(ns) = &sb.netns {
        let mut exec = KernelExecutor::new()?;
        let mut ops = plan_detach(ns, &ep);
        // The default routes went with the first network's interface: the next network
        // takes over, as with Docker.
        if sb.endpoints.first().map(|e| &e.network_id) == Some(&net.id) {
            if let Some(next) = sb.endpoints.get(1) {
                let tx = ctx.store.begin(Mode::Read)?;
                if let Some(next_net) = tx.network(&next.network_id)? {
                    for sub in &next_net.subnets {
                        if (sub.subnet.addr().is_ipv4() && next.ipv4.is_some())
                            || (sub.subnet.addr().is_ipv6() && next.ipv6.is_some())
                        {
                            ops.push(Op::AddDefaultRoute {
                                ns: crate::core::plan::Ns::Sandbox(ns.clone()),
                                gateway: sub.gateway,
                            });
                        }
                    }
                }
            }
        }
        apply_all(&mut exec, &ops)?;
    }
    let tx = ctx.store.begin(Mode::Write)?;
    tx.release_addresses(&sb.id, Some(&net.id))?;
    let mut updated = None;
    if let Some(mut cur) = tx.sandbox(&sb.id)? {
        cur.endpoints.retain(|x| x.network_id != net.id);
        tx.put_sandbox(&cur)?;
        updated = Some(cur);
    }
    tx.commit()?;
    if let Some(u) = updated {
        let _ = write_files(ctx, &u);
    }
    Ok(())
}

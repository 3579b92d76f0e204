//! Repairing drift weft did not cause: a deleted bridge or veth, a detached port, a lost
//! address, route or sysctl. Each repair reads the record afresh under the store's write lock
//! (so no command changes it meanwhile), observes the kernel, and applies what
//! [`unmet`](crate::core::reconcile::unmet) says is missing. Used by `weft gc`, by commands
//! that depend on a network, and by the agent when the kernel reports a change.
//!
//! The firewall has its own repair; records a live command is still making or removing are
//! left to that command.

use anyhow::Result;
use serde::Serialize;

use crate::adapters::netlink::KernelExecutor;
use crate::adapters::netns;
use crate::adapters::store::Store as _;
use crate::adapters::store::{Mode, Txn};
use crate::core::driver;
use crate::core::model::{Network, Sandbox, Status};
use crate::core::plan::{apply_best_effort, Ns, Op};
use crate::core::reconcile::{sysctl_keys, unmet, NsView, Views};
use crate::engine::Ctx;

/// What a repair changed, and what it could not.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Repaired {
    /// The operations applied, as text (`create bridge wbr-…`).
    pub applied: Vec<String>,
    /// Operations the kernel refused, and objects that could not be repaired.
    pub errors: Vec<String>,
}

impl Repaired {
    /// Whether nothing needed repair.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.errors.is_empty()
    }
}

/// Whether a record is settled: not being made or removed by a live weft process.
fn settled(status: Status, owner: Option<u32>, start: Option<u64>) -> bool {
    !matches!(status, Status::Creating | Status::Removing) || !super::owner_alive(owner, start)
}

fn network_ops(net: &Network, instance: &str) -> Vec<Op> {
    // Firewall elements are not converged here (the firewall's own repair does that, with
    // the agent's DNS port): no port needed. A network its driver cannot plan (a driver this
    // weft does not know, or one whose operations are not built yet) has nothing to converge.
    driver::of(net)
        .and_then(|d| d.plan_network(net, instance, None))
        .unwrap_or_default()
}

/// The kernel objects of a sandbox's settled endpoints, in attach order.
fn sandbox_ops(tx: &dyn Txn, sb: &Sandbox, instance: &str) -> Result<Vec<Op>> {
    let Some(ns) = &sb.netns else {
        return Ok(vec![]);
    };
    let mut ops = Vec::new();
    let mut first = true;
    for ep in &sb.endpoints {
        if ep.pending.is_some() {
            // A connect or disconnect is under way (or its owner died: gc settles it first).
            first = false;
            continue;
        }
        // An endpoint on a network of a driver this weft does not know: not its to repair.
        if let Some(net) = tx.network(&ep.network_id)? {
            if let Ok(d) = driver::of(&net) {
                ops.extend(d.plan_attach(ns, &sb.id, ep, &net, first, instance));
            }
        }
        first = false;
    }
    Ok(ops)
}

/// Observes `namespaces` (those not in `views` already) and applies what `desired` lacks.
fn converge(
    exec: &mut KernelExecutor,
    desired: &[Op],
    namespaces: &[Ns],
    mut views: Views,
) -> Repaired {
    let keys = sysctl_keys(desired);
    let mut out = Repaired::default();
    let missing: Vec<&Ns> = namespaces
        .iter()
        .filter(|ns| !views.contains_key(*ns))
        .collect();
    for ns in missing {
        let wanted: Vec<String> = keys
            .iter()
            .filter(|(n, _)| n == ns)
            .map(|(_, k)| k.clone())
            .collect();
        match exec.observe(ns, &wanted) {
            Ok(v) => {
                views.insert(ns.clone(), v);
            }
            Err(e) => {
                out.errors.push(format!("observing {ns:?}: {e}"));
                return out;
            }
        }
    }
    let ops = match unmet(desired, &views) {
        Ok(ops) => ops,
        Err(e) => {
            out.errors.push(e.to_string());
            return out;
        }
    };
    let errors = apply_best_effort(exec, &ops);
    out.applied = ops.iter().map(Op::to_string).collect();
    out.errors.extend(errors.iter().map(|e| e.to_string()));
    out
}

/// Repairs a network's bridge, address, route and sysctls, then reattaches the ports of its
/// sandboxes (a bridge made again starts without ports; their veths survived it). A sandbox
/// whose veth is gone entirely is [`sandbox`]'s to repair.
pub fn network(ctx: &Ctx, exec: &mut KernelExecutor, id: &str) -> Result<Repaired> {
    let tx = ctx.store.begin(Mode::Write)?;
    let Some(net) = tx.network(id)? else {
        return Ok(Repaired::default());
    };
    if net.status != Status::Created {
        return Ok(Repaired::default());
    }
    let mut out = converge(
        exec,
        &network_ops(&net, &ctx.instance),
        &[Ns::Host],
        Views::new(),
    );
    // Ports: their host side.
    let mut ports = Vec::new();
    let host = exec.observe(&Ns::Host, &[]).map_err(anyhow::Error::msg)?;
    for sb in tx.sandboxes()? {
        if !settled(sb.status, sb.owner_pid, sb.owner_start)
            || !sb.netns.as_deref().is_some_and(live)
        {
            continue;
        }
        for op in sandbox_ops(tx.as_ref(), &sb, &ctx.instance)? {
            if let Op::CreateVeth {
                host_ifname,
                bridge,
                ..
            } = &op
            {
                if *bridge != net.bridge {
                    continue;
                }
                if host.link(host_ifname).is_some() {
                    ports.push(op.clone());
                }
            } else if let Op::AddNeighbour {
                ns: Ns::Host,
                ifname,
                ..
            } = &op
            {
                // The host's entries for the sandbox, on this bridge (gone with a bridge
                // made again).
                if *ifname == net.bridge {
                    ports.push(op.clone());
                }
            }
        }
    }
    let views = Views::from([(Ns::Host, host)]);
    match unmet(&ports, &views) {
        Ok(ops) => {
            let errors = apply_best_effort(exec, &ops);
            out.applied.extend(ops.iter().map(Op::to_string));
            out.errors.extend(errors.iter().map(|e| e.to_string()));
        }
        Err(e) => out.errors.push(e.to_string()),
    }
    drop(tx);
    Ok(out)
}

fn live(path: &str) -> bool {
    netns::is_live(std::path::Path::new(path))
}

/// Repairs a sandbox's interfaces, addresses and routes.
pub fn sandbox(ctx: &Ctx, exec: &mut KernelExecutor, id: &str) -> Result<Repaired> {
    sandbox_seen(ctx, exec, id, None)
}

/// [`sandbox`], with the host namespace already observed (by [`all`], once for every
/// sandbox: a sandbox's repair touches only its own host-side interfaces).
fn sandbox_seen(
    ctx: &Ctx,
    exec: &mut KernelExecutor,
    id: &str,
    host: Option<&NsView>,
) -> Result<Repaired> {
    let tx = ctx.store.begin(Mode::Write)?;
    let Some(sb) = tx.sandbox(id)? else {
        return Ok(Repaired::default());
    };
    let Some(ns) = sb.netns.clone() else {
        return Ok(Repaired::default());
    };
    // A sandbox whose namespace is gone is gc's to forget, not to rebuild.
    if !settled(sb.status, sb.owner_pid, sb.owner_start)
        || sb.status == Status::Removing
        || !live(&ns)
    {
        return Ok(Repaired::default());
    }
    let desired = sandbox_ops(tx.as_ref(), &sb, &ctx.instance)?;
    if desired.is_empty() {
        return Ok(Repaired::default());
    }
    let known: Views = host.map(|h| (Ns::Host, h.clone())).into_iter().collect();
    let out = converge(exec, &desired, &[Ns::Host, Ns::Sandbox(ns)], known);
    drop(tx);
    Ok(out)
}

/// Repairs the sysctls of every network: the cheap check the agent runs often, since the
/// kernel announces no sysctl change.
pub fn sysctls(ctx: &Ctx, exec: &mut KernelExecutor) -> Result<Repaired> {
    let tx = ctx.store.begin(Mode::Read)?;
    let desired: Vec<Op> = tx
        .networks()?
        .iter()
        .filter(|n| n.status == Status::Created)
        .flat_map(|n| network_ops(n, &ctx.instance))
        .filter(|op| matches!(op, Op::Sysctl { .. }))
        .collect();
    drop(tx);
    let keys: Vec<String> = sysctl_keys(&desired).into_iter().map(|(_, k)| k).collect();
    let mut views = Views::new();
    let mut view = crate::core::reconcile::NsView::default();
    for k in keys {
        if let Ok(v) = crate::adapters::sysctl::get(&k) {
            view.sysctls.insert(k, v);
        }
    }
    views.insert(Ns::Host, view);
    let ops = unmet(&desired, &views)?;
    let errors = apply_best_effort(exec, &ops);
    Ok(Repaired {
        applied: ops.iter().map(Op::to_string).collect(),
        errors: errors.iter().map(|e| e.to_string()).collect(),
    })
}

/// What [`all`] repaired, per object.
#[derive(Debug, Default)]
pub struct Everything {
    /// (network name, its repair), for every network.
    pub networks: Vec<(String, Repaired)>,
    /// (sandbox name, its repair), for every sandbox.
    pub sandboxes: Vec<(String, Repaired)>,
}

/// Repairs every network, then every sandbox. The host is observed once for all sandboxes,
/// so the pass costs O(sandboxes), not O(sandboxes²).
pub fn all(ctx: &Ctx, exec: &mut KernelExecutor) -> Result<Everything> {
    let (nets, sbs) = {
        let tx = ctx.store.begin(Mode::Read)?;
        (tx.networks()?, tx.sandboxes()?)
    };
    let mut out = Everything::default();
    for n in &nets {
        out.networks
            .push((n.name.clone(), network(ctx, exec, &n.id)?));
    }
    let host = exec.observe(&Ns::Host, &[]).map_err(anyhow::Error::msg)?;
    for s in &sbs {
        out.sandboxes
            .push((s.name.clone(), sandbox_seen(ctx, exec, &s.id, Some(&host))?));
    }
    Ok(out)
}

/// Whether `id` is a network's (else a sandbox's, or nothing's).
pub fn is_network(ctx: &Ctx, id: &str) -> bool {
    ctx.store
        .begin(Mode::Read)
        .and_then(|tx| tx.network(id))
        .is_ok_and(|n| n.is_some_and(|n| n.id == id))
}

/// The repair for the owner of a kernel object tagged `weft:<instance>:<id>`: its network or
/// its sandbox.
pub fn owner(ctx: &Ctx, exec: &mut KernelExecutor, id: &str) -> Result<Repaired> {
    if is_network(ctx, id) {
        network(ctx, exec, id)
    } else {
        sandbox(ctx, exec, id)
    }
}

/// Before attaching to `net`: makes sure its bridge and sysctls are there (a deleted bridge
/// would otherwise fail the attach with "does not exist"). Costs one cached index lookup and a
/// few sysctl reads when all is well.
pub fn before_attach(ctx: &Ctx, exec: &mut KernelExecutor, net: &Network) -> Result<()> {
    // The bridge's own settings come with the link (one request); only the others (the
    // host's `ip_forward`) are read from their files.
    let link = exec
        .link_sysctls(&Ns::Host, &net.bridge)
        .map_err(anyhow::Error::msg)?;
    let present = link.is_some();
    let known = link.unwrap_or_default();
    let desired: Vec<Op> = network_ops(net, &ctx.instance)
        .into_iter()
        .filter(|op| matches!(op, Op::Sysctl { .. }))
        .collect();
    let sysctls_ok = desired.iter().all(|op| match op {
        Op::Sysctl { key, value, .. } => match known.get(key) {
            Some(v) => v == value,
            None => crate::adapters::sysctl::get(key)
                .map(|v| v == *value)
                .unwrap_or(true),
        },
        _ => true,
    });
    if present && sysctls_ok {
        return Ok(());
    }
    let r = network(ctx, exec, &net.id)?;
    if let Some(e) = r.errors.first() {
        anyhow::bail!("repairing network {:?}: {e}", net.name);
    }
    Ok(())
}

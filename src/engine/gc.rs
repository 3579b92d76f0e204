//! `weft gc`: reconcile the state store with the kernel after crashes.
//!
//! - records still `creating` whose owner process is dead are undone;
//! - sandboxes whose command died without anyone noticing are marked exited (or removed,
//!   for `--rm` and foreground runs);
//! - sandboxes whose namespace is gone are forgotten, their addresses released;
//! - links and namespace handles weft made that no record owns are deleted;
//! - addresses held by sandboxes that no longer exist are released;
//! - weft's nftables set elements are rebuilt from the networks on record.

use crate::adapters::store::Store as _;
use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::sandbox::remove_one;
use super::Ctx;
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::store::Mode;
use crate::adapters::{netns, nftables, process};
use crate::core::firewall;
use crate::core::model::{NetMode, Status};
use crate::core::plan::{
    apply_all, apply_best_effort, firewall_of, firewall_ports, plan_gc, plan_network, Desired,
    Observed,
};

/// What one `weft gc` did.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Sandboxes removed (half-made, dead `--rm`, or namespace gone).
    pub sandboxes_removed: Vec<String>,
    /// Sandboxes whose dead command was recorded as exited.
    pub sandboxes_exited: Vec<String>,
    /// Networks undone (half-made) or repaired (bridge gone).
    pub networks_removed: Vec<String>,
    /// Networks whose missing kernel objects were made again.
    pub networks_repaired: Vec<String>,
    /// Kernel objects nothing owned, deleted.
    pub orphans_deleted: Vec<String>,
    /// Addresses released because their sandbox no longer exists.
    pub addresses_released: usize,
    /// Errors met along the way (gc continues past them).
    pub errors: Vec<String>,
}

fn owner_dead(pid: Option<u32>) -> bool {
    !pid.is_some_and(process::alive)
}

/// Runs one reconciliation pass.
pub fn run(ctx: &Ctx) -> Result<GcReport> {
    let mut report = GcReport::default();
    let (nets, sbs) = {
        let tx = ctx.store.begin(Mode::Read)?;
        (tx.networks()?, tx.sandboxes()?)
    };

    for sb in &sbs {
        let half_made = sb.status == Status::Creating && owner_dead(sb.owner_pid);
        let ns_gone = sb.mode != NetMode::Host
            && sb.status != Status::Creating
            && !sb
                .netns
                .as_deref()
                .is_some_and(|p| netns::is_live(Path::new(p)));
        let dead_cmd = sb.status == Status::Running
            && !sb.pid.is_some_and(process::alive)
            && owner_dead(sb.monitor_pid);
        if half_made || ns_gone || (dead_cmd && sb.auto_remove) {
            match remove_one(ctx, &sb.id, false) {
                Ok(()) => report.sandboxes_removed.push(sb.name.clone()),
                Err(e) => report.errors.push(format!("{e:#}")),
            }
        } else if dead_cmd {
            let tx = ctx.store.begin(Mode::Write)?;
            if let Some(mut cur) = tx.sandbox(&sb.id)? {
                cur.status = Status::Exited;
                cur.pid = None;
                cur.monitor_pid = None;
                tx.put_sandbox(&cur)?;
            }
            tx.commit()?;
            report.sandboxes_exited.push(sb.name.clone());
        }
    }

    let mut exec = KernelExecutor::new()?;
    for net in &nets {
        if net.status == Status::Creating && owner_dead(net.owner_pid) {
            match super::network::teardown(ctx, net) {
                Ok(()) => report.networks_removed.push(net.name.clone()),
                Err(e) => report.errors.push(format!("{e:#}")),
            }
        } else if net.status == Status::Created {
            match exec.link_index(&crate::core::plan::Ns::Host, &net.bridge) {
                Ok(None) => match apply_all(&mut exec, &plan_network(net)) {
                    Ok(()) => report.networks_repaired.push(net.name.clone()),
                    Err(e) => report
                        .errors
                        .push(format!("repairing network {:?}: {e}", net.name)),
                },
                Ok(Some(_)) => {}
                Err(e) => report.errors.push(e),
            }
        }
    }

    // The kernel against what is on record now.
    let (nets, sbs) = {
        let tx = ctx.store.begin(Mode::Read)?;
        (tx.networks()?, tx.sandboxes()?)
    };
    let desired = Desired {
        owner_ids: nets
            .iter()
            .map(|n| n.id.clone())
            .chain(sbs.iter().map(|s| s.id.clone()))
            .collect(),
        netns_files: sbs.iter().filter_map(|s| s.netns.clone()).collect(),
    };
    let netns_dir = ctx.run_dir.join("netns");
    let netns_files: Vec<String> = std::fs::read_dir(&netns_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let observed = Observed {
        owned_links: exec.owned_links().unwrap_or_else(|e| {
            report.errors.push(e);
            vec![]
        }),
        netns_files,
    };
    let ops = plan_gc(&desired, &observed);
    for e in apply_best_effort(&mut exec, &ops) {
        report.errors.push(e.to_string());
    }
    report
        .orphans_deleted
        .extend(ops.iter().map(|o| o.to_string()));

    // Sandbox files nothing owns.
    if let Ok(rd) = std::fs::read_dir(ctx.run_dir.join("sandboxes")) {
        let ids: BTreeSet<&str> = sbs.iter().map(|s| s.id.as_str()).collect();
        for e in rd.flatten() {
            if !ids.contains(e.file_name().to_string_lossy().as_ref()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    // Allocations whose sandbox is gone.
    {
        let tx = ctx.store.begin(Mode::Write)?;
        let live: BTreeSet<String> = tx.sandboxes()?.into_iter().map(|s| s.id).collect();
        for (_, _, sid) in tx.allocations()? {
            if !live.contains(&sid) {
                tx.release_addresses(&sid, None)?;
                report.addresses_released += 1;
            }
        }
        for sid in tx.port_owners()? {
            if !live.contains(&sid) {
                tx.release_ports(&sid)?;
            }
        }
        tx.commit()?;
    }

    // nftables: the set elements are exactly those of the networks on record. Only touch
    // the table if weft has one or has networks.
    if !nets.is_empty()
        || nftables::table_exists(firewall::FAMILY, firewall::TABLE).unwrap_or(false)
    {
        let mut batch = nftables::Batch::new();
        firewall::ensure_base(&mut batch);
        firewall::flush_elements(&mut batch);
        for n in nets.iter().filter(|n| n.status == Status::Created) {
            firewall::add_network(&mut batch, &firewall_of(n));
        }
        for sb in sbs.iter().filter(|s| s.status != Status::Creating) {
            firewall::publish(&mut batch, &firewall_ports(sb));
        }
        if let Err(e) = nftables::send(&batch) {
            report.errors.push(format!("rebuilding nftables sets: {e}"));
        }
    }
    Ok(report)
}

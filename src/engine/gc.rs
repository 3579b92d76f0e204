//! `weft gc`: reconcile the state store with the kernel after crashes.
//!
//! - records still `creating` whose owner process is dead are undone;
//! - sandboxes whose command died without anyone noticing are marked exited (or removed,
//!   for `--rm` and foreground runs);
//! - sandboxes whose namespace is gone are forgotten, their addresses released;
//! - links and namespace handles weft made that no record owns are deleted;
//! - addresses held by sandboxes that no longer exist are released;
//! - records that cannot be read are removed with what they own (found by their ids);
//! - weft's nftables tables are checked against the records and rebuilt if they drifted
//!   ([`super::firewall::reconcile`]).

use crate::adapters::store::Store as _;
use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::sandbox::{is_running, kill_unrecorded, monitor_alive, remove_if};
use super::{reconcile, Ctx};
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::netns;
use crate::adapters::store::Mode;
use crate::core::model::{NetMode, Sandbox, Status};
use crate::core::plan::{apply_best_effort, plan_gc, Desired, Observed};

/// What one `weft gc` did.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Sandboxes removed (half-made, dead `--rm`, or namespace gone).
    pub sandboxes_removed: Vec<String>,
    /// Sandboxes whose dead command was recorded as exited.
    pub sandboxes_exited: Vec<String>,
    /// Networks undone (half-made) or repaired (bridge gone).
    pub networks_removed: Vec<String>,
    /// Networks whose missing or changed kernel objects were made right again.
    pub networks_repaired: Vec<String>,
    /// Sandboxes whose missing or changed interfaces, addresses or routes were made right.
    pub sandboxes_repaired: Vec<String>,
    /// Endpoints whose `network connect`/`disconnect` was interrupted, taken away
    /// (`sandbox/network`).
    pub endpoints_settled: Vec<String>,
    /// The repairs, operation by operation.
    pub repairs: Vec<String>,
    /// Kernel objects nothing owned, deleted.
    pub orphans_deleted: Vec<String>,
    /// What had drifted in weft's nftables tables, now repaired.
    pub firewall_repaired: Vec<String>,
    /// Addresses released because their sandbox no longer exists.
    pub addresses_released: usize,
    /// Records that could not be read, removed with their kernel objects and allocations.
    pub unreadable_removed: Vec<String>,
    /// Errors met along the way (gc continues past them).
    pub errors: Vec<String>,
}

fn owner_dead(pid: Option<u32>, start: Option<u64>) -> bool {
    !super::owner_alive(pid, start)
}

/// Why `gc` removes a sandbox, judged on a fresh reading of its record.
fn sandbox_is_debris(sb: &Sandbox) -> bool {
    let abandoned = matches!(sb.status, Status::Creating | Status::Removing)
        && owner_dead(sb.owner_pid, sb.owner_start);
    let ns_gone = sb.mode != NetMode::Host
        && !matches!(sb.status, Status::Creating | Status::Removing)
        && !sb
            .netns
            .as_deref()
            .is_some_and(|p| netns::is_live(Path::new(p)));
    abandoned || ns_gone || (command_died(sb) && sb.auto_remove)
}

/// A running sandbox whose command and monitor are both gone without recording it, or a
/// restarting one whose monitor died during the back-off (nothing will start it again).
fn command_died(sb: &Sandbox) -> bool {
    match sb.status {
        Status::Running => !is_running(sb) && !monitor_alive(sb),
        Status::Restarting => !monitor_alive(sb),
        _ => false,
    }
}

/// Runs one reconciliation pass.
pub fn run(ctx: &Ctx) -> Result<GcReport> {
    let mut report = GcReport::default();
    // Records that cannot be read go first, with what they own (found by their ids).
    let unreadable = {
        let tx = ctx.store.begin(Mode::Read)?;
        tx.corrupt_records()?
    };
    for r in &unreadable {
        let removed = if r.table == "sandboxes" {
            super::sandbox::remove_unreadable(ctx, &r.id, &r.name, true)
        } else {
            super::network::remove::remove_unreadable(ctx, &r.id, &r.name, true)
        };
        match removed {
            Ok(true) => report.unreadable_removed.push(r.to_string()),
            Ok(false) => {}
            Err(e) => report.errors.push(format!("{e:#}")),
        }
    }
    let ids: Vec<(String, String)> = {
        let tx = ctx.store.begin(Mode::Read)?;
        tx.sandboxes()?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect()
    };
    for (id, name) in &ids {
        match super::sandbox::connect::settle_interrupted(ctx, id) {
            Ok(list) => report.endpoints_settled.extend(list),
            Err(e) => report.errors.push(format!("{e:#}")),
        }
        // Removal kills every process of the sandbox first, also of an abandoned removal.
        match remove_if(ctx, id, sandbox_is_debris) {
            Ok(true) => report.sandboxes_removed.push(name.clone()),
            Ok(false) => {}
            Err(e) => report.errors.push(format!("{e:#}")),
        }
        let tx = ctx.store.begin(Mode::Write)?;
        if let Some(mut cur) = tx.sandbox(id)? {
            if command_died(&cur) {
                // Died unseen: the time gc noticed is the best known (a restarting
                // sandbox's command exited when recorded).
                if cur.status == Status::Running || cur.finished.is_none() {
                    cur.finished = Some(crate::engine::now());
                }
                cur.status = Status::Exited;
                cur.pid = None;
                cur.pid_start = None;
                cur.monitor_pid = None;
                cur.monitor_start = None;
                // Exited for good: its host ports are freed, as at a command's own exit.
                let freed = super::sandbox::publish::release_in(tx.as_ref(), &mut cur)?;
                tx.put_sandbox(&cur)?;
                tx.commit()?;
                if let Some(was) = freed {
                    if let Err(e) = super::sandbox::publish::detach(ctx, &was) {
                        report.errors.push(format!("{e:#}"));
                    }
                }
                report.sandboxes_exited.push(name.clone());
            }
        }
    }

    let nets = {
        let tx = ctx.store.begin(Mode::Read)?;
        tx.networks()?
    };
    let mut exec = KernelExecutor::new()?;
    for net in &nets {
        // Claim abandoned networks inside a write transaction on a fresh reading.
        let abandoned = {
            let tx = ctx.store.begin(Mode::Write)?;
            match tx.network(&net.id)? {
                Some(mut cur)
                    if matches!(cur.status, Status::Creating | Status::Removing)
                        && owner_dead(cur.owner_pid, cur.owner_start) =>
                {
                    cur.status = Status::Removing;
                    (cur.owner_pid, cur.owner_start) = (Some(super::me().0), super::me().1);
                    tx.put_network(&cur)?;
                    tx.commit()?;
                    true
                }
                _ => false,
            }
        };
        if abandoned {
            match super::network::remove::teardown(ctx, net) {
                Ok(()) => report.networks_removed.push(net.name.clone()),
                Err(e) => report.errors.push(format!("{e:#}")),
            }
        }
    }

    // The kernel first, the records second: records are written before the kernel objects
    // they own, so an object seen here belongs to a record read below unless it is debris.
    let netns_dir = ctx.run_dir.join("netns");
    let netns_files: Vec<String> = std::fs::read_dir(&netns_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let sandbox_dirs: Vec<(String, std::path::PathBuf)> =
        std::fs::read_dir(ctx.run_dir.join("sandboxes"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
                    .collect()
            })
            .unwrap_or_default();
    let observed = Observed {
        owned_links: exec.owned_links(&ctx.instance).unwrap_or_else(|e| {
            report.errors.push(e);
            vec![]
        }),
        netns_files,
    };
    let (nets, sbs) = {
        let tx = ctx.store.begin(Mode::Read)?;
        (tx.networks()?, tx.sandboxes()?)
    };
    let mut desired = Desired {
        owner_ids: nets
            .iter()
            .map(|n| n.id.clone())
            .chain(sbs.iter().map(|s| s.id.clone()))
            .collect(),
        netns_files: sbs.iter().filter_map(|s| s.netns.clone()).collect(),
    };
    // Processes of sandboxes that have no record any more go before their namespaces and
    // links: their inits are recorded in the sandbox's run directory.
    let ids: BTreeSet<&str> = sbs.iter().map(|s| s.id.as_str()).collect();
    let mut orphan_dirs = Vec::new();
    for (id, path) in &sandbox_dirs {
        if ids.contains(id.as_str()) {
            continue;
        }
        match kill_unrecorded(ctx, id) {
            Ok(()) => orphan_dirs.push(path),
            Err(e) => {
                // Kept for the next run: nothing of it may go while its processes live.
                report.errors.push(format!("{e:#}"));
                desired.owner_ids.insert(id.clone());
                desired
                    .netns_files
                    .insert(netns_dir.join(id).display().to_string());
            }
        }
    }
    let ops = plan_gc(&desired, &observed);
    for e in apply_best_effort(&mut exec, &ops) {
        report.errors.push(e.to_string());
    }
    report
        .orphans_deleted
        .extend(ops.iter().map(|o| o.to_string()));
    for path in orphan_dirs {
        let _ = std::fs::remove_dir_all(path);
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

    // nftables: weft's tables, rules and set elements exactly what the records want, rebuilt
    // atomically under the store's write lock if anything drifted — before the kernel objects
    // below are made again, whose firewall elements need the tables.
    match super::firewall::reconcile(ctx) {
        Ok(drifts) => report
            .firewall_repaired
            .extend(drifts.iter().map(ToString::to_string)),
        Err(e) => report.errors.push(format!("{e:#}")),
    }

    // Drift: what the records own but the kernel lost or changed.
    match reconcile::all(ctx, &mut exec) {
        Ok(all) => {
            for (list, repaired) in [
                (&mut report.networks_repaired, all.networks),
                (&mut report.sandboxes_repaired, all.sandboxes),
            ] {
                for (name, r) in repaired {
                    if !r.applied.is_empty() {
                        list.push(name);
                    }
                    report.repairs.extend(r.applied);
                    report.errors.extend(r.errors);
                }
            }
        }
        Err(e) => report.errors.push(format!("{e:#}")),
    }
    // An agent that died (kill -9, a crash) comes back with gc: it holds the published ports
    // and repairs what drifts. The agent's own gc finds itself running.
    let anything = {
        let tx = ctx.store.begin(Mode::Read)?;
        !tx.networks()?.is_empty() || !tx.sandboxes()?.is_empty()
    };
    if anything {
        if let Err(e) = super::agent::client::ensure_running(ctx) {
            report
                .errors
                .push(format!("starting the weft agent: {e:#}"));
        }
    }
    Ok(report)
}

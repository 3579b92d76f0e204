//! Weft's firewall, level-triggered: what it should be ([`desired`], from the records, the
//! configuration and what weft found on the host), what the kernel has ([`check`]), and one
//! atomic rebuild when they differ ([`repair`]), done while holding the store's write lock so
//! that no record changes meanwhile.
//!
//! - every command that needs the firewall calls [`ensure`] first: two dumps on an attach
//!   (tables with their owners, chains with their hooks and rule counts — not elements, so
//!   the cost does not grow with the number of sandboxes; ~0.15 ms) and a repair if anything
//!   is missing or damaged, instead of failing with a raw errno; `network create` looks at
//!   every rule and element;
//! - `weft gc` and the host agent (on nf_tables notifications from other processes) call
//!   [`reconcile`];
//! - tables owned by another state directory are never changed: the command is refused,
//!   naming that state directory;
//! - other tables' forward chains that drop by policy (firewalld, ufw, `iptables -P FORWARD
//!   DROP`) are reported on stderr by network create and every attach, with the commands that
//!   let weft's bridges through.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};

use super::Ctx;
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::store::{Mode, Store as _, Txn};
use crate::adapters::{nftables, process, sysctl};
use crate::core::driver::DriverData;
use crate::core::firewall::drift::{self, Depth, Desired, Drift, ForeignOwner};
use crate::core::firewall::{foreign, FwOptions, Owner};
use crate::core::model::{Network, Status};
use crate::core::nft::{ChainInfo, ObservedTable};
use crate::core::plan::{alias_instance, firewall_endpoint, firewall_of, firewall_ports};
use crate::user_err;

/// Setting: `net.ipv4.ip_forward` before weft first turned it on.
pub const SETTING_FORWARD_V4: &str = "ip_forward_before";
/// Setting: `net.ipv6.conf.all.forwarding` before weft first turned it on.
pub const SETTING_FORWARD_V6: &str = "ipv6_forwarding_before";

/// The tables' owner: this state directory.
pub fn owner(ctx: &Ctx) -> Owner {
    Owner {
        instance: ctx.instance.clone(),
        state_dir: ctx.state_dir.display().to_string(),
    }
}

/// The rules' options: the configuration, whether weft turned forwarding on itself, and the
/// VXLAN ports of the overlay networks on record here (from the records, not from the
/// agent's flags: every weft process must want the same rules).
pub fn options(ctx: &Ctx, tx: &dyn Txn) -> Result<FwOptions> {
    let drop_if_was_off = |key| -> Result<bool> {
        Ok(!ctx.config.ip_forward_no_drop && tx.setting(key)?.as_deref() == Some("0"))
    };
    let vxlan_ports: BTreeSet<u16> = tx
        .networks()?
        .iter()
        .filter_map(|n| match &n.driver_data {
            DriverData::Overlay(c) => Some(c.port),
            _ => None,
        })
        .collect();
    Ok(FwOptions {
        anti_spoofing: ctx.config.anti_spoofing(),
        forward_drop_v4: drop_if_was_off(SETTING_FORWARD_V4)?,
        forward_drop_v6: drop_if_was_off(SETTING_FORWARD_V6)?,
        vxlan_ports: vxlan_ports.into_iter().collect(),
    })
}

/// Records, inside the caller's write transaction, what forwarding was before `net` makes
/// weft turn it on — once: the first reading is the host's own setting.
pub fn record_forwarding(tx: &dyn Txn, net: &Network) -> Result<()> {
    if net.internal {
        return Ok(()); // internal networks turn nothing on
    }
    for (key, sysctl_key, wanted) in [
        (SETTING_FORWARD_V4, "net.ipv4.ip_forward", true),
        (
            SETTING_FORWARD_V6,
            "net.ipv6.conf.all.forwarding",
            net.v6().is_some(),
        ),
    ] {
        if wanted && tx.setting(key)?.is_none() {
            // Unreadable: assume the host forwards on purpose (no drop).
            let before = sysctl::get(sysctl_key).unwrap_or_else(|_| "1".into());
            tx.put_setting(key, &before)?;
        }
    }
    Ok(())
}

/// Whether a record is being created or removed by a live weft process, or its owner died
/// before it was done (then gc undoes or finishes it).
fn in_flight(status: Status, pid: Option<u32>, start: Option<u64>) -> Option<bool> {
    matches!(status, Status::Creating | Status::Removing)
        .then(|| crate::engine::owner_alive(pid, start))
}

/// The firewall the records want. Records another live weft process is creating or
/// removing, and endpoints one is connecting or disconnecting, are in flight: their elements
/// are "don't care" (neither required nor removed: their owner adds them, or takes them away
/// when it rolls back, itself). Records whose owner died are debris that gc undoes or
/// finishes: their elements are not wanted.
pub fn desired(ctx: &Ctx, tx: &dyn Txn, with_elements: bool) -> Result<Desired> {
    let opts = options(ctx, tx)?;
    if !with_elements {
        return Ok(Desired::new(&opts, owner(ctx), &[], &[], &[]));
    }
    // Read only here, where network elements are built (never on an attach's check).
    let dns_port = crate::adapters::dns_port::read(&ctx.run_dir);
    let (mut nets, mut nets_moving) = (Vec::new(), Vec::new());
    for n in tx.networks()? {
        match in_flight(n.status, n.owner_pid, n.owner_start) {
            None => nets.push(firewall_of(&n, dns_port)),
            Some(true) => nets_moving.push(firewall_of(&n, dns_port)),
            Some(false) => {}
        }
    }
    let (mut eps, mut eps_moving) = (Vec::new(), Vec::new());
    let (mut ports, mut ports_moving) = (Vec::new(), Vec::new());
    for sb in tx.sandboxes()? {
        let moving = match in_flight(sb.status, sb.owner_pid, sb.owner_start) {
            None => false,
            Some(true) => true,
            Some(false) => continue,
        };
        if moving {
            &mut ports_moving
        } else {
            &mut ports
        }
        .extend(firewall_ports(&sb));
        if sb.netns.is_none() {
            continue;
        }
        for ep in &sb.endpoints {
            let moving = match ep.pending {
                None => moving,
                Some(p) if process::alive_since(p.owner_pid, p.owner_start) => true,
                // Interrupted: gc undoes the attach, or finishes the detach.
                Some(_) => continue,
            };
            if moving { &mut eps_moving } else { &mut eps }.push(firewall_endpoint(ep));
        }
    }
    Ok(
        Desired::new(&opts, owner(ctx), &nets, &eps, &ports).with_in_flight(
            &nets_moving,
            &eps_moving,
            &ports_moving,
        ),
    )
}

/// What the kernel has: each of weft's tables, and every chain of the namespace (for the
/// foreign forward drops).
fn observe(desired: &Desired, depth: Depth) -> Result<(Vec<ObservedTable>, Vec<ChainInfo>)> {
    let read = || -> Result<_, nftables::NftError> {
        let tables = nftables::list_tables()?;
        let chains = nftables::list_chains()?;
        let observed = desired
            .tables
            .iter()
            .map(|t| {
                nftables::observe_table(
                    t.family,
                    t.name,
                    &tables,
                    &chains,
                    depth != Depth::Chains,
                    depth == Depth::Elements,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((observed, chains))
    };
    crate::timing::time("nft-check", read).context("reading weft's nftables tables")
}

fn refused(e: ForeignOwner) -> anyhow::Error {
    user_err!("{e}")
}

/// Every difference between the records and the kernel, elements included. Read-only.
pub fn check(ctx: &Ctx) -> Result<Vec<Drift>> {
    let desired = {
        let tx = ctx.store.begin(Mode::Read)?;
        desired(ctx, tx.as_ref(), true)?
    };
    let (observed, _) = observe(&desired, Depth::Elements)?;
    drift::check(&desired, &observed, Depth::Elements).map_err(refused)
}

/// Rebuilds weft's tables if they differ from the records, in one atomic batch, while
/// holding the store's write lock. Returns what had drifted (empty: nothing was changed).
pub fn repair(ctx: &Ctx) -> Result<Vec<Drift>> {
    let tx = ctx.store.begin(Mode::Write)?;
    let desired = desired(ctx, tx.as_ref(), true)?;
    let (observed, _) = observe(&desired, Depth::Elements)?;
    let drifts = drift::check(&desired, &observed, Depth::Elements).map_err(refused)?;
    if drifts.is_empty() {
        return Ok(drifts);
    }
    if observed.iter().all(|o| o.table.is_none()) {
        refuse_where_another_instance_lives(ctx)?;
    }
    let batch = drift::repair(&desired, &observed).map_err(refused)?;
    crate::timing::time("nft-repair", || nftables::send(&batch))
        .context("repairing weft's nftables tables")?;
    drop(tx);
    Ok(drifts)
}

/// Before weft's tables are built from nothing: with no tables there is no owner comment to
/// refuse on, so another state directory's command would take them (and its port guard cut
/// the first's sandboxes off). Interfaces tagged by another instance say that one lives in
/// this namespace: refused, naming them; their owner rebuilds its own tables.
fn refuse_where_another_instance_lives(ctx: &Ctx) -> Result<()> {
    let links = KernelExecutor::new()?
        .foreign_links(&ctx.instance)
        .map_err(|e| anyhow::anyhow!("listing links: {e}"))?;
    if links.is_empty() {
        return Ok(());
    }
    let instances: BTreeSet<&str> = links
        .iter()
        .filter_map(|(_, a)| alias_instance(a))
        .collect();
    const SHOWN: usize = 6;
    let mut names: Vec<&str> = links.iter().take(SHOWN).map(|(n, _)| n.as_str()).collect();
    let more = links.len().saturating_sub(SHOWN);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    names.sort_unstable();
    Err(user_err!(
        "weft's nftables tables are missing (a firewall reload or `nft flush ruleset`?) and \
         this network namespace has interfaces of another weft instance ({}): {}{tail}; only \
         the state directory that owns them may rebuild the tables (any of its commands, or its \
         `weft gc`), or remove its networks first",
        instances.into_iter().collect::<Vec<_>>().join(", "),
        names.join(", ")
    ))
}

/// Checks and, if anything drifted, repairs: what `weft gc` runs, and what a host agent
/// should run when nf_tables changes ("repair the firewall if it drifted"). A state
/// directory without networks leaves the firewall alone unless the tables are its own (it
/// then empties them of stale elements). Returns what was repaired.
pub fn reconcile(ctx: &Ctx) -> Result<Vec<Drift>> {
    ensure(ctx, Depth::Elements, &[])
}

/// Makes sure the firewall is in place before a command relies on it: checks at `depth`,
/// repairs if anything drifted, refuses if the tables belong to another state directory,
/// and warns on stderr about other tables' forward chains that drop by policy (naming
/// `bridges`, the bridges the command is about). Returns what was repaired.
pub fn ensure(ctx: &Ctx, depth: Depth, bridges: &[String]) -> Result<Vec<Drift>> {
    let (desired, has_networks) = {
        let tx = ctx.store.begin(Mode::Read)?;
        let has_networks = !tx.networks()?.is_empty();
        (
            desired(ctx, tx.as_ref(), depth == Depth::Elements)?,
            has_networks,
        )
    };
    let (observed, chains) = observe(&desired, depth)?;
    warn_foreign_drops(&chains, bridges);
    let drifts = match drift::check(&desired, &observed, depth) {
        Ok(d) => d,
        // Nothing of ours to protect, and another instance's tables are not ours to touch.
        Err(_) if !has_networks => return Ok(vec![]),
        Err(e) => return Err(refused(e)),
    };
    if drifts.is_empty() {
        return Ok(drifts);
    }
    // A host where this state directory never made a network gets no tables from it.
    let none_exist = observed.iter().all(|o| o.table.is_none());
    if !has_networks && none_exist {
        return Ok(vec![]);
    }
    let repaired = repair(ctx)?;
    Ok(if repaired.is_empty() {
        drifts
    } else {
        repaired
    })
}

/// Applies `ops`; if that fails and the firewall turns out to have drifted meanwhile (someone
/// flushed the rule set between [`ensure`] and now), repairs it and tries once more.
pub fn apply_with_repair(
    ctx: &Ctx,
    exec: &mut dyn crate::core::plan::Executor,
    ops: &[crate::core::plan::Op],
) -> Result<()> {
    use crate::core::plan::Op;
    match crate::core::plan::apply_all(exec, ops) {
        Ok(()) => Ok(()),
        Err(first) => {
            let repaired = ensure(ctx, Depth::Chains, &[]).is_ok_and(|d| !d.is_empty());
            // A firewall operation that failed although nothing needs repair now was most
            // likely refused while someone else (the agent) was repairing: once more too.
            let firewall_op = ops.iter().any(|op| {
                op.to_string() == first.cause.op
                    && matches!(
                        op,
                        Op::FirewallAdd(_)
                            | Op::FirewallRemove(_)
                            | Op::FirewallAttach { .. }
                            | Op::FirewallDetach { .. }
                    )
            });
            if repaired || firewall_op {
                crate::core::plan::apply_all(exec, ops)?;
                return Ok(());
            }
            Err(first.into())
        }
    }
}

/// Prints a warning for every foreign forward chain that drops by policy and does not
/// mention the bridges already.
fn warn_foreign_drops(chains: &[ChainInfo], bridges: &[String]) {
    if bridges.is_empty() {
        return;
    }
    for c in foreign::forward_drops(chains) {
        let unmentioned: Vec<String> = bridges
            .iter()
            .filter(|b| {
                let needle = foreign::mention(c, b);
                !nftables::chain_mentions(c.family, &c.table, &c.name, &needle).unwrap_or(false)
            })
            .cloned()
            .collect();
        if !unmentioned.is_empty() {
            eprintln!("{}", foreign::warning(c, &unmentioned));
        }
    }
}

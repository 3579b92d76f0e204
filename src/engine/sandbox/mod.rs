//! Sandboxes: `weft create | rm | ps | inspect` and `weft network connect | disconnect`.
//!
//! Each change follows the engine's discipline (see [`crate::engine`]): record the intent and
//! allocations, apply the planned kernel operations with rollback, record the result.
//! Running commands in sandboxes lives in [`supervise`], address and port allocation in
//! [`addresses`] and [`publish`], the files a sandbox sees in [`files`].

pub mod addresses;
pub mod connect;
pub mod files;
pub mod kill;
pub mod logs;
pub mod overlay;
pub mod publish;
pub mod settings;
pub mod supervise;
pub mod wait;

pub use files::exec_spec;
pub use supervise::{
    exec, monitor, run_detached, run_foreground, start, start_reporting, stop, ExecOptions,
    ExitReport,
};

use addresses::{allocate_endpoint, parse_ips, restore_cursors, CursorMove};
use files::{log_path, write_files};
use publish::{claim_ports, HostPorts};
use supervise::kill_all;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::adapters::netlink::KernelExecutor;
use crate::adapters::process;
use crate::adapters::store::Store as _;
use crate::adapters::store::{Mode, StoreError, Txn};
use crate::core::firewall::drift::Depth;
use crate::core::model::{NetMode, Network, Sandbox, Status};
use crate::core::names::validate_name;
use crate::core::plan::{
    firewall_ports, plan_firewall_attach, plan_sandbox, plan_sandbox_teardown, Op,
};
use crate::core::ports;
use crate::engine::firewall;
use crate::engine::network::{ensure_default, find_here};
use crate::engine::{new_id, now, parse_kv, Ctx};
use crate::user_err;

/// Everything `weft create` / `weft run` accept about the sandbox itself.
#[derive(Debug, Clone, Default)]
pub struct SandboxRequest {
    /// `--name`; generated when absent.
    pub name: Option<String>,
    /// `--network`, in connect order; empty means the default network.
    pub networks: Vec<String>,
    /// `--ip` (IPv4 or IPv6) on the first network.
    pub ips: Vec<String>,
    /// `--alias` on every network.
    pub aliases: Vec<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--label K=V`.
    pub labels: Vec<String>,
    /// The command (may be empty for `create`).
    pub command: Vec<String>,
    /// `--rm`, or a foreground run.
    pub auto_remove: bool,
    /// `-p` specs.
    pub ports: Vec<String>,
    /// `--ip6`: static IPv6 addresses on the first network.
    pub ip6: Vec<String>,
    /// `--mac-address` of the first network's interface.
    pub mac_address: Option<String>,
    /// `--add-host NAME:IP`.
    pub add_hosts: Vec<String>,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
    /// `-e` items.
    pub env: Vec<String>,
    /// `--env-file` paths (read before the `-e` items, which win).
    pub env_files: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
    /// `--restart` as given (empty: `no`).
    pub restart: String,
}

/// Looks a sandbox up by name or id prefix, or says how to list them.
pub fn find(tx: &dyn Txn, name: &str) -> Result<Sandbox> {
    tx.sandbox(name)?
        .ok_or_else(|| user_err!("no such sandbox {name:?}; `weft ps -a` lists the sandboxes"))
}

fn resolve_mode(networks: &[String]) -> Result<NetMode> {
    let special = networks
        .iter()
        .filter(|n| *n == "host" || *n == "none")
        .count();
    if special == 0 {
        return Ok(NetMode::Bridge);
    }
    if networks.len() > 1 {
        return Err(user_err!(
            "--network host/none cannot be combined with other networks"
        ));
    }
    Ok(if networks[0] == "host" {
        NetMode::Host
    } else {
        NetMode::None
    })
}

/// Creates a sandbox: namespace, one veth per network, addresses, routes. Nothing is left
/// behind on failure.
pub fn create(ctx: &Ctx, req: &SandboxRequest) -> Result<Sandbox> {
    create_inner(ctx, req, true)
}

/// [`create`] for `run`: the record stays the intent of this process (`creating`) until the
/// command runs ([`supervise`] marks it running), so a `run` killed before its command
/// started leaves a record gc undoes — not a sandbox nobody asked for.
pub(super) fn create_to_run(ctx: &Ctx, req: &SandboxRequest) -> Result<Sandbox> {
    create_inner(ctx, req, false)
}

fn create_inner(ctx: &Ctx, req: &SandboxRequest, finish: bool) -> Result<Sandbox> {
    let prepare_start = std::time::Instant::now();
    let id = new_id()?;
    let name = match &req.name {
        Some(n) => {
            validate_name("sandbox", n)?;
            n.clone()
        }
        None => id[..12].to_string(),
    };
    let mode = resolve_mode(&req.networks)?;
    settings::check_network_mode(req, mode)?;
    let mut ips = req.ips.clone();
    for s in &req.ip6 {
        if s.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(user_err!(
                "invalid --ip6 {s:?}: expected an IPv6 address like fd00::5"
            ));
        }
        ips.push(s.clone());
    }
    let want = parse_ips(&ips)?;
    let mut run = settings::parse(req)?;
    if finish {
        // `create` runs nothing now: a command that cannot be found would only fail at
        // `start`. Checked here, it also catches Docker's habit of naming the sandbox first
        // (`weft create NAME -- CMD`), whose NAME would otherwise be stored as the command.
        settings::check_command(&req.command, &run.env)?;
    }
    let restart: crate::core::run::RestartPolicy = if req.restart.is_empty() {
        Default::default()
    } else {
        req.restart.parse()?
    };
    let mac = req
        .mac_address
        .as_deref()
        .map(crate::core::run::mac_address)
        .transpose()?;
    if mode != NetMode::Bridge && (want.0.is_some() || want.1.is_some()) {
        return Err(user_err!(
            "--ip needs a bridge network, not --network {}",
            req.networks[0]
        ));
    }
    let labels = parse_kv("--label", &req.labels)?;
    let mut specs = req
        .ports
        .iter()
        .map(|p| ports::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    if mode == NetMode::Host && !specs.is_empty() {
        // As Docker: the command's ports are the host's already.
        eprintln!("WARNING: Published ports are discarded when using host network mode");
        specs.clear();
    }
    if !specs.is_empty() && mode != NetMode::Bridge {
        return Err(user_err!(
            "-p needs a bridge network: with --network {} there is nothing to publish to",
            req.networks[0]
        ));
    }
    if let Some(h) = &req.hostname {
        if h.is_empty() || h.len() > 64 || h.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(user_err!(
                "invalid --hostname {h:?}: use up to 64 characters without spaces"
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in &req.networks {
        if !seen.insert(n) {
            return Err(user_err!("--network {n} given twice"));
        }
    }
    if mode == NetMode::Bridge && req.networks.is_empty() {
        ensure_default(ctx)?;
    }
    let net_names: Vec<String> = if mode == NetMode::Bridge && req.networks.is_empty() {
        vec![super::network::DEFAULT_NETWORK.to_string()]
    } else if mode == NetMode::Bridge {
        req.networks.clone()
    } else {
        vec![]
    };
    // The first network's default host address for published ports (`--opt host_ip`).
    let specs = match net_names.first() {
        Some(first) if specs.iter().any(|s| s.host_ip.is_none()) => {
            let tx = ctx.store.begin(Mode::Read)?;
            let default = tx.network(first)?.and_then(|n| n.host_ip());
            ports::with_default_host(specs, default)
        }
        _ => specs,
    };
    let host = HostPorts::observe(&specs)?;
    let netns = match mode {
        NetMode::Host => None,
        _ => Some(ctx.netns_dir()?.join(&id).display().to_string()),
    };

    let mac_text = mac.map(|m| crate::core::model::format_mac(&m));
    let who = overlay::Who {
        id: &id,
        name: &name,
        // The hostname the sandbox gets (its short id unless given), answered on every host
        // as it is on this one.
        hostname: Some(req.hostname.as_deref().unwrap_or(&id[..12])),
        aliases: &req.aliases,
        ip: want.0,
        mac: mac_text,
    };
    // Cluster addresses of overlay networks, released again by `claims`' drop on every
    // failure below.
    let mut claims = overlay::Claims::new(ctx, &id);
    let mut claimed = false;
    crate::timing::record("prepare", prepare_start.elapsed());
    let (tx, nets, intent_start) = loop {
        let intent_start = std::time::Instant::now();
        let tx = ctx.store.begin(Mode::Write)?;
        if tx.sandbox(&name)?.is_some_and(|s| s.name == name) {
            return Err(user_err!(
                "sandbox {name:?} already exists; choose another --name or remove it with `weft rm {name}`"
            ));
        }
        let mut nets = Vec::new();
        for n in &net_names {
            let net = find_here(ctx, tx.as_ref(), n)?;
            if net.status != Status::Created {
                return Err(user_err!(
                    "network {n:?} is not ready (being created or half-made; try `weft gc`)"
                ));
            }
            nets.push(net);
        }
        if claims.cover(&nets) {
            break (tx, nets, intent_start);
        }
        // An overlay network: its address comes from the cluster, claimed outside the local
        // write transaction (it waits for etcd), which is then made again. A bridge-only
        // create reads its networks once, here.
        if claimed {
            return Err(user_err!(
                "an overlay network among {} was removed and made again meanwhile; try again",
                net_names.join(", ")
            ));
        }
        drop(tx);
        claims.attach(&nets, &who)?;
        claimed = true;
    };
    let mut endpoints = Vec::new();
    let mut moves = Vec::new();
    for (i, net) in nets.iter().enumerate() {
        let w = if i == 0 { want } else { (None, None) };
        let w = match claims.ip_for(&net.id) {
            Some(ip) => (Some(ip), None),
            None => w,
        };
        endpoints.push(allocate_endpoint(
            tx.as_ref(),
            net,
            &id,
            i,
            w,
            &req.aliases,
            &mut moves,
        )?);
    }
    if !specs.is_empty() {
        // Published ports go to the first address of each family: its network must have a
        // way in (Docker does not publish into internal networks either).
        for v6 in [false, true] {
            let target = endpoints.iter().zip(&nets).find(|(e, _)| {
                if v6 {
                    e.ipv6.is_some()
                } else {
                    e.ipv4.is_some()
                }
            });
            if let Some((_, net)) = target.filter(|(_, n)| n.internal) {
                return Err(user_err!(
                    "-p: network {:?} is internal, nothing can reach it from outside; publish from a sandbox whose first network is not internal",
                    net.name
                ));
            }
        }
    }
    if let (Some(mac), Some(first)) = (mac, endpoints.first_mut()) {
        first.mac = crate::core::model::format_mac(&mac);
        // Two ports of one bridge with one MAC would steal each other's frames.
        for other in tx.sandboxes()? {
            let clash = other
                .endpoints
                .iter()
                .any(|e| e.network_id == first.network_id && e.mac == first.mac);
            if clash {
                return Err(user_err!(
                    "--mac-address {}: already the MAC of sandbox {:?} on network {:?}",
                    first.mac,
                    other.name,
                    first.network
                ));
            }
        }
    }
    settings::resolve_hosts(&mut run, req, &nets)?;
    let published = claim_ports(tx.as_ref(), &id, &specs, &endpoints, &host)?;
    let sb = Sandbox {
        name: name.clone(),
        id: id.clone(),
        hostname: req.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        mode,
        pid: None,
        pid_start: None,
        monitor_pid: None,
        monitor_start: None,
        netns: netns.clone(),
        endpoints,
        labels,
        ports: published,
        command: req.command.clone(),
        auto_remove: req.auto_remove,
        started: None,
        finished: None,
        exit_code: None,
        status: Status::Creating,
        owner_pid: Some(crate::engine::me().0),
        owner_start: crate::engine::me().1,
        created: now(),
        restart,
        restart_count: 0,
        stopped: false,
        stopped_ports: vec![],
        run,
    };
    tx.put_sandbox(&sb)?;
    tx.commit()?;
    crate::timing::record("state-intent", intent_start.elapsed());

    let result = build(ctx, &sb, &nets);
    if let Err(e) = result {
        forget(ctx, &sb, &moves)?;
        return Err(e.context(format!("creating sandbox {name:?}")));
    }
    // From here its removal releases them.
    claims.keep();
    let mut done = sb;
    if finish {
        done.status = Status::Created;
        done.owner_pid = None;
        done.owner_start = None;
    }
    crate::timing::time("state-commit", || -> Result<()> {
        if !finish {
            return Ok(());
        }
        let tx = ctx.store.begin(Mode::Write)?;
        // Only finish our own intent: never bring back a record someone removed meanwhile.
        if tx.replace_sandbox_if(&done, Status::Creating, std::process::id())? {
            tx.commit()?;
            Ok(())
        } else {
            Err(user_err!(
                "sandbox {:?} was removed while it was being created",
                done.name
            ))
        }
    })?;
    // The agent holds published ports against host processes (and is started on first use).
    let agent = crate::timing::time("agent", || {
        if done.ports.is_empty() {
            crate::engine::agent::client::ensure_running(ctx).map(|_| ())
        } else {
            crate::engine::agent::client::reserve(ctx, &done)
        }
    });
    if let Err(e) = agent {
        if !done.ports.is_empty() {
            remove_one(ctx, &done.id)?;
            return Err(e.context(format!("creating sandbox {:?}", done.name)));
        }
        // Without an agent everything still works; only repairs wait for the next command.
        eprintln!("warning: cannot start the weft agent: {e:#}");
    }
    Ok(done)
}

/// Makes the kernel objects and files of a freshly recorded sandbox, or none of them.
fn build(ctx: &Ctx, sb: &Sandbox, nets: &[Network]) -> Result<()> {
    // Before anything is made: a network of a driver this weft does not know stops here.
    let drivers = nets
        .iter()
        .map(crate::core::driver::of)
        .collect::<Result<Vec<_>, _>>()?;
    let Some(ns) = &sb.netns else {
        return crate::timing::time("files", || write_files(ctx, sb, nets));
    };
    let ipv6 = sb.endpoints.iter().any(|e| e.ipv6.is_some());
    let mut exec = KernelExecutor::new()?;
    // The namespace is made on a thread of its own while this one writes the files, checks
    // the firewall and sends the port guard's batch (the record above already names it, as
    // gc needs): those don't need it, and the kernel's part of both is about a millisecond.
    exec.prepare_netns(ns, ipv6);
    crate::timing::time("files", || write_files(ctx, sb, nets))?;
    let mut ops = Vec::new();
    if !nets.is_empty() {
        // One batch for the port guard and the published ports, before the interfaces
        // exist: a port is guarded from its first frame.
        ops.push(plan_firewall_attach(&sb.endpoints, firewall_ports(sb)));
    }
    ops.extend(plan_sandbox(ns, ipv6));
    for (i, ((ep, net), driver)) in sb.endpoints.iter().zip(nets).zip(&drivers).enumerate() {
        ops.extend(driver.plan_attach(ns, &sb.id, ep, net, i == 0, &ctx.instance));
    }
    let applied = attach(ctx, &mut exec, nets, &ops);
    if let Err(e) = applied {
        let _ = std::fs::remove_dir_all(ctx.sandbox_dir(&sb.id));
        return Err(e);
    }
    Ok(())
}

/// Applies an attach's operations to `nets`: the firewall first (a network repaired just
/// below needs its tables), then the networks' own kernel objects, then `ops`, all or nothing.
/// A bridge deleted while the attach ran fails it half-way (rolled back): the network is
/// repaired and the attach tried once more.
pub(super) fn attach(
    ctx: &Ctx,
    exec: &mut KernelExecutor,
    nets: &[Network],
    ops: &[Op],
) -> Result<()> {
    let bridges: Vec<String> = nets.iter().map(|n| n.bridge.clone()).collect();
    let once = |exec: &mut KernelExecutor| {
        (if nets.is_empty() {
            Ok(vec![])
        } else {
            firewall::ensure(ctx, Depth::Chains, &bridges)
        })
        .and_then(|_| {
            nets.iter()
                .try_for_each(|net| crate::engine::reconcile::before_attach(ctx, exec, net))
        })
        .and_then(|()| firewall::apply_with_repair(ctx, exec, ops))
    };
    match once(exec) {
        Ok(()) => Ok(()),
        Err(first) => {
            let lost_bridge = nets.iter().any(|n| {
                matches!(
                    exec.link_index(&crate::core::plan::Ns::Host, &n.bridge),
                    Ok(None)
                )
            });
            if lost_bridge {
                once(exec)
            } else {
                Err(first)
            }
        }
    }
}

/// Releases a sandbox's addresses (putting back the cursors a failed create moved) and
/// deletes its record and files (kernel objects must be gone already).
fn forget(ctx: &Ctx, sb: &Sandbox, moves: &[CursorMove]) -> Result<()> {
    let tx = ctx.store.begin(Mode::Write)?;
    tx.release_addresses(&sb.id, None)?;
    restore_cursors(tx.as_ref(), moves)?;
    tx.release_ports(&sb.id)?;
    tx.delete_sandbox(&sb.id)?;
    tx.commit()?;
    let _ = std::fs::remove_dir_all(ctx.sandbox_dir(&sb.id));
    let _ = std::fs::remove_file(log_path(ctx, &sb.id));
    Ok(())
}

/// Changes a sandbox's record with `f`, unless it is gone or being removed (the remover
/// forgets it; writing it back would undo the claim). Returns the record written.
fn update(ctx: &Ctx, id: &str, f: impl FnOnce(&mut Sandbox)) -> Result<Option<Sandbox>> {
    let tx = ctx.store.begin(Mode::Write)?;
    let Some(mut sb) = tx.sandbox(id)?.filter(|s| s.status != Status::Removing) else {
        return Ok(None);
    };
    f(&mut sb);
    tx.put_sandbox(&sb)?;
    tx.commit()?;
    Ok(Some(sb))
}

/// Whether the sandbox's command is really running (its record may be stale after a crash).
pub fn is_running(sb: &Sandbox) -> bool {
    sb.status == Status::Running
        && sb
            .pid
            .is_some_and(|p| process::alive_since(p, sb.pid_start))
}

/// Whether the process waiting for the sandbox's command is alive.
pub fn monitor_alive(sb: &Sandbox) -> bool {
    sb.monitor_pid
        .is_some_and(|p| process::alive_since(p, sb.monitor_start))
}

/// Refuses to act on a sandbox another live weft process is creating or removing.
pub(super) fn check_settled(sb: &Sandbox) -> Result<()> {
    if matches!(sb.status, Status::Creating | Status::Removing)
        && crate::engine::owner_alive(sb.owner_pid, sb.owner_start)
    {
        return Err(user_err!(
            "sandbox {:?} is being {} by process {}; try again in a moment",
            sb.name,
            if sb.status == Status::Creating {
                "created"
            } else {
                "removed"
            },
            sb.owner_pid.unwrap_or_default()
        ));
    }
    Ok(())
}

/// `weft rm`: refuses a running sandbox unless `force` (which kills its command).
/// As with Docker, one bad name does not keep the others from being removed: every name is
/// tried, the removed ones are returned with the errors of the others.
pub fn remove(ctx: &Ctx, names: &[String], force: bool) -> (Vec<String>, Vec<anyhow::Error>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match remove_named(ctx, name, force) {
            Ok(n) => out.push(n),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

fn remove_named(ctx: &Ctx, name: &str, force: bool) -> Result<String> {
    let found = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)
    };
    let sb = match found {
        Ok(sb) => sb,
        Err(e) => match e.downcast_ref::<StoreError>() {
            // A record that cannot be read must not keep its own removal from working.
            Some(StoreError::Corrupt {
                table: "sandboxes",
                key,
                name: real,
                ..
            }) => {
                if !remove_unreadable(ctx, key, real, force)? {
                    return Err(user_err!(
                        "no such sandbox {name:?}: another weft process removed it meanwhile"
                    ));
                }
                return Ok(real.clone());
            }
            _ => return Err(e),
        },
    };
    if !force
        && (sb.status == Status::Restarting
            || (sb.restart != crate::core::run::RestartPolicy::No && !is_running(&sb)))
        && monitor_alive(&sb)
    {
        // Between two runs of its restart policy: as Docker refuses a restarting container.
        return Err(user_err!(
            "sandbox {:?} is restarting (--restart {}); stop it first with `weft stop {}` or use `weft rm --force`",
            sb.name,
            sb.restart,
            sb.name
        ));
    }
    if is_running(&sb) && !force {
        return Err(user_err!(
            "sandbox {:?} is running; stop it first with `weft stop {}` or use `weft rm --force`",
            sb.name,
            sb.name
        ));
    }
    // Of concurrent removals exactly one succeeds: the others find the sandbox gone (or see
    // it being removed, in `remove_if`) and say so.
    if !remove_one(ctx, &sb.id)? {
        return Err(user_err!(
            "no such sandbox {name:?}: another weft process removed it meanwhile"
        ));
    }
    Ok(sb.name)
}

/// Kills every process of the sandbox, deletes the namespace (the kernel takes the veths
/// with it), releases addresses and forgets the sandbox. Returns false if there was no such
/// sandbox (any more): safe to call twice.
pub fn remove_one(ctx: &Ctx, id: &str) -> Result<bool> {
    remove_if(ctx, id, |_| true)
}

/// Test hook (debug builds only): with `WEFT_TEST_CRASH_BEFORE_KILL` set, a removal SIGKILLs
/// its own process once it has claimed the sandbox and before it kills the sandbox's
/// processes, to prove that `weft gc` finishes the job.
pub const CRASH_BEFORE_KILL_ENV: &str = "WEFT_TEST_CRASH_BEFORE_KILL";

fn crash_before_kill() {
    if cfg!(debug_assertions) && std::env::var_os(CRASH_BEFORE_KILL_ENV).is_some() {
        let _ = process::signal(std::process::id(), libc::SIGKILL);
    }
}

/// Removes the sandbox if `pred` holds for its record as read inside the write transaction
/// that claims the removal — so a decision taken on an older reading (by `gc`) can never hit
/// a sandbox that changed meanwhile. Returns whether it removed it.
pub fn remove_if(ctx: &Ctx, id: &str, pred: impl FnOnce(&Sandbox) -> bool) -> Result<bool> {
    // Claim the removal first, so no other weft process acts on the sandbox meanwhile.
    let me = std::process::id();
    let mut overlays = Vec::new();
    let (sb, bridges) = {
        let tx = ctx.store.begin(Mode::Write)?;
        let Some(sb) = tx.sandbox(id)? else {
            return Ok(false);
        };
        if !pred(&sb) {
            return Ok(false);
        }
        if sb.owner_pid != Some(me) {
            check_settled(&sb)?;
        }
        let mut bridges = BTreeMap::new();
        for ep in &sb.endpoints {
            if let Some(net) = tx.network(&ep.network_id)? {
                if overlay::is_overlay(&net) {
                    overlays.push(net.id.clone());
                }
                bridges.insert(ep.network_id.clone(), net.bridge);
            }
        }
        let mut claimed = sb.clone();
        claimed.status = Status::Removing;
        claimed.owner_pid = Some(me);
        claimed.owner_start = crate::engine::me().1;
        tx.put_sandbox(&claimed)?;
        tx.commit()?;
        (sb, bridges)
    };
    crash_before_kill();
    // Every process first, and gone, not just signalled: one left behind would keep the
    // namespace, and with it the address and MAC on the bridge, after they are handed out
    // again. On failure the claim stays, owned by a process about to exit: `gc` retries.
    kill_all(ctx, &sb.id, Some(&sb), &sb.name)?;
    destroy_kernel(&sb, &bridges)?;
    crate::timing::time("state-commit", || forget(ctx, &sb, &[]))?;
    for network_id in overlays {
        // The sandbox is gone here either way: its record in the cluster goes with this
        // host's lease at the latest, its address after the quarantine.
        if let Err(e) = overlay::detach(ctx, &network_id, &sb.id) {
            eprintln!(
                "warning: sandbox {:?}: releasing its overlay endpoint: {e:#}",
                sb.name
            );
        }
    }
    if !sb.ports.is_empty() {
        crate::engine::agent::client::release(ctx, &sb.id);
    }
    Ok(true)
}

/// Removes a sandbox whose record cannot be read (`rm`, `gc`), finding everything by its
/// id: its processes' inits in its run directory, its namespace handle, the links tagged with
/// it, its allocations and files. Refuses while its processes run, unless `force`. Returns
/// false if the record was gone already.
pub fn remove_unreadable(ctx: &Ctx, id: &str, name: &str, force: bool) -> Result<bool> {
    let check = supervise::InitCheck::of(ctx, id, None);
    let running = !supervise::inits_of(ctx, id, None, check).is_empty();
    if running && !force {
        return Err(user_err!(
            "sandbox {name:?} (unreadable record) has running processes; use `weft rm --force`"
        ));
    }
    kill_all(ctx, id, None, name)?;
    let mut exec = KernelExecutor::new()?;
    let mut ops = vec![Op::DeleteNetns {
        path: ctx.run_dir.join("netns").join(id).display().to_string(),
    }];
    let links = exec
        .owned_links(&ctx.instance)
        .map_err(|e| anyhow::anyhow!("listing links: {e}"))?;
    ops.extend(
        links
            .into_iter()
            .filter(|(_, owner)| owner == id)
            .map(|(ifname, _)| Op::DeleteLink {
                ns: crate::core::plan::Ns::Host,
                ifname,
            }),
    );
    if let Some(e) = crate::core::plan::apply_best_effort(&mut exec, &ops).first() {
        return Err(anyhow::anyhow!("removing sandbox {name:?}: {e}"));
    }
    {
        let tx = ctx.store.begin(Mode::Write)?;
        // Only that same unreadable record: never one rewritten meanwhile.
        match tx.sandbox(id) {
            Err(StoreError::Corrupt { .. }) => {}
            Ok(None) => return Ok(false),
            Ok(Some(_)) => {
                return Err(user_err!(
                    "sandbox {name:?} was rewritten by another weft process meanwhile; try again"
                ))
            }
            Err(e) => return Err(e.into()),
        }
        tx.release_addresses(id, None)?;
        tx.release_ports(id)?;
        tx.delete_sandbox(id)?;
        tx.commit()?;
    }
    let _ = std::fs::remove_dir_all(ctx.sandbox_dir(id));
    let _ = std::fs::remove_file(log_path(ctx, id));
    // Its published ports' elements cannot be derived from the record: rebuild them all.
    crate::engine::firewall::reconcile(ctx)?;
    Ok(true)
}

/// Kills the processes recorded in the run directory of a sandbox that has no readable
/// record, and waits until they are gone.
pub fn kill_unrecorded(ctx: &Ctx, id: &str) -> Result<()> {
    kill_all(ctx, id, None, id)
}

/// Deletes a sandbox's published ports, connections and namespace, the host's neighbour
/// entries for it (on `bridges`: network id -> bridge), and its host-side veths in case a
/// namespace handle is already gone but a veth survived.
pub fn destroy_kernel(sb: &Sandbox, bridges: &BTreeMap<String, String>) -> Result<()> {
    let mut ops = plan_sandbox_teardown(sb, bridges);
    if ops.is_empty() {
        return Ok(());
    }
    let mut exec = KernelExecutor::new()?;
    if let Some(ns) = &sb.netns {
        if !Path::new(ns).exists() {
            ops.extend(sb.endpoints.iter().map(|e| Op::DeleteLink {
                ns: crate::core::plan::Ns::Host,
                ifname: e.host_interface.clone(),
            }));
        }
    }
    let errs = crate::core::plan::apply_best_effort(&mut exec, &ops);
    match errs.first() {
        Some(e) => Err(anyhow::anyhow!("removing sandbox {:?}: {e}", sb.name)),
        None => Ok(()),
    }
}

/// Sandboxes for `ps` (`all` includes created and exited ones).
pub fn list(ctx: &Ctx, all: bool) -> Result<Vec<Sandbox>> {
    let tx = ctx.store.begin(Mode::Read)?;
    Ok(tx
        .sandboxes()?
        .into_iter()
        .map(as_seen)
        // As `docker ps`: a restarting sandbox is listed with the running ones.
        .filter(|s| all || matches!(s.status, Status::Running | Status::Restarting))
        .collect())
}

/// The record as it is now, for `ps` and `inspect`: a command recorded as running whose
/// process and monitor are gone, or recorded as restarting whose monitor is gone, has exited
/// (`gc` records it so). While its monitor lives, the monitor records the exit, with its
/// code, a moment after the command ends: shown before that, it was `exited` with no code.
pub fn as_seen(mut s: Sandbox) -> Sandbox {
    let gone = match s.status {
        Status::Running => !is_running(&s) && !monitor_alive(&s),
        Status::Restarting => !monitor_alive(&s),
        _ => false,
    };
    if gone {
        s.status = Status::Exited;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A running record whose command is gone: shown as exited only once its monitor is gone
    /// too (a live monitor records the exit with its code a moment later).
    #[test]
    fn a_command_gone_under_a_live_monitor_is_not_shown_exited_without_its_code() {
        let me = std::process::id();
        let mut s = Sandbox::example("s", "ab", Status::Running);
        // A command pid that cannot be alive with this start time.
        s.pid = Some(me);
        s.pid_start = Some(u64::MAX);
        s.monitor_pid = Some(me);
        s.monitor_start = process::start_time(me);
        assert!(process::start_time(me).is_some());
        assert_eq!(as_seen(s.clone()).status, Status::Running);
        s.monitor_start = Some(u64::MAX);
        let seen = as_seen(s);
        assert_eq!(seen.status, Status::Exited);
    }
}

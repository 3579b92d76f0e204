//! Sandboxes: `weft create | run | exec | ps | inspect | stop | rm` and
//! `weft network connect | disconnect`.

use crate::adapters::store::Store as _;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use ipnet::IpNet;

use super::network::{ensure_default, find as find_network};
use super::{new_id, now, parse_kv, Ctx};
use crate::adapters::host_facts;
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::process::{self, SandboxExec};
use crate::adapters::store::{Mode, Txn};
use crate::core::ipam::{self, AddressSpace};
use crate::core::model::{format_mac, mac_for, Endpoint, NetMode, Network, Sandbox, Status};
use crate::core::names::{host_veth_name, sandbox_ifname, validate_name};
use crate::core::plan::{
    apply_all, firewall_ports, plan_attach, plan_detach, plan_sandbox, plan_sandbox_teardown, Op,
};
use crate::core::ports::{self, PortMapping, PortSpec};
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
}

/// Looks a sandbox up by name or id prefix, or says how to list them.
pub fn find(tx: &dyn Txn, name: &str) -> Result<Sandbox> {
    tx.sandbox(name)?
        .ok_or_else(|| user_err!("no such sandbox {name:?}; `weft ps -a` lists the sandboxes"))
}

fn parse_ips(ips: &[String]) -> Result<(Option<IpAddr>, Option<IpAddr>)> {
    let mut v4 = None;
    let mut v6 = None;
    for s in ips {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| user_err!("invalid --ip {s:?}: expected an address like 172.18.0.5"))?;
        let slot = if ip.is_ipv6() { &mut v6 } else { &mut v4 };
        if slot.replace(ip).is_some() {
            return Err(user_err!(
                "--ip {ip}: at most one IPv4 and one IPv6 address"
            ));
        }
    }
    Ok((v4, v6))
}

fn space(net: &Network, v6: bool) -> Option<AddressSpace> {
    let cfg = if v6 { net.v6() } else { net.v4() }?;
    Some(AddressSpace {
        subnet: cfg.subnet,
        gateway: cfg.gateway,
        ip_range: cfg.ip_range,
        reserved: net
            .aux_addresses
            .values()
            .copied()
            .filter(|a| a.is_ipv6() == v6)
            .collect(),
    })
}

/// Allocates the addresses of a new endpoint inside the caller's write transaction and
/// returns it. Static addresses are checked; dynamic ones come from the IPAM cursor.
fn allocate_endpoint(
    tx: &dyn Txn,
    net: &Network,
    sandbox_id: &str,
    index: usize,
    want: (Option<IpAddr>, Option<IpAddr>),
    aliases: &[String],
) -> Result<Endpoint> {
    let mut got: [Option<IpNet>; 2] = [None, None];
    for (fam, wanted) in [(false, want.0), (true, want.1)] {
        let Some(sp) = space(net, fam) else {
            if let Some(ip) = wanted {
                return Err(user_err!(
                    "--ip {ip}: network {:?} has no {} subnet",
                    net.name,
                    if fam { "IPv6" } else { "IPv4" }
                ));
            }
            continue;
        };
        let ip = match wanted {
            Some(ip) => {
                let owner = tx.address_owner(&net.id, ip)?;
                let owner_name = match owner {
                    Some(id) => Some(tx.sandbox(&id)?.map(|s| s.name).unwrap_or(id)),
                    None => None,
                };
                ipam::check_static(&sp, ip, owner_name)?;
                ip
            }
            None => {
                let cursor = tx.cursor(&net.id, fam)?;
                let mut lookup_err = None;
                let ip = ipam::allocate(&sp, cursor, |ip| match tx.address_owner(&net.id, ip) {
                    Ok(o) => o.is_some(),
                    Err(e) => {
                        lookup_err.get_or_insert(e);
                        true
                    }
                });
                if let Some(e) = lookup_err {
                    return Err(e.into());
                }
                ip.map_err(|e| user_err!("network {:?}: {e}", net.name))?
            }
        };
        tx.claim_address(&net.id, ip, sandbox_id)?;
        got[fam as usize] = Some(IpNet::new(ip, sp.subnet.prefix_len())?);
    }
    let v4 = got[0].and_then(|n| match n.addr() {
        IpAddr::V4(a) => Some(a),
        _ => None,
    });
    let v6 = got[1].and_then(|n| match n.addr() {
        IpAddr::V6(a) => Some(a),
        _ => None,
    });
    Ok(Endpoint {
        network: net.name.clone(),
        network_id: net.id.clone(),
        interface: sandbox_ifname(index),
        host_interface: host_veth_name(sandbox_id, index),
        ipv4: got[0],
        ipv6: got[1],
        mac: format_mac(&mac_for(v4, v6)),
        aliases: aliases.to_vec(),
    })
}

/// What the host looks like for publishing: its addresses (only when a spec names one) and
/// the sockets listening on it.
struct HostPorts {
    addresses: Vec<IpAddr>,
    listeners: Vec<host_facts::Listener>,
}

impl HostPorts {
    fn observe(specs: &[PortSpec]) -> Result<Self> {
        if specs.is_empty() {
            return Ok(Self {
                addresses: vec![],
                listeners: vec![],
            });
        }
        let named = specs.iter().any(|s| {
            s.host_ip
                .is_some_and(|ip| !ip.is_unspecified() && !ip.is_loopback())
        });
        let addresses = if named {
            host_facts::observe()?
                .addresses
                .iter()
                .map(|a| a.addr.addr())
                .collect()
        } else {
            vec![]
        };
        Ok(Self {
            addresses,
            listeners: host_facts::listeners().context("listing the host's listening sockets")?,
        })
    }

    /// A host socket that would be hidden by publishing `port` on `ip`.
    fn listener(&self, proto: u8, ip: IpAddr, port: u16) -> Option<&host_facts::Listener> {
        self.listeners
            .iter()
            .find(|l| l.proto == proto && l.port == port && ports::overlaps(l.addr, ip))
    }
}

/// Chooses host ports for every spec, checks them against other sandboxes' ports and the
/// host's listening sockets, and records them, inside the caller's write transaction.
fn claim_ports(
    tx: &dyn Txn,
    sandbox_id: &str,
    specs: &[PortSpec],
    endpoints: &[Endpoint],
    host: &HostPorts,
) -> Result<Vec<PortMapping>> {
    let has_v4 = endpoints.iter().any(|e| e.ipv4.is_some());
    let has_v6 = endpoints.iter().any(|e| e.ipv6.is_some());
    let mut out: Vec<PortMapping> = Vec::new();
    for spec in specs {
        if let Some(ip) = spec.host_ip {
            if ip == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST) {
                return Err(user_err!(
                    "-p {}: publishing on ::1 is not supported: the kernel does not route IPv6 loopback traffic to another interface; use 127.0.0.1 for a host-only port",
                    spec.text
                ));
            }
            if (ip.is_ipv6() && !has_v6) || (ip.is_ipv4() && !has_v4) {
                return Err(user_err!(
                    "-p {}: host address {ip} is {} but the sandbox has no {} address; use a network with --ipv6 or another host address",
                    spec.text,
                    if ip.is_ipv6() { "IPv6" } else { "IPv4" },
                    if ip.is_ipv6() { "IPv6" } else { "IPv4" }
                ));
            }
            if !ip.is_unspecified() && !ip.is_loopback() && !host.addresses.contains(&ip) {
                return Err(user_err!(
                    "-p {}: {ip} is not an address of this host; use one of its addresses, 127.0.0.1, or leave it out for all",
                    spec.text
                ));
            }
        }
        let ips = ports::host_ips(spec, has_v4, has_v6);
        let proto = spec.protocol;
        // Why (proto, port) cannot be used, if it cannot.
        let taken = |port: u16, mine: &[PortMapping]| -> Result<Option<String>> {
            for ip in &ips {
                if mine.iter().any(|m| {
                    m.protocol == proto && m.host_port == port && ports::overlaps(m.host_ip, *ip)
                }) {
                    return Ok(Some(format!("port {port}/{} is given twice", proto.name())));
                }
                for (held_ip, owner) in tx.port_holders(proto.name(), port)? {
                    if ports::overlaps(held_ip, *ip) {
                        let name = tx.sandbox(&owner)?.map(|s| s.name).unwrap_or(owner);
                        return Ok(Some(format!(
                            "port {port}/{} on {held_ip} is already published by sandbox {name:?}",
                            proto.name()
                        )));
                    }
                }
                if let Some(l) = host.listener(proto.number(), *ip, port) {
                    let who = host_facts::socket_owner(l.inode)
                        .map(|(pid, comm)| format!(" by {comm} (pid {pid})"))
                        .unwrap_or_default();
                    return Ok(Some(format!(
                        "port {port}/{} is in use on the host: {}:{port} is held{who}",
                        proto.name(),
                        l.addr
                    )));
                }
            }
            Ok(None)
        };
        let start = match spec.host_ports {
            Some((first, _)) => {
                for port in first..first + spec.len() {
                    if let Some(why) = taken(port, &out)? {
                        return Err(user_err!(
                            "-p {}: {why}; choose another host port",
                            spec.text
                        ));
                    }
                }
                first
            }
            None => free_block(spec.len(), |p| taken(p, &out).map(|t| t.is_none()))?.ok_or_else(
                || {
                    user_err!(
                        "-p {}: no free host port left in the ephemeral range",
                        spec.text
                    )
                },
            )?,
        };
        for ip in &ips {
            out.extend(ports::expand(spec, *ip, start));
        }
    }
    for m in &out {
        tx.claim_port(m.protocol.name(), m.host_ip, m.host_port, sandbox_id)?;
    }
    Ok(out)
}

/// The first port of `len` consecutive free ports in the kernel's ephemeral range, starting
/// the search at a random place (as the kernel does) so that parallel sandboxes rarely meet.
fn free_block(len: u16, mut free: impl FnMut(u16) -> Result<bool>) -> Result<Option<u16>> {
    let range = crate::adapters::sysctl::get("net.ipv4.ip_local_port_range").unwrap_or_default();
    let mut it = range
        .split_whitespace()
        .filter_map(|s| s.parse::<u16>().ok());
    let (lo, hi) = (it.next().unwrap_or(32768), it.next().unwrap_or(60999));
    if hi < lo || hi - lo + 1 < len {
        return Ok(None);
    }
    let span = u32::from(hi - lo + 2 - len);
    let mut r = [0u8; 4];
    let _ = getrandom::getrandom(&mut r);
    let offset = u32::from_ne_bytes(r) % span;
    for i in 0..span {
        let start = lo + ((offset + i) % span) as u16;
        let mut ok = true;
        for p in start..start + len {
            if !free(p)? {
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(Some(start));
        }
    }
    Ok(None)
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
    let id = new_id()?;
    let name = match &req.name {
        Some(n) => {
            validate_name("sandbox", n)?;
            n.clone()
        }
        None => id[..12].to_string(),
    };
    let mode = resolve_mode(&req.networks)?;
    let want = parse_ips(&req.ips)?;
    if mode != NetMode::Bridge && (want.0.is_some() || want.1.is_some()) {
        return Err(user_err!(
            "--ip needs a bridge network, not --network {}",
            req.networks[0]
        ));
    }
    let labels = parse_kv("--label", &req.labels)?;
    let specs = req
        .ports
        .iter()
        .map(|p| ports::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    if !specs.is_empty() && mode != NetMode::Bridge {
        return Err(user_err!(
            "-p needs a bridge network: with --network {} there is nothing to publish to",
            req.networks[0]
        ));
    }
    let host = HostPorts::observe(&specs)?;
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
    let netns = match mode {
        NetMode::Host => None,
        _ => Some(ctx.netns_dir()?.join(&id).display().to_string()),
    };

    let intent_start = std::time::Instant::now();
    let tx = ctx.store.begin(Mode::Write)?;
    if tx.sandbox(&name)?.is_some_and(|s| s.name == name) {
        return Err(user_err!(
            "sandbox {name:?} already exists; choose another --name or remove it with `weft rm {name}`"
        ));
    }
    let mut nets = Vec::new();
    for n in &net_names {
        let net = find_network(tx.as_ref(), n)?;
        if net.status != Status::Created {
            return Err(user_err!(
                "network {n:?} is not ready (being created or half-made; try `weft gc`)"
            ));
        }
        nets.push(net);
    }
    let mut endpoints = Vec::new();
    for (i, net) in nets.iter().enumerate() {
        let w = if i == 0 { want } else { (None, None) };
        endpoints.push(allocate_endpoint(
            tx.as_ref(),
            net,
            &id,
            i,
            w,
            &req.aliases,
        )?);
    }
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
        exit_code: None,
        status: Status::Creating,
        owner_pid: Some(std::process::id()),
        created: now(),
    };
    tx.put_sandbox(&sb)?;
    tx.commit()?;
    super::timing::record("state-intent", intent_start.elapsed());

    let result = build(ctx, &sb, &nets);
    if let Err(e) = result {
        forget(ctx, &sb)?;
        return Err(e.context(format!("creating sandbox {name:?}")));
    }
    let mut done = sb;
    done.status = Status::Created;
    done.owner_pid = None;
    super::timing::time("state-commit", || -> Result<()> {
        let tx = ctx.store.begin(Mode::Write)?;
        // Only finish our own intent: never bring back a record someone removed meanwhile.
        match tx.sandbox(&done.id)? {
            Some(cur)
                if cur.status == Status::Creating && cur.owner_pid == Some(std::process::id()) =>
            {
                tx.put_sandbox(&done)?;
                tx.commit()?;
                Ok(())
            }
            _ => Err(user_err!(
                "sandbox {:?} was removed while it was being created",
                done.name
            )),
        }
    })?;
    Ok(done)
}

/// Makes the kernel objects and files of a freshly recorded sandbox, or none of them.
fn build(ctx: &Ctx, sb: &Sandbox, nets: &[Network]) -> Result<()> {
    super::timing::time("files", || write_files(ctx, sb))?;
    let Some(ns) = &sb.netns else {
        return Ok(());
    };
    let mut ops = plan_sandbox(ns);
    for (i, (ep, net)) in sb.endpoints.iter().zip(nets).enumerate() {
        ops.extend(plan_attach(ns, &sb.id, ep, net, i == 0));
    }
    let published = firewall_ports(sb);
    if !published.is_empty() {
        ops.push(Op::Publish(published));
    }
    let mut exec = KernelExecutor::new()?;
    if let Err(e) = apply_all(&mut exec, &ops) {
        let _ = std::fs::remove_dir_all(ctx.sandbox_dir(&sb.id));
        return Err(e.into());
    }
    Ok(())
}

/// Releases a sandbox's addresses and deletes its record and files (kernel objects must be
/// gone already).
fn forget(ctx: &Ctx, sb: &Sandbox) -> Result<()> {
    let tx = ctx.store.begin(Mode::Write)?;
    tx.release_addresses(&sb.id, None)?;
    tx.release_ports(&sb.id)?;
    tx.delete_sandbox(&sb.id)?;
    tx.commit()?;
    let _ = std::fs::remove_dir_all(ctx.sandbox_dir(&sb.id));
    let _ = std::fs::remove_file(log_path(ctx, &sb.id));
    Ok(())
}

/// Where a detached sandbox's output goes.
fn log_path(ctx: &Ctx, id: &str) -> PathBuf {
    ctx.state_dir.join("logs").join(format!("{id}.log"))
}

/// `/etc/hosts` and `/etc/resolv.conf` for the sandbox.
fn write_files(ctx: &Ctx, sb: &Sandbox) -> Result<()> {
    let dir = ctx.sandbox_dir(&sb.id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for ep in &sb.endpoints {
        for a in [ep.ipv4, ep.ipv6].into_iter().flatten() {
            hosts.push_str(&format!("{}\t{} {}\n", a.addr(), sb.hostname, sb.name));
        }
    }
    std::fs::write(dir.join("hosts"), hosts)?;
    // The host's resolvers, minus loopback ones, which mean nothing inside the sandbox
    // (Docker does the same).
    let host_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let conf: String = host_conf
        .lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            !(w.next() == Some("nameserver")
                && w.next()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .is_some_and(|a| a.is_loopback()))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("resolv.conf"), conf)?;
    Ok(())
}

/// What a process in this sandbox gets.
pub fn exec_spec(ctx: &Ctx, sb: &Sandbox, argv: &[String]) -> SandboxExec {
    let dir = ctx.sandbox_dir(&sb.id);
    let private = sb.netns.is_some();
    SandboxExec {
        netns: sb.netns.as_ref().map(PathBuf::from),
        hosts: private.then(|| dir.join("hosts")),
        resolv_conf: private.then(|| dir.join("resolv.conf")),
        hostname: private.then(|| sb.hostname.clone()),
        argv: argv.to_vec(),
        hide: private.then(|| ctx.run_dir.join("netns")),
    }
}

fn update(ctx: &Ctx, id: &str, f: impl FnOnce(&mut Sandbox)) -> Result<Option<Sandbox>> {
    let tx = ctx.store.begin(Mode::Write)?;
    let Some(mut sb) = tx.sandbox(id)? else {
        return Ok(None);
    };
    f(&mut sb);
    tx.put_sandbox(&sb)?;
    tx.commit()?;
    Ok(Some(sb))
}

/// `weft run` in the foreground: create, run CMD with our stdio, forward signals, tear down,
/// return CMD's exit code.
pub fn run_foreground(ctx: &Ctx, req: &SandboxRequest) -> Result<i32> {
    let mut req = req.clone();
    req.auto_remove = true;
    process::install_forwarding();
    let sb = create(ctx, &req)?;
    let spec = exec_spec(ctx, &sb, &req.command);
    let mut child = match process::spawn_foreground(&spec) {
        Ok(c) => c,
        Err(e) => {
            remove_one(ctx, &sb.id, false)?;
            return Err(user_err!("cannot run {:?}: {e}", req.command[0]));
        }
    };
    let pid = child.id();
    process::forward_signals_to(pid);
    // This process is the command's monitor: `stop` and `gc` leave the record to it while it
    // lives.
    let me = std::process::id();
    update(ctx, &sb.id, |s| {
        s.pid = Some(pid);
        s.pid_start = process::start_time(pid);
        s.monitor_pid = Some(me);
        s.monitor_start = process::start_time(me);
        s.status = Status::Running;
    })?;
    let status = child.wait().context("waiting for the command")?;
    process::stop_forwarding();
    // Reaped: the pid is no longer ours to signal.
    remove_one(ctx, &sb.id, false)?;
    Ok(process::exit_code(status))
}

/// `weft run -d`: create, then hand CMD to a detached monitor that outlives this process.
pub fn run_detached(ctx: &Ctx, req: &SandboxRequest) -> Result<Sandbox> {
    let sb = create(ctx, req)?;
    match spawn_monitor(ctx, &sb) {
        Ok(()) => {
            let tx = ctx.store.begin(Mode::Read)?;
            Ok(find(tx.as_ref(), &sb.id)?)
        }
        Err(e) => {
            remove_one(ctx, &sb.id, true)?;
            Err(e)
        }
    }
}

/// Starts `weft __monitor ID` in its own session and waits until it reports that CMD runs.
fn spawn_monitor(ctx: &Ctx, sb: &Sandbox) -> Result<()> {
    let exe = std::env::current_exe().context("finding the weft binary")?;
    let log = log_path(ctx, &sb.id);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(log)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--state-dir")
        .arg(&ctx.state_dir)
        .arg("--run-dir")
        .arg(&ctx.run_dir)
        .arg("--config")
        .arg(&ctx.config_path)
        .arg("__monitor")
        .arg(&sb.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; it detaches the monitor from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the sandbox monitor")?;
    let out = child.stdout.take().context("monitor stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    if line.trim() == "ok" {
        // The monitor lives on; dropping `child` does not kill it.
        Ok(())
    } else {
        let _ = child.wait();
        let log = std::fs::read_to_string(log_path(ctx, &sb.id)).unwrap_or_default();
        Err(user_err!(
            "cannot run {:?}: {}",
            sb.command.first().cloned().unwrap_or_default(),
            log.lines().last().unwrap_or("the monitor failed").trim()
        ))
    }
}

/// The detached monitor: starts CMD, reports "ok" on stdout, waits, then records the exit or
/// removes the sandbox (`--rm`).
pub fn monitor(ctx: &Ctx, id: &str) -> Result<()> {
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), id)?
    };
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_path(ctx, &sb.id))?;
    let spec = exec_spec(ctx, &sb, &sb.command);
    let mut child = match process::spawn_detached(&spec, &log) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            println!("failed");
            return Ok(());
        }
    };
    let pid = child.id();
    let me = std::process::id();
    update(ctx, &sb.id, |s| {
        s.pid = Some(pid);
        s.pid_start = process::start_time(pid);
        s.monitor_pid = Some(me);
        s.monitor_start = process::start_time(me);
        s.status = Status::Running;
        s.exit_code = None;
    })?;
    println!("ok");
    // Our stdout is the pipe to `weft run -d`, which exits now: point it at the log instead.
    // SAFETY: dup2 on fds we own.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::dup2(log.as_raw_fd(), 1);
    }
    let status = child.wait()?;
    let code = process::exit_code(status);
    finish(ctx, &sb.id, code)
}

/// Records that CMD exited; removes the sandbox if it was started with `--rm`.
fn finish(ctx: &Ctx, id: &str, code: i32) -> Result<()> {
    let Some(sb) = update(ctx, id, |s| {
        s.pid = None;
        s.pid_start = None;
        s.monitor_pid = None;
        s.monitor_start = None;
        s.status = Status::Exited;
        s.exit_code = Some(code);
    })?
    else {
        return Ok(());
    };
    if sb.auto_remove {
        remove_one(ctx, &sb.id, true)?;
    }
    Ok(())
}

/// `weft exec`: runs a command in an existing sandbox in the foreground.
pub fn exec(ctx: &Ctx, name: &str, argv: &[String]) -> Result<i32> {
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)?
    };
    if sb.status == Status::Creating {
        return Err(user_err!("sandbox {name:?} is still being created"));
    }
    let spec = exec_spec(ctx, &sb, argv);
    let mut child = process::spawn_foreground(&spec)
        .map_err(|e| user_err!("cannot run {:?} in sandbox {name:?}: {e}", argv[0]))?;
    process::install_forwarding();
    process::forward_signals_to(child.id());
    let status = child.wait()?;
    process::stop_forwarding();
    Ok(process::exit_code(status))
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
fn check_settled(sb: &Sandbox) -> Result<()> {
    if matches!(sb.status, Status::Creating | Status::Removing)
        && sb.owner_pid.is_some_and(process::alive)
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

/// `weft stop`: SIGTERM, then SIGKILL after `timeout`; waits until the command is gone.
pub fn stop(ctx: &Ctx, name: &str, timeout: Duration) -> Result<Sandbox> {
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)?
    };
    if let (true, Some(pid)) = (is_running(&sb), sb.pid) {
        let _ = process::signal(pid, libc::SIGTERM);
        if !wait_gone(pid, timeout) {
            let _ = process::signal(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(10));
        }
    }
    // The monitor (or foreground weft) records the exit; wait for it briefly, then record it
    // ourselves if nobody did (its owner died).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cur = {
            let tx = ctx.store.begin(Mode::Read)?;
            tx.sandbox(&sb.id)?
        };
        match cur {
            None => return Ok(sb),
            Some(s) if s.status != Status::Running => return Ok(s),
            Some(s) if Instant::now() > deadline || !monitor_alive(&s) => {
                let code = s.exit_code.unwrap_or(137);
                finish(ctx, &s.id, code)?;
                let tx = ctx.store.begin(Mode::Read)?;
                return Ok(tx.sandbox(&s.id)?.unwrap_or(s));
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !process::alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !process::alive(pid)
}

/// `weft rm`: refuses a running sandbox unless `force` (which kills its command).
pub fn remove(ctx: &Ctx, names: &[String], force: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in names {
        let sb = {
            let tx = ctx.store.begin(Mode::Read)?;
            find(tx.as_ref(), name)?
        };
        if is_running(&sb) && !force {
            return Err(user_err!(
                "sandbox {:?} is running; stop it first with `weft stop {}` or use `weft rm --force`",
                sb.name,
                sb.name
            ));
        }
        remove_one(ctx, &sb.id, force)?;
        out.push(sb.name);
    }
    Ok(out)
}

/// Kills the command (if `kill`), deletes the namespace (the kernel takes the veths with
/// it), releases addresses and forgets the sandbox. Safe to call twice.
pub fn remove_one(ctx: &Ctx, id: &str, kill: bool) -> Result<()> {
    remove_if(ctx, id, kill, |_| true).map(|_| ())
}

/// Removes the sandbox if `pred` holds for its record as read inside the write transaction
/// that claims the removal — so a decision taken on an older reading (by `gc`) can never hit
/// a sandbox that changed meanwhile. Returns whether it removed it.
pub fn remove_if(
    ctx: &Ctx,
    id: &str,
    kill: bool,
    pred: impl FnOnce(&Sandbox) -> bool,
) -> Result<bool> {
    // Claim the removal first, so no other weft process acts on the sandbox meanwhile.
    let me = std::process::id();
    let sb = {
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
        let mut claimed = sb.clone();
        claimed.status = Status::Removing;
        claimed.owner_pid = Some(me);
        tx.put_sandbox(&claimed)?;
        tx.commit()?;
        sb
    };
    if kill {
        if let (true, Some(pid)) = (is_running(&sb), sb.pid) {
            let _ = process::signal(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(10));
        }
    }
    destroy_kernel(&sb)?;
    super::timing::time("state-commit", || forget(ctx, &sb))?;
    Ok(true)
}

/// Deletes a sandbox's published ports, connections and namespace, and its host-side veths
/// in case a namespace handle is already gone but a veth survived.
pub fn destroy_kernel(sb: &Sandbox) -> Result<()> {
    let mut ops = plan_sandbox_teardown(sb);
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
    let ops = plan_attach(&ns, &sb.id, &ep, &net, sb.endpoints.is_empty());
    let mut exec = KernelExecutor::new()?;
    if let Err(e) = apply_all(&mut exec, &ops) {
        let tx = ctx.store.begin(Mode::Write)?;
        tx.release_addresses(&sb.id, Some(&net.id))?;
        if let Some(mut cur) = tx.sandbox(&sb.id)? {
            cur.endpoints.retain(|x| x.network_id != net.id);
            tx.put_sandbox(&cur)?;
        }
        tx.commit()?;
        return Err(anyhow::Error::new(e).context(format!(
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

/// Sandboxes for `ps` (`all` includes created and exited ones).
pub fn list(ctx: &Ctx, all: bool) -> Result<Vec<Sandbox>> {
    let tx = ctx.store.begin(Mode::Read)?;
    Ok(tx
        .sandboxes()?
        .into_iter()
        .map(|mut s| {
            if s.status == Status::Running && !is_running(&s) {
                s.status = Status::Exited;
            }
            s
        })
        .filter(|s| all || s.status == Status::Running)
        .collect())
}

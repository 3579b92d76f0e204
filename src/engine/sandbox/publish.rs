//! Published ports: choosing host ports and checking them against other sandboxes and the
//! host's listening sockets, inside the caller's write transaction.

use std::net::IpAddr;

use anyhow::{Context as _, Result};

use crate::adapters::host_facts;
use crate::adapters::netlink::KernelExecutor;
use crate::adapters::store::Store as _;
use crate::adapters::store::{Mode, Txn};
use crate::core::model::{Endpoint, Sandbox, Status};
use crate::core::plan::{firewall_ports, Op};
use crate::core::ports::{self, PortMapping, PortSpec};
use crate::engine::Ctx;
use crate::user_err;

/// What the host looks like for publishing: its addresses (only when a spec names one) and
/// the sockets listening on it.
pub(super) struct HostPorts {
    addresses: Vec<IpAddr>,
    listeners: Vec<host_facts::Listener>,
}

impl HostPorts {
    pub(super) fn observe(specs: &[PortSpec]) -> Result<Self> {
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
        // A socket on `::` is dual-stack unless IPV6_V6ONLY, which the dump does not say:
        // count it for IPv4 too rather than hide a host service.
        let covers = |l: &host_facts::Listener| {
            ports::overlaps(l.addr, ip) || (l.addr.is_ipv6() && l.addr.is_unspecified())
        };
        self.listeners
            .iter()
            .find(|l| l.proto == proto && l.port == port && covers(l))
    }
}

/// Chooses host ports for every spec, checks them against other sandboxes' ports and the
/// host's listening sockets, and records them, inside the caller's write transaction.
pub(super) fn claim_ports(
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
                let probe = PortMapping {
                    host_ip: *ip,
                    host_port: port,
                    container_port: port,
                    protocol: proto,
                };
                if mine.iter().any(|m| ports::conflicts(m, &probe)) {
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
            Some((first, last)) => {
                // Inclusive: `first..first + len` wrapped to an empty range at 65535.
                for port in first..=last {
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
            out.extend(ports::expand(spec, *ip, start)?);
        }
    }
    for m in &out {
        if let Err(e) = tx.claim_port(m.protocol.name(), m.host_ip, m.host_port, sandbox_id) {
            // The checks above should make this impossible; if the store still refuses,
            // name the holder rather than show a constraint error.
            let holder = tx
                .port_holders(m.protocol.name(), m.host_port)?
                .into_iter()
                .find(|(ip, _)| ports::overlaps(*ip, m.host_ip));
            return Err(match holder {
                Some((ip, owner)) => {
                    let name = tx.sandbox(&owner)?.map(|s| s.name).unwrap_or(owner);
                    user_err!(
                        "port {}/{} on {ip} is already published by sandbox {name:?}; choose another host port",
                        m.host_port,
                        m.protocol.name()
                    )
                }
                None => anyhow::Error::new(e).context(format!("recording published port {m}")),
            });
        }
    }
    Ok(out)
}

/// The first port of `len` consecutive free ports in the kernel's ephemeral range, starting
/// the search at a random place (as the kernel does) so that parallel sandboxes rarely meet.
fn free_block(len: u32, mut free: impl FnMut(u16) -> Result<bool>) -> Result<Option<u16>> {
    let range = crate::adapters::sysctl::get("net.ipv4.ip_local_port_range").unwrap_or_default();
    let mut it = range
        .split_whitespace()
        .filter_map(|s| s.parse::<u16>().ok());
    let (lo, hi) = (it.next().unwrap_or(32768), it.next().unwrap_or(60999));
    let mut r = [0u8; 4];
    let _ = getrandom::getrandom(&mut r);
    for start in ports::block_starts(lo, hi, len, u32::from_ne_bytes(r)) {
        let Some(block) = ports::block(start, len) else {
            continue;
        };
        let mut ok = true;
        for p in block {
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

/// `weft stop`: frees the sandbox's published host ports, as Docker does for a stopped
/// container: the record first (its mappings kept for `weft start`, the claims released, so
/// the agent's repairs and `gc` no longer want them), then the DNAT elements, then the
/// agent's reservation sockets.
pub(super) fn free(ctx: &Ctx, id: &str) -> Result<()> {
    let was = {
        let tx = ctx.store.begin(Mode::Write)?;
        let Some(mut sb) = tx.sandbox(id)?.filter(|s| s.status != Status::Removing) else {
            return Ok(());
        };
        let Some(was) = release_in(tx.as_ref(), &mut sb)? else {
            return Ok(());
        };
        tx.put_sandbox(&sb)?;
        tx.commit()?;
        was
    };
    detach(ctx, &was)
}

/// The record part of [`free`], in the caller's write transaction (which must put `sb`):
/// the mappings move to `stopped_ports` and their claims are released. Returns the record as
/// it was, for [`detach`], or `None` when it published nothing.
pub(crate) fn release_in(tx: &dyn Txn, sb: &mut Sandbox) -> Result<Option<Sandbox>> {
    if sb.ports.is_empty() {
        return Ok(None);
    }
    let was = sb.clone();
    sb.stopped_ports = std::mem::take(&mut sb.ports);
    tx.release_ports(&sb.id)?;
    Ok(Some(was))
}

/// The kernel part of [`free`]: the DNAT elements of `was`'s ports go, then the agent's
/// reservation sockets.
pub(crate) fn detach(ctx: &Ctx, was: &Sandbox) -> Result<()> {
    let ops = [Op::FirewallDetach {
        endpoints: vec![],
        ports: firewall_ports(was),
    }];
    let mut exec = KernelExecutor::new()?;
    if let Some(e) = crate::core::plan::apply_best_effort(&mut exec, &ops).first() {
        return Err(anyhow::anyhow!(
            "freeing the ports of sandbox {:?}: {e}",
            was.name
        ));
    }
    crate::engine::agent::client::release(ctx, &was.id);
    Ok(())
}

/// `weft start`: claims a stopped sandbox's host ports again; an error names the sandbox or
/// host process that took one meanwhile (and nothing is claimed then).
pub(super) fn reclaim(ctx: &Ctx, sb: &Sandbox) -> Result<()> {
    if sb.stopped_ports.is_empty() {
        return Ok(());
    }
    let listeners = host_facts::listeners().context("listing the host's listening sockets")?;
    let sb = {
        let tx = ctx.store.begin(Mode::Write)?;
        let mut cur = super::find(tx.as_ref(), &sb.id)?;
        for m in &cur.stopped_ports {
            let proto = m.protocol.name();
            for (held_ip, owner) in tx.port_holders(proto, m.host_port)? {
                if owner != cur.id && ports::overlaps(held_ip, m.host_ip) {
                    let name = tx.sandbox(&owner)?.map(|s| s.name).unwrap_or(owner);
                    return Err(user_err!(
                        "cannot start sandbox {:?}: port {}/{proto} on {held_ip} is published by sandbox {name:?} since it stopped",
                        cur.name,
                        m.host_port
                    ));
                }
            }
            let covers = |l: &&host_facts::Listener| {
                l.proto == m.protocol.number()
                    && l.port == m.host_port
                    && (ports::overlaps(l.addr, m.host_ip)
                        || (l.addr.is_ipv6() && l.addr.is_unspecified()))
            };
            if let Some(l) = listeners.iter().find(covers) {
                let who = host_facts::socket_owner(l.inode)
                    .map(|(pid, comm)| format!(" by {comm} (pid {pid})"))
                    .unwrap_or_default();
                return Err(user_err!(
                    "cannot start sandbox {:?}: port {}/{proto} is in use on the host since it stopped: {}:{} is held{who}",
                    cur.name,
                    m.host_port,
                    l.addr,
                    m.host_port
                ));
            }
            tx.claim_port(proto, m.host_ip, m.host_port, &cur.id)?;
        }
        cur.ports = std::mem::take(&mut cur.stopped_ports);
        tx.put_sandbox(&cur)?;
        tx.commit()?;
        cur
    };
    let ops = [Op::FirewallAttach {
        endpoints: vec![],
        ports: firewall_ports(&sb),
    }];
    let mut exec = KernelExecutor::new()?;
    let applied = crate::engine::firewall::apply_with_repair(ctx, &mut exec, &ops)
        .and_then(|()| crate::engine::agent::client::reserve(ctx, &sb));
    if let Err(e) = applied {
        let _ = free(ctx, &sb.id);
        return Err(e.context(format!("claiming the ports of sandbox {:?}", sb.name)));
    }
    Ok(())
}

//! Addresses of a sandbox's endpoints, allocated through IPAM inside the caller's write
//! transaction.

use std::net::IpAddr;

use anyhow::Result;
use ipnet::IpNet;

use crate::adapters::store::Txn;
use crate::core::ipam::{self, AddressSpace};
use crate::core::model::{format_mac, mac_for, Endpoint, Network};
use crate::core::names::{host_veth_name, sandbox_ifname};
use crate::user_err;

pub(super) fn parse_ips(ips: &[String]) -> Result<(Option<IpAddr>, Option<IpAddr>)> {
    let mut v4 = None;
    let mut v6 = None;
    for s in ips {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| user_err!("invalid --ip {s:?}: expected an address like 172.18.0.5"))?;
        ipam::check_usable_addr(
            "--ip",
            s,
            ip,
            "give an address inside the network's subnet, or leave --ip out for one chosen by weft",
        )?;
        let slot = if ip.is_ipv6() { &mut v6 } else { &mut v4 };
        if slot.replace(ip).is_some() {
            return Err(user_err!(
                "--ip {ip}: at most one IPv4 and one IPv6 address"
            ));
        }
    }
    Ok((v4, v6))
}

/// The address space of `net`'s subnet of one family, as IPAM sees it.
pub(crate) fn space(net: &Network, v6: bool) -> Option<AddressSpace> {
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

/// Where a claim moved a network's IPAM cursor from, so that a failed attach puts it back
/// ([`restore_cursors`]) and the next attach gets the same address.
#[derive(Debug, Clone)]
pub(super) struct CursorMove {
    network_id: String,
    claimed: IpAddr,
    before: Option<IpAddr>,
}

/// Puts back the cursors a failed attach moved, in the transaction that releases its
/// addresses, each only if no other attach moved it on meanwhile.
pub(super) fn restore_cursors(tx: &dyn Txn, moves: &[CursorMove]) -> Result<()> {
    for m in moves {
        tx.restore_cursor(&m.network_id, m.claimed, m.before)?;
    }
    Ok(())
}

/// Allocates the addresses of a new endpoint inside the caller's write transaction and
/// returns it. Static addresses are checked; dynamic ones come from the IPAM cursor. Each
/// cursor moved is added to `moves`.
pub(super) fn allocate_endpoint(
    tx: &dyn Txn,
    net: &Network,
    sandbox_id: &str,
    index: usize,
    want: (Option<IpAddr>, Option<IpAddr>),
    aliases: &[String],
    moves: &mut Vec<CursorMove>,
) -> Result<Endpoint> {
    let mut got: [Option<IpNet>; 2] = [None, None];
    let mut announce = false;
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
        let cursor = tx.cursor(&net.id, fam)?;
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
        let fresh = tx.claim_address(&net.id, ip, sandbox_id)?;
        moves.push(CursorMove {
            network_id: net.id.clone(),
            claimed: ip,
            before: cursor,
        });
        announce |= wanted.is_some() || !fresh;
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
        announce,
        pending: None,
    })
}

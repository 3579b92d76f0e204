//! A sandbox's endpoints on overlay networks: the address comes from the cluster (the agent
//! claims it and registers the endpoint), not from the local IPAM, and every claim is
//! released again when the sandbox is not made after all.

use std::net::IpAddr;

use anyhow::Result;

use crate::adapters::store::{Mode, Store as _};
use crate::core::agent::{ClusterAttach, Request};
use crate::core::driver;
use crate::core::model::Network;
use crate::engine::network::find as find_network;
use crate::engine::{agent, Ctx};

/// Whether `net` lives in the cluster.
pub fn is_overlay(net: &Network) -> bool {
    driver::of(net).is_ok_and(|d| d.needs_cluster())
}

/// What [`attach_all`] needs of the sandbox.
pub(super) struct Who<'a> {
    /// Sandbox id.
    pub id: &'a str,
    /// Sandbox name.
    pub name: &'a str,
    /// Hostname, when given.
    pub hostname: Option<&'a str>,
    /// Aliases on every network.
    pub aliases: &'a [String],
    /// `--ip` (IPv4) for the first network.
    pub ip: Option<IpAddr>,
    /// `--mac-address` for the first network.
    pub mac: Option<String>,
}

/// The cluster claims of a sandbox being made: released (endpoint unregistered, addresses
/// freed) when dropped, unless [`Claims::keep`] was called.
pub(super) struct Claims<'a> {
    ctx: &'a Ctx,
    sandbox: String,
    held: Vec<(String, IpAddr)>,
}

impl Claims<'_> {
    /// The address claimed on network `network_id`, if it is an overlay network.
    pub fn ip_for(&self, network_id: &str) -> Option<IpAddr> {
        self.held
            .iter()
            .find(|(id, _)| id == network_id)
            .map(|(_, ip)| *ip)
    }

    /// The sandbox exists: its claims are its own now (its removal releases them).
    pub fn keep(mut self) {
        self.held.clear();
    }
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        for (network_id, _) in std::mem::take(&mut self.held) {
            if let Err(e) = detach(self.ctx, &network_id, &self.sandbox) {
                eprintln!("warning: releasing the cluster's claim on network {network_id}: {e:#}");
            }
        }
    }
}

/// Claims an address and registers an endpoint on each overlay network among `names`
/// (through the agent). On failure nothing stays claimed.
pub(super) fn attach_all<'a>(ctx: &'a Ctx, names: &[String], who: &Who<'_>) -> Result<Claims<'a>> {
    let mut claims = Claims {
        ctx,
        sandbox: who.id.to_string(),
        held: Vec::new(),
    };
    if names.is_empty() {
        return Ok(claims);
    }
    // One read for all (a bridge-only `run` pays this one read), none held while the
    // agent is asked.
    let nets = {
        let tx = ctx.store.begin(Mode::Read)?;
        names
            .iter()
            .map(|n| find_network(tx.as_ref(), n))
            .collect::<Result<Vec<_>>>()?
    };
    for (i, net) in nets.into_iter().enumerate() {
        if !is_overlay(&net) {
            continue;
        }
        let ip = match (i, who.ip) {
            (0, Some(IpAddr::V4(v4))) => Some(v4),
            _ => None,
        };
        let r = agent::client::cluster(
            ctx,
            &Request::ClusterAttach(ClusterAttach {
                network: net.name.clone(),
                sandbox: who.id.to_string(),
                name: who.name.to_string(),
                hostname: who.hostname.map(str::to_string),
                aliases: who.aliases.to_vec(),
                ip,
                mac: if i == 0 { who.mac.clone() } else { None },
            }),
        )?;
        let ip = r
            .address
            .ok_or_else(|| anyhow::anyhow!("the agent attached but returned no address"))?;
        claims.held.push((net.id.clone(), ip));
    }
    Ok(claims)
}

/// Unregisters the sandbox's endpoint on overlay network `network_id` and releases its
/// addresses there.
pub fn detach(ctx: &Ctx, network_id: &str, sandbox: &str) -> Result<()> {
    agent::client::cluster(
        ctx,
        &Request::ClusterDetach {
            network_id: network_id.to_string(),
            sandbox: sandbox.to_string(),
        },
    )?;
    Ok(())
}

//! A sandbox's endpoints on overlay networks: the address comes from the cluster (the agent
//! claims it and registers the endpoint), not from the local IPAM, and every claim is
//! released again when the sandbox is not made after all.

use std::net::IpAddr;

use anyhow::Result;

use crate::core::agent::{ClusterAttach, Request};
use crate::core::driver;
use crate::core::model::Network;
use crate::engine::{agent, Ctx};

/// Whether `net` lives in the cluster.
pub fn is_overlay(net: &Network) -> bool {
    driver::of(net).is_ok_and(|d| d.needs_cluster())
}

/// What [`Claims::attach`] needs of the sandbox.
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

/// The cluster claims of a sandbox being made or connected: released (endpoint
/// unregistered, addresses freed) when dropped, unless [`Claims::keep`] was called.
pub(super) struct Claims<'a> {
    ctx: &'a Ctx,
    sandbox: String,
    held: Vec<(String, IpAddr)>,
}

impl<'a> Claims<'a> {
    /// No claims yet, for sandbox `sandbox` (its id).
    pub fn new(ctx: &'a Ctx, sandbox: &str) -> Self {
        Claims {
            ctx,
            sandbox: sandbox.to_string(),
            held: Vec::new(),
        }
    }

    /// The sandbox the claims are for (its id).
    pub fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// The address claimed on network `network_id`, if it is an overlay network.
    pub fn ip_for(&self, network_id: &str) -> Option<IpAddr> {
        self.held
            .iter()
            .find(|(id, _)| id == network_id)
            .map(|(_, ip)| *ip)
    }

    /// Whether every overlay network among `nets` has its claim (a bridge-only list always
    /// has).
    pub fn cover(&self, nets: &[Network]) -> bool {
        nets.iter()
            .all(|n| !is_overlay(n) || self.ip_for(&n.id).is_some())
    }

    /// Claims an address and registers an endpoint on each overlay network among `nets`
    /// that has no claim yet (through the agent); `who.ip` and `who.mac` go to `nets[0]`.
    /// Call it with no store transaction open: it waits for the cluster. On failure, what
    /// it claimed is released when `self` is dropped.
    pub fn attach(&mut self, nets: &[Network], who: &Who<'_>) -> Result<()> {
        for (i, net) in nets.iter().enumerate() {
            if !is_overlay(net) || self.ip_for(&net.id).is_some() {
                continue;
            }
            let ip = match (i, who.ip) {
                (0, Some(IpAddr::V4(v4))) => Some(v4),
                _ => None,
            };
            let r = agent::client::cluster(
                self.ctx,
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
            self.held.push((net.id.clone(), ip));
        }
        Ok(())
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

//! The cluster task's [`Host`] on this machine: overlay networks mirrored into the local
//! state store and built in the kernel, entries written and read back through netlink.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::Result;

use super::{Host, Setup};
use crate::core::cluster::orphans::LocalSandbox;
use crate::core::cluster::records::{EndpointRecord, UnderlayRecord};
use crate::core::driver::DriverData;
use crate::core::model::Network;
use crate::core::overlay_observed::VxlanObserved;
use crate::core::plan::Op;

/// The host side on this machine: the local store (its own connection) and the kernel.
pub struct KernelHost {
    ctx: crate::engine::Ctx,
    exec: crate::adapters::netlink::KernelExecutor,
    vtep: IpAddr,
    node: String,
}

impl KernelHost {
    pub(super) fn open(setup: &Setup, vtep: IpAddr) -> Result<Self> {
        Ok(KernelHost {
            ctx: crate::engine::Ctx::open(&setup.state_dir, &setup.run_dir, &setup.config_path)?,
            exec: crate::adapters::netlink::KernelExecutor::new()?,
            vtep,
            node: setup.config.node.clone(),
        })
    }
}

impl Host for KernelHost {
    fn underlay(&mut self) -> Result<Option<UnderlayRecord>> {
        let u = crate::engine::underlay::find(self.vtep)?;
        Ok(Some(UnderlayRecord {
            ifname: u.ifname,
            mtu: u.mtu,
            overhead: u.overhead,
        }))
    }

    fn network_up(&mut self, net: &Network) -> Result<()> {
        use crate::adapters::store::{Mode, Store as _};
        use crate::core::model::Status;
        // The network's MTU was chosen on the host that created it: this host's underlay
        // must carry it too, else nothing is mirrored or built here (see
        // `check_host_mtu`), and the error names this host, its underlay and the numbers.
        let underlay = crate::engine::underlay::find(self.vtep)?;
        crate::core::driver::overlay::check_host_mtu(
            &net.name,
            net.mtu,
            &self.node,
            &underlay.ifname,
            underlay.mtu,
            underlay.overhead,
        )?;
        let mut local = net.clone();
        if let DriverData::Overlay(c) = &mut local.driver_data {
            c.local = Some(self.vtep);
        }
        local.status = Status::Created;
        local.owner_pid = None;
        local.owner_start = None;
        let changed = {
            let tx = self.ctx.store.begin(Mode::Write)?;
            let cur = tx.network(&local.id)?;
            if let Some(other) = tx.network(&local.name)?.filter(|n| n.id != local.id) {
                anyhow::bail!(
                    "a local network {:?} (id {}) has the overlay network's name; remove or rename it",
                    other.name,
                    other.id
                );
            }
            let unchanged = cur.as_ref().is_some_and(|c| {
                let mut c = c.clone();
                c.created = local.created;
                c == local
            });
            if !unchanged {
                tx.put_network(&local)?;
                crate::engine::firewall::record_forwarding(tx.as_ref(), &local)?;
                tx.commit()?;
            }
            !unchanged
        };
        if changed {
            // The rules for its VXLAN port before its device: the socket never takes a
            // datagram from a non-member.
            crate::engine::firewall::ensure(
                &self.ctx,
                crate::core::firewall::drift::Depth::Chains,
                &[],
            )?;
        }
        let repaired = crate::engine::reconcile::network(&self.ctx, &mut self.exec, &local.id)?;
        if let Some(e) = repaired.errors.first() {
            anyhow::bail!("{e}");
        }
        if !repaired.applied.is_empty() {
            tracing::info!(network = %local.name, "built: {}", repaired.applied.join("; "));
            crate::engine::firewall::ensure(
                &self.ctx,
                crate::core::firewall::drift::Depth::Elements,
                std::slice::from_ref(&local.bridge),
            )?;
        }
        Ok(())
    }

    fn network_down(&mut self, id: &str) -> Result<()> {
        use crate::adapters::store::{Mode, Store as _};
        use crate::core::model::Status;
        // Marked as being removed by this process first, in the same transaction that finds
        // it unused: the agent's drift repair leaves a network in removal alone, and would
        // otherwise rebuild what the teardown deletes.
        let net = {
            let tx = self.ctx.store.begin(Mode::Write)?;
            let Some(mut net) = tx.network(id)? else {
                return Ok(());
            };
            let used = tx
                .sandboxes()?
                .iter()
                .any(|s| s.endpoints.iter().any(|e| e.network_id == id));
            if used {
                anyhow::bail!(
                    "sandboxes of this host are still attached to {:?}: its bridge stays",
                    net.name
                );
            }
            let (pid, start) = crate::engine::me();
            net.status = Status::Removing;
            net.owner_pid = Some(pid);
            net.owner_start = start;
            tx.put_network(&net)?;
            tx.commit()?;
            net
        };
        tracing::info!(network = %net.name, "removed from the cluster: removing it here");
        crate::engine::network::remove::teardown(&self.ctx, &net)
    }

    fn local_overlays(&mut self) -> Result<Vec<String>> {
        use crate::adapters::store::{Mode, Store as _};
        let tx = self.ctx.store.begin(Mode::Read)?;
        Ok(tx
            .networks()?
            .into_iter()
            .filter(|n| n.driver == "overlay")
            .map(|n| n.id)
            .collect())
    }

    fn apply(&mut self, ops: &[Op]) -> Vec<String> {
        crate::core::plan::apply_best_effort(&mut self.exec, ops)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn observe_vxlan(&mut self, ifname: &str) -> Result<Option<VxlanObserved>> {
        self.exec.observe_vxlan(ifname).map_err(anyhow::Error::msg)
    }

    fn vteps(&mut self) -> Result<Option<BTreeSet<IpAddr>>> {
        use crate::adapters::nftables;
        use crate::core::firewall::{vteps_of, FAMILY, SET_VTEPS4, SET_VTEPS6, TABLE};
        let read = |set| nftables::list_set_elements(FAMILY, TABLE, set);
        match (read(SET_VTEPS4), read(SET_VTEPS6)) {
            (Ok(v4), Ok(v6)) => Ok(Some(vteps_of(&v4, &v6).into_iter().collect())),
            (Err(e), _) | (_, Err(e)) if e.is_not_found() => Ok(None),
            (Err(e), _) | (_, Err(e)) => Err(anyhow::Error::new(e)),
        }
    }

    fn change_vteps(&mut self, add: &[IpAddr], remove: &[IpAddr]) -> Result<()> {
        use crate::core::firewall::{add_vteps, remove_vteps};
        let mut b = crate::core::nft::Batch::new();
        remove_vteps(&mut b, remove);
        add_vteps(&mut b, add);
        crate::adapters::nftables::send(&b).map_err(anyhow::Error::new)
    }

    fn local_sandboxes(&mut self) -> Result<BTreeMap<String, LocalSandbox>> {
        use crate::adapters::store::{Mode, Store as _};
        let tx = self.ctx.store.begin(Mode::Read)?;
        let mut all: BTreeMap<String, LocalSandbox> = tx
            .sandboxes()?
            .into_iter()
            .map(|s| {
                let on = s.endpoints.into_iter().map(|e| e.network_id).collect();
                (s.id, LocalSandbox::On(on))
            })
            .collect();
        // A record that cannot be decoded is still a sandbox of this host: its cluster
        // records are not orphans.
        all.extend(
            tx.corrupt_records()?
                .into_iter()
                .filter(|r| r.table == "sandboxes")
                .map(|r| (r.id, LocalSandbox::Unreadable)),
        );
        Ok(all)
    }

    fn own_endpoints(&mut self, node: &str) -> Result<Vec<EndpointRecord>> {
        use crate::adapters::store::{Mode, Store as _};
        let tx = self.ctx.store.begin(Mode::Read)?;
        let overlays: BTreeSet<String> = tx
            .networks()?
            .into_iter()
            .filter(|n| n.driver == "overlay")
            .map(|n| n.id)
            .collect();
        let mut records = Vec::new();
        for sb in tx.sandboxes()? {
            for ep in sb
                .endpoints
                .iter()
                .filter(|e| overlays.contains(&e.network_id))
            {
                let Some(mac) = crate::core::plan::parse_mac(&ep.mac) else {
                    continue;
                };
                if ep.pending.is_some() {
                    continue;
                }
                let (v4, v6) = (ep.v4(), ep.v6());
                let mut r =
                    EndpointRecord::new(node, &ep.network_id, &sb.id, &sb.name, v4, v6, mac);
                if sb.hostname != sb.name && !sb.hostname.is_empty() {
                    r.hostname = Some(sb.hostname.clone());
                }
                r.aliases = ep.aliases.clone();
                records.push(r);
            }
        }
        Ok(records)
    }
}

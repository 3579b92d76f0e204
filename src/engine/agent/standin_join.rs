//! A minimal join of the cluster, standing in for the agent's cluster task (built
//! separately, with the overlay data plane): connects to etcd, holds a lease with this
//! host's record under it (granted again after a loss), and publishes the [`Membership`] the
//! request handlers use. It mirrors nothing and builds no VXLAN device. The cluster task
//! replaces this file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;

use crate::adapters::cluster::etcd::{EtcdConfig, EtcdStore, TlsFiles};
use crate::adapters::cluster::ClusterStore;
use crate::core::cluster::keys::Key;
use crate::core::cluster::records::HostRecord;
use crate::core::cluster_config::ClusterConfig;
use crate::engine::cluster::Membership;
use crate::engine::now;

/// How long to wait before trying etcd again.
const RETRY: Duration = Duration::from_secs(1);

/// This host's membership, kept joined on a thread of its own.
pub(super) fn start(c: &ClusterConfig) -> Result<Arc<Membership>> {
    let mut config = EtcdConfig::new(c.etcd.clone());
    if c.etcd_ca.is_some() || c.etcd_cert.is_some() {
        config.tls = Some(TlsFiles {
            ca: c.etcd_ca.clone(),
            cert: c.etcd_cert.clone(),
            key: c.etcd_key.clone(),
        });
    }
    let store: Arc<dyn ClusterStore> = Arc::new(EtcdStore::connect(&config)?);
    let m = Arc::new(Membership {
        store,
        node: c.node.clone(),
        vtep: c.advertise,
        vxlan_port: c.vxlan_port,
        lease: Mutex::new(None),
    });
    let ttl = Duration::from_secs(u64::from(c.lease_ttl));
    let kept = m.clone();
    std::thread::Builder::new()
        .name("weft-cluster".into())
        .spawn(move || keep_joined(&kept, ttl))?;
    Ok(m)
}

fn keep_joined(m: &Membership, ttl: Duration) {
    let record = HostRecord {
        node: m.node.clone(),
        vtep: m.vtep,
        vxlan_port: m.vxlan_port,
        started: now(),
    };
    let key = Key::Host {
        node: m.node.clone(),
    }
    .render();
    loop {
        let lease = match m.store.grant_lease(ttl) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("joining the cluster: {e}");
                std::thread::sleep(RETRY);
                continue;
            }
        };
        if let Err(e) = m.store.put(&key, &record.encode(), Some(lease.id())) {
            tracing::warn!("registering this host in the cluster: {e}");
            std::thread::sleep(RETRY);
            continue;
        }
        m.set_lease(Some(lease.id()));
        tracing::info!(node = %m.node, lease = %lease.id(), "joined the cluster");
        while lease.wait_lost(Duration::from_secs(3600)).is_none() {}
        m.set_lease(None);
        tracing::warn!(node = %m.node, "lost the cluster lease: joining again");
    }
}

//! `weft network create` for a driver whose networks live in the cluster (overlay): only the
//! host agent talks to etcd, so the command asks it; without an agent that has a cluster
//! configured, the request fails naming the flags to set.
//!
//! Storing the network in the cluster and building it on every host is the agent's cluster
//! task, not written yet: a valid request is refused as not implemented rather than
//! pretending.

use anyhow::Result;

use super::{CreateRequest, Parsed};
use crate::core::driver::DriverError;
use crate::core::model::Network;
use crate::engine::{agent, underlay, Ctx};
use crate::user_err;

/// Checks a create request of a cluster-wide driver against the agent's cluster (there is
/// one; the MTU its underlay carries), then refuses it: see the module's documentation.
pub(crate) fn create(ctx: &Ctx, req: &CreateRequest, p: Parsed) -> Result<Network> {
    // Never starts an agent: one started on demand has no cluster flags, and the file's
    // [cluster] would have started with the one that runs already.
    let cluster = agent::client::status(ctx)?
        .map(|s| s.cluster)
        .filter(|c| c.configured);
    let Some(cluster) = cluster else {
        return Err(user_err!("{}", DriverError::NeedsCluster));
    };
    let advertise = cluster
        .advertise
        .ok_or_else(|| user_err!("{}", DriverError::NeedsCluster))?;
    let underlay = underlay::find(advertise)?;
    p.driver
        .mtu(&req.name, p.mtu, Some(&underlay))
        .map_err(|e| user_err!("{e}"))?;
    // Next, when the cluster task exists: the record's port is the cluster's
    // (`cluster.vxlan_port`), its VNI allocated when not given, the record stored in etcd.
    Err(user_err!(
        "{}",
        DriverError::NotImplemented {
            what: "creating a network in the cluster (the agent's etcd connection and the VXLAN devices)"
        }
    ))
}

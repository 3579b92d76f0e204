//! The overlay's use cases on the cluster store: what a host agent that joined the cluster
//! does for commands (create an overlay network, claim an address, register an endpoint) and
//! for its own upkeep. Each takes the store as a parameter ([`Membership::store`]), so it is
//! tested against the in-memory store without root or etcd.

pub mod addresses;
pub mod create_network;
pub mod endpoints;
mod error;
pub mod hosts;
pub mod networks;
pub mod remove_network;

pub use error::ClusterError;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::adapters::cluster::{ClusterStore, LeaseId};
use crate::core::cluster::claims::Claims;

/// This host's membership of the cluster, made by the agent's cluster task when it joined
/// and shared with the agent's request handlers.
pub struct Membership {
    /// The cluster store.
    pub store: Arc<dyn ClusterStore>,
    /// This node's name (`--node`).
    pub node: String,
    /// The advertised underlay address (`--advertise`): the VXLAN devices' `local`.
    pub vtep: IpAddr,
    /// The VXLAN devices' UDP port (`--vxlan-port`).
    pub vxlan_port: u16,
    /// The lease this node's host and endpoint records live under; `None` while the task
    /// has none (etcd unreachable, or the lease was lost and not yet granted again).
    pub lease: Mutex<Option<LeaseId>>,
    /// The cluster's address claims as the task last read them from the store and its watch
    /// (`None` before its first sync): where an attach looks for free addresses and for the
    /// sandbox's own claim instead of reading every claim of the network from the store. A
    /// hint only: every claim is a guarded transaction.
    pub claims: Mutex<Option<Claims>>,
}

impl Membership {
    /// The current lease, if the node holds one.
    pub fn lease(&self) -> Option<LeaseId> {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims as last seen ([`Membership::claims`]).
    pub fn claims(&self) -> MutexGuard<'_, Option<Claims>> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the lease the task holds now.
    pub fn set_lease(&self, lease: Option<LeaseId>) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = lease;
    }
}

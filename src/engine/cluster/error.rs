//! Why an overlay use case on the cluster store failed: each variant is a message a user
//! can act on (the CLI prints it as is, through the agent).

use crate::adapters::cluster::StoreError;
use crate::core::cluster::alloc::AllocError;

/// An overlay use case's failure.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The store did not answer or refused (names the endpoint).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A VNI or address could not be allocated (a requested VNI taken names its holder).
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// A network of that name exists in the cluster.
    #[error("network {name:?} already exists; choose another name or remove it with `weft network rm {name}`")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// The subnet overlaps another overlay network's.
    #[error("--subnet {subnet} overlaps {other_subnet} of overlay network {other:?}; choose a subnet no other overlay network uses")]
    SubnetOverlap {
        /// The subnet asked for.
        subnet: ipnet::IpNet,
        /// The network holding the overlapping one.
        other: String,
        /// Its subnet.
        other_subnet: ipnet::IpNet,
    },
    /// No subnet for a network created without `--subnet`: every candidate free on the
    /// creating host overlaps an overlay network of the cluster.
    #[error("no free subnet for overlay network {network:?}: the candidates free on this host ({tried}) all overlap other overlay networks of the cluster; pass --subnet")]
    NoFreeSubnet {
        /// The network.
        network: String,
        /// The candidates tried, comma-separated.
        tried: String,
    },
    /// An MTU a live node's underlay cannot carry.
    #[error("--mtu {mtu} is too large for overlay {network}: host {node}'s underlay {underlay} has MTU {underlay_mtu} and VXLAN needs {overhead} bytes, so at most {max}")]
    MtuTooLargeForHost {
        /// The network.
        network: String,
        /// The MTU asked for.
        mtu: u32,
        /// The node whose underlay is too small.
        node: String,
        /// Its underlay interface.
        underlay: String,
        /// Its MTU.
        underlay_mtu: u32,
        /// VXLAN's bytes over it.
        overhead: u32,
        /// The largest MTU it carries.
        max: u32,
    },
    /// Sandboxes are attached somewhere in the cluster.
    #[error("network {name:?} has sandboxes attached on {nodes}; remove or disconnect them first")]
    InUse {
        /// The network.
        name: String,
        /// The nodes holding endpoints, comma-separated (with their counts).
        nodes: String,
    },
    /// No overlay network of that name (or id) in the cluster.
    #[error("no such overlay network {0:?} in the cluster")]
    NoSuchNetwork(String),
    /// This node holds no lease, so it cannot register endpoints.
    #[error("cluster store {endpoints} is unreachable or this host's lease expired: new overlay attachments fail until it is back")]
    NoLease {
        /// The store's endpoint(s).
        endpoints: String,
    },
    /// A record in the store that weft cannot read.
    #[error("cluster record {key} is unreadable: {detail}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A static address is unusable or taken.
    #[error("network {network:?}: {detail}")]
    Address {
        /// The network.
        network: String,
        /// IPAM's message.
        detail: String,
    },
    /// Other nodes kept winning the races for too long.
    #[error("the cluster store {endpoints} kept changing under this request ({attempts} attempts); try again")]
    Contention {
        /// The store's endpoint(s).
        endpoints: String,
        /// How many transactions were tried.
        attempts: usize,
    },
}

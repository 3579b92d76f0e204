//! What the CLI and the host agent (`weft daemon`) say to each other over the agent's control
//! socket: one JSON request per line, one JSON response per line. Plain data; the socket is
//! an adapter's, the handling the agent's.

use serde::{Deserialize, Serialize};

use super::model::Network;

/// A request to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// How the agent is doing.
    Status,
    /// Hold a bound socket for every host port the sandbox publishes, so no host process can
    /// take one of them while it is published. Answered once they are held.
    Reserve {
        /// Sandbox id.
        sandbox: String,
    },
    /// Let go of the sandbox's port reservations (it was removed).
    Release {
        /// Sandbox id.
        sandbox: String,
    },
    /// Repair everything now (what the agent otherwise does on kernel events and timers).
    Repair,
    /// Shut down.
    Stop,
    /// Store a new overlay network in the cluster (its VNI chosen when 0, its port the
    /// cluster's); answered with the record stored.
    ClusterCreateNetwork {
        /// The record, subnets checked against this host (without an IPv4 one when none was
        /// given).
        network: Box<Network>,
        /// For a record without an IPv4 subnet: IPv4 subnets free on this host, in order of
        /// preference; the cluster stores the first no other overlay network overlaps.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        candidates: Vec<super::model::SubnetConfig>,
        /// Whether the user gave the MTU (`--mtu`): refused if a live node's underlay cannot
        /// carry it, where a default one is lowered to fit.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        mtu_given: bool,
    },
    /// Remove an overlay network from the cluster (refused while any node has endpoints).
    ClusterRemoveNetwork {
        /// Network name.
        name: String,
    },
    /// Claim an address on an overlay network and register the sandbox's endpoint there;
    /// answered with the address. Nothing is left behind when it fails.
    ClusterAttach(ClusterAttach),
    /// Unregister a sandbox's endpoint on an overlay network and release its addresses.
    ClusterDetach {
        /// Network id.
        network_id: String,
        /// Sandbox id.
        sandbox: String,
    },
    /// The cluster's hosts.
    ClusterHosts,
}

/// What [`Request::ClusterAttach`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterAttach {
    /// Network name.
    pub network: String,
    /// Sandbox id.
    pub sandbox: String,
    /// Sandbox name (answered by DNS on every node).
    pub name: String,
    /// Its hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Its aliases on the network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// `--ip`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The MAC of its interface: chosen by the caller (from the address it gets) when none,
    /// see [`crate::core::model::mac_for`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// One node of the cluster, for `weft cluster hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostListing {
    /// Node name.
    pub node: String,
    /// Its VTEP (advertised underlay address); none for a node gone.
    pub vtep: Option<std::net::IpAddr>,
    /// Its VXLAN port; none for a node gone.
    pub vxlan_port: Option<u16>,
    /// Whether its host record is there (its lease holds).
    pub alive: bool,
    /// When its agent registered, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// Endpoints it has registered.
    pub endpoints: usize,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not, when `ok` is false (or what went partly wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer to [`Request::Status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AgentStatus>,
    /// The overlay network stored or removed by a cluster request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Box<Network>>,
    /// The address [`Request::ClusterAttach`] claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::IpAddr>,
    /// The answer to [`Request::ClusterHosts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostListing>>,
}

impl Response {
    /// Success.
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    /// Failure, with the reason.
    pub fn failed(error: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(error.into()),
            ..Response::default()
        }
    }
}

/// One repair the agent made, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRecord {
    /// Seconds since the epoch.
    pub at: u64,
    /// What the kernel reported or the check found (`link wbr-… deleted`).
    pub cause: String,
    /// The operations applied.
    pub applied: Vec<String>,
    /// What could not be repaired.
    pub errors: Vec<String>,
}

/// One held port reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    /// Sandbox name.
    pub sandbox: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Host address (`0.0.0.0`, `::` or one address).
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
}

/// `weft daemon status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentStatus {
    /// The agent's process id.
    pub pid: u32,
    /// Seconds since the epoch when it started.
    pub started: u64,
    /// Seconds it has been running.
    pub uptime_secs: u64,
    /// The state directory it serves.
    pub state_dir: String,
    /// What it watches (`rtnetlink link/address/route events`, ...).
    pub watching: Vec<String>,
    /// Repairs made since it started (every one counted).
    pub repairs_total: u64,
    /// The most recent repairs, newest last.
    pub repairs: Vec<RepairRecord>,
    /// Port reservations held.
    pub reservations: Vec<ReservationView>,
    /// Problems it met that are not repairs (a port it could not reserve, ...), newest last.
    pub errors: Vec<String>,
    /// The DNS server, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStatus>,
    /// The cluster it is configured to join for overlay networks (shown either way).
    #[serde(default)]
    pub cluster: ClusterStatus,
}

/// The agent's cluster configuration and its cluster task's state, for `weft daemon status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClusterStatus {
    /// Whether a cluster is configured (`--etcd` or `[cluster]`); the other fields are set
    /// only then.
    pub configured: bool,
    /// etcd endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcd: Vec<String>,
    /// Whether etcd is reached with TLS files (CA or client certificate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// This host's name in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// This host's underlay address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<std::net::IpAddr>,
    /// UDP port of the VXLAN devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
    /// Seconds the etcd lease lives without renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<u32>,
    /// Whether the cluster task reaches etcd now (its last request or watch got through).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub connected: bool,
    /// The lease this node's records live under (hex, as etcd's tools print it), while held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// Live nodes of the cluster as this node sees them, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<ClusterHost>,
    /// Overlay networks of the cluster, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Endpoints of every node on the overlay networks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub endpoints: u64,
    /// The last etcd revision applied.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub revision: i64,
    /// The cluster task's recent problems, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// A live node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHost {
    /// Its name (`--node`).
    pub node: String,
    /// Its tunnel endpoint (`--advertise`).
    pub vtep: std::net::IpAddr,
    /// How many endpoints it has on overlay networks.
    pub endpoints: u64,
}

impl From<Option<&crate::core::cluster_config::ClusterConfig>> for ClusterStatus {
    fn from(c: Option<&crate::core::cluster_config::ClusterConfig>) -> Self {
        match c {
            None => ClusterStatus::default(),
            Some(c) => ClusterStatus {
                configured: true,
                etcd: c.etcd.clone(),
                tls: c.etcd_ca.is_some() || c.etcd_cert.is_some(),
                node: Some(c.node.clone()),
                advertise: Some(c.advertise),
                vxlan_port: Some(c.vxlan_port),
                lease_ttl: Some(c.lease_ttl),
                ..ClusterStatus::default()
            },
        }
    }
}

/// The agent's DNS server, for `weft daemon status`. Counters are since the agent started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DnsStatus {
    /// The port it listens on (UDP and TCP, every address); sandboxes' queries to their
    /// gateway's port 53 are redirected there.
    pub port: u16,
    /// Name and PTR records it answers.
    pub records: u64,
    /// Queries answered from its records (including NXDOMAIN and errors it answered itself).
    pub answered: u64,
    /// Queries answered by an upstream resolver (or from the brief cache of their answers).
    pub forwarded: u64,
    /// Of those, answered from the cache.
    pub cached: u64,
    /// Forwarded queries no upstream answered (SERVFAIL).
    pub failed: u64,
    /// Queries from addresses that are not sandboxes of a DNS-enabled network (REFUSED).
    pub refused: u64,
    /// Queries dropped by the per-source rate limit or in-flight bound.
    pub rate_limited: u64,
    /// Errors (socket or store), counted.
    pub errors: u64,
    /// The most recent errors, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_errors: Vec<String>,
}

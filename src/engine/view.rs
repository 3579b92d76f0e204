//! What `inspect`, `ls` and `ps` print: JSON documents with the documented field names.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use crate::core::model::{AllocationReport, Network, Sandbox};

/// One subnet of a network, as printed.
#[derive(Debug, Serialize)]
pub struct SubnetView {
    /// Prefix.
    pub subnet: String,
    /// Gateway address.
    pub gateway: String,
    /// Dynamic range, if limited.
    pub ip_range: Option<String>,
}

/// One sandbox attached to a network, as printed by `network inspect`.
#[derive(Debug, Serialize)]
pub struct NetworkEndpointView {
    /// Sandbox name.
    pub sandbox: String,
    /// Interface inside the sandbox.
    pub interface: String,
    /// IPv4 address with prefix.
    pub ipv4: Option<String>,
    /// IPv6 address with prefix.
    pub ipv6: Option<String>,
    /// MAC address.
    pub mac: String,
}

/// `weft network inspect --format json` element.
#[derive(Debug, Serialize)]
pub struct NetworkView {
    /// Name.
    pub name: String,
    /// Full id.
    pub id: String,
    /// Driver.
    pub driver: String,
    /// VXLAN network identifier (overlay networks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// UDP port of the VXLAN devices (overlay networks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
    /// No way out.
    pub internal: bool,
    /// Has IPv6.
    pub ipv6: bool,
    /// MTU.
    pub mtu: u32,
    /// Bridge interface.
    pub bridge: String,
    /// Subnets.
    pub subnets: Vec<SubnetView>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Aux addresses.
    pub aux_addresses: BTreeMap<String, String>,
    /// For auto subnets: pool and skipped candidates.
    pub allocation: Option<AllocationReport>,
    /// Attached sandboxes.
    pub endpoints: Vec<NetworkEndpointView>,
    /// Lifecycle.
    pub status: String,
    /// When it was created, seconds since the epoch.
    pub created: u64,
}

fn s(n: &Option<IpNet>) -> Option<String> {
    n.map(|n| n.to_string())
}

/// Builds the network view with the endpoints of `sandboxes` on it.
pub fn network(net: &Network, sandboxes: &[Sandbox]) -> NetworkView {
    let endpoints = sandboxes
        .iter()
        .flat_map(|sb| {
            sb.endpoints
                .iter()
                .filter(|e| e.network_id == net.id)
                .map(|e| NetworkEndpointView {
                    sandbox: sb.name.clone(),
                    interface: e.interface.clone(),
                    ipv4: s(&e.ipv4),
                    ipv6: s(&e.ipv6),
                    mac: e.mac.clone(),
                })
        })
        .collect();
    NetworkView {
        name: net.name.clone(),
        id: net.id.clone(),
        driver: net.driver.clone(),
        vni: match &net.driver_data {
            crate::core::driver::DriverData::Overlay(c) => Some(c.vni),
            crate::core::driver::DriverData::None => None,
        },
        vxlan_port: match &net.driver_data {
            crate::core::driver::DriverData::Overlay(c) => Some(c.port),
            crate::core::driver::DriverData::None => None,
        },
        internal: net.internal,
        ipv6: net.ipv6,
        mtu: net.mtu,
        bridge: net.bridge.clone(),
        subnets: net
            .subnets
            .iter()
            .map(|c| SubnetView {
                subnet: c.subnet.to_string(),
                gateway: c.gateway.to_string(),
                ip_range: c.ip_range.map(|r| r.to_string()),
            })
            .collect(),
        options: net.options.clone(),
        labels: net.labels.clone(),
        aux_addresses: net
            .aux_addresses
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        allocation: net.allocation.clone(),
        endpoints,
        status: format!("{:?}", net.status).to_lowercase(),
        created: net.created,
    }
}

/// One network of a sandbox, as printed by `inspect`.
#[derive(Debug, Serialize)]
pub struct SandboxNetworkView {
    /// Network name.
    pub network: String,
    /// Interface inside the sandbox.
    pub interface: String,
    /// The host end of its veth pair, a port of the network's bridge.
    pub host_interface: String,
    /// IPv4 address with prefix.
    pub ipv4: Option<String>,
    /// IPv6 address with prefix.
    pub ipv6: Option<String>,
    /// MAC address.
    pub mac: String,
    /// Aliases.
    pub aliases: Vec<String>,
}

/// `weft inspect SANDBOX --format json` element.
#[derive(Debug, Serialize)]
pub struct SandboxView {
    /// Name.
    pub name: String,
    /// Full id.
    pub id: String,
    /// Process id of the init CMD runs under, while it runs.
    pub pid: Option<u32>,
    /// Namespace handle path (null in host mode).
    pub netns: Option<String>,
    /// `bridge`, `host` or `none`.
    pub mode: String,
    /// `created`, `running`, `exited`.
    pub status: String,
    /// Exit code once exited.
    pub exit_code: Option<i32>,
    /// Hostname.
    pub hostname: String,
    /// The command.
    pub command: Vec<String>,
    /// Networks in connect order.
    pub networks: Vec<SandboxNetworkView>,
    /// Published ports.
    pub ports: Vec<crate::core::ports::PortMapping>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When it was created, seconds since the epoch.
    pub created: u64,
    /// When its command last started (null if never, or unknown).
    pub started: Option<u64>,
    /// When its command last exited (null if it has not).
    pub finished: Option<u64>,
    /// `--restart` policy (`no`, `on-failure[:N]`, `always`, `unless-stopped`).
    pub restart_policy: String,
    /// How many times the policy started the command again since the last `start`.
    pub restart_count: u32,
}

/// One endpoint of a sandbox as `inspect` prints it (and `network connect`).
pub fn endpoint(e: &crate::core::model::Endpoint) -> SandboxNetworkView {
    SandboxNetworkView {
        network: e.network.clone(),
        interface: e.interface.clone(),
        host_interface: e.host_interface.clone(),
        ipv4: s(&e.ipv4),
        ipv6: s(&e.ipv6),
        mac: e.mac.clone(),
        aliases: e.aliases.clone(),
    }
}

/// Builds the sandbox view.
pub fn sandbox(sb: &Sandbox) -> SandboxView {
    SandboxView {
        name: sb.name.clone(),
        id: sb.id.clone(),
        pid: sb.pid,
        netns: sb.netns.clone(),
        mode: format!("{:?}", sb.mode).to_lowercase(),
        status: format!("{:?}", sb.status).to_lowercase(),
        exit_code: sb.exit_code,
        hostname: sb.hostname.clone(),
        command: sb.command.clone(),
        networks: sb.endpoints.iter().map(endpoint).collect(),
        ports: sb.ports.clone(),
        labels: sb.labels.clone(),
        created: sb.created,
        started: sb.started,
        finished: sb.finished,
        restart_policy: sb.restart.to_string(),
        restart_count: sb.restart_count,
    }
}

//! The things weft manages, as plain data: networks, sandboxes and their endpoints.
//!
//! These types are what the state store persists (as JSON) and what `inspect --format json`
//! prints, so their field names are part of the user-facing contract.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::driver::DriverData;

/// Lifecycle of a network or sandbox record. `Creating` marks a record whose kernel objects may
/// be half made: if its owner process is gone, `weft gc` undoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Kernel objects are being made by the process `owner_pid`.
    Creating,
    /// Kernel objects exist; for a sandbox: no process runs (yet, or any more).
    Created,
    /// A sandbox whose process runs.
    Running,
    /// A sandbox whose process has exited.
    Exited,
    /// A sandbox whose process has exited and whose monitor waits out the back-off of its
    /// restart policy before starting it again (Docker's `restarting`).
    Restarting,
    /// Being removed by the process `owner_pid` (so nothing else acts on it meanwhile).
    Removing,
}

/// One address family's configuration of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetConfig {
    /// The network's prefix, e.g. `172.18.0.0/16`.
    pub subnet: IpNet,
    /// The bridge's address inside `subnet`.
    pub gateway: IpAddr,
    /// Dynamic allocation is limited to this range when set.
    pub ip_range: Option<IpNet>,
}

/// One candidate subnet that automatic allocation skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The candidate prefix.
    pub candidate: IpNet,
    /// Human-readable reason, naming the route, interface, network, peer or avoid entry.
    pub reason: String,
}

/// How an automatically chosen subnet was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationReport {
    /// The pool the subnet was taken from.
    pub pool: IpNet,
    /// Every earlier candidate of that walk, with the reason it was refused.
    pub skipped: Vec<Skipped>,
}

/// A weft network. What every driver shares is here; what one driver alone needs is in
/// `driver_data`, and how its kernel objects are made is its [`Driver`](crate::core::driver::Driver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Network name, unique.
    pub name: String,
    /// 64 hex digits, unique.
    pub id: String,
    /// The driver's name (`bridge`, `overlay`): see [`crate::core::driver::lookup`].
    pub driver: String,
    /// The driver's own data (none for `bridge`, so records written before drivers had data
    /// read unchanged, and bridge records are written as before).
    #[serde(default, skip_serializing_if = "DriverData::is_none")]
    pub driver_data: DriverData,
    /// No route out of the host: no masquerade, no forwarding to other interfaces.
    pub internal: bool,
    /// Whether the network has an IPv6 subnet.
    pub ipv6: bool,
    /// MTU of the bridge and of every veth on it.
    pub mtu: u32,
    /// Name of the Linux bridge.
    pub bridge: String,
    /// One entry per address family (IPv4 first).
    pub subnets: Vec<SubnetConfig>,
    /// Driver options (`icc`, `masquerade`), as given.
    pub options: BTreeMap<String, String>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Addresses reserved by name (`--aux-address`), never handed out.
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// For automatically chosen subnets: the pool and the candidates skipped.
    pub allocation: Option<AllocationReport>,
    /// Record lifecycle.
    pub status: Status,
    /// The process creating or removing the record while `status` is `Creating` or
    /// `Removing`.
    pub owner_pid: Option<u32>,
    /// That process's start time, so that a reused pid is never taken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_start: Option<u64>,
    /// Seconds since the epoch.
    pub created: u64,
}

impl Network {
    /// Whether the host agent answers names for sandboxes of this network (`--opt dns=false`
    /// turns it off: sandboxes then get the host's resolvers, as before DNS existed).
    pub fn dns(&self) -> bool {
        self.options
            .get("dns")
            .map(|v| v != "false")
            .unwrap_or(true)
    }

    /// Inter-container communication: false means sandboxes of this network only reach the
    /// gateway, not each other.
    pub fn icc(&self) -> bool {
        self.options
            .get("icc")
            .map(|v| v != "false")
            .unwrap_or(true)
    }

    /// Whether traffic from the subnet leaving through another interface is masqueraded.
    pub fn masquerade(&self) -> bool {
        !self.internal
            && self
                .options
                .get("masquerade")
                .map(|v| v != "false")
                .unwrap_or(true)
    }

    /// The host address ports published into this network bind by default (`--opt
    /// host_ip`, Docker's `host_binding_ipv4`); every address when unset, or set to `0.0.0.0`
    /// (Docker's default, which also publishes on `::` for IPv6 sandboxes).
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.options
            .get("host_ip")
            .and_then(|v| v.parse::<IpAddr>().ok())
            .filter(|ip| !ip.is_unspecified())
    }

    /// The IPv4 subnet configuration, if any.
    pub fn v4(&self) -> Option<&SubnetConfig> {
        self.subnets
            .iter()
            .find(|s| matches!(s.subnet, IpNet::V4(_)))
    }

    /// The IPv6 subnet configuration, if any.
    pub fn v6(&self) -> Option<&SubnetConfig> {
        self.subnets
            .iter()
            .find(|s| matches!(s.subnet, IpNet::V6(_)))
    }

    /// The first 12 hex digits of the id, as Docker shows them.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// A sandbox's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Network name.
    pub network: String,
    /// Network id (names can be reused after `rm`; ids cannot).
    pub network_id: String,
    /// Interface name inside the sandbox (`eth0`, `eth1`, ... in connect order).
    pub interface: String,
    /// Host end of the veth pair, enslaved to the network's bridge.
    pub host_interface: String,
    /// IPv4 address with the subnet's prefix length.
    pub ipv4: Option<IpNet>,
    /// IPv6 address with the subnet's prefix length.
    pub ipv6: Option<IpNet>,
    /// MAC address of the sandbox end, derived from the IPv4 address.
    pub mac: String,
    /// Extra names this sandbox answers to on this network.
    pub aliases: Vec<String>,
    /// Whether an address may have been held before on this network (chosen by hand, or
    /// below the highest address ever handed out): neighbours may then remember another MAC
    /// for it, so it is announced on attach. A never-used address has nothing to correct,
    /// and a broadcast to every port of the bridge on each attach would cost O(sandboxes).
    #[serde(default)]
    pub announce: bool,
    /// A `network connect` or `disconnect` of this endpoint that a command started and has not
    /// finished: while its owner lives, nothing else acts on the endpoint; if the owner died,
    /// `weft gc` undoes the attach or finishes the detach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

impl Endpoint {
    /// Its IPv4 address, without the prefix length.
    pub fn v4(&self) -> Option<Ipv4Addr> {
        self.ipv4.and_then(|a| match a.addr() {
            IpAddr::V4(v) => Some(v),
            IpAddr::V6(_) => None,
        })
    }

    /// Its IPv6 address, without the prefix length.
    pub fn v6(&self) -> Option<Ipv6Addr> {
        self.ipv6.and_then(|a| match a.addr() {
            IpAddr::V6(v) => Some(v),
            IpAddr::V4(_) => None,
        })
    }
}

/// What a command is doing to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointChange {
    /// `network connect`: the interface is being made.
    Attach,
    /// `network disconnect`: the interface is being removed.
    Detach,
}

/// An unfinished change to an endpoint and the process making it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The change.
    pub change: EndpointChange,
    /// The weft process making it.
    pub owner_pid: u32,
    /// That process's start time, so a reused pid is never taken for it.
    #[serde(default)]
    pub owner_start: Option<u64>,
}

/// How a sandbox joins the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// Its own network namespace, attached to weft networks.
    Bridge,
    /// The host's network namespace.
    Host,
    /// Its own namespace with only `lo`.
    None,
}

/// A sandbox: a network namespace (plus private mount and UTS namespaces for the process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Sandbox name, unique.
    pub name: String,
    /// 64 hex digits, unique.
    pub id: String,
    /// Hostname inside the sandbox.
    pub hostname: String,
    /// Network mode.
    pub mode: NetMode,
    /// Process id of the init CMD runs under (PID 1 of CMD's PID namespace) while it runs.
    pub pid: Option<u32>,
    /// Start time of `pid` (so a reused pid is never taken for the init).
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// Process id of the weft process that waits for CMD (detached monitor or foreground run).
    pub monitor_pid: Option<u32>,
    /// Start time of `monitor_pid`.
    #[serde(default)]
    pub monitor_start: Option<u64>,
    /// Path of the bind-mounted network namespace handle (none for host mode).
    pub netns: Option<String>,
    /// Attachments in connect order.
    pub endpoints: Vec<Endpoint>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Published ports, one entry per host port.
    #[serde(default)]
    pub ports: Vec<crate::core::ports::PortMapping>,
    /// The command, when one was given.
    pub command: Vec<String>,
    /// Remove the sandbox when CMD exits.
    pub auto_remove: bool,
    /// CMD's exit code once it exited.
    pub exit_code: Option<i32>,
    /// Record lifecycle.
    pub status: Status,
    /// The process creating or removing the record while `status` is `Creating` or
    /// `Removing`.
    pub owner_pid: Option<u32>,
    /// That process's start time, so that a reused pid is never taken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_start: Option<u64>,
    /// Seconds since the epoch.
    pub created: u64,
    /// When CMD last started (seconds since the epoch); unknown for records of older weft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// When CMD last exited (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    /// `--restart`: when the monitor starts the command again.
    #[serde(default)]
    pub restart: crate::core::run::RestartPolicy,
    /// How many times the monitor started the command again since `weft start` (or `run`).
    #[serde(default)]
    pub restart_count: u32,
    /// Set by `weft stop` before it signals: the restart policy leaves the command stopped.
    #[serde(default)]
    pub stopped: bool,
    /// The published ports of a stopped sandbox, which holds no host port (as Docker's):
    /// `weft stop` moves `ports` here, `weft start` claims them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_ports: Vec<crate::core::ports::PortMapping>,
    /// What the command runs with besides the network (environment, working directory,
    /// extra `/etc/hosts` entries, DNS settings).
    #[serde(default)]
    pub run: crate::core::run::RunSettings,
}

impl Sandbox {
    /// The first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// Records that the command exited with `code` at `now` (seconds since the epoch): no
    /// process, status `exited`. Whether a monitor stays (a restart) is the caller's.
    pub fn command_exited(&mut self, code: i32, now: u64) {
        self.pid = None;
        self.pid_start = None;
        self.status = Status::Exited;
        self.exit_code = Some(code);
        self.finished = Some(now);
    }
}

#[cfg(test)]
impl Sandbox {
    /// A bridge-mode sandbox with no endpoint, process or settings, for unit tests: each sets
    /// what it looks at, and a new field is added here only.
    pub(crate) fn example(name: &str, id: &str, status: Status) -> Sandbox {
        Sandbox {
            name: name.into(),
            id: id.into(),
            hostname: name.into(),
            mode: NetMode::Bridge,
            pid: None,
            pid_start: None,
            monitor_pid: None,
            monitor_start: None,
            netns: None,
            endpoints: vec![],
            labels: BTreeMap::new(),
            ports: vec![],
            command: vec![],
            auto_remove: false,
            exit_code: None,
            status,
            owner_pid: None,
            owner_start: None,
            created: 0,
            started: None,
            finished: None,
            restart: Default::default(),
            restart_count: 0,
            stopped: false,
            stopped_ports: vec![],
            run: Default::default(),
        }
    }
}

#[cfg(test)]
impl Network {
    /// A created bridge network `web` on 172.18.0.0/16 (bridge `wbr-ab`), for unit tests: each
    /// changes what it looks at, and a new field is added here only.
    pub(crate) fn example() -> Network {
        Network {
            name: "web".into(),
            id: "ab".repeat(32),
            driver: "bridge".into(),
            driver_data: Default::default(),
            internal: false,
            ipv6: false,
            mtu: 1500,
            bridge: "wbr-ab".into(),
            subnets: vec![SubnetConfig {
                subnet: "172.18.0.0/16".parse().expect("a CIDR"),
                gateway: "172.18.0.1".parse().expect("an address"),
                ip_range: None,
            }],
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            aux_addresses: BTreeMap::new(),
            allocation: None,
            status: Status::Created,
            owner_pid: None,
            owner_start: None,
            created: 0,
        }
    }
}

/// The MAC weft gives a sandbox interface: `02:42` followed by the IPv4 address, as Docker
/// does, so that a MAC identifies its address at a glance. Without IPv4, the last four bytes
/// of the IPv6 address are used.
pub fn mac_for(v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> [u8; 6] {
    let tail = match (v4, v6) {
        (Some(a), _) => a.octets(),
        (None, Some(a)) => {
            let o = a.octets();
            [o[12], o[13], o[14], o[15]]
        }
        (None, None) => [0, 0, 0, 0],
    };
    [0x02, 0x42, tail[0], tail[1], tail[2], tail[3]]
}

/// Formats a MAC as `02:42:ac:11:00:02`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_follows_ipv4() {
        let mac = mac_for(Some(Ipv4Addr::new(172, 17, 0, 2)), None);
        assert_eq!(format_mac(&mac), "02:42:ac:11:00:02");
    }

    #[test]
    fn mac_falls_back_to_ipv6_tail() {
        let mac = mac_for(None, Some("fd00::1:2:3:4".parse().unwrap()));
        assert_eq!(format_mac(&mac), "02:42:00:03:00:04");
    }
}

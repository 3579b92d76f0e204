//! Network drivers: what kind of network a record is, the data only that kind has, and how
//! its kernel objects are planned.
//!
//! A driver is a type implementing [`Driver`], in its own file here, with its data as a
//! variant of [`DriverData`] (none for `bridge`). Adding a driver means its file, a variant of
//! [`DriverData`] when it keeps data, and its entry in [`DRIVERS`]: nothing else names a
//! driver.

pub mod bridge;
pub mod overlay;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::model::{Endpoint, Network};
use super::plan::Op;

/// The registration: every driver weft knows, the default first.
pub static DRIVERS: &[&dyn Driver] = &[&bridge::Bridge, &overlay::Overlay];

/// The driver called `name` (as `--driver` and records spell it).
pub fn lookup(name: &str) -> Option<&'static dyn Driver> {
    DRIVERS.iter().copied().find(|d| d.name() == name)
}

/// The names of every driver, for messages.
pub fn names() -> Vec<&'static str> {
    DRIVERS.iter().map(|d| d.name()).collect()
}

/// The driver of a network record; an error for a name this weft does not know (a record
/// written by a newer weft).
pub fn of(net: &Network) -> Result<&'static dyn Driver, DriverError> {
    lookup(&net.driver).ok_or_else(|| DriverError::Unknown {
        name: net.driver.clone(),
    })
}

/// A driver's own data in a network record, tagged by driver. Records of drivers without
/// data (bridge) carry none, so that they read and write as before drivers had data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverData {
    /// No driver data (bridge).
    #[default]
    None,
    /// An overlay network's VXLAN identity.
    Overlay(overlay::OverlayConfig),
}

impl DriverData {
    /// Whether there is no driver data (so the record leaves the field out).
    pub fn is_none(&self) -> bool {
        matches!(self, DriverData::None)
    }
}

/// What `weft network create` asks of a driver, parsed but not yet checked by it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request<'a> {
    /// The network's name.
    pub network: &'a str,
    /// `--vni`, as given (range checked by the overlay driver).
    pub vni: Option<u64>,
    /// `--bridge-name` or Docker's option for it.
    pub bridge_name: Option<&'a str>,
    /// `--subnet`s given.
    pub subnets: &'a [IpNet],
    /// The cluster's VXLAN UDP port, once the cluster is known.
    pub vxlan_port: Option<u16>,
}

/// The interface traffic to other hosts leaves through: the one holding the advertised
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// Interface name.
    pub ifname: String,
    /// Its MTU.
    pub mtu: u32,
    /// What VXLAN adds to every frame over it ([`overlay::VXLAN_OVERHEAD`] over IPv4,
    /// [`overlay::VXLAN6_OVERHEAD`] over IPv6: [`overlay::overhead_for`]).
    pub overhead: u32,
}

/// A request a driver refuses, or a plan it cannot make.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DriverError {
    /// No driver of that name.
    #[error("unknown driver {name:?}: known drivers are {}", names().join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// A flag or option the driver has no use for.
    #[error("{flag} does not apply to {driver} networks: {why}")]
    NotApplicable {
        /// The flag as the user spells it.
        flag: &'static str,
        /// The driver.
        driver: &'static str,
        /// Why, and what to do instead.
        why: &'static str,
    },
    /// A VXLAN network identifier out of range.
    #[error(
        "invalid --vni {value}: a VXLAN network identifier is between 1 and {}; give one in that range or leave --vni out",
        overlay::VNI_MAX
    )]
    Vni {
        /// The value given.
        value: u64,
    },
    /// An MTU the underlay cannot carry with the encapsulation.
    #[error("--mtu {mtu} is too large for overlay {network}: the underlay {underlay} has MTU {underlay_mtu} and VXLAN needs {overhead} bytes, so at most {max}")]
    MtuTooLarge {
        /// The MTU asked for.
        mtu: u32,
        /// The network.
        network: String,
        /// The underlay interface.
        underlay: String,
        /// Its MTU.
        underlay_mtu: u32,
        /// The encapsulation's bytes.
        overhead: u32,
        /// The largest MTU that fits.
        max: u32,
    },
    /// An overlay network whose MTU one host's underlay cannot carry: that host does not
    /// build it (a device with a larger MTU than its underlay carries would silently drop
    /// the larger packets).
    #[error("overlay network {network} is not built on host {node}: its MTU is {mtu}, but here the underlay {underlay} has MTU {underlay_mtu} and VXLAN needs {overhead} bytes, so at most {max}; raise {underlay}'s MTU to {needed}, or recreate the network with --mtu {max}")]
    HostUnderlayTooSmall {
        /// The network.
        network: String,
        /// Its MTU, the same on every host.
        mtu: u32,
        /// This host's node name.
        node: String,
        /// This host's underlay interface.
        underlay: String,
        /// Its MTU.
        underlay_mtu: u32,
        /// The encapsulation's bytes.
        overhead: u32,
        /// The largest network MTU this underlay carries.
        max: u32,
        /// The underlay MTU the network needs.
        needed: u64,
    },
    /// An underlay whose MTU leaves less than the smallest IPv4 MTU after encapsulation.
    #[error("the underlay {underlay} has MTU {underlay_mtu}: after VXLAN's {overhead} bytes that leaves less than the 68 bytes IPv4 needs; raise the underlay's MTU")]
    UnderlayTooSmall {
        /// The underlay interface.
        underlay: String,
        /// Its MTU.
        underlay_mtu: u32,
        /// The encapsulation's bytes.
        overhead: u32,
    },
    /// A cluster-wide network without a configured cluster.
    #[error("overlay networks need a cluster: start the agent with weft daemon --etcd URL --advertise IP")]
    NeedsCluster,
    /// Something a driver will do but this weft cannot yet.
    #[error("{what} is not implemented yet")]
    NotImplemented {
        /// What, as a phrase.
        what: &'static str,
    },
    /// A record whose driver data does not match its driver.
    #[error("network {network:?} of driver {driver} has no {driver} data in its record")]
    MissingData {
        /// The network.
        network: String,
        /// Its driver.
        driver: &'static str,
    },
}

/// A kind of network: how it is asked for, what it keeps and how its kernel objects are
/// planned. Planners are pure, as everything in [`super::plan`].
pub trait Driver: Sync {
    /// The name `--driver` and records use.
    fn name(&self) -> &'static str;

    /// Whether its networks exist cluster-wide (their records live in the cluster store, and
    /// the agent must have a cluster configured).
    fn needs_cluster(&self) -> bool;

    /// Checks a create request against what the driver accepts and returns its data.
    fn validate(&self, req: &Request<'_>) -> Result<DriverData, DriverError>;

    /// The MTU of a new network: `requested` (already within 68..=65535) or the driver's
    /// default; `underlay` is the interface to other hosts, when a cluster is configured.
    fn mtu(
        &self,
        network: &str,
        requested: Option<u32>,
        underlay: Option<&Underlay>,
    ) -> Result<u32, DriverError>;

    /// The host interfaces the driver makes for `net` (each tagged with the network's id).
    fn interfaces(&self, net: &Network) -> Vec<String>;

    /// Operations that make the network's kernel objects (`dns_port`: see
    /// [`super::plan::firewall_of`]).
    fn plan_network(
        &self,
        net: &Network,
        instance: &str,
        dns_port: Option<u16>,
    ) -> Result<Vec<Op>, DriverError>;

    /// Operations that remove them (the network's endpoints are gone first).
    fn plan_network_teardown(&self, net: &Network) -> Vec<Op>;

    /// Operations that attach a sandbox (namespace `netns`) through `ep`; the first network
    /// of a sandbox (`default_route`) also gives it its default routes.
    fn plan_attach(
        &self,
        netns: &str,
        sandbox_id: &str,
        ep: &Endpoint,
        net: &Network,
        default_route: bool,
        instance: &str,
    ) -> Vec<Op>;

    /// Operations that detach `ep` while the sandbox's namespace lives on.
    fn plan_detach(&self, netns: &str, ep: &Endpoint, net: &Network) -> Vec<Op>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_finds_every_driver_by_its_name() {
        assert_eq!(names(), ["bridge", "overlay"]);
        for name in names() {
            assert_eq!(lookup(name).map(|d| d.name()), Some(name));
        }
        assert!(lookup("macvlan").is_none());
        assert_eq!(
            DriverError::Unknown {
                name: "nosuch".into()
            }
            .to_string(),
            "unknown driver \"nosuch\": known drivers are bridge, overlay"
        );
    }

    #[test]
    fn a_record_names_its_driver() {
        let mut net = Network::example();
        assert_eq!(of(&net).map(|d| d.name()), Ok("bridge"));
        net.driver = "futuristic".into();
        assert!(matches!(of(&net), Err(DriverError::Unknown { .. })));
    }

    /// A bridge record as weft wrote it before drivers had data.
    const OLD_BRIDGE_RECORD: &str = r#"{"name":"web","id":"abababababababababababababababababababababababababababababababab","driver":"bridge","internal":false,"ipv6":false,"mtu":1500,"bridge":"wbr-ab","subnets":[{"subnet":"172.18.0.0/16","gateway":"172.18.0.1","ip_range":null}],"options":{},"labels":{},"aux_addresses":{},"allocation":null,"status":"created","owner_pid":null,"created":0}"#;

    #[test]
    fn old_bridge_records_decode_to_the_bridge_driver_and_encode_unchanged() {
        let net: Network = serde_json::from_str(OLD_BRIDGE_RECORD).unwrap();
        assert_eq!(net, Network::example());
        assert_eq!(of(&net).map(|d| d.name()), Ok("bridge"));
        assert_eq!(net.driver_data, DriverData::None);
        // Written back, a bridge record is what it was: no driver data field.
        assert_eq!(serde_json::to_string(&net).unwrap(), OLD_BRIDGE_RECORD);
    }

    #[test]
    fn overlay_records_keep_their_vni_and_port() {
        let mut net = Network::example();
        net.driver = "overlay".into();
        net.driver_data = DriverData::Overlay(overlay::OverlayConfig::new(42, 4789));
        let text = serde_json::to_string(&net).unwrap();
        assert!(
            text.contains(r#""driver":"overlay","driver_data":{"overlay":{"vni":42,"port":4789}}"#),
            "{text}"
        );
        let back: Network = serde_json::from_str(&text).unwrap();
        assert_eq!(back, net);
    }
}

//! The JSON records the cluster store holds, and their validation on the way in: a record
//! another node wrote is input like any other, and one that does not decode to something
//! sensible is ignored (and counted by the caller), never applied half.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::keys::valid_segment;
use crate::core::model::format_mac;
use crate::core::plan::parse_mac;

/// Why a record was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// Not JSON of the expected shape.
    #[error("record is not valid JSON for a {what}: {detail}")]
    Json {
        /// Record kind.
        what: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// A field holds a value no node could have meant.
    #[error("record field {field} has an unusable value {value:?}")]
    Field {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The record does not match the key it is stored under.
    #[error("record names {field} {value:?} but is stored under another key")]
    KeyMismatch {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// A node of the cluster: where its VXLAN devices send from. Kept under the node's lease, so
/// it disappears when the node's agent does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Node name (also the key's last segment).
    pub node: String,
    /// The advertised underlay address: the VXLAN `local` address and remote FDB destination.
    pub vtep: IpAddr,
    /// UDP port of its VXLAN devices.
    pub vxlan_port: u16,
    /// When its agent registered, seconds since the epoch.
    pub started: u64,
}

/// A sandbox attached to an overlay network on some node. Kept under that node's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Node the sandbox runs on.
    pub node: String,
    /// Network id.
    pub network: String,
    /// Sandbox id.
    pub sandbox: String,
    /// Sandbox name (answered by DNS on every node of the network).
    pub name: String,
    /// Its hostname, when it differs from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Its aliases on this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// IPv4 address on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// MAC of its interface, `02:42:...`.
    pub mac: String,
}

/// A node's underlay, next to its host record and under the same lease: what the largest
/// overlay MTU it carries is, so that a network created elsewhere fits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderlayRecord {
    /// The underlay interface (the one holding the advertised address).
    pub ifname: String,
    /// Its MTU.
    pub mtu: u32,
    /// What VXLAN adds over it (50 over IPv4, 70 over IPv6).
    pub overhead: u32,
}

impl UnderlayRecord {
    /// The largest overlay MTU this underlay carries.
    pub fn max_mtu(&self) -> u32 {
        self.mtu.saturating_sub(self.overhead)
    }

    /// The JSON stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        json("underlay", bytes)
    }
}

/// Who holds an address of an overlay network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRecord {
    /// Sandbox id.
    pub sandbox: String,
    /// Node the sandbox runs on.
    pub node: String,
}

fn json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, RecordError> {
    serde_json::from_slice(bytes).map_err(|e| RecordError::Json {
        what,
        detail: e.to_string(),
    })
}

fn segment(field: &'static str, value: &str) -> Result<(), RecordError> {
    if valid_segment(value) {
        Ok(())
    } else {
        Err(RecordError::Field {
            field,
            value: value.to_string(),
        })
    }
}

/// An address a node can be reached at over the underlay: unicast and routable-looking.
fn usable_vtep(ip: IpAddr) -> bool {
    !(ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()))
}

/// A MAC a sandbox may have: unicast, not all-zero (the flood entry's MAC).
fn usable_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac != &[0; 6]
}

impl HostRecord {
    /// Decodes and checks a host record stored under `hosts/<node>`.
    pub fn decode(node: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let r: HostRecord = json("host", bytes)?;
        if r.node != node {
            return Err(RecordError::KeyMismatch {
                field: "node",
                value: r.node,
            });
        }
        if !usable_vtep(r.vtep) {
            return Err(RecordError::Field {
                field: "vtep",
                value: r.vtep.to_string(),
            });
        }
        if r.vxlan_port == 0 {
            return Err(RecordError::Field {
                field: "vxlan_port",
                value: "0".into(),
            });
        }
        Ok(r)
    }

    /// The JSON stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An endpoint record after validation, with its MAC parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The record as stored.
    pub record: EndpointRecord,
    /// Its MAC.
    pub mac: [u8; 6],
}

impl Endpoint {
    /// The sandbox's addresses on the network.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.record
            .ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.record.ipv6.map(IpAddr::V6))
    }
}

impl EndpointRecord {
    /// Decodes and checks an endpoint record stored under
    /// `endpoints/<network>/<node>/<sandbox>`.
    pub fn decode(
        network: &str,
        node: &str,
        sandbox: &str,
        bytes: &[u8],
    ) -> Result<Endpoint, RecordError> {
        let r: EndpointRecord = json("endpoint", bytes)?;
        for (field, stored, keyed) in [
            ("network", &r.network, network),
            ("node", &r.node, node),
            ("sandbox", &r.sandbox, sandbox),
        ] {
            if stored != keyed {
                return Err(RecordError::KeyMismatch {
                    field,
                    value: stored.clone(),
                });
            }
        }
        segment("name", &r.name)?;
        if let Some(h) = &r.hostname {
            segment("hostname", h)?;
        }
        for a in &r.aliases {
            segment("aliases", a)?;
        }
        if r.ipv4.is_none() && r.ipv6.is_none() {
            return Err(RecordError::Field {
                field: "ipv4",
                value: "none, and no ipv6".into(),
            });
        }
        for ip in r
            .ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(r.ipv6.map(IpAddr::V6))
        {
            if !usable_vtep(ip) {
                return Err(RecordError::Field {
                    field: "address",
                    value: ip.to_string(),
                });
            }
        }
        let mac = parse_mac(&r.mac)
            .filter(usable_mac)
            .ok_or_else(|| RecordError::Field {
                field: "mac",
                value: r.mac.clone(),
            })?;
        Ok(Endpoint { record: r, mac })
    }

    /// The JSON stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Builds a record with the MAC in its canonical text.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: &str,
        network: &str,
        sandbox: &str,
        name: &str,
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<Ipv6Addr>,
        mac: [u8; 6],
    ) -> Self {
        EndpointRecord {
            node: node.into(),
            network: network.into(),
            sandbox: sandbox.into(),
            name: name.into(),
            hostname: None,
            aliases: Vec::new(),
            ipv4,
            ipv6,
            mac: format_mac(&mac),
        }
    }
}

impl AddressRecord {
    /// Decodes an address claim.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let r: AddressRecord = json("address", bytes)?;
        segment("sandbox", &r.sandbox)?;
        segment("node", &r.node)?;
        Ok(r)
    }

    /// The JSON stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> EndpointRecord {
        EndpointRecord::new(
            "h2",
            "net1",
            "sb1",
            "pink2",
            Some("12.12.12.3".parse().unwrap()),
            None,
            [0x02, 0x42, 12, 12, 12, 3],
        )
    }

    #[test]
    fn endpoint_round_trips() {
        let r = ep();
        let e = EndpointRecord::decode("net1", "h2", "sb1", &r.encode()).unwrap();
        assert_eq!(e.record, r);
        assert_eq!(e.mac, [0x02, 0x42, 12, 12, 12, 3]);
        assert_eq!(e.addresses().count(), 1);
    }

    #[test]
    fn endpoint_under_another_key_is_refused() {
        let r = ep();
        assert_eq!(
            EndpointRecord::decode("net1", "h3", "sb1", &r.encode()),
            Err(RecordError::KeyMismatch {
                field: "node",
                value: "h2".into()
            })
        );
    }

    #[test]
    fn unusable_endpoint_fields_are_refused() {
        let mut r = ep();
        r.mac = "ff:ff:ff:ff:ff:ff".into();
        assert!(matches!(
            EndpointRecord::decode("net1", "h2", "sb1", &r.encode()),
            Err(RecordError::Field { field: "mac", .. })
        ));
        let mut r = ep();
        r.mac = "00:00:00:00:00:00".into();
        assert!(EndpointRecord::decode("net1", "h2", "sb1", &r.encode()).is_err());
        let mut r = ep();
        r.ipv4 = None;
        assert!(EndpointRecord::decode("net1", "h2", "sb1", &r.encode()).is_err());
        let mut r = ep();
        r.ipv4 = Some(Ipv4Addr::BROADCAST);
        assert!(EndpointRecord::decode("net1", "h2", "sb1", &r.encode()).is_err());
        let mut r = ep();
        r.aliases = vec!["a/b".into()];
        assert!(EndpointRecord::decode("net1", "h2", "sb1", &r.encode()).is_err());
        assert!(matches!(
            EndpointRecord::decode("net1", "h2", "sb1", b"{\"node\":"),
            Err(RecordError::Json { .. })
        ));
    }

    #[test]
    fn host_records_are_checked() {
        let h = HostRecord {
            node: "h1".into(),
            vtep: "10.99.0.1".parse().unwrap(),
            vxlan_port: 4789,
            started: 1,
        };
        assert_eq!(HostRecord::decode("h1", &h.encode()), Ok(h.clone()));
        assert!(HostRecord::decode("h2", &h.encode()).is_err());
        for bad in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "::"] {
            let mut b = h.clone();
            b.vtep = bad.parse().unwrap();
            assert!(HostRecord::decode("h1", &b.encode()).is_err(), "{bad}");
        }
        let mut b = h;
        b.vxlan_port = 0;
        assert!(HostRecord::decode("h1", &b.encode()).is_err());
    }

    #[test]
    fn address_records_are_checked() {
        let a = AddressRecord {
            sandbox: "sb".into(),
            node: "h1".into(),
        };
        assert_eq!(AddressRecord::decode(&a.encode()), Ok(a));
        assert!(AddressRecord::decode(br#"{"sandbox":"../x","node":"h"}"#).is_err());
    }
}

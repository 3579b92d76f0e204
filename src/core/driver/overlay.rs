//! The overlay driver: a network that spans the hosts of a cluster. On each host it is a
//! bridge holding the gateway (the same address everywhere, answered locally) and a VXLAN
//! device enslaved to it, whose socket is on the underlay; sandboxes attach to the bridge as
//! on a bridge network. Which remote MAC lives behind which host is the control plane's
//! (`src/core/cluster`), not this file's.
//!
//! The tunnel's source address is this host's own (`--advertise`), so the cluster's record
//! of a network has none: the agent's cluster task writes it into the host's local copy of
//! the record ([`OverlayConfig::local`]), and only a copy that has it can be planned.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{bridge, Driver, DriverData, DriverError, Request, Underlay};
use crate::core::model::{Endpoint, Network};
use crate::core::plan::{owner_alias, Op};

/// The largest VXLAN network identifier (24 bits).
pub const VNI_MAX: u32 = 16_777_215;

/// The VNI of a validated request that gave none: the cluster allocates one before the
/// record is stored, so no stored record has it.
pub const VNI_TO_ALLOCATE: u32 = 0;

/// The IANA port of VXLAN, used unless the cluster configures another.
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// Bytes VXLAN adds to every frame over an IPv4 underlay: outer IPv4 (20), UDP (8), VXLAN
/// (8) and the inner Ethernet header (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// Bytes VXLAN adds to every frame over an IPv6 underlay: the outer header is IPv6 (40).
pub const VXLAN6_OVERHEAD: u32 = 70;

/// What VXLAN adds to every frame over an underlay whose tunnel source is `vtep`.
pub fn overhead_for(vtep: IpAddr) -> u32 {
    if vtep.is_ipv6() {
        VXLAN6_OVERHEAD
    } else {
        VXLAN_OVERHEAD
    }
}

/// Whether the host `node`, whose underlay `underlay` has MTU `underlay_mtu`, can carry
/// overlay `network` of MTU `mtu` (chosen on the host that created it, whose underlay may be
/// larger): the network's MTU is the same on every host, so a host that cannot carry it
/// refuses to build it rather than clamp its own devices (a smaller MTU here would not stop
/// the other hosts from sending it frames its underlay drops).
pub fn check_host_mtu(
    network: &str,
    mtu: u32,
    node: &str,
    underlay: &str,
    underlay_mtu: u32,
    overhead: u32,
) -> Result<(), DriverError> {
    let max = underlay_mtu.saturating_sub(overhead);
    if mtu <= max {
        return Ok(());
    }
    Err(DriverError::HostUnderlayTooSmall {
        network: network.to_string(),
        mtu,
        node: node.to_string(),
        underlay: underlay.to_string(),
        underlay_mtu,
        overhead,
        max,
        needed: u64::from(mtu) + u64::from(overhead),
    })
}

/// The smallest MTU IPv4 allows (RFC 791).
const MIN_MTU: u32 = 68;

/// An overlay network's VXLAN identity, the same on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayConfig {
    /// VXLAN network identifier, 1..=[`VNI_MAX`] ([`VNI_TO_ALLOCATE`] only in a request
    /// not yet given one by the cluster).
    pub vni: u32,
    /// UDP port of the VXLAN devices.
    pub port: u16,
    /// This host's tunnel source (its advertised underlay address): set only in a host's
    /// local copy of the record, by the agent's cluster task; the cluster's record has none,
    /// as the address differs on every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<IpAddr>,
}

impl OverlayConfig {
    /// The cluster-wide identity, without a host's tunnel source.
    pub fn new(vni: u32, port: u16) -> Self {
        OverlayConfig {
            vni,
            port,
            local: None,
        }
    }
}

/// The overlay driver.
#[derive(Debug, Clone, Copy)]
pub struct Overlay;

/// Checks a `--vni`: 1..=[`VNI_MAX`] (0 is refused: many tools read it as "no VNI", and
/// cluster-wide allocation starts at 1).
pub fn check_vni(value: u64) -> Result<u32, DriverError> {
    u32::try_from(value)
        .ok()
        .filter(|v| (1..=VNI_MAX).contains(v))
        .ok_or(DriverError::Vni { value })
}

/// The MTU of overlay `network` whose underlay is `underlay` (name) with MTU `underlay_mtu`,
/// over IPv4 ([`VXLAN_OVERHEAD`]): see [`overlay_mtu_with`].
pub fn overlay_mtu(
    network: &str,
    requested: Option<u32>,
    underlay: &str,
    underlay_mtu: u32,
) -> Result<u32, DriverError> {
    overlay_mtu_with(network, requested, underlay, underlay_mtu, VXLAN_OVERHEAD)
}

/// weft's one overlay MTU check: `requested` when it fits in the underlay after the
/// encapsulation's `overhead` bytes (50 over IPv4, 70 over IPv6), else an error with the
/// arithmetic; the largest that fits when nothing is requested.
pub fn overlay_mtu_with(
    network: &str,
    requested: Option<u32>,
    underlay: &str,
    underlay_mtu: u32,
    overhead: u32,
) -> Result<u32, DriverError> {
    let max = underlay_mtu
        .checked_sub(overhead)
        .filter(|m| *m >= MIN_MTU)
        .ok_or_else(|| DriverError::UnderlayTooSmall {
            underlay: underlay.to_string(),
            underlay_mtu,
            overhead,
        })?;
    match requested {
        None => Ok(max),
        Some(mtu) if mtu <= max => Ok(mtu),
        Some(mtu) => Err(DriverError::MtuTooLarge {
            mtu,
            network: network.to_string(),
            underlay: underlay.to_string(),
            underlay_mtu,
            overhead,
            max,
        }),
    }
}

/// The bridge of an overlay network on every host: `wo-` and 12 hex digits of its id (15
/// bytes, the most an interface name takes).
pub fn overlay_bridge_name(network_id: &str) -> String {
    format!("wo-{}", &network_id[..12.min(network_id.len())])
}

/// The VXLAN device of an overlay network: `wv-` and 12 hex digits of its id (a sandbox's
/// veth is `wv` and hex digits, never a dash).
pub fn vxlan_name(network_id: &str) -> String {
    format!("wv-{}", &network_id[..12.min(network_id.len())])
}

impl Overlay {
    /// The record's overlay data.
    pub fn config(net: &Network) -> Result<&OverlayConfig, DriverError> {
        match &net.driver_data {
            DriverData::Overlay(c) => Ok(c),
            DriverData::None => Err(DriverError::MissingData {
                network: net.name.clone(),
                driver: "overlay",
            }),
        }
    }
}

impl Driver for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn needs_cluster(&self) -> bool {
        true
    }

    /// The VNI must be in range; the bridge is named by weft on every host. A VNI left out
    /// is [`VNI_TO_ALLOCATE`]; an IPv4 subnet left out is chosen when the cluster stores the
    /// network (from candidates free on the creating host).
    fn validate(&self, req: &Request<'_>) -> Result<DriverData, DriverError> {
        let vni = req
            .vni
            .map(check_vni)
            .transpose()?
            .unwrap_or(VNI_TO_ALLOCATE);
        if req.bridge_name.is_some() {
            return Err(DriverError::NotApplicable {
                flag: "--bridge-name (or --opt com.docker.network.bridge.name)",
                driver: "overlay",
                why: "weft names an overlay's bridge wo-<id>, the same on every host; leave it out",
            });
        }
        Ok(DriverData::Overlay(OverlayConfig::new(
            vni,
            req.vxlan_port.unwrap_or(DEFAULT_VXLAN_PORT),
        )))
    }

    fn mtu(
        &self,
        network: &str,
        requested: Option<u32>,
        underlay: Option<&Underlay>,
    ) -> Result<u32, DriverError> {
        let u = underlay.ok_or(DriverError::NeedsCluster)?;
        overlay_mtu_with(network, requested, &u.ifname, u.mtu, u.overhead)
    }

    fn interfaces(&self, net: &Network) -> Vec<String> {
        vec![net.bridge.clone(), vxlan_name(&net.id)]
    }

    /// A bridge network's objects (bridge with the gateway, sysctls, firewall elements) and
    /// the VXLAN device enslaved to the bridge, made before the firewall's elements so that
    /// the network is whole when they attach. Needs the host's tunnel source
    /// ([`OverlayConfig::local`]): without it, [`DriverError::NeedsCluster`].
    fn plan_network(
        &self,
        net: &Network,
        instance: &str,
        dns_port: Option<u16>,
    ) -> Result<Vec<Op>, DriverError> {
        let c = Self::config(net)?;
        let local = c.local.ok_or(DriverError::NeedsCluster)?;
        let vni = check_vni(u64::from(c.vni))?;
        let mut ops = bridge::plan_network(net, instance, dns_port);
        let vxlan = Op::CreateVxlan {
            name: vxlan_name(&net.id),
            vni,
            local,
            port: c.port,
            mtu: net.mtu,
            bridge: net.bridge.clone(),
            alias: owner_alias(instance, &net.id),
        };
        let at = ops
            .iter()
            .position(|op| matches!(op, Op::FirewallAdd(_)))
            .unwrap_or(ops.len());
        ops.insert(at, vxlan);
        Ok(ops)
    }

    /// The VXLAN device, then the bridge's teardown.
    fn plan_network_teardown(&self, net: &Network) -> Vec<Op> {
        let mut ops = vec![Op::DeleteLink {
            ns: crate::core::plan::Ns::Host,
            ifname: vxlan_name(&net.id),
        }];
        ops.extend(bridge::plan_network_teardown(net));
        ops
    }

    /// As on a bridge network: the sandbox's side does not know about the tunnel.
    fn plan_attach(
        &self,
        netns: &str,
        sandbox_id: &str,
        ep: &Endpoint,
        net: &Network,
        default_route: bool,
        instance: &str,
    ) -> Vec<Op> {
        bridge::plan_attach(netns, sandbox_id, ep, net, default_route, instance)
    }

    fn plan_detach(&self, netns: &str, ep: &Endpoint, net: &Network) -> Vec<Op> {
        bridge::plan_detach(netns, ep, Some(&net.bridge))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_range_is_24_bits_without_zero() {
        assert_eq!(check_vni(1), Ok(1));
        assert_eq!(check_vni(16_777_215), Ok(16_777_215));
        for bad in [0, 16_777_216, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(check_vni(bad), Err(DriverError::Vni { value: bad }));
        }
        assert_eq!(
            check_vni(16_777_216).unwrap_err().to_string(),
            "invalid --vni 16777216: a VXLAN network identifier is between 1 and 16777215; give one in that range or leave --vni out"
        );
    }

    #[test]
    fn mtu_is_the_underlay_minus_vxlan_unless_smaller_is_asked() {
        assert_eq!(overlay_mtu("ovl", None, "eth0", 1500), Ok(1450));
        assert_eq!(overlay_mtu("ovl", Some(1450), "eth0", 1500), Ok(1450));
        assert_eq!(overlay_mtu("ovl", Some(1400), "eth0", 1500), Ok(1400));
        assert_eq!(overlay_mtu("ovl", None, "eth0", 9000), Ok(8950));
        let err = overlay_mtu("ovl", Some(1500), "eth0", 1500).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--mtu 1500 is too large for overlay ovl: the underlay eth0 has MTU 1500 and VXLAN needs 50 bytes, so at most 1450"
        );
        assert!(overlay_mtu("ovl", Some(1451), "eth0", 1500).is_err());
        // Underlays too small for any IPv4 MTU after encapsulation, without underflow.
        for tiny in [0, 49, 50, 117] {
            assert!(matches!(
                overlay_mtu("ovl", None, "lo9", tiny),
                Err(DriverError::UnderlayTooSmall { .. })
            ));
        }
        assert_eq!(overlay_mtu("ovl", None, "eth0", 118), Ok(68));
        // A 40-byte IPv6 header.
        assert_eq!(overlay_mtu_with("ovl", None, "eth0", 1500, 70), Ok(1430));
    }

    #[test]
    fn a_host_whose_underlay_is_smaller_refuses_the_network_with_the_arithmetic() {
        assert_eq!(check_host_mtu("ovl", 1450, "h3", "eth0", 1500, 50), Ok(()));
        assert_eq!(check_host_mtu("ovl", 1350, "h3", "eth0", 1400, 50), Ok(()));
        let e = check_host_mtu("ovl", 1450, "h3", "eth0", 1400, 50).unwrap_err();
        assert_eq!(
            e.to_string(),
            "overlay network ovl is not built on host h3: its MTU is 1450, but here the underlay eth0 has MTU 1400 and VXLAN needs 50 bytes, so at most 1350; raise eth0's MTU to 1500, or recreate the network with --mtu 1350"
        );
        // An IPv6 underlay of the same MTU carries 20 bytes less.
        assert!(check_host_mtu(
            "ovl",
            1450,
            "h3",
            "eth0",
            1500,
            overhead_for("fd00::1".parse().unwrap())
        )
        .is_err());
        assert_eq!(overhead_for("10.0.0.1".parse().unwrap()), VXLAN_OVERHEAD);
        // Tiny underlays: no underflow.
        assert!(check_host_mtu("ovl", 68, "h3", "lo9", 10, 50).is_err());
        assert!(Overlay
            .mtu(
                "ovl",
                Some(1431),
                Some(&Underlay {
                    ifname: "eth0".into(),
                    mtu: 1500,
                    overhead: VXLAN6_OVERHEAD
                })
            )
            .is_err());
    }

    #[test]
    fn mtu_needs_the_cluster_s_underlay() {
        assert_eq!(
            Overlay.mtu("ovl", None, None),
            Err(DriverError::NeedsCluster)
        );
        assert_eq!(
            DriverError::NeedsCluster.to_string(),
            "overlay networks need a cluster: start the agent with weft daemon --etcd URL --advertise IP"
        );
    }

    fn request<'a>(subnets: &'a [ipnet::IpNet]) -> Request<'a> {
        Request {
            network: "ovl",
            subnets,
            ..Default::default()
        }
    }

    #[test]
    fn validation_refuses_what_an_overlay_has_no_use_for() {
        let subnets = ["12.12.12.0/24".parse().unwrap()];
        assert_eq!(
            Overlay.validate(&Request {
                vni: Some(42),
                vxlan_port: Some(8472),
                ..request(&subnets)
            }),
            Ok(DriverData::Overlay(OverlayConfig::new(42, 8472)))
        );
        assert!(matches!(
            Overlay.validate(&Request {
                vni: Some(0),
                ..request(&subnets)
            }),
            Err(DriverError::Vni { value: 0 })
        ));
        let named = Overlay
            .validate(&Request {
                bridge_name: Some("br9"),
                ..request(&subnets)
            })
            .unwrap_err();
        assert!(named.to_string().starts_with(
            "--bridge-name (or --opt com.docker.network.bridge.name) does not apply to overlay networks"
        ));
        // No subnet: the cluster chooses one.
        assert_eq!(
            Overlay.validate(&request(&[])),
            Ok(DriverData::Overlay(OverlayConfig::new(
                VNI_TO_ALLOCATE,
                DEFAULT_VXLAN_PORT
            )))
        );
        // And the bridge driver refuses a VNI.
        assert!(matches!(
            bridge::Bridge.validate(&Request {
                vni: Some(42),
                ..request(&subnets)
            }),
            Err(DriverError::NotApplicable { flag, .. }) if flag.starts_with("--vni")
        ));
    }

    #[test]
    fn interface_names_fit_and_differ_from_veths() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(overlay_bridge_name(&id), "wo-0123456789ab");
        assert_eq!(vxlan_name(&id), "wv-0123456789ab");
        assert!(vxlan_name(&id).len() <= 15);
        assert_ne!(
            &vxlan_name(&id)[..3],
            &crate::core::names::host_veth_name(&id, 0)[..3]
        );
    }

    #[test]
    fn the_network_plan_is_a_bridge_with_its_vxlan_device_before_the_firewall() {
        let mut net = Network::example();
        net.driver = "overlay".into();
        net.bridge = overlay_bridge_name(&net.id);
        net.mtu = 1450;
        assert!(matches!(
            Overlay.plan_network(&net, "i1", None),
            Err(DriverError::MissingData { .. })
        ));
        net.driver_data = DriverData::Overlay(OverlayConfig::new(42, 4789));
        assert_eq!(
            Overlay.plan_network(&net, "i1", None),
            Err(DriverError::NeedsCluster),
            "the cluster's record has no tunnel source"
        );
        let local: IpAddr = "10.9.0.1".parse().unwrap();
        net.driver_data = DriverData::Overlay(OverlayConfig {
            local: Some(local),
            ..OverlayConfig::new(42, 4789)
        });
        let ops = Overlay.plan_network(&net, "i1", None).unwrap();
        let bridge_at = ops
            .iter()
            .position(|o| matches!(o, Op::CreateBridge { name, .. } if *name == net.bridge));
        let vxlan_at = ops.iter().position(|o| {
            *o == Op::CreateVxlan {
                name: vxlan_name(&net.id),
                vni: 42,
                local,
                port: 4789,
                mtu: 1450,
                bridge: net.bridge.clone(),
                alias: owner_alias("i1", &net.id),
            }
        });
        let fw_at = ops.iter().position(|o| matches!(o, Op::FirewallAdd(_)));
        assert!(bridge_at < vxlan_at && vxlan_at < fw_at, "{ops:?}");
        assert!(ops
            .iter()
            .any(|o| matches!(o, Op::AddAddress { ifname, .. } if *ifname == net.bridge)));
        let down = Overlay.plan_network_teardown(&net);
        assert!(
            matches!(&down[0], Op::DeleteLink { ifname, .. } if *ifname == vxlan_name(&net.id))
        );
        // The local copy's tunnel source never reaches the cluster's record by accident: a
        // record without one reads back without one.
        let text = serde_json::to_string(&OverlayConfig::new(42, 4789)).unwrap();
        assert_eq!(text, r#"{"vni":42,"port":4789}"#);
    }
}

//! What the kernel holds for an overlay network on one host, as read back for its repair: a
//! VXLAN device's settings, its forwarding (FDB) entries and its neighbour entries, and the
//! underlay interface that carries the tunnel. Plain data; the adapter fills it in.

use std::net::IpAddr;

/// The destination MAC of a VXLAN device's flood entries (broadcast and unknown unicast):
/// one entry per remote VTEP, all under this MAC.
pub const FLOOD_MAC: [u8; 6] = [0; 6];

/// Bytes VXLAN adds to each frame over an IPv4 underlay (the overlay driver's constant).
pub use crate::core::driver::overlay::VXLAN_OVERHEAD;

/// The same over an IPv6 underlay (a 40-byte IPv6 header).
pub const VXLAN6_OVERHEAD: u32 = 70;

/// A VXLAN device's settings as the kernel reports them. `None`: the kernel did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanConfig {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// VXLAN network identifier.
    pub vni: Option<u32>,
    /// Source address of the tunnel's packets.
    pub local: Option<IpAddr>,
    /// UDP destination port.
    pub port: Option<u16>,
    /// Whether the device learns remote MACs from the packets it receives.
    pub learning: Option<bool>,
    /// Whether it answers ARP/ND from its neighbour table.
    pub proxy: Option<bool>,
    /// Whether it reports unknown MACs to user space.
    pub l2miss: Option<bool>,
    /// Whether it reports unknown IP addresses to user space.
    pub l3miss: Option<bool>,
    /// Name of the bridge it is a port of.
    pub master: Option<String>,
    /// Whether its bridge port learns source MACs.
    pub port_learning: Option<bool>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// The interface's alias (`weft:<network id>` for weft's).
    pub alias: Option<String>,
}

/// One forwarding entry of the VXLAN device itself (`bridge fdb ... self`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    /// Destination MAC ([`FLOOD_MAC`] for a flood entry).
    pub mac: [u8; 6],
    /// Remote VTEP; `None` for an entry without one.
    pub dst: Option<IpAddr>,
    /// Written on purpose (never aged), as opposed to learned.
    pub permanent: bool,
}

/// One neighbour entry on the VXLAN device (what its ARP/ND proxy answers).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OverlayNeighbour {
    /// The remote sandbox's address.
    pub ip: IpAddr,
    /// Its MAC, if the entry has one.
    pub mac: Option<[u8; 6]>,
    /// The kernel's `NUD_*` state bits.
    pub state: u16,
}

/// `NUD_PERMANENT`: an entry written on purpose, never replaced by what the wire says.
pub const NUD_PERMANENT: u16 = 0x80;

impl OverlayNeighbour {
    /// Whether the entry is permanent.
    pub fn permanent(&self) -> bool {
        self.state & NUD_PERMANENT != 0
    }
}

/// Everything read back about one VXLAN device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanObserved {
    /// Its settings.
    pub config: VxlanConfig,
    /// Its own forwarding entries (not the bridge's), sorted.
    pub fdb: Vec<FdbEntry>,
    /// The MACs its bridge sends to it by a static, sticky entry (what `AddFdb` writes
    /// for a unicast MAC besides the device's own entry), sorted.
    pub bridge_macs: Vec<[u8; 6]>,
    /// Its neighbour entries, sorted.
    pub neighbours: Vec<OverlayNeighbour>,
}

impl VxlanObserved {
    /// Whether what `AddFdb` writes for `mac` → `dst` is all there: the device's permanent
    /// entry and, for a unicast MAC, the bridge's static entry to the device.
    pub fn has_fdb(&self, mac: [u8; 6], dst: IpAddr) -> bool {
        let tunnel = self
            .fdb
            .iter()
            .any(|e| e.mac == mac && e.dst == Some(dst) && e.permanent);
        tunnel && (mac == FLOOD_MAC || self.bridge_macs.contains(&mac))
    }

    /// Whether there is a permanent neighbour entry `ip` → `mac`.
    pub fn has_neighbour(&self, ip: IpAddr, mac: [u8; 6]) -> bool {
        self.neighbours
            .iter()
            .any(|n| n.ip == ip && n.mac == Some(mac) && n.permanent())
    }

    /// The VTEPs the flood entries send broadcast and unknown traffic to.
    pub fn flood_dsts(&self) -> Vec<IpAddr> {
        self.fdb
            .iter()
            .filter(|e| e.mac == FLOOD_MAC)
            .filter_map(|e| e.dst)
            .collect()
    }
}

/// The interface holding the advertised underlay address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayLink {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Its MTU: the overlay's is at most this minus the encapsulation.
    pub mtu: u32,
    /// The advertised address it holds (its family decides the encapsulation's size).
    pub local: IpAddr,
}

impl UnderlayLink {
    /// Bytes the encapsulation adds on this underlay.
    pub fn overhead(&self) -> u32 {
        match self.local {
            IpAddr::V4(_) => VXLAN_OVERHEAD,
            IpAddr::V6(_) => VXLAN6_OVERHEAD,
        }
    }

    /// The overlay's MTU over this interface: `requested`, or the most it carries when none
    /// is asked for (the overlay driver's check, with this family's overhead).
    pub fn overlay_mtu(
        &self,
        requested: Option<u32>,
    ) -> Result<u32, crate::core::driver::DriverError> {
        crate::core::driver::overlay::overlay_mtu_with(
            "",
            requested,
            &self.name,
            self.mtu,
            self.overhead(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_require_permanent_entries() {
        let dst: IpAddr = "10.0.0.2".parse().unwrap();
        let mac = [2, 0x42, 12, 12, 12, 4];
        let obs = VxlanObserved {
            fdb: vec![
                FdbEntry {
                    mac: FLOOD_MAC,
                    dst: Some(dst),
                    permanent: true,
                },
                FdbEntry {
                    mac,
                    dst: Some(dst),
                    permanent: false,
                },
            ],
            neighbours: vec![OverlayNeighbour {
                ip: "12.12.12.4".parse().unwrap(),
                mac: Some(mac),
                state: NUD_PERMANENT,
            }],
            ..VxlanObserved::default()
        };
        assert!(!obs.has_fdb(mac, dst), "a learned entry is not one written");
        let mut written = obs.clone();
        written.fdb[1].permanent = true;
        assert!(!written.has_fdb(mac, dst), "the bridge entry is missing");
        written.bridge_macs.push(mac);
        assert!(written.has_fdb(mac, dst));
        assert!(obs.has_fdb(FLOOD_MAC, dst));
        assert_eq!(obs.flood_dsts(), vec![dst]);
        assert!(obs.has_neighbour("12.12.12.4".parse().unwrap(), mac));
        assert!(!obs.has_neighbour("12.12.12.5".parse().unwrap(), mac));
    }

    #[test]
    fn overlay_mtu_is_the_underlays_minus_50_and_never_above() {
        // (Minus 70 on an IPv6 underlay.)
        let u = UnderlayLink {
            name: "eth1".into(),
            index: 2,
            mtu: 1500,
            local: "10.0.0.1".parse().unwrap(),
        };
        assert_eq!(u.overlay_mtu(None), Ok(1450));
        assert_eq!(u.overlay_mtu(Some(1400)), Ok(1400));
        assert_eq!(u.overlay_mtu(Some(1450)), Ok(1450));
        assert!(u.overlay_mtu(Some(1451)).is_err());
        let v6 = UnderlayLink {
            local: "fd00::1".parse().unwrap(),
            ..u
        };
        assert_eq!(v6.overlay_mtu(None), Ok(1430));
    }
}

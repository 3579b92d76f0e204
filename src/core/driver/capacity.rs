//! How many sandboxes a network's bridge can still take. A Linux bridge numbers its ports
//! 1..=1023 (`BR_MAX_PORTS` is 1024, port 0 unused): the kernel refuses the 1,024th with
//! `EXFULL`, whose text ("Exchange full", or musl's "No error information") says nothing of
//! the cause. Every endpoint of a network on this host is a port of its bridge, and so are
//! the ports the driver itself adds (an overlay's VXLAN device), so an attach is refused
//! here, before anything is allocated or made, when no port is left.

use thiserror::Error;

use super::Driver;

/// The most ports a Linux bridge holds.
pub const BRIDGE_MAX_PORTS: usize = 1023;

/// A network whose bridge has no port left for one more sandbox.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("network {network:?} is full: a Linux bridge holds at most {BRIDGE_MAX_PORTS} ports ({in_use} in use); create another network and connect the sandbox to it")]
pub struct NetworkFull {
    /// The network's name.
    pub network: String,
    /// The ports weft counts on its bridge: its endpoints here and the driver's own ports.
    pub in_use: usize,
}

/// Whether network `network` of driver `driver`, with `endpoints` endpoints on this host,
/// has a bridge port left for one more.
pub fn check_room(driver: &dyn Driver, network: &str, endpoints: usize) -> Result<(), NetworkFull> {
    let in_use = endpoints.saturating_add(driver.own_ports());
    if in_use < BRIDGE_MAX_PORTS {
        Ok(())
    } else {
        Err(NetworkFull {
            network: network.to_string(),
            in_use,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{bridge::Bridge, overlay::Overlay};
    use super::*;

    #[test]
    fn a_bridge_network_takes_its_1023rd_sandbox_and_refuses_the_1024th() {
        assert_eq!(check_room(&Bridge, "bench", 0), Ok(()));
        assert_eq!(check_room(&Bridge, "bench", 1022), Ok(()));
        let full = check_room(&Bridge, "bench", 1023).unwrap_err();
        assert_eq!(
            full.to_string(),
            "network \"bench\" is full: a Linux bridge holds at most 1023 ports (1023 in use); create another network and connect the sandbox to it"
        );
        // More than the bridge can hold (ports the count missed): still refused, and said.
        assert_eq!(
            check_room(&Bridge, "bench", 5000),
            Err(NetworkFull {
                network: "bench".into(),
                in_use: 5000
            })
        );
        assert!(check_room(&Bridge, "bench", usize::MAX).is_err());
    }

    #[test]
    fn an_overlay_counts_its_vxlan_port() {
        assert_eq!(check_room(&Overlay, "ovl", 1021), Ok(()));
        assert_eq!(
            check_room(&Overlay, "ovl", 1022),
            Err(NetworkFull {
                network: "ovl".into(),
                in_use: 1023
            })
        );
        assert!(check_room(&Overlay, "ovl", usize::MAX).is_err());
    }
}

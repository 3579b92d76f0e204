//! What a query from a stranger (an address that is no sandbox on the network whose gateway
//! it asks) gets over UDP: REFUSED only when its source cannot be forged, else nothing.
//!
//! A UDP source address is whatever the sender wrote. The server listens on every address of
//! the host, so a host on another interface may send to `GATEWAY:PORT` with a victim's
//! address as source: a reply would go to the victim (reflection), and one to a loopback
//! source that arrived from outside (`route_localnet` is on for weft's bridges) would reach a
//! host service on 127.0.0.1 with bytes the sender chose. The kernel vouches for the source
//! only on the loopback interface (a host process), and on a network's own bridge, where
//! the port guard lets each sandbox send from its own addresses alone (a sandbox being
//! created asks before its name is answered). TCP needs no such rule: its handshake proves
//! the source.

use std::net::IpAddr;

/// The interface a datagram arrived on, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// The host's loopback interface: sent by a host process.
    Loopback,
    /// The bridge of the network whose gateway it was sent to.
    OwnBridge,
    /// Any other interface: another network's bridge, a LAN, a tunnel.
    Other,
}

/// Whether a stranger's datagram from `src` that arrived on `ingress` is answered REFUSED
/// (otherwise it is dropped without a reply).
pub fn may_refuse(src: IpAddr, ingress: Ingress) -> bool {
    match ingress {
        Ingress::Loopback => true,
        Ingress::OwnBridge => !special(src),
        Ingress::Other => false,
    }
}

/// Sources no sandbox sends from: loopback, unspecified, multicast, broadcast, and
/// IPv4-mapped IPv6 addresses (which an IPv6 socket would answer over IPv4).
fn special(src: IpAddr) -> bool {
    match src {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_unspecified() || a.is_multicast() || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || a.to_ipv4_mapped().is_some()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refused_only_where_the_source_cannot_be_forged() {
        // A host process, whatever address it sends from.
        assert!(may_refuse(ip("10.1.0.1"), Ingress::Loopback));
        assert!(may_refuse(ip("127.0.0.1"), Ingress::Loopback));
        // A sandbox not answered yet, on its own network's bridge.
        assert!(may_refuse(ip("10.1.0.9"), Ingress::OwnBridge));
        assert!(may_refuse(ip("fe80::1"), Ingress::OwnBridge));
        // Forged or impossible sources on a bridge: no reply to the host's loopback, to a
        // broadcast, or over IPv4 through a mapped address.
        for s in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.251",
            "::1",
            "::",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.0.2",
        ] {
            assert!(!may_refuse(ip(s), Ingress::OwnBridge), "{s}");
        }
        // From another interface (a LAN, another network's bridge): never a reply.
        assert!(!may_refuse(ip("10.1.0.2"), Ingress::Other));
        assert!(!may_refuse(ip("192.0.2.7"), Ingress::Other));
    }
}

//! Reading `resolv.conf` texts: the nameservers they name, and whether they hand every lookup
//! to systemd-resolved's local stub (whose upstream servers, listed in another file, are then
//! the host's real resolvers). Used by IPAM (a subnet must not contain the host's resolvers)
//! and for a sandbox's own `resolv.conf`, whose name server this also chooses ([`nameserver`]).

use std::net::{IpAddr, Ipv4Addr};

use crate::core::model::{NetMode, Network};

/// Who a sandbox's `resolv.conf` names as its name server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nameserver {
    /// The host's resolvers (loopback ones left out), or the sandbox's `--dns` servers: a
    /// sandbox on no network with DNS.
    Host,
    /// The gateway of its first network with DNS: the host agent answers there.
    Gateway(IpAddr),
    /// None (`--network none`: nothing could be reached).
    Nothing,
}

/// The name server of a sandbox in `mode` whose endpoints are on `nets` (in connect order):
/// the gateway of the first network with DNS (its IPv4 gateway if it has one), else the
/// host's; none without a network.
pub fn nameserver<'a>(mode: NetMode, nets: impl IntoIterator<Item = &'a Network>) -> Nameserver {
    match mode {
        NetMode::Host => Nameserver::Host,
        NetMode::None => Nameserver::Nothing,
        NetMode::Bridge => nets
            .into_iter()
            .filter(|n| n.dns())
            .find_map(|n| n.v4().or(n.v6()).map(|s| s.gateway))
            .map_or(Nameserver::Host, Nameserver::Gateway),
    }
}

/// The addresses systemd-resolved's local stub listens on: a `resolv.conf` naming only these
/// hands every lookup to resolved, whose upstream servers are the real ones.
pub const RESOLVED_STUBS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(127, 0, 0, 53), Ipv4Addr::new(127, 0, 0, 54)];

/// The `nameserver` addresses of a `resolv.conf` text, in order. An IPv6 zone (`%eth0`) is
/// dropped; lines that are not a `nameserver` line with an address are skipped.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let value = words.next()?;
            let addr = value.split_once('%').map_or(value, |(a, _)| a);
            addr.parse().ok()
        })
        .collect()
}

/// Whether the text names nameservers and all of them are systemd-resolved's stub.
pub fn only_resolved_stub(text: &str) -> bool {
    all_resolved_stub(&nameservers(text))
}

/// Whether there are nameservers and all of them are systemd-resolved's stub.
pub fn all_resolved_stub(listed: &[IpAddr]) -> bool {
    !listed.is_empty()
        && listed
            .iter()
            .all(|a| matches!(a, IpAddr::V4(v4) if RESOLVED_STUBS.contains(v4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_nameservers() {
        let text = "# generated\n\
            nameserver 10.255.255.53\n\
            \tnameserver   fe80::1%eth0  \n\
            nameserver not-an-address\n\
            ; nameserver 10.9.9.9\n\
            search lan\n\
            options edns0 trust-ad\n\
            nameserver 2001:db8::53\n\
            nameserver\n";
        assert_eq!(
            nameservers(text),
            [ip("10.255.255.53"), ip("fe80::1"), ip("2001:db8::53")]
        );
    }

    fn network(name: &str, subnets: &[(&str, &str)], dns: bool) -> Network {
        use crate::core::model::{Status, SubnetConfig};
        let mut options = std::collections::BTreeMap::new();
        if !dns {
            options.insert("dns".to_string(), "false".to_string());
        }
        Network {
            name: name.into(),
            id: name.repeat(64 / name.len().max(1)),
            driver: "bridge".into(),
            driver_data: Default::default(),
            internal: false,
            ipv6: false,
            mtu: 1500,
            bridge: format!("wbr-{name}"),
            subnets: subnets
                .iter()
                .map(|(s, g)| SubnetConfig {
                    subnet: s.parse().unwrap(),
                    gateway: g.parse().unwrap(),
                    ip_range: None,
                })
                .collect(),
            options,
            labels: Default::default(),
            aux_addresses: Default::default(),
            allocation: None,
            status: Status::Created,
            owner_pid: None,
            owner_start: None,
            created: 0,
        }
    }

    #[test]
    fn the_first_network_with_dns_names_its_gateway() {
        let off = network("a", &[("10.1.0.0/24", "10.1.0.1")], false);
        let dual = network(
            "b",
            &[("fd00:2::/64", "fd00:2::1"), ("10.2.0.0/24", "10.2.0.1")],
            true,
        );
        let v6 = network("c", &[("fd00:3::/64", "fd00:3::1")], true);
        let gw = |s: &str| Nameserver::Gateway(ip(s));
        assert_eq!(nameserver(NetMode::Bridge, [&off, &dual]), gw("10.2.0.1"));
        assert_eq!(nameserver(NetMode::Bridge, [&v6, &dual]), gw("fd00:3::1"));
        assert_eq!(nameserver(NetMode::Bridge, [&off]), Nameserver::Host);
        assert_eq!(nameserver(NetMode::Bridge, []), Nameserver::Host);
        assert_eq!(nameserver(NetMode::None, []), Nameserver::Nothing);
        assert_eq!(nameserver(NetMode::Host, []), Nameserver::Host);
    }

    #[test]
    fn only_the_stub_is_recognised() {
        assert!(only_resolved_stub("nameserver 127.0.0.53\noptions edns0\n"));
        assert!(only_resolved_stub(
            "nameserver 127.0.0.53\nnameserver 127.0.0.54\n"
        ));
        assert!(!only_resolved_stub(
            "nameserver 127.0.0.53\nnameserver 9.9.9.9\n"
        ));
        assert!(!only_resolved_stub("nameserver 127.0.0.1\n"));
        assert!(!only_resolved_stub("search lan\n"));
        assert!(!only_resolved_stub(""));
    }
}

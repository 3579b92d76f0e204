//! Reading `resolv.conf` texts: the nameservers they name, and whether they hand every lookup
//! to systemd-resolved's local stub (whose upstream servers, listed in another file, are then
//! the host's real resolvers). Used by IPAM (a subnet must not contain the host's resolvers)
//! and for a sandbox's own `resolv.conf`.

use std::net::{IpAddr, Ipv4Addr};

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

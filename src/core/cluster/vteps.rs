//! The cluster's members as the firewall sees them: the VTEP addresses whose datagrams a
//! host's VXLAN ports take (`vteps4`/`vteps6` in weft's table, see
//! [`crate::core::firewall`]), computed from a node's [`ClusterView`], and the element
//! changes that bring the kernel's sets there.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::view::ClusterView;

/// The member VTEPs: every live host's in `view` but this host's own (`own`). No host sends
/// VXLAN to itself, and a datagram from the own address to the own port can only come from a
/// process on this host (any user's, or a sandbox sharing the host's namespace): it would put
/// its inner frame on the overlay past every port guard. Addresses no datagram can come from
/// (unspecified, multicast) are left out whatever a record says; an IPv4-mapped IPv6 address
/// is taken as the IPv4 address it is (datagrams from it arrive as IPv4).
pub fn members(view: &ClusterView, own: IpAddr) -> BTreeSet<IpAddr> {
    let own = own.to_canonical();
    view.hosts()
        .values()
        .map(|h| h.vtep.to_canonical())
        .filter(|a| *a != own && !a.is_unspecified() && !a.is_multicast())
        .collect()
}

/// What to add to and remove from the sets holding `have` so that they hold `want`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VtepChanges {
    /// Members missing from the sets.
    pub add: Vec<IpAddr>,
    /// Addresses in the sets that are no member (any more).
    pub remove: Vec<IpAddr>,
}

impl VtepChanges {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The changes from `have` to `want`.
pub fn changes(want: &BTreeSet<IpAddr>, have: &BTreeSet<IpAddr>) -> VtepChanges {
    VtepChanges {
        add: want.difference(have).copied().collect(),
        remove: have.difference(want).copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cluster::keys::Key;
    use crate::core::cluster::records::HostRecord;

    fn join(v: &mut ClusterView, node: &str, vtep: &str) {
        let rec = HostRecord {
            node: node.into(),
            vtep: vtep.parse().unwrap(),
            vxlan_port: 4789,
            started: 0,
        };
        v.apply(
            &Key::Host { node: node.into() }.render(),
            Some(&rec.encode()),
        );
    }

    fn set(addrs: &[&str]) -> BTreeSet<IpAddr> {
        addrs.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn members_are_the_other_live_hosts() {
        let own: IpAddr = "10.0.0.1".parse().unwrap();
        let mut v = ClusterView::new("h1");
        assert_eq!(members(&v, own), set(&[]));
        join(&mut v, "h2", "10.0.0.2");
        join(&mut v, "h3", "fd00::3");
        join(&mut v, "h1", "10.0.0.1");
        assert_eq!(members(&v, own), set(&["10.0.0.2", "fd00::3"]));
        // A host gone (its lease expired) is no member any more.
        v.apply(&Key::Host { node: "h2".into() }.render(), None);
        assert_eq!(members(&v, own), set(&["fd00::3"]));
        // A record naming an address nothing sends from adds nothing; nor does one naming
        // this host's own address, even spelled as IPv4-mapped IPv6; another host's mapped
        // address counts as the IPv4 address its datagrams come from.
        join(&mut v, "h4", "0.0.0.0");
        join(&mut v, "h5", "239.1.1.1");
        join(&mut v, "h6", "::ffff:10.0.0.1");
        join(&mut v, "h7", "::ffff:10.0.0.7");
        assert_eq!(members(&v, own), set(&["fd00::3", "10.0.0.7"]));
    }

    #[test]
    fn changes_add_the_missing_and_remove_the_rest() {
        let c = changes(
            &set(&["10.0.0.1", "10.0.0.2"]),
            &set(&["10.0.0.2", "10.0.0.9"]),
        );
        assert_eq!(c.add, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.remove, vec!["10.0.0.9".parse::<IpAddr>().unwrap()]);
        assert!(changes(&set(&["fd00::1"]), &set(&["fd00::1"])).is_empty());
    }
}

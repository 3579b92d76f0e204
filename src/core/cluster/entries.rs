//! The entries a node's VXLAN devices hold, as values, and the level-triggered diff that
//! repairs a device: desired (from the [`super::view::ClusterView`]) against what the
//! kernel reports.
//!
//! On a network's VXLAN device, for every sandbox on another live node: a permanent
//! neighbour entry (its address → its MAC), answered locally by the device's ARP/ND proxy
//! so that ARP never crosses the tunnel, and a permanent FDB entry (its MAC → that node's
//! VTEP). For every other live node with a sandbox on the network: an all-zero-MAC FDB entry
//! (broadcast and unknown unicast go there). Nothing relies on learning or aging.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// The all-zero MAC of flood entries.
pub const FLOOD_MAC: [u8; 6] = [0; 6];

/// One entry on a VXLAN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// A neighbour entry: `ip` is at `mac`.
    Neigh {
        /// The remote sandbox's address.
        ip: IpAddr,
        /// Its MAC.
        mac: [u8; 6],
    },
    /// An FDB entry: frames for `mac` go to the VTEP `dst` ([`FLOOD_MAC`] for the flood list).
    Fdb {
        /// Destination MAC, or all-zero.
        mac: [u8; 6],
        /// The remote node's underlay address.
        dst: IpAddr,
    },
}

/// A change to one network's VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Write the entry (replacing a neighbour entry for the same address).
    Add {
        /// Network id.
        network: String,
        /// The entry.
        entry: Entry,
    },
    /// Delete the entry.
    Remove {
        /// Network id.
        network: String,
        /// The entry.
        entry: Entry,
    },
}

/// What the kernel reports for one VXLAN device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedEntries {
    /// Its own (NTF_SELF) FDB entries: (MAC, destination).
    pub fdb: Vec<([u8; 6], IpAddr)>,
    /// Its neighbour entries: (address, MAC if any, whether permanent).
    pub neigh: Vec<(IpAddr, Option<[u8; 6]>, bool)>,
}

/// The changes that make a device's entries exactly `desired`. Every entry on the device is
/// weft's (the device is), so extra entries are removed; a neighbour entry with another MAC,
/// or not permanent (learnt, or forged into a stale state), is rewritten.
pub fn repair(network: &str, desired: &BTreeSet<Entry>, observed: &ObservedEntries) -> Vec<Change> {
    let mut out = Vec::new();
    let mut have: BTreeSet<Entry> = BTreeSet::new();
    for (mac, dst) in &observed.fdb {
        have.insert(Entry::Fdb {
            mac: *mac,
            dst: *dst,
        });
    }
    for (ip, mac, permanent) in &observed.neigh {
        match (mac, permanent) {
            (Some(mac), true) => {
                have.insert(Entry::Neigh { ip: *ip, mac: *mac });
            }
            // Not weft's kind of entry: gone, so that a desired one is written over it (or
            // nothing stays when none is desired).
            _ => {
                let wanted = desired
                    .iter()
                    .any(|e| matches!(e, Entry::Neigh { ip: d, .. } if d == ip));
                if !wanted {
                    out.push(Change::Remove {
                        network: network.to_string(),
                        entry: Entry::Neigh {
                            ip: *ip,
                            mac: mac.unwrap_or(FLOOD_MAC),
                        },
                    });
                }
            }
        }
    }
    for e in have.difference(desired) {
        // A neighbour entry with the wrong MAC is replaced by the add below, not removed
        // first: no moment without an entry.
        if let Entry::Neigh { ip, .. } = e {
            if desired
                .iter()
                .any(|d| matches!(d, Entry::Neigh { ip: i, .. } if i == ip))
            {
                continue;
            }
        }
        out.push(Change::Remove {
            network: network.to_string(),
            entry: *e,
        });
    }
    for e in desired.difference(&have) {
        out.push(Change::Add {
            network: network.to_string(),
            entry: *e,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: [u8; 6] = [2, 0x42, 12, 12, 12, 2];
    const M2: [u8; 6] = [2, 0x42, 12, 12, 12, 3];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn missing_entries_are_added_and_extra_removed() {
        let desired: BTreeSet<Entry> = [
            Entry::Neigh {
                ip: ip("12.12.12.2"),
                mac: M1,
            },
            Entry::Fdb {
                mac: M1,
                dst: ip("10.0.0.2"),
            },
            Entry::Fdb {
                mac: FLOOD_MAC,
                dst: ip("10.0.0.2"),
            },
        ]
        .into();
        let observed = ObservedEntries {
            fdb: vec![(M1, ip("10.0.0.2")), (M2, ip("10.0.0.9"))],
            neigh: vec![],
        };
        let changes = repair("n", &desired, &observed);
        assert_eq!(
            changes,
            vec![
                Change::Remove {
                    network: "n".into(),
                    entry: Entry::Fdb {
                        mac: M2,
                        dst: ip("10.0.0.9")
                    }
                },
                Change::Add {
                    network: "n".into(),
                    entry: Entry::Neigh {
                        ip: ip("12.12.12.2"),
                        mac: M1
                    }
                },
                Change::Add {
                    network: "n".into(),
                    entry: Entry::Fdb {
                        mac: FLOOD_MAC,
                        dst: ip("10.0.0.2")
                    }
                },
            ]
        );
    }

    #[test]
    fn a_forged_or_stale_neighbour_is_rewritten_not_trusted() {
        let desired: BTreeSet<Entry> = [Entry::Neigh {
            ip: ip("12.12.12.2"),
            mac: M1,
        }]
        .into();
        // Wrong MAC: replaced by an add, no removal first.
        let observed = ObservedEntries {
            fdb: vec![],
            neigh: vec![(ip("12.12.12.2"), Some(M2), true)],
        };
        assert_eq!(
            repair("n", &desired, &observed),
            vec![Change::Add {
                network: "n".into(),
                entry: Entry::Neigh {
                    ip: ip("12.12.12.2"),
                    mac: M1
                }
            }]
        );
        // Right MAC but not permanent: rewritten as permanent.
        let observed = ObservedEntries {
            fdb: vec![],
            neigh: vec![(ip("12.12.12.2"), Some(M1), false)],
        };
        assert_eq!(repair("n", &desired, &observed).len(), 1);
        // An entry nobody wants, in any state, goes.
        let observed = ObservedEntries {
            fdb: vec![],
            neigh: vec![(ip("12.12.12.9"), None, false)],
        };
        assert!(matches!(
            repair("n", &BTreeSet::new(), &observed).as_slice(),
            [Change::Remove { .. }]
        ));
    }

    #[test]
    fn nothing_to_do_when_in_sync() {
        let desired: BTreeSet<Entry> = [
            Entry::Neigh {
                ip: ip("12.12.12.2"),
                mac: M1,
            },
            Entry::Fdb {
                mac: M1,
                dst: ip("10.0.0.2"),
            },
        ]
        .into();
        let observed = ObservedEntries {
            fdb: vec![(M1, ip("10.0.0.2"))],
            neigh: vec![(ip("12.12.12.2"), Some(M1), true)],
        };
        assert!(repair("n", &desired, &observed).is_empty());
    }
}

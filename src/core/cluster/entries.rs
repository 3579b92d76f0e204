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

use crate::core::overlay_observed::VxlanObserved;
pub use crate::core::overlay_observed::FLOOD_MAC;
use crate::core::plan::{Ns, Op};

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

/// An entry a kernel notification says was removed from a VXLAN device, as far as the
/// notification names it: what the agent needs to ask the view, one entry at a time, whether
/// the removal was drift (an entry still wanted) or its own write (an entry no longer wanted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Removed {
    /// A neighbour entry for this address (whatever MAC it held: the agent never deletes the
    /// entry of an address it still wants, it writes the new MAC over it).
    Neigh {
        /// Its address.
        ip: IpAddr,
    },
    /// The device's own forwarding entry: `mac` ([`FLOOD_MAC`] for a flood entry) to `dst`.
    Fdb {
        /// Destination MAC.
        mac: [u8; 6],
        /// The remote VTEP.
        dst: IpAddr,
    },
    /// The bridge's entry sending `mac` to the device (the other half of a unicast
    /// [`Entry::Fdb`]).
    BridgeFdb {
        /// The MAC.
        mac: [u8; 6],
    },
}

impl Removed {
    /// What a removal notification names, from its fields: `bridge` for an `AF_BRIDGE`
    /// (forwarding) entry, `dst` its `NDA_DST` (a neighbour's address; a forwarding entry's
    /// remote VTEP, absent from the bridge's own entries), `mac` its `NDA_LLADDR`. `None`
    /// when the fields do not name an entry (the caller then reads the device back).
    pub fn from_fields(bridge: bool, dst: Option<IpAddr>, mac: Option<[u8; 6]>) -> Option<Self> {
        match (bridge, dst, mac) {
            (false, Some(ip), _) => Some(Removed::Neigh { ip }),
            (true, Some(dst), Some(mac)) => Some(Removed::Fdb { mac, dst }),
            (true, None, Some(mac)) => Some(Removed::BridgeFdb { mac }),
            _ => None,
        }
    }
}

impl Entry {
    /// The entry an addition notification names, from its fields (as for
    /// [`Removed::from_fields`]): a neighbour with its MAC, or the device's own forwarding
    /// entry with its VTEP. `None` for anything else (the bridge's half of a forwarding
    /// entry, a neighbour still without a MAC).
    pub fn from_fields(bridge: bool, dst: Option<IpAddr>, mac: Option<[u8; 6]>) -> Option<Self> {
        match (bridge, dst, mac) {
            (false, Some(ip), Some(mac)) => Some(Entry::Neigh { ip, mac }),
            (true, Some(dst), Some(mac)) => Some(Entry::Fdb { mac, dst }),
            _ => None,
        }
    }
}

impl Change {
    /// The kernel operation on the VXLAN device `ifname` that makes this change.
    pub fn op(&self, ifname: &str) -> Op {
        let ifname = ifname.to_string();
        match self {
            Change::Add {
                entry: Entry::Neigh { ip, mac },
                ..
            } => Op::AddNeighbour {
                ns: Ns::Host,
                ifname,
                ip: *ip,
                mac: *mac,
            },
            Change::Remove {
                entry: Entry::Neigh { ip, .. },
                ..
            } => Op::DeleteNeighbour {
                ns: Ns::Host,
                ifname,
                ip: *ip,
            },
            Change::Add {
                entry: Entry::Fdb { mac, dst },
                ..
            } => Op::AddFdb {
                ifname,
                mac: *mac,
                dst: *dst,
            },
            Change::Remove {
                entry: Entry::Fdb { mac, dst },
                ..
            } => Op::DeleteFdb {
                ifname,
                mac: *mac,
                dst: *dst,
            },
        }
    }
}

/// The changes that make a device's entries exactly `desired`. Every entry on the device is
/// weft's (the device is), so extra entries are removed; an FDB entry missing its bridge half,
/// or a neighbour entry with another MAC or not permanent (learnt, or forged into a stale
/// state), is written again.
pub fn repair(network: &str, desired: &BTreeSet<Entry>, observed: &VxlanObserved) -> Vec<Change> {
    let change = |add: bool, entry: Entry| {
        let network = network.to_string();
        if add {
            Change::Add { network, entry }
        } else {
            Change::Remove { network, entry }
        }
    };
    let wants_neigh = |ip: &IpAddr| {
        desired
            .iter()
            .any(|e| matches!(e, Entry::Neigh { ip: d, .. } if d == ip))
    };
    let mut out = Vec::new();
    let mut have: BTreeSet<Entry> = BTreeSet::new();
    for f in &observed.fdb {
        // An entry without a destination is none weft writes (learning is off); nothing
        // names it to delete, and it sends nowhere.
        let Some(dst) = f.dst else { continue };
        let entry = Entry::Fdb { mac: f.mac, dst };
        if f.permanent && observed.has_fdb(f.mac, dst) {
            have.insert(entry);
        } else if !desired.contains(&entry) {
            out.push(change(false, entry));
        }
    }
    for n in &observed.neighbours {
        match n.mac {
            Some(mac) if n.permanent() => {
                have.insert(Entry::Neigh { ip: n.ip, mac });
            }
            // Not weft's kind of entry: deleted unless a desired one is written over it.
            mac if !wants_neigh(&n.ip) => out.push(change(
                false,
                Entry::Neigh {
                    ip: n.ip,
                    mac: mac.unwrap_or(FLOOD_MAC),
                },
            )),
            _ => {}
        }
    }
    for e in have.difference(desired) {
        // A neighbour entry with the wrong MAC is replaced by the add below, not removed
        // first: no moment without an entry.
        if matches!(e, Entry::Neigh { ip, .. } if wants_neigh(ip)) {
            continue;
        }
        out.push(change(false, *e));
    }
    for e in desired.difference(&have) {
        out.push(change(true, *e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::overlay_observed::{FdbEntry, OverlayNeighbour, NUD_PERMANENT};

    struct ObservedEntries {
        fdb: Vec<([u8; 6], IpAddr)>,
        neigh: Vec<(IpAddr, Option<[u8; 6]>, bool)>,
    }

    /// What the kernel shows for these entries, every FDB entry complete (with its bridge
    /// half).
    fn seen(o: ObservedEntries) -> VxlanObserved {
        VxlanObserved {
            fdb: o
                .fdb
                .iter()
                .map(|(mac, dst)| FdbEntry {
                    mac: *mac,
                    dst: Some(*dst),
                    permanent: true,
                })
                .collect(),
            bridge_macs: o.fdb.iter().map(|(mac, _)| *mac).collect(),
            neighbours: o
                .neigh
                .iter()
                .map(|(ip, mac, permanent)| OverlayNeighbour {
                    ip: *ip,
                    mac: *mac,
                    state: if *permanent { NUD_PERMANENT } else { 0x02 },
                })
                .collect(),
            ..Default::default()
        }
    }

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
        let changes = repair("n", &desired, &seen(observed));
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
            repair("n", &desired, &seen(observed)),
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
        assert_eq!(repair("n", &desired, &seen(observed)).len(), 1);
        // An entry nobody wants, in any state, goes.
        let observed = ObservedEntries {
            fdb: vec![],
            neigh: vec![(ip("12.12.12.9"), None, false)],
        };
        assert!(matches!(
            repair("n", &BTreeSet::new(), &seen(observed)).as_slice(),
            [Change::Remove { .. }]
        ));
    }

    #[test]
    fn an_fdb_entry_missing_its_bridge_half_is_written_again() {
        let entry = Entry::Fdb {
            mac: M1,
            dst: ip("10.0.0.2"),
        };
        let mut observed = seen(ObservedEntries {
            fdb: vec![(M1, ip("10.0.0.2"))],
            neigh: vec![],
        });
        observed.bridge_macs.clear();
        assert_eq!(
            repair("n", &[entry].into(), &observed),
            vec![Change::Add {
                network: "n".into(),
                entry
            }]
        );
        // Not wanted at all: deleted (both halves).
        assert_eq!(
            repair("n", &BTreeSet::new(), &observed),
            vec![Change::Remove {
                network: "n".into(),
                entry
            }]
        );
    }

    #[test]
    fn changes_become_device_ops() {
        let add = Change::Add {
            network: "n".into(),
            entry: Entry::Fdb {
                mac: FLOOD_MAC,
                dst: ip("10.0.0.2"),
            },
        };
        assert_eq!(
            add.op("wv-1"),
            Op::AddFdb {
                ifname: "wv-1".into(),
                mac: FLOOD_MAC,
                dst: ip("10.0.0.2")
            }
        );
        let del = Change::Remove {
            network: "n".into(),
            entry: Entry::Neigh {
                ip: ip("12.0.0.2"),
                mac: M1,
            },
        };
        assert_eq!(
            del.op("wv-1"),
            Op::DeleteNeighbour {
                ns: Ns::Host,
                ifname: "wv-1".into(),
                ip: ip("12.0.0.2")
            }
        );
    }

    #[test]
    fn removal_notifications_name_their_entry_or_nothing() {
        let v = ip("10.0.0.2");
        assert_eq!(
            Removed::from_fields(false, Some(v), None),
            Some(Removed::Neigh { ip: v })
        );
        assert_eq!(
            Removed::from_fields(true, Some(v), Some(M1)),
            Some(Removed::Fdb { mac: M1, dst: v })
        );
        assert_eq!(
            Removed::from_fields(true, None, Some(M1)),
            Some(Removed::BridgeFdb { mac: M1 })
        );
        // No address for a neighbour, no MAC for a forwarding entry: nothing named.
        assert_eq!(Removed::from_fields(false, None, Some(M1)), None);
        assert_eq!(Removed::from_fields(true, Some(v), None), None);
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
        assert!(repair("n", &desired, &seen(observed)).is_empty());
    }
}

//! From kernel notifications to repairs: which object drifted, and why. Only changes that
//! break what weft made count (a weft link deleted, detached or set down; an address or route
//! removed from a weft bridge; weft's tables changed by another process), so the agent does
//! O(1) work per notification and nothing for weft's own attaches.

use std::collections::{BTreeMap, HashMap};

use crate::adapters::kernel_events::{NftBatch, RtEvent};
use crate::core::cluster::entries::{Entry, Removed};
use crate::core::nft::NFPROTO_INET;
use crate::core::plan::alias_owner;
use crate::core::reconcile::LinkState;

/// What the notifications so far ask for.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Owners to repair, with the first cause seen.
    pub owners: BTreeMap<String, String>,
    /// The firewall to check, with the cause.
    pub firewall: Option<String>,
    /// Notifications were lost: everything is to be checked, with the cause.
    pub everything: Option<String>,
    /// The overlay's entries may have changed unseen (notifications lost, or a removal that
    /// named no entry): the cluster task is to read its devices back and repair their entries.
    pub overlay_entries: bool,
    /// Entries removed from weft's VXLAN devices, with the device's name, in order: the
    /// cluster task writes back those its view still wants (at most [`MAX_REMOVED`]; beyond,
    /// [`Pending::overlay_entries`] instead).
    pub overlay_removed: Vec<(String, Removed)>,
    /// Entries added to or changed on weft's VXLAN devices, with the device's name: the
    /// cluster task looks each up in its view (its own writes agree with it) and reads back
    /// a device only for one that does not (someone else wrote it). Bounded with
    /// [`Pending::overlay_removed`] by [`MAX_REMOVED`].
    pub overlay_changed: Vec<(String, Entry)>,
    /// weft's table or its member sets (`vteps4`, `vteps6`) were made again or emptied, by
    /// whoever: the cluster task is to read the members back and fill them in. weft's own
    /// rebuilds (a command's, after `nft flush ruleset`) make these sets empty too, and the
    /// members are the agent's, not the commands'.
    pub members: bool,
    /// The underlay interface's MTU changed: the cluster task is to read it again, publish
    /// it and check the overlay networks against it.
    pub underlay: bool,
}

/// How many removed entries are kept for the cluster task between two hand-overs: beyond
/// that, one read-back of the devices costs less than looking each up (and the list stays
/// bounded whatever the kernel sends).
pub(super) const MAX_REMOVED: usize = 4096;

impl Pending {
    /// Whether nothing was asked for.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
            && self.firewall.is_none()
            && self.everything.is_none()
            && !self.overlay_entries
            && self.overlay_removed.is_empty()
            && self.overlay_changed.is_empty()
            && !self.members
            && !self.underlay
    }

    /// Asks for every VXLAN device to be read back (which covers any entry noted so far).
    fn read_back(&mut self) {
        self.overlay_entries = true;
        self.overlay_removed = Vec::new();
        self.overlay_changed = Vec::new();
    }

    /// Whether one more entry may be kept for a lookup (else: a read-back).
    fn room(&self) -> bool {
        !self.overlay_entries
            && self
                .overlay_removed
                .len()
                .saturating_add(self.overlay_changed.len())
                < MAX_REMOVED
    }

    /// Notes a removal from the VXLAN device `ifname` (`None`: the notification named no
    /// entry).
    fn removed(&mut self, ifname: &str, entry: Option<Removed>) {
        match entry {
            Some(e) if self.room() => {
                self.overlay_removed.push((ifname.to_string(), e));
            }
            _ => self.read_back(),
        }
    }

    /// Notes an entry added to or changed on the VXLAN device `ifname`.
    fn changed(&mut self, ifname: &str, entry: Entry) {
        if self.room() {
            self.overlay_changed.push((ifname.to_string(), entry));
        } else if !self.overlay_entries {
            self.read_back();
        }
    }
}

/// Whether `name` is one of weft's VXLAN devices' names.
fn is_vxlan(name: &str) -> bool {
    name.starts_with("wv-")
}

/// Turns notifications into [`Pending`] work.
pub(super) struct Classifier {
    instance: String,
    /// The name the kernel gives this binary's processes (its file name, cut to 15 bytes)
    /// when it is not `weft`: commands run from a copy named `weft-dev` are weft's too.
    own_name: Option<String>,
    /// Index of each weft interface to its owner and name (addresses and routes name
    /// interfaces by index only).
    owners: HashMap<u32, (String, String)>,
    /// Whether each of weft's VXLAN devices is up, by index: a device made again or set down
    /// and up lost its entries without a notification for each, so its entries are read
    /// back when this changes.
    vxlans: HashMap<u32, bool>,
    /// The underlay interface's name and last MTU seen (with a cluster only): an overlay
    /// network's MTU must fit it.
    underlay: Option<(String, Option<u32>)>,
}

impl Classifier {
    /// A classifier knowing the weft interfaces that exist now.
    pub fn new(instance: &str, links: &[LinkState]) -> Classifier {
        let mut c = Classifier {
            instance: instance.to_string(),
            own_name: None,
            owners: HashMap::new(),
            vxlans: HashMap::new(),
            underlay: None,
        };
        for l in links {
            if c.learn(l.index, &l.name, l.alias.as_deref()).is_some() && is_vxlan(&l.name) {
                c.vxlans.insert(l.index, l.up);
            }
        }
        c
    }

    fn learn(&mut self, index: u32, name: &str, alias: Option<&str>) -> Option<String> {
        let owner = alias.and_then(|a| alias_owner(&self.instance, a))?;
        self.owners
            .insert(index, (owner.to_string(), name.to_string()));
        Some(owner.to_string())
    }

    /// Adds what `ev` asks for to `out`.
    pub fn rt(&mut self, ev: &RtEvent, out: &mut Pending) {
        let mut want = |owner: String, cause: String| {
            out.owners.entry(owner).or_insert(cause);
        };
        match ev {
            RtEvent::Lost => {
                out.everything =
                    Some("the kernel dropped link, address or route notifications".into());
                out.read_back();
            }
            RtEvent::Neighbour {
                index,
                deleted,
                bridge,
                dst,
                mac,
            } => {
                // Only weft's VXLAN devices: the entries of bridges and ports change with
                // every sandbox's ARP traffic and are none of the control plane's. Each goes
                // to the cluster task as the entry it names, never as "read everything back":
                // every entry the task writes comes back as an addition, and each of its
                // removals (a sandbox leaving elsewhere) as a removal, so reading a device
                // back for them made every join and leave cost in proportion to the cluster's
                // size (bench/overlay). The task tells its own from drift with one lookup
                // each. An addition that names no whole entry (the bridge's half of a
                // forwarding entry, a neighbour without its MAC) is left to the periodic
                // repair.
                let Some((_, name)) = self.owners.get(index) else {
                    return;
                };
                if !is_vxlan(name) {
                    return;
                }
                if *deleted {
                    out.removed(name, Removed::from_fields(*bridge, *dst, *mac));
                } else if let Some(e) = Entry::from_fields(*bridge, *dst, *mac) {
                    out.changed(name, e);
                }
            }
            RtEvent::Link(l) => {
                // The underlay's MTU bounds the overlay networks': a change (by name: the
                // admin's interface, made again or renamed back) is the cluster task's.
                if let Some((name, mtu)) = self.underlay.as_mut() {
                    if !l.deleted && *name == l.name && l.mtu.is_some() && *mtu != l.mtu {
                        *mtu = l.mtu;
                        out.underlay = true;
                    }
                }
                if l.deleted {
                    self.owners.remove(&l.index);
                    if self.vxlans.remove(&l.index).is_some() {
                        out.read_back();
                    }
                    if let Some(owner) = l
                        .alias
                        .as_deref()
                        .and_then(|a| alias_owner(&self.instance, a))
                    {
                        // The kernel sets a link down before deleting it: the deletion is the
                        // cause worth telling.
                        out.owners.insert(
                            owner.to_string(),
                            format!("interface {} was deleted", l.name),
                        );
                    }
                    return;
                }
                let Some(owner) = self.learn(l.index, &l.name, l.alias.as_deref()) else {
                    return;
                };
                // A VXLAN device new here (made again after a deletion), or set down or up:
                // the kernel drops entries with no notification for each. Its own other
                // changes (carrier, statistics) are not drift of its entries.
                if is_vxlan(&l.name) && self.vxlans.insert(l.index, l.up) != Some(l.up) {
                    out.read_back();
                }
                let is_port = l.kind.as_deref() == Some("veth");
                if !l.up {
                    out.owners
                        .entry(owner)
                        .or_insert(format!("interface {} was set down", l.name));
                } else if is_port && l.master.is_none() {
                    out.owners
                        .entry(owner)
                        .or_insert(format!("interface {} was detached from its bridge", l.name));
                }
            }
            RtEvent::AddressRemoved { index, addr } => {
                if let Some((owner, name)) = self.owners.get(index) {
                    want(
                        owner.clone(),
                        format!("address {addr} was removed from {name}"),
                    );
                }
            }
            RtEvent::RouteRemoved { oif, dst, table } => {
                const MAIN: u32 = 254;
                if *table != MAIN {
                    return;
                }
                if let Some((owner, name)) = oif.and_then(|i| self.owners.get(&i)) {
                    want(owner.clone(), format!("route {dst} dev {name} was removed"));
                }
            }
        }
    }

    /// Notes that nf_tables notifications were lost: the firewall is to be checked.
    pub fn nft_lost(&self, out: &mut Pending) {
        out.firewall = Some("the kernel dropped nf_tables notifications".into());
    }

    /// Follows the MTU of the underlay interface `name` (its MTU `mtu` when read).
    pub fn with_underlay(mut self, name: String, mtu: Option<u32>) -> Classifier {
        self.underlay = Some((name, mtu));
        self
    }

    /// Trusts nf_tables transactions of processes named `name` too (this binary's own name,
    /// the kernel's `comm`); `weft` always is.
    pub fn with_own_name(mut self, name: Option<String>) -> Classifier {
        self.own_name = name.filter(|n| n != "weft");
        self
    }

    /// Adds a firewall check to `out` when another process changed weft's tables.
    pub fn nft(&self, batch: &NftBatch, out: &mut Pending) {
        // Before the trust below: a rebuild by weft itself empties the members too.
        if members_emptied(batch) {
            out.members = true;
        }
        // weft's own transactions (commands, this agent) keep the tables right by construction.
        if batch
            .process
            .as_deref()
            .is_some_and(|p| p == "weft" || self.own_name.as_deref() == Some(p))
        {
            return;
        }
        // `NFPROTO_BRIDGE`: the family of weft's port filter table.
        let bridge = 7;
        let ours = batch
            .tables
            .iter()
            .any(|(family, name)| name == "weft" && (*family == NFPROTO_INET || *family == bridge));
        if !ours || out.firewall.is_some() {
            return;
        }
        let who = match (&batch.process, batch.pid) {
            (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
            (Some(p), None) => p.clone(),
            _ => "another process".to_string(),
        };
        out.firewall = Some(format!("weft's nftables table was changed by {who}"));
    }
}

/// Whether `batch` made weft's inet table or its member sets again, or deleted members.
fn members_emptied(batch: &NftBatch) -> bool {
    use crate::core::firewall::{SET_VTEPS4, SET_VTEPS6, TABLE};
    batch
        .remade_tables
        .iter()
        .any(|(family, table)| *family == NFPROTO_INET && table == TABLE)
        || batch.emptied_sets.iter().any(|(family, table, set)| {
            *family == NFPROTO_INET && table == TABLE && (set == SET_VTEPS4 || set == SET_VTEPS6)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::kernel_events::LinkEvent;

    const INST: &str = "0a1b2c3d";

    fn link(name: &str, index: u32, owner: &str) -> LinkState {
        LinkState {
            name: name.into(),
            index,
            alias: Some(format!("weft:{INST}:{owner}")),
            up: true,
            ..LinkState::default()
        }
    }

    fn ev(name: &str, index: u32, owner: Option<&str>, kind: &str) -> LinkEvent {
        LinkEvent {
            name: name.into(),
            index,
            alias: owner.map(|o| format!("weft:{INST}:{o}")),
            kind: Some(kind.into()),
            master: Some(7),
            up: true,
            deleted: false,
            mtu: None,
        }
    }

    #[test]
    fn only_breaking_changes_of_weft_links_ask_for_repair() {
        let mut c = Classifier::new(INST, &[link("wbr-n1", 7, "n1"), link("wvs1", 9, "s1")]);
        let mut p = Pending::default();
        // weft's own attach: a new port, enslaved and up.
        c.rt(&RtEvent::Link(ev("wvs2", 10, Some("s2"), "veth")), &mut p);
        // someone else's interface, deleted.
        c.rt(
            &RtEvent::Link(LinkEvent {
                deleted: true,
                ..ev("eth9", 3, None, "veth")
            }),
            &mut p,
        );
        // another weft instance's link.
        c.rt(
            &RtEvent::Link(LinkEvent {
                alias: Some("weft:ffffffff:s9".into()),
                deleted: true,
                ..ev("wvs9", 11, None, "veth")
            }),
            &mut p,
        );
        assert!(p.is_empty(), "{p:?}");

        c.rt(
            &RtEvent::Link(LinkEvent {
                master: None,
                ..ev("wvs1", 9, Some("s1"), "veth")
            }),
            &mut p,
        );
        c.rt(
            &RtEvent::Link(LinkEvent {
                deleted: true,
                ..ev("wbr-n1", 7, Some("n1"), "bridge")
            }),
            &mut p,
        );
        assert_eq!(
            p.owners["s1"],
            "interface wvs1 was detached from its bridge"
        );
        assert_eq!(p.owners["n1"], "interface wbr-n1 was deleted");
    }

    #[test]
    fn addresses_and_routes_are_traced_to_their_bridge() {
        let mut c = Classifier::new(INST, &[link("wbr-n1", 7, "n1")]);
        let mut p = Pending::default();
        c.rt(
            &RtEvent::AddressRemoved {
                index: 7,
                addr: "10.1.0.1/24".parse().unwrap(),
            },
            &mut p,
        );
        assert!(p.owners["n1"].contains("10.1.0.1/24"));
        let mut p = Pending::default();
        c.rt(
            &RtEvent::RouteRemoved {
                oif: Some(7),
                dst: "10.1.0.0/24".parse().unwrap(),
                table: 254,
            },
            &mut p,
        );
        assert!(p.owners["n1"].contains("route 10.1.0.0/24"));
        let mut p = Pending::default();
        c.rt(
            &RtEvent::RouteRemoved {
                oif: Some(7),
                dst: "10.1.0.1/32".parse().unwrap(),
                table: 255,
            },
            &mut p,
        );
        assert!(p.is_empty(), "local-table routes go with the address");
    }

    #[test]
    fn only_other_processes_changing_weft_tables_ask_for_a_firewall_check() {
        let c = Classifier::new(INST, &[]);
        let batch = |table: &str, by: &str| NftBatch {
            tables: [(NFPROTO_INET, table.to_string())].into(),
            deletions: true,
            process: Some(by.into()),
            pid: Some(42),
            ..NftBatch::default()
        };
        let mut p = Pending::default();
        c.nft(&batch("weft", "weft"), &mut p);
        c.nft(&batch("filter", "nft"), &mut p);
        assert!(p.is_empty());
        // Only weft's own processes (named exactly `weft`, or as this binary is) are trusted.
        let renamed = Classifier::new(INST, &[]).with_own_name(Some("weft-dev".into()));
        renamed.nft(&batch("weft", "weft-dev"), &mut p);
        renamed.nft(&batch("weft", "weft"), &mut p);
        assert!(p.is_empty());
        c.nft(&batch("weft", "weft-dev"), &mut p);
        assert_eq!(
            p.firewall.as_deref(),
            Some("weft's nftables table was changed by weft-dev (pid 42)")
        );
        let mut p = Pending::default();
        c.nft(&batch("weft", "weftish"), &mut p);
        assert_eq!(
            p.firewall.as_deref(),
            Some("weft's nftables table was changed by weftish (pid 42)")
        );
        let mut p = Pending::default();
        c.nft(&batch("weft", "nft"), &mut p);
        assert_eq!(
            p.firewall.as_deref(),
            Some("weft's nftables table was changed by nft (pid 42)")
        );
    }

    const MAC: [u8; 6] = [2, 0x42, 12, 0, 0, 2];

    fn neighbour(index: u32, deleted: bool) -> RtEvent {
        RtEvent::Neighbour {
            index,
            deleted,
            bridge: false,
            dst: Some("12.0.0.2".parse().unwrap()),
            mac: Some(MAC),
        }
    }

    #[test]
    fn entries_of_weft_vxlan_devices_go_to_the_cluster_task_one_by_one() {
        let mut c = Classifier::new(
            INST,
            &[
                link("wo-0a0b0c0d0e0f", 7, "n1"),
                link("wv-0a0b0c0d0e0f", 8, "n1"),
            ],
        );
        let mut p = Pending::default();
        // A bridge's and a foreign interface's neighbours: sandboxes' ARP traffic.
        c.rt(&neighbour(7, true), &mut p);
        c.rt(&neighbour(3, true), &mut p);
        c.rt(&neighbour(7, false), &mut p);
        assert!(p.is_empty(), "{p:?}");
        // An entry added on the VXLAN device (mostly the cluster task's own writes, one per
        // entry of every join): handed over to be looked up, never a read-back; the bridge's
        // half of a forwarding entry names no whole entry and is left out.
        c.rt(&neighbour(8, false), &mut p);
        c.rt(
            &RtEvent::Neighbour {
                index: 8,
                deleted: false,
                bridge: true,
                dst: None,
                mac: Some(MAC),
            },
            &mut p,
        );
        assert!(!p.overlay_entries, "{p:?}");
        assert_eq!(
            p.overlay_changed,
            vec![(
                "wv-0a0b0c0d0e0f".to_string(),
                Entry::Neigh {
                    ip: "12.0.0.2".parse().unwrap(),
                    mac: MAC
                }
            )]
        );
        let mut p = Pending::default();
        // Removals: each named entry, never a read-back of the devices.
        c.rt(&neighbour(8, true), &mut p);
        let vtep = "10.0.0.2".parse().unwrap();
        c.rt(
            &RtEvent::Neighbour {
                index: 8,
                deleted: true,
                bridge: true,
                dst: Some(vtep),
                mac: Some(MAC),
            },
            &mut p,
        );
        c.rt(
            &RtEvent::Neighbour {
                index: 8,
                deleted: true,
                bridge: true,
                dst: None,
                mac: Some(MAC),
            },
            &mut p,
        );
        assert!(!p.overlay_entries && !p.is_empty());
        let dev = "wv-0a0b0c0d0e0f".to_string();
        assert_eq!(
            p.overlay_removed,
            vec![
                (
                    dev.clone(),
                    Removed::Neigh {
                        ip: "12.0.0.2".parse().unwrap()
                    }
                ),
                (
                    dev.clone(),
                    Removed::Fdb {
                        mac: MAC,
                        dst: vtep
                    }
                ),
                (dev, Removed::BridgeFdb { mac: MAC }),
            ]
        );
        // A device made after the agent started is learnt from its link notification (which
        // asks for its entries to be read back).
        let mut p = Pending::default();
        c.rt(
            &RtEvent::Link(ev("wv-ffffffffffff", 12, Some("n2"), "vxlan")),
            &mut p,
        );
        assert!(p.overlay_entries);
        let mut p = Pending::default();
        c.rt(&neighbour(12, true), &mut p);
        assert_eq!(p.overlay_removed.len(), 1);
        assert_eq!(p.overlay_removed[0].0, "wv-ffffffffffff");
    }

    #[test]
    fn a_vxlan_device_made_again_or_set_down_or_up_is_read_back() {
        let mut c = Classifier::new(INST, &[link("wv-0a0b0c0d0e0f", 8, "n1")]);
        let mut p = Pending::default();
        // Its own changes while it stays up (carrier, statistics): nothing.
        c.rt(
            &RtEvent::Link(ev("wv-0a0b0c0d0e0f", 8, Some("n1"), "vxlan")),
            &mut p,
        );
        assert!(!p.overlay_entries, "{p:?}");
        // Set down: the kernel flushed its entries without a notification for each.
        let down = LinkEvent {
            up: false,
            ..ev("wv-0a0b0c0d0e0f", 8, Some("n1"), "vxlan")
        };
        c.rt(&RtEvent::Link(down), &mut p);
        assert!(p.overlay_entries);
        // And up again.
        let mut p = Pending::default();
        c.rt(
            &RtEvent::Link(ev("wv-0a0b0c0d0e0f", 8, Some("n1"), "vxlan")),
            &mut p,
        );
        assert!(p.overlay_entries);
        // Deleted, then made again (a new index): read back both times.
        let mut p = Pending::default();
        c.rt(
            &RtEvent::Link(LinkEvent {
                deleted: true,
                ..ev("wv-0a0b0c0d0e0f", 8, Some("n1"), "vxlan")
            }),
            &mut p,
        );
        assert!(p.overlay_entries);
        let mut p = Pending::default();
        c.rt(
            &RtEvent::Link(ev("wv-0a0b0c0d0e0f", 9, Some("n1"), "vxlan")),
            &mut p,
        );
        assert!(p.overlay_entries);
        // A bridge or port coming and going is none of the entries' business.
        let mut p = Pending::default();
        c.rt(
            &RtEvent::Link(ev("wo-0a0b0c0d0e0f", 10, Some("n1"), "bridge")),
            &mut p,
        );
        assert!(!p.overlay_entries);
    }

    #[test]
    fn a_removal_naming_no_entry_or_too_many_ask_for_a_read_back() {
        let mut c = Classifier::new(INST, &[link("wv-0a0b0c0d0e0f", 8, "n1")]);
        let mut p = Pending::default();
        c.rt(
            &RtEvent::Neighbour {
                index: 8,
                deleted: true,
                bridge: true,
                dst: Some("10.0.0.2".parse().unwrap()),
                mac: None,
            },
            &mut p,
        );
        assert!(p.overlay_entries && p.overlay_removed.is_empty());
        // Once a read-back is asked for, removals are not kept.
        c.rt(&neighbour(8, true), &mut p);
        assert!(p.overlay_removed.is_empty());
        // A flood of removals: bounded, then one read-back.
        let mut p = Pending::default();
        for _ in 0..MAX_REMOVED {
            c.rt(&neighbour(8, true), &mut p);
        }
        assert!(!p.overlay_entries && p.overlay_removed.len() == MAX_REMOVED);
        c.rt(&neighbour(8, true), &mut p);
        assert!(p.overlay_entries && p.overlay_removed.is_empty());
        // Additions count in the same bound.
        let mut p = Pending::default();
        for _ in 0..MAX_REMOVED {
            c.rt(&neighbour(8, false), &mut p);
        }
        assert!(!p.overlay_entries && p.overlay_changed.len() == MAX_REMOVED);
        c.rt(&neighbour(8, true), &mut p);
        assert!(p.overlay_entries && p.overlay_changed.is_empty());
        // Lost notifications: a read-back.
        let mut p = Pending::default();
        c.rt(&RtEvent::Lost, &mut p);
        assert!(p.overlay_entries);
    }

    #[test]
    fn a_remade_table_or_member_set_asks_for_the_members_whoever_sent_it() {
        let c = Classifier::new(INST, &[]);
        let by = |p: &str, b: NftBatch| NftBatch {
            tables: [(NFPROTO_INET, "weft".to_string())].into(),
            process: Some(p.into()),
            pid: Some(42),
            ..b
        };
        let remade = |family: u8, table: &str| NftBatch {
            remade_tables: [(family, table.to_string())].into(),
            ..NftBatch::default()
        };
        let emptied = |set: &str| NftBatch {
            emptied_sets: [(NFPROTO_INET, "weft".to_string(), set.to_string())].into(),
            ..NftBatch::default()
        };
        // A command's rebuild (after `nft flush ruleset`): the rules are right, the members
        // are not.
        for b in [
            remade(NFPROTO_INET, "weft"),
            emptied("vteps4"),
            emptied("vteps6"),
        ] {
            let mut p = Pending::default();
            c.nft(&by("weft", b), &mut p);
            assert!(p.members && p.firewall.is_none(), "{p:?}");
        }
        // Someone else's: the firewall check as well.
        let mut p = Pending::default();
        c.nft(&by("nft", emptied("vteps4")), &mut p);
        assert!(p.members && p.firewall.is_some(), "{p:?}");
        // An attach's elements, another table's rebuild, the port guard's table: nothing.
        for b in [
            emptied("ports"),
            remade(NFPROTO_INET, "filter"),
            remade(7, "weft"),
            NftBatch::default(),
        ] {
            let mut p = Pending::default();
            c.nft(&by("weft", b), &mut p);
            assert!(p.is_empty(), "{p:?}");
        }
    }

    #[test]
    fn the_underlay_s_mtu_changing_is_handed_over_once() {
        let mut c = Classifier::new(INST, &[]).with_underlay("ul0".into(), Some(1500));
        let ul = |mtu: u32| {
            RtEvent::Link(LinkEvent {
                alias: None,
                mtu: Some(mtu),
                ..ev("ul0", 2, None, "veth")
            })
        };
        let mut p = Pending::default();
        // The same MTU (carrier, statistics), another interface's, one without an MTU.
        c.rt(&ul(1500), &mut p);
        c.rt(
            &RtEvent::Link(LinkEvent {
                mtu: Some(9000),
                ..ev("eth1", 3, None, "veth")
            }),
            &mut p,
        );
        c.rt(&RtEvent::Link(ev("ul0", 2, None, "veth")), &mut p);
        assert!(p.is_empty(), "{p:?}");
        c.rt(&ul(1400), &mut p);
        assert!(p.underlay);
        let mut p = Pending::default();
        c.rt(&ul(1400), &mut p);
        assert!(p.is_empty(), "{p:?}");
        c.rt(&ul(1500), &mut p);
        assert!(p.underlay);
        // No underlay followed (no cluster): nothing.
        let mut c = Classifier::new(INST, &[]);
        let mut p = Pending::default();
        c.rt(&ul(1400), &mut p);
        assert!(p.is_empty(), "{p:?}");
    }
}

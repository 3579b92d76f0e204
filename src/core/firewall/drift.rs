//! Level-triggered firewall repair, the pure half: what weft's tables should contain
//! ([`Desired`]), how that differs from what a dump of the kernel shows ([`check`]), and the
//! one atomic batch that makes the kernel match again ([`repair`]).
//!
//! Rules are recognised by the fingerprint weft stores in each rule's userdata
//! ([`crate::core::nft::fingerprint`]): a chain matches when it holds exactly the desired
//! fingerprints in order. Sets match when their definition is the one weft would create and
//! they hold exactly the desired elements — apart from the elements of records another live
//! weft process is changing right now ([`Desired::in_flight`]), which are neither required
//! nor removed: their owner adds or removes them itself, and a repair that re-added the
//! elements of a create being rolled back (or of an endpoint being disconnected) would leave
//! them behind for good. The elements of the host agent's sets (the cluster's VTEPs,
//! [`super::agent_owned`]) are neither checked nor changed: the agent keeps them. The
//! tables' comment names the instance that owns them; another instance's tables are never
//! changed.

use std::collections::BTreeMap;
use std::fmt;

use super::{all_elements, FwEndpoint, FwNetwork, FwOptions, FwPort, Owner, TableDef, CHAIN_USER};
use crate::core::nft::{
    fingerprint, Batch, Chain, ChainInfo, Elem, Expr, Family, ObservedTable, Verdict,
};

/// How deep [`check`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Tables, owners, chains, and each chain's number of rules as the chain dump tells it
    /// (the kernel's use count): two dumps, whatever the number of sandboxes — the check on
    /// every attach. A rule replaced by another goes unseen until a deeper check.
    Chains,
    /// Also every rule's fingerprint.
    Rules,
    /// Also every set's definition and elements (gc, network create, the daemon).
    Elements,
}

/// Everything weft's firewall should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The tables, their chains, rules and sets.
    pub tables: Vec<TableDef>,
    /// The elements of every set, per (family, set) (tables are all named `weft`).
    pub elements: Vec<(Family, &'static str, Vec<Elem>)>,
    /// Elements of records being created, removed, connected or disconnected by a live weft
    /// process, per (family, set): "don't care" — whether the kernel holds them or not is no
    /// drift, and a repair leaves them as they are.
    pub in_flight: Vec<(Family, &'static str, Vec<Elem>)>,
    /// The owner written into (and expected in) the tables' comments.
    pub owner: Owner,
}

impl Desired {
    /// The firewall for these records and options.
    pub fn new(
        opts: &FwOptions,
        owner: Owner,
        nets: &[FwNetwork],
        eps: &[FwEndpoint],
        ports: &[FwPort],
    ) -> Desired {
        Desired {
            tables: super::tables(opts),
            elements: all_elements(nets, eps, ports),
            in_flight: vec![],
            owner,
        }
    }

    /// The same, with the networks, interfaces and ports of records other weft processes are
    /// changing right now: their elements are neither required nor removed.
    pub fn with_in_flight(
        mut self,
        nets: &[FwNetwork],
        eps: &[FwEndpoint],
        ports: &[FwPort],
    ) -> Desired {
        self.in_flight = all_elements(nets, eps, ports);
        self
    }

    fn elements_of(&self, family: Family, set: &str) -> &[Elem] {
        of(&self.elements, family, set)
    }
}

fn of<'a>(list: &'a [(Family, &'static str, Vec<Elem>)], family: Family, set: &str) -> &'a [Elem] {
    list.iter()
        .find(|(f, s, _)| *f == family && *s == set)
        .map(|(_, _, e)| e.as_slice())
        .unwrap_or(&[])
}

/// One difference between the desired and the observed firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Drift {
    /// The table does not exist.
    MissingTable { family: Family, table: String },
    /// The table carries no owner (made by an older weft, or by hand).
    Unmarked { family: Family, table: String },
    /// A chain does not exist.
    MissingChain {
        family: Family,
        table: String,
        chain: String,
    },
    /// A chain has another hook, priority, type or policy.
    ChainShape {
        family: Family,
        table: String,
        chain: String,
    },
    /// A chain's rules are not exactly weft's (`matching` of `expected` rules are in place,
    /// `found` rules are there).
    Rules {
        family: Family,
        table: String,
        chain: String,
        expected: usize,
        found: usize,
        matching: usize,
    },
    /// A chain holds another number of rules than weft's (from the chain's use count).
    RuleCount {
        family: Family,
        table: String,
        chain: String,
        expected: usize,
        found: usize,
    },
    /// A set or map does not exist.
    MissingSet {
        family: Family,
        table: String,
        set: String,
    },
    /// A set or map has another definition.
    SetShape {
        family: Family,
        table: String,
        set: String,
    },
    /// A set's elements differ.
    Elements {
        family: Family,
        table: String,
        set: String,
        missing: usize,
        unexpected: usize,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::MissingTable { family, table } => write!(f, "table {family} {table} is missing"),
            Drift::Unmarked { family, table } => {
                write!(f, "table {family} {table} has no owner comment")
            }
            Drift::MissingChain {
                family,
                table,
                chain,
            } => write!(f, "chain {family} {table} {chain} is missing"),
            Drift::ChainShape {
                family,
                table,
                chain,
            } => write!(
                f,
                "chain {family} {table} {chain} has another hook, priority, type or policy"
            ),
            Drift::Rules {
                family,
                table,
                chain,
                expected,
                found,
                matching,
            } => write!(
                f,
                "chain {family} {table} {chain}: {matching} of {expected} rules in place, {found} found"
            ),
            Drift::RuleCount {
                family,
                table,
                chain,
                expected,
                found,
            } => write!(
                f,
                "chain {family} {table} {chain}: {expected} rules expected, {found} found"
            ),
            Drift::MissingSet { family, table, set } => {
                write!(f, "set {family} {table} {set} is missing")
            }
            Drift::SetShape { family, table, set } => {
                write!(f, "set {family} {table} {set} has another definition")
            }
            Drift::Elements {
                family,
                table,
                set,
                missing,
                unexpected,
            } => write!(
                f,
                "set {family} {table} {set}: {missing} elements missing, {unexpected} unexpected"
            ),
        }
    }
}

/// Weft's table belongs to another state directory: nothing may change it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "nftables table {family} {table} belongs to another weft instance ({}, state directory {}): \
     two state directories cannot share one network namespace; use --state-dir {} here, or run \
     this one in another network namespace",
    .owner.instance, .owner.state_dir, .owner.state_dir
)]
pub struct ForeignOwner {
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: String,
    /// Who owns it.
    pub owner: Owner,
}

/// The owner named by an observed table's comment; `Err` when it is another instance.
fn owner_of(t: &TableDef, o: &ObservedTable, me: &Owner) -> Result<Option<Owner>, ForeignOwner> {
    let owner = o
        .table
        .as_ref()
        .and_then(|i| i.comment.as_deref())
        .and_then(Owner::parse);
    match owner {
        Some(ow) if ow.instance != me.instance => Err(ForeignOwner {
            family: t.family,
            table: t.name.to_string(),
            owner: ow,
        }),
        other => Ok(other),
    }
}

/// An unmarked table is adopted as it is when re-creating it (the only way to mark it: the
/// kernel keeps a table's first comment) would lose the users' rules. Without a rule dump,
/// the user chain's use count beyond weft's jump to it tells.
fn keeps_unmarked(t: &TableDef, o: &ObservedTable) -> bool {
    o.rules.iter().any(|r| r.chain == CHAIN_USER)
        || o.chains
            .iter()
            .find(|c| c.name == CHAIN_USER)
            .and_then(|c| c.use_count)
            .is_some_and(|u| usize::try_from(u).unwrap_or(0) > references(t, CHAIN_USER))
}

/// Hook, priority and type equal (what the kernel cannot change on an existing chain).
fn same_kind(want: &Chain, seen: &ChainInfo) -> bool {
    match (&want.base, &seen.base) {
        (None, None) => !seen.other_base,
        (Some(w), Some(s)) => w.hook == s.hook && w.priority == s.priority && w.kind == s.kind,
        _ => false,
    }
}

fn same_policy(want: &Chain, seen: &ChainInfo) -> bool {
    match (&want.base, &seen.base) {
        (Some(w), Some(s)) => w.policy == s.policy,
        _ => true,
    }
}

/// How many rules of `t` jump or go to `chain`: each adds one to the chain's use count.
fn references(t: &TableDef, chain: &str) -> usize {
    t.chains
        .iter()
        .flat_map(|c| c.rules.iter().flatten().flatten())
        .filter(|e| matches!(e, Expr::Verdict(Verdict::Jump(c) | Verdict::Goto(c)) if c == chain))
        .count()
}

/// Elements by their description: sets that can be compared (the kernel holds no element
/// twice).
fn normalized(elems: &[Elem]) -> BTreeMap<String, &Elem> {
    elems.iter().map(|e| (format!("{e:?}"), e)).collect()
}

/// What a set needs to hold `want` given that it holds `have`: the elements `want` has and
/// `have` lacks (missing), and those `have` holds that neither `want` nor `ignore` (the
/// in-flight ones) has (unexpected).
fn difference(want: &[Elem], have: &[Elem], ignore: &[Elem]) -> (Vec<Elem>, Vec<Elem>) {
    let (want, have, ignore) = (normalized(want), normalized(have), normalized(ignore));
    let missing = want
        .iter()
        .filter(|(k, _)| !have.contains_key(*k))
        .map(|(_, e)| (*e).clone())
        .collect();
    let unexpected = have
        .iter()
        .filter(|(k, _)| !want.contains_key(*k) && !ignore.contains_key(*k))
        .map(|(_, e)| (*e).clone())
        .collect();
    (missing, unexpected)
}

/// What differs between `desired` and `observed` (one observation per desired table, in the
/// same order). Sets are only looked at with [`Depth::Elements`]. A table owned by another
/// instance is an error: the caller must not change anything.
pub fn check(
    desired: &Desired,
    observed: &[ObservedTable],
    depth: Depth,
) -> Result<Vec<Drift>, ForeignOwner> {
    let mut drifts = Vec::new();
    for (t, o) in desired.tables.iter().zip(observed) {
        let (family, table) = (t.family, t.name.to_string());
        if o.table.is_none() {
            drifts.push(Drift::MissingTable { family, table });
            continue;
        }
        if owner_of(t, o, &desired.owner)?.is_none() && !keeps_unmarked(t, o) {
            drifts.push(Drift::Unmarked {
                family,
                table: table.clone(),
            });
        }
        for c in &t.chains {
            let chain = c.chain.name.clone();
            match o.chains.iter().find(|x| x.name == chain) {
                None => {
                    drifts.push(Drift::MissingChain {
                        family,
                        table: table.clone(),
                        chain: chain.clone(),
                    });
                }
                Some(seen) if !same_kind(&c.chain, seen) || !same_policy(&c.chain, seen) => {
                    drifts.push(Drift::ChainShape {
                        family,
                        table: table.clone(),
                        chain: chain.clone(),
                    });
                }
                Some(_) => {}
            }
            let seen = o.chains.iter().find(|x| x.name == chain);
            if let (Some(rules), Depth::Chains) = (&c.rules, depth) {
                let refs = references(t, &chain);
                if let Some(used) = seen.and_then(|s| s.use_count) {
                    let found = usize::try_from(used).unwrap_or(usize::MAX);
                    if found != rules.len() + refs {
                        drifts.push(Drift::RuleCount {
                            family,
                            table: table.clone(),
                            chain,
                            expected: rules.len(),
                            found: found.saturating_sub(refs),
                        });
                    }
                }
            } else if let Some(rules) = &c.rules {
                let want: Vec<Option<u64>> = rules.iter().map(|r| Some(fingerprint(r))).collect();
                let have: Vec<Option<u64>> = o
                    .rules
                    .iter()
                    .filter(|r| r.chain == chain)
                    .map(|r| r.tag)
                    .collect();
                if want != have {
                    let matching = want.iter().filter(|w| have.contains(w)).count();
                    drifts.push(Drift::Rules {
                        family,
                        table: table.clone(),
                        chain,
                        expected: want.len(),
                        found: have.len(),
                        matching,
                    });
                }
            }
        }
        if depth != Depth::Elements {
            continue;
        }
        for s in &t.sets {
            let set = s.name.clone();
            match o.sets.iter().find(|(info, _)| info.name == set) {
                None => drifts.push(Drift::MissingSet {
                    family,
                    table: table.clone(),
                    set,
                }),
                Some((info, _)) if !s.matches(info) => drifts.push(Drift::SetShape {
                    family,
                    table: table.clone(),
                    set,
                }),
                // The agent's sets: their elements are its own to check.
                Some(_) if super::agent_owned(family, &s.name) => {}
                Some((_, elems)) => {
                    let (missing, unexpected) = difference(
                        desired.elements_of(family, &s.name),
                        elems.as_deref().unwrap_or_default(),
                        of(&desired.in_flight, family, &s.name),
                    );
                    if !missing.is_empty() || !unexpected.is_empty() {
                        drifts.push(Drift::Elements {
                            family,
                            table: table.clone(),
                            set,
                            missing: missing.len(),
                            unexpected: unexpected.len(),
                        });
                    }
                }
            }
        }
    }
    Ok(drifts)
}

/// The one batch that makes the kernel hold exactly `desired`, whatever `observed` (one
/// observation per desired table, as read under the store's write lock) shows: tables
/// created (or, unmarked and without user rules, re-created with their owner), chains and
/// sets of another shape replaced, every weft chain flushed and refilled. A set that is in
/// place gets exactly its missing elements added and its unexpected ones destroyed — never a
/// flush — so the elements of in-flight records ([`Desired::in_flight`]) stay as they are;
/// a set made anew gets the desired elements. The user chain and its rules are kept. A
/// table owned by another instance is an error.
pub fn repair(desired: &Desired, observed: &[ObservedTable]) -> Result<Batch, ForeignOwner> {
    let mut b = Batch::new();
    let comment = desired.owner.comment();
    let empty = ObservedTable::default();
    for (t, o) in desired.tables.iter().zip(observed) {
        let (family, table) = (t.family, t.name);
        let mut o = o;
        if o.table.is_some() && owner_of(t, o, &desired.owner)?.is_none() && !keeps_unmarked(t, o) {
            b.destroy_table(family, table);
            o = &empty;
        }
        b.add_table_with_comment(family, table, &comment);
        let seen = |name: &str| o.chains.iter().find(|c| c.name == name);
        // Weft's chains are emptied first: a chain of another shape can then be deleted,
        // and so can a set of another definition (no rule refers to it any more).
        for c in t.chains.iter().filter(|c| c.rules.is_some()) {
            if seen(&c.chain.name).is_some() {
                b.flush_chain(family, table, &c.chain.name);
            }
        }
        for c in t.chains.iter().filter(|c| c.rules.is_some()) {
            if seen(&c.chain.name).is_some_and(|s| !same_kind(&c.chain, s)) {
                b.destroy_chain(family, table, &c.chain.name);
            }
        }
        for c in &t.chains {
            b.add_chain(family, table, c.chain.clone());
        }
        // Per set: the elements it holds, if it stays (same definition, elements read).
        let kept: Vec<Option<&[Elem]>> = t
            .sets
            .iter()
            .map(|s| {
                o.sets
                    .iter()
                    .find(|(info, _)| info.name == s.name)
                    .and_then(|(info, elems)| s.matches(info).then_some(elems.as_deref()))
                    .flatten()
            })
            .collect();
        for s in &t.sets {
            if o.sets
                .iter()
                .any(|(info, _)| info.name == s.name && !s.matches(info))
            {
                b.destroy_set(family, table, &s.name);
            }
        }
        for (s, kept) in t.sets.iter().zip(&kept) {
            b.add_set(family, table, s.clone());
            let in_place = o
                .sets
                .iter()
                .any(|(info, _)| info.name == s.name && s.matches(info));
            if in_place && kept.is_none() && !super::agent_owned(family, &s.name) {
                // In place, but its elements were not read: start it over.
                b.flush_set(family, table, &s.name);
            }
        }
        for c in &t.chains {
            for r in c.rules.iter().flatten() {
                b.add_rule_tagged(family, table, &c.chain.name, r.clone());
            }
        }
        // Elements last, destroyed before added: a map key whose value changed is destroyed
        // and added again in the same batch.
        let mut adds = Vec::new();
        for (s, kept) in t.sets.iter().zip(&kept) {
            if super::agent_owned(family, &s.name) {
                continue; // kept as they are; a set made anew is the agent's to fill
            }
            let want = desired.elements_of(family, &s.name);
            match kept {
                Some(have) => {
                    let (missing, unexpected) =
                        difference(want, have, of(&desired.in_flight, family, &s.name));
                    b.destroy_elements(family, table, &s.name, unexpected);
                    adds.push((&s.name, missing));
                }
                None => adds.push((&s.name, want.to_vec())),
            }
        }
        for (set, elems) in adds {
            b.add_elements(family, table, set, elems);
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::firewall::{SET_BRIDGES, TABLE};
    use crate::core::nft::{RuleInfo, SetInfo, TableInfo};

    fn owner(i: &str) -> Owner {
        Owner {
            instance: i.into(),
            state_dir: format!("/s/{i}"),
        }
    }

    fn net() -> FwNetwork {
        FwNetwork {
            bridge: "wbr-a".into(),
            internal: false,
            icc: true,
            masq_v4: Some("10.1.0.0/24".parse().unwrap()),
            masq_v6: None,
            subnet_v4: Some("10.1.0.0/24".parse().unwrap()),
            subnet_v6: None,
            gateways: vec!["10.1.0.1".parse().unwrap()],
            dns_port: None,
        }
    }

    /// What the kernel would show after `desired` was installed exactly.
    fn perfect(d: &Desired) -> Vec<ObservedTable> {
        d.tables
            .iter()
            .map(|t| ObservedTable {
                table: Some(TableInfo {
                    family: t.family,
                    name: t.name.into(),
                    comment: Some(d.owner.comment()),
                }),
                chains: t
                    .chains
                    .iter()
                    .map(|c| ChainInfo {
                        family: t.family,
                        table: t.name.into(),
                        name: c.chain.name.clone(),
                        base: c.chain.base,
                        other_base: false,
                        use_count: Some(
                            u32::try_from(
                                c.rules.as_ref().map_or(0, Vec::len) + references(t, &c.chain.name),
                            )
                            .unwrap(),
                        ),
                    })
                    .collect(),
                rules: t
                    .chains
                    .iter()
                    .flat_map(|c| {
                        c.rules.iter().flatten().map(|r| RuleInfo {
                            chain: c.chain.name.clone(),
                            tag: Some(fingerprint(r)),
                            exprs: vec![],
                        })
                    })
                    .collect(),
                sets: t
                    .sets
                    .iter()
                    .map(|s| {
                        (
                            SetInfo {
                                name: s.name.clone(),
                                flags: s.kernel_flags(),
                                key_type: s.key.type_id(),
                                key_len: s.key.byte_len(),
                                data_type: s.data_type_id(),
                                data_len: match s.data {
                                    Some(crate::core::nft::DataType::Value(v)) => {
                                        Some(v.byte_len())
                                    }
                                    _ => None,
                                },
                            },
                            Some(d.elements_of(t.family, &s.name).to_vec()),
                        )
                    })
                    .collect(),
            })
            .collect()
    }

    fn desired() -> Desired {
        Desired::new(&FwOptions::default(), owner("aaaa0001"), &[net()], &[], &[])
    }

    #[test]
    fn a_perfect_kernel_has_no_drift() {
        let d = desired();
        for depth in [Depth::Chains, Depth::Rules, Depth::Elements] {
            assert_eq!(check(&d, &perfect(&d), depth), Ok(vec![]));
        }
    }

    #[test]
    fn every_kind_of_damage_is_seen() {
        let d = desired();
        let mut o = perfect(&d);
        // nft flush chain inet weft forward
        o[0].rules.retain(|r| r.chain != "forward");
        // nft flush set inet weft bridges
        o[0].sets
            .iter_mut()
            .find(|(s, _)| s.name == SET_BRIDGES)
            .unwrap()
            .1 = Some(vec![]);
        // the bridge table deleted
        o[1] = ObservedTable::default();
        let drifts = check(&d, &o, Depth::Elements).unwrap();
        assert_eq!(drifts.len(), 3, "{drifts:?}");
        assert!(matches!(&drifts[0], Drift::Rules { chain, found: 0, .. } if chain == "forward"));
        assert!(
            matches!(&drifts[1], Drift::Elements { set, missing: 1, unexpected: 0, .. } if set == "bridges")
        );
        assert_eq!(
            drifts[2],
            Drift::MissingTable {
                family: Family::Bridge,
                table: TABLE.into()
            }
        );
        // Depth::Rules does not look at elements.
        assert_eq!(check(&d, &o, Depth::Rules).unwrap().len(), 2);
        // Depth::Chains sees the flushed chain by its use count (and the missing table).
        let o = {
            let mut o = o;
            let fwd = o[0]
                .chains
                .iter_mut()
                .find(|c| c.name == "forward")
                .unwrap();
            fwd.use_count = Some(0);
            o
        };
        let drifts = check(&d, &o, Depth::Chains).unwrap();
        assert!(
            matches!(&drifts[0], Drift::RuleCount { chain, found: 0, .. } if chain == "forward"),
            "{drifts:?}"
        );
        assert_eq!(drifts.len(), 2);
        // One deleted rule in the middle.
        let mut o = perfect(&d);
        let i = o[0]
            .rules
            .iter()
            .position(|r| r.chain == "forward")
            .unwrap();
        o[0].rules.remove(i + 3);
        assert!(matches!(
            &check(&d, &o, Depth::Rules).unwrap()[..],
            [Drift::Rules { matching, found, expected, .. }] if matching + 1 == *expected && found + 1 == *expected
        ));
    }

    #[test]
    fn another_instance_is_refused() {
        let d = desired();
        let mut o = perfect(&d);
        o[0].table.as_mut().unwrap().comment = Some(owner("bbbb0002").comment());
        let err = check(&d, &o, Depth::Rules).unwrap_err();
        assert_eq!(err.owner.state_dir, "/s/bbbb0002");
        assert!(err.to_string().contains("/s/bbbb0002"), "{err}");
        assert!(repair(&d, &o).is_err());
    }

    #[test]
    fn repair_of_nothing_builds_everything_and_keeps_the_user_chain() {
        let d = desired();
        let b = repair(&d, &[ObservedTable::default(), ObservedTable::default()]).unwrap();
        let ops = b.ops();
        assert_eq!(ops[0], "add table inet weft");
        assert!(!ops.iter().any(|o| o.starts_with("flush chain")));
        assert!(!ops.iter().any(|o| o.starts_with("destroy")));
        assert!(ops.contains(&"add elements to inet weft bridges".to_string()));
        // On a complete table: weft's chains are flushed, never the user chain.
        let b = repair(&d, &perfect(&d)).unwrap();
        let ops = b.ops();
        assert!(ops.contains(&"flush chain inet weft forward".to_string()));
        assert!(!ops.contains(&"flush chain inet weft user".to_string()));
        assert!(!ops.iter().any(|o| o.starts_with("destroy")));
    }

    #[test]
    fn repair_replaces_what_changed_shape_and_recreates_unmarked_tables() {
        let d = desired();
        let mut o = perfect(&d);
        o[0].chains
            .iter_mut()
            .find(|c| c.name == "raw")
            .unwrap()
            .base = None;
        o[0].sets
            .iter_mut()
            .find(|(s, _)| s.name == "pairs")
            .unwrap()
            .0
            .key_len = 4;
        o[1].table.as_mut().unwrap().comment = None;
        let ops = repair(&d, &o).unwrap().ops();
        let pos = |s: &str| {
            ops.iter()
                .position(|o| o == s)
                .unwrap_or_else(|| panic!("{s}: {ops:?}"))
        };
        assert!(pos("flush chain inet weft raw") < pos("destroy chain inet weft raw"));
        assert!(pos("destroy chain inet weft raw") < pos("add chain inet weft raw"));
        assert!(pos("flush chain inet weft forward") < pos("destroy set inet weft pairs"));
        assert!(pos("destroy set inet weft pairs") < pos("add set inet weft pairs"));
        assert!(pos("destroy table bridge weft") < pos("add table bridge weft"));
        // An unmarked inet table whose user chain has rules is kept (and stays unmarked).
        let mut o = perfect(&d);
        o[0].table.as_mut().unwrap().comment = None;
        o[0].rules.push(RuleInfo {
            chain: CHAIN_USER.into(),
            tag: None,
            exprs: vec![],
        });
        let ops = repair(&d, &o).unwrap().ops();
        assert!(!ops.contains(&"destroy table inet weft".to_string()));
    }

    #[test]
    fn element_differences_are_counted() {
        let s = |v: &[&str]| v.iter().map(|x| Elem::ifname(x)).collect::<Vec<_>>();
        let (missing, unexpected) = difference(&s(&["a", "b", "c"]), &s(&["b", "d"]), &[]);
        assert_eq!((missing, unexpected), (s(&["a", "c"]), s(&["d"])));
        assert_eq!(difference(&[], &s(&["x"]), &[]), (vec![], s(&["x"])));
        // In-flight elements: not unexpected when held, not missing when absent.
        assert_eq!(
            difference(&[], &s(&["x"]), &s(&["x", "y"])),
            (vec![], vec![])
        );
    }

    fn endpoint(port: &str, last: u8) -> FwEndpoint {
        FwEndpoint {
            port: port.into(),
            mac: [2, 0x42, 10, 1, 0, last],
            ipv4: Some(std::net::Ipv4Addr::new(10, 1, 0, last)),
            ipv6: None,
        }
    }

    fn port(host_port: u16, last: u8) -> FwPort {
        FwPort {
            proto: 6,
            host_ip: None,
            host_port,
            target: std::net::Ipv4Addr::new(10, 1, 0, last).into(),
            target_port: 80,
        }
    }

    /// The kernel `o` with the elements of `eps` and `ports` added to its sets.
    fn holding(
        mut o: Vec<ObservedTable>,
        eps: &[FwEndpoint],
        ports: &[FwPort],
    ) -> Vec<ObservedTable> {
        for (family, set, elems) in all_elements(&[], eps, ports) {
            let t = o
                .iter_mut()
                .find(|t| t.table.as_ref().is_some_and(|i| i.family == family))
                .unwrap();
            let (_, have) = t.sets.iter_mut().find(|(i, _)| i.name == set).unwrap();
            have.as_mut().unwrap().extend(elems);
        }
        o
    }

    #[test]
    fn in_flight_elements_are_neither_required_nor_removed() {
        let settled = endpoint("wvsettled0", 2);
        let leaving = endpoint("wvleaving0", 3);
        let d = Desired::new(
            &FwOptions::default(),
            owner("aaaa0001"),
            &[net()],
            std::slice::from_ref(&settled),
            &[port(8080, 2)],
        )
        .with_in_flight(&[], std::slice::from_ref(&leaving), &[port(8081, 3)]);
        let without = holding(perfect(&d), &[], &[]);
        let with = holding(
            perfect(&d),
            std::slice::from_ref(&leaving),
            &[port(8081, 3)],
        );
        // `perfect` holds the desired elements; in-flight ones held or not: no drift.
        for o in [&without, &with] {
            assert_eq!(check(&d, o, Depth::Elements), Ok(vec![]));
        }
        // A repair for other damage (a flushed src4) leaves them alone either way, and adds
        // back only what is missing, without flushing any set.
        for o in [without, with] {
            let mut o = o;
            let guard = o
                .iter_mut()
                .find(|t| t.table.as_ref().unwrap().family == Family::Bridge);
            let (_, src4) = guard
                .unwrap()
                .sets
                .iter_mut()
                .find(|(i, _)| i.name == super::super::SET_GUARD4)
                .unwrap();
            src4.as_mut().unwrap().clear();
            let drifts = check(&d, &o, Depth::Elements).unwrap();
            assert!(
                matches!(&drifts[..], [Drift::Elements { set, missing: 1, unexpected: 0, .. }] if set == "src4"),
                "{drifts:?}"
            );
            let b = repair(&d, &o).unwrap();
            assert!(
                !b.ops().iter().any(|op| op.starts_with("flush set")),
                "{:?}",
                b.ops()
            );
            assert!(
                !b.ops().iter().any(|op| op.starts_with("destroy")),
                "{:?}",
                b.ops()
            );
            let added: Vec<&Elem> = b
                .msgs()
                .iter()
                .filter_map(|m| match m {
                    crate::core::nft::Msg::AddElems { elems, .. } => Some(elems),
                    _ => None,
                })
                .flatten()
                .collect();
            let leaving4 = &all_elements(&[], std::slice::from_ref(&leaving), &[])
                .into_iter()
                .find(|(_, s, _)| *s == super::super::SET_GUARD4)
                .unwrap()
                .2[0];
            assert_eq!(added.len(), 1, "{added:?}");
            assert_ne!(added[0], leaving4);
        }
    }

    #[test]
    fn repair_in_place_destroys_the_unexpected_and_adds_the_missing() {
        let d = desired();
        let mut o = perfect(&d);
        let stale = port(9000, 9);
        let o2 = holding(o.clone(), &[], &[stale]);
        o = o2;
        // And one desired element gone.
        o[0].sets
            .iter_mut()
            .find(|(s, _)| s.name == SET_BRIDGES)
            .unwrap()
            .1 = Some(vec![]);
        let drifts = check(&d, &o, Depth::Elements).unwrap();
        assert_eq!(drifts.len(), 2, "{drifts:?}");
        let ops = repair(&d, &o).unwrap().ops();
        assert!(ops.contains(&"destroy elements in inet weft dnat4any".to_string()));
        assert!(ops.contains(&"add elements to inet weft bridges".to_string()));
        assert!(!ops.iter().any(|op| op.starts_with("flush set")), "{ops:?}");
    }

    #[test]
    fn the_agent_s_members_are_neither_checked_nor_touched() {
        use crate::core::firewall::{SET_VTEPS4, SET_VTEPS6};
        let d = desired();
        let mut o = perfect(&d);
        let members = vec![Elem::new([10, 0, 0, 2]), Elem::new([10, 0, 0, 3])];
        o[0].sets
            .iter_mut()
            .find(|(s, _)| s.name == SET_VTEPS4)
            .unwrap()
            .1 = Some(members);
        // Elements no record wants: no drift, and a repair for something else keeps them.
        assert_eq!(check(&d, &o, Depth::Elements), Ok(vec![]));
        o[0].rules.retain(|r| r.chain != "input");
        let ops = repair(&d, &o).unwrap().ops();
        assert!(
            !ops.iter()
                .any(|op| op.contains(SET_VTEPS4) && !op.starts_with("add set")),
            "{ops:?}"
        );
        // Elements not read: the set is not started over either.
        o[0].sets
            .iter_mut()
            .find(|(s, _)| s.name == SET_VTEPS6)
            .unwrap()
            .1 = None;
        let ops = repair(&d, &o).unwrap().ops();
        assert!(!ops.iter().any(|op| op.starts_with("flush set")), "{ops:?}");
    }

    #[test]
    fn the_member_rules_follow_the_vxlan_ports() {
        let with = |ports: Vec<u16>| FwOptions {
            vxlan_ports: ports,
            ..FwOptions::default()
        };
        let d = Desired::new(&with(vec![4789]), owner("aaaa0001"), &[net()], &[], &[]);
        // A kernel without the port's rules (made before the first overlay network) drifts
        // at the cheapest depth.
        let before = perfect(&desired());
        let drifts = check(&d, &before, Depth::Chains).unwrap();
        let count = |chain: &str, expected, found| Drift::RuleCount {
            family: Family::Inet,
            table: TABLE.into(),
            chain: chain.into(),
            expected,
            found,
        };
        assert_eq!(
            drifts,
            vec![
                count("forward", 11, 9),
                count("input", 3, 1),
                count("raw", 8, 6),
                count("raw_output", 2, 0)
            ],
            "the egress rules (forward), the member rules (input) and the tunnel's notrack \
             rules (raw, raw_output)"
        );
        assert_eq!(check(&d, &perfect(&d), Depth::Rules), Ok(vec![]));
    }
}

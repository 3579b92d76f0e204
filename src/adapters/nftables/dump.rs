//! Reading the rule set back: tables, chains, rules and sets as the kernel holds them, in the
//! calling thread's network namespace. Each list is one dump request (a round trip), so the
//! cost does not depend on what else is loaded, except for the size of the answer.

use super::encode::{parse_comment_udata, parse_tag_udata};
use super::socket::{list_set_elems, rejected, request, DUMP_RETRIES};
use super::sys::*;
use super::NftError;
use crate::adapters::nla::{attrs, be32, find_attr, Writer};
use crate::core::nft::{
    BaseChain, ChainInfo, ChainType, Family, Hook, ObservedTable, Policy, RuleInfo, SetInfo,
    TableInfo,
};

/// `NFPROTO_UNSPEC`: a dump of every family.
const NFPROTO_UNSPEC: u8 = 0;

/// Runs a dump until it is not interrupted by a concurrent change, and parses every message.
fn dump<T>(
    op: &str,
    msg_type: u16,
    family: u8,
    build: impl Fn(&mut Writer),
    mut parse: impl FnMut(u8, &[u8]) -> Option<T>,
) -> Result<Vec<T>, NftError> {
    for _ in 0..DUMP_RETRIES {
        let reply = request(op, msg_type, NLM_F_REQUEST | NLM_F_DUMP, family, &build)?;
        if let Some(payloads) = reply {
            return Ok(payloads
                .iter()
                .filter_map(|p| {
                    // nfgenmsg: family, version, res_id; the attributes follow.
                    let fam = *p.first()?;
                    parse(fam, p.get(4..)?)
                })
                .collect());
        }
    }
    Err(rejected(
        op.to_string(),
        libc::EINTR,
        Some("ruleset kept changing during the dump".into()),
    ))
}

fn string(a: &[u8]) -> String {
    String::from_utf8_lossy(a)
        .trim_end_matches('\0')
        .to_string()
}

/// Every table of the namespace, of every family weft models.
pub fn list_tables() -> Result<Vec<TableInfo>, NftError> {
    dump(
        "list tables",
        NFT_MSG_GETTABLE,
        NFPROTO_UNSPEC,
        |_| {},
        |fam, a| {
            Some(TableInfo {
                family: Family::from_nfproto(fam)?,
                name: string(find_attr(a, NFTA_TABLE_NAME)?),
                comment: find_attr(a, NFTA_TABLE_USERDATA)
                    .and_then(|u| parse_comment_udata(NFTNL_UDATA_TABLE_COMMENT, u)),
            })
        },
    )
}

/// Every chain of the namespace (of the families weft models), with the hook of base chains.
pub fn list_chains() -> Result<Vec<ChainInfo>, NftError> {
    dump(
        "list chains",
        NFT_MSG_GETCHAIN,
        NFPROTO_UNSPEC,
        |_| {},
        |fam, a| parse_chain(Family::from_nfproto(fam)?, a),
    )
}

fn parse_chain(family: Family, a: &[u8]) -> Option<ChainInfo> {
    let table = string(find_attr(a, NFTA_CHAIN_TABLE)?);
    let name = string(find_attr(a, NFTA_CHAIN_NAME)?);
    let mut base = None;
    let mut other_base = false;
    if let Some(hook) = find_attr(a, NFTA_CHAIN_HOOK) {
        let num = find_attr(hook, NFTA_HOOK_HOOKNUM).and_then(be32);
        // The priority is a signed 32-bit number sent as its two's complement.
        let prio = find_attr(hook, NFTA_HOOK_PRIORITY)
            .and_then(be32)
            .map(|p| i32::from_be_bytes(p.to_be_bytes()));
        let kind = match find_attr(a, NFTA_CHAIN_TYPE).map(string).as_deref() {
            Some("filter") => Some(ChainType::Filter),
            Some("nat") => Some(ChainType::Nat),
            _ => None,
        };
        let policy = match find_attr(a, NFTA_CHAIN_POLICY).and_then(be32) {
            Some(p) if p == NF_DROP as u32 => Policy::Drop,
            _ => Policy::Accept,
        };
        match (num.and_then(Hook::from_num), prio, kind) {
            (Some(hook), Some(priority), Some(kind)) => {
                base = Some(BaseChain {
                    hook,
                    priority,
                    kind,
                    policy,
                })
            }
            _ => other_base = true,
        }
    }
    Some(ChainInfo {
        family,
        table,
        name,
        base,
        other_base,
        use_count: find_attr(a, NFTA_CHAIN_USE).and_then(be32),
    })
}

/// The rules of one table (of one chain if `chain` is given), in chain order.
pub fn list_rules(
    family: Family,
    table: &str,
    chain: Option<&str>,
) -> Result<Vec<RuleInfo>, NftError> {
    let op = format!("list rules of {family} {table}");
    dump(
        &op,
        NFT_MSG_GETRULE,
        family.nfproto(),
        |w| {
            w.put_str(NFTA_RULE_TABLE, table);
            if let Some(c) = chain {
                w.put_str(NFTA_RULE_CHAIN, c);
            }
        },
        |_, a| {
            let exprs = find_attr(a, NFTA_RULE_EXPRESSIONS)
                .map(|list| {
                    attrs(list)
                        .filter(|(t, _)| *t == NFTA_LIST_ELEM)
                        .filter_map(|(_, e)| find_attr(e, NFTA_EXPR_NAME).map(string))
                        .collect()
                })
                .unwrap_or_default();
            Some(RuleInfo {
                chain: string(find_attr(a, NFTA_RULE_CHAIN)?),
                tag: find_attr(a, NFTA_RULE_USERDATA).and_then(parse_tag_udata),
                exprs,
            })
        },
    )
}

/// Whether any rule of the chain compares something with `name` followed by a NUL (how
/// `iifname "name"` and iptables' `-i name` look on the wire): a rough "does this chain
/// already mention that interface".
pub fn chain_mentions(
    family: Family,
    table: &str,
    chain: &str,
    name: &str,
) -> Result<bool, NftError> {
    let op = format!("list rules of {family} {table} {chain}");
    let mut needle = name.as_bytes().to_vec();
    needle.push(0);
    let hits = dump(
        &op,
        NFT_MSG_GETRULE,
        family.nfproto(),
        |w| {
            w.put_str(NFTA_RULE_TABLE, table);
            w.put_str(NFTA_RULE_CHAIN, chain);
        },
        |_, a| {
            find_attr(a, NFTA_RULE_EXPRESSIONS)
                .is_some_and(|e| e.windows(needle.len()).any(|w| w == needle.as_slice()))
                .then_some(())
        },
    )?;
    Ok(!hits.is_empty())
}

/// The sets and maps of one table.
pub fn list_sets(family: Family, table: &str) -> Result<Vec<SetInfo>, NftError> {
    let op = format!("list sets of {family} {table}");
    dump(
        &op,
        NFT_MSG_GETSET,
        family.nfproto(),
        |w| w.put_str(NFTA_SET_TABLE, table),
        |_, a| {
            Some(SetInfo {
                name: string(find_attr(a, NFTA_SET_NAME)?),
                flags: find_attr(a, NFTA_SET_FLAGS).and_then(be32).unwrap_or(0),
                key_type: find_attr(a, NFTA_SET_KEY_TYPE).and_then(be32).unwrap_or(0),
                key_len: find_attr(a, NFTA_SET_KEY_LEN).and_then(be32).unwrap_or(0),
                data_type: find_attr(a, NFTA_SET_DATA_TYPE).and_then(be32),
                data_len: find_attr(a, NFTA_SET_DATA_LEN).and_then(be32),
            })
        },
    )
}

/// Everything about one table: the table itself (from `tables`, a [`list_tables`] result),
/// its chains (from `chains`, a [`list_chains`] result), with `rules` its rules, with
/// `elements` its sets and their elements. A missing table gives an empty observation.
pub fn observe_table(
    family: Family,
    name: &str,
    tables: &[TableInfo],
    chains: &[ChainInfo],
    rules: bool,
    elements: bool,
) -> Result<ObservedTable, NftError> {
    let Some(table) = tables
        .iter()
        .find(|t| t.family == family && t.name == name)
        .cloned()
    else {
        return Ok(ObservedTable::default());
    };
    let mut sets = Vec::new();
    for s in if elements {
        list_sets(family, name)?
    } else {
        vec![]
    } {
        let elems = match list_set_elems(family, name, &s.name) {
            Ok(e) => Some(e),
            // Deleted since the set dump: reported as missing by the caller's next look.
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        sets.push((s, elems));
    }
    Ok(ObservedTable {
        table: Some(table),
        chains: chains
            .iter()
            .filter(|c| c.family == family && c.table == name)
            .cloned()
            .collect(),
        rules: if rules || elements {
            list_rules(family, name, None)?
        } else {
            vec![]
        },
        sets,
    })
}

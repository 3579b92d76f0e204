//! What dumps of the kernel's rule set say, as plain data: the observed side of weft's
//! firewall drift check (the desired side is [`super::Batch`] content built by
//! [`crate::core::firewall`]).

use super::batch::{BaseChain, Family};
use super::set::Elem;

/// A table, from a table dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Its family.
    pub family: Family,
    /// Its name.
    pub name: String,
    /// Its comment (nft's userdata comment), if any.
    pub comment: Option<String>,
}

/// A chain, from a chain dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: String,
    /// The chain.
    pub name: String,
    /// Hook, priority, type and policy of a base chain, when weft knows the hook and type;
    /// `None` for a regular chain.
    pub base: Option<BaseChain>,
    /// A base chain whose hook or type weft does not model (ingress, `route`...).
    pub other_base: bool,
    /// `NFTA_CHAIN_USE`: the kernel's reference count of the chain, one per rule in it and
    /// one per jump or goto to it — a rule count that comes with the chain dump.
    pub use_count: Option<u32>,
}

/// A rule, from a rule dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The chain it is in.
    pub chain: String,
    /// The fingerprint weft stored in its userdata, if any.
    pub tag: Option<u64>,
    /// The names of its expressions, in order (for reports).
    pub exprs: Vec<String>,
}

/// A set's definition, from a set dump (the numbers the kernel compares on re-adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// Set name.
    pub name: String,
    /// `NFTA_SET_FLAGS`.
    pub flags: u32,
    /// `NFTA_SET_KEY_TYPE` (nft's type id).
    pub key_type: u32,
    /// `NFTA_SET_KEY_LEN`.
    pub key_len: u32,
    /// `NFTA_SET_DATA_TYPE`, for maps.
    pub data_type: Option<u32>,
    /// `NFTA_SET_DATA_LEN`, for data maps.
    pub data_len: Option<u32>,
}

/// Everything observed about one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTable {
    /// The table, `None` if it does not exist.
    pub table: Option<TableInfo>,
    /// Its chains.
    pub chains: Vec<ChainInfo>,
    /// Its rules, in chain order.
    pub rules: Vec<RuleInfo>,
    /// Its sets and maps, with their elements (`None` when not read).
    pub sets: Vec<(SetInfo, Option<Vec<Elem>>)>,
}

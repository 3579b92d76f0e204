//! The nf_tables rule-set model, as plain data: tables, chains, rules made of expressions,
//! sets, maps and their elements, and the transaction ([`Batch`]) that carries changes.
//!
//! This is the level the kernel speaks (registers, payload offsets, set key types), typed so
//! that [`crate::core::firewall`] can describe weft's rule set purely and unit tests can
//! compare it. Turning a batch into netlink bytes and sending it is the adapter's job
//! (`adapters::nftables`).

mod batch;
mod expr;
mod observed;
mod set;

pub use batch::{BaseChain, Batch, Chain, ChainType, Family, Hook, Msg, Policy};
pub use expr::{
    ct_state, CmpOp, CtKey, Expr, IpFamily, MetaKey, NatKind, PayloadBase, Reg, Verdict,
};
pub use observed::{ChainInfo, ObservedTable, RuleInfo, SetInfo, TableInfo};
pub use set::{concat, ifname, DataType, Elem, ElemData, KeyType, Scalar, SetFlags, SetSpec};

/// `NFPROTO_INET`: a table for IPv4 and IPv6.
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4`.
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`.
pub const NFPROTO_IPV6: u8 = 10;
/// `NFPROTO_BRIDGE`.
pub const NFPROTO_BRIDGE: u8 = 7;

/// `NFT_SET_CONSTANT`: the set cannot change after its batch.
pub const NFT_SET_CONSTANT: u32 = 0x2;
/// `NFT_SET_INTERVAL`: elements are ranges.
pub const NFT_SET_INTERVAL: u32 = 0x4;
/// `NFT_SET_TIMEOUT`: elements may expire.
pub const NFT_SET_TIMEOUT: u32 = 0x10;
/// `NFT_SET_MAP`: elements map to data.
pub const NFT_SET_MAP: u32 = 0x8;
/// `NFT_SET_CONCAT`: an interval set of concatenations (the kernel's pipapo backend).
pub const NFT_SET_CONCAT: u32 = 0x80;

/// A rule's fingerprint: FNV-1a (64 bit) of its expressions as weft describes them. Stored in
/// the rule's userdata when weft adds it, so a dump tells whether a chain still holds exactly
/// the rules this weft would install: a rule deleted, replaced, or made by another version of
/// weft has another (or no) fingerprint. Only equality matters, so the text it hashes may
/// change between versions (a rebuild follows, which is harmless).
pub fn fingerprint(exprs: &[Expr]) -> u64 {
    let text = format!("{exprs:?}");
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Netlink attributes and nf_tables register contents are aligned to 4 bytes. Saturates
/// instead of wrapping (no buffer comes near `usize::MAX`).
pub const fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

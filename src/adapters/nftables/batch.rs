//! Tables, chains and the transaction batch that carries every change to the kernel.

use std::fmt;

use super::expr::Expr;
use super::nla::Writer;
use super::set::{Elem, SetSpec};
use super::sys::*;
use super::NftError;

/// The address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 and IPv6 in one table.
    Inet,
    /// IPv4 only.
    Ip,
    /// IPv6 only.
    Ip6,
}

impl Family {
    /// The `NFPROTO_*` value sent in `nfgenmsg.nfgen_family`.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => NFPROTO_INET,
            Family::Ip => NFPROTO_IPV4,
            Family::Ip6 => NFPROTO_IPV6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        })
    }
}

/// Netfilter hooks a base chain can attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// Before routing.
    Prerouting,
    /// Packets for this host.
    Input,
    /// Routed (and, with br_netfilter, bridged) packets.
    Forward,
    /// Packets this host sends.
    Output,
    /// After routing, before leaving.
    Postrouting,
}

impl Hook {
    fn num(self) -> u32 {
        match self {
            Hook::Prerouting => NF_INET_PRE_ROUTING,
            Hook::Input => NF_INET_LOCAL_IN,
            Hook::Forward => NF_INET_FORWARD,
            Hook::Output => NF_INET_LOCAL_OUT,
            Hook::Postrouting => NF_INET_POST_ROUTING,
        }
    }
}

/// The chain type, which decides which expressions are allowed (NAT only in `nat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainType {
    /// `type filter`.
    Filter,
    /// `type nat`.
    Nat,
}

/// What happens to packets that reach the end of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Let them through.
    Accept,
    /// Drop them.
    Drop,
}

/// What makes a chain a base chain: where it hooks into the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseChain {
    /// The hook.
    pub hook: Hook,
    /// Order among chains of the same hook (lower runs first).
    pub priority: i32,
    /// Chain type.
    pub kind: ChainType,
    /// Default verdict.
    pub policy: Policy,
}

/// A chain: regular (only reached by jump/goto) when `base` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Chain name.
    pub name: String,
    /// Hook configuration of a base chain.
    pub base: Option<BaseChain>,
}

/// One message of a batch, kept typed until [`Batch::encode`] so that errors can name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Msg {
    AddTable {
        family: Family,
        name: String,
    },
    DestroyTable {
        family: Family,
        name: String,
    },
    AddChain {
        family: Family,
        table: String,
        chain: Chain,
    },
    FlushChain {
        family: Family,
        table: String,
        chain: String,
    },
    AddRule {
        family: Family,
        table: String,
        chain: String,
        exprs: Vec<Expr>,
    },
    AddSet {
        family: Family,
        table: String,
        set: SetSpec,
    },
    FlushSet {
        family: Family,
        table: String,
        set: String,
    },
    AddElems {
        family: Family,
        table: String,
        set: String,
        elems: Vec<Elem>,
    },
    DestroyElems {
        family: Family,
        table: String,
        set: String,
        elems: Vec<Elem>,
    },
}

impl Msg {
    fn describe(&self) -> String {
        match self {
            Msg::AddTable { family, name } => format!("add table {family} {name}"),
            Msg::DestroyTable { family, name } => format!("destroy table {family} {name}"),
            Msg::AddChain {
                family,
                table,
                chain,
            } => {
                format!("add chain {family} {table} {}", chain.name)
            }
            Msg::FlushChain {
                family,
                table,
                chain,
            } => {
                format!("flush chain {family} {table} {chain}")
            }
            Msg::AddRule {
                family,
                table,
                chain,
                ..
            } => {
                format!("add rule to {family} {table} {chain}")
            }
            Msg::AddSet { family, table, set } => format!("add set {family} {table} {}", set.name),
            Msg::FlushSet { family, table, set } => format!("flush set {family} {table} {set}"),
            Msg::AddElems {
                family, table, set, ..
            } => {
                format!("add elements to {family} {table} {set}")
            }
            Msg::DestroyElems {
                family, table, set, ..
            } => {
                format!("destroy elements in {family} {table} {set}")
            }
        }
    }

    /// Encodes the message as one netlink message, or several for element lists (see
    /// [`encode_elems`]), each with the sequence number `next_seq` hands out.
    fn encode(&self, w: &mut Writer, next_seq: &mut dyn FnMut() -> u32, set_id: &mut u32) {
        // Every message asks for an ACK so that success is confirmed message by message.
        let req = NLM_F_REQUEST | NLM_F_ACK;
        let ty = |msg: u16| (NFNL_SUBSYS_NFTABLES << 8) | msg;
        match self {
            Msg::AddElems {
                family,
                table,
                set,
                elems,
            } => {
                let head = ElemsHead {
                    msg_type: ty(NFT_MSG_NEWSETELEM),
                    flags: req | NLM_F_CREATE,
                    family: *family,
                    table,
                    set,
                };
                return encode_elems(w, &head, elems, next_seq);
            }
            Msg::DestroyElems {
                family,
                table,
                set,
                elems,
            } => {
                let head = ElemsHead {
                    msg_type: ty(NFT_MSG_DESTROYSETELEM),
                    flags: req,
                    family: *family,
                    table,
                    set,
                };
                return encode_elems(w, &head, elems, next_seq);
            }
            _ => {}
        }
        let seq = next_seq();
        match self {
            Msg::AddTable { family, name } => {
                // CREATE without EXCL: an existing table is kept (create-if-absent).
                let m = w.begin_msg(
                    ty(NFT_MSG_NEWTABLE),
                    req | NLM_F_CREATE,
                    seq,
                    family.nfproto(),
                    0,
                );
                w.put_str(NFTA_TABLE_NAME, name);
                w.put_be32(NFTA_TABLE_FLAGS, 0);
                w.end_msg(m);
            }
            Msg::DestroyTable { family, name } => {
                let m = w.begin_msg(ty(NFT_MSG_DESTROYTABLE), req, seq, family.nfproto(), 0);
                w.put_str(NFTA_TABLE_NAME, name);
                w.end_msg(m);
            }
            Msg::AddChain {
                family,
                table,
                chain,
            } => {
                let m = w.begin_msg(
                    ty(NFT_MSG_NEWCHAIN),
                    req | NLM_F_CREATE,
                    seq,
                    family.nfproto(),
                    0,
                );
                w.put_str(NFTA_CHAIN_TABLE, table);
                w.put_str(NFTA_CHAIN_NAME, &chain.name);
                if let Some(b) = &chain.base {
                    w.put_str(
                        NFTA_CHAIN_TYPE,
                        match b.kind {
                            ChainType::Filter => "filter",
                            ChainType::Nat => "nat",
                        },
                    );
                    let policy = match b.policy {
                        Policy::Accept => NF_ACCEPT,
                        Policy::Drop => NF_DROP,
                    };
                    w.put_be32(NFTA_CHAIN_POLICY, policy as u32);
                    let h = w.nest_start(NFTA_CHAIN_HOOK);
                    w.put_be32(NFTA_HOOK_HOOKNUM, b.hook.num());
                    w.put_be32(NFTA_HOOK_PRIORITY, b.priority as u32);
                    w.nest_end(h);
                }
                w.end_msg(m);
            }
            Msg::FlushChain {
                family,
                table,
                chain,
            } => {
                // DELRULE naming only the chain deletes all its rules.
                let m = w.begin_msg(ty(NFT_MSG_DELRULE), req, seq, family.nfproto(), 0);
                w.put_str(NFTA_RULE_TABLE, table);
                w.put_str(NFTA_RULE_CHAIN, chain);
                w.end_msg(m);
            }
            Msg::AddRule {
                family,
                table,
                chain,
                exprs,
            } => {
                let flags = req | NLM_F_CREATE | NLM_F_APPEND;
                let m = w.begin_msg(ty(NFT_MSG_NEWRULE), flags, seq, family.nfproto(), 0);
                w.put_str(NFTA_RULE_TABLE, table);
                w.put_str(NFTA_RULE_CHAIN, chain);
                let list = w.nest_start(NFTA_RULE_EXPRESSIONS);
                for e in exprs {
                    e.encode(w);
                }
                w.nest_end(list);
                w.end_msg(m);
            }
            Msg::AddSet { family, table, set } => {
                *set_id += 1;
                let m = w.begin_msg(
                    ty(NFT_MSG_NEWSET),
                    req | NLM_F_CREATE,
                    seq,
                    family.nfproto(),
                    0,
                );
                w.put_str(NFTA_SET_TABLE, table);
                set.encode(w, *set_id);
                w.end_msg(m);
            }
            Msg::FlushSet { family, table, set } => {
                // DELSETELEM without an element list flushes the set.
                let m = w.begin_msg(ty(NFT_MSG_DELSETELEM), req, seq, family.nfproto(), 0);
                w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
                w.put_str(NFTA_SET_ELEM_LIST_SET, set);
                w.end_msg(m);
            }
            // Encoded above.
            Msg::AddElems { .. } | Msg::DestroyElems { .. } => {}
        }
    }
}

/// Most bytes of elements one message carries: `NFTA_SET_ELEM_LIST_ELEMENTS` is a nested
/// attribute whose 16-bit length (at most 65535) counts its own 4-byte header.
const ELEMS_MAX: usize = 65535 - 4;

/// What every message of one element list repeats.
struct ElemsHead<'a> {
    msg_type: u16,
    flags: u16,
    family: Family,
    table: &'a str,
    set: &'a str,
}

/// An element list as NEWSETELEM/DESTROYSETELEM messages, as many as it takes for no
/// element list attribute to pass 65535 bytes (about 1,800 published ports per message).
/// They stay in the caller's batch, so the change is still one transaction.
fn encode_elems(
    w: &mut Writer,
    head: &ElemsHead,
    elems: &[Elem],
    next_seq: &mut dyn FnMut() -> u32,
) {
    let mut chunks: Vec<Writer> = Vec::new();
    let mut cur = Writer::default();
    for e in elems {
        let mut one = Writer::default();
        e.encode(&mut one);
        let fits = cur
            .buf
            .len()
            .checked_add(one.buf.len())
            .is_some_and(|n| n <= ELEMS_MAX);
        if !fits && !cur.buf.is_empty() {
            chunks.push(std::mem::take(&mut cur));
        }
        cur.append(one);
    }
    if !cur.buf.is_empty() || cur.failed() {
        chunks.push(cur);
    }
    for chunk in chunks {
        let m = w.begin_msg(
            head.msg_type,
            head.flags,
            next_seq(),
            head.family.nfproto(),
            0,
        );
        w.put_str(NFTA_SET_ELEM_LIST_TABLE, head.table);
        w.put_str(NFTA_SET_ELEM_LIST_SET, head.set);
        let list = w.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS);
        w.append(chunk);
        w.nest_end(list);
        w.end_msg(m);
    }
}

/// A batch as netlink bytes, and for each message after the begin marker (sequence numbers
/// `seq_start + 1 ..`) the index of the batch message it encodes.
pub(crate) struct Wire {
    /// The datagram.
    pub(crate) bytes: Vec<u8>,
    /// `origin[k]`: index (as in [`Batch::ops`]) of netlink message `k`.
    pub(crate) origin: Vec<usize>,
}

/// An nf_tables transaction: every message is applied, or none is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Batch {
    msgs: Vec<Msg>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Number of messages (without the begin/end markers).
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// One human-readable description per message, in order (e.g. `add rule to inet weft
    /// forward`). A message whose element list is split is sent as several netlink messages
    /// ([`Batch::encode`]), all described by its one entry.
    pub fn ops(&self) -> Vec<String> {
        self.msgs.iter().map(Msg::describe).collect()
    }

    /// Appends all messages of `other`.
    pub fn extend(&mut self, other: Batch) {
        self.msgs.extend(other.msgs);
    }

    /// Creates the table if absent; an existing one is kept with its content.
    pub fn add_table(&mut self, family: Family, name: &str) {
        self.msgs.push(Msg::AddTable {
            family,
            name: name.into(),
        });
    }

    /// Deletes the table and everything in it; no error if it does not exist.
    pub fn destroy_table(&mut self, family: Family, name: &str) {
        self.msgs.push(Msg::DestroyTable {
            family,
            name: name.into(),
        });
    }

    /// Creates the chain if absent. An existing base chain gets the given policy; its hook and
    /// type cannot change (the kernel refuses).
    pub fn add_chain(&mut self, family: Family, table: &str, chain: Chain) {
        self.msgs.push(Msg::AddChain {
            family,
            table: table.into(),
            chain,
        });
    }

    /// Deletes every rule of the chain.
    pub fn flush_chain(&mut self, family: Family, table: &str, chain: &str) {
        self.msgs.push(Msg::FlushChain {
            family,
            table: table.into(),
            chain: chain.into(),
        });
    }

    /// Appends a rule at the end of the chain.
    pub fn add_rule(&mut self, family: Family, table: &str, chain: &str, exprs: Vec<Expr>) {
        self.msgs.push(Msg::AddRule {
            family,
            table: table.into(),
            chain: chain.into(),
            exprs,
        });
    }

    /// Creates the set if absent. An existing set with a different definition makes the whole
    /// batch fail with `EEXIST`.
    pub fn add_set(&mut self, family: Family, table: &str, set: SetSpec) {
        self.msgs.push(Msg::AddSet {
            family,
            table: table.into(),
            set,
        });
    }

    /// Removes every element of the set.
    pub fn flush_set(&mut self, family: Family, table: &str, set: &str) {
        self.msgs.push(Msg::FlushSet {
            family,
            table: table.into(),
            set: set.into(),
        });
    }

    /// Adds elements; already present ones are no error. An empty list adds no message.
    pub fn add_elements(&mut self, family: Family, table: &str, set: &str, elems: Vec<Elem>) {
        if !elems.is_empty() {
            self.msgs.push(Msg::AddElems {
                family,
                table: table.into(),
                set: set.into(),
                elems,
            });
        }
    }

    /// Removes elements; absent ones are no error (`NFT_MSG_DESTROYSETELEM`, Linux 6.3+).
    /// An empty list adds no message: an element-less delete would flush the set.
    pub fn destroy_elements(&mut self, family: Family, table: &str, set: &str, elems: Vec<Elem>) {
        if !elems.is_empty() {
            self.msgs.push(Msg::DestroyElems {
                family,
                table: table.into(),
                set: set.into(),
                elems,
            });
        }
    }

    /// The batch as netlink bytes: `NFNL_MSG_BATCH_BEGIN` with sequence `seq_start`, the
    /// messages with `seq_start + 1 ..`, then `NFNL_MSG_BATCH_END`. An element list too long
    /// for one netlink attribute is split over several consecutive messages of the batch.
    /// Deterministic: the same batch and `seq_start` always give the same bytes (set ids are
    /// numbered per batch). Fails, naming the message, if a length does not fit its field.
    pub fn encode(&self, seq_start: u32) -> Result<Vec<u8>, NftError> {
        self.encode_wire(seq_start).map(|w| w.bytes)
    }

    /// [`Batch::encode`], with the batch message each netlink message came from.
    pub(crate) fn encode_wire(&self, seq_start: u32) -> Result<Wire, NftError> {
        let mut w = Writer::default();
        let m = w.begin_msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq_start,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end_msg(m);
        let mut set_id = 0;
        let mut seq = seq_start;
        let mut origin = Vec::with_capacity(self.msgs.len());
        for (i, msg) in self.msgs.iter().enumerate() {
            // Sequence numbers are a wrapping u32 space.
            let mut next_seq = || {
                seq = seq.wrapping_add(1);
                origin.push(i);
                seq
            };
            msg.encode(&mut w, &mut next_seq, &mut set_id);
            if let Some(e) = w.take_error() {
                return Err(NftError::Encode {
                    op: msg.describe(),
                    reason: e.to_string(),
                });
            }
        }
        let m = w.begin_msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq.wrapping_add(1),
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end_msg(m);
        let bytes = w.finish().map_err(|e| NftError::Encode {
            op: "nftables batch".to_string(),
            reason: e.to_string(),
        })?;
        Ok(Wire { bytes, origin })
    }
}

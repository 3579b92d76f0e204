//! Tables, chains and the transaction batch that carries every change to the kernel.

use std::fmt;

use super::expr::Expr;
use super::set::{Elem, SetSpec};
use super::{NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6};

/// The address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 and IPv6 in one table.
    Inet,
    /// IPv4 only.
    Ip,
    /// IPv6 only.
    Ip6,
    /// Frames crossing Linux bridges (hooks see every frame a bridge port receives).
    Bridge,
}

impl Family {
    /// The `NFPROTO_*` value sent in `nfgenmsg.nfgen_family`.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => NFPROTO_INET,
            Family::Ip => NFPROTO_IPV4,
            Family::Ip6 => NFPROTO_IPV6,
            Family::Bridge => NFPROTO_BRIDGE,
        }
    }

    /// The family of an `NFPROTO_*` value, for reading dumps; `None` for families weft does
    /// not model (arp, netdev).
    pub fn from_nfproto(v: u8) -> Option<Family> {
        match v {
            NFPROTO_INET => Some(Family::Inet),
            NFPROTO_IPV4 => Some(Family::Ip),
            NFPROTO_IPV6 => Some(Family::Ip6),
            NFPROTO_BRIDGE => Some(Family::Bridge),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Bridge => "bridge",
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
    /// The hook number the kernel uses (`NF_INET_*`; the bridge family's `NF_BR_*` hooks
    /// have the same numbers for the same places).
    pub fn num(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }

    /// The hook of a hook number; `None` for hooks weft does not use (ingress...).
    pub fn from_num(n: u32) -> Option<Hook> {
        [
            Hook::Prerouting,
            Hook::Input,
            Hook::Forward,
            Hook::Output,
            Hook::Postrouting,
        ]
        .into_iter()
        .find(|h| h.num() == n)
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

/// One message of a batch, kept typed until it is encoded so that errors can name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Msg {
    /// Create a table if absent. `comment` becomes the table's userdata (nft shows it as
    /// `comment "..."`); the kernel keeps the first one, it cannot be changed later.
    #[allow(missing_docs)]
    AddTable {
        family: Family,
        name: String,
        comment: Option<String>,
    },
    /// Delete a table; absent is no error.
    #[allow(missing_docs)]
    DestroyTable { family: Family, name: String },
    /// Create a chain if absent.
    #[allow(missing_docs)]
    AddChain {
        family: Family,
        table: String,
        chain: Chain,
    },
    /// Delete every rule of a chain.
    #[allow(missing_docs)]
    FlushChain {
        family: Family,
        table: String,
        chain: String,
    },
    /// Append a rule. `tag` is stored in the rule's userdata and read back by dumps, so a
    /// rule can be recognised without decoding its expressions (see [`super::fingerprint`]).
    #[allow(missing_docs)]
    AddRule {
        family: Family,
        table: String,
        chain: String,
        exprs: Vec<Expr>,
        tag: Option<u64>,
    },
    /// Create a set or map if absent.
    #[allow(missing_docs)]
    AddSet {
        family: Family,
        table: String,
        set: SetSpec,
    },
    /// Delete a chain (it must have no rules and no jumps to it); absent is no error.
    #[allow(missing_docs)]
    DestroyChain {
        family: Family,
        table: String,
        chain: String,
    },
    /// Delete a set (no rule may refer to it); absent is no error.
    #[allow(missing_docs)]
    DestroySet {
        family: Family,
        table: String,
        set: String,
    },
    /// Remove every element of a set.
    #[allow(missing_docs)]
    FlushSet {
        family: Family,
        table: String,
        set: String,
    },
    /// Add elements.
    #[allow(missing_docs)]
    AddElems {
        family: Family,
        table: String,
        set: String,
        elems: Vec<Elem>,
    },
    /// Remove elements; absent ones are no error.
    #[allow(missing_docs)]
    DestroyElems {
        family: Family,
        table: String,
        set: String,
        elems: Vec<Elem>,
    },
}

impl Msg {
    /// A readable one-line description, e.g. `add rule to inet weft forward`.
    pub fn describe(&self) -> String {
        match self {
            Msg::AddTable { family, name, .. } => format!("add table {family} {name}"),
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
            Msg::DestroyChain {
                family,
                table,
                chain,
            } => format!("destroy chain {family} {table} {chain}"),
            Msg::DestroySet { family, table, set } => {
                format!("destroy set {family} {table} {set}")
            }
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
    /// forward`); message `i` is sent with sequence number `seq_start + 1 + i`.
    pub fn ops(&self) -> Vec<String> {
        self.msgs.iter().map(Msg::describe).collect()
    }

    /// The messages, in order.
    pub fn msgs(&self) -> &[Msg] {
        &self.msgs
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
            comment: None,
        });
    }

    /// Creates the table with a comment if absent. An existing table keeps its own comment
    /// (the kernel does not update userdata).
    pub fn add_table_with_comment(&mut self, family: Family, name: &str, comment: &str) {
        self.msgs.push(Msg::AddTable {
            family,
            name: name.into(),
            comment: Some(comment.into()),
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
            tag: None,
        });
    }

    /// Appends a rule tagged with its [`super::fingerprint`], so that a dump of the chain
    /// tells whether it is still exactly this rule.
    pub fn add_rule_tagged(&mut self, family: Family, table: &str, chain: &str, exprs: Vec<Expr>) {
        let tag = super::fingerprint(&exprs);
        self.msgs.push(Msg::AddRule {
            family,
            table: table.into(),
            chain: chain.into(),
            exprs,
            tag: Some(tag),
        });
    }

    /// Deletes a chain; no error if it does not exist (`NFT_MSG_DESTROYCHAIN`, Linux 6.3+).
    /// Its rules must be flushed first, in this batch or before.
    pub fn destroy_chain(&mut self, family: Family, table: &str, chain: &str) {
        self.msgs.push(Msg::DestroyChain {
            family,
            table: table.into(),
            chain: chain.into(),
        });
    }

    /// Deletes a set; no error if it does not exist. No rule may refer to it any more.
    pub fn destroy_set(&mut self, family: Family, table: &str, set: &str) {
        self.msgs.push(Msg::DestroySet {
            family,
            table: table.into(),
            set: set.into(),
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
}

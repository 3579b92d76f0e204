//! Rule expressions: the kernel's nf_tables virtual machine instructions, typed.
//!
//! A rule is a list of [`Expr`]; each loads data into registers, compares it, looks it up in a
//! set, or issues a verdict. This is the level the kernel speaks; nft's high-level syntax
//! (`oifname @bridges drop`) is a few of these in a row.

use super::{NFPROTO_IPV4, NFPROTO_IPV6};

/// A data register. Weft uses the 32-bit registers (`NFT_REG32_00` = 8 ... `NFT_REG32_15`) so
/// that concatenations can be built from consecutive registers: a 16-byte interface name
/// occupies 4 of them, an IPv4 address 1, a port 1 (padded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reg(u32);

impl Reg {
    /// The verdict register, the destination of verdict maps.
    pub const VERDICT: Reg = Reg(0);

    /// `NFT_REG32_00`: the first 32-bit data register.
    pub const R0: Reg = Reg(8);

    /// `NFT_REG_1`: the first 16-byte register, where nft loads single values. Weft uses the
    /// 32-bit registers; this one exists so golden tests can rebuild nft's own bytes.
    pub const REG1: Reg = Reg(1);

    /// The 16-byte register `NFT_REG_<n>` (1 to 4; each is the same storage as four 32-bit
    /// registers), which nft also uses. Weft does not; golden tests do.
    pub const fn r128(n: u32) -> Reg {
        Reg(n)
    }

    /// The 32-bit register `NFT_REG32_<index>`; `index` must be below 16 (the kernel rejects
    /// larger ones with `ERANGE`).
    pub const fn r32(index: u32) -> Reg {
        Reg(8 + index)
    }

    /// The register just after `len` bytes loaded into `self`: where the next component of a
    /// concatenation goes (each component is padded to a multiple of 4 bytes).
    pub const fn after(self, len: u32) -> Reg {
        Reg(self.0 + len.div_ceil(4))
    }

    /// The number the kernel sees.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

/// What an `immediate` expression puts in the verdict register, or what a verdict-map element
/// maps to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the packet pass this hook.
    Accept,
    /// Drop the packet.
    Drop,
    /// Continue with the next rule (only meaningful in maps).
    Continue,
    /// Return to the calling chain.
    Return,
    /// Run the named chain, then come back.
    Jump(String),
    /// Run the named chain and do not come back.
    Goto(String),
}

/// `meta` keys weft uses (enum nft_meta_keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// Packet mark, 4 bytes host order.
    Mark,
    /// Input interface index, 4 bytes host order.
    Iif,
    /// Output interface index, 4 bytes host order.
    Oif,
    /// Input interface name, 16 bytes NUL-padded.
    Iifname,
    /// Output interface name, 16 bytes NUL-padded.
    Oifname,
    /// Netfilter protocol family (`NFPROTO_IPV4` = 2, `NFPROTO_IPV6` = 10), 1 byte.
    Nfproto,
    /// Layer-4 protocol number (6 TCP, 17 UDP), 1 byte.
    L4proto,
    /// Name of the bridge whose port received the frame (`meta ibrname`, bridge family), 16
    /// bytes NUL-padded.
    BriIifname,
}

impl MetaKey {
    /// How many bytes the kernel writes to the destination register.
    pub fn byte_len(self) -> u32 {
        match self {
            MetaKey::Iifname | MetaKey::Oifname | MetaKey::BriIifname => 16,
            MetaKey::Nfproto | MetaKey::L4proto => 1,
            MetaKey::Mark | MetaKey::Iif | MetaKey::Oif => 4,
        }
    }
}

/// Conntrack keys weft uses (enum nft_ct_keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtKey {
    /// `ct state`: a 4-byte host-order bit set, see [`ct_state`].
    State,
    /// `ct status`: `IPS_*` bits, 4 bytes host order (e.g. `IPS_DST_NAT` = 0x20).
    Status,
}

/// Bits of `ct state` (`NF_CT_STATE_BIT` in `nf_conntrack_common.h`).
pub mod ct_state {
    /// Packet could not be tracked.
    pub const INVALID: u32 = 1;
    /// Part of a connection that has seen traffic both ways.
    pub const ESTABLISHED: u32 = 1 << 1;
    /// Related to an existing connection (ICMP errors, FTP data...).
    pub const RELATED: u32 = 1 << 2;
    /// First packet of a connection.
    pub const NEW: u32 = 1 << 3;
    /// Explicitly not tracked.
    pub const UNTRACKED: u32 = 1 << 6;
}

/// Which header a `payload` expression reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadBase {
    /// The link-layer header.
    LinkLayer,
    /// The IPv4/IPv6 header.
    Network,
    /// The TCP/UDP/... header.
    Transport,
}

/// Comparison operators of `cmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
}

/// Source vs. destination NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Rewrite the source (postrouting).
    Snat,
    /// Rewrite the destination (prerouting/output).
    Dnat,
}

/// The address family of a `nat` statement: the kernel needs it even in an `inet` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The `NFPROTO_*` value, also what `meta nfproto` loads.
    pub fn nfproto(self) -> u8 {
        match self {
            IpFamily::V4 => NFPROTO_IPV4,
            IpFamily::V6 => NFPROTO_IPV6,
        }
    }
}

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// Load packet metadata into `dreg`.
    Meta {
        /// What to load.
        key: MetaKey,
        /// Destination register.
        dreg: Reg,
    },
    /// Load `len` bytes at `offset` of a header into `dreg` (network byte order).
    Payload {
        /// The header.
        base: PayloadBase,
        /// Byte offset inside it.
        offset: u32,
        /// Number of bytes.
        len: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// Compare `data.len()` bytes at `sreg` with `data`; the rule stops here when false.
    Cmp {
        /// Source register.
        sreg: Reg,
        /// Operator.
        op: CmpOp,
        /// The bytes to compare with.
        data: Vec<u8>,
    },
    /// Look the key at `sreg` up in a set or map; stops the rule when absent (or present, if
    /// `invert`). For maps, the element's data goes to `dreg` ([`Reg::VERDICT`] for vmaps).
    Lookup {
        /// Set name in the same table.
        set: String,
        /// First register of the key.
        sreg: Reg,
        /// Destination for map data.
        dreg: Option<Reg>,
        /// Match when the key is absent.
        invert: bool,
    },
    /// Load conntrack data into `dreg`.
    Ct {
        /// What to load.
        key: CtKey,
        /// Destination register.
        dreg: Reg,
    },
    /// `dreg = (sreg & mask) ^ xor` over `mask.len()` bytes (`xor` must be as long).
    Bitwise {
        /// Source register.
        sreg: Reg,
        /// Destination register.
        dreg: Reg,
        /// AND mask.
        mask: Vec<u8>,
        /// XOR value.
        xor: Vec<u8>,
    },
    /// Set the verdict: accept, drop, jump...
    Verdict(Verdict),
    /// Put constant bytes into a data register (e.g. a NAT address).
    Immediate {
        /// Destination register.
        dreg: Reg,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Source NAT to the outgoing interface's address (only in `nat` postrouting chains).
    Masquerade,
    /// Count packets and bytes.
    Counter,
    /// `notrack`: the packet bypasses connection tracking (raw chains only).
    Notrack,
    /// `fib daddr type`: the route type of the destination address (`RTN_LOCAL` = 2 for an
    /// address of this host), 4 bytes host order, into `dreg`.
    FibDaddrType {
        /// Destination register.
        dreg: Reg,
    },
    /// Source or destination NAT to the address (and port) found in registers.
    Nat {
        /// SNAT or DNAT.
        kind: NatKind,
        /// Which family's addresses the registers hold.
        family: IpFamily,
        /// Register holding the new address.
        addr: Option<Reg>,
        /// Register holding the new port (2 bytes, network order).
        port: Option<Reg>,
        /// Extra `NF_NAT_RANGE_*` flags (random, persistent...); the kernel derives the
        /// address/port flags from the registers given.
        flags: u32,
    },
}

impl Expr {
    /// `meta KEY` into `dreg`.
    pub fn meta(key: MetaKey, dreg: Reg) -> Expr {
        Expr::Meta { key, dreg }
    }

    /// `lookup @set` of the key at `sreg`.
    pub fn lookup(set: &str, sreg: Reg) -> Expr {
        Expr::Lookup {
            set: set.to_string(),
            sreg,
            dreg: None,
            invert: false,
        }
    }

    /// Set lookup that matches when the key is *not* in `set`.
    pub fn lookup_not(set: &str, sreg: Reg) -> Expr {
        Expr::Lookup {
            set: set.to_string(),
            sreg,
            dreg: None,
            invert: true,
        }
    }

    /// Equality comparison.
    pub fn cmp_eq(sreg: Reg, data: impl Into<Vec<u8>>) -> Expr {
        Expr::Cmp {
            sreg,
            op: CmpOp::Eq,
            data: data.into(),
        }
    }

    /// The expression's kernel name (`NFTA_EXPR_NAME`).
    pub fn kernel_name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Lookup { .. } => "lookup",
            Expr::Ct { .. } => "ct",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Verdict(_) | Expr::Immediate { .. } => "immediate",
            Expr::Masquerade => "masq",
            Expr::Counter => "counter",
            Expr::FibDaddrType { .. } => "fib",
            Expr::Notrack => "notrack",
            Expr::Nat { .. } => "nat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers() {
        assert_eq!(Reg::R0.raw(), 8);
        assert_eq!(Reg::r32(4).raw(), 12);
        // 16-byte ifname then the next component: 4 registers later.
        assert_eq!(Reg::R0.after(16), Reg::r32(4));
        // a 1-byte protocol still takes a whole register.
        assert_eq!(Reg::R0.after(4).after(1), Reg::r32(2));
    }
}

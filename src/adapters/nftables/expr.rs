//! Rule expressions: the kernel's nf_tables virtual machine instructions, typed.
//!
//! A rule is a list of [`Expr`]; each loads data into registers, compares it, looks it up in a
//! set, or issues a verdict. This is the level the kernel speaks; nft's high-level syntax
//! (`oifname @bridges drop`) is a few of these in a row.

use super::nla::Writer;
use super::sys::*;

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

impl Verdict {
    /// `NFTA_DATA_VERDICT` nest content: code and, for jump/goto, the chain name.
    pub(crate) fn encode(&self, w: &mut Writer) {
        let (code, chain) = match self {
            Verdict::Accept => (NF_ACCEPT, None),
            Verdict::Drop => (NF_DROP, None),
            Verdict::Continue => (NFT_CONTINUE, None),
            Verdict::Return => (NFT_RETURN, None),
            Verdict::Jump(c) => (NFT_JUMP, Some(c)),
            Verdict::Goto(c) => (NFT_GOTO, Some(c)),
        };
        let n = w.nest_start(NFTA_DATA_VERDICT);
        w.put_be32(NFTA_VERDICT_CODE, code as u32);
        if let Some(c) = chain {
            w.put_str(NFTA_VERDICT_CHAIN, c);
        }
        w.nest_end(n);
    }
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
}

impl MetaKey {
    fn code(self) -> u32 {
        match self {
            MetaKey::Mark => 3,
            MetaKey::Iif => 4,
            MetaKey::Oif => 5,
            MetaKey::Iifname => 6,
            MetaKey::Oifname => 7,
            MetaKey::Nfproto => 15,
            MetaKey::L4proto => 16,
        }
    }

    /// How many bytes the kernel writes to the destination register.
    pub fn byte_len(self) -> u32 {
        match self {
            MetaKey::Iifname | MetaKey::Oifname => 16,
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

    /// Appends one `NFTA_LIST_ELEM` (name + data) for this expression. Attribute order follows
    /// libnftnl so the bytes can be compared with `nft --debug=mnl`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        let elem = w.nest_start(NFTA_LIST_ELEM);
        w.put_str(NFTA_EXPR_NAME, self.kernel_name());
        let data = w.nest_start(NFTA_EXPR_DATA);
        match self {
            Expr::Meta { key, dreg } => {
                w.put_be32(NFTA_META_KEY, key.code());
                w.put_be32(NFTA_META_DREG, dreg.raw());
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                let base = match base {
                    PayloadBase::LinkLayer => 0,
                    PayloadBase::Network => 1,
                    PayloadBase::Transport => 2,
                };
                w.put_be32(NFTA_PAYLOAD_DREG, dreg.raw());
                w.put_be32(NFTA_PAYLOAD_BASE, base);
                w.put_be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.put_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                w.put_be32(NFTA_CMP_SREG, sreg.raw());
                w.put_be32(NFTA_CMP_OP, if *op == CmpOp::Eq { 0 } else { 1 });
                put_value(w, NFTA_CMP_DATA, data);
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                w.put_be32(NFTA_LOOKUP_SREG, sreg.raw());
                w.put_str(NFTA_LOOKUP_SET, set);
                if let Some(d) = dreg {
                    w.put_be32(NFTA_LOOKUP_DREG, d.raw());
                }
                if *invert {
                    w.put_be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            }
            Expr::Ct { key, dreg } => {
                let key = match key {
                    CtKey::State => 0,
                    CtKey::Status => 2,
                };
                w.put_be32(NFTA_CT_KEY, key);
                w.put_be32(NFTA_CT_DREG, dreg.raw());
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                w.put_be32(NFTA_BITWISE_SREG, sreg.raw());
                w.put_be32(NFTA_BITWISE_DREG, dreg.raw());
                w.put_be32(NFTA_BITWISE_LEN, mask.len() as u32);
                put_value(w, NFTA_BITWISE_MASK, mask);
                put_value(w, NFTA_BITWISE_XOR, xor);
            }
            Expr::Verdict(v) => {
                w.put_be32(NFTA_IMMEDIATE_DREG, Reg::VERDICT.raw());
                let n = w.nest_start(NFTA_IMMEDIATE_DATA);
                v.encode(w);
                w.nest_end(n);
            }
            Expr::Immediate { dreg, data } => {
                w.put_be32(NFTA_IMMEDIATE_DREG, dreg.raw());
                put_value(w, NFTA_IMMEDIATE_DATA, data);
            }
            Expr::Masquerade | Expr::Counter | Expr::Notrack => {}
            Expr::FibDaddrType { dreg } => {
                // libnftnl's order: DREG, RESULT (ADDRTYPE = 3), FLAGS (F_DADDR = 1 << 1).
                w.put_be32(NFTA_FIB_DREG, dreg.raw());
                w.put_be32(NFTA_FIB_RESULT, 3);
                w.put_be32(NFTA_FIB_FLAGS, 1 << 1);
            }
            Expr::Nat {
                kind,
                family,
                addr,
                port,
                flags,
            } => {
                w.put_be32(NFTA_NAT_TYPE, if *kind == NatKind::Snat { 0 } else { 1 });
                w.put_be32(NFTA_NAT_FAMILY, u32::from(family.nfproto()));
                if let Some(a) = addr {
                    w.put_be32(NFTA_NAT_REG_ADDR_MIN, a.raw());
                    w.put_be32(NFTA_NAT_REG_ADDR_MAX, a.raw());
                }
                if let Some(p) = port {
                    w.put_be32(NFTA_NAT_REG_PROTO_MIN, p.raw());
                    w.put_be32(NFTA_NAT_REG_PROTO_MAX, p.raw());
                }
                if *flags != 0 {
                    w.put_be32(NFTA_NAT_FLAGS, *flags);
                }
            }
        }
        w.nest_end(data);
        w.nest_end(elem);
    }
}

/// `ty` { NFTA_DATA_VALUE bytes }: how nf_tables wraps constant data.
pub(crate) fn put_value(w: &mut Writer, ty: u16, data: &[u8]) {
    let n = w.nest_start(ty);
    w.put(NFTA_DATA_VALUE, data);
    w.nest_end(n);
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

    #[test]
    fn verdict_jump_layout() {
        // Checked against `nft --debug=mnl` for `jump user`: code ff ff ff fd, chain "user\0".
        let mut w = Writer::default();
        Expr::Verdict(Verdict::Jump("user".into())).encode(&mut w);
        let b = &w.buf;
        assert_eq!(b.len(), 60);
        let code = [0xff, 0xff, 0xff, 0xfd];
        assert!(b.windows(4).any(|x| x == code));
        assert!(b.windows(5).any(|x| x == b"user\0"));
    }
}

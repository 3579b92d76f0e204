//! The netlink encoding of nf_tables batches: turns the rule-set model of [`crate::core::nft`]
//! into the bytes the kernel reads. Attribute order follows libnftnl so the bytes can be
//! compared with `nft --debug=mnl` (see the golden tests in `mod.rs`).

use crate::adapters::nla::Writer;
use crate::core::nft::{
    Batch, ChainType, CmpOp, CtKey, DataType, Elem, ElemData, Expr, Family, KeyType, MetaKey, Msg,
    NatKind, PayloadBase, Policy, Reg, Scalar, SetSpec, Verdict,
};

use super::sys::*;
use super::NftError;

impl Msg {
    pub(crate) fn encode(
        &self,
        w: &mut Writer,
        next_seq: &mut dyn FnMut() -> u32,
        set_id: &mut u32,
    ) {
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
            Msg::AddTable {
                family,
                name,
                comment,
            } => {
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
                if let Some(c) = comment {
                    w.put(
                        NFTA_TABLE_USERDATA,
                        &comment_udata(NFTNL_UDATA_TABLE_COMMENT, c),
                    );
                }
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
                tag,
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
                if let Some(t) = tag {
                    w.put(NFTA_RULE_USERDATA, &tag_udata(*t));
                }
                w.end_msg(m);
            }
            Msg::DestroyChain {
                family,
                table,
                chain,
            } => {
                let m = w.begin_msg(ty(NFT_MSG_DESTROYCHAIN), req, seq, family.nfproto(), 0);
                w.put_str(NFTA_CHAIN_TABLE, table);
                w.put_str(NFTA_CHAIN_NAME, chain);
                w.end_msg(m);
            }
            Msg::DestroySet { family, table, set } => {
                let m = w.begin_msg(ty(NFT_MSG_DESTROYSET), req, seq, family.nfproto(), 0);
                w.put_str(NFTA_SET_TABLE, table);
                w.put_str(NFTA_SET_NAME, set);
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

/// nft's userdata TLV holding a comment: type, length (with the NUL), the text and a NUL. The
/// length is one byte, so the text is cut (at a character boundary) to fit.
pub(crate) fn comment_udata(ty: u8, text: &str) -> Vec<u8> {
    let mut end = text.len().min(254);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let body = &text.as_bytes()[..end];
    let mut v = vec![ty, u8::try_from(body.len() + 1).unwrap_or(u8::MAX)];
    v.extend_from_slice(body);
    v.push(0);
    v
}

/// The userdata TLV holding a rule's fingerprint. nft skips TLV types it does not know, so
/// `nft list` shows weft's rules without noise.
pub(crate) fn tag_udata(tag: u64) -> Vec<u8> {
    let mut v = vec![WEFT_UDATA_RULE_TAG, 8];
    v.extend_from_slice(&tag.to_be_bytes());
    v
}

/// The fingerprint in a rule's userdata, if weft put one there.
pub(crate) fn parse_tag_udata(mut udata: &[u8]) -> Option<u64> {
    while udata.len() >= 2 {
        let (ty, len) = (udata[0], usize::from(udata[1]));
        let value = udata.get(2..2 + len)?;
        if ty == WEFT_UDATA_RULE_TAG && len == 8 {
            return value.try_into().ok().map(u64::from_be_bytes);
        }
        udata = &udata[2 + len..];
    }
    None
}

/// The comment in a table's userdata, if any.
pub(crate) fn parse_comment_udata(ty: u8, mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (t, len) = (udata[0], usize::from(udata[1]));
        let value = udata.get(2..2 + len)?;
        if t == ty {
            return Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches('\0')
                    .to_string(),
            );
        }
        udata = &udata[2 + len..];
    }
    None
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

impl Batch {
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
        let mut origin = Vec::with_capacity(self.msgs().len());
        for (i, msg) in self.msgs().iter().enumerate() {
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

impl MetaKey {
    /// `enum nft_meta_keys`.
    pub(crate) fn code(self) -> u32 {
        match self {
            MetaKey::Mark => 3,
            MetaKey::Iif => 4,
            MetaKey::Oif => 5,
            MetaKey::Iifname => 6,
            MetaKey::Oifname => 7,
            MetaKey::Nfproto => 15,
            MetaKey::L4proto => 16,
            MetaKey::BriIifname => 17,
        }
    }
}

impl Expr {
    /// Appends one `NFTA_LIST_ELEM` (name + data) for this expression. Attribute order follows
    /// libnftnl so the bytes can be compared with `nft --debug=mnl`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        let elem = w.nest_start(NFTA_LIST_ELEM);
        w.put_str(NFTA_EXPR_NAME, self.kernel_name());
        if matches!(self, Expr::Notrack) {
            // No data at all, as nft sends it (masq gets an empty nest).
            w.nest_end(elem);
            return;
        }
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
                // nft's order: SREG, DREG, SET (then its SET_ID, which weft does not need),
                // FLAGS.
                w.put_be32(NFTA_LOOKUP_SREG, sreg.raw());
                if let Some(d) = dreg {
                    w.put_be32(NFTA_LOOKUP_DREG, d.raw());
                }
                w.put_str(NFTA_LOOKUP_SET, set);
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
                // A mask-and-xor, said explicitly as nft does (the kernel's default too).
                w.put_be32(NFTA_BITWISE_OP, NFT_BITWISE_BOOL);
                // Masks are register-sized (at most 64 bytes): the kernel refuses anything longer.
                w.put_be32(
                    NFTA_BITWISE_LEN,
                    u32::try_from(mask.len()).unwrap_or(u32::MAX),
                );
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
                // nft 1.0.6's order: FLAGS (F_DADDR = 1 << 1), RESULT (ADDRTYPE = 3), DREG.
                w.put_be32(NFTA_FIB_FLAGS, 1 << 1);
                w.put_be32(NFTA_FIB_RESULT, 3);
                w.put_be32(NFTA_FIB_DREG, dreg.raw());
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
                // One address and one port: only the minimum, as nft sends it (the kernel
                // takes the maximum to be the minimum).
                if let Some(a) = addr {
                    w.put_be32(NFTA_NAT_REG_ADDR_MIN, a.raw());
                }
                if let Some(p) = port {
                    w.put_be32(NFTA_NAT_REG_PROTO_MIN, p.raw());
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

impl Scalar {
    /// nft's `enum byteorder`: 1 host, 2 big endian.
    pub(crate) fn byteorder(self) -> u32 {
        match self {
            Scalar::Ifname | Scalar::Mark => 1,
            _ => 2,
        }
    }
}

impl KeyType {
    pub(crate) fn byteorder(self) -> u32 {
        // nft records "invalid" (0) for concatenations, whose components differ.
        match self.fields() {
            [one] => one.byteorder(),
            _ => 0,
        }
    }
}

impl SetSpec {
    /// The attributes of a NEWSET message after the table name.
    pub(crate) fn encode(&self, w: &mut Writer, set_id: u32) {
        w.put_str(NFTA_SET_NAME, &self.name);
        let flags = self.kernel_flags();
        w.put_be32(NFTA_SET_FLAGS, flags);
        w.put_be32(NFTA_SET_KEY_TYPE, self.key.type_id());
        w.put_be32(NFTA_SET_KEY_LEN, self.key.byte_len());
        match self.data {
            Some(DataType::Verdict) => w.put_be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT),
            Some(DataType::Value(t)) => {
                w.put_be32(NFTA_SET_DATA_TYPE, t.type_id());
                w.put_be32(NFTA_SET_DATA_LEN, t.byte_len());
            }
            None => {}
        }
        if flags & NFT_SET_CONCAT != 0 {
            // The kernel needs each component's unpadded length to split pipapo fields.
            let desc = w.nest_start(NFTA_SET_DESC);
            let concat = w.nest_start(NFTA_SET_DESC_CONCAT);
            for f in self.key.fields() {
                let e = w.nest_start(NFTA_LIST_ELEM);
                w.put_be32(NFTA_SET_FIELD_LEN, f.byte_len());
                w.nest_end(e);
            }
            w.nest_end(concat);
            w.nest_end(desc);
        }
        w.put_be32(NFTA_SET_ID, set_id);
        // nft's userdata TLVs (u8 type, u8 len, host-order u32): the byte order nft uses to
        // print keys and values. Without it `nft list` guesses.
        let mut ud = Vec::new();
        ud.extend_from_slice(&[NFTNL_UDATA_SET_KEYBYTEORDER, 4]);
        ud.extend_from_slice(&self.key.byteorder().to_ne_bytes());
        if let Some(DataType::Value(t)) = self.data {
            ud.extend_from_slice(&[NFTNL_UDATA_SET_DATABYTEORDER, 4]);
            ud.extend_from_slice(&t.byteorder().to_ne_bytes());
        }
        w.put(NFTA_SET_USERDATA, &ud);
    }
}

impl Elem {
    /// One `NFTA_LIST_ELEM` inside `NFTA_SET_ELEM_LIST_ELEMENTS`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        let n = w.nest_start(NFTA_LIST_ELEM);
        if self.interval_end {
            w.put_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
        }
        put_value(w, NFTA_SET_ELEM_KEY, &self.key);
        if let Some(end) = &self.key_end {
            put_value(w, NFTA_SET_ELEM_KEY_END, end);
        }
        match &self.data {
            Some(ElemData::Value(v)) => put_value(w, NFTA_SET_ELEM_DATA, v),
            Some(ElemData::Verdict(v)) => {
                let d = w.nest_start(NFTA_SET_ELEM_DATA);
                v.encode(w);
                w.nest_end(d);
            }
            None => {}
        }
        w.nest_end(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

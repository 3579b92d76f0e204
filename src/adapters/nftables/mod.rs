//! nftables over netlink, without the `nft` binary.
//!
//! No permissively licensed crate speaks nf_tables with sets and maps, and weft must never
//! spawn `nft`, so this module is a small typed encoder of nf_tables transactions:
//!
//! - the rule-set model ([`Family`], [`Chain`], [`SetSpec`], [`Elem`], [`Expr`], [`Batch`]) is
//!   pure data in [`crate::core::nft`], re-exported here;
//! - `encode` turns a batch into netlink bytes with no I/O, so unit tests can check the bytes
//!   against golden captures;
//! - the transport ([`send`], [`table_exists`], [`list_set_elements`]) opens a
//!   `NETLINK_NETFILTER` socket in the calling thread's network namespace.
//!
//! The layout follows `linux/netfilter/nf_tables.h` and was checked against what nftables
//! 1.0.6 sends (`nft --debug=mnl`), so `nft list ruleset` displays what weft installs.

mod dump;
mod encode;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod golden_data;
mod socket;
mod sys;

pub use crate::core::nft::{
    concat, ct_state, ifname, BaseChain, Batch, Chain, ChainType, CmpOp, CtKey, DataType, Elem,
    ElemData, Expr, Family, Hook, IpFamily, KeyType, MetaKey, NatKind, PayloadBase, Policy, Reg,
    Scalar, SetFlags, SetSpec, Verdict,
};
pub use dump::{chain_mentions, list_chains, list_rules, list_sets, list_tables, observe_table};
pub use socket::{list_set_elements, list_set_elems, park_sockets_at, send, table_exists};

/// Errors of the nftables adapter.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The kernel refused a message; the whole batch was rolled back.
    #[error("nftables: {op}: {message} (errno {errno})")]
    Rejected {
        /// The refused message, e.g. `add rule to inet weft forward`.
        op: String,
        /// The positive errno (`ENOENT` = 2 ...).
        errno: i32,
        /// The kernel's explanation: strerror, plus the extended-ack text if any.
        message: String,
    },
    /// A socket operation failed before the kernel could answer.
    #[error("nftables: {context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel did not answer every message in time: whether the batch was applied is
    /// unknown, so callers should re-read the state.
    #[error("nftables: no reply for {missing} of {total} messages (first: {first_op})")]
    MissingAck {
        /// Messages without a reply.
        missing: usize,
        /// Messages sent.
        total: usize,
        /// The first unanswered message.
        first_op: String,
    },
    /// A message could not be encoded: a length does not fit its netlink field. Nothing was
    /// sent.
    #[error("nftables: cannot encode {op}: {reason}")]
    Encode {
        /// The message, e.g. `add elements to inet weft dnat4any`.
        op: String,
        /// Which length did not fit.
        reason: String,
    },
    /// A reply could not be parsed.
    #[error("nftables: malformed reply from the kernel: {0}")]
    Malformed(String),
}

impl NftError {
    /// The errno of a refused message.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Rejected { errno, .. } => Some(*errno),
            NftError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the kernel said the table, chain or set does not exist (`ENOENT`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, NftError::Rejected { errno, .. } if *errno == libc::ENOENT)
    }
}

#[cfg(test)]
// Golden messages are assembled by hand from small, known lengths.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    //! Golden bytes, hand-assembled from the kernel's attribute layout and compared with what
    //! `nft --debug=mnl` 1.0.6 printed for the same objects.

    use super::*;

    /// Little helpers to write the expected bytes readably (x86_64/aarch64: little-endian
    /// netlink headers; attribute payloads in network order where nf_tables wants it).
    fn hdr(len: u32, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&[family, 0]);
        v.extend_from_slice(&res_id.to_be_bytes());
        v
    }
    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }
    fn nest(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(ty | 0x8000, &parts.concat())
    }
    fn be(v: u32) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }
    fn s(x: &str) -> Vec<u8> {
        let mut v = x.as_bytes().to_vec();
        v.push(0);
        v
    }
    fn value(ty: u16, bytes: &[u8]) -> Vec<u8> {
        nest(ty, &[attr(1, bytes)])
    }
    /// The message at `index` (0 = batch begin) of an encoded batch.
    fn nth_msg(bytes: &[u8], index: usize) -> Vec<u8> {
        let mut off = 0;
        for _ in 0..index {
            off += u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        }
        let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        bytes[off..off + len].to_vec()
    }

    const REQ_ACK: u16 = 0x1 | 0x4;
    const CREATE: u16 = 0x400;
    const APPEND: u16 = 0x800;

    #[test]
    fn batch_framing_and_table() {
        let mut b = Batch::new();
        b.add_table(Family::Inet, "weft");
        let bytes = b.encode(100).unwrap();
        // NFNL_MSG_BATCH_BEGIN: type 16, REQUEST only, AF_UNSPEC, res_id = NFNL_SUBSYS_NFTABLES.
        assert_eq!(nth_msg(&bytes, 0), hdr(20, 16, 1, 100, 0, 10));
        // NFT_MSG_NEWTABLE (0x0a00): name "weft\0" (len 9, padded), flags 0 - as nft sends.
        let mut want = hdr(40, 0x0a00, REQ_ACK | CREATE, 101, 1, 0);
        want.extend(attr(1, &s("weft")));
        want.extend(attr(2, &be(0)));
        assert_eq!(nth_msg(&bytes, 1), want);
        assert_eq!(nth_msg(&bytes, 2), hdr(20, 17, 1, 102, 0, 10));
        assert_eq!(bytes.len(), 80);
    }

    #[test]
    fn rule_oifname_in_set_drop() {
        // `oifname @bridges drop`: meta load oifname => reg 8 ; lookup reg 8 @bridges ;
        // immediate reg 0 drop.
        let mut b = Batch::new();
        b.add_rule(
            Family::Inet,
            "weft",
            "forward",
            vec![
                Expr::meta(MetaKey::Oifname, Reg::R0),
                Expr::lookup("bridges", Reg::R0),
                Expr::Verdict(Verdict::Drop),
            ],
        );
        let meta = nest(
            1,
            &[
                attr(1, &s("meta")),
                nest(2, &[attr(2, &be(7)), attr(1, &be(8))]),
            ],
        );
        let lookup = nest(
            1,
            &[
                attr(1, &s("lookup")),
                nest(2, &[attr(2, &be(8)), attr(1, &s("bridges"))]),
            ],
        );
        let drop = nest(
            1,
            &[
                attr(1, &s("immediate")),
                nest(
                    2,
                    &[attr(1, &be(0)), nest(2, &[nest(2, &[attr(1, &be(0))])])],
                ),
            ],
        );
        // Same sizes as nft's: meta 36, lookup 48 (nft also sends a 8-byte SET_ID: 40 here),
        // immediate 48.
        assert_eq!((meta.len(), lookup.len(), drop.len()), (36, 40, 48));
        let body = [
            attr(1, &s("weft")),
            attr(2, &s("forward")),
            nest(4, &[meta, lookup, drop]),
        ]
        .concat();
        let mut want = hdr(
            20 + body.len() as u32,
            0x0a06,
            REQ_ACK | CREATE | APPEND,
            2,
            1,
            0,
        );
        want.extend(body);
        assert_eq!(nth_msg(&b.encode(1).unwrap(), 1), want);
    }

    #[test]
    fn set_ifname() {
        // nft 1.0.6 for `set bridges { type ifname; }`: flags 0, key type 0x29, key len 16,
        // id, userdata 00 04 01 00 00 00 (key byte order: host).
        let mut b = Batch::new();
        b.add_set(
            Family::Inet,
            "weft",
            SetSpec::new("bridges", KeyType::Ifname),
        );
        let body = [
            attr(1, &s("weft")),
            attr(2, &s("bridges")),
            attr(3, &be(0)),
            attr(4, &be(41)),
            attr(5, &be(16)),
            attr(10, &be(1)),
            attr(13, &[0, 4, 1, 0, 0, 0]),
        ]
        .concat();
        assert_eq!(body.len(), 68); // nft's message was 88 = 20 + 68
        let mut want = hdr(88, 0x0a09, REQ_ACK | CREATE, 1, 1, 0);
        want.extend(body);
        assert_eq!(nth_msg(&b.encode(0).unwrap(), 1), want);
    }

    #[test]
    fn interval_set_and_prefix_elements() {
        let mut b = Batch::new();
        b.add_set(
            Family::Inet,
            "weft",
            SetSpec::new("masq4", KeyType::Ipv4Addr).interval(),
        );
        b.add_elements(
            Family::Inet,
            "weft",
            "masq4",
            Elem::prefix_v4("10.1.0.0/16".parse().unwrap()),
        );
        let bytes = b.encode(0).unwrap();
        // Set: flags 4 (interval), type 7, len 4, userdata byte order 2 (big endian).
        let set = nth_msg(&bytes, 1);
        assert!(set.ends_with(
            &[
                attr(3, &be(4)),
                attr(4, &be(7)),
                attr(5, &be(4)),
                attr(10, &be(1)),
                attr(13, &[0, 4, 2, 0, 0, 0]),
            ]
            .concat()
        ));
        // Elements, as nft sent them for `add element inet weft masq4 { 10.1.0.0/16 }`:
        // { key 10.1.0.0 } { flags INTERVAL_END, key 10.2.0.0 }.
        let body = [
            attr(1, &s("weft")),
            attr(2, &s("masq4")),
            nest(
                3,
                &[
                    nest(1, &[value(1, &[10, 1, 0, 0])]),
                    nest(1, &[attr(3, &be(1)), value(1, &[10, 2, 0, 0])]),
                ],
            ),
        ]
        .concat();
        let mut want = hdr(20 + body.len() as u32, 0x0a0c, REQ_ACK | CREATE, 2, 1, 0);
        want.extend(body);
        assert_eq!(nth_msg(&bytes, 2), want);
    }

    #[test]
    fn destroy_flush_and_concat_map() {
        let mut b = Batch::new();
        b.destroy_elements(Family::Inet, "weft", "bridges", vec![Elem::ifname("br0")]);
        b.destroy_elements(Family::Inet, "weft", "bridges", vec![]); // no message: not a flush
        b.flush_set(Family::Inet, "weft", "bridges");
        b.flush_chain(Family::Inet, "weft", "forward");
        b.destroy_table(Family::Inet, "weft");
        b.add_set(
            Family::Inet,
            "weft",
            SetSpec::new("dn", KeyType::Ipv4ProtoService)
                .map(DataType::Value(KeyType::Ipv4Service)),
        );
        b.add_set(
            Family::Inet,
            "weft",
            SetSpec::new("pp", KeyType::Ipv4ProtoService).interval(),
        );
        assert_eq!(b.len(), 6);
        let bytes = b.encode(0).unwrap();
        let ty = |m: &[u8]| u16::from_ne_bytes([m[4], m[5]]);
        let flags = |m: &[u8]| u16::from_ne_bytes([m[6], m[7]]);
        let destroy = nth_msg(&bytes, 1);
        assert_eq!((ty(&destroy), flags(&destroy)), (0x0a1e, REQ_ACK)); // NFT_MSG_DESTROYSETELEM
        let flush = nth_msg(&bytes, 2);
        assert_eq!(ty(&flush), 0x0a0e); // DELSETELEM
        assert_eq!(flush.len(), 20 + 12 + 12); // table + set, no element list
        let flush_chain = nth_msg(&bytes, 3);
        assert_eq!(ty(&flush_chain), 0x0a08); // DELRULE
        assert_eq!(flush_chain.len(), 20 + 12 + 12); // table + chain only
        assert_eq!(ty(&nth_msg(&bytes, 4)), 0x0a1a); // DESTROYTABLE
                                                     // Map: flags MAP, key 0x730d/12, data 0x1cd/8 - the values nft sent for the same map.
        let map = nth_msg(&bytes, 5);
        let tail = [attr(3, &be(8)), attr(4, &be(0x730d)), attr(5, &be(12))].concat();
        assert!(map.windows(tail.len()).any(|w| w == tail.as_slice()));
        let data = [attr(6, &be(0x1cd)), attr(7, &be(8))].concat();
        assert!(map.windows(data.len()).any(|w| w == data.as_slice()));
        // Interval concatenation: flags INTERVAL|CONCAT and field lengths 4, 1, 2.
        let pp = nth_msg(&bytes, 6);
        assert!(pp.windows(8).any(|w| w == attr(3, &be(0x84)).as_slice()));
        let desc = nest(
            9,
            &[nest(
                2,
                &[
                    nest(1, &[attr(1, &be(4))]),
                    nest(1, &[attr(1, &be(1))]),
                    nest(1, &[attr(1, &be(2))]),
                ],
            )],
        );
        assert!(pp.windows(desc.len()).any(|w| w == desc.as_slice()));
    }

    #[test]
    fn base_chain_layout() {
        // nft for `chain forward { type filter hook forward priority 0; policy accept; }`:
        // table, name, type "filter", policy 1, hook { hooknum 2, priority 0 } - 84 bytes.
        let mut b = Batch::new();
        b.add_chain(
            Family::Inet,
            "weft",
            Chain {
                name: "forward".into(),
                base: Some(BaseChain {
                    hook: Hook::Forward,
                    priority: 0,
                    kind: ChainType::Filter,
                    policy: Policy::Accept,
                }),
            },
        );
        let body = [
            attr(1, &s("weft")),
            attr(3, &s("forward")),
            attr(7, &s("filter")),
            attr(5, &be(1)),
            nest(4, &[attr(1, &be(2)), attr(2, &be(0))]),
        ]
        .concat();
        let mut want = hdr(84, 0x0a03, REQ_ACK | CREATE, 1, 1, 0);
        want.extend(body);
        assert_eq!(nth_msg(&b.encode(0).unwrap(), 1), want);
        // A negative priority is sent as its two's complement, as nft does.
        let mut b = Batch::new();
        b.add_chain(
            Family::Ip,
            "t",
            Chain {
                name: "pre".into(),
                base: Some(BaseChain {
                    hook: Hook::Prerouting,
                    priority: -100,
                    kind: ChainType::Nat,
                    policy: Policy::Accept,
                }),
            },
        );
        let m = nth_msg(&b.encode(0).unwrap(), 1);
        assert!(m.ends_with(&attr(2, &(-100i32).to_be_bytes())));
    }

    /// The netlink messages of an encoded batch: (type, seq, payload after nlmsghdr).
    fn messages(bytes: &[u8]) -> Vec<(u16, u32, Vec<u8>)> {
        crate::adapters::nla::parse_msgs(bytes)
            .unwrap()
            .into_iter()
            .map(|m| (m.msg_type, m.seq, m.payload.to_vec()))
            .collect()
    }

    #[test]
    fn long_element_lists_are_split_across_messages_of_one_batch() {
        // 5,000 published ports: 36 bytes each, 180,000 bytes of elements, far more than the
        // 65,535 one element list attribute holds.
        let elems: Vec<Elem> = (0..5000u16)
            .map(|i| {
                let port = 20000 + i;
                Elem::new(concat(&[&[6], &port.to_be_bytes()])).with_data(ElemData::Value(concat(
                    &[&[10, 0, 0, 2], &port.to_be_bytes()],
                )))
            })
            .collect();
        let mut b = Batch::new();
        b.add_table(Family::Inet, "weft");
        b.add_elements(Family::Inet, "weft", "dnat4any", elems.clone());
        b.destroy_elements(Family::Inet, "weft", "dnat4any", elems.clone());
        b.flush_chain(Family::Inet, "weft", "forward");
        assert_eq!(b.len(), 4);
        let wire = b.encode_wire(1000).unwrap();
        let msgs = messages(&wire.bytes);
        // begin, table, 3 adds, 3 destroys, flush, end; consecutive sequence numbers.
        let types: Vec<u16> = msgs.iter().map(|m| m.0).collect();
        assert_eq!(
            types,
            [16, 0x0a00, 0x0a0c, 0x0a0c, 0x0a0c, 0x0a1e, 0x0a1e, 0x0a1e, 0x0a08, 17]
        );
        let seqs: Vec<u32> = msgs.iter().map(|m| m.1).collect();
        assert_eq!(seqs, (1000..1010).collect::<Vec<u32>>());
        assert_eq!(wire.origin, [0, 1, 1, 1, 2, 2, 2, 3]);
        // Every element list fits its attribute, and together they hold every element once,
        // in order.
        for range in [2..5, 5..8] {
            let mut got = Vec::new();
            for (_, _, payload) in &msgs[range] {
                let body = &payload[4..];
                assert_eq!(
                    crate::adapters::nla::find_attr(body, sys::NFTA_SET_ELEM_LIST_SET),
                    Some(&b"dnat4any\0"[..])
                );
                let list = crate::adapters::nla::find_attr(body, sys::NFTA_SET_ELEM_LIST_ELEMENTS)
                    .unwrap();
                assert!(list.len() + 4 <= 65535, "{}", list.len());
                for (_, e) in crate::adapters::nla::attrs(list) {
                    let key = crate::adapters::nla::find_attr(e, sys::NFTA_SET_ELEM_KEY).unwrap();
                    got.push(
                        crate::adapters::nla::find_attr(key, sys::NFTA_DATA_VALUE)
                            .unwrap()
                            .to_vec(),
                    );
                }
            }
            let want: Vec<Vec<u8>> = elems.iter().map(|e| e.key.clone()).collect();
            assert_eq!(got, want);
        }
        // A short list stays one message, byte for byte as before.
        let mut small = Batch::new();
        small.add_elements(Family::Inet, "weft", "dnat4any", elems[..10].to_vec());
        assert_eq!(messages(&small.encode(0).unwrap()).len(), 3);
    }

    #[test]
    fn an_attribute_too_long_is_an_error_naming_the_message() {
        let mut b = Batch::new();
        b.add_table(Family::Inet, "weft");
        let huge = "s".repeat(70_000);
        b.add_rule(
            Family::Inet,
            "weft",
            "forward",
            vec![Expr::lookup(&huge, Reg::R0)],
        );
        let err = b.encode(0).unwrap_err();
        assert!(
            matches!(&err, NftError::Encode { op, .. } if op == "add rule to inet weft forward"),
            "{err}"
        );
        assert!(err.to_string().contains("70005 bytes"), "{err}");
    }

    #[test]
    fn ops_name_messages() {
        let mut b = Batch::new();
        b.add_table(Family::Inet, "weft");
        b.add_rule(Family::Inet, "weft", "forward", vec![Expr::Counter]);
        b.add_elements(Family::Ip6, "t", "s", vec![Elem::ifname("x")]);
        assert_eq!(
            b.ops(),
            [
                "add table inet weft",
                "add rule to inet weft forward",
                "add elements to ip6 t s"
            ]
        );
    }
}

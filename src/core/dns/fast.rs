//! Local answers to the common query (one A or AAAA question for a sandbox's name, over UDP,
//! with or without a plain EDNS0 record) written straight from the packet's bytes: the header
//! and question are copied, the answers appended with a pointer to the question's name. No
//! message is decoded or encoded and nothing is allocated: the answer costs a hash lookup and
//! a few dozen bytes of copying, which matters when a host answers tens of thousands a second.
//!
//! Anything else (another type or class, other flags or records, a reverse name, a name that
//! is not a local one, an answer that would not fit) is left to [`super::answer::decide`],
//! which stays the definition: for every packet answered here, the bytes are the ones it
//! writes (a property test holds the two equal).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::table::{AskerIdx, Kind, Table};
use super::{CLASSIC_UDP, LOCAL_TTL, MAX_UDP};

/// A DNS header's length.
const HEADER: usize = 12;
/// Record types and class read or written here.
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The longest name on the wire (RFC 1035), and the longest label.
const MAX_NAME: usize = 255;
const MAX_LABEL: u8 = 63;
/// A name's pointer to the question's name, which starts right after the header.
const POINTER_TO_QUESTION: [u8; 2] = [0xc0, 0x0c];
/// Response codes written here.
const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;
/// Addresses per answer handled here; more go to the general path.
const MAX_ADDRS: usize = 8;

/// The reply to `packet` from `asker`, written into `out`, when it is the common case
/// described above; returns its length, or `None` for [`super::answer::decide`] to handle
/// (nothing was decided then: `out` may hold anything).
pub fn local_reply(table: &Table, asker: AskerIdx, packet: &[u8], out: &mut [u8]) -> Option<usize> {
    let header: [u8; HEADER] = packet.get(..HEADER)?.try_into().ok()?;
    let [id0, id1, flags1, flags2, qd0, qd1, an0, an1, ns0, ns1, ar0, ar1] = header;
    // A query (QR 0, opcode 0) with no AA/TC bits, no Z/AD bits and no response code; one
    // question, nothing else but perhaps one additional record.
    if flags1 & 0xfe != 0 || flags2 & 0xef != 0 {
        return None;
    }
    let additionals = u16::from_be_bytes([ar0, ar1]);
    if [qd0, qd1, an0, an1, ns0, ns1] != [0, 1, 0, 0, 0, 0] || additionals > 1 {
        return None;
    }
    let rest = packet.get(HEADER..)?;
    let mut lower = [0u8; MAX_NAME];
    let (name_len, lower_len) = read_name(rest, &mut lower)?;
    let name = std::str::from_utf8(lower.get(..lower_len)?).ok()?;
    if name.is_empty() || name.ends_with(".in-addr.arpa") || name.ends_with(".ip6.arpa") {
        return None;
    }
    let question_len = name_len.checked_add(4)?;
    let question = rest.get(..question_len)?;
    let fixed: [u8; 4] = question.get(name_len..)?.try_into().ok()?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    if u16::from_be_bytes([fixed[2], fixed[3]]) != CLASS_IN || !matches!(qtype, TYPE_A | TYPE_AAAA)
    {
        return None;
    }
    let after = rest.get(question_len..)?;
    let max = match (additionals, after) {
        (0, []) => CLASSIC_UDP,
        (1, opt) => plain_opt(opt)?.clamp(CLASSIC_UDP, MAX_UDP),
        _ => return None,
    };

    let mut v4 = [Ipv4Addr::UNSPECIFIED; MAX_ADDRS];
    let mut v6 = [Ipv6Addr::UNSPECIFIED; MAX_ADDRS];
    let (mut n4, mut n6, mut overflow) = (0usize, 0usize, false);
    let kind = table.lookup_each(asker, name, |a4, a6| {
        if let Some(a) = a4 {
            overflow |= !push(&mut v4, &mut n4, a);
        }
        if let Some(a) = a6 {
            overflow |= !push(&mut v6, &mut n6, a);
        }
    });
    if overflow {
        return None;
    }
    let code = match kind {
        Kind::Unknown => return None,
        Kind::Hidden => {
            (n4, n6) = (0, 0);
            NXDOMAIN
        }
        Kind::Found => NOERROR,
    };
    let v4 = v4.get(..n4)?;
    let v6 = v6.get(..n6)?;
    let answers = if qtype == TYPE_A { v4.len() } else { v6.len() };

    let mut w = Writer { out, len: 0 };
    w.put(&[id0, id1])?;
    // QR, AA, RD as asked; RA, CD as asked, the code.
    w.put(&[0x84 | (flags1 & 0x01), 0x80 | (flags2 & 0x10) | code])?;
    w.put(&[0, 1])?;
    w.put(&u16::try_from(answers).ok()?.to_be_bytes())?;
    w.put(&[0, 0, 0, u8::from(additionals == 1)])?;
    w.put(question)?;
    if qtype == TYPE_A {
        for a in v4 {
            w.record(TYPE_A, &a.octets())?;
        }
    } else {
        for a in v6 {
            w.record(TYPE_AAAA, &a.octets())?;
        }
    }
    if additionals == 1 {
        // weft's own OPT: root name, its UDP size, version 0, no flags, no options.
        w.put(&[0])?;
        w.put(&TYPE_OPT.to_be_bytes())?;
        w.put(&MAX_UDP.to_be_bytes())?;
        w.put(&[0, 0, 0, 0, 0, 0])?;
    }
    (w.len <= usize::from(max)).then_some(w.len)
}

/// Appends `a` to `list[..*n]` unless already there; false when the list is full.
fn push<T: PartialEq + Copy>(list: &mut [T; MAX_ADDRS], n: &mut usize, a: T) -> bool {
    let Some(seen) = list.get(..*n) else {
        return false;
    };
    if seen.contains(&a) {
        return true;
    }
    let Some(slot) = list.get_mut(*n) else {
        return false;
    };
    *slot = a;
    *n = n.saturating_add(1);
    true
}

/// Reads an uncompressed name at the start of `wire` made of labels of letters, digits, `-`
/// and `_` (every name the table holds); writes it in lower case with dots, without the
/// trailing one, to `lower`. Returns the name's length on the wire and in `lower`.
fn read_name(wire: &[u8], lower: &mut [u8; MAX_NAME]) -> Option<(usize, usize)> {
    let (mut at, mut len) = (0usize, 0usize);
    loop {
        let n = *wire.get(at)?;
        at = at.checked_add(1)?;
        if n == 0 {
            return (at <= MAX_NAME).then_some((at, len));
        }
        if n > MAX_LABEL {
            return None;
        }
        if len > 0 {
            *lower.get_mut(len)? = b'.';
            len = len.checked_add(1)?;
        }
        let end = at.checked_add(usize::from(n))?;
        for &b in wire.get(at..end)? {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            *lower.get_mut(len)? = b.to_ascii_lowercase();
            len = len.checked_add(1)?;
        }
        at = end;
    }
}

/// The UDP size of `opt` when it is exactly one OPT record of EDNS version 0 with no
/// extended code, no flags but DNSSEC OK, and no options; `None` for anything else.
fn plain_opt(opt: &[u8]) -> Option<u16> {
    let rr: [u8; 11] = opt.try_into().ok()?;
    let [root, t0, t1, s0, s1, ext, version, do_flags, z, l0, l1] = rr;
    let plain = root == 0
        && u16::from_be_bytes([t0, t1]) == TYPE_OPT
        && ext == 0
        && version == 0
        && do_flags & 0x7f == 0
        && z == 0
        && [l0, l1] == [0, 0];
    plain.then(|| u16::from_be_bytes([s0, s1]))
}

/// Bytes written to a buffer, never past its end.
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    /// An answer for the question's name, class IN, weft's TTL.
    fn record(&mut self, rtype: u16, data: &[u8]) -> Option<()> {
        self.put(&POINTER_TO_QUESTION)?;
        self.put(&rtype.to_be_bytes())?;
        self.put(&CLASS_IN.to_be_bytes())?;
        self.put(&LOCAL_TTL.to_be_bytes())?;
        self.put(&u16::try_from(data.len()).ok()?.to_be_bytes())?;
        self.put(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dns::answer::{decide, Decision};
    use crate::core::dns::query::tests::query;
    use crate::core::dns::table::tests::fixture;
    use hickory_proto::rr::RecordType;

    fn asker(t: &Table, src: &str) -> AskerIdx {
        let gw = if src.starts_with("10.1.") {
            "10.1.0.1"
        } else {
            "10.2.0.1"
        };
        let net = t.network_of(gw.parse().unwrap()).unwrap();
        t.asker(net, src.parse().unwrap()).unwrap()
    }

    /// The fast reply, checked equal to the general path's, byte for byte.
    fn fast(t: &Table, a: AskerIdx, packet: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; 2048];
        let n = local_reply(t, a, packet, &mut out)?;
        let reply = out[..n].to_vec();
        match decide(t, a, packet, false) {
            Decision::Reply(r) => assert_eq!(reply, r, "fast and general replies differ"),
            other => panic!("answered fast, but the general path says {other:?}"),
        }
        Some(reply)
    }

    #[test]
    fn the_common_queries_are_answered_here_as_the_general_path_would() {
        let t = fixture();
        let a = asker(&t, "10.1.0.2");
        for (name, qt) in [
            ("y", RecordType::A),
            ("Y.", RecordType::A),
            ("x.A", RecordType::AAAA),
            // NODATA and NXDOMAIN.
            ("y", RecordType::AAAA),
            ("z", RecordType::A),
        ] {
            for edns in [None, Some(100), Some(1232), Some(4096)] {
                let p = query(77, name, qt, edns);
                assert!(fast(&t, a, &p).is_some(), "{name} {qt} {edns:?}");
            }
        }
        // A name with an address on each of two networks, asked by a sandbox on both.
        let both = asker(&t, "10.1.0.3");
        let r = fast(&t, both, &query(6, "db", RecordType::A, None)).unwrap();
        assert_eq!(r[7], 2, "two answers");
        // RD off, CD on.
        let mut p = query(5, "y", RecordType::A, None);
        p[2] &= !1;
        p[3] |= 0x10;
        assert!(fast(&t, a, &p).is_some());
    }

    #[test]
    fn everything_else_is_left_to_the_general_path() {
        let t = fixture();
        let a = asker(&t, "10.1.0.2");
        let none = |p: &[u8]| {
            let mut out = [0u8; 2048];
            assert_eq!(local_reply(&t, a, p, &mut out), None, "{p:?}");
        };
        none(&query(1, "y", RecordType::MX, None));
        none(&query(1, "y", RecordType::ANY, None));
        none(&query(1, "example.com", RecordType::A, None));
        none(&query(1, "3.0.1.10.in-addr.arpa.", RecordType::A, None));
        none(&query(1, ".", RecordType::A, None));
        let p = query(1, "y", RecordType::A, None);
        none(&p[..p.len() - 1]);
        none(&[p.clone(), vec![0]].concat());
        let mut r = p.clone();
        r[2] |= 0x80;
        none(&r);
        let mut opcode = p.clone();
        opcode[2] |= 2 << 3;
        none(&opcode);
        // A compressed question name.
        let mut c = p[..12].to_vec();
        c.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        none(&c);
        // EDNS version 1, and an option.
        let mut v = query(1, "y", RecordType::A, Some(1232));
        let at = v.len() - 5;
        v[at] = 1;
        none(&v);
        let mut o = query(1, "y", RecordType::A, Some(1232));
        let at = o.len() - 2;
        o[at..].copy_from_slice(&[0, 4]);
        o.extend_from_slice(&[0, 8, 0, 0]);
        none(&o);
        // No room.
        let mut small = [0u8; 20];
        assert_eq!(local_reply(&t, a, &p, &mut small), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Whatever bytes arrive, a fast reply is the general path's reply.
        #[test]
        fn fast_replies_are_the_general_paths(
            edits in proptest::collection::vec((0usize..48, proptest::prelude::any::<u8>()), 0..4),
            cut in 0usize..48,
            name in proptest::sample::select(vec!["y", "Y.A", "x", "z", "x.a.", "q-1", "DB", "db.b"]),
            src in proptest::sample::select(vec!["10.1.0.2", "10.1.0.3", "10.2.0.4"]),
            aaaa in proptest::prelude::any::<bool>(),
            edns in proptest::option::of(0u16..5000),
        ) {
            let t = fixture();
            let a = asker(&t, src);
            let qt = if aaaa { RecordType::AAAA } else { RecordType::A };
            let mut p = query(3, name, qt, edns);
            for (at, b) in &edits {
                if let Some(x) = p.get_mut(*at) {
                    *x = *b;
                }
            }
            let _ = fast(&t, a, &p);
            p.truncate(cut);
            let _ = fast(&t, a, &p);
        }
    }
}

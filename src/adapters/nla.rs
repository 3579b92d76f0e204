//! The one netlink message and attribute codec of weft's hand-written netlink clients:
//! nf_tables, ctnetlink and sock_diag. (rtnetlink goes through the `rtnetlink` crate.)
//!
//! Written by hand rather than with `netlink-packet-core`'s `Nla` traits because nf_tables
//! messages are deeply nested, typed by position, and we want byte-for-byte control for the
//! golden tests. Reading never panics on malformed input: iterators stop at the first bad
//! length and callers report the missing attribute.

pub use crate::core::nft::align4;

/// `NLA_F_NESTED`: set on nested attributes, as libmnl does.
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// Mask that strips `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` from an attribute type.
pub const NLA_TYPE_MASK: u16 = 0x3fff;
/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of an attribute header.
pub const NLA_HDRLEN: usize = 4;
/// `NFNETLINK_V0`, the version byte of `struct nfgenmsg`.
pub const NFNETLINK_V0: u8 = 0;
/// `NLMSG_ERROR`.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub const NLMSG_DONE: u16 = 3;

/// Appends netlink messages and their attributes to one buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    /// Starts a message with its `nlmsghdr` (length patched by [`Writer::end_msg`]).
    pub(crate) fn begin_plain_msg(&mut self, msg_type: u16, flags: u16, seq: u32) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched later
        self.buf.extend_from_slice(&msg_type.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel is 0
        start
    }

    /// Starts an nfnetlink message: `nlmsghdr` + `nfgenmsg`.
    pub(crate) fn begin_msg(
        &mut self,
        msg_type: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> usize {
        let start = self.begin_plain_msg(msg_type, flags, seq);
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        // nfgenmsg.res_id is big-endian (__be16).
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Appends raw bytes (a fixed header such as `inet_diag_req_v2`).
    pub(crate) fn raw(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// Patches the length of the message begun at `start`.
    // FIXME(issue 6, item 7): lengths over u16/u32 are truncated; bounded on its own branch.
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// One attribute with a raw payload, padded to 4 bytes.
    // FIXME(issue 6, item 7): lengths over u16/u32 are truncated; bounded on its own branch.
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn put(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// A NUL-terminated string attribute (the kernel's `NLA_STRING`/`NLA_NUL_STRING`).
    pub(crate) fn put_str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.put(ty, &v);
    }

    /// nf_tables encodes every 32-bit attribute in network byte order (`NLA_BE32`).
    pub(crate) fn put_be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    /// Opens a nested attribute; close it with [`Writer::nest_end`].
    pub(crate) fn nest_start(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    /// Closes the nested attribute opened at `start`.
    // FIXME(issue 6, item 7): lengths over u16/u32 are truncated; bounded on its own branch.
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn nest_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        let target = align4(self.buf.len());
        self.buf.resize(target, 0);
    }
}

/// One parsed netlink message header plus its payload (after the 16-byte `nlmsghdr`).
pub(crate) struct RawMsg<'a> {
    pub(crate) msg_type: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    pub(crate) payload: &'a [u8],
}

/// The netlink messages of a datagram, stopping at the first malformed length.
pub(crate) fn messages(mut data: &[u8]) -> impl Iterator<Item = RawMsg<'_>> {
    std::iter::from_fn(move || {
        if data.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        let msg = RawMsg {
            msg_type: u16::from_ne_bytes(data[4..6].try_into().ok()?),
            flags: u16::from_ne_bytes(data[6..8].try_into().ok()?),
            seq: u32::from_ne_bytes(data[8..12].try_into().ok()?),
            payload: &data[NLMSG_HDRLEN..len],
        };
        data = &data[align4(len).min(data.len())..];
        Some(msg)
    })
}

/// Splits a datagram into netlink messages. Returns `None` on a malformed length, which can
/// only come from a kernel bug or a truncated read; callers turn it into an error.
pub(crate) fn parse_msgs(mut data: &[u8]) -> Option<Vec<RawMsg<'_>>> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        if len < 16 || len > data.len() {
            return None;
        }
        out.push(RawMsg {
            msg_type: u16::from_ne_bytes(data[4..6].try_into().ok()?),
            flags: u16::from_ne_bytes(data[6..8].try_into().ok()?),
            seq: u32::from_ne_bytes(data[8..12].try_into().ok()?),
            payload: &data[16..len],
        });
        data = &data[align4(len).min(data.len())..];
    }
    Some(out)
}

/// Iterates over the attributes in `data`, yielding `(type without flags, payload, whole
/// attribute without its trailing padding)`. Stops at the first malformed attribute.
pub(crate) fn raw_attrs(data: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < NLA_HDRLEN {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > rest.len() {
            return None;
        }
        let whole = &rest[..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((ty, &whole[NLA_HDRLEN..], whole))
    })
}

/// Iterates over the attributes in `data`, yielding `(type without flags, payload)`. Stops at
/// the first malformed attribute instead of failing: the readers only look for attributes
/// they know, and a short read is reported by their callers as a missing attribute.
pub(crate) fn attrs(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    raw_attrs(data).map(|(ty, payload, _)| (ty, payload))
}

/// The (positive) errno of an `NLMSG_ERROR` payload; 0 for an acknowledgement.
pub(crate) fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]).wrapping_neg())
        .unwrap_or(0)
}

/// The first attribute of type `ty` in `data`.
pub(crate) fn find_attr(data: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(data).find(|(t, _)| *t == ty).map(|(_, p)| p)
}

/// A big-endian u32 attribute payload.
pub(crate) fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_padding_and_nesting() {
        let mut w = Writer::default();
        let n = w.nest_start(3);
        w.put_str(1, "ab");
        w.nest_end(n);
        // nest: len 12, type 3|NESTED; inner: len 7, type 1, "ab\0" + 1 pad byte.
        let mut want = Vec::new();
        want.extend_from_slice(&12u16.to_ne_bytes());
        want.extend_from_slice(&(3u16 | 0x8000).to_ne_bytes());
        want.extend_from_slice(&7u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"ab\0\0");
        assert_eq!(w.buf, want);
        let inner: Vec<_> = attrs(&w.buf).collect();
        assert_eq!(inner.len(), 1);
        assert_eq!(inner[0].0, 3);
        assert_eq!(find_attr(inner[0].1, 1), Some(&b"ab\0"[..]));
    }

    #[test]
    fn malformed_input_does_not_panic() {
        assert!(parse_msgs(&[0xff; 20]).is_none());
        assert_eq!(attrs(&[200, 0, 1, 0, 0]).count(), 0);
        assert_eq!(be32(&[1, 2]), None);
    }
}

//! The one netlink message and attribute codec of weft's hand-written netlink clients:
//! nf_tables, ctnetlink and sock_diag. (rtnetlink goes through the `rtnetlink` crate.)
//!
//! Written by hand rather than with `netlink-packet-core`'s `Nla` traits because nf_tables
//! messages are deeply nested, typed by position, and we want byte-for-byte control for the
//! golden tests. Reading never panics on malformed input: iterators stop at the first bad
//! length and callers report the missing attribute.
//!
//! Lengths are never truncated: an attribute longer than its 16-bit length field (or a message
//! longer than its 32-bit one) makes the [`Writer`] fail, and [`Writer::finish`] reports it.

#![deny(clippy::arithmetic_side_effects)]

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

/// A length that does not fit its netlink length field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} of {len} bytes is longer than its length field allows ({max} bytes)")]
pub(crate) struct TooLong {
    /// `attribute 3` or `message`.
    pub(crate) what: String,
    /// The length it would have had.
    pub(crate) len: usize,
    /// The most the field holds.
    pub(crate) max: usize,
}

/// Appends netlink messages and their attributes to one buffer.
///
/// The first length that does not fit its field is remembered (nothing is truncated) and
/// returned by [`Writer::finish`] / [`Writer::take_error`]; the bytes written after it are
/// meaningless and must not be sent.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
    error: Option<TooLong>,
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
    pub(crate) fn end_msg(&mut self, start: usize) {
        let len = self.buf.len().checked_sub(start);
        match len.and_then(|l| u32::try_from(l).ok()) {
            Some(l) => self.patch(start, &l.to_ne_bytes()),
            None => self.fail("message".to_string(), len.unwrap_or(usize::MAX), u32::MAX),
        }
    }

    /// One attribute with a raw payload, padded to 4 bytes. A payload too long for the
    /// 16-bit length is not written, and the writer fails.
    pub(crate) fn put(&mut self, ty: u16, data: &[u8]) {
        let len = data.len().checked_add(4);
        let Some(len16) = len.and_then(|l| u16::try_from(l).ok()) else {
            self.fail(
                format!("attribute {ty}"),
                len.unwrap_or(usize::MAX),
                u16::MAX,
            );
            return;
        };
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// A NUL-terminated string attribute (the kernel's `NLA_STRING`/`NLA_NUL_STRING`).
    pub(crate) fn put_str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len().saturating_add(1));
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

    /// Closes the nested attribute opened at `start`; the writer fails if its content made
    /// it longer than the 16-bit length holds.
    pub(crate) fn nest_end(&mut self, start: usize) {
        let len = self.buf.len().checked_sub(start);
        match len.and_then(|l| u16::try_from(l).ok()) {
            Some(l) => self.patch(start, &l.to_ne_bytes()),
            None => {
                let ty = self
                    .buf
                    .get(start.saturating_add(2)..start.saturating_add(4))
                    .map(|b| u16::from_ne_bytes([b[0], b[1]]) & NLA_TYPE_MASK)
                    .unwrap_or_default();
                self.fail(
                    format!("nested attribute {ty}"),
                    len.unwrap_or(usize::MAX),
                    u16::MAX,
                )
            }
        }
    }

    /// Appends what another writer wrote (whole attributes, already padded), and its
    /// failure if it failed.
    pub(crate) fn append(&mut self, other: Writer) {
        self.buf.extend_from_slice(&other.buf);
        if self.error.is_none() {
            self.error = other.error;
        }
    }

    /// Whether a length did not fit (see [`Writer::take_error`]).
    pub(crate) fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// The first length that did not fit, if any; the writer is usable again afterwards
    /// (its buffer is not).
    pub(crate) fn take_error(&mut self) -> Option<TooLong> {
        self.error.take()
    }

    /// The bytes written, or the first length that did not fit.
    pub(crate) fn finish(self) -> Result<Vec<u8>, TooLong> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.buf),
        }
    }

    fn patch(&mut self, at: usize, bytes: &[u8]) {
        if let Some(slot) = at
            .checked_add(bytes.len())
            .and_then(|end| self.buf.get_mut(at..end))
        {
            slot.copy_from_slice(bytes);
        }
    }

    fn fail(&mut self, what: String, len: usize, max: impl Into<u64>) {
        if self.error.is_none() {
            self.error = Some(TooLong {
                what,
                len,
                max: usize::try_from(max.into()).unwrap_or(usize::MAX),
            });
        }
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
        let len = usize::try_from(u32::from_ne_bytes(data[0..4].try_into().ok()?)).ok()?;
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
// Tests compute expected lengths directly; an overflow there panics the test (debug build).
#[allow(clippy::arithmetic_side_effects)]
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
    fn oversized_attributes_fail_instead_of_truncating() {
        // The largest payload that fits: 65531 + 4 = 65535.
        let mut w = Writer::default();
        w.put(1, &vec![0u8; 65531]);
        assert_eq!(w.finish().map(|b| b.len()), Ok(65536));
        let mut w = Writer::default();
        w.put(1, &vec![0u8; 65532]);
        let err = w.finish().unwrap_err();
        assert_eq!((err.len, err.max), (65536, 65535));
        assert_eq!(err.what, "attribute 1");

        // A nest whose content grows past 65535 bytes.
        let mut w = Writer::default();
        let n = w.nest_start(3);
        for _ in 0..3 {
            w.put(1, &vec![0u8; 30000]);
        }
        w.nest_end(n);
        let err = w.finish().unwrap_err();
        assert_eq!(err.what, "nested attribute 3");
        assert_eq!(err.len, 4 + 3 * 30004);

        // The largest nest (content is padded to 4 bytes): 4 + 4 + 65524 = 65532 is fine,
        // 4 more are not.
        let mut w = Writer::default();
        let n = w.nest_start(3);
        w.put(1, &vec![0u8; 65524]);
        w.nest_end(n);
        let buf = w.finish().unwrap();
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), 65532);
        let mut w = Writer::default();
        let n = w.nest_start(3);
        w.put(1, &vec![0u8; 65528]);
        w.nest_end(n);
        assert_eq!(w.finish().unwrap_err().len, 65536);

        // The error survives an append and is taken once.
        let mut bad = Writer::default();
        bad.put(1, &vec![0u8; 70000]);
        let mut w = Writer::default();
        w.append(bad);
        assert!(w.take_error().is_some());
        assert!(w.take_error().is_none());
    }

    #[test]
    fn malformed_input_does_not_panic() {
        assert!(parse_msgs(&[0xff; 20]).is_none());
        assert_eq!(attrs(&[200, 0, 1, 0, 0]).count(), 0);
        assert_eq!(be32(&[1, 2]), None);
    }
}

//! Reading a client's query, defensively: only the header, one question and at most a few
//! additional records (EDNS0) are decoded, so a packet claiming 65,535 records costs nothing.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};

use super::{CLASSIC_UDP, MAX_UDP};

/// At most this many additional records are read (OPT, perhaps a cookie or TSIG).
const MAX_ADDITIONALS: u16 = 4;

/// A well-formed query.
#[derive(Debug, Clone)]
pub struct Question {
    /// The client's message id.
    pub id: u16,
    /// Recursion desired.
    pub rd: bool,
    /// Checking disabled.
    pub cd: bool,
    /// The one question.
    pub query: Query,
    /// The client's EDNS0 record, if any.
    pub edns: Option<Edns>,
}

impl Question {
    /// The largest UDP reply the client accepts: 512 without EDNS0, else its size within
    /// 512..=[`MAX_UDP`].
    pub fn udp_size(&self) -> u16 {
        self.edns
            .as_ref()
            .map_or(CLASSIC_UDP, |e| e.max_payload().clamp(CLASSIC_UDP, MAX_UDP))
    }

    /// Whether the client set EDNS0's DNSSEC OK bit.
    pub fn dnssec_ok(&self) -> bool {
        self.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok)
    }
}

/// Why a packet is not a query to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not worth a reply: shorter than a header, or itself a response (answering responses
    /// is how reflection loops start).
    Drop,
    /// Answer with this code (FORMERR, NOTIMP), echoing the question when it could be read.
    Error {
        /// The client's id.
        id: u16,
        /// Its opcode.
        op_code: OpCode,
        /// Recursion desired, echoed.
        rd: bool,
        /// The code.
        code: ResponseCode,
        /// The question, when one could be read.
        query: Option<Query>,
    },
}

/// Reads one query.
pub fn parse(packet: &[u8]) -> Result<Question, Rejected> {
    let mut d = BinDecoder::new(packet);
    let Ok(Header { metadata, counts }) = Header::read(&mut d) else {
        return Err(Rejected::Drop);
    };
    if metadata.message_type != MessageType::Query {
        return Err(Rejected::Drop);
    }
    let error = |code, query| Rejected::Error {
        id: metadata.id,
        op_code: metadata.op_code,
        rd: metadata.recursion_desired,
        code,
        query,
    };
    if metadata.op_code != OpCode::Query {
        return Err(error(ResponseCode::NotImp, None));
    }
    if counts.queries != 1 || counts.answers != 0 || counts.authorities != 0 {
        return Err(error(ResponseCode::FormErr, None));
    }
    let Ok(query) = Query::read(&mut d) else {
        return Err(error(ResponseCode::FormErr, None));
    };
    if counts.additionals > MAX_ADDITIONALS {
        return Err(error(ResponseCode::FormErr, Some(query)));
    }
    let edns =
        match Message::read_records(&mut d, usize::from(counts.additionals), true, OpCode::Query) {
            Ok((_, edns, _)) => edns,
            Err(_) => return Err(error(ResponseCode::FormErr, Some(query))),
        };
    Ok(Question {
        id: metadata.id,
        rd: metadata.recursion_desired,
        cd: metadata.checking_disabled,
        query,
        edns,
    })
}

/// The lower-case text of a query name, without the trailing dot, written into `buf`; `None`
/// when a label holds a dot or non-ASCII byte (never one of weft's names).
pub fn lower_name<'b>(name: &hickory_proto::rr::Name, buf: &'b mut [u8; 256]) -> Option<&'b str> {
    let mut len = 0usize;
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            *buf.get_mut(len)? = b'.';
            len = len.checked_add(1)?;
        }
        for &b in label {
            if b == b'.' || !b.is_ascii() {
                return None;
            }
            *buf.get_mut(len)? = b.to_ascii_lowercase();
            len = len.checked_add(1)?;
        }
    }
    std::str::from_utf8(buf.get(..len)?).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::{Name, RecordType};

    /// A query for `name` of type `t`, with EDNS0 of `edns` bytes if given.
    pub(crate) fn query(id: u16, name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn a_plain_query_is_read() {
        let q = parse(&query(7, "Web.", RecordType::A, None)).unwrap();
        assert_eq!(q.id, 7);
        assert!(q.rd);
        assert_eq!(q.udp_size(), 512);
        let mut buf = [0u8; 256];
        assert_eq!(lower_name(&q.query.name, &mut buf), Some("web"));
        let q = parse(&query(7, "a.B.c", RecordType::AAAA, Some(4096))).unwrap();
        assert_eq!(q.udp_size(), MAX_UDP);
        assert_eq!(lower_name(&q.query.name, &mut buf), Some("a.b.c"));
        let q = parse(&query(7, "x.", RecordType::A, Some(100))).unwrap();
        assert_eq!(q.udp_size(), 512);
    }

    #[test]
    fn short_packets_and_responses_are_dropped() {
        assert_eq!(parse(&[]).unwrap_err(), Rejected::Drop);
        assert_eq!(parse(&[0; 11]).unwrap_err(), Rejected::Drop);
        let mut p = query(1, "x.", RecordType::A, None);
        p[2] |= 0x80;
        assert_eq!(parse(&p).unwrap_err(), Rejected::Drop);
    }

    fn code(r: Result<Question, Rejected>) -> ResponseCode {
        match r {
            Err(Rejected::Error { code, .. }) => code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_queries_get_formerr_or_notimp() {
        // Opcode 2 (status).
        let mut p = query(1, "x.", RecordType::A, None);
        p[2] |= 2 << 3;
        assert_eq!(code(parse(&p)), ResponseCode::NotImp);
        // Two questions claimed, one present.
        let mut p = query(1, "x.", RecordType::A, None);
        p[5] = 2;
        assert_eq!(code(parse(&p)), ResponseCode::FormErr);
        // No question.
        let mut p = query(1, "x.", RecordType::A, None);
        p[5] = 0;
        assert_eq!(code(parse(&p)), ResponseCode::FormErr);
        // 65,535 additionals claimed.
        let mut p = query(1, "x.", RecordType::A, None);
        p[10] = 0xff;
        p[11] = 0xff;
        assert_eq!(code(parse(&p)), ResponseCode::FormErr);
        // A label running past the end.
        let mut p = query(1, "x.", RecordType::A, None);
        p[12] = 60;
        assert_eq!(code(parse(&p)), ResponseCode::FormErr);
        // A compression pointer to itself.
        let mut p = query(1, "x.", RecordType::A, None);
        p.truncate(12);
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(code(parse(&p)), ResponseCode::FormErr);
        // Header only.
        let p = &query(1, "x.", RecordType::A, None)[..12];
        assert_eq!(code(parse(p)), ResponseCode::FormErr);
    }
}

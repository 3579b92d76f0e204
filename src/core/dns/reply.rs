//! Writing replies: local answers, error codes, and a forwarded answer fitted to what the
//! client accepts (truncated, with TC set, when it does not fit: the client then asks again
//! over TCP).

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinEncodable as _, BinEncoder};

use super::query::Question;
use super::MAX_UDP;

/// The EDNS0 record weft's replies carry when the query had one.
fn our_edns() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(MAX_UDP);
    e
}

/// Encodes `m` in at most `max` bytes: records that do not fit are left out and TC is set.
fn encode(m: &Message, max: u16) -> Vec<u8> {
    let mut buf = Vec::with_capacity(usize::from(max.min(512)));
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_max_size(max);
    if m.emit(&mut enc).is_err() {
        // Only a header and question longer than `max` (at least 512) can fail: impossible
        // for a question read from a packet, but never panic: send the header alone.
        let mut bare =
            Message::error_msg(m.metadata.id, m.metadata.op_code, ResponseCode::ServFail);
        bare.metadata.truncation = true;
        return bare.to_vec().unwrap_or_default();
    }
    buf
}

/// A reply to `q` with `code` and `answers`, in at most `max` bytes.
pub fn answer(q: &Question, code: ResponseCode, answers: Vec<Record>, max: u16) -> Vec<u8> {
    let mut m = Message::response(q.id, OpCode::Query);
    m.metadata.recursion_desired = q.rd;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = true;
    m.metadata.checking_disabled = q.cd;
    m.metadata.response_code = code;
    m.queries.push(q.query.clone());
    m.answers = answers;
    if q.edns.is_some() {
        m.set_edns(our_edns());
    }
    encode(&m, max)
}

/// An error reply without a parsed [`Question`] (FORMERR, NOTIMP, REFUSED).
pub fn error(
    id: u16,
    op_code: OpCode,
    rd: bool,
    code: ResponseCode,
    query: Option<Query>,
) -> Vec<u8> {
    let mut m = Message::error_msg(id, op_code, code);
    m.metadata.recursion_desired = rd;
    m.metadata.recursion_available = true;
    m.queries.extend(query);
    encode(&m, 512)
}

/// A forwarded answer for the client: its id, and truncated (question, EDNS0, TC) when it
/// is longer than `max` bytes.
pub fn fit(mut response: Vec<u8>, q: &Question, max: u16) -> Vec<u8> {
    if response.len() <= usize::from(max) {
        if let Some(id) = response.get_mut(..2) {
            id.copy_from_slice(&q.id.to_be_bytes());
        }
        return response;
    }
    let mut m = Message::response(q.id, OpCode::Query);
    m.metadata.recursion_desired = q.rd;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = q.cd;
    m.metadata.truncation = true;
    m.queries.push(q.query.clone());
    if q.edns.is_some() {
        m.set_edns(our_edns());
    }
    encode(&m, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dns::query::{parse, tests::query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, RecordType};

    #[test]
    fn answers_that_do_not_fit_are_truncated() {
        let q = parse(&query(9, "many.", RecordType::A, None)).unwrap();
        let name = Name::from_ascii("many.").unwrap();
        let records: Vec<Record> = (0..100u8)
            .map(|i| Record::from_rdata(name.clone(), 5, RData::A(A::new(10, 0, 0, i))))
            .collect();
        let small = answer(&q, ResponseCode::NoError, records.clone(), 512);
        assert!(small.len() <= 512);
        let m = Message::from_vec(&small).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.metadata.id, 9);
        let big = answer(&q, ResponseCode::NoError, records, u16::MAX);
        let m = Message::from_vec(&big).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
    }

    #[test]
    fn forwarded_answers_take_the_clients_id_or_are_cut_to_a_truncated_reply() {
        let q = parse(&query(0x1234, "ext.", RecordType::A, Some(1232))).unwrap();
        let mut up = Message::response(0x9999, OpCode::Query);
        up.queries.push(q.query.clone());
        let bytes = up.to_vec().unwrap();
        let out = fit(bytes.clone(), &q, 512);
        assert_eq!(Message::from_vec(&out).unwrap().metadata.id, 0x1234);
        let long: Vec<u8> = bytes
            .into_iter()
            .chain(std::iter::repeat_n(0, 600))
            .collect();
        let out = fit(long, &q, 512);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.edns.is_some());
    }
}

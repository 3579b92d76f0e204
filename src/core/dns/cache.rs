//! A brief cache of forwarded answers, keyed by the upstream set and the question: a burst of
//! the same lookup from many sandboxes costs one upstream query. Entries live for the answer's
//! smallest TTL, capped at [`MAX_TTL`]; the TTLs a cached answer carries are lowered by the
//! time it spent here. Time is passed in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;

use super::answer::Forward;

/// The longest an answer is kept, in seconds.
pub const MAX_TTL: u32 = 30;
/// The most answers kept.
pub const MAX_ENTRIES: usize = 10_000;

/// What identifies a cacheable question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    upstreams: Arc<[SocketAddr]>,
    name: Box<str>,
    qtype: u16,
    qclass: u16,
    edns: bool,
    dnssec_ok: bool,
    cd: bool,
}

impl CacheKey {
    /// The key of `f` asked of `upstreams`.
    pub fn new(upstreams: Arc<[SocketAddr]>, f: &Forward) -> CacheKey {
        let q = &f.question;
        CacheKey {
            upstreams,
            name: f.name.clone(),
            qtype: q.query.query_type().into(),
            qclass: q.query.query_class().into(),
            edns: q.edns.is_some(),
            dnssec_ok: q.dnssec_ok(),
            cd: q.cd,
        }
    }
}

#[derive(Debug)]
struct Entry {
    response: Vec<u8>,
    stored: Duration,
    ttl: u32,
}

/// The cache.
#[derive(Debug, Default)]
pub struct Cache {
    map: HashMap<CacheKey, Entry>,
}

/// How long an upstream answer may be kept: the smallest TTL of its records (for a negative
/// answer, of its SOA and the SOA's minimum), capped; `None` for answers never kept
/// (truncated, failures, negative answers without SOA).
pub fn ttl_of(m: &Message) -> Option<u32> {
    if m.metadata.truncation {
        return None;
    }
    let ttl = match m.metadata.response_code {
        ResponseCode::NoError if !m.answers.is_empty() => {
            m.answers.iter().chain(&m.authorities).map(|r| r.ttl).min()
        }
        ResponseCode::NoError | ResponseCode::NXDomain => m
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .min(),
        _ => None,
    }?;
    (ttl > 0).then_some(ttl.min(MAX_TTL))
}

impl Cache {
    /// The kept answer for `key` at `now` with `id`, its TTLs lowered by its age.
    pub fn get(&mut self, key: &CacheKey, now: Duration, id: u16) -> Option<Vec<u8>> {
        let e = self.map.get(key)?;
        let age = now.saturating_sub(e.stored).as_secs();
        let age = u32::try_from(age).unwrap_or(u32::MAX);
        if age >= e.ttl {
            self.map.remove(key);
            return None;
        }
        let mut out = if age == 0 {
            e.response.clone()
        } else {
            let mut m = Message::from_vec(&e.response).ok()?;
            for r in m
                .answers
                .iter_mut()
                .chain(m.authorities.iter_mut())
                .chain(m.additionals.iter_mut())
            {
                r.ttl = r.ttl.saturating_sub(age);
            }
            m.to_vec().ok()?
        };
        out.get_mut(..2)?.copy_from_slice(&id.to_be_bytes());
        Some(out)
    }

    /// Keeps `response` (already checked to answer the key's question) if it may be kept.
    pub fn put(&mut self, key: CacheKey, response: &[u8], parsed: &Message, now: Duration) {
        let Some(ttl) = ttl_of(parsed) else {
            return;
        };
        if self.map.len() >= MAX_ENTRIES {
            self.map
                .retain(|_, e| now.saturating_sub(e.stored).as_secs() < u64::from(e.ttl));
            if self.map.len() >= MAX_ENTRIES {
                return;
            }
        }
        self.map.insert(
            key,
            Entry {
                response: response.to_vec(),
                stored: now,
                ttl,
            },
        );
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dns::answer::{decide, Decision};
    use crate::core::dns::query::tests::query;
    use crate::core::dns::table::tests::fixture;
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, Record, RecordType};

    fn forward(name: &str) -> Forward {
        let t = fixture();
        let net = t.network_of("10.1.0.1".parse().unwrap()).unwrap();
        let asker = t.asker(net, "10.1.0.2".parse().unwrap()).unwrap();
        match decide(&t, asker, &query(5, name, RecordType::A, None), false) {
            Decision::Forward(f) => f,
            other => panic!("{other:?}"),
        }
    }

    fn upstream_answer(f: &Forward, ttls: &[u32]) -> (Vec<u8>, Message) {
        let mut m = Message::response(77, OpCode::Query);
        m.queries.push(f.question.query.clone());
        let name = Name::from_ascii("ext.example.").unwrap();
        for (i, t) in ttls.iter().enumerate() {
            let last = u8::try_from(i).unwrap();
            m.answers.push(Record::from_rdata(
                name.clone(),
                *t,
                RData::A(A::new(192, 0, 2, last)),
            ));
        }
        (m.to_vec().unwrap(), m)
    }

    #[test]
    fn kept_for_the_smallest_ttl_with_ttls_aged_and_the_askers_id() {
        let f = forward("ext.example.");
        let ups: Arc<[SocketAddr]> = vec!["192.0.2.53:53".parse().unwrap()].into();
        let key = CacheKey::new(ups.clone(), &f);
        let (bytes, m) = upstream_answer(&f, &[20, 12]);
        let mut c = Cache::default();
        let t0 = Duration::from_secs(100);
        c.put(key.clone(), &bytes, &m, t0);
        let hit = c.get(&key, t0, 9).unwrap();
        assert_eq!(Message::from_vec(&hit).unwrap().metadata.id, 9);
        let hit =
            Message::from_vec(&c.get(&key, t0 + Duration::from_secs(5), 10).unwrap()).unwrap();
        assert_eq!(hit.answers[0].ttl, 15);
        assert_eq!(hit.answers[1].ttl, 7);
        assert!(c.get(&key, t0 + Duration::from_secs(12), 11).is_none());
        // Another upstream set is another key.
        let other: Arc<[SocketAddr]> = vec!["192.0.2.54:53".parse().unwrap()].into();
        c.put(key.clone(), &bytes, &m, t0);
        assert!(c.get(&CacheKey::new(other, &f), t0, 1).is_none());
    }

    #[test]
    fn long_ttls_are_capped_and_failures_not_kept() {
        let f = forward("ext.example.");
        let (_, m) = upstream_answer(&f, &[86_400]);
        assert_eq!(ttl_of(&m), Some(MAX_TTL));
        let mut fail = m.clone();
        fail.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(ttl_of(&fail), None);
        let mut tc = m.clone();
        tc.metadata.truncation = true;
        assert_eq!(ttl_of(&tc), None);
        let (_, empty) = upstream_answer(&f, &[]);
        assert_eq!(ttl_of(&empty), None);
    }
}

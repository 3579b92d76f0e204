//! The decision for one query from a known sandbox: a reply from the table, a forward to the
//! upstream resolvers, or nothing.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use super::query::{lower_name, parse, Question, Rejected};
use super::reply;
use super::table::{AskerIdx, Lookup, Table};
use super::LOCAL_TTL;

/// What to do with one packet.
#[derive(Debug)]
pub enum Decision {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a name of ours: ask the upstream resolvers.
    Forward(Forward),
    /// Send nothing.
    Drop,
}

/// A query to forward.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The query as read.
    pub question: Question,
    /// Its name in lower case without the trailing dot (the cache's key).
    pub name: Box<str>,
}

/// Decides for `packet`, asked by `asker`; replies fit the client's UDP size (512 bytes, or
/// its EDNS0 size up to [`super::MAX_UDP`]), or 65,535 bytes over TCP (`tcp`).
pub fn decide(table: &Table, asker: AskerIdx, packet: &[u8], tcp: bool) -> Decision {
    let q = match parse(packet) {
        Ok(q) => q,
        Err(Rejected::Drop) => return Decision::Drop,
        Err(Rejected::Error {
            id,
            op_code,
            rd,
            code,
            query,
        }) => return Decision::Reply(reply::error(id, op_code, rd, code, query)),
    };
    let max = if tcp { u16::MAX } else { q.udp_size() };
    let respond = |code, answers| Decision::Reply(reply::answer(&q, code, answers, max));
    if q.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return respond(ResponseCode::BADVERS, vec![]);
    }
    let qtype = q.query.query_type();
    // Zone transfers are served by no one here; other classes (CHAOS) have no names here.
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) || q.query.query_class() != DNSClass::IN
    {
        return respond(ResponseCode::Refused, vec![]);
    }
    let mut buf = [0u8; 256];
    let Some(name) = lower_name(q.query.name(), &mut buf) else {
        return Decision::Forward(Forward {
            name: q.query.name().to_ascii().to_ascii_lowercase().into(),
            question: q,
        });
    };
    if name.ends_with(".in-addr.arpa") || name.ends_with(".ip6.arpa") {
        if let Some(addr) = arpa_address(&q) {
            match table.reverse(asker, addr) {
                Ok(targets) => {
                    if qtype != RecordType::PTR && qtype != RecordType::ANY {
                        return respond(ResponseCode::NoError, vec![]);
                    }
                    let answers = targets
                        .into_iter()
                        .map(|t| {
                            Record::from_rdata(
                                q.query.name().clone(),
                                LOCAL_TTL,
                                RData::PTR(PTR(t.clone())),
                            )
                        })
                        .collect();
                    return respond(ResponseCode::NoError, answers);
                }
                Err(true) => return respond(ResponseCode::NXDomain, vec![]),
                Err(false) => {}
            }
        }
    } else {
        match table.lookup(asker, name) {
            Lookup::Unknown => {}
            Lookup::Hidden => return respond(ResponseCode::NXDomain, vec![]),
            Lookup::Found { v4, v6 } => {
                let owner = q.query.name();
                let mut answers = Vec::new();
                if matches!(qtype, RecordType::A | RecordType::ANY) {
                    answers.extend(
                        v4.into_iter()
                            .map(|a| Record::from_rdata(owner.clone(), LOCAL_TTL, RData::A(A(a)))),
                    );
                }
                if matches!(qtype, RecordType::AAAA | RecordType::ANY) {
                    answers.extend(v6.into_iter().map(|a| {
                        Record::from_rdata(owner.clone(), LOCAL_TTL, RData::AAAA(AAAA(a)))
                    }));
                }
                return respond(ResponseCode::NoError, answers);
            }
        }
    }
    let name: Box<str> = name.into();
    Decision::Forward(Forward { question: q, name })
}

/// The reply to a packet from anyone who is not a sandbox of a DNS-enabled network: REFUSED
/// (with the question when it can be read), never an answer or a forward; `None` to drop.
pub fn refuse(packet: &[u8]) -> Option<Vec<u8>> {
    match parse(packet) {
        Err(Rejected::Drop) => None,
        Err(Rejected::Error {
            id,
            op_code,
            rd,
            query,
            ..
        }) => Some(reply::error(id, op_code, rd, ResponseCode::Refused, query)),
        Ok(q) => Some(reply::answer(
            &q,
            ResponseCode::Refused,
            vec![],
            q.udp_size(),
        )),
    }
}

/// The address a full-length reverse name stands for.
fn arpa_address(q: &Question) -> Option<IpAddr> {
    let net = q.query.name().parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dns::query::tests::query;
    use crate::core::dns::table::tests::fixture;
    use hickory_proto::op::Message;

    fn ask(t: &Table, src: &str, name: &str, qt: RecordType) -> Decision {
        let gw = if src.starts_with("10.1.") {
            "10.1.0.1"
        } else {
            "10.2.0.1"
        };
        let net = t.network_of(gw.parse().unwrap()).unwrap();
        let asker = t.asker(net, src.parse().unwrap()).unwrap();
        decide(t, asker, &query(42, name, qt, None), false)
    }

    fn reply(d: Decision) -> Message {
        match d {
            Decision::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn addrs(m: &Message) -> Vec<String> {
        m.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn local_names_are_answered_case_insensitively_with_a_short_ttl() {
        let t = fixture();
        let m = reply(ask(&t, "10.1.0.2", "Y.", RecordType::A));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.metadata.id, 42);
        assert_eq!(addrs(&m), ["10.1.0.3"]);
        assert_eq!(m.answers[0].ttl, LOCAL_TTL);
        // The name echoed as asked.
        assert_eq!(m.answers[0].name.to_ascii(), "Y.");
        let m = reply(ask(&t, "10.1.0.2", "x.A", RecordType::AAAA));
        assert_eq!(addrs(&m), ["fd00:1::2"]);
        // y has no IPv6: NODATA, not NXDOMAIN.
        let m = reply(ask(&t, "10.1.0.2", "y", RecordType::AAAA));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = reply(ask(&t, "10.1.0.2", "y", RecordType::MX));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }

    #[test]
    fn other_networks_names_are_nxdomain_and_unknown_names_forwarded() {
        let t = fixture();
        let m = reply(ask(&t, "10.1.0.2", "z", RecordType::A));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        match ask(&t, "10.1.0.2", "Example.COM.", RecordType::A) {
            Decision::Forward(f) => {
                assert_eq!(&*f.name, "example.com");
                assert_eq!(f.question.id, 42);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ptr_for_sandbox_addresses() {
        let t = fixture();
        let m = reply(ask(
            &t,
            "10.1.0.2",
            "3.0.1.10.in-addr.arpa.",
            RecordType::PTR,
        ));
        assert_eq!(addrs(&m), ["y.a."]);
        let v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa.";
        let m = reply(ask(&t, "10.1.0.3", v6, RecordType::PTR));
        assert_eq!(addrs(&m), ["x.a."]);
        let m = reply(ask(
            &t,
            "10.1.0.2",
            "4.0.2.10.in-addr.arpa.",
            RecordType::PTR,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(
            ask(&t, "10.1.0.2", "8.8.8.8.in-addr.arpa.", RecordType::PTR),
            Decision::Forward(_)
        ));
    }

    #[test]
    fn strangers_are_refused_or_dropped() {
        let m = Message::from_vec(&refuse(&query(5, "y", RecordType::A, None)).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(m.answers.is_empty());
        assert_eq!(m.metadata.id, 5);
        assert!(refuse(&[1, 2, 3]).is_none());
    }

    #[test]
    fn transfers_chaos_and_new_edns_versions_are_not_served() {
        let t = fixture();
        let m = reply(ask(&t, "10.1.0.2", "y", RecordType::AXFR));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let net = t.network_of("10.1.0.1".parse().unwrap()).unwrap();
        let asker = t.asker(net, "10.1.0.2".parse().unwrap()).unwrap();
        let mut m = Message::from_vec(&query(1, "y", RecordType::A, Some(1232))).unwrap();
        m.edns.as_mut().unwrap().set_version(1);
        let r = reply(decide(&t, asker, &m.to_vec().unwrap(), false));
        // BADVERS and BADSIG share code 16.
        assert_eq!(u16::from(r.metadata.response_code), 16);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Random packets, and valid queries with bytes overwritten, cut or extended, never
        /// panic; the table still answers a valid query right afterwards.
        #[test]
        fn hostile_packets_never_panic(
            random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
            edits in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..80,
            tcp in proptest::prelude::any::<bool>(),
        ) {
            let t = fixture();
            let net = t.network_of("10.1.0.1".parse().unwrap()).unwrap();
            let asker = t.asker(net, "10.1.0.2".parse().unwrap()).unwrap();
            let _ = decide(&t, asker, &random, tcp);
            let mut p = query(3, "y.a.", RecordType::A, Some(1232));
            for (at, b) in &edits {
                if let Some(x) = p.get_mut(*at) {
                    *x = *b;
                }
            }
            let _ = decide(&t, asker, &p, tcp);
            p.truncate(cut);
            let _ = decide(&t, asker, &p, tcp);
            p.extend_from_slice(&random);
            let _ = decide(&t, asker, &p, tcp);
            let m = reply(decide(&t, asker, &query(4, "Y", RecordType::A, None), tcp));
            proptest::prop_assert_eq!(addrs(&m), ["10.1.0.3"]);
        }
    }
}

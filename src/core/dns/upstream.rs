//! The upstream resolvers a query is forwarded to, and whether an answer from one is
//! acceptable.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, MessageType, Query};

use crate::core::resolv;

/// At most this many upstreams are tried (glibc reads three; resolved's list may be longer).
pub const MAX_UPSTREAMS: usize = 4;

/// The host's resolvers on port 53: the `resolv.conf` text's nameservers, or when it names
/// only systemd-resolved's stub, resolved's own upstream list (`resolved_conf`), or if that
/// is missing or empty, the stub itself (the agent runs in the host's namespace and reaches
/// it; sandboxes never see these addresses).
pub fn host_upstreams(resolv_conf: &str, resolved_conf: Option<&str>) -> Vec<SocketAddr> {
    let mut servers = resolv::nameservers(resolv_conf);
    if resolv::all_resolved_stub(&servers) {
        let listed = resolved_conf.map(resolv::nameservers).unwrap_or_default();
        if !listed.is_empty() && !resolv::all_resolved_stub(&listed) {
            servers = listed;
        }
    }
    to_sockets(&servers)
}

/// Addresses on port 53, without unspecified or repeated ones, at most [`MAX_UPSTREAMS`].
pub fn to_sockets(servers: &[IpAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for ip in servers.iter().filter(|ip| !ip.is_unspecified()) {
        let s = SocketAddr::new(*ip, 53);
        if !out.contains(&s) && out.len() < MAX_UPSTREAMS {
            out.push(s);
        }
    }
    out
}

/// The upstream's answer, if it answers the query sent with id `sent_id`: a response with
/// that id and the same question (name compared case-insensitively).
pub fn accept(answer: &[u8], sent_id: u16, query: &Query) -> Option<Message> {
    let m = Message::from_vec(answer).ok()?;
    let same = m.metadata.id == sent_id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries.first().is_some_and(|q| {
            q.query_type() == query.query_type()
                && q.query_class() == query.query_class()
                && q.name() == query.name()
        });
    same.then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::{Name, RecordType};

    fn s(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    #[test]
    fn host_resolvers_or_resolveds_list_or_the_stub() {
        assert_eq!(
            host_upstreams("nameserver 10.0.0.53\nnameserver 127.0.0.1\n", None),
            [s("10.0.0.53:53"), s("127.0.0.1:53")]
        );
        assert_eq!(
            host_upstreams("nameserver 127.0.0.53\n", Some("nameserver 198.51.100.2\n")),
            [s("198.51.100.2:53")]
        );
        assert_eq!(
            host_upstreams("nameserver 127.0.0.53\n", None),
            [s("127.0.0.53:53")]
        );
        assert_eq!(
            host_upstreams("nameserver 127.0.0.53\n", Some("# nothing\n")),
            [s("127.0.0.53:53")]
        );
        assert!(host_upstreams("", None).is_empty());
        let many = "nameserver 0.0.0.0\nnameserver 1.1.1.1\nnameserver 1.1.1.1\nnameserver 2.2.2.2\nnameserver 3.3.3.3\nnameserver 4.4.4.4\nnameserver 5.5.5.5\n";
        assert_eq!(host_upstreams(many, None).len(), MAX_UPSTREAMS);
    }

    #[test]
    fn only_the_matching_answer_is_accepted() {
        let q = Query::query(Name::from_ascii("Ext.Example.").unwrap(), RecordType::A);
        let mut m = Message::response(7, OpCode::Query);
        m.queries.push(Query::query(
            Name::from_ascii("ext.example.").unwrap(),
            RecordType::A,
        ));
        let bytes = m.to_vec().unwrap();
        assert!(accept(&bytes, 7, &q).is_some());
        assert!(accept(&bytes, 8, &q).is_none());
        let other = Query::query(Name::from_ascii("ext.example.").unwrap(), RecordType::AAAA);
        assert!(accept(&bytes, 7, &other).is_none());
        assert!(accept(&bytes[..5], 7, &q).is_none());
    }
}

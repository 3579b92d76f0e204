//! The DNS server's sockets: the four it listens on (UDP and TCP, IPv4 and IPv6, one port),
//! datagrams with their destination address and ingress interface (`IP_PKTINFO`), received and
//! sent in batches, and the
//! client that asks upstream resolvers.

pub mod batch;
pub mod socket;
pub mod upstream;

//! The host agent's DNS server, its pure part: who may ask, which names each asker sees, what
//! to answer or forward, and the brief cache and rate limits, all with time passed in. The
//! sockets are in `adapters::dns`, the task that runs it in `engine::agent::dns`.
//!
//! Messages are parsed and written with `hickory-proto` (as aardvark-dns does), except the
//! one common case `fast` writes from the packet's bytes, held equal to the general path by a
//! property test.

pub mod answer;
pub mod cache;
pub mod fast;
pub mod query;
pub mod ratelimit;
pub mod remote;
pub mod remote_table;
pub mod reply;
pub mod stranger;
pub mod table;
pub mod upstream;

/// TTL of local answers, in seconds. Short: a name moves to another address when its sandbox
/// is removed and run again, or disconnected, and resolvers inside sandboxes (nscd, resolved,
/// language runtimes) keep answers for their TTL; 5 s bounds how long one can reach a stale
/// address, while still letting a burst of lookups (A and AAAA, retries, connection pools) be
/// served from the client's cache. Docker's 600 s keeps stale answers for ten minutes.
pub const LOCAL_TTL: u32 = 5;

/// The UDP payload size a client without EDNS0 accepts (RFC 1035).
pub const CLASSIC_UDP: u16 = 512;

/// The largest UDP payload weft sends or advertises, whatever a client's EDNS0 says: 1232
/// avoids IP fragmentation on any path (the DNS flag day 2020 value).
pub const MAX_UDP: u16 = 1232;

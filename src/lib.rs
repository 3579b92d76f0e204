//! weft: Docker-style container networking without Docker.
//!
//! The crate is split the way data flows through it:
//! - [`core`]: pure logic with no system calls: the model, IPAM, desired-state planning and the
//!   nftables rule set weft wants. Unit-tested without root.
//! - [`adapters`]: the thin edges that talk to the kernel (netlink, nftables over netlink,
//!   namespaces, sysctls, processes) and to the state store.
//! - [`engine`]: the use cases (`network create`, `run`, `gc`, ...) that tie core and adapters.
//! - [`cli`]: argument parsing and output formatting.

pub mod adapters;
pub mod cli;
pub mod core;
pub mod engine;
pub mod timing;

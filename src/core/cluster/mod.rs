//! The overlay control plane's pure half: what the cluster store holds (key layout and
//! records), a node's view of it kept current from watch events, and the neighbour and FDB
//! entries a node's VXLAN devices must hold, as a diff against what the kernel has.
//!
//! The agent's cluster task (an adapter-driven loop) feeds it a snapshot, then watch events,
//! and applies what it returns; nothing here performs I/O. Incremental by construction: one
//! event yields the changes for that event only, never a re-dump of the cluster.

pub mod alloc;
pub mod claims;
pub mod entries;
pub mod keys;
pub mod orphans;
pub mod quarantine;
pub mod records;
pub mod view;
pub mod vteps;

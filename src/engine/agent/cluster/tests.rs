//! The cluster task's decisions, against the in-memory store and a recording host.

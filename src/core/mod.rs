//! The pure core: no system calls, no I/O. Everything here is unit-tested without root.

pub mod agent;
pub mod cluster;
pub mod cluster_config;
pub mod display;
pub mod dns;
pub mod driver;
pub mod filter;
pub mod firewall;
pub mod ipam;
pub mod logline;
pub mod model;
pub mod names;
pub mod netopts;
pub mod nft;
pub mod overlay_observed;
pub mod plan;
pub mod ports;
pub mod reconcile;
pub mod resolv;
pub mod run;
pub mod signal;
pub mod time;

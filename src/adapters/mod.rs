//! Adapters: the code that talks to the kernel and to the state store.

pub mod agent_ipc;
pub mod announce;
pub mod arena;
pub mod capabilities;
pub mod cluster;
pub mod conntrack;
pub mod dns;
pub mod dns_port;
pub mod fd_park;
pub mod fs;
pub mod host_facts;
pub mod init;
pub mod kernel_events;
pub mod libc_consts;
pub mod log_relay;
pub mod memory;
pub mod netlink;
pub mod netns;
pub mod nftables;
pub mod nla;
pub mod port_reservation;
pub mod process;
pub mod sqlite_heap;
pub mod store;
pub mod sysctl;

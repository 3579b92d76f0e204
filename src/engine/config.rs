//! `/etc/weft/weft.toml`: address pools, ranges to avoid, where the host's resolvers are
//! configured, the host agent and firewall choices.
//!
//! ```toml
//! default_address_pools = [{ base = "10.10.0.0/16", size = 24 }]
//! avoid = ["172.22.0.0/16"]
//! resolv_conf = "/etc/resolv.conf"
//! resolved_conf = "/run/systemd/resolve/resolv.conf"
//! agent = true          # start the host agent (`weft daemon`) on demand
//! anti_spoofing = true  # sandboxes send only from their own MAC and addresses
//! ip_forward_no_drop = false  # true: weft adds no drop for forwarded traffic of others
//! dns_rate_limit = 2000 # DNS queries per second per sandbox address the agent answers (0: no limit)
//!
//! [cluster]             # overlay networks: the agent joins this cluster (`weft daemon --etcd ...`)
//! etcd = ["http://10.0.0.5:2379"]
//! advertise = "10.0.0.1"  # this host's underlay address
//! vxlan_port = 4789
//! node = "host1"          # default: the hostname
//! lease_ttl = 10
//! # etcd_ca, etcd_cert, etcd_key = "/path.pem" for https:// endpoints
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use serde::Deserialize;

use crate::core::cluster_config::{ClusterConfig, ClusterSettings};
use crate::core::ipam::Pool;

/// The configuration file's contents. A missing file means all defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pools for automatic IPv4 subnets, walked in order (Docker's `default-address-pools`).
    #[serde(default)]
    pub default_address_pools: Option<Vec<PoolConfig>>,
    /// Pools for automatic IPv6 subnets.
    #[serde(default)]
    pub default_address_pools_v6: Option<Vec<PoolConfig>>,
    /// Ranges weft must never allocate.
    #[serde(default)]
    pub avoid: Vec<IpNet>,
    /// The host's resolver configuration, whose nameservers no subnet may contain and which
    /// sandboxes' `resolv.conf` start from (default [`DEFAULT_RESOLV_CONF`]).
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
    /// systemd-resolved's list of upstream servers, read when `resolv_conf` names only its
    /// stub 127.0.0.53 (default [`DEFAULT_RESOLVED_CONF`]).
    #[serde(default)]
    pub resolved_conf: Option<PathBuf>,
    /// Whether the first command that creates a network or sandbox starts the host agent
    /// (`weft daemon`) when none runs (default true). With `false`, run the agent yourself
    /// (systemd unit) or do without: without it nothing repairs drift until `weft gc`, and
    /// published ports are not reserved against host processes.
    #[serde(default)]
    pub agent: Option<bool>,
    /// Whether each sandbox port only lets through frames from the sandbox's own MAC, IPv4,
    /// IPv6 and link-local addresses (IP, ARP and neighbour discovery), dropping the rest
    /// (VLAN tags and other ethertypes too) (default true). Router advertisements,
    /// solicitations and redirects from sandboxes are dropped either way.
    #[serde(default)]
    pub anti_spoofing: Option<bool>,
    /// When IP forwarding was off before weft turned it on, weft drops forwarded traffic that
    /// touches none of its bridges (the host did not route before; weft does not make it a
    /// router for others). `true` leaves such traffic alone, for hosts that route on purpose
    /// (Docker's `ip-forward-no-drop`).
    #[serde(default)]
    pub ip_forward_no_drop: bool,
    /// DNS queries per second the agent's DNS server answers per sandbox address, with a burst
    /// of one second's worth; beyond it queries are dropped, so one flooding sandbox cannot
    /// starve the others (default [`DEFAULT_DNS_RATE_LIMIT`]; 0 turns the limit off).
    #[serde(default)]
    pub dns_rate_limit: Option<u32>,
    /// The cluster the agent joins for overlay networks; the daemon's flags override each key.
    /// Validated when the agent starts ([`crate::core::cluster_config::validate`]).
    #[serde(default)]
    pub cluster: ClusterSettings,
}

/// Queries per second per sandbox address unless `dns_rate_limit` says otherwise: far above
/// what applications ask (a lookup per connection), while a flood costs the host at most a
/// few percent of a core per sandbox.
pub const DEFAULT_DNS_RATE_LIMIT: u32 = 2000;

impl Config {
    /// Whether to start the agent on demand.
    pub fn agent_on_demand(&self) -> bool {
        self.agent.unwrap_or(true)
    }

    /// DNS queries per second per sandbox address (0: no limit).
    pub fn dns_rate_limit(&self) -> u32 {
        self.dns_rate_limit.unwrap_or(DEFAULT_DNS_RATE_LIMIT)
    }

    /// Whether sandbox ports are guarded against spoofed addresses.
    pub fn anti_spoofing(&self) -> bool {
        self.anti_spoofing.unwrap_or(true)
    }
}

/// Where the host's resolvers are configured unless `resolv_conf` says otherwise.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where systemd-resolved lists its upstream servers unless `resolved_conf` says otherwise.
pub const DEFAULT_RESOLVED_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// One pool: `base` split into subnets of prefix length `size`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The range to carve subnets from.
    pub base: IpNet,
    /// Prefix length of each subnet.
    pub size: u8,
}

impl Config {
    /// Reads and validates the file; absent is fine, malformed is an error naming it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let cfg: Config = toml::from_str(&text).map_err(|e| {
            crate::user_err!("invalid config file {}: {}", path.display(), e.message())
        })?;
        for p in cfg.pools(false).iter().chain(cfg.pools(true).iter()) {
            crate::core::ipam::check_usable_net("address pool", p.base)
                .map_err(|e| crate::user_err!("invalid config file {}: {e}", path.display()))?;
            if p.size < p.base.prefix_len() || p.size > p.base.max_prefix_len() {
                return Err(crate::user_err!(
                    "invalid pool {} size {} in {}: size must be between {} and {}",
                    p.base,
                    p.size,
                    path.display(),
                    p.base.prefix_len(),
                    p.base.max_prefix_len()
                ));
            }
        }
        Ok(cfg)
    }

    /// The cluster to join: `flags` (the daemon's) over the file's `[cluster]` keys, validated;
    /// `None` when neither configures one. The node name defaults to the hostname.
    pub fn cluster(&self, flags: ClusterSettings) -> Result<Option<ClusterConfig>> {
        let hostname = nix::unistd::gethostname()
            .context("reading the hostname (the default --node)")?
            .to_string_lossy()
            .into_owned();
        crate::core::cluster_config::validate(flags.over(self.cluster.clone()), &hostname)
            .map_err(|e| crate::user_err!("{e}"))
    }

    /// The host's resolver configuration file.
    pub fn resolv_conf(&self) -> PathBuf {
        self.resolv_conf
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RESOLV_CONF))
    }

    /// systemd-resolved's upstream list.
    pub fn resolved_conf(&self) -> PathBuf {
        self.resolved_conf
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RESOLVED_CONF))
    }

    /// The pools for one family, configured or default.
    pub fn pools(&self, v6: bool) -> Vec<Pool> {
        let configured = if v6 {
            &self.default_address_pools_v6
        } else {
            &self.default_address_pools
        };
        match configured {
            Some(list) => list
                .iter()
                .map(|p| Pool {
                    base: p.base.trunc(),
                    size: p.size,
                })
                .collect(),
            None if v6 => crate::core::ipam::default_v6_pools(),
            None => crate::core::ipam::default_pools(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, text)?;
        Config::load(&path)
    }

    #[test]
    fn cluster_table_reads_every_key() {
        let cfg = parse(
            r#"
[cluster]
etcd = ["https://10.0.0.5:2379", "https://10.0.0.6:2379"]
etcd_ca = "/etc/weft/ca.pem"
etcd_cert = "/etc/weft/c.pem"
etcd_key = "/etc/weft/k.pem"
advertise = "10.0.0.1"
vxlan_port = 8472
node = "h1"
lease_ttl = 20
"#,
        )
        .unwrap();
        let c = crate::core::cluster_config::validate(cfg.cluster, "ignored")
            .unwrap()
            .unwrap();
        assert_eq!(c.etcd.len(), 2);
        assert_eq!(
            (c.vxlan_port, c.lease_ttl, c.node.as_str()),
            (8472, 20, "h1")
        );
        assert_eq!(c.etcd_key, Some(PathBuf::from("/etc/weft/k.pem")));
    }

    #[test]
    fn no_cluster_table_is_no_cluster_and_unknown_keys_are_refused() {
        assert_eq!(parse("").unwrap().cluster, ClusterSettings::default());
        let e = parse("[cluster]\netcd_endpoints = []\n").unwrap_err();
        assert!(
            e.to_string().contains("unknown field `etcd_endpoints`"),
            "{e}"
        );
    }
}

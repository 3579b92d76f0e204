//! `/etc/weft/weft.toml`: address pools, ranges to avoid, and firewall choices.
//!
//! ```toml
//! default_address_pools = [{ base = "10.10.0.0/16", size = 24 }]
//! avoid = ["172.22.0.0/16"]
//! anti_spoofing = true        # sandboxes send only from their own MAC and addresses
//! ip_forward_no_drop = false  # true: weft adds no drop for forwarded traffic of others
//! ```

use std::path::Path;

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use serde::Deserialize;

use crate::core::ipam::Pool;

/// The configuration file's contents. A missing file means all defaults.
#[derive(Debug, Clone, Deserialize)]
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
    /// Whether each sandbox port only lets through frames from the sandbox's own MAC, IPv4,
    /// IPv6 and link-local addresses (IP, ARP and neighbour discovery), dropping the rest
    /// (VLAN tags and other ethertypes too). On by default; router advertisements,
    /// solicitations and redirects from sandboxes are dropped either way.
    #[serde(default = "yes")]
    pub anti_spoofing: bool,
    /// When IP forwarding was off before weft turned it on, weft drops forwarded traffic that
    /// touches none of its bridges (the host did not route before; weft does not make it a
    /// router for others). `true` leaves such traffic alone, for hosts that route on purpose
    /// (Docker's `ip-forward-no-drop`).
    #[serde(default)]
    pub ip_forward_no_drop: bool,
}

fn yes() -> bool {
    true
}

/// One pool: `base` split into subnets of prefix length `size`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The range to carve subnets from.
    pub base: IpNet,
    /// Prefix length of each subnet.
    pub size: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_address_pools: None,
            default_address_pools_v6: None,
            avoid: Vec::new(),
            anti_spoofing: true,
            ip_forward_no_drop: false,
        }
    }
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

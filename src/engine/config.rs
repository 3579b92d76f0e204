//! `/etc/weft/weft.toml`: address pools and ranges to avoid.
//!
//! ```toml
//! default_address_pools = [{ base = "10.10.0.0/16", size = 24 }]
//! avoid = ["172.22.0.0/16"]
//! ```

use std::path::Path;

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use serde::Deserialize;

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

//! The cluster an agent joins for overlay networks: `weft daemon --etcd ... --advertise ...`
//! and the same keys under `[cluster]` in the configuration file, merged (flags win) and
//! validated into a [`ClusterConfig`]. Whether `advertise` is an address of this host is
//! checked by the agent when it starts (that needs the kernel).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::driver::overlay::DEFAULT_VXLAN_PORT;

/// Seconds an agent's etcd lease lives without renewal unless `lease_ttl` says otherwise: a
/// dead host's entries vanish elsewhere within this time.
pub const DEFAULT_LEASE_TTL: u32 = 10;
/// Shortest lease accepted: below it, a renewal delayed by a busy host expires the lease.
pub const MIN_LEASE_TTL: u32 = 2;
/// Longest lease accepted: a dead host would stay for an hour.
pub const MAX_LEASE_TTL: u32 = 3600;

/// Cluster settings as given, each optional: the `[cluster]` table of the configuration
/// file, or the daemon's flags. Numbers are kept wide so that an out-of-range value gets
/// weft's message, not the parser's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// etcd endpoints, `http(s)://HOST:PORT`.
    #[serde(default)]
    pub etcd: Vec<String>,
    /// CA certificate that signs the etcd servers' certificates.
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd.
    pub etcd_cert: Option<PathBuf>,
    /// Its key.
    pub etcd_key: Option<PathBuf>,
    /// This host's underlay address, where the other hosts send VXLAN traffic.
    pub advertise: Option<String>,
    /// UDP port of the VXLAN devices.
    pub vxlan_port: Option<i64>,
    /// This host's name in the cluster.
    pub node: Option<String>,
    /// Seconds the agent's etcd lease lives without renewal.
    pub lease_ttl: Option<i64>,
}

impl ClusterSettings {
    /// `self` (the flags) over `file`: each key given here replaces the file's.
    pub fn over(self, file: ClusterSettings) -> ClusterSettings {
        ClusterSettings {
            etcd: if self.etcd.is_empty() {
                file.etcd
            } else {
                self.etcd
            },
            etcd_ca: self.etcd_ca.or(file.etcd_ca),
            etcd_cert: self.etcd_cert.or(file.etcd_cert),
            etcd_key: self.etcd_key.or(file.etcd_key),
            advertise: self.advertise.or(file.advertise),
            vxlan_port: self.vxlan_port.or(file.vxlan_port),
            node: self.node.or(file.node),
            lease_ttl: self.lease_ttl.or(file.lease_ttl),
        }
    }

    /// The keys given besides `etcd`, by their flag names.
    fn others_given(&self) -> Vec<&'static str> {
        [
            ("--etcd-ca", self.etcd_ca.is_some()),
            ("--etcd-cert", self.etcd_cert.is_some()),
            ("--etcd-key", self.etcd_key.is_some()),
            ("--advertise", self.advertise.is_some()),
            ("--vxlan-port", self.vxlan_port.is_some()),
            ("--node", self.node.is_some()),
            ("--lease-ttl", self.lease_ttl.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}

/// A validated cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// etcd endpoints, as given.
    pub etcd: Vec<String>,
    /// CA certificate for the etcd servers.
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd.
    pub etcd_cert: Option<PathBuf>,
    /// Its key.
    pub etcd_key: Option<PathBuf>,
    /// This host's underlay address.
    pub advertise: IpAddr,
    /// UDP port of the VXLAN devices.
    pub vxlan_port: u16,
    /// This host's name in the cluster.
    pub node: String,
    /// Seconds the agent's etcd lease lives without renewal.
    pub lease_ttl: u32,
}

/// A cluster setting weft cannot use. Flags are named as on the command line; the same keys
/// under `[cluster]` are spelled with underscores.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ClusterConfigError {
    /// Cluster keys without an etcd endpoint.
    #[error("{} given without --etcd: give the etcd endpoints too (--etcd URL, or etcd = [\"URL\"] under [cluster])", .0.join(", "))]
    NoEtcd(Vec<&'static str>),
    /// etcd without an underlay address.
    #[error("--etcd needs --advertise IP: this host's underlay address, which the other hosts send VXLAN traffic to")]
    NoAdvertise,
    /// A malformed endpoint.
    #[error("invalid --etcd endpoint {0:?}: expected http://HOST:PORT or https://HOST:PORT, e.g. http://10.0.0.5:2379")]
    Endpoint(String),
    /// A certificate without its key, or the reverse.
    #[error("--etcd-cert and --etcd-key go together: give both or neither")]
    CertWithoutKey,
    /// TLS files with a plain-text endpoint.
    #[error("--etcd-ca, --etcd-cert and --etcd-key are for https:// endpoints, but {0} is http://; use https:// or leave them out")]
    TlsOverHttp(String),
    /// An underlay address that is not an address.
    #[error("invalid --advertise {0:?}: expected an IP address of this host, e.g. 10.0.0.5 or 2001:db8::5")]
    Advertise(String),
    /// An underlay address other hosts cannot reach, or of a family not supported.
    #[error("--advertise {addr} cannot be used: {why}")]
    AdvertiseUnusable {
        /// The address.
        addr: IpAddr,
        /// Why.
        why: &'static str,
    },
    /// A port out of range.
    #[error("invalid --vxlan-port {0}: must be between 1 and 65535 (VXLAN's own is 4789)")]
    Port(i64),
    /// A lease TTL out of range.
    #[error(
        "invalid --lease-ttl {0}: must be between {MIN_LEASE_TTL} and {MAX_LEASE_TTL} seconds"
    )]
    LeaseTtl(i64),
    /// A node name that cannot name a host in the cluster.
    #[error("invalid --node {0:?}: use 1 to 64 letters, digits, '.', '-' or '_'")]
    Node(String),
}

/// Checks an etcd endpoint: `http://` or `https://`, a host, a port 1..=65535, nothing after.
fn check_endpoint(url: &str) -> Result<(), ClusterConfigError> {
    let bad = || ClusterConfigError::Endpoint(url.to_string());
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }
    };
    let port_ok = port
        .parse::<u16>()
        .is_ok_and(|p| p != 0 && !port.starts_with('+'));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_node(node: &str) -> Result<(), ClusterConfigError> {
    let ok = (1..=64).contains(&node.len())
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && node != "."
        && node != "..";
    if ok {
        Ok(())
    } else {
        Err(ClusterConfigError::Node(node.to_string()))
    }
}

/// Validates merged settings; `None` when no cluster is configured at all. `hostname` is
/// the node name unless one is given.
pub fn validate(
    s: ClusterSettings,
    hostname: &str,
) -> Result<Option<ClusterConfig>, ClusterConfigError> {
    if s.etcd.is_empty() {
        let others = s.others_given();
        return if others.is_empty() {
            Ok(None)
        } else {
            Err(ClusterConfigError::NoEtcd(others))
        };
    }
    for url in &s.etcd {
        check_endpoint(url)?;
    }
    if s.etcd_cert.is_some() != s.etcd_key.is_some() {
        return Err(ClusterConfigError::CertWithoutKey);
    }
    if s.etcd_ca.is_some() || s.etcd_cert.is_some() {
        if let Some(plain) = s.etcd.iter().find(|u| u.starts_with("http://")) {
            return Err(ClusterConfigError::TlsOverHttp(plain.clone()));
        }
    }
    let text = s.advertise.ok_or(ClusterConfigError::NoAdvertise)?;
    let advertise: IpAddr = text
        .parse()
        .map_err(|_| ClusterConfigError::Advertise(text.clone()))?;
    let unusable = |why| ClusterConfigError::AdvertiseUnusable {
        addr: advertise,
        why,
    };
    // An IPv6 underlay works as an IPv4 one (the VXLAN device takes an IPv6 `local` and
    // remotes; its MTU arithmetic counts 70 bytes instead of 50), except from a link-local
    // address: the tunnel's remote cannot carry the interface scope it needs.
    if let IpAddr::V6(v6) = advertise {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return Err(unusable(
                "a link-local address needs an interface scope, which a VXLAN tunnel's remote cannot carry; give this host's global or unique-local address",
            ));
        }
    }
    if advertise.is_unspecified() || advertise.is_loopback() || advertise.is_multicast() {
        return Err(unusable(
            "other hosts cannot reach it; give this host's address on the network they share",
        ));
    }
    let vxlan_port = match s.vxlan_port {
        None => DEFAULT_VXLAN_PORT,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(ClusterConfigError::Port(p))?,
    };
    let lease_ttl = match s.lease_ttl {
        None => DEFAULT_LEASE_TTL,
        Some(t) => u32::try_from(t)
            .ok()
            .filter(|t| (MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(t))
            .ok_or(ClusterConfigError::LeaseTtl(t))?,
    };
    let node = s.node.unwrap_or_else(|| hostname.to_string());
    check_node(&node)?;
    Ok(Some(ClusterConfig {
        etcd: s.etcd,
        etcd_ca: s.etcd_ca,
        etcd_cert: s.etcd_cert,
        etcd_key: s.etcd_key,
        advertise,
        vxlan_port,
        node,
        lease_ttl,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> ClusterSettings {
        ClusterSettings {
            etcd: vec!["http://10.0.0.5:2379".into()],
            advertise: Some("10.0.0.1".into()),
            ..Default::default()
        }
    }

    fn err(s: ClusterSettings) -> String {
        validate(s, "host1").unwrap_err().to_string()
    }

    #[test]
    fn nothing_given_is_no_cluster() {
        assert_eq!(validate(ClusterSettings::default(), "h"), Ok(None));
    }

    #[test]
    fn defaults_port_ttl_and_node() {
        let c = validate(minimal(), "host1").unwrap().unwrap();
        assert_eq!(c.vxlan_port, 4789);
        assert_eq!(c.lease_ttl, 10);
        assert_eq!(c.node, "host1");
        assert_eq!(c.advertise, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn flags_override_the_file_key_by_key() {
        let file = ClusterSettings {
            etcd: vec!["http://a:1".into()],
            node: Some("from-file".into()),
            lease_ttl: Some(30),
            ..Default::default()
        };
        let flags = ClusterSettings {
            etcd: vec!["http://b:2".into(), "https://c:3".into()],
            lease_ttl: Some(5),
            ..Default::default()
        };
        let m = flags.over(file);
        assert_eq!(m.etcd, ["http://b:2", "https://c:3"]);
        assert_eq!(m.node.as_deref(), Some("from-file"));
        assert_eq!(m.lease_ttl, Some(5));
        let only_file = ClusterSettings::default().over(minimal());
        assert_eq!(only_file, minimal());
    }

    #[test]
    fn endpoints_are_http_or_https_host_and_port() {
        for good in [
            "http://10.0.0.5:2379",
            "https://etcd.example:2379/",
            "http://[fd00::1]:2379",
        ] {
            assert_eq!(check_endpoint(good), Ok(()), "{good}");
        }
        for bad in [
            "10.0.0.5:2379",
            "unix:///run/etcd.sock",
            "http://10.0.0.5",
            "http://:2379",
            "http://10.0.0.5:0",
            "http://10.0.0.5:65536",
            "http://10.0.0.5:+80",
            "http://10.0.0.5:2379/v3",
            "http://user@host:1",
            "http://[fd00::1:2379",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        let mut s = minimal();
        s.etcd = vec!["http://10.0.0.5:2379".into(), "etcd:2379".into()];
        assert_eq!(
            err(s),
            "invalid --etcd endpoint \"etcd:2379\": expected http://HOST:PORT or https://HOST:PORT, e.g. http://10.0.0.5:2379"
        );
    }

    #[test]
    fn tls_files_pair_up_and_need_https() {
        let mut s = minimal();
        s.etcd = vec!["https://10.0.0.5:2379".into()];
        s.etcd_cert = Some("/c.pem".into());
        assert_eq!(
            err(s.clone()),
            "--etcd-cert and --etcd-key go together: give both or neither"
        );
        s.etcd_key = Some("/k.pem".into());
        s.etcd_ca = Some("/ca.pem".into());
        assert!(validate(s.clone(), "h").unwrap().is_some());
        s.etcd.push("http://10.0.0.6:2379".into());
        assert!(err(s).contains("but http://10.0.0.6:2379 is http://"));
    }

    #[test]
    fn cluster_keys_need_etcd_and_etcd_needs_advertise() {
        let s = ClusterSettings {
            advertise: Some("10.0.0.1".into()),
            node: Some("n".into()),
            ..Default::default()
        };
        assert_eq!(
            err(s),
            "--advertise, --node given without --etcd: give the etcd endpoints too (--etcd URL, or etcd = [\"URL\"] under [cluster])"
        );
        let mut s = minimal();
        s.advertise = None;
        assert!(err(s).starts_with("--etcd needs --advertise IP"));
    }

    #[test]
    fn advertise_is_a_reachable_address_of_either_family() {
        for (bad, want) in [
            ("ten", "invalid --advertise \"ten\": expected an IP address of this host, e.g. 10.0.0.5 or 2001:db8::5"),
            ("0.0.0.0", "--advertise 0.0.0.0 cannot be used: other hosts cannot reach it; give this host's address on the network they share"),
            ("127.0.0.1", "--advertise 127.0.0.1 cannot be used: other hosts cannot reach it; give this host's address on the network they share"),
            ("fe80::1", "--advertise fe80::1 cannot be used: a link-local address needs an interface scope, which a VXLAN tunnel's remote cannot carry; give this host's global or unique-local address"),
            ("::1", "--advertise ::1 cannot be used: other hosts cannot reach it; give this host's address on the network they share"),
        ] {
            let mut s = minimal();
            s.advertise = Some(bad.into());
            assert_eq!(err(s), want);
        }
        // An IPv6 underlay is an underlay.
        let mut s = minimal();
        s.advertise = Some("fd00::1".into());
        let c = validate(s, "host").unwrap().unwrap();
        assert_eq!(c.advertise, "fd00::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn port_and_ttl_ranges() {
        for (port, ok) in [
            (1, true),
            (65535, true),
            (0, false),
            (65536, false),
            (-1, false),
        ] {
            let mut s = minimal();
            s.vxlan_port = Some(port);
            assert_eq!(validate(s.clone(), "h").is_ok(), ok, "{port}");
            if !ok {
                assert_eq!(
                    err(s),
                    format!("invalid --vxlan-port {port}: must be between 1 and 65535 (VXLAN's own is 4789)")
                );
            }
        }
        for (ttl, ok) in [
            (2, true),
            (3600, true),
            (1, false),
            (3601, false),
            (-5, false),
        ] {
            let mut s = minimal();
            s.lease_ttl = Some(ttl);
            assert_eq!(validate(s.clone(), "h").is_ok(), ok, "{ttl}");
            if !ok {
                assert_eq!(
                    err(s),
                    format!("invalid --lease-ttl {ttl}: must be between 2 and 3600 seconds")
                );
            }
        }
    }

    #[test]
    fn node_names_fit_a_key() {
        for bad in ["", "a/b", "..", "x".repeat(65).as_str(), "host one"] {
            let mut s = minimal();
            s.node = Some(bad.into());
            assert!(err(s).starts_with("invalid --node"), "{bad:?}");
        }
        let mut s = minimal();
        s.node = Some("host-1.example_2".into());
        assert_eq!(validate(s, "h").unwrap().unwrap().node, "host-1.example_2");
    }
}

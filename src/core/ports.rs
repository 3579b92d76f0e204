//! Published ports: the `-p` syntax, its validation and its expansion into one mapping per
//! host port, as Docker users write them:
//! `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp|/sctp]`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A transport protocol a port can be published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// `tcp`, `udp` or `sctp`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One `-p` argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The text as given, for error messages.
    pub text: String,
    /// The host address; `None` means every host address.
    pub host_ip: Option<IpAddr>,
    /// Host ports (first, last); `None` means "pick free ones".
    pub host_ports: Option<(u16, u16)>,
    /// Sandbox ports (first, last).
    pub container_ports: (u16, u16),
    /// Protocol.
    pub protocol: Protocol,
}

impl PortSpec {
    /// How many ports the spec publishes.
    pub fn len(&self) -> u16 {
        self.container_ports.1 - self.container_ports.0 + 1
    }

    /// Whether the spec publishes no port (never true for a parsed spec).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One published port, as stored and as shown by `weft port` and `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address: `0.0.0.0` / `::` mean every address of that family.
    pub host_ip: IpAddr,
    /// Port on the host.
    pub host_port: u16,
    /// Port in the sandbox.
    pub container_port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = match self.host_ip {
            IpAddr::V6(a) => format!("[{a}]"),
            IpAddr::V4(a) => a.to_string(),
        };
        write!(
            f,
            "{}/{} -> {host}:{}",
            self.container_port,
            self.protocol.name(),
            self.host_port
        )
    }
}

/// A `-p` argument weft cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PortError {
    /// The text does not follow the syntax.
    #[error("invalid -p {text:?}: {why}; expected [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp|/sctp], e.g. 8080:80 or 127.0.0.1:5353:53/udp")]
    Syntax {
        /// The argument.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// A port outside 1..=65535.
    #[error("invalid -p {text:?}: port {port} is out of range; ports are 1 to 65535")]
    OutOfRange {
        /// The argument.
        text: String,
        /// The offending value, as written.
        port: String,
    },
    /// `END` lower than the start.
    #[error("invalid -p {text:?}: range {range} is reversed; write the lower port first")]
    Reversed {
        /// The argument.
        text: String,
        /// The range as written.
        range: String,
    },
    /// Host and container ranges of different sizes.
    #[error("invalid -p {text:?}: the host range has {host} ports but the sandbox range has {container}; they must be equal")]
    UnequalRanges {
        /// The argument.
        text: String,
        /// Host range length.
        host: u32,
        /// Container range length.
        container: u32,
    },
    /// Not tcp, udp or sctp.
    #[error("invalid -p {text:?}: unknown protocol {proto:?}; use tcp, udp or sctp")]
    Protocol {
        /// The argument.
        text: String,
        /// The protocol as written.
        proto: String,
    },
}

fn port(text: &str, s: &str) -> Result<u16, PortError> {
    match s.parse::<u32>() {
        Ok(p) if p >= 1 => u16::try_from(p).map_err(|_| PortError::OutOfRange {
            text: text.into(),
            port: s.into(),
        }),
        Ok(_) => Err(PortError::OutOfRange {
            text: text.into(),
            port: s.into(),
        }),
        Err(_) => Err(PortError::Syntax {
            text: text.into(),
            why: format!("{s:?} is not a port number"),
        }),
    }
}

fn range(text: &str, s: &str) -> Result<(u16, u16), PortError> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (port(text, a)?, port(text, b)?),
        None => {
            let p = port(text, s)?;
            (p, p)
        }
    };
    if b < a {
        return Err(PortError::Reversed {
            text: text.into(),
            range: s.into(),
        });
    }
    Ok((a, b))
}

/// Parses one `-p` argument.
pub fn parse(text: &str) -> Result<PortSpec, PortError> {
    let syntax = |why: &str| PortError::Syntax {
        text: text.into(),
        why: why.into(),
    };
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((r, p)) => (
            r,
            match p.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                _ => {
                    return Err(PortError::Protocol {
                        text: text.into(),
                        proto: p.into(),
                    })
                }
            },
        ),
        None => (text, Protocol::Tcp),
    };
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once(']').ok_or_else(|| syntax("missing ']'"))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| syntax(&format!("{ip:?} is not an IPv6 address")))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| syntax("expected ':' after the host address"))?;
        (Some(IpAddr::V6(ip)), after)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() == 3 {
            let ip: Ipv4Addr = parts[0]
                .parse()
                .map_err(|_| syntax(&format!("{:?} is not an IPv4 address", parts[0])))?;
            (Some(IpAddr::V4(ip)), &rest[parts[0].len() + 1..])
        } else {
            (None, rest)
        }
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host, container) = match parts.as_slice() {
        [c] if host_ip.is_none() => (None, *c),
        ["", c] => (None, *c),
        [h, c] => (Some(*h), *c),
        _ => return Err(syntax("too many ':'")),
    };
    let container_ports = range(text, container)?;
    let host_ports = host.map(|h| range(text, h)).transpose()?;
    if let Some((a, b)) = host_ports {
        let (h, c) = (
            u32::from(b - a) + 1,
            u32::from(container_ports.1 - container_ports.0) + 1,
        );
        if h != c {
            return Err(PortError::UnequalRanges {
                text: text.into(),
                host: h,
                container: c,
            });
        }
    }
    Ok(PortSpec {
        text: text.into(),
        host_ip,
        host_ports,
        container_ports,
        protocol,
    })
}

/// The mappings of a spec whose host ports start at `host_start`, on `host_ip`.
pub fn expand(spec: &PortSpec, host_ip: IpAddr, host_start: u16) -> Vec<PortMapping> {
    (0..spec.len())
        .map(|i| PortMapping {
            host_ip,
            host_port: host_start + i,
            container_port: spec.container_ports.0 + i,
            protocol: spec.protocol,
        })
        .collect()
}

/// The host addresses a spec publishes on: the given one, or every address of each family
/// the sandbox has (`0.0.0.0`, and `::` when it has IPv6).
pub fn host_ips(spec: &PortSpec, has_v4: bool, has_v6: bool) -> Vec<IpAddr> {
    match spec.host_ip {
        Some(ip) => vec![ip],
        None => {
            let mut v = Vec::new();
            if has_v4 {
                v.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            }
            if has_v6 {
                v.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
            }
            v
        }
    }
}

/// Whether two host addresses of published ports overlap: same family, and equal or either
/// is the "every address" wildcard.
pub fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a == b || a.is_unspecified() || b.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> PortSpec {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_forms() {
        let p = ok("8080:80");
        assert_eq!(p.host_ip, None);
        assert_eq!(p.host_ports, Some((8080, 8080)));
        assert_eq!(p.container_ports, (80, 80));
        assert_eq!(p.protocol, Protocol::Tcp);

        let p = ok("127.0.0.1:5353:53/udp");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.protocol, Protocol::Udp);

        let p = ok("9000-9010:9000-9010");
        assert_eq!(p.len(), 11);

        let p = ok("[::]:8443:443");
        assert_eq!(p.host_ip, Some("::".parse().unwrap()));
        assert_eq!(p.host_ports, Some((8443, 8443)));

        let p = ok("80");
        assert_eq!(p.host_ports, None);
        let p = ok("127.0.0.1::80/sctp");
        assert_eq!(p.host_ports, None);
        assert_eq!(p.protocol, Protocol::Sctp);
    }

    #[test]
    fn bad_specs_name_the_problem() {
        assert!(matches!(parse("0:80"), Err(PortError::OutOfRange { .. })));
        assert!(matches!(
            parse("8080:70000"),
            Err(PortError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("90-80:90-80"),
            Err(PortError::Reversed { .. })
        ));
        assert!(matches!(
            parse("9000-9001:80"),
            Err(PortError::UnequalRanges {
                host: 2,
                container: 1,
                ..
            })
        ));
        assert!(matches!(parse("80/icmp"), Err(PortError::Protocol { .. })));
        assert!(matches!(
            parse("1.2.3:80:80"),
            Err(PortError::Syntax { .. })
        ));
        assert!(matches!(parse("a:b:c:d"), Err(PortError::Syntax { .. })));
        assert!(matches!(parse("[::1:80:80"), Err(PortError::Syntax { .. })));
        let e = parse("8080:70000").unwrap_err().to_string();
        assert!(e.contains("70000") && e.contains("1 to 65535"), "{e}");
    }

    #[test]
    fn expansion_pairs_ports_in_order() {
        let p = ok("9000-9002:7000-7002/udp");
        let m = expand(&p, "0.0.0.0".parse().unwrap(), 9000);
        assert_eq!(m.len(), 3);
        assert_eq!((m[2].host_port, m[2].container_port), (9002, 7002));
        assert_eq!(m[0].to_string(), "7000/udp -> 0.0.0.0:9000");
    }

    #[test]
    fn wildcard_covers_both_families_only_with_ipv6() {
        let p = ok("8080:80");
        assert_eq!(host_ips(&p, true, false).len(), 1);
        assert_eq!(host_ips(&p, true, true).len(), 2);
    }

    #[test]
    fn overlap_rules() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        assert!(overlaps(any4, a));
        assert!(overlaps(a, a));
        assert!(!overlaps(a, b));
        assert!(!overlaps(any6, a));
    }
}

//! Published ports: the `-p` syntax, its validation and its expansion into one mapping per
//! host port, as Docker users write them:
//! `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp|/sctp]`.
//!
//! Port arithmetic is checked everywhere: `u16` ranges that end at 65535 wrap in release
//! builds, which once made a `-p 65000-65535:…` skip every conflict check. Ranges are walked
//! as `RangeInclusive<u16>` and lengths computed in `u32`.

#![deny(clippy::arithmetic_side_effects)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

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
    /// How many ports the spec publishes: 1 to 65535.
    pub fn len(&self) -> u32 {
        span(self.container_ports)
    }

    /// The sandbox ports.
    pub fn container_range(&self) -> RangeInclusive<u16> {
        self.container_ports.0..=self.container_ports.1
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

/// Whether two mappings claim the same host port: same protocol, same port, and overlapping
/// host addresses (see [`overlaps`]).
pub fn conflicts(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol == b.protocol && a.host_port == b.host_port && overlaps(a.host_ip, b.host_ip)
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
    /// Host ports chosen from `first` would run past 65535.
    #[error("invalid -p {text:?}: {len} host ports from {first} would run past 65535; choose a lower host port")]
    PastEnd {
        /// The argument.
        text: String,
        /// The first host port.
        first: u16,
        /// How many ports the spec publishes.
        len: u32,
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

/// Number of ports in `first..=last` (`last >= first`), in `u32` so that a full range fits.
fn span((first, last): (u16, u16)) -> u32 {
    u32::from(last)
        .saturating_sub(u32::from(first))
        .saturating_add(1)
}

/// `len` consecutive ports from `first`, or `None` if they would run past 65535 (or `len`
/// is 0).
pub fn block(first: u16, len: u32) -> Option<RangeInclusive<u16>> {
    let last = u32::from(first).checked_add(len.checked_sub(1)?)?;
    Some(first..=u16::try_from(last).ok()?)
}

/// Where a block of `len` consecutive ports can start inside `lo..=hi`, in the order to try
/// them: from the `offset`-th possible start (modulo their number), wrapping around. Empty if
/// no block fits (also when `hi < lo` or `len` is 0). Every start `s` yielded has
/// `block(s, len)` inside `lo..=hi`.
pub fn block_starts(lo: u16, hi: u16, len: u32, offset: u32) -> impl Iterator<Item = u16> {
    // Possible starts: lo ..= hi + 1 - len, i.e. (hi - lo + 2 - len) of them.
    let count = if len == 0 {
        0
    } else {
        u32::from(hi)
            .checked_sub(u32::from(lo))
            .and_then(|d| d.checked_add(2))
            .and_then(|d| d.checked_sub(len))
            .unwrap_or(0)
    };
    let first = offset.checked_rem(count).unwrap_or(0);
    (first..count)
        .chain(0..first)
        .filter_map(move |i| u16::try_from(u32::from(lo).checked_add(i)?).ok())
}

fn port(text: &str, s: &str) -> Result<u16, PortError> {
    let n: u32 = s.parse().map_err(|_| PortError::Syntax {
        text: text.into(),
        why: format!("{s:?} is not a port number"),
    })?;
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(PortError::OutOfRange {
            text: text.into(),
            port: s.into(),
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
        match rest.split_once(':') {
            Some((ip, after)) if rest.split(':').count() == 3 => {
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| syntax(&format!("{ip:?} is not an IPv4 address")))?;
                (Some(IpAddr::V4(ip)), after)
            }
            _ => (None, rest),
        }
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host, container) = match parts.as_slice() {
        [c] if host_ip.is_none() => (None, *c),
        // Host port 0 is Docker's way to ask for a free one too.
        ["", c] | ["0", c] => (None, *c),
        [h, c] => (Some(*h), *c),
        _ => return Err(syntax("too many ':'")),
    };
    let container_ports = range(text, container)?;
    let host_ports = host.map(|h| range(text, h)).transpose()?;
    if let Some(h) = host_ports {
        let (h, c) = (span(h), span(container_ports));
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

/// The mappings of a spec whose host ports start at `host_start`, on `host_ip`, in port
/// order; refused if the host ports would run past 65535.
pub fn expand(
    spec: &PortSpec,
    host_ip: IpAddr,
    host_start: u16,
) -> Result<Vec<PortMapping>, PortError> {
    let hosts = block(host_start, spec.len()).ok_or_else(|| PortError::PastEnd {
        text: spec.text.clone(),
        first: host_start,
        len: spec.len(),
    })?;
    Ok(hosts
        .zip(spec.container_range())
        .map(|(host_port, container_port)| PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol: spec.protocol,
        })
        .collect())
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

/// Specs with `default` as their host address where they name none (a network's `host_ip`
/// option, Docker's `host_binding_ipv4`): then they publish as if `-p DEFAULT:…` was written.
pub fn with_default_host(specs: Vec<PortSpec>, default: Option<IpAddr>) -> Vec<PortSpec> {
    specs
        .into_iter()
        .map(|mut s| {
            s.host_ip = s.host_ip.or(default);
            s
        })
        .collect()
}

/// Whether two host addresses of published ports overlap: same family, and equal or either
/// is the "every address" wildcard.
pub fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a == b || a.is_unspecified() || b.is_unspecified())
}

#[cfg(test)]
// Tests compute expected values directly; an overflow there panics the test (debug build).
#[allow(clippy::arithmetic_side_effects)]
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
        // Host port 0: a free one, as Docker's `-p 0:80`.
        assert_eq!(ok("0:80").host_ports, None);
        let p = ok("127.0.0.1:0:80");
        assert_eq!(
            (p.host_ip, p.host_ports),
            (Some("127.0.0.1".parse().unwrap()), None)
        );
    }

    #[test]
    fn bad_specs_name_the_problem() {
        assert!(matches!(parse("80:0"), Err(PortError::OutOfRange { .. })));
        assert!(matches!(
            parse("0-1:80-81"),
            Err(PortError::OutOfRange { .. })
        ));
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
        let m = expand(&p, "0.0.0.0".parse().unwrap(), 9000).unwrap();
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

    #[test]
    fn ranges_ending_at_65535_do_not_wrap() {
        // The host port alone at the top: one mapping, 65535.
        let p = ok("65535:80");
        assert_eq!(p.len(), 1);
        let m = expand(&p, "0.0.0.0".parse().unwrap(), 65535).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].host_port, m[0].container_port), (65535, 80));

        // 536 ports up to 65535 (`first + len` is 65536, which wrapped to 0).
        let p = ok("65000-65535:65000-65535");
        assert_eq!(p.len(), 536);
        let m = expand(&p, "0.0.0.0".parse().unwrap(), 65000).unwrap();
        assert_eq!(m.len(), 536);
        assert_eq!(m.last().map(|m| m.host_port), Some(65535));

        // The full range.
        let p = ok("1-65535:1-65535");
        assert_eq!(p.len(), 65535);
        assert_eq!(
            expand(&p, "0.0.0.0".parse().unwrap(), 1).unwrap().len(),
            65535
        );

        // A block that would run past the end is an error, not a wrap.
        let p = ok("80-81");
        let err = expand(&p, "0.0.0.0".parse().unwrap(), 65535).unwrap_err();
        assert_eq!(
            err,
            PortError::PastEnd {
                text: "80-81".into(),
                first: 65535,
                len: 2
            }
        );
        assert!(err.to_string().contains("past 65535"), "{err}");
        let e = parse("65535-65535:1-2").unwrap_err();
        assert!(
            matches!(
                e,
                PortError::UnequalRanges {
                    host: 1,
                    container: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            parse("65536:80"),
            Err(PortError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("4294967296:80"),
            Err(PortError::Syntax { .. })
        ));
    }

    #[test]
    fn blocks_at_the_edges() {
        assert_eq!(block(65535, 1), Some(65535..=65535));
        assert_eq!(block(65000, 536), Some(65000..=65535));
        assert_eq!(block(65000, 537), None);
        assert_eq!(block(1, 65535), Some(1..=65535));
        assert_eq!(block(1, 0), None);
        assert_eq!(block(0, u32::MAX), None);
    }

    #[test]
    fn block_starts_at_the_edges() {
        let all: Vec<u16> = block_starts(65530, 65535, 2, 0).collect();
        assert_eq!(all, [65530, 65531, 65532, 65533, 65534]);
        let rotated: Vec<u16> = block_starts(65530, 65535, 2, 7).collect();
        assert_eq!(rotated, [65532, 65533, 65534, 65530, 65531]);
        assert_eq!(
            block_starts(65535, 65535, 1, 3).collect::<Vec<_>>(),
            [65535]
        );
        assert_eq!(block_starts(0, 65535, 65536, 0).collect::<Vec<_>>(), [0]);
        assert_eq!(block_starts(65535, 65535, 2, 0).count(), 0);
        assert_eq!(block_starts(10, 9, 1, 0).count(), 0, "reversed range");
        assert_eq!(block_starts(1, 10, 0, 0).count(), 0, "empty block");
        assert_eq!(block_starts(0, 65535, 1, u32::MAX).count(), 65536);
    }

    #[test]
    fn conflicts_need_protocol_port_and_address() {
        let m = |ip: &str, port: u16, protocol| PortMapping {
            host_ip: ip.parse().unwrap(),
            host_port: port,
            container_port: 80,
            protocol,
        };
        assert!(conflicts(
            &m("0.0.0.0", 65535, Protocol::Tcp),
            &m("10.0.0.1", 65535, Protocol::Tcp)
        ));
        assert!(!conflicts(
            &m("0.0.0.0", 65535, Protocol::Tcp),
            &m("0.0.0.0", 65535, Protocol::Udp)
        ));
        assert!(!conflicts(
            &m("0.0.0.0", 65535, Protocol::Tcp),
            &m("::", 65535, Protocol::Tcp)
        ));
        assert!(!conflicts(
            &m("10.0.0.2", 65535, Protocol::Tcp),
            &m("10.0.0.1", 65535, Protocol::Tcp)
        ));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn any_ip() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                (0u8..4).prop_map(|b| IpAddr::V4(Ipv4Addr::new(10, 0, 0, b))),
                (0u16..4).prop_map(|b| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, b))),
            ]
        }

        /// A range `(first, last)` with `first <= last`, biased towards the top end.
        fn any_range() -> impl Strategy<Value = (u16, u16)> {
            prop_oneof![
                (1u16..=65535, 1u16..=65535),
                (65000u16..=65535, 65000u16..=65535),
            ]
            .prop_map(|(a, b)| (a.min(b), a.max(b)))
        }

        /// A range of at most 200 ports, anywhere up to 65535.
        fn small_range() -> impl Strategy<Value = (u16, u16)> {
            // Half of them near the top, so that two ranges often meet there.
            (prop_oneof![1u16..=65535, 65300u16..=65535], 0u16..200)
                .prop_map(|(a, l)| (a, a.saturating_add(l)))
        }

        proptest! {
            #[test]
            fn parse_never_panics(text in "\\PC{0,40}") {
                let _ = parse(&text);
            }

            #[test]
            fn port_like_text_never_panics(text in "[0-9:\\-/a-z\\[\\].]{0,30}") {
                let _ = parse(&text);
            }

            #[test]
            fn ranges_parse_and_expand_without_wrapping((a, b) in any_range(), (c, _) in any_range()) {
                // Host range a..=b, sandbox range of the same length from c, if it fits.
                let len = u32::from(b) - u32::from(a) + 1;
                let d = u32::from(c) + len - 1;
                prop_assume!(d <= 65535);
                let text = format!("{a}-{b}:{c}-{d}/udp");
                let spec = parse(&text).unwrap();
                prop_assert_eq!(spec.host_ports, Some((a, b)));
                prop_assert_eq!(spec.len(), len);
                let m = expand(&spec, IpAddr::V4(Ipv4Addr::UNSPECIFIED), a).unwrap();
                prop_assert_eq!(m.len(), usize::try_from(len).unwrap());
                for (i, mapping) in (0u32..).zip(&m) {
                    prop_assert_eq!(u32::from(mapping.host_port), u32::from(a) + i);
                    prop_assert_eq!(u32::from(mapping.container_port), u32::from(c) + i);
                    prop_assert_eq!(mapping.protocol, Protocol::Udp);
                }
                prop_assert_eq!(m.last().map(|m| m.host_port), Some(b));
            }

            #[test]
            fn unequal_ranges_are_refused((a, b) in any_range(), (c, d) in any_range()) {
                let text = format!("{a}-{b}:{c}-{d}");
                let equal = b - a == d - c;
                prop_assert_eq!(parse(&text).is_ok(), equal);
            }

            #[test]
            fn expansion_past_the_end_is_refused(start in 60000u16..=65535, (c, d) in any_range()) {
                let spec = parse(&format!("{c}-{d}")).unwrap();
                let fits = u32::from(start) + spec.len() - 1 <= 65535;
                let got = expand(&spec, IpAddr::V4(Ipv4Addr::UNSPECIFIED), start);
                prop_assert_eq!(got.is_ok(), fits);
            }

            #[test]
            fn block_starts_stay_inside(lo in 60000u16..=65535, hi in 60000u16..=65535, len in 0u32..2000, offset: u32) {
                let starts: Vec<u16> = block_starts(lo, hi, len, offset).collect();
                let room = (u32::from(hi) + 1).saturating_sub(u32::from(lo));
                let expected = if len == 0 || len > room { 0 } else { room - len + 1 };
                prop_assert_eq!(starts.len(), usize::try_from(expected).unwrap());
                let distinct: std::collections::BTreeSet<u16> = starts.iter().copied().collect();
                prop_assert_eq!(distinct.len(), starts.len());
                for s in starts {
                    let r = block(s, len).unwrap();
                    prop_assert!(*r.start() >= lo && *r.end() <= hi);
                }
            }

            #[test]
            fn overlap_is_symmetric_and_follows_the_wildcard(a in any_ip(), b in any_ip()) {
                prop_assert_eq!(overlaps(a, b), overlaps(b, a));
                prop_assert!(overlaps(a, a));
                if a.is_ipv4() != b.is_ipv4() {
                    prop_assert!(!overlaps(a, b));
                } else if a.is_unspecified() || b.is_unspecified() {
                    prop_assert!(overlaps(a, b));
                }
            }

            #[test]
            fn ranges_conflict_iff_they_share_a_port(
                (a, b) in small_range(), (c, d) in small_range(), ip1 in any_ip(), ip2 in any_ip()
            ) {
                let one = expand(&parse(&format!("{a}-{b}")).unwrap(), ip1, a).unwrap();
                let two = expand(&parse(&format!("{c}-{d}")).unwrap(), ip2, c).unwrap();
                let any = one.iter().any(|x| two.iter().any(|y| conflicts(x, y)));
                let share = a <= d && c <= b;
                prop_assert_eq!(any, share && overlaps(ip1, ip2));
            }
        }
    }
}

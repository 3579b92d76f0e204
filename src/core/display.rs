//! What `ps` shows as Docker shows it: durations (`3 minutes`), the STATUS column (`Up 5
//! minutes`, `Exited (7) 3 minutes ago`, `Created`) and the PORTS column
//! (`0.0.0.0:8080->80/tcp`, consecutive ports folded into ranges).

use std::net::IpAddr;

use crate::core::model::{Sandbox, Status};
use crate::core::ports::PortMapping;

/// A duration in words, rounded as Docker's `units.HumanDuration` does.
pub fn human_duration(secs: u64) -> String {
    const MIN: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    let minutes = secs / MIN;
    // Hours are rounded to the nearest (`math.Round` in Docker), the other units truncated.
    let hours = (secs.saturating_add(HOUR / 2)) / HOUR;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        _ if secs < MIN => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / DAY / 365),
    }
}

/// `3 minutes ago` for a moment `then` seen at `now` (seconds since the epoch; a clock that
/// went backwards counts as now).
pub fn ago(then: u64, now: u64) -> String {
    format!("{} ago", human_duration(now.saturating_sub(then)))
}

/// The STATUS column of `ps`.
pub fn sandbox_status(sb: &Sandbox, now: u64) -> String {
    match sb.status {
        Status::Running => match sb.started {
            Some(t) => format!("Up {}", human_duration(now.saturating_sub(t))),
            None => "Up".into(),
        },
        // Docker's words: the last exit code, and how long ago the command exited.
        Status::Exited | Status::Restarting => {
            let word = if sb.status == Status::Exited {
                "Exited"
            } else {
                "Restarting"
            };
            let code = sb.exit_code.map(|c| format!(" ({c})")).unwrap_or_default();
            match sb.finished {
                Some(t) => format!("{word}{code} {}", ago(t, now)),
                None => format!("{word}{code}"),
            }
        }
        Status::Created => "Created".into(),
        Status::Creating => "Creating".into(),
        Status::Removing => "Removal In Progress".into(),
    }
}

fn host(ip: IpAddr) -> String {
    match ip {
        // Docker writes the IPv6 wildcard as `:::8080`, other IPv6 addresses bracketed.
        IpAddr::V6(a) if a.is_unspecified() => "::".into(),
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    }
}

fn range(first: u16, last: u16) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// The PORTS column: `0.0.0.0:8080->80/tcp, :::8080->80/tcp`, runs of consecutive ports on
/// the same address and protocol folded into `8000-8002->8000-8002/tcp`.
pub fn ports_column(ports: &[PortMapping]) -> String {
    let mut sorted = ports.to_vec();
    sorted.sort_by_key(|m| (m.host_ip.is_ipv6(), m.host_ip, m.protocol, m.container_port));
    // (mapping of the run's first port, its last host port, its last container port)
    let mut runs: Vec<(PortMapping, u16, u16)> = Vec::new();
    for m in sorted {
        if let Some((first, last_host, last_cont)) = runs.last_mut() {
            let next = |p: u16| p.checked_add(1);
            if first.host_ip == m.host_ip
                && first.protocol == m.protocol
                && next(*last_host) == Some(m.host_port)
                && next(*last_cont) == Some(m.container_port)
            {
                *last_host = m.host_port;
                *last_cont = m.container_port;
                continue;
            }
        }
        runs.push((m.clone(), m.host_port, m.container_port));
    }
    runs.iter()
        .map(|(m, last_host, last_cont)| {
            format!(
                "{}:{}->{}/{}",
                host(m.host_ip),
                range(m.host_port, *last_host),
                range(m.container_port, *last_cont),
                m.protocol.name()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `s` cut to `max` characters, the last replaced by `…` when cut (Docker's `Ellipsis`).
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Seconds since the epoch as an RFC 3339 UTC time, `2026-12-03T00:55:12Z`.
pub fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm, on unsigned values (the epoch is after 0000).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ports::Protocol;

    #[test]
    fn durations_read_as_dockers() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(119), "About a minute");
        assert_eq!(human_duration(180), "3 minutes");
        assert_eq!(human_duration(3599), "59 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5400), "2 hours");
        assert_eq!(human_duration(47 * 3600), "47 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
        assert_eq!(
            human_duration(u64::MAX),
            format!("{} years", u64::MAX / 86400 / 365)
        );
        assert_eq!(ago(100, 40), "Less than a second ago");
    }

    #[test]
    fn times_and_cuts() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_258_112), "2026-12-03T00:35:12Z");
        assert_eq!(ellipsis("sleep 600", 20), "sleep 600");
        assert_eq!(
            ellipsis("abcdefghijklmnopqrstuvwxyz", 20),
            "abcdefghijklmnopqrs…"
        );
        assert_eq!(ellipsis("ééé", 2), "é…");
    }

    fn m(ip: &str, h: u16, c: u16, p: Protocol) -> PortMapping {
        PortMapping {
            host_ip: ip.parse().unwrap(),
            host_port: h,
            container_port: c,
            protocol: p,
        }
    }

    #[test]
    fn ports_fold_runs_as_docker() {
        let ports = vec![
            m("::", 8080, 80, Protocol::Tcp),
            m("0.0.0.0", 8080, 80, Protocol::Tcp),
            m("127.0.0.1", 5353, 53, Protocol::Udp),
            m("0.0.0.0", 9001, 9001, Protocol::Tcp),
            m("0.0.0.0", 9000, 9000, Protocol::Tcp),
            m("0.0.0.0", 65535, 65535, Protocol::Tcp),
        ];
        assert_eq!(
            ports_column(&ports),
            "0.0.0.0:8080->80/tcp, 0.0.0.0:9000-9001->9000-9001/tcp, \
             0.0.0.0:65535->65535/tcp, 127.0.0.1:5353->53/udp, :::8080->80/tcp"
        );
        assert_eq!(ports_column(&[]), "");
    }
}

//! What a sandbox's command runs with, as Docker users write it: the restart policy
//! (`--restart`), the environment (`-e`, `--env-file`), the working directory (`-w`), the user (`-u`), extra `/etc/hosts`
//! entries (`--add-host`), DNS settings (`--dns*`) and a fixed MAC (`--mac-address`). Parsing
//! and the decisions built on them; reading files and the caller's environment is the
//! callers' business.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::resolv::Nameserver;

/// A setting the user gave that weft cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RunError {
    /// `--restart` is not one of Docker's policies.
    #[error("invalid --restart {0:?}: use no, on-failure[:MAX-RETRIES], always or unless-stopped")]
    Restart(String),
    /// `-e` without a name.
    #[error("invalid -e {0:?}: expected NAME=VALUE or NAME (taken from weft's environment)")]
    Env(String),
    /// A line of an `--env-file` that is not `NAME=VALUE`, `NAME`, a comment or empty.
    #[error(
        "invalid --env-file {file}, line {line}: {text:?}: expected NAME=VALUE, NAME or # comment"
    )]
    EnvFile {
        /// The file as given.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// `--add-host` that is not `NAME:IP`.
    #[error(
        "invalid --add-host {0:?}: expected NAME:IP (IP may be host-gateway), e.g. db:10.0.0.5"
    )]
    AddHost(String),
    /// `--dns` that is not an address.
    #[error("invalid --dns {0:?}: expected an IP address like 1.1.1.1")]
    Dns(String),
    /// `--dns-search` or `--dns-option` with whitespace, or empty.
    #[error("invalid {flag} {value:?}: one word, no spaces")]
    DnsWord {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
    },
    /// `--mac-address` that is not a unicast MAC.
    #[error("invalid --mac-address {0:?}: expected a unicast MAC like 02:42:ac:11:00:02 (first byte even, not all zeroes)")]
    Mac(String),
    /// `-u` that is malformed.
    #[error("invalid --user {0:?}: expected USER[:GROUP] (names or numeric ids)")]
    UserSyntax(String),
    /// `-u NAME` that is not in the passwd file.
    #[error("unable to find user {0}: no matching entries in /etc/passwd")]
    NoSuchUser(String),
    /// `-u USER:NAME` whose group is not in the group file.
    #[error("unable to find group {0}: no matching entries in /etc/group")]
    NoSuchGroup(String),
    /// `-w` that is not absolute.
    #[error("invalid --workdir {0:?}: the working directory must be an absolute path")]
    Workdir(String),
}

/// When the sandbox's monitor starts the command again after it exited (`--restart`).
/// A `weft stop` is never undone: a stopped command stays stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// When it exits with a code other than 0, at most `max` times (`None`: no limit).
    OnFailure(Option<u32>),
    /// Whatever its exit code.
    Always,
    /// As `Always` (weft has no daemon restart to tell them apart).
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = RunError;

    fn from_str(s: &str) -> Result<Self, RunError> {
        let bad = || RunError::Restart(s.to_string());
        Ok(match s.split_once(':') {
            None => match s {
                "no" | "" => Self::No,
                "on-failure" => Self::OnFailure(None),
                "always" => Self::Always,
                "unless-stopped" => Self::UnlessStopped,
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => {
                let n: u32 = n.parse().map_err(|_| bad())?;
                // Docker: 0 retries means no limit.
                Self::OnFailure((n > 0).then_some(n))
            }
            Some(_) => return Err(bad()),
        })
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::No => write!(f, "no"),
            Self::OnFailure(None) => write!(f, "on-failure"),
            Self::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            Self::Always => write!(f, "always"),
            Self::UnlessStopped => write!(f, "unless-stopped"),
        }
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = RunError;
    fn try_from(s: String) -> Result<Self, RunError> {
        s.parse()
    }
}

impl From<RestartPolicy> for String {
    fn from(p: RestartPolicy) -> String {
        p.to_string()
    }
}

impl RestartPolicy {
    /// Whether a command that exited with `code`, already restarted `restarts` times, is
    /// started again.
    pub fn restarts(self, code: i32, restarts: u32) -> bool {
        match self {
            Self::No => false,
            Self::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
            Self::Always | Self::UnlessStopped => true,
        }
    }
}

/// The wait before the next restart, as Docker's: 100 ms, doubled after each restart up to
/// one minute, and back to 100 ms once the command had run for 10 s.
pub fn restart_delay(previous: Option<Duration>, ran_for: Duration) -> Duration {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(60);
    match previous {
        Some(p) if ran_for < Duration::from_secs(10) => (p * 2).min(MAX),
        _ => FIRST,
    }
}

/// Checks an environment variable name: anything but empty, no `=` and no NUL.
fn env_name_ok(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && !name.contains('\0')
}

/// One `-e` item: `NAME=VALUE`, or `NAME` whose value `lookup` gives (left out when it
/// gives none, as with Docker). Returns `NAME=VALUE`.
pub fn env_item(
    item: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, RunError> {
    match item.split_once('=') {
        Some((name, _)) if env_name_ok(name) && !item.contains('\0') => Ok(Some(item.to_string())),
        Some(_) => Err(RunError::Env(item.to_string())),
        None if env_name_ok(item) => Ok(lookup(item).map(|v| format!("{item}={v}"))),
        None => Err(RunError::Env(item.to_string())),
    }
}

/// The items of an `--env-file`: one `NAME=VALUE` or `NAME` per line; empty lines and lines
/// starting with `#` are skipped; nothing is unquoted (as with Docker).
pub fn env_file(
    file: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, RunError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let bad = || RunError::EnvFile {
            file: file.to_string(),
            line: i + 1,
            text: line.to_string(),
        };
        let item = if trimmed.contains('=') {
            trimmed
        } else {
            trimmed.trim_end()
        };
        out.extend(env_item(item, lookup).map_err(|_| bad())?);
    }
    Ok(out)
}

/// The environment list with later settings of a name replacing earlier ones (in the place
/// of the first).
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in base.iter().chain(over) {
        let name = item.split_once('=').map_or(item.as_str(), |(n, _)| n);
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == name)
        {
            Some(slot) => *slot = item.clone(),
            None => out.push(item.clone()),
        }
    }
    out
}

/// An `--add-host` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    /// The name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
}

/// What an `--add-host` names: an address, or the host itself (`host-gateway`: the gateway
/// of the sandbox's first network, the host's address there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// This address.
    Ip(IpAddr),
    /// The host.
    HostGateway,
}

/// Parses `NAME:IP` (or Docker's newer `NAME=IP`); IPv6 addresses may follow the first `:`
/// as they are, or in brackets.
pub fn add_host(s: &str) -> Result<(String, HostTarget), RunError> {
    let bad = || RunError::AddHost(s.to_string());
    let (name, ip) = match (s.find('='), s.find(':')) {
        (Some(e), Some(c)) if e < c => s.split_at(e),
        (Some(e), None) => s.split_at(e),
        (_, Some(c)) => s.split_at(c),
        (None, None) => return Err(bad()),
    };
    let ip = &ip[1..];
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !name_ok {
        return Err(bad());
    }
    let target = if ip == "host-gateway" {
        HostTarget::HostGateway
    } else {
        let ip = ip
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .unwrap_or(ip);
        HostTarget::Ip(ip.parse().map_err(|_| bad())?)
    };
    Ok((name.to_string(), target))
}

/// `--dns`, `--dns-search` and `--dns-option`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSettings {
    /// Name servers, replacing the host's.
    #[serde(default)]
    pub servers: Vec<IpAddr>,
    /// Search domains, replacing the host's.
    #[serde(default)]
    pub search: Vec<String>,
    /// Resolver options, replacing the host's.
    #[serde(default)]
    pub options: Vec<String>,
}

impl DnsSettings {
    /// Parses the three flags' values.
    pub fn parse(
        servers: &[String],
        search: &[String],
        options: &[String],
    ) -> Result<Self, RunError> {
        let word = |flag: &'static str, v: &String| {
            if v.is_empty() || v.chars().any(char::is_whitespace) {
                Err(RunError::DnsWord {
                    flag,
                    value: v.clone(),
                })
            } else {
                Ok(v.clone())
            }
        };
        Ok(Self {
            servers: servers
                .iter()
                .map(|s| s.parse().map_err(|_| RunError::Dns(s.clone())))
                .collect::<Result<_, _>>()?,
            search: search
                .iter()
                .map(|v| word("--dns-search", v))
                .collect::<Result<_, _>>()?,
            options: options
                .iter()
                .map(|v| word("--dns-option", v))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether nothing was given.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }

    /// The sandbox's `resolv.conf`: the host's (`host`, loopback name servers left out, as
    /// Docker does: they mean nothing inside the sandbox), with each kind of line given
    /// here replacing the host's lines of that kind. With `ns` naming a gateway, that is the
    /// only name server (the agent forwards to the `--dns` servers); with
    /// [`Nameserver::Nothing`] there is none.
    pub fn resolv_conf(&self, host: &str, ns: Nameserver) -> String {
        let mut out = String::new();
        for l in host.lines() {
            let mut w = l.split_whitespace();
            let first = w.next();
            let drop = match first {
                Some("nameserver") => {
                    ns != Nameserver::Host
                        || !self.servers.is_empty()
                        || w.next()
                            .and_then(|a| a.parse::<IpAddr>().ok())
                            .is_some_and(|a| a.is_loopback())
                }
                Some("search") | Some("domain") => !self.search.is_empty(),
                Some("options") => !self.options.is_empty(),
                _ => false,
            };
            if !drop {
                out.push_str(l);
                out.push('\n');
            }
        }
        match ns {
            Nameserver::Host => {
                for s in &self.servers {
                    out.push_str(&format!("nameserver {s}\n"));
                }
            }
            Nameserver::Gateway(g) => out.push_str(&format!("nameserver {g}\n")),
            Nameserver::Nothing => {}
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// Parses a `--mac-address`: six hex bytes separated by `:` or `-`, unicast, not zero.
pub fn mac_address(s: &str) -> Result<[u8; 6], RunError> {
    let bad = || RunError::Mac(s.to_string());
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in out.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || out[0] & 1 == 1 || out == [0; 6] {
        return Err(bad());
    }
    Ok(out)
}

/// What a sandbox's command runs with besides its network, as recorded with the sandbox so
/// that `weft start` and restarts run it the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    /// `NAME=VALUE` items added to weft's environment (`-e`, `--env-file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `-w`: the command's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]` as given, resolved each time the command starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `--add-host` entries, written into the sandbox's `/etc/hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<ExtraHost>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    #[serde(default, skip_serializing_if = "DnsSettings::is_empty")]
    pub dns: DnsSettings,
}

/// Checks a `-w` directory: absolute, as Docker requires.
pub fn workdir(s: &str) -> Result<(), RunError> {
    if s.starts_with('/') && !s.contains('\0') {
        Ok(())
    } else {
        Err(RunError::Workdir(s.to_string()))
    }
}

/// The identity a command runs as (`-u`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Home directory (for `HOME`), when the user is in the passwd file.
    pub home: Option<String>,
}

impl Credentials {
    /// `UID:GID:G1,G2,...`, as `weft __init --user` takes it.
    pub fn to_arg(&self) -> String {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        format!("{}:{}:{}", self.uid, self.gid, groups.join(","))
    }

    /// Parses [`Credentials::to_arg`]'s form (no home).
    pub fn from_arg(s: &str) -> Option<Self> {
        let mut it = s.splitn(3, ':');
        let uid = it.next()?.parse().ok()?;
        let gid = it.next()?.parse().ok()?;
        let groups = match it.next()? {
            "" => vec![],
            g => g
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u32>>>()?,
        };
        Some(Self {
            uid,
            gid,
            groups,
            home: None,
        })
    }
}

/// Resolves `USER[:GROUP]` (names or numeric ids) against the texts of `/etc/passwd` and
/// `/etc/group`, as Docker does: a numeric user not in the passwd file runs with group 0
/// (or the one given) and no supplementary groups; a user found there gets its primary group
/// and every group that lists it.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<Credentials, RunError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty()
        || grp.is_some_and(|g| g.is_empty() || g.contains(':'))
        || spec.chars().any(|c| c.is_whitespace() || c == '\0')
    {
        return Err(RunError::UserSyntax(spec.to_string()));
    }
    // name:password:uid:gid:gecos:home:shell
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let uid: u32 = f[2].parse().ok()?;
        let gid: u32 = f[3].parse().ok()?;
        let hit = f[0] == user || user.parse::<u32>().ok() == Some(uid);
        hit.then(|| (f[0].to_string(), uid, gid, f[5].to_string()))
    });
    let (name, uid, mut gid, home) = match (entry, user.parse::<u32>()) {
        (Some((n, u, g, h)), _) => (Some(n), u, g, Some(h)),
        (None, Ok(u)) => (None, u, 0, None),
        (None, Err(_)) => return Err(RunError::NoSuchUser(user.to_string())),
    };
    // name:password:gid:members
    let groups_of = |pred: &dyn Fn(&[&str]) -> bool| -> Vec<(String, u32)> {
        group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                if f.len() < 4 || !pred(&f) {
                    return None;
                }
                Some((f[0].to_string(), f[2].parse().ok()?))
            })
            .collect()
    };
    if let Some(g) = grp {
        gid = match groups_of(&|f| f[0] == g).first() {
            Some((_, id)) => *id,
            None => g
                .parse()
                .map_err(|_| RunError::NoSuchGroup(g.to_string()))?,
        };
    }
    let mut groups = vec![];
    if let Some(n) = &name {
        for (_, id) in groups_of(&|f| f[3].split(',').any(|m| m == n)) {
            if id != gid && !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    Ok(Credentials {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_print_and_decide() {
        for s in [
            "no",
            "on-failure",
            "on-failure:3",
            "always",
            "unless-stopped",
        ] {
            assert_eq!(s.parse::<RestartPolicy>().unwrap().to_string(), s);
        }
        assert_eq!(
            "on-failure:0".parse::<RestartPolicy>(),
            Ok(RestartPolicy::OnFailure(None))
        );
        for s in ["sometimes", "always:3", "on-failure:x", "on-failure:-1"] {
            assert_eq!(s.parse::<RestartPolicy>(), Err(RunError::Restart(s.into())));
        }
        let p = RestartPolicy::OnFailure(Some(2));
        assert!(p.restarts(1, 0) && p.restarts(1, 1) && !p.restarts(1, 2));
        assert!(!p.restarts(0, 0));
        assert!(RestartPolicy::Always.restarts(0, 100));
        assert!(!RestartPolicy::No.restarts(1, 0));
    }

    #[test]
    fn restart_delay_doubles_up_to_a_minute_and_resets_after_ten_seconds() {
        let short = Duration::from_secs(1);
        let d1 = restart_delay(None, short);
        assert_eq!(d1, Duration::from_millis(100));
        assert_eq!(restart_delay(Some(d1), short), Duration::from_millis(200));
        assert_eq!(
            restart_delay(Some(Duration::from_secs(50)), short),
            Duration::from_secs(60)
        );
        assert_eq!(
            restart_delay(Some(Duration::from_secs(50)), Duration::from_secs(10)),
            d1
        );
    }

    #[test]
    fn env_items_and_files() {
        let look = |n: &str| (n == "HOME").then(|| "/root".to_string());
        assert_eq!(env_item("A=1", &look), Ok(Some("A=1".into())));
        assert_eq!(env_item("A=", &look), Ok(Some("A=".into())));
        assert_eq!(env_item("HOME", &look), Ok(Some("HOME=/root".into())));
        assert_eq!(env_item("UNSET", &look), Ok(None));
        assert_eq!(env_item("=1", &look), Err(RunError::Env("=1".into())));
        let text = "# comment\n\nA=1 2\n  HOME\nUNSET\nB=x=y\n";
        assert_eq!(
            env_file("f", text, &look).unwrap(),
            vec!["A=1 2", "HOME=/root", "B=x=y"]
        );
        assert!(matches!(
            env_file("f", "ok=1\n=bad\n", &look),
            Err(RunError::EnvFile { line: 2, .. })
        ));
        assert_eq!(
            merge_env(&["A=1".into(), "B=2".into()], &["A=3".into(), "C=4".into()]),
            vec!["A=3", "B=2", "C=4"]
        );
    }

    #[test]
    fn add_host_forms() {
        let ip = |s: &str| HostTarget::Ip(s.parse().unwrap());
        assert_eq!(add_host("db:10.0.0.5"), Ok(("db".into(), ip("10.0.0.5"))));
        assert_eq!(add_host("db=10.0.0.5"), Ok(("db".into(), ip("10.0.0.5"))));
        assert_eq!(add_host("v6:fd00::1"), Ok(("v6".into(), ip("fd00::1"))));
        assert_eq!(add_host("v6:[fd00::1]"), Ok(("v6".into(), ip("fd00::1"))));
        assert_eq!(
            add_host("h:host-gateway"),
            Ok(("h".into(), HostTarget::HostGateway))
        );
        for bad in ["db", "db:", ":1.2.3.4", "db:nothing", "a b:1.2.3.4"] {
            assert_eq!(add_host(bad), Err(RunError::AddHost(bad.into())), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_replaces_each_kind_given() {
        let host = "nameserver 127.0.0.53\nnameserver 9.9.9.9\nsearch corp\noptions edns0\n";
        let none = DnsSettings::default();
        assert_eq!(
            none.resolv_conf(host, Nameserver::Host),
            "nameserver 9.9.9.9\nsearch corp\noptions edns0\n"
        );
        let d = DnsSettings::parse(&["1.1.1.1".into()], &[], &["ndots:2".into()]).unwrap();
        assert_eq!(
            d.resolv_conf(host, Nameserver::Host),
            "search corp\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
        assert_eq!(
            DnsSettings::parse(&["x".into()], &[], &[]),
            Err(RunError::Dns("x".into()))
        );
        assert!(DnsSettings::parse(&[], &["a b".into()], &[]).is_err());
    }

    #[test]
    fn a_gateway_is_the_only_name_server_and_none_leaves_none() {
        let host = "nameserver 9.9.9.9\nsearch corp\noptions edns0\n";
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let gw = Nameserver::Gateway(ip("10.7.0.1"));
        assert_eq!(
            DnsSettings::default().resolv_conf(host, gw),
            "search corp\noptions edns0\nnameserver 10.7.0.1\n"
        );
        // `--dns` servers are the agent's upstreams, not the sandbox's: never written.
        let d =
            DnsSettings::parse(&["1.1.1.1".into()], &["x".into()], &["ndots:2".into()]).unwrap();
        assert_eq!(
            d.resolv_conf(host, gw),
            "nameserver 10.7.0.1\nsearch x\noptions ndots:2\n"
        );
        assert_eq!(
            d.resolv_conf(host, Nameserver::Gateway(ip("fd00:7::1"))),
            "nameserver fd00:7::1\nsearch x\noptions ndots:2\n"
        );
        assert_eq!(
            DnsSettings::default().resolv_conf(host, Nameserver::Nothing),
            "search corp\noptions edns0\n"
        );
        assert_eq!(
            d.resolv_conf(host, Nameserver::Nothing),
            "search x\noptions ndots:2\n"
        );
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(
            mac_address("02:42:ac:11:00:02"),
            Ok([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(
            mac_address("02-42-AC-11-00-02"),
            Ok([2, 0x42, 0xac, 0x11, 0, 2])
        );
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:42:ac:11:00",
            "2:42:ac:11:00:02",
        ] {
            assert!(mac_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_resolve_like_docker() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        let group = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\naudio:x:29:alice\n";
        let alice = resolve_user("alice", passwd, group).unwrap();
        assert_eq!(
            alice,
            Credentials {
                uid: 1000,
                gid: 1000,
                groups: vec![10, 29],
                home: Some("/home/alice".into())
            }
        );
        assert_eq!(resolve_user("1000", passwd, group).unwrap(), alice);
        let c = resolve_user("alice:wheel", passwd, group).unwrap();
        assert_eq!((c.uid, c.gid, c.groups), (1000, 10, vec![29]));
        let c = resolve_user("4242", passwd, group).unwrap();
        assert_eq!((c.uid, c.gid, c.groups, c.home), (4242, 0, vec![], None));
        assert_eq!(resolve_user("4242:7", passwd, group).unwrap().gid, 7);
        assert_eq!(
            resolve_user("nobody", passwd, group),
            Err(RunError::NoSuchUser("nobody".into()))
        );
        assert_eq!(
            resolve_user("alice:nogroup", passwd, group),
            Err(RunError::NoSuchGroup("nogroup".into()))
        );
        for bad in [":1", "alice:", "a:b:c", "4294967296", "al ice"] {
            assert!(resolve_user(bad, passwd, group).is_err(), "{bad}");
        }
        let arg = alice.to_arg();
        assert_eq!(arg, "1000:1000:10,29");
        let back = Credentials::from_arg(&arg).unwrap();
        assert_eq!(
            (back.uid, back.gid, back.groups),
            (1000, 1000, vec![10, 29])
        );
        assert_eq!(
            Credentials::from_arg("5:6:").unwrap().groups,
            Vec::<u32>::new()
        );
        assert!(Credentials::from_arg("5:x:").is_none());
    }
}

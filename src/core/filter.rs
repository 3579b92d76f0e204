//! `--filter KEY=VALUE` of `ps` and `network ls`, with Docker's semantics: the same key given
//! more than once matches any of its values (OR), different keys must all match (AND);
//! `name=` matches a part of the name, `id=` a prefix of the id, `label=KEY` a label's
//! presence and `label=KEY=VALUE` its value.

use thiserror::Error;

use crate::core::model::{Network, Sandbox, Status};

/// Keys `weft ps --filter` knows.
pub const SANDBOX_KEYS: &[&str] = &["exited", "id", "label", "name", "network", "status"];
/// Keys `weft network ls --filter` knows.
pub const NETWORK_KEYS: &[&str] = &["driver", "id", "label", "name"];
/// Values of `ps --filter status=`: weft's statuses, and Docker's that weft never shows
/// (`paused`, `dead`: accepted so that a Docker user's script still runs; they match nothing).
pub const STATUSES: &[&str] = &[
    "created",
    "creating",
    "dead",
    "exited",
    "paused",
    "removing",
    "restarting",
    "running",
];

/// A `--filter` argument weft cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    /// No `=` in the argument.
    #[error("bad format of filter {0:?} (expected name=value)")]
    Format(String),
    /// A key the command does not know.
    #[error("invalid filter '{key}': valid filters are {}", valid.join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
        /// The keys the command knows.
        valid: Vec<String>,
    },
    /// `KEY=` with nothing after it (or `label==V`).
    #[error("invalid filter '{0}': the value is empty")]
    Empty(String),
    /// `status=` with a value that is no status.
    #[error("invalid filter 'status={value}': valid statuses are {}", STATUSES.join(", "))]
    Status {
        /// The value given.
        value: String,
    },
    /// `exited=` with a value that is no exit code.
    #[error("invalid filter 'exited={0}': expected an exit code such as 0 or 137")]
    Exited(String),
}

/// One `KEY=VALUE` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The key (one of the command's keys).
    pub key: String,
    /// Everything after the first `=` (a label filter's value may hold `=` itself).
    pub value: String,
}

/// Parses one `--filter` argument against the keys a command knows.
pub fn parse(text: &str, valid: &[&str]) -> Result<Filter, FilterError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| FilterError::Format(text.to_string()))?;
    if !valid.contains(&key) {
        return Err(FilterError::UnknownKey {
            key: key.to_string(),
            valid: valid.iter().map(|k| k.to_string()).collect(),
        });
    }
    if value.is_empty() || (key == "label" && value.starts_with('=')) {
        return Err(FilterError::Empty(text.to_string()));
    }
    if key == "status" && !STATUSES.contains(&value) {
        return Err(FilterError::Status {
            value: value.to_string(),
        });
    }
    if key == "exited" && value.parse::<i32>().is_err() {
        return Err(FilterError::Exited(value.to_string()));
    }
    Ok(Filter {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Whether every key's filters have at least one match; `test(key, value)` checks one.
fn all_keys(filters: &[Filter], test: impl Fn(&str, &str) -> bool) -> bool {
    filters.iter().all(|f| {
        filters
            .iter()
            .filter(|g| g.key == f.key)
            .any(|g| test(&g.key, &g.value))
    })
}

fn label_matches(labels: &std::collections::BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(want),
    }
}

/// The status word `ps` shows and `status=` matches.
pub fn status_word(status: Status) -> &'static str {
    match status {
        Status::Creating => "creating",
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
        Status::Restarting => "restarting",
        Status::Removing => "removing",
    }
}

/// Whether a sandbox passes `filters` (all keys, any value of each).
pub fn sandbox_matches(filters: &[Filter], sb: &Sandbox) -> bool {
    all_keys(filters, |key, value| match key {
        "id" => sb.id.starts_with(value),
        "name" => sb.name.contains(value),
        "label" => label_matches(&sb.labels, value),
        "network" => sb
            .endpoints
            .iter()
            .any(|e| e.network == value || e.network_id.starts_with(value)),
        "status" => status_word(sb.status) == value,
        // Docker's: an exited sandbox whose command exited with that code.
        "exited" => sb.status == Status::Exited && value.parse::<i32>().ok() == sb.exit_code,
        _ => false,
    })
}

/// Whether a network passes `filters` (all keys, any value of each).
pub fn network_matches(filters: &[Filter], net: &Network) -> bool {
    all_keys(filters, |key, value| match key {
        "id" => net.id.starts_with(value),
        "name" => net.name.contains(value),
        "label" => label_matches(&net.labels, value),
        "driver" => net.driver == value,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sb(name: &str, status: Status, labels: &[(&str, &str)], nets: &[&str]) -> Sandbox {
        Sandbox {
            endpoints: nets
                .iter()
                .map(|n| crate::core::model::Endpoint {
                    network: n.to_string(),
                    network_id: format!("id{n}"),
                    interface: "eth0".into(),
                    host_interface: "x".into(),
                    ipv4: None,
                    ipv6: None,
                    mac: String::new(),
                    aliases: vec![],
                    announce: false,
                    pending: None,
                })
                .collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Sandbox::example(name, &format!("{name}00"), status)
        }
    }

    fn fs(items: &[&str]) -> Vec<Filter> {
        items
            .iter()
            .map(|t| parse(t, SANDBOX_KEYS).unwrap())
            .collect()
    }

    #[test]
    fn parse_refuses_what_docker_refuses() {
        assert_eq!(
            parse("name", SANDBOX_KEYS),
            Err(FilterError::Format("name".into()))
        );
        let e = parse("colour=red", SANDBOX_KEYS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid filter 'colour': valid filters are exited, id, label, name, network, status"
        );
        assert_eq!(
            parse("name=", SANDBOX_KEYS),
            Err(FilterError::Empty("name=".into()))
        );
        assert_eq!(
            parse("label==v", SANDBOX_KEYS),
            Err(FilterError::Empty("label==v".into()))
        );
        assert!(matches!(
            parse("status=up", SANDBOX_KEYS),
            Err(FilterError::Status { .. })
        ));
        // network ls has no status key.
        assert!(matches!(
            parse("status=running", NETWORK_KEYS),
            Err(FilterError::UnknownKey { .. })
        ));
    }

    #[test]
    fn label_value_keeps_its_equals_signs() {
        let f = parse("label=url=a=b", SANDBOX_KEYS).unwrap();
        assert_eq!(f.value, "url=a=b");
        let s = sb("a", Status::Running, &[("url", "a=b")], &[]);
        assert!(sandbox_matches(&[f], &s));
        assert!(!sandbox_matches(&fs(&["label=url=a"]), &s));
        assert!(sandbox_matches(&fs(&["label=url"]), &s));
        assert!(!sandbox_matches(&fs(&["label=other"]), &s));
    }

    #[test]
    fn same_key_is_or_different_keys_are_and() {
        let web = sb("web-1", Status::Running, &[("tier", "front")], &["n1"]);
        let db = sb("db", Status::Exited, &[], &["n2"]);
        let or = fs(&["name=web", "name=db"]);
        assert!(sandbox_matches(&or, &web) && sandbox_matches(&or, &db));
        let and = fs(&["name=web", "status=exited"]);
        assert!(!sandbox_matches(&and, &web) && !sandbox_matches(&and, &db));
        assert!(sandbox_matches(&fs(&["network=n2"]), &db));
        assert!(sandbox_matches(&fs(&["network=idn2"]), &db));
        assert!(!sandbox_matches(&fs(&["network=n"]), &db));
        assert!(sandbox_matches(&fs(&["name=eb-"]), &web));
        assert!(sandbox_matches(&fs(&["id=web"]), &web));
        assert!(!sandbox_matches(&fs(&["name=é"]), &web));
        assert!(sandbox_matches(&[], &web));
    }

    #[test]
    fn restarting_is_a_status_of_its_own() {
        let mut r = sb("r", Status::Restarting, &[], &[]);
        r.exit_code = Some(3);
        r.finished = Some(100);
        assert_eq!(
            crate::core::display::sandbox_status(&r, 105),
            "Restarting (3) 5 seconds ago"
        );
        assert!(sandbox_matches(&fs(&["status=restarting"]), &r));
        assert!(!sandbox_matches(&fs(&["status=exited"]), &r));
        assert!(!sandbox_matches(&fs(&["status=running"]), &r));
        // exited=CODE matches exited sandboxes only, as Docker's.
        assert!(!sandbox_matches(&fs(&["exited=3"]), &r));
        let mut e = sb("e", Status::Exited, &[], &[]);
        e.exit_code = Some(3);
        assert!(sandbox_matches(&fs(&["exited=3"]), &e));
        assert!(sandbox_matches(&fs(&["exited=0", "exited=3"]), &e));
        assert!(!sandbox_matches(&fs(&["exited=0"]), &e));
        assert_eq!(
            parse("exited=x", SANDBOX_KEYS),
            Err(FilterError::Exited("x".into()))
        );
    }
}

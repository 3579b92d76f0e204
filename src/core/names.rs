//! Validation of user-given names and the interface names weft derives.

use thiserror::Error;

/// A name the user gave that weft cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    /// Names follow Docker's rule.
    #[error("invalid {what} name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    Invalid {
        /// "network" or "sandbox".
        what: &'static str,
        /// The rejected name.
        name: String,
    },
    /// Linux interface names are at most 15 bytes.
    #[error("interface name {name:?} is {len} bytes long: Linux allows at most 15")]
    IfnameTooLong {
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Characters the kernel refuses in interface names.
    #[error("invalid interface name {name:?}: no '/', ':', whitespace, and not '.' or '..'")]
    IfnameInvalid {
        /// The rejected name.
        name: String,
    },
}

/// Checks a network or sandbox name against `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
        _ => false,
    };
    if ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(NameError::Invalid {
            what,
            name: name.to_string(),
        })
    }
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub fn validate_ifname(name: &str) -> Result<(), NameError> {
    if name.len() > 15 {
        return Err(NameError::IfnameTooLong {
            name: name.to_string(),
            len: name.len(),
        });
    }
    if name.is_empty()
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(NameError::IfnameInvalid {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Bridge name for a network: `wbr-` and the first 11 hex digits of its id (15 bytes).
pub fn bridge_name(network_id: &str) -> String {
    format!("wbr-{}", &network_id[..11.min(network_id.len())])
}

/// Host end of a sandbox's veth: `wv` + 10 hex digits of the sandbox id + the interface index.
/// Unique per (sandbox, interface) and recognisable as weft's by `weft gc`.
pub fn host_veth_name(sandbox_id: &str, index: usize) -> String {
    format!(
        "wv{}{:x}",
        &sandbox_id[..10.min(sandbox_id.len())],
        index % 16
    )
}

/// Interface names inside a sandbox, in connect order: `eth0`, `eth1`, ...
pub fn sandbox_ifname(index: usize) -> String {
    format!("eth{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rule() {
        assert!(validate_name("network", "web_1.a-b").is_ok());
        assert!(validate_name("network", "0abc").is_ok());
        for bad in ["", "-x", "_x", "a b", "a/b", "ä"] {
            assert!(validate_name("network", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_names_the_value() {
        let e = validate_name("sandbox", "-bad").unwrap_err();
        assert!(e.to_string().contains("\"-bad\""));
    }

    #[test]
    fn ifname_limits() {
        assert!(validate_ifname("br-0123456789a").is_ok());
        assert_eq!(
            validate_ifname("br-0123456789abc"),
            Err(NameError::IfnameTooLong {
                name: "br-0123456789abc".into(),
                len: 16
            })
        );
        assert!(validate_ifname("a:b").is_err());
    }

    #[test]
    fn derived_names_fit() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(validate_ifname(&bridge_name(id)).is_ok());
        assert!(validate_ifname(&host_veth_name(id, 3)).is_ok());
        assert_eq!(host_veth_name(id, 3), "wv01234567893");
    }
}

//! `network create --opt`: weft's own option keys and Docker's names for the same settings,
//! resolved to one value each. A setting given twice (by two spellings, or by a flag and an
//! option) must agree, or the request is refused: silently taking one would surprise.

use std::collections::BTreeMap;
use std::net::IpAddr;

use thiserror::Error;

/// Docker's option for the bridge interface's name (weft: `--bridge-name`).
pub const DOCKER_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// Docker's option for inter-container communication (weft: `icc`).
pub const DOCKER_ICC: &str = "com.docker.network.bridge.enable_icc";
/// Docker's option for masquerading (weft: `masquerade`).
pub const DOCKER_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// Docker's option for the default host address of published ports (weft: `host_ip`).
pub const DOCKER_HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
/// Docker's option for the MTU (weft: `--mtu`).
pub const DOCKER_MTU: &str = "com.docker.network.driver.mtu";
/// Docker's option for an overlay network's VXLAN identifier (weft: `--vni`); Docker takes
/// one per subnet, weft one per network.
pub const DOCKER_VXLANID: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// Every key `--opt` accepts.
pub const KEYS: &[&str] = &[
    "dns",
    "icc",
    "masquerade",
    "host_ip",
    DOCKER_BRIDGE_NAME,
    DOCKER_ICC,
    DOCKER_MASQUERADE,
    DOCKER_HOST_BINDING,
    DOCKER_MTU,
    DOCKER_VXLANID,
];

/// An `--opt` weft cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptError {
    /// No `=`, or nothing before it.
    #[error("invalid --opt {0:?}: expected KEY=VALUE")]
    Syntax(String),
    /// A key weft does not know.
    #[error("unknown --opt {key:?}: supported options are {}", KEYS.join(", "))]
    Unknown {
        /// The key.
        key: String,
    },
    /// A value that does not fit the key.
    #[error("invalid --opt {key}={value}: {expected}")]
    Value {
        /// The key as given.
        key: String,
        /// The value as given.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// One setting given two different values.
    #[error("conflicting values for {setting}: {first} and {second}; give it once")]
    Conflict {
        /// The setting (weft's name).
        setting: &'static str,
        /// The first spelling and value, e.g. `--mtu 1400`.
        first: String,
        /// The other one.
        second: String,
    },
}

/// The network settings `--opt` and the matching flags resolve to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// Driver options under weft's keys (`dns`, `icc`, `masquerade`: `true`/`false`; `host_ip`: an
    /// address), as the network record keeps them.
    pub options: BTreeMap<String, String>,
    /// MTU, from `--mtu` or Docker's option.
    pub mtu: Option<u32>,
    /// Bridge name, from `--bridge-name` or Docker's option.
    pub bridge_name: Option<String>,
    /// VXLAN network identifier, from `--vni` or Docker's option (its range is the overlay
    /// driver's to check).
    pub vni: Option<u64>,
}

/// Go's `strconv.ParseBool` spellings (what Docker accepts), as `true`/`false`.
fn boolean(v: &str) -> Option<&'static str> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some("true"),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some("false"),
        _ => None,
    }
}

/// One setting's value and where it came from, for conflict messages.
struct Slot {
    setting: &'static str,
    value: Option<(String, String)>,
}

impl Slot {
    fn new(setting: &'static str) -> Self {
        Self {
            setting,
            value: None,
        }
    }

    fn set(&mut self, spelled: String, value: String) -> Result<(), OptError> {
        match &self.value {
            Some((first, v)) if *v != value => Err(OptError::Conflict {
                setting: self.setting,
                first: first.clone(),
                second: spelled,
            }),
            Some(_) => Ok(()),
            None => {
                self.value = Some((spelled, value));
                Ok(())
            }
        }
    }

    fn get(self) -> Option<String> {
        self.value.map(|(_, v)| v)
    }
}

/// Resolves `--opt K=V` items together with `--mtu`, `--bridge-name` and `--vni`.
pub fn resolve(
    opts: &[String],
    mtu: Option<u32>,
    bridge_name: Option<&str>,
    vni: Option<u64>,
) -> Result<NetOptions, OptError> {
    let mut dns = Slot::new("dns");
    let mut icc = Slot::new("icc");
    let mut masq = Slot::new("masquerade");
    let mut host_ip = Slot::new("host_ip");
    let mut mtu_slot = Slot::new("the MTU");
    let mut bridge = Slot::new("the bridge name");
    let mut vni_slot = Slot::new("the VNI");
    if let Some(n) = vni {
        vni_slot.set(format!("--vni {n}"), n.to_string())?;
    }
    if let Some(m) = mtu {
        mtu_slot.set(format!("--mtu {m}"), m.to_string())?;
    }
    if let Some(b) = bridge_name {
        bridge.set(format!("--bridge-name {b}"), b.to_string())?;
    }
    for item in opts {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => (k, v),
            _ => return Err(OptError::Syntax(item.clone())),
        };
        let bad = |expected| OptError::Value {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let spelled = format!("--opt {item}");
        match key {
            "dns" | "icc" | DOCKER_ICC | "masquerade" | DOCKER_MASQUERADE => {
                let b = boolean(value).ok_or_else(|| bad("use true or false"))?;
                let slot = match key {
                    "dns" => &mut dns,
                    "icc" | DOCKER_ICC => &mut icc,
                    _ => &mut masq,
                };
                slot.set(spelled, b.to_string())?;
            }
            "host_ip" | DOCKER_HOST_BINDING => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| bad("expected an IP address such as 127.0.0.1"))?;
                host_ip.set(spelled, ip.to_string())?;
            }
            DOCKER_MTU => {
                let m: u32 = value
                    .parse()
                    .map_err(|_| bad("expected a number between 68 and 65535"))?;
                mtu_slot.set(spelled, m.to_string())?;
            }
            DOCKER_VXLANID => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| bad("expected one number (weft gives a network one VNI)"))?;
                vni_slot.set(spelled, n.to_string())?;
            }
            DOCKER_BRIDGE_NAME => {
                if value.is_empty() {
                    return Err(bad("expected an interface name"));
                }
                bridge.set(spelled, value.to_string())?;
            }
            _ => {
                return Err(OptError::Unknown {
                    key: key.to_string(),
                })
            }
        }
    }
    let mut options = BTreeMap::new();
    for (k, slot) in [
        ("dns", dns),
        ("icc", icc),
        ("masquerade", masq),
        ("host_ip", host_ip),
    ] {
        if let Some(v) = slot.get() {
            options.insert(k.to_string(), v);
        }
    }
    Ok(NetOptions {
        options,
        // Only digits reach the slot, and `u32` was parsed from them already.
        mtu: mtu_slot.get().and_then(|m| m.parse().ok()),
        bridge_name: bridge.get(),
        // As the MTU: only a parsed `u64` reaches the slot.
        vni: vni_slot.get().and_then(|n| n.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`resolve`] without `--vni`.
    fn resolve3(
        opts: &[String],
        mtu: Option<u32>,
        bridge_name: Option<&str>,
    ) -> Result<NetOptions, OptError> {
        resolve(opts, mtu, bridge_name, None)
    }

    #[test]
    fn dockers_vxlan_id_is_the_vni() {
        let r = resolve(&v(&[&format!("{DOCKER_VXLANID}=4097")]), None, None, None).unwrap();
        assert_eq!(r.vni, Some(4097));
        assert!(r.options.is_empty());
        let same = resolve(&v(&[&format!("{DOCKER_VXLANID}=42")]), None, None, Some(42));
        assert_eq!(same.map(|r| r.vni), Ok(Some(42)));
        assert_eq!(
            resolve(&v(&[&format!("{DOCKER_VXLANID}=42")]), None, None, Some(43))
                .unwrap_err()
                .to_string(),
            "conflicting values for the VNI: --vni 43 and --opt com.docker.network.driver.overlay.vxlanid_list=42; give it once"
        );
        assert_eq!(
            resolve(&v(&[&format!("{DOCKER_VXLANID}=42,43")]), None, None, None)
                .unwrap_err()
                .to_string(),
            "invalid --opt com.docker.network.driver.overlay.vxlanid_list=42,43: expected one number (weft gives a network one VNI)"
        );
        // Out of range is the overlay driver's to refuse, with its message.
        assert_eq!(
            resolve(
                &v(&[&format!("{DOCKER_VXLANID}=99999999999")]),
                None,
                None,
                None
            )
            .map(|r| r.vni),
            Ok(Some(99_999_999_999))
        );
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_keys_resolve_to_wefts() {
        let r = resolve3(
            &v(&[
                "com.docker.network.bridge.name=br-x",
                "com.docker.network.bridge.enable_icc=false",
                "com.docker.network.bridge.enable_ip_masquerade=0",
                "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
                "com.docker.network.driver.mtu=1400",
            ]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(r.bridge_name.as_deref(), Some("br-x"));
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.options["icc"], "false");
        assert_eq!(r.options["masquerade"], "false");
        assert_eq!(r.options["host_ip"], "127.0.0.1");
    }

    #[test]
    fn dns_is_a_boolean_option() {
        let r = resolve3(&v(&["dns=0"]), None, None).unwrap();
        assert_eq!(r.options["dns"], "false");
        assert_eq!(
            resolve3(&v(&["dns=maybe"]), None, None),
            Err(OptError::Value {
                key: "dns".into(),
                value: "maybe".into(),
                expected: "use true or false",
            })
        );
    }

    #[test]
    fn a_setting_given_twice_must_agree() {
        let e = resolve3(
            &v(&["com.docker.network.driver.mtu=1300"]),
            Some(1400),
            None,
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "conflicting values for the MTU: --mtu 1400 and --opt com.docker.network.driver.mtu=1300; give it once"
        );
        assert!(resolve3(
            &v(&["com.docker.network.driver.mtu=1400"]),
            Some(1400),
            None
        )
        .is_ok());
        assert!(matches!(
            resolve3(
                &v(&["icc=true", "com.docker.network.bridge.enable_icc=false"]),
                None,
                None
            ),
            Err(OptError::Conflict { setting: "icc", .. })
        ));
        assert!(resolve3(
            &v(&["icc=true", "com.docker.network.bridge.enable_icc=1"]),
            None,
            None
        )
        .is_ok());
        assert!(matches!(
            resolve3(&v(&["com.docker.network.bridge.name=a"]), None, Some("b")),
            Err(OptError::Conflict { .. })
        ));
    }

    #[test]
    fn bad_options_are_named() {
        assert!(matches!(
            resolve3(&v(&["icc"]), None, None),
            Err(OptError::Syntax(_))
        ));
        assert!(matches!(
            resolve3(&v(&["=1"]), None, None),
            Err(OptError::Syntax(_))
        ));
        assert!(matches!(
            resolve3(
                &v(&["com.docker.network.bridge.default_bridge=true"]),
                None,
                None
            ),
            Err(OptError::Unknown { .. })
        ));
        assert!(matches!(
            resolve3(&v(&["masquerade=yes"]), None, None),
            Err(OptError::Value { .. })
        ));
        assert!(matches!(
            resolve3(&v(&["com.docker.network.driver.mtu=-1"]), None, None),
            Err(OptError::Value { .. })
        ));
        assert!(matches!(
            resolve3(&v(&["host_ip=localhost"]), None, None),
            Err(OptError::Value { .. })
        ));
    }
}

//! Kernel parameters under `/proc/sys`.
//!
//! Network sysctls belong to the network namespace of the thread that opens the file, so the
//! caller decides the namespace by where it calls from.

use std::io;

/// Path of a sysctl: dotted keys (`net.ipv4.ip_forward`) or, for keys containing an
/// interface name that may itself hold dots, slash-separated ones (`net/ipv6/conf/br.1/x`).
fn path(key: &str) -> String {
    if key.contains('/') {
        format!("/proc/sys/{key}")
    } else {
        format!("/proc/sys/{}", key.replace('.', "/"))
    }
}

/// Writes `value` to the sysctl `key`, skipping the write when it already holds that value.
pub fn set(key: &str, value: &str) -> io::Result<()> {
    let path = path(key);
    if let Ok(cur) = std::fs::read_to_string(&path) {
        if cur.trim() == value {
            return Ok(());
        }
    }
    std::fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// Writes `value` to the sysctl `key` without reading it first (for a namespace weft has just
/// made, where the current value is known not to be weft's).
pub fn write(key: &str, value: &str) -> io::Result<()> {
    let path = path(key);
    std::fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// Reads the sysctl `key`.
pub fn get(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path(key))?.trim().to_string())
}

/// Whether `key` (dotted or slash-separated) is an IPv6 key.
pub fn is_ipv6_key(key: &str) -> bool {
    key.starts_with("net.ipv6.") || key.starts_with("net/ipv6/")
}

/// Whether the kernel has IPv6 (its sysctls exist) in the calling thread's namespace.
pub fn ipv6_present() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

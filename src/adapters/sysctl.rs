//! Kernel parameters under `/proc/sys`.
//!
//! Network sysctls belong to the network namespace of the thread that opens the file, so the
//! caller decides the namespace by where it calls from.

use std::io;

/// Writes `value` to the sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`), skipping the
/// write when it already holds that value.
pub fn set(key: &str, value: &str) -> io::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    if let Ok(cur) = std::fs::read_to_string(&path) {
        if cur.trim() == value {
            return Ok(());
        }
    }
    std::fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// Reads the sysctl `key`.
pub fn get(key: &str) -> io::Result<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

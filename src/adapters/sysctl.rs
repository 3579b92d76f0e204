//! Kernel parameters under `/proc/sys`.
//!
//! Network sysctls belong to the network namespace of the thread that opens the file, so the
//! caller decides the namespace by where it calls from.

//!
//! The files are opened through a procfs instance of weft's own (a detached mount made with
//! `fsopen`/`fsmount`, once per process) rather than through `/proc/sys`. Why: the dentry
//! cache keeps one `/proc/sys/net` entry per network namespace that ever looked at its
//! sysctls, all under the same parent with the same name, and a lookup compares them one by
//! one — with a thousand sandboxes, opening any `/proc/sys/net/...` file took ~0.5 ms instead
//! of ~20 µs, and every attach opens a dozen. A private instance holds only the entries weft
//! itself looked up in this process. Where it cannot be made, `/proc/sys` is used.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::{Arc, Mutex};

/// Path of a sysctl below `sys/`: dotted keys (`net.ipv4.ip_forward`) or, for keys containing
/// an interface name that may itself hold dots, slash-separated ones (`net/ipv6/conf/br.1/x`).
fn rel(key: &str) -> String {
    if key.contains('/') {
        format!("sys/{key}")
    } else {
        format!("sys/{}", key.replace('.', "/"))
    }
}

/// The sysctl's path as people know it, for error messages.
fn path(key: &str) -> String {
    format!("/proc/{}", rel(key))
}

/// This process's own procfs instance (see the module's documentation), made on first use
/// and again after [`release`].
static PROC: Mutex<Option<Arc<OwnedFd>>> = Mutex::new(None);

/// Makes a procfs instance of this process's own: a detached mount behind a descriptor.
fn make_private_proc() -> Option<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: fsopen takes a NUL-terminated file system name and flags; it returns a new
    // descriptor or -1.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC) };
    let fs = i32::try_from(fs).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fs` was just returned by fsopen and is owned by nobody else.
    let fs = unsafe { OwnedFd::from_raw_fd(fs) };
    // SAFETY: FSCONFIG_CMD_CREATE takes no key, value or aux argument.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: a configured file system context, flags, no mount attributes.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    let m = i32::try_from(m).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `m` was just returned by fsmount and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(m) })
}

/// The private procfs instance, made if there is none; `None` where it cannot be made.
fn private_proc() -> Option<Arc<OwnedFd>> {
    // A poisoned lock only means a panic elsewhere while holding it; the Option is intact.
    let mut g = PROC
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if g.is_none() {
        *g = make_private_proc().map(Arc::new);
    }
    g.clone()
}

/// Lets go of the private procfs instance off the calling thread, for a command that has
/// made its last sysctl access (a later one makes a new instance). Why: closing the last
/// descriptor of a detached mount dissolves it, and the kernel waits for an expedited RCU
/// grace period there (`dissolve_on_fput`). Left to the process's exit, that wait (1-3 ms
/// on this machine) comes after the command's work; on a thread of its own it overlaps the
/// rest of the work.
pub fn release() {
    let taken = PROC
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(fd) = taken {
        // The thread is never joined: the process does not wait for it before its exit,
        // which waits for it anyway if it is still in the kernel.
        let spawned = std::thread::Builder::new()
            .name("weft-release".into())
            .spawn(move || drop(fd));
        // No thread (out of resources): the descriptor was moved into the failed closure
        // and is closed here, which only costs the wait on this thread.
        drop(spawned);
    }
}

/// Opens the sysctl `key` of the calling thread's network namespace.
fn open(key: &str, write: bool) -> io::Result<File> {
    let Some(root) = private_proc() else {
        let p = path(key);
        return if write {
            std::fs::OpenOptions::new().write(true).open(&p)
        } else {
            File::open(&p)
        };
    };
    let rel = CString::new(rel(key)).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = libc::O_CLOEXEC
        | if write {
            libc::O_WRONLY
        } else {
            libc::O_RDONLY
        };
    // SAFETY: `root` is a live directory descriptor and `rel` a NUL-terminated relative path.
    let fd = unsafe { libc::openat(root.as_raw_fd(), rel.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn read_key(key: &str) -> io::Result<String> {
    let mut s = String::new();
    open(key, false)?.read_to_string(&mut s)?;
    Ok(s)
}

fn write_key(key: &str, value: &str) -> io::Result<()> {
    open(key, true)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path(key))))
}

/// Writes `value` to the sysctl `key`, skipping the write when it already holds that value.
pub fn set(key: &str, value: &str) -> io::Result<()> {
    if let Ok(cur) = read_key(key) {
        if cur.trim() == value {
            return Ok(());
        }
    }
    write_key(key, value)
}

/// Writes `value` to the sysctl `key` without reading it first (for a namespace weft has just
/// made, where the current value is known not to be weft's).
pub fn write(key: &str, value: &str) -> io::Result<()> {
    write_key(key, value)
}

/// Reads the sysctl `key`.
pub fn get(key: &str) -> io::Result<String> {
    Ok(read_key(key)?.trim().to_string())
}

/// Whether `key` (dotted or slash-separated) is an IPv6 key.
pub fn is_ipv6_key(key: &str) -> bool {
    key.starts_with("net.ipv6.") || key.starts_with("net/ipv6/")
}

/// Whether the kernel has IPv6 (its sysctls exist) in the calling thread's namespace.
pub fn ipv6_present() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weft_reads_what_proc_sys_shows() {
        // Through the private instance when it can be made (root), else through /proc/sys:
        // the same value either way.
        let direct = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        assert_eq!(get("net.ipv4.ip_forward").unwrap(), direct.trim());
        assert_eq!(get("net/ipv4/ip_forward").unwrap(), direct.trim());
    }

    #[test]
    fn a_released_instance_is_made_again_on_the_next_access() {
        let before = get("net.ipv4.ip_forward").unwrap();
        release();
        release();
        assert_eq!(get("net.ipv4.ip_forward").unwrap(), before);
    }

    #[test]
    fn a_missing_key_is_not_found() {
        let e = get("net.ipv4.no_such_key").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = write("net.ipv4.no_such_key", "1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}

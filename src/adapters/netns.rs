//! Network namespaces as files: created on short-lived threads and kept alive by a bind mount
//! under the run directory, so every weft invocation (and `weft exec`) can find them.
//!
//! `unshare` and `setns` change only the calling thread, so each switch happens on a thread
//! of its own that ends with the work; the thread that runs weft's main logic never moves.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use thiserror::Error;

use super::sysctl;

/// Failures creating, entering or removing a namespace.
#[derive(Debug, Error)]
pub enum NetnsError {
    /// A system call failed.
    #[error("network namespace {path}: {what}: {source}")]
    Sys {
        /// Namespace file.
        path: String,
        /// The step that failed.
        what: &'static str,
        /// errno.
        source: io::Error,
    },
    /// The worker thread panicked.
    #[error("network namespace {path}: worker thread failed")]
    Thread {
        /// Namespace file.
        path: String,
    },
}

fn sys<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(nix::Error) -> NetnsError + 'a {
    move |e| NetnsError::Sys {
        path: path.display().to_string(),
        what,
        source: io::Error::from(e),
    }
}

/// Makes `dir` exist and be a shared mount point (as `ip netns` does with `/run/netns`), so
/// that unmounting a namespace handle also unmounts the copies held by sandboxes' private
/// mount namespaces, which are made slaves of it.
pub fn prepare_dir(dir: &Path) -> Result<(), NetnsError> {
    std::fs::create_dir_all(dir).map_err(|e| NetnsError::Sys {
        path: dir.display().to_string(),
        what: "create directory",
        source: e,
    })?;
    // Not recursive: that would walk every handle already mounted below (O(sandboxes) per
    // command); handles mounted later under a shared mount are shared themselves.
    let shared = MsFlags::MS_SHARED;
    match mount(None::<&str>, dir, None::<&str>, shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            // Not a mount point yet: bind it onto itself first. Two weft processes racing
            // here stack two binds, which only costs a mount entry.
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(dir, "bind mount onto itself"))?;
            mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
                .map_err(sys(dir, "make shared"))
        }
        Err(e) => Err(sys(dir, "make shared")(e)),
    }
}

/// Creates a new network namespace held by a bind mount at `path`, with `lo` down and the
/// sysctls weft wants for sandbox interfaces set as defaults for devices created later.
/// Without `ipv6`, interfaces created in it have IPv6 disabled: no link-local address, no
/// router solicitations or MLD reports flooding the bridge.
pub fn create(path: &Path, ipv6: bool) -> Result<(), NetnsError> {
    create_with(path, ipv6, || ())
}

/// [`create`], then runs `inside` on the thread that is still in the new namespace and
/// returns its result: a command that goes on to configure the namespace opens its netlink
/// socket there, instead of paying for a second thread that enters it (`setns`) later.
pub fn create_with<T, F>(path: &Path, ipv6: bool, inside: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_create(path, ipv6, inside).wait()
}

/// A namespace being made on a thread of its own by [`spawn_create`].
pub struct Making<T> {
    path: PathBuf,
    thread: std::thread::JoinHandle<Result<T, NetnsError>>,
}

impl<T> Making<T> {
    /// The handle file the namespace is being made at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until the namespace is made (or failed) and returns what [`create_with`] would.
    pub fn wait(self) -> Result<T, NetnsError> {
        let path = self.path;
        self.thread.join().map_err(|_| NetnsError::Thread {
            path: path.display().to_string(),
        })?
    }
}

/// [`create_with`] without waiting: the namespace is made while the caller goes on (making
/// one costs the kernel about a millisecond, work that can overlap the caller's own). The
/// caller must [`Making::wait`], then [`delete`] it if it is not wanted after all.
pub fn spawn_create<T, F>(path: &Path, ipv6: bool, inside: F) -> Making<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let p = path.to_path_buf();
    let thread = std::thread::spawn(move || -> Result<T, NetnsError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(sys(&p, "unshare"))?;
        // Devices created in this namespace copy these defaults: no IPv6 duplicate address
        // detection, which would keep a new address unusable for a second while weft alone
        // hands addresses out (addresses are announced by weft itself once the bridge port
        // forwards, see `announce`); no routes or addresses from router advertisements and
        // no redirects — another sandbox must not be able to reroute this one (the port
        // guard drops such messages too). IPv4 accepts redirects if `all` or the interface
        // says so: both are set.
        let mut settings: Vec<(&str, &str)> = vec![
            // Also for IPv4-only sandboxes: a later `network connect` to an IPv6 network
            // turns IPv6 on for that interface.
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv4.conf.all.accept_redirects", "0"),
            ("net.ipv4.conf.default.accept_redirects", "0"),
            ("net.ipv6.conf.all.accept_ra", "0"),
            ("net.ipv6.conf.default.accept_ra", "0"),
            ("net.ipv6.conf.all.accept_redirects", "0"),
            ("net.ipv6.conf.default.accept_redirects", "0"),
        ];
        if ipv6 {
            settings.push(("net.ipv6.conf.all.accept_dad", "0"));
        } else {
            settings.push(("net.ipv6.conf.default.disable_ipv6", "1"));
        }
        for (k, v) in settings {
            // IPv6 may be disabled on the host; those keys then don't exist. Written without
            // reading them first: in a namespace made a moment ago nothing else set them, and
            // each open under /proc/sys of a fresh namespace costs a path walk.
            let _ = sysctl::write(k, v);
        }
        // A new file, never one planted there (nor a symlink's target): and the mount goes
        // onto exactly the file made here, through its descriptor, not through the path.
        let handle = super::fs::create_new(&p, 0o600).map_err(|e| NetnsError::Sys {
            path: p.display().to_string(),
            what: "create handle file",
            source: e,
        })?;
        let target = format!("/proc/self/fd/{}", handle.as_raw_fd());
        if let Err(e) = mount(
            Some("/proc/thread-self/ns/net"),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            let _ = std::fs::remove_file(&p);
            return Err(sys(&p, "bind mount")(e));
        }
        Ok(inside())
    });
    Making {
        path: path.to_path_buf(),
        thread,
    }
}

/// Unmounts and removes a namespace handle. The kernel destroys the namespace (and the veth
/// pairs with an end in it) asynchronously once nothing else holds it. Missing handles are
/// not an error: deletion must be re-runnable.
pub fn delete(path: &Path) -> Result<(), NetnsError> {
    // Not through a symlink: only weft's own handle is unmounted.
    match umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(sys(path, "unmount")(e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetnsError::Sys {
            path: path.display().to_string(),
            what: "remove handle file",
            source: e,
        }),
    }
}

/// Whether `path` is a live namespace handle (a bind mount of an nsfs inode).
pub fn is_live(path: &Path) -> bool {
    // A bind-mounted namespace reports the nsfs filesystem; a leftover plain file (its
    // namespace gone) reports the filesystem it lies on.
    match nix::sys::statfs::statfs(path) {
        // NSFS_MAGIC. `f_type` is signed on glibc and unsigned on musl: compared as i128,
        // which holds both without a cast.
        Ok(s) => i128::from(s.filesystem_type().0) == 0x6e73_6673,
        Err(_) => false,
    }
}

/// The identity of the namespace a live handle holds (see [`super::process::netns_of`]),
/// `None` if `path` is no live handle.
pub fn id(path: &Path) -> Option<super::process::NsId> {
    use std::os::unix::fs::MetadataExt as _;
    if !is_live(path) {
        return None;
    }
    let md = std::fs::metadata(path).ok()?;
    Some((md.dev(), md.ino()))
}

/// Runs `f` on a new thread that has entered the namespace at `path` and returns its result.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let p: PathBuf = path.to_path_buf();
    let file = File::open(&p).map_err(|e| NetnsError::Sys {
        path: p.display().to_string(),
        what: "open",
        source: e,
    })?;
    let res = std::thread::spawn(move || -> Result<T, NetnsError> {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(sys(&p, "setns"))?;
        Ok(f())
    })
    .join();
    res.map_err(|_| NetnsError::Thread {
        path: path.display().to_string(),
    })?
}

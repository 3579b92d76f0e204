//! Starting a command inside a sandbox, and forwarding signals to it.
//!
//! The child enters the sandbox's network namespace and then unshares a private mount and UTS
//! namespace of its own, in which it bind-mounts the sandbox's `/etc/hosts` and
//! `/etc/resolv.conf` and sets the hostname. Every process started in a sandbox (`run`, `exec`)
//! does the same, so they all see the same network, files and name. The mount namespace is a
//! slave of the host's, so when weft unmounts a namespace handle it disappears there too.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// What a process in a sandbox gets.
#[derive(Debug, Clone, Default)]
pub struct SandboxExec {
    /// Network namespace handle; `None` shares the caller's namespace (host mode).
    pub netns: Option<PathBuf>,
    /// A file to bind-mount on `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// A file to bind-mount on `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Hostname inside the sandbox's UTS namespace.
    pub hostname: Option<String>,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// weft's namespace-handle directory, unmounted in the sandbox's private mount namespace:
    /// otherwise every running sandbox would hold a copy of every other sandbox's handle.
    pub hide: Option<PathBuf>,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL byte"),
        )
    })
}

/// Builds the command; `stdio` decides where its standard streams go.
pub fn command(spec: &SandboxExec) -> io::Result<Command> {
    let Some((prog, args)) = spec.argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command given",
        ));
    };
    let mut cmd = Command::new(prog);
    cmd.args(args);
    // Everything the child needs is prepared here: after fork only system calls are safe.
    let netns = spec.netns.as_ref().map(File::open).transpose()?;
    let hosts = spec
        .hosts
        .as_ref()
        .map(|p| cstr(&p.to_string_lossy()))
        .transpose()?;
    let resolv = spec
        .resolv_conf
        .as_ref()
        .map(|p| cstr(&p.to_string_lossy()))
        .transpose()?;
    let hostname = spec.hostname.clone();
    let hide = spec
        .hide
        .as_ref()
        .map(|p| cstr(&p.to_string_lossy()))
        .transpose()?;
    let etc_hosts = cstr("/etc/hosts")?;
    let etc_resolv = cstr("/etc/resolv.conf")?;
    let root = cstr("/")?;
    // Only a sandbox process gets private mounts and hostname; entering just the network
    // namespace (the demo driving weft itself) must keep the host's mounts visible.
    let private = spec.hosts.is_some() || spec.resolv_conf.is_some() || spec.hostname.is_some();
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // on values prepared above (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(f) = &netns {
                setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            }
            if !private {
                return Ok(());
            }
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(io::Error::from)?;
            mount(
                None::<&std::ffi::CStr>,
                root.as_c_str(),
                None::<&std::ffi::CStr>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&std::ffi::CStr>,
            )
            .map_err(io::Error::from)?;
            if let Some(h) = &hide {
                // Absent or not mounted yet: nothing to hide.
                let _ = nix::mount::umount2(h.as_c_str(), nix::mount::MntFlags::MNT_DETACH);
            }
            if let Some(h) = &hosts {
                mount(
                    Some(h.as_c_str()),
                    etc_hosts.as_c_str(),
                    None::<&std::ffi::CStr>,
                    MsFlags::MS_BIND,
                    None::<&std::ffi::CStr>,
                )
                .map_err(io::Error::from)?;
            }
            if let Some(r) = &resolv {
                // /etc/resolv.conf may be a dangling symlink on the host: then the sandbox
                // simply keeps the host's view.
                let _ = mount(
                    Some(r.as_c_str()),
                    etc_resolv.as_c_str(),
                    None::<&std::ffi::CStr>,
                    MsFlags::MS_BIND,
                    None::<&std::ffi::CStr>,
                );
            }
            if let Some(name) = &hostname {
                nix::unistd::sethostname(name).map_err(io::Error::from)?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Starts the command with the caller's standard streams.
pub fn spawn_foreground(spec: &SandboxExec) -> io::Result<Child> {
    command(spec)?.spawn()
}

/// Starts the command detached from any terminal: stdin from /dev/null, output to `log`.
pub fn spawn_detached(spec: &SandboxExec, log: &File) -> io::Result<Child> {
    let mut cmd = command(spec)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    cmd.spawn()
}

static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived before there was a child to forward it to.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Stops forwarding signals (the child is gone; its pid may be reused).
pub fn stop_forwarding() {
    CHILD.store(0, Ordering::SeqCst);
    PENDING.store(0, Ordering::SeqCst);
}

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to SA_SIGINFO handlers.
    let code = unsafe { (*info).si_code };
    let pid = CHILD.load(Ordering::SeqCst);
    // A Ctrl-C on the terminal already reached the child (same process group): forward only
    // what a process sent to weft itself (si_code SI_USER / SI_QUEUE), so it is not doubled.
    if code == libc::SI_USER || code == libc::SI_QUEUE {
        if pid > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe {
                libc::kill(pid, sig);
            }
        } else {
            // The command is being started: hand the signal over once it exists.
            PENDING.store(sig, Ordering::SeqCst);
        }
    }
}

/// Forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to weft to `pid`.
pub fn forward_signals_to(pid: u32) {
    CHILD.store(pid as i32, Ordering::SeqCst);
    // The handler runs on this thread: it either saw the pid above and forwarded, or left
    // its signal here before we stored it.
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        // SAFETY: plain system call to the child we just started.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

/// Installs the forwarding handlers (before there is a child: a signal arriving while the
/// sandbox is being built is then held off instead of killing weft halfway).
pub fn install_forwarding() {
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Turns a wait status into a shell-style exit code (128 + signal for a killed process).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// The start time of a process (clock ticks since boot, field 22 of `/proc/PID/stat`):
/// with the pid, it identifies a process even after the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start with the state, field 3.
    s.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether the process `pid` that started at `start` still runs (not a zombie). Without a
/// recorded start time, only the pid is checked.
pub fn alive_since(pid: u32, start: Option<u64>) -> bool {
    alive(pid) && (start.is_none() || start_time(pid) == start)
}

/// Whether a process exists (and is not a zombie we could reap).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // The state letter follows the command name in parentheses.
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// Sends a signal to a process weft started.
pub fn signal(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: plain system call.
    let r = unsafe { libc::kill(pid as i32, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

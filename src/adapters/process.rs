//! Starting commands inside a sandbox, and forwarding signals to them.
//!
//! Every command runs under a small init ([`super::init`], `weft __init`) that is PID 1 of a
//! PID namespace of its own: when the init dies, the kernel kills everything the command left
//! behind. The init enters the sandbox's network namespace and then unshares a private mount
//! and UTS namespace of its own, in which it bind-mounts the sandbox's `/etc/hosts` and
//! `/etc/resolv.conf` and sets the hostname; the command inherits all of it. Every process
//! started in a sandbox (`run`, `exec`) does the same, so they all see the same network, files
//! and name. The mount namespace is a slave of the host's, so when weft unmounts a namespace
//! handle it disappears there too. In it, weft's state and run directories and `/run/netns`
//! are covered by empty read-only tmpfs mounts: a sandbox sees nothing of weft's own. An init
//! also mounts a `/proc` of its PID namespace (kernel settings read-only) and a read-only
//! `/sys`; then it drops to Docker's default capabilities ([`super::capabilities`]).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;

use super::init;

/// The umask weft was started with; weft itself uses 077 (see [`restrict_umask`]).
static ORIGINAL_UMASK: AtomicU32 = AtomicU32::new(0o022);

/// Makes everything weft creates private to root from here on (state, logs, run files are
/// secrets: labels, a sandbox's output) and remembers the caller's umask for the commands
/// weft starts, which must not notice.
pub fn restrict_umask() {
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    ORIGINAL_UMASK.store(old.bits(), Ordering::SeqCst);
}

/// The umask weft was started with, for the processes it starts.
pub fn original_umask() -> Mode {
    Mode::from_bits_truncate(ORIGINAL_UMASK.load(Ordering::SeqCst))
}

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
    /// `NAME=VALUE` items added to the environment the process inherits from weft.
    pub env: Vec<String>,
    /// The command's working directory (its init checks it exists).
    pub workdir: Option<String>,
    /// `USER[:GROUP]` the command runs as (its init resolves it).
    pub user: Option<String>,
    /// Mounts detached in the sandbox's private mount namespace before anything is hidden:
    /// the namespace-handle directories (weft's, `/run/netns`), of which every running
    /// sandbox would otherwise hold a copy, keeping every other namespace alive.
    pub unmount: Vec<PathBuf>,
    /// Directories covered, in the sandbox's private mount namespace, by an empty read-only
    /// tmpfs once `/etc/hosts` and `/etc/resolv.conf` are mounted: weft's state and run
    /// directories and `/run/netns`, so that no sandbox process sees weft's records, logs,
    /// other sandboxes' files, namespace handles or the agent's socket, nor plants a file
    /// there. Absent ones are skipped; any other failure keeps the command from starting.
    pub hide: Vec<PathBuf>,
    /// With a log ([`spawn_init`]): the init relays the command's output to it with each
    /// line's time in front (`weft __init --timestamps`).
    pub timestamps: bool,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL byte"),
        )
    })
}

/// Builds a command that runs `spec.argv` in the sandbox's namespaces without an init (the
/// demo uses it to run weft itself inside its namespaces).
pub fn command(spec: &SandboxExec) -> io::Result<Command> {
    let Some((prog, args)) = spec.argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command given",
        ));
    };
    build(spec, OsStr::new(prog), args, None)
}

/// The command `prog ARGS` entering the sandbox's namespaces; for an init, `init_control` is
/// the control socket it inherits.
fn build(
    spec: &SandboxExec,
    prog: &OsStr,
    args: &[String],
    init_control: Option<RawFd>,
) -> io::Result<Command> {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    for item in &spec.env {
        // Checked when the sandbox was made: `NAME=VALUE` with a non-empty name.
        if let Some((k, v)) = item.split_once('=') {
            cmd.env(k, v);
        }
    }
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
    let unmount = spec
        .unmount
        .iter()
        .map(|p| cstr(&p.to_string_lossy()))
        .collect::<io::Result<Vec<_>>>()?;
    // The deepest first: a directory inside another one is still reachable when its turn
    // comes (a run directory inside the state directory, say).
    let mut hide_paths = spec.hide.clone();
    hide_paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let hide = hide_paths
        .iter()
        .map(|p| cstr(&p.to_string_lossy()))
        .collect::<io::Result<Vec<_>>>()?;
    let proc_fs = cstr("proc")?;
    let proc_dir = cstr("/proc")?;
    let proc_read_only = PROC_READ_ONLY
        .iter()
        .map(|p| cstr(p))
        .collect::<io::Result<Vec<_>>>()?;
    let sysfs = cstr("sysfs")?;
    let sys_dir = cstr("/sys")?;
    let tmpfs = cstr("tmpfs")?;
    let tmpfs_opts = cstr("mode=0755,size=4k,nr_inodes=1")?;
    let etc_hosts = cstr("/etc/hosts")?;
    let etc_resolv = cstr("/etc/resolv.conf")?;
    let root = cstr("/")?;
    let umask = original_umask();
    let blocked = init_control.map(|_| init::waited_signals());
    // An init is PID 1 of a new PID namespace: it gets a /proc of that namespace.
    let own_proc = init_control.is_some();
    // Only a sandbox process gets private mounts and hostname; entering just the network
    // namespace (the demo driving weft itself) must keep the host's mounts visible.
    let private = spec.hosts.is_some()
        || spec.resolv_conf.is_some()
        || spec.hostname.is_some()
        || !spec.hide.is_empty()
        || !spec.unmount.is_empty();
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // on values prepared above (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::stat::umask(umask);
            if let (Some(fd), Some(set)) = (init_control, &blocked) {
                // The init must inherit its control socket, and receive every signal sent
                // before it waits for them (see `init::waited_signals`).
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                set.thread_block().map_err(io::Error::from)?;
            }
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
            let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            if own_proc {
                // Only this PID namespace's processes: none of the host's or another
                // sandbox's to read, write the memory of, or signal.
                mount(
                    Some(proc_fs.as_c_str()),
                    proc_dir.as_c_str(),
                    Some(proc_fs.as_c_str()),
                    nosuid,
                    None::<&std::ffi::CStr>,
                )
                .map_err(io::Error::from)?;
                for p in &proc_read_only {
                    match read_only_bind(p, nosuid) {
                        Ok(()) | Err(nix::Error::ENOENT) => {}
                        Err(e) => return Err(io::Error::from(e)),
                    }
                }
            }
            // Read-only, and showing this network namespace's devices.
            mount(
                Some(sysfs.as_c_str()),
                sys_dir.as_c_str(),
                Some(sysfs.as_c_str()),
                nosuid | MsFlags::MS_RDONLY,
                None::<&std::ffi::CStr>,
            )
            .map_err(io::Error::from)?;
            for m in &unmount {
                // Absent or not a mount point: nothing to detach.
                let _ = nix::mount::umount2(m.as_c_str(), nix::mount::MntFlags::MNT_DETACH);
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
            // After the bind mounts above: their sources lie in the run directory.
            for h in &hide {
                let hidden = mount(
                    Some(tmpfs.as_c_str()),
                    h.as_c_str(),
                    Some(tmpfs.as_c_str()),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some(tmpfs_opts.as_c_str()),
                );
                match hidden {
                    Ok(()) | Err(nix::Error::ENOENT) => {}
                    Err(e) => return Err(io::Error::from(e)),
                }
            }
            if let Some(name) = &hostname {
                nix::unistd::sethostname(name).map_err(io::Error::from)?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// What of a sandbox's `/proc` is read-only, as in a Docker container: kernel settings
/// (`/proc/sys`: root may write them whatever its capabilities, the host's `core_pattern`
/// and, with `--network host`, the host's network settings included), the SysRq trigger,
/// interrupt affinities, bus and filesystem settings.
const PROC_READ_ONLY: [&str; 5] = [
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
];

/// Makes `path` (a file or directory) read-only in this mount namespace: bound onto itself,
/// then remounted read-only with `flags` kept.
fn read_only_bind(path: &std::ffi::CStr, flags: MsFlags) -> nix::Result<()> {
    mount(
        Some(path),
        path,
        None::<&std::ffi::CStr>,
        MsFlags::MS_BIND,
        None::<&std::ffi::CStr>,
    )?;
    mount(
        None::<&std::ffi::CStr>,
        path,
        None::<&std::ffi::CStr>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
        None::<&std::ffi::CStr>,
    )
}

/// Why a sandbox's command did not start, with the exit code `docker run` gives for it:
/// 127 not found, 126 found but not executable, 125 anything else.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    /// The exit code.
    pub code: i32,
    /// Why, in Docker's words.
    pub message: String,
}

impl From<StartError> for io::Error {
    fn from(e: StartError) -> Self {
        io::Error::other(e)
    }
}

/// The [`StartError`] inside an error from [`PendingInit::start`], if it carries one.
pub fn start_error(e: &io::Error) -> Option<&StartError> {
    e.get_ref().and_then(|i| i.downcast_ref::<StartError>())
}

/// An init started for a sandbox command, waiting for the go-ahead: the caller records its
/// pid and start time first, then calls [`PendingInit::start`]. Dropped without starting, the
/// init exits without running anything.
pub struct PendingInit {
    child: Child,
    control: UnixStream,
    start_time: Option<u64>,
}

impl PendingInit {
    /// The init's pid (in weft's PID namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The init's start time (see [`start_time`]).
    pub fn start_time(&self) -> Option<u64> {
        self.start_time
    }

    /// Lets the init start the command. Returns the init, whose exit status is the
    /// command's, or why the command could not start (the init is reaped then).
    pub fn start(mut self) -> io::Result<Child> {
        let mut reply = String::new();
        let sent = self
            .control
            .write_all(b"g")
            .and_then(|()| self.control.read_to_string(&mut reply));
        if sent.is_ok() && reply == init::STARTED {
            return Ok(self.child);
        }
        let _ = self.child.wait();
        Err(match (sent, reply.is_empty()) {
            (Err(e), _) => StartError {
                code: 125,
                message: e.to_string(),
            },
            (Ok(_), true) => StartError {
                code: 125,
                message: "the sandbox's init exited before starting it".into(),
            },
            (Ok(_), false) => {
                // "CODE why" (see `init::run`).
                let (code, why) = reply.split_once(' ').unwrap_or(("125", &reply));
                StartError {
                    code: code.parse().unwrap_or(125),
                    message: why.to_string(),
                }
            }
        }
        .into())
    }

    /// Gives up: the init exits without starting the command; reaped here.
    pub fn abandon(self) {
        let PendingInit {
            mut child, control, ..
        } = self;
        drop(control);
        let _ = child.wait();
    }
}

/// Starts `weft __init -- ARGV...` in the sandbox's namespaces and a new PID namespace, with
/// the caller's standard streams, or, with `log`, stdin from /dev/null and output to `log`.
/// The command itself starts only with [`PendingInit::start`].
pub fn spawn_init(spec: &SandboxExec, log: Option<&File>) -> io::Result<PendingInit> {
    if spec.argv.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command given",
        ));
    }
    let (ours, theirs) = UnixStream::pair()?;
    // At 3 or above (F_DUPFD_CLOEXEC from 3): the child's standard streams are set up over
    // 0-2 before it makes this one inheritable.
    let theirs = OwnedFd::from(theirs).try_clone()?;
    let fd = theirs.as_raw_fd();
    let mut args = vec![
        "__init".to_string(),
        "--control-fd".to_string(),
        fd.to_string(),
    ];
    if let Some(dir) = &spec.workdir {
        args.push(format!("--workdir={dir}"));
    }
    if let Some(user) = &spec.user {
        args.push(format!("--user={user}"));
        if spec.env.iter().any(|e| e.starts_with("HOME=")) {
            args.push("--keep-home".into());
        }
    }
    if spec.timestamps && log.is_some() {
        args.push("--timestamps".into());
    }
    args.push("--".to_string());
    args.extend(spec.argv.iter().cloned());
    // Our own binary, even if it was replaced on disk since we started.
    let mut cmd = build(spec, OsStr::new("/proc/self/exe"), &args, Some(fd))?;
    cmd.arg0("weft");
    if let Some(log) = log {
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?);
    }
    let child = std::thread::scope(|s| {
        s.spawn(|| {
            // Only this thread's children are affected, and it ends after this one: its
            // first child becomes PID 1 of the new namespace.
            unshare(CloneFlags::CLONE_NEWPID).map_err(io::Error::from)?;
            cmd.spawn()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the spawning thread panicked")))
    })?;
    // Only the init holds its end now: its exit shows as EOF here.
    drop(cmd);
    drop(theirs);
    let start_time = start_time(child.id());
    Ok(PendingInit {
        child,
        control: ours,
        start_time,
    })
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

/// This process's name as the kernel reports it with its actions (`comm`: the executable's
/// file name cut to 15 bytes, unless the process renamed itself).
pub fn own_name() -> Option<String> {
    std::fs::read_to_string("/proc/self/comm")
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
        .filter(|s| !s.is_empty())
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

/// A namespace's identity: the device and inode of its nsfs file.
pub type NsId = (u64, u64);

/// The network namespace of process `pid` (`None` once it is gone, or a zombie).
pub fn netns_of(pid: u32) -> Option<NsId> {
    use std::os::unix::fs::MetadataExt as _;
    let md = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
    Some((md.dev(), md.ino()))
}

/// Whether process `pid` is PID 1 of a PID namespace below ours, as every sandbox init is:
/// its `NSpid` line in `/proc/PID/status` has two or more entries and the last is 1.
pub fn is_pid_ns_init(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|ids| ids.split_whitespace().collect::<Vec<_>>())
        .is_some_and(|ids| ids.len() >= 2 && ids.last() == Some(&"1"))
}

/// Sends `sig` to `pid` if it is still the process that started at `start` (any process
/// with that pid when `start` is unknown) and `belongs(pid)` holds. Returns whether it was
/// sent. Race-free: the checks and the signal go through one pidfd, which cannot come to
/// mean another process.
pub fn signal_verified(
    pid: u32,
    start: Option<u64>,
    sig: i32,
    belongs: impl Fn(u32) -> bool,
) -> io::Result<bool> {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Ok(false);
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            _ => Err(e),
        };
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: pidfd_open just returned this fd; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Read after the pidfd exists: if the pid was reused meanwhile, the pidfd names the
    // process that died and the signal below fails with ESRCH. The start time last: had the
    // pid been reused before `belongs` looked, it no longer matches.
    if !belongs(pid) || (start.is_some() && start_time(pid) != start) {
        return Ok(false);
    }
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(e),
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

/// Blocks until the process `pid` that started at `start` has exited (at once if it is
/// gone or the pid is another process's by now). No polling: it waits on a pidfd, which
/// becomes readable when the process exits, whoever its parent is.
pub fn wait_gone(pid: u32, start: Option<u64>) -> io::Result<()> {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Ok(());
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(e),
        };
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: pidfd_open just returned this fd; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Read after the pidfd exists: a pid reused before names another process, and the
    // pidfd of the one we mean cannot come to mean another.
    if start.is_some() && start_time(pid) != start {
        return Ok(());
    }
    loop {
        let mut p = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r > 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if r < 0 && e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

//! `weft __init`: the first process (PID 1) of the PID namespace every sandbox command runs
//! in, like `docker run --init`. It starts the command as its only child, passes on the
//! signals processes send it, reaps every orphan that the namespace hands it, and exits with
//! the command's exit code (128 + n when a signal n killed it). When it exits, or is killed
//! from outside, the kernel kills every process left in the namespace: nothing a sandbox
//! started — background jobs, daemons that double-forked away — outlives it.
//!
//! Before it starts the command, the init confines itself, and so every process of the
//! sandbox, to Docker's default capabilities ([`super::capabilities`]).
//!
//! The init waits for a go-ahead on its control socket before it starts the command, so
//! the weft process that started it can record its pid first: a command never runs without
//! a record through which `rm`, `stop` and `gc` find it. It reports "ok" or why the command
//! could not start on the same socket.

use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// What the init waits for: the forwarded signals and SIGCHLD. They are blocked from before
/// the init's exec on (see `process::spawn_init`): a PID 1 ignores signals it has no handler
/// for, but blocked ones wait in the queue, so none sent during start-up is lost.
pub fn waited_signals() -> SigSet {
    let mut set = SigSet::empty();
    // The signals passed on to the command: `core::signal::FORWARDED`, which `weft kill`
    // also reads (the terminal's reach the command directly: it is in the same group).
    for s in crate::core::signal::FORWARDED {
        if let Ok(s) = Signal::try_from(s) {
            set.add(s);
        }
    }
    set.add(Signal::SIGCHLD);
    set
}

/// The reply to the go-ahead when the command started.
pub const STARTED: &str = "ok\n";

/// How the init starts the command besides its argv (`weft __init` flags).
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// `--workdir`: the command's working directory.
    pub workdir: Option<String>,
    /// `--user USER[:GROUP]`: resolved against `/etc/passwd` and `/etc/group` here.
    pub user: Option<String>,
    /// `--keep-home`: HOME was set explicitly; not replaced by the user's home directory.
    pub keep_home: bool,
    /// `--timestamps`: the command's output goes through a pipe to the init, which writes
    /// it to its own stdout (a detached sandbox's log) with each line's time in front
    /// (`core::logline`).
    pub timestamps: bool,
}

/// Runs the init and returns its exit code. `control` is the fd of the control socket the
/// spawning weft passed on (`--control-fd`); without one the command starts at once.
pub fn run(control: Option<RawFd>, opts: &InitOptions, argv: &[String]) -> i32 {
    let set = waited_signals();
    // Normally inherited blocked already; again for an init started by hand.
    let _ = set.thread_block();
    let mut control = match control.map(adopt).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weft init: control fd: {e}");
            return 126;
        }
    };
    if let Some(c) = control.as_mut() {
        let mut go = [0u8; 1];
        // EOF: the weft that started us gave up (or died) before the command was recorded.
        if !matches!(c.read(&mut go), Ok(1)) {
            return 1;
        }
    }
    // Everything that needed more (namespaces, mounts, hostname) was done before our exec.
    let started = super::capabilities::confine_to_sandbox()
        .map_err(|e| (125, e.to_string()))
        .and_then(|()| start(argv, opts));
    let (child, relay) = match started {
        Ok(c) => c,
        Err((code, why)) => {
            match control.as_mut() {
                // "CODE why": the spawning weft exits with CODE, as `docker run` does.
                Some(c) => {
                    let _ = c.write_all(format!("{code} {why}").as_bytes());
                }
                None => eprintln!("weft init: cannot run {:?}: {why}", argv.first()),
            }
            return code;
        }
    };
    if let Some(mut c) = control.take() {
        // The spawning weft may be gone already; the command runs anyway, it is recorded.
        let _ = c.write_all(STARTED.as_bytes());
    }
    let Ok(raw) = i32::try_from(child.id()) else {
        return 1;
    };
    match relay {
        Some(pipe) => super::log_relay::supervise_relaying(Pid::from_raw(raw), &set, pipe),
        None => supervise(Pid::from_raw(raw), &set),
    }
}

/// Takes over the control socket fd and keeps it from the command.
fn adopt(fd: RawFd) -> std::io::Result<UnixStream> {
    // Only an fd that is open may be owned: check before taking it over.
    // SAFETY: F_GETFD only reads the flags of the fd, whatever number it is.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and nothing else in this process uses it: it
    // was handed to us by number on the command line by the weft that spawned us.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(std::io::Error::from)?;
    Ok(UnixStream::from(owned))
}

/// Starts the command with the caller's umask (weft's own is private) and no blocked signals
/// (a child inherits the mask, and ours blocks what we wait for), in the working directory and
/// as the user `opts` give.
/// On failure: the exit code `docker run` gives for it (127: not found, 126: found but not
/// executable, 125: anything else) and why.
/// With `opts.timestamps`, also the read end of the pipe the command writes to.
fn start(
    argv: &[String],
    opts: &InitOptions,
) -> Result<(std::process::Child, Option<OwnedFd>), (i32, String)> {
    let Some((prog, args)) = argv.split_first() else {
        return Err((125, "no command given".into()));
    };
    let mut cmd = Command::new(prog);
    cmd.args(args);
    let creds = match &opts.user {
        None => None,
        Some(spec) => {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
            let c = crate::core::run::resolve_user(spec, &passwd, &group)
                .map_err(|e| (125, e.to_string()))?;
            if let (Some(home), false) = (&c.home, opts.keep_home) {
                cmd.env("HOME", home);
            }
            Some(c)
        }
    };
    if let Some(dir) = &opts.workdir {
        // Checked here rather than left to the spawn: a missing directory would read as
        // "command not found".
        if !std::path::Path::new(dir).is_dir() {
            return Err((
                125,
                format!("working directory {dir:?} does not exist or is not a directory"),
            ));
        }
        cmd.current_dir(dir);
    }
    let umask = super::process::original_umask();
    let ids = creds.map(|c| {
        (
            nix::unistd::Uid::from_raw(c.uid),
            nix::unistd::Gid::from_raw(c.gid),
            c.groups
                .iter()
                .map(|g| nix::unistd::Gid::from_raw(*g))
                .collect::<Vec<_>>(),
        )
    });
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (umask, sigprocmask, setgroups, setgid, setuid) on values prepared above.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::stat::umask(umask);
            if let Some((uid, gid, groups)) = &ids {
                // Groups first: after setuid to a non-root user they can no longer change.
                nix::unistd::setgroups(groups).map_err(std::io::Error::from)?;
                nix::unistd::setgid(*gid).map_err(std::io::Error::from)?;
                nix::unistd::setuid(*uid).map_err(std::io::Error::from)?;
            }
            SigSet::empty()
                .thread_set_mask()
                .map_err(std::io::Error::from)
        });
    }
    let relay = if opts.timestamps {
        let (read, write) = super::log_relay::pipe().map_err(|e| (125, e.to_string()))?;
        let write2 = write.try_clone().map_err(|e| (125, e.to_string()))?;
        cmd.stdout(write).stderr(write2);
        Some(read)
    } else {
        None
    };
    // `cmd`, and with it the init's copies of the pipe's write end, goes at the end of
    // this function: the command (and what it starts) holds the only ones.
    let child = cmd.spawn().map_err(|e| spawn_failure(prog, &e))?;
    Ok((child, relay))
}

/// The exit code and message of a command that could not be started, worded like Docker's.
fn spawn_failure(prog: &str, e: &std::io::Error) -> (i32, String) {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound if !prog.contains('/') => {
            (127, "executable file not found in $PATH".into())
        }
        ErrorKind::NotFound => (127, "no such file or directory".into()),
        ErrorKind::PermissionDenied => (126, "permission denied".into()),
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => (126, "exec format error".into()),
        _ => (126, e.to_string()),
    }
}

/// Waits for signals: reaps children on SIGCHLD until the command itself exits, and passes
/// on the others.
pub(super) fn supervise(child: Pid, set: &SigSet) -> i32 {
    loop {
        let Some((sig, from_process)) = wait_signal(set) else {
            continue;
        };
        if sig == Signal::SIGCHLD {
            if let Some(code) = reap(child) {
                return code;
            }
        } else if from_process {
            let _ = kill(child, sig);
        }
    }
}

/// Reaps every exited child; returns the command's exit code once it is among them.
pub(super) fn reap(child: Pid) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == child => return Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == child => return Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) | Err(Errno::EINTR) => continue,
            // No child left at all: the command is gone without our seeing its status.
            Err(_) => return Some(1),
        }
    }
}

/// The next signal of `set`, and whether a process sent it (kill, sigqueue, tkill) rather
/// than the kernel or the terminal.
fn wait_signal(set: &SigSet) -> Option<(Signal, bool)> {
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value for sigwaitinfo to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid initialised sigset and `info` a writable siginfo_t.
    let sig = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
    if sig < 0 {
        return None;
    }
    let from_process = matches!(
        info.si_code,
        libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL
    );
    Signal::try_from(sig).ok().map(|s| (s, from_process))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_waits_for_what_it_forwards_and_sigchld_only() {
        let set = waited_signals();
        for s in [
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGPIPE,
            Signal::SIGWINCH,
            Signal::SIGCHLD,
        ] {
            assert!(set.contains(s), "{s}");
        }
        // The faults' signals stay the init's own; KILL and STOP cannot be caught.
        for s in [
            Signal::SIGSEGV,
            Signal::SIGABRT,
            Signal::SIGBUS,
            Signal::SIGKILL,
            Signal::SIGSTOP,
        ] {
            assert!(!set.contains(s), "{s}");
        }
        assert_eq!(set.iter().count(), crate::core::signal::FORWARDED.len() + 1);
    }
}

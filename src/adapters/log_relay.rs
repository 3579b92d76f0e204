//! The init's log relay (`weft __init --timestamps`, for detached sandboxes): the command
//! writes its output to a pipe; the init reads it and writes it to its own stdout, the
//! sandbox's log, with each line's time in front (`core::logline::Stamper`).
//!
//! Why in the init: it is PID 1 of the command's PID namespace, so it lives exactly as long
//! as the sandbox's processes do. No process is added, and none can die and leave the
//! command writing into a pipe nobody reads. One thread: the init waits on a signalfd and
//! the pipe together, so that when the command exits, what it wrote last is drained into
//! the log before the init exits.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use crate::core::logline::Stamper;
use crate::core::time::{format, Timestamp};

/// What one read takes from the pipe (its default capacity).
const CHUNK: usize = 64 * 1024;

/// At most this much is drained after the command exited: processes it left behind may
/// write faster than we read; they end with the init anyway.
const DRAIN_MAX: usize = 16 << 20;

/// A pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds into a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The time now, as log lines carry it.
fn now() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    format(Timestamp(nanos))
}

/// Relays the pipe to stdout.
struct Relay {
    pipe: Option<File>,
    stamper: Stamper,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Our stdout (fd 1), written unbuffered; not closed when this goes.
    log: ManuallyDrop<File>,
}

impl Relay {
    fn new(pipe: OwnedFd) -> Self {
        Self {
            pipe: Some(File::from(pipe)),
            stamper: Stamper::new(),
            buf: vec![0; CHUNK],
            out: Vec::with_capacity(CHUNK + 1024),
            // SAFETY: fd 1 is open for the init's whole life (its stdout); ManuallyDrop
            // keeps this File from closing it.
            log: ManuallyDrop::new(unsafe { File::from_raw_fd(1) }),
        }
    }

    /// One read from the pipe, relayed; returns the bytes read (0: the pipe is closed,
    /// or nothing there when non-blocking).
    fn once(&mut self) -> usize {
        let Some(p) = self.pipe.as_mut() else {
            return 0;
        };
        match p.read(&mut self.buf) {
            Ok(0) => {
                self.pipe = None;
                0
            }
            Ok(n) => {
                self.out.clear();
                self.stamper.stamp(&self.buf[..n], &now(), &mut self.out);
                // A log that cannot be written (disk full) loses lines; the command must
                // not stall for it.
                let _ = self.log.write_all(&self.out);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 1,
            Err(_) => 0,
        }
    }

    /// What is in the pipe now, without waiting for more.
    fn drain(&mut self) {
        let Some(p) = self.pipe.as_ref() else {
            return;
        };
        // SAFETY: F_SETFL on an fd we own.
        unsafe {
            libc::fcntl(p.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        }
        let mut total = 0usize;
        while total < DRAIN_MAX {
            let n = self.once();
            if n == 0 {
                return;
            }
            total = total.saturating_add(n);
        }
    }
}

/// The init's loop with a relay: reaps and forwards signals as `init::supervise`, and
/// relays the pipe meanwhile; once the command has exited, drains the pipe and returns its
/// exit code.
pub fn supervise_relaying(child: Pid, set: &SigSet, pipe: OwnedFd) -> i32 {
    // SAFETY: signalfd with a valid, initialised set (blocked since before our exec).
    let sfd = unsafe { libc::signalfd(-1, set.as_ref(), libc::SFD_CLOEXEC) };
    let mut relay = Relay::new(pipe);
    if sfd < 0 {
        // No signalfd (never seen): relay from a thread, supervise as without a relay; what
        // the command wrote last may miss the log.
        std::thread::spawn(move || while relay.once() > 0 {});
        return super::init::supervise(child, set);
    }
    // SAFETY: signalfd just returned this fd; nothing else owns it.
    let mut sfd = File::from(unsafe { OwnedFd::from_raw_fd(sfd) });
    loop {
        let pipe_fd = relay.pipe.as_ref().map_or(-1, |p| p.as_raw_fd());
        let mut fds = [
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            // A negative fd is skipped by poll: the pipe once closed.
            libc::pollfd {
                fd: pipe_fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds, no timeout.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            relay.once();
        }
        if fds[0].revents & libc::POLLIN == 0 {
            continue;
        }
        let Some((sig, from_process)) = read_signal(&mut sfd) else {
            continue;
        };
        if sig == Signal::SIGCHLD {
            if let Some(code) = super::init::reap(child) {
                relay.drain();
                return code;
            }
        } else if from_process {
            let _ = kill(child, sig);
        }
    }
}

/// The next signal from the signalfd, and whether a process sent it.
fn read_signal(sfd: &mut File) -> Option<(Signal, bool)> {
    // SAFETY: plain data; all zeroes is valid.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is a writable signalfd_siginfo of `size` bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut((&raw mut info).cast::<u8>(), size) };
    if sfd.read(buf).ok()? != size {
        return None;
    }
    let from_process = matches!(
        info.ssi_code,
        libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL
    );
    let sig = i32::try_from(info.ssi_signo).ok()?;
    Signal::try_from(sig).ok().map(|s| (s, from_process))
}

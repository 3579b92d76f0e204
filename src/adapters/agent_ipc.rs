//! Where the CLI finds the host agent: a lock file (`agent.lock`, held with `flock` for the
//! agent's whole life, so one agent runs per run directory and a crashed one never blocks the
//! next) and a control socket (`agent.sock`, mode 0600, root only) speaking one JSON line per
//! request and per answer ([`crate::core::agent`]).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read as _, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::core::agent::{Request, Response};

/// The lock file in `run_dir`.
pub fn lock_path(run_dir: &Path) -> PathBuf {
    run_dir.join("agent.lock")
}

/// The control socket in `run_dir`.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("agent.sock")
}

fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // Never through a planted symlink.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn try_flock(f: &File) -> io::Result<bool> {
    // SAFETY: flock(2) on a descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The agent's hold on its run directory, released when dropped (or when it dies).
pub struct AgentLock {
    file: File,
}

impl AgentLock {
    /// Takes the lock and writes our pid into it; `None` when another agent holds it.
    pub fn acquire(run_dir: &Path) -> io::Result<Option<AgentLock>> {
        let mut file = open_lock(&lock_path(run_dir))?;
        // [`running`] probes by taking the lock for an instant: a probe is not an agent, so
        // a taken lock is tried again for a moment before it counts as one (an agent holds
        // it for its whole life).
        let mut tries = 0u32;
        while !try_flock(&file)? {
            if tries >= 20 {
                return Ok(None);
            }
            tries = tries.saturating_add(1);
            std::thread::sleep(Duration::from_millis(5));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(Some(AgentLock { file }))
    }

    /// Keeps the descriptor alive (and the lock held) until the agent exits.
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

/// Whether an agent holds the lock of `run_dir` (one `open` and one `flock`).
pub fn running(run_dir: &Path) -> bool {
    let Ok(f) = open_lock(&lock_path(run_dir)) else {
        return false;
    };
    // Taking the lock means nobody holds it; it is released when `f` closes.
    matches!(try_flock(&f), Ok(false))
}

/// The pid written by the agent holding the lock.
pub fn pid(run_dir: &Path) -> Option<u32> {
    let mut s = String::new();
    open_lock(&lock_path(run_dir))
        .ok()?
        .read_to_string(&mut s)
        .ok()?;
    s.trim().parse().ok()
}

/// Sends one request and waits up to `timeout` for the answer.
pub fn call(run_dir: &Path, req: &Request, timeout: Duration) -> io::Result<Response> {
    let mut stream = UnixStream::connect(socket_path(run_dir))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req).map_err(io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("agent answered {answer:?}: {e}"),
        )
    })
}

/// The agent's end of the control socket.
pub struct ControlListener {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

impl ControlListener {
    /// Binds `agent.sock` in `run_dir`, replacing a stale one (the caller holds the lock, so
    /// no other agent uses it), readable and writable by root only.
    pub fn bind(run_dir: &Path) -> io::Result<ControlListener> {
        let path = socket_path(run_dir);
        crate::adapters::fs::clear_socket_path(&path)?;
        let listener = tokio::net::UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlListener { listener, path })
    }

    /// The next request and a way to answer it.
    pub async fn accept(&self) -> io::Result<Conversation> {
        let (stream, _) = self.listener.accept().await?;
        Ok(Conversation {
            stream: tokio::io::BufReader::new(stream),
        })
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One client connection.
pub struct Conversation {
    stream: tokio::io::BufReader<tokio::net::UnixStream>,
}

impl Conversation {
    /// Whether the client is a process of the agent's own network and PID namespaces, by its
    /// socket credentials: a process in a sandbox (even root, with the socket's path at hand)
    /// is not.
    pub fn peer_is_local(&self) -> bool {
        let Ok(cred) = self.stream.get_ref().peer_cred() else {
            return false;
        };
        let Some(pid) = cred.pid().filter(|p| *p > 0) else {
            return false;
        };
        let same = |ns: &str| {
            let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{ns}"));
            let ours = std::fs::metadata(format!("/proc/self/ns/{ns}"));
            match (theirs, ours) {
                (Ok(a), Ok(b)) => {
                    use std::os::unix::fs::MetadataExt;
                    a.ino() == b.ino() && a.dev() == b.dev()
                }
                _ => false,
            }
        };
        cred.uid() == 0 && same("net") && same("pid")
    }

    /// The client's request; an error for a line that is not one.
    pub async fn request(&mut self) -> io::Result<Request> {
        let mut line = String::new();
        // A client may not make the agent buffer without bound.
        let n = (&mut self.stream)
            .take(64 * 1024)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Sends the answer.
    pub async fn reply(mut self, resp: &Response) -> io::Result<()> {
        let mut line = serde_json::to_string(resp).map_err(io::Error::other)?;
        line.push('\n');
        self.stream.get_mut().write_all(line.as_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn an_agent_starting_while_commands_probe_for_one_gets_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let done = Arc::new(AtomicBool::new(false));
        let prober = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let _ = running(&path);
                }
            })
        };
        for _ in 0..200 {
            let lock = AgentLock::acquire(&path).unwrap();
            assert!(lock.is_some(), "a probe was taken for an agent");
        }
        // A real agent's lock still stops a second one.
        let held = AgentLock::acquire(&path).unwrap().unwrap();
        done.store(true, Ordering::Relaxed);
        prober.join().unwrap();
        assert!(AgentLock::acquire(&path).unwrap().is_none());
        assert!(running(&path));
        drop(held);
    }
}

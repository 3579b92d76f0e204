//! Running commands in sandboxes: foreground runs, detached runs and their monitor, `exec`
//! and `stop`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::adapters::process;
use crate::adapters::store::Mode;
use crate::adapters::store::Store as _;
use crate::core::model::{Sandbox, Status};
use crate::engine::Ctx;
use crate::user_err;

use super::files::{exec_spec, log_path};
use super::{create, find, is_running, monitor_alive, remove_one, update, SandboxRequest};

/// `weft run` in the foreground: create, run CMD with our stdio, forward signals, tear down,
/// return CMD's exit code.
pub fn run_foreground(ctx: &Ctx, req: &SandboxRequest) -> Result<i32> {
    let mut req = req.clone();
    req.auto_remove = true;
    process::install_forwarding();
    let sb = create(ctx, &req)?;
    let spec = exec_spec(ctx, &sb, &req.command);
    let mut child = match process::spawn_foreground(&spec) {
        Ok(c) => c,
        Err(e) => {
            remove_one(ctx, &sb.id, false)?;
            return Err(user_err!("cannot run {:?}: {e}", req.command[0]));
        }
    };
    let pid = child.id();
    process::forward_signals_to(pid);
    mark_running(ctx, &sb.id, pid)?;
    let status = child.wait().context("waiting for the command")?;
    process::stop_forwarding();
    // Reaped: the pid is no longer ours to signal.
    remove_one(ctx, &sb.id, false)?;
    Ok(process::exit_code(status))
}

/// Records that the sandbox's command runs as `pid`, watched by this process: `stop` and
/// `gc` leave the record to its monitor while the monitor lives.
fn mark_running(ctx: &Ctx, id: &str, pid: u32) -> Result<()> {
    let me = std::process::id();
    update(ctx, id, |s| {
        s.pid = Some(pid);
        s.pid_start = process::start_time(pid);
        s.monitor_pid = Some(me);
        s.monitor_start = process::start_time(me);
        s.status = Status::Running;
        s.exit_code = None;
    })?;
    Ok(())
}

/// `weft run -d`: create, then hand CMD to a detached monitor that outlives this process.
pub fn run_detached(ctx: &Ctx, req: &SandboxRequest) -> Result<Sandbox> {
    let sb = create(ctx, req)?;
    match spawn_monitor(ctx, &sb) {
        Ok(()) => {
            let tx = ctx.store.begin(Mode::Read)?;
            Ok(find(tx.as_ref(), &sb.id)?)
        }
        Err(e) => {
            remove_one(ctx, &sb.id, true)?;
            Err(e)
        }
    }
}

/// Starts `weft __monitor ID` in its own session and waits until it reports that CMD runs.
fn spawn_monitor(ctx: &Ctx, sb: &Sandbox) -> Result<()> {
    let exe = std::env::current_exe().context("finding the weft binary")?;
    let log = log_path(ctx, &sb.id);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(log)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--state-dir")
        .arg(&ctx.state_dir)
        .arg("--run-dir")
        .arg(&ctx.run_dir)
        .arg("--config")
        .arg(&ctx.config_path)
        .arg("__monitor")
        .arg(&sb.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; it detaches the monitor from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the sandbox monitor")?;
    let out = child.stdout.take().context("monitor stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    if line.trim() == "ok" {
        // The monitor lives on; dropping `child` does not kill it.
        Ok(())
    } else {
        let _ = child.wait();
        let log = std::fs::read_to_string(log_path(ctx, &sb.id)).unwrap_or_default();
        Err(user_err!(
            "cannot run {:?}: {}",
            sb.command.first().cloned().unwrap_or_default(),
            log.lines().last().unwrap_or("the monitor failed").trim()
        ))
    }
}

/// The detached monitor: starts CMD, reports "ok" on stdout, waits, then records the exit or
/// removes the sandbox (`--rm`).
pub fn monitor(ctx: &Ctx, id: &str) -> Result<()> {
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), id)?
    };
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_path(ctx, &sb.id))?;
    let spec = exec_spec(ctx, &sb, &sb.command);
    let mut child = match process::spawn_detached(&spec, &log) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            println!("failed");
            return Ok(());
        }
    };
    let pid = child.id();
    mark_running(ctx, &sb.id, pid)?;
    println!("ok");
    // Our stdout is the pipe to `weft run -d`, which exits now: point it at the log instead.
    // SAFETY: dup2 on fds we own.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::dup2(log.as_raw_fd(), 1);
    }
    let status = child.wait()?;
    let code = process::exit_code(status);
    finish(ctx, &sb.id, code)
}

/// Records that CMD exited; removes the sandbox if it was started with `--rm`.
fn finish(ctx: &Ctx, id: &str, code: i32) -> Result<()> {
    let Some(sb) = update(ctx, id, |s| {
        s.pid = None;
        s.pid_start = None;
        s.monitor_pid = None;
        s.monitor_start = None;
        s.status = Status::Exited;
        s.exit_code = Some(code);
    })?
    else {
        return Ok(());
    };
    if sb.auto_remove {
        remove_one(ctx, &sb.id, true)?;
    }
    Ok(())
}

/// `weft exec`: runs a command in an existing sandbox in the foreground.
pub fn exec(ctx: &Ctx, name: &str, argv: &[String]) -> Result<i32> {
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)?
    };
    if sb.status == Status::Creating {
        return Err(user_err!("sandbox {name:?} is still being created"));
    }
    let spec = exec_spec(ctx, &sb, argv);
    let mut child = process::spawn_foreground(&spec)
        .map_err(|e| user_err!("cannot run {:?} in sandbox {name:?}: {e}", argv[0]))?;
    process::install_forwarding();
    process::forward_signals_to(child.id());
    let status = child.wait()?;
    process::stop_forwarding();
    Ok(process::exit_code(status))
}

/// `weft stop`: SIGTERM, then SIGKILL after `timeout`; waits until the command is gone.
pub fn stop(ctx: &Ctx, name: &str, timeout: Duration) -> Result<Sandbox> {
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)?
    };
    if let (true, Some(pid)) = (is_running(&sb), sb.pid) {
        let _ = process::signal(pid, libc::SIGTERM);
        if !wait_gone(pid, timeout) {
            let _ = process::signal(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(10));
        }
    }
    // The monitor (or foreground weft) records the exit; wait for it briefly, then record it
    // ourselves if nobody did (its owner died).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cur = {
            let tx = ctx.store.begin(Mode::Read)?;
            tx.sandbox(&sb.id)?
        };
        match cur {
            None => return Ok(sb),
            Some(s) if s.status != Status::Running => return Ok(s),
            Some(s) if Instant::now() > deadline || !monitor_alive(&s) => {
                let code = s.exit_code.unwrap_or(137);
                finish(ctx, &s.id, code)?;
                let tx = ctx.store.begin(Mode::Read)?;
                return Ok(tx.sandbox(&s.id)?.unwrap_or(s));
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub(super) fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !process::alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !process::alive(pid)
}

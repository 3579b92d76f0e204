//! The commands' side of the agent: starting it on demand, asking it to hold or release a
//! sandbox's published ports, `weft daemon status | stop`.
//!
//! Commands never wait for the agent except to reserve ports (so the reservation is in place
//! when `run -p` returns); everything else works without it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::adapters::{agent_ipc, fs};
use crate::core::agent::{AgentStatus, Request, Response};
use crate::core::model::Sandbox;
use crate::engine::Ctx;
use crate::user_err;

/// How long a command waits for an agent it just started.
const START_WAIT: Duration = Duration::from_secs(5);
/// How long a command waits for one answer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Whether an agent runs for this run directory.
pub fn running(ctx: &Ctx) -> bool {
    agent_ipc::running(&ctx.run_dir)
}

/// Starts the agent when none runs and the config allows it; returns whether one runs (or
/// was just started). Costs one `open` and one `flock` when it already runs.
pub fn ensure_running(ctx: &Ctx) -> Result<bool> {
    if running(ctx) {
        return Ok(true);
    }
    if !ctx.config.agent_on_demand() {
        return Ok(false);
    }
    spawn(ctx)?;
    Ok(true)
}

/// Starts `weft daemon` detached, in its own session, logging to `logs/agent.log` in the state
/// directory.
fn spawn(ctx: &Ctx) -> Result<()> {
    let path = ctx.state_dir.join("logs").join("agent.log");
    // Appended to across agents; made (never through a symlink) by the first.
    let log = match fs::open_append(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match fs::create_new(&path, 0o600) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => fs::open_append(&path),
            other => other,
        },
        other => other,
    }
    .with_context(|| format!("opening the agent's log {}", path.display()))?;
    let mut cmd = ctx.detached_weft(&["daemon"])?;
    cmd.stdout(Stdio::null()).stderr(log);
    // Not waited for: it outlives this command (a second agent started by a racing command
    // finds the lock taken and exits).
    cmd.spawn().context("starting the weft agent")?;
    Ok(())
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// No agent runs (any more): it was never started, or left while we asked.
    #[error("the weft agent is not running")]
    NotRunning,
    /// It runs but did not answer.
    #[error("talking to the weft agent: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends a request. An agent that is starting (no socket yet) or leaving (socket gone, lock
/// still held) is waited for, up to [`START_WAIT`].
fn call(ctx: &Ctx, req: &Request) -> Result<Response, CallError> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        match agent_ipc::call(&ctx.run_dir, req, ANSWER_WAIT) {
            Ok(r) => return Ok(r),
            Err(e) => {
                if !running(ctx) {
                    return Err(CallError::NotRunning);
                }
                if Instant::now() >= deadline || e.kind() == std::io::ErrorKind::WouldBlock {
                    return Err(CallError::Io(e));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Holds the sandbox's published ports against host processes, starting the agent if needed.
/// A port some host process bound since the conflict check is an error naming it. Without an
/// agent (config `agent = false` and none running), ports are not reserved.
pub fn reserve(ctx: &Ctx, sb: &Sandbox) -> Result<()> {
    if sb.ports.is_empty() || !ensure_running(ctx)? {
        return Ok(());
    }
    let r = call(
        ctx,
        &Request::Reserve {
            sandbox: sb.id.clone(),
        },
    )
    .context("reserving published ports")?;
    if r.ok {
        Ok(())
    } else {
        Err(user_err!(
            "{}",
            r.error
                .unwrap_or_else(|| "the agent could not reserve the ports".into())
        ))
    }
}

/// Lets go of a removed sandbox's ports at once (the agent would notice within a minute).
pub fn release(ctx: &Ctx, sandbox_id: &str) {
    if running(ctx) {
        let _ = call(
            ctx,
            &Request::Release {
                sandbox: sandbox_id.to_string(),
            },
        );
    }
}

/// The agent's status; `None` when none runs.
pub fn status(ctx: &Ctx) -> Result<Option<AgentStatus>> {
    if !running(ctx) {
        return Ok(None);
    }
    match call(ctx, &Request::Status) {
        Ok(r) => Ok(r.status),
        // It left while we asked.
        Err(CallError::NotRunning) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Asks the agent to repair everything now, and waits for it.
pub fn repair(ctx: &Ctx) -> Result<bool> {
    if !running(ctx) {
        return Ok(false);
    }
    match call(ctx, &Request::Repair) {
        Ok(r) => Ok(r.ok),
        Err(CallError::NotRunning) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sends a cluster request to the agent and returns its answer when it carried it out.
/// Never starts an agent: one started on demand has no cluster flags. Without an agent the
/// error names the flags to start one with.
pub fn cluster(ctx: &Ctx, req: &Request) -> Result<Response> {
    let no_cluster = || user_err!("{}", crate::core::driver::DriverError::NeedsCluster);
    if !running(ctx) {
        return Err(no_cluster());
    }
    let r = match call(ctx, req) {
        Ok(r) => r,
        Err(CallError::NotRunning) => return Err(no_cluster()),
        Err(e) => return Err(e.into()),
    };
    if r.ok {
        Ok(r)
    } else {
        Err(user_err!(
            "{}",
            r.error
                .unwrap_or_else(|| "the agent could not carry out the request".into())
        ))
    }
}

/// Stops the agent and waits until it has let go of its lock; false when none ran.
pub fn stop(ctx: &Ctx) -> Result<bool> {
    if !running(ctx) {
        return Ok(false);
    }
    match call(ctx, &Request::Stop) {
        Ok(_) | Err(CallError::NotRunning) => {}
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    while running(ctx) {
        if Instant::now() > deadline {
            return Err(user_err!("the weft agent did not stop within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(true)
}

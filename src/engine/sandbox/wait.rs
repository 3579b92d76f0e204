//! `weft wait`: blocks until a sandbox's command has exited and gives its exit code, as
//! `docker wait` does.
//!
//! A running command is waited for on a pidfd of its init (no polling); its monitor then
//! records the exit code, which is what is given. A sandbox whose command has exited
//! (`exited`, or `restarting`: between two runs of its restart policy) gives its last code
//! at once; one created and not started yet is waited for until its command has run.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::adapters::process;
use crate::adapters::store::{Mode, Store as _};
use crate::core::model::{Sandbox, Status};
use crate::engine::Ctx;
use crate::user_err;

use super::{find, is_running, monitor_alive};

/// How often a sandbox that is not started yet is looked at (nothing to wait on before its
/// command runs); seldom enough to cost nothing.
const NOT_STARTED_POLL: Duration = Duration::from_millis(250);

/// How long the end of a command may take to be recorded by its monitor once its init is
/// gone (a write to the store).
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Waits until the command of sandbox `name` has exited; returns the sandbox's name and the
/// command's exit code.
pub fn wait(ctx: &Ctx, name: &str) -> Result<(String, i32)> {
    let first = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)?
    };
    let id = first.id.clone();
    let gone = || {
        user_err!(
            "sandbox {:?} was removed before its command's exit code could be read (--rm, or weft rm)",
            first.name
        )
    };
    loop {
        let sb = {
            let tx = ctx.store.begin(Mode::Read)?;
            tx.sandbox(&id)?.ok_or_else(gone)?
        };
        match sb.status {
            Status::Removing => return Err(gone()),
            Status::Running if is_running(&sb) => {
                let (Some(pid), start) = (sb.pid, sb.pid_start) else {
                    continue;
                };
                // No store connection (and none of its locks) while waiting.
                ctx.store.release();
                process::wait_gone(pid, start)?;
                let Some(code) = recorded_exit(ctx, &sb)? else {
                    // Started again (restart policy) before we read it: that exit counts.
                    continue;
                };
                return Ok((sb.name, code));
            }
            Status::Running => {
                // Its init is gone: its monitor records the end in a moment (if it died
                // too, nobody will: what `ps` shows as exited, with no code known, 137).
                let Some(code) = recorded_exit(ctx, &sb)? else {
                    continue;
                };
                return Ok((sb.name, code));
            }
            Status::Exited | Status::Restarting => {
                return Ok((sb.name, sb.exit_code.unwrap_or(0)));
            }
            Status::Created | Status::Creating => {
                if !monitor_alive(&sb) && sb.command.is_empty() {
                    return Err(user_err!(
                        "sandbox {:?} has no command: nothing to wait for",
                        sb.name
                    ));
                }
                ctx.store.release();
                std::thread::sleep(NOT_STARTED_POLL);
            }
        }
    }
}

/// The exit code recorded for the run of `was`'s command that just ended: once its monitor
/// has recorded it (or, if the monitor is gone, what the record says then); `None` if the
/// record moved on to another run without one (restarted at once).
fn recorded_exit(ctx: &Ctx, was: &Sandbox) -> Result<Option<i32>> {
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let cur = {
            let tx = ctx.store.begin(Mode::Read)?;
            tx.sandbox(&was.id)?
        };
        let Some(s) = cur.filter(|s| s.status != Status::Removing) else {
            return Err(user_err!(
                "sandbox {:?} was removed when its command exited (--rm, or a foreground run): its exit code is gone",
                was.name
            ));
        };
        let same_run = s.status == Status::Running && s.pid == was.pid;
        if !same_run {
            return Ok(match s.status {
                Status::Running => s.exit_code,
                _ => Some(s.exit_code.unwrap_or(0)),
            });
        }
        if Instant::now() > deadline || !monitor_alive(&s) {
            return Ok(Some(s.exit_code.unwrap_or(137)));
        }
        // Only between the init's exit and the monitor's write: a few milliseconds.
        std::thread::sleep(Duration::from_millis(10));
    }
}

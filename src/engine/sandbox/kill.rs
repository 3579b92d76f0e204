//! `weft kill`: a signal to a running sandbox's command, as `docker kill` sends one.
//!
//! SIGKILL goes to every init of the sandbox (its command's and each `exec`'s): the
//! sandbox's processes all end, as a container's do when its PID 1 is killed, and this
//! waits until they have and the exit is recorded. Any other signal goes to the command's
//! init, which passes it on to the command (`core::signal::FORWARDED`), and returns at once.
//! Unlike `stop`, `kill` does not mark the sandbox stopped: its restart policy applies to
//! the exit it causes (an `always` or `on-failure` sandbox is started again).

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::adapters::process;
use crate::adapters::store::{Mode, Store as _};
use crate::core::model::{Sandbox, Status};
use crate::core::signal::{self, Target};
use crate::engine::Ctx;
use crate::user_err;

use super::supervise::{inits_of, signal_all, wait_all_gone, InitCheck, KILL_WAIT};
use super::{check_settled, find, is_running};

/// Sends signal `sig` to the command of sandbox `name`; an error names a sandbox whose
/// command does not run. Returns the record (after SIGKILL: as its monitor recorded the end).
pub fn kill(ctx: &Ctx, name: &str, sig: i32) -> Result<Sandbox> {
    let target = signal::target(sig)?;
    let sb = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)?
    };
    check_settled(&sb)?;
    if !is_running(&sb) {
        let why = if sb.status == Status::Restarting {
            "it is restarting (waiting out its back-off)"
        } else {
            "its command does not run"
        };
        return Err(user_err!(
            "cannot kill sandbox {:?}: it is not running ({why})",
            sb.name
        ));
    }
    let check = InitCheck::of(ctx, &sb.id, Some(&sb));
    match target {
        Target::Command => {
            let (Some(pid), start) = (sb.pid, sb.pid_start) else {
                return Err(user_err!(
                    "cannot kill sandbox {:?}: it is not running",
                    sb.name
                ));
            };
            let sent = process::signal_verified(pid, start, sig, |p| check.holds(p))?;
            if !sent {
                return Err(user_err!(
                    "cannot kill sandbox {:?}: its command has just exited",
                    sb.name
                ));
            }
            Ok(sb)
        }
        Target::Init => {
            let inits = inits_of(ctx, &sb.id, Some(&sb), check);
            signal_all(&inits, sig, check);
            if !wait_all_gone(&inits, KILL_WAIT) {
                return Err(user_err!(
                    "processes of sandbox {:?} are still there after SIGKILL; try again",
                    sb.name
                ));
            }
            Ok(recorded_end(ctx, &sb))
        }
    }
}

/// The record once whoever waits for the command (its monitor, a foreground `run`) has
/// recorded its end, so that `inspect` right after `kill` shows it; briefly waited for: the
/// record as it is then otherwise.
fn recorded_end(ctx: &Ctx, sb: &Sandbox) -> Sandbox {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cur = ctx
            .store
            .begin(Mode::Read)
            .and_then(|tx| tx.sandbox(&sb.id));
        match cur {
            Ok(Some(s)) if s.status == Status::Running && s.pid == sb.pid => {
                if Instant::now() > deadline || !super::monitor_alive(&s) {
                    return s;
                }
            }
            Ok(Some(s)) => return s,
            // Removed (`--rm`, a foreground run): what it was.
            Ok(None) | Err(_) => return sb.clone(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! `weft stop` and `weft rm`: ending sandboxes.

use std::time::Duration;

use anyhow::Result;

use crate::engine::{sandbox, Ctx};

/// Stops sandboxes' commands, waiting `time` seconds before SIGKILL.
pub fn run_stop(ctx: &Ctx, sandboxes: &[String], time: u64) -> Result<i32> {
    for s in sandboxes {
        let sb = sandbox::stop(ctx, s, Duration::from_secs(time))?;
        println!("{}", sb.name);
    }
    Ok(0)
}

/// Removes sandboxes; exit code 1 if any could not be removed.
pub fn run_rm(ctx: &Ctx, sandboxes: &[String], force: bool) -> Result<i32> {
    let (removed, errors) = sandbox::remove(ctx, sandboxes, force);
    for name in removed {
        println!("{name}");
    }
    let code = if errors.is_empty() { 0 } else { 1 };
    for e in errors {
        eprintln!("error: {e:#}");
    }
    Ok(code)
}

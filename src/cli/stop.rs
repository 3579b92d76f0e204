//! `weft stop` and `weft rm`: ending sandboxes. Both go through every name given, print the
//! ones they handled, and report the others (exit code 1), as Docker does.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::output::{self, print_json, Kind, Removed, Style};
use super::Format;
use crate::engine::{sandbox, Ctx};

/// `weft rm` flags.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running command first.
    #[arg(short, long)]
    pub force: bool,
    /// Accepted as in Docker (`rm -fv`): weft sandboxes have no volumes.
    #[arg(short, long)]
    pub volumes: bool,
    /// Sandbox names or ids.
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

/// `weft stop --format json`.
#[derive(Debug, Serialize)]
struct Stopped {
    /// Names of the sandboxes stopped.
    stopped: Vec<String>,
    /// One message per name that could not be stopped.
    errors: Vec<String>,
}

/// Stops sandboxes' commands, waiting `time` seconds before SIGKILL.
pub fn run_stop(ctx: &Ctx, sandboxes: &[String], time: u64, format: Option<Format>) -> Result<i32> {
    let style = output::style(format, "stop", Kind::Text)?;
    let mut out = Stopped {
        stopped: vec![],
        errors: vec![],
    };
    for s in sandboxes {
        match sandbox::stop(ctx, s, Duration::from_secs(time)) {
            Ok(sb) => {
                if style == Style::Text {
                    println!("{}", sb.name);
                }
                out.stopped.push(sb.name);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                out.errors.push(format!("{e:#}"));
            }
        }
    }
    if style == Style::Json {
        print_json(&out)?;
    }
    Ok(if out.errors.is_empty() { 0 } else { 1 })
}

/// Removes sandboxes; exit code 1 if any could not be removed.
pub fn run_rm(ctx: &Ctx, sandboxes: &[String], force: bool, format: Option<Format>) -> Result<i32> {
    let style = output::style(format, "rm", Kind::Text)?;
    let (removed, errors) = sandbox::remove(ctx, sandboxes, force);
    Removed {
        removed,
        errors: errors.iter().map(|e| format!("{e:#}")).collect(),
    }
    .print(style)
}

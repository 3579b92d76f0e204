//! `weft stop`, `weft kill` and `weft rm`: ending sandboxes. Both go through every name given, print the
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

/// `weft kill` flags.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send: a name (KILL, SIGTERM, usr1) or a number (9).
    #[arg(short, long, default_value = "KILL", value_parser = parse_signal)]
    pub signal: i32,
    /// Sandbox names or ids.
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

fn parse_signal(s: &str) -> Result<i32, String> {
    crate::core::signal::parse(s).map_err(|e| e.to_string())
}

/// `weft kill --help` examples.
pub const KILL_EXAMPLES: &str = "Examples:\n  weft kill api                       SIGKILL: its processes end; its restart policy applies\n  weft kill -s HUP api                the command gets SIGHUP (passed on by its init)\n  weft kill -s 15 api db --format json  {\"killed\": [\"api\", \"db\"], \"errors\": []}";

/// `weft kill --format json`.
#[derive(Debug, Serialize)]
struct Killed {
    /// Names of the sandboxes whose command got the signal.
    killed: Vec<String>,
    /// One message per name that could not be signalled.
    errors: Vec<String>,
}

/// Sends a signal to sandboxes' commands; exit code 1 if any could not get it (every name
/// is tried, as Docker's `kill` does).
pub fn run_kill(ctx: &Ctx, a: &KillArgs, format: Option<Format>) -> Result<i32> {
    let style = output::style(format, "kill", Kind::Text)?;
    let mut out = Killed {
        killed: vec![],
        errors: vec![],
    };
    for s in &a.sandboxes {
        match sandbox::kill::kill(ctx, s, a.signal) {
            Ok(sb) => {
                if style == Style::Text {
                    println!("{}", sb.name);
                }
                out.killed.push(sb.name);
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

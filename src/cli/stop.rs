//! `weft stop` and `weft rm`: ending sandboxes. Both go through every name given, print the
//! ones they handled, and report the others (exit code 1), as Docker does.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::output::{self, print_json, Kind, Style};
use super::Format;
use crate::engine::{sandbox, Ctx};

/// `weft stop --format json`.
#[derive(Debug, Serialize)]
struct Stopped {
    /// Names of the sandboxes stopped.
    stopped: Vec<String>,
    /// One message per name that could not be stopped.
    errors: Vec<String>,
}

/// `weft rm --format json` (and `weft network rm`, `weft network prune`).
#[derive(Debug, Serialize)]
pub struct Removed {
    /// Names of what was removed.
    pub removed: Vec<String>,
    /// One message per name that could not be removed.
    pub errors: Vec<String>,
}

impl Removed {
    /// Prints the result in `style` (errors on stderr either way); returns the exit code.
    pub fn print(&self, style: Style) -> Result<i32> {
        if style == Style::Json {
            print_json(self)?;
        } else {
            for n in &self.removed {
                println!("{n}");
            }
        }
        for e in &self.errors {
            eprintln!("error: {e}");
        }
        Ok(if self.errors.is_empty() { 0 } else { 1 })
    }
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

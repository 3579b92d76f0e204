//! `weft wait`: blocks until sandboxes' commands exit and prints their exit codes, one a
//! line in the order given, as `docker wait` does.

use anyhow::Result;
use serde::Serialize;

use super::output::{self, print_json, Kind, Style};
use super::Format;
use crate::engine::{sandbox, Ctx};

/// `weft wait --help` examples.
pub const EXAMPLES: &str = "Examples:\n  weft run -d --name job -- make test && weft wait job     prints make's exit code\n  weft wait a b --format json   {\"exited\": [{\"name\": \"a\", \"exit_code\": 0}, ...], \"errors\": []}";

/// `weft wait --format json`.
#[derive(Debug, Serialize)]
struct Waited {
    /// One entry per sandbox whose command exited, in the order given.
    exited: Vec<Exit>,
    /// One message per name that could not be waited for.
    errors: Vec<String>,
}

/// A sandbox and its command's exit code.
#[derive(Debug, Serialize)]
struct Exit {
    name: String,
    exit_code: i32,
}

/// Waits for each sandbox in turn; exit code 1 if any could not be waited for.
pub fn run_wait(ctx: &Ctx, sandboxes: &[String], format: Option<Format>) -> Result<i32> {
    let style = output::style(format, "wait", Kind::Text)?;
    let mut out = Waited {
        exited: vec![],
        errors: vec![],
    };
    for s in sandboxes {
        match sandbox::wait::wait(ctx, s) {
            Ok((name, exit_code)) => {
                if style == Style::Text {
                    // Printed as each ends: a script reads the first while others run.
                    use std::io::Write as _;
                    let mut o = std::io::stdout().lock();
                    writeln!(o, "{exit_code}")?;
                    o.flush()?;
                }
                out.exited.push(Exit { name, exit_code });
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

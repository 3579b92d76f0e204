//! `weft gc`: the repair report.

use anyhow::Result;

use super::output::{self, print_json, Kind, Style};
use super::Format;
use crate::engine::{gc, Ctx};

/// Examples shown by `weft gc --help`.
pub const EXAMPLES: &str = "\
Examples:
  weft gc                             repair, and print one line per thing done
  weft gc --format json               the report as one JSON object (every list, even empty)";

/// Runs gc and prints what it did; exit code 1 if anything failed.
pub fn run_gc(ctx: &Ctx, format: Option<Format>) -> Result<i32> {
    let json = output::style(format, "gc", Kind::Text)? == Style::Json;
    let report = gc::run(ctx)?;
    if json {
        print_json(&report)?;
    } else {
        for (what, list) in [
            ("removed sandbox", &report.sandboxes_removed),
            ("marked exited", &report.sandboxes_exited),
            ("removed half-made network", &report.networks_removed),
            ("repaired network", &report.networks_repaired),
            ("repaired sandbox", &report.sandboxes_repaired),
            ("settled interrupted endpoint", &report.endpoints_settled),
            ("repair", &report.repairs),
            ("deleted orphan", &report.orphans_deleted),
            ("repaired firewall", &report.firewall_repaired),
            ("removed unreadable", &report.unreadable_removed),
            ("error", &report.errors),
        ] {
            for item in list {
                println!("{what}: {item}");
            }
        }
        if report.addresses_released > 0 {
            println!("released {} leaked addresses", report.addresses_released);
        }
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

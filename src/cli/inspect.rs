//! `weft inspect` and `weft port`: one sandbox in detail.

use anyhow::Result;

use super::output::{self, print_json, Kind, Style};
use super::Format;
use crate::adapters::store::Store as _;
use crate::engine::{sandbox, view, Ctx};

/// Examples shown by `weft inspect --help`.
pub const INSPECT_EXAMPLES: &str = "\
Examples:
  weft inspect web                    the sandbox as JSON (always JSON, as docker inspect)
  weft inspect web db                 an array of both
  weft inspect web | jq -r '.[0].networks[0].ipv4'";

/// Examples shown by `weft port --help`.
pub const PORT_EXAMPLES: &str = "\
Examples:
  weft port web                       80/tcp -> 0.0.0.0:8080, one line per host port
  weft port web --format json         the same as an array of objects";

/// Prints sandboxes as JSON.
pub fn run_inspect(ctx: &Ctx, sandboxes: &[String], format: Option<Format>) -> Result<i32> {
    output::style(format, "inspect", Kind::Json)?;
    let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
    let mut out = Vec::new();
    for s in sandboxes {
        out.push(view::sandbox(&sandbox::as_seen(sandbox::find(
            tx.as_ref(),
            s,
        )?)));
    }
    print_json(&out)?;
    Ok(0)
}

/// Prints a sandbox's published ports.
pub fn run_port(ctx: &Ctx, s: &str, format: Option<Format>) -> Result<i32> {
    let style = output::style(format, "port", Kind::Text)?;
    let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
    let sb = sandbox::find(tx.as_ref(), s)?;
    if style == Style::Json {
        print_json(&sb.ports)?;
    } else {
        for m in &sb.ports {
            println!("{m}");
        }
    }
    Ok(0)
}

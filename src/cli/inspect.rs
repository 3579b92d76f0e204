//! `weft inspect` and `weft port`: one sandbox in detail.

use anyhow::Result;

use super::output::print_json;
use crate::adapters::store::Store as _;
use crate::engine::{sandbox, view, Ctx};

/// Prints sandboxes as JSON.
pub fn run_inspect(ctx: &Ctx, sandboxes: &[String]) -> Result<i32> {
    let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
    let mut out = Vec::new();
    for s in sandboxes {
        out.push(view::sandbox(&sandbox::find(tx.as_ref(), s)?));
    }
    print_json(&out)?;
    Ok(0)
}

/// Prints a sandbox's published ports.
pub fn run_port(ctx: &Ctx, s: &str, json: bool) -> Result<i32> {
    let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
    let sb = sandbox::find(tx.as_ref(), s)?;
    if json {
        print_json(&sb.ports)?;
    } else {
        for m in &sb.ports {
            println!("{m}");
        }
    }
    Ok(0)
}

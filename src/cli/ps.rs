//! `weft ps`: the sandbox listing.

use anyhow::Result;

use super::output::{opt, print_json, warn_unreadable};
use crate::engine::{sandbox, view, Ctx};

/// Lists sandboxes (`all`: also those not running).
pub fn run_ps(ctx: &Ctx, all: bool, json: bool) -> Result<i32> {
    warn_unreadable(ctx, "sandboxes")?;
    let list = sandbox::list(ctx, all)?;
    if json {
        print_json(&list.iter().map(view::sandbox).collect::<Vec<_>>())?;
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|s| {
                vec![
                    s.short_id().to_string(),
                    s.name.clone(),
                    format!("{:?}", s.status).to_lowercase(),
                    opt(s.pid.map(|p| p.to_string())),
                    s.endpoints
                        .iter()
                        .map(|e| {
                            format!(
                                "{}:{}",
                                e.network,
                                e.ipv4
                                    .or(e.ipv6)
                                    .map(|a| a.addr().to_string())
                                    .unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    s.command.join(" "),
                ]
            })
            .collect();
        print!(
            "{}",
            view::table(
                &["ID", "NAME", "STATUS", "PID", "NETWORKS", "COMMAND"],
                &rows
            )
        );
    }
    Ok(0)
}

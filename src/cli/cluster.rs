//! `weft cluster ...`: what the agent's cluster holds.

use anyhow::Result;
use clap::Subcommand;

use super::output::{self, print_json, table, Kind, Style};
use super::Format;
use crate::core::agent::Request;
use crate::engine::{agent, Ctx};

/// `weft cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// The hosts of the cluster: node, VTEP address and port, liveness, endpoints.
    #[command(after_help = "Examples:\n  weft cluster hosts\n  weft cluster hosts --format json")]
    Hosts,
}

/// Runs `weft cluster ...`.
pub fn run_cluster(ctx: &Ctx, cmd: ClusterCmd, format: Option<Format>) -> Result<i32> {
    match cmd {
        ClusterCmd::Hosts => {
            let style = output::style(format, "cluster hosts", Kind::Table)?;
            let hosts = agent::client::cluster(ctx, &Request::ClusterHosts)?
                .hosts
                .unwrap_or_default();
            if style == Style::Json {
                print_json(&hosts)?;
            } else {
                let dash = || "-".to_string();
                let rows: Vec<Vec<String>> = hosts
                    .iter()
                    .map(|h| {
                        vec![
                            h.node.clone(),
                            h.vtep.map(|v| v.to_string()).unwrap_or_else(dash),
                            h.vxlan_port.map(|p| p.to_string()).unwrap_or_else(dash),
                            if h.alive { "yes" } else { "no" }.to_string(),
                            h.endpoints.to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["NODE", "VTEP", "PORT", "ALIVE", "ENDPOINTS"], &rows)
                );
            }
            Ok(0)
        }
    }
}

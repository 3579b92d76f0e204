//! `weft daemon status | stop | repair`: talking to the host agent.

use anyhow::Result;
use clap::Subcommand;

use super::output::{self, print_json, Kind, Style};
use super::Format;
use crate::engine::{self, Ctx};

/// Examples shown by `weft daemon --help`.
pub const EXAMPLES: &str = "\
Examples:
  weft daemon --stay                  run the agent in the foreground (as its systemd unit does)
  weft daemon status                  whether it runs, its repairs and the ports it holds
  weft daemon repair                  ask it to check everything now";

/// `weft daemon ...`
#[derive(Debug, Subcommand)]
pub enum DaemonCmd {
    /// Whether the agent runs, its repairs and their causes, what it watches and holds.
    #[command(
        after_help = "Examples:\n  weft daemon status                  exit 3 when no agent runs\n  weft daemon status --format json | jq .status.reservations"
    )]
    Status,
    /// Stop the agent (commands start it again when they need it).
    #[command(
        after_help = "Examples:\n  weft daemon stop\n  weft daemon stop --format json      {\"stopped\": true} when one ran"
    )]
    Stop,
    /// Ask the agent to check and repair everything now.
    #[command(
        after_help = "Examples:\n  weft daemon repair\n  weft daemon status                  then: what it repaired and why"
    )]
    Repair,
}

/// Runs `weft daemon SUBCOMMAND` (the agent itself is started in `cli::run`).
pub fn run_daemon(ctx: &Ctx, action: Option<DaemonCmd>, format: Option<Format>) -> Result<i32> {
    let json = output::style(format, "daemon", Kind::Text)? == Style::Json;
    use engine::agent::client;
    match action {
        None => Ok(0),
        Some(DaemonCmd::Status) => {
            let status = client::status(ctx)?;
            if json {
                print_json(&serde_json::json!({
                    "running": status.is_some(),
                    "status": status,
                }))?;
            } else {
                match &status {
                    None => println!("weft agent: not running"),
                    Some(s) => print_agent_status(s),
                }
            }
            Ok(if status.is_some() { 0 } else { 3 })
        }
        Some(DaemonCmd::Stop) => {
            let stopped = client::stop(ctx)?;
            if json {
                print_json(&serde_json::json!({ "stopped": stopped }))?;
            } else {
                println!(
                    "{}",
                    if stopped {
                        "weft agent stopped"
                    } else {
                        "weft agent: not running"
                    }
                );
            }
            Ok(0)
        }
        Some(DaemonCmd::Repair) => {
            if !client::repair(ctx)? {
                return Err(crate::user_err!(
                    "the weft agent is not running; `weft gc` repairs without it"
                ));
            }
            if json {
                print_json(&serde_json::json!({ "repaired": true }))?;
            }
            Ok(0)
        }
    }
}

fn print_agent_status(s: &crate::core::agent::AgentStatus) {
    println!(
        "weft agent: running (pid {}, up {} s)",
        s.pid, s.uptime_secs
    );
    println!("state dir: {}", s.state_dir);
    println!("watching: {}", s.watching.join(", "));
    println!("repairs: {}", s.repairs_total);
    let now = crate::engine::now();
    for r in &s.repairs {
        println!(
            "  {} s ago, {}: {}",
            now.saturating_sub(r.at),
            r.cause,
            r.applied.join("; ")
        );
        for e in &r.errors {
            println!("    error: {e}");
        }
    }
    println!("reserved ports: {}", s.reservations.len());
    for p in &s.reservations {
        println!(
            "  {} {}/{} {}",
            p.sandbox, p.host_port, p.protocol, p.host_ip
        );
    }
    match &s.dns {
        None => println!("dns: not running"),
        Some(d) => {
            println!(
                "dns: port {}, {} records; answered {}, forwarded {} ({} cached), failed {}, refused {}, rate-limited {}, errors {}",
                d.port, d.records, d.answered, d.forwarded, d.cached, d.failed, d.refused, d.rate_limited, d.errors
            );
            for e in &d.recent_errors {
                println!("  dns error: {e}");
            }
        }
    }
    for e in &s.errors {
        println!("error: {e}");
    }
}

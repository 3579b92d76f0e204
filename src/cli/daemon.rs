//! `weft daemon status | stop | repair`: talking to the host agent.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::output::{self, print_json, Kind, Style};
use super::Format;
use crate::core::cluster_config::ClusterSettings;
use crate::engine::{self, Ctx};

/// Examples shown by `weft daemon --help`.
pub const EXAMPLES: &str = "\
Examples:
  weft daemon --stay                  run the agent in the foreground (as its systemd unit does)
  weft daemon status                  whether it runs, its repairs and the ports it holds
  weft daemon repair                  ask it to check everything now
  weft daemon --stay --etcd http://10.0.0.5:2379 --advertise 10.0.0.1
                                      join a cluster for overlay networks (in progress:
                                      the configuration is checked and shown by status)";

/// `weft daemon` flags that make the agent join a cluster, for overlay networks. The same
/// keys under `[cluster]` in the configuration file; a flag overrides its key.
#[derive(Debug, Args, Default, Clone)]
#[command(next_help_heading = "Cluster (overlay networks; [cluster] in weft.toml)")]
pub struct ClusterArgs {
    /// etcd endpoints holding the cluster's state: http(s)://HOST:PORT, comma-separated or
    /// repeated.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// CA certificate of the etcd servers (https:// endpoints).
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key).
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Key of the client certificate (with --etcd-cert).
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// This host's IPv4 address on the underlay, where other hosts send VXLAN traffic (must be
    /// an address of this host).
    #[arg(long, value_name = "IP")]
    pub advertise: Option<String>,
    /// UDP port of the VXLAN devices, the same on every host [default: 4789].
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub vxlan_port: Option<i64>,
    /// This host's name in the cluster [default: the hostname].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Seconds the agent's etcd lease lives without renewal: a host gone this long leaves
    /// the cluster (2 to 3600) [default: 10].
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub lease_ttl: Option<i64>,
}

impl ClusterArgs {
    /// The flags as settings, to lay over the configuration file's.
    pub fn settings(&self) -> ClusterSettings {
        ClusterSettings {
            etcd: self.etcd.clone(),
            etcd_ca: self.etcd_ca.clone(),
            etcd_cert: self.etcd_cert.clone(),
            etcd_key: self.etcd_key.clone(),
            advertise: self.advertise.clone(),
            vxlan_port: self.vxlan_port,
            node: self.node.clone(),
            lease_ttl: self.lease_ttl,
        }
    }

    /// Whether any cluster flag was given.
    pub fn given(&self) -> bool {
        self.settings() != ClusterSettings::default()
    }
}

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
    let c = &s.cluster;
    match (&c.node, &c.advertise) {
        (Some(node), Some(advertise)) if c.configured => {
            println!(
                "cluster: node {node}, advertise {advertise}, vxlan port {}, lease {} s, etcd {}{}",
                c.vxlan_port.unwrap_or_default(),
                c.lease_ttl.unwrap_or_default(),
                c.etcd.join(","),
                if c.tls { " with TLS" } else { "" }
            );
            println!(
                "  {}, lease {}, revision {}, {} endpoints, networks: {}",
                if c.connected {
                    "connected"
                } else {
                    "not connected"
                },
                c.lease.as_deref().unwrap_or("none"),
                c.revision,
                c.endpoints,
                if c.networks.is_empty() {
                    "none".to_string()
                } else {
                    c.networks.join(", ")
                }
            );
            for h in &c.hosts {
                println!(
                    "  host {} vtep {} ({} endpoints)",
                    h.node, h.vtep, h.endpoints
                );
            }
            for e in &c.errors {
                println!("  cluster error: {e}");
            }
        }
        _ => println!("cluster: not configured"),
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

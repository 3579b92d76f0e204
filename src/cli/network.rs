//! `weft network ...`: parsing and output of the network commands.

use std::io::BufRead as _;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::{self, print_json, table, warn_unreadable, Kind, Removed, Style};
use super::Format;
use crate::adapters::store::Store as _;
use crate::core::display;
use crate::core::filter::{self, Filter};
use crate::engine::{network, sandbox, view, Ctx};

/// `weft network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network.
    #[command(after_help = "\
Examples:
  weft network create web                           a subnet chosen clear of routes and peers
  weft network create db --subnet 10.89.5.0/24 --internal
  weft network create lan --opt com.docker.network.bridge.name=br-lan --mtu 1400")]
    Create(NetworkCreateArgs),
    /// List networks.
    #[command(
        alias = "list",
        after_help = "\
Examples:
  weft network ls
  weft network ls -q -f label=team=blue        ids of the networks labelled team=blue
  weft network ls -f name=web --format json"
    )]
    Ls(LsArgs),
    /// Show networks in detail, with the subnet choice explained.
    #[command(after_help = "\
Examples:
  weft network inspect web                     options, subnets, skipped candidates, sandboxes
  weft network inspect web --format json       an array of documents (see README: JSON output)")]
    Inspect {
        /// Network names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(
        alias = "remove",
        after_help = "\
Examples:
  weft network rm web db                       removes both; a network in use is refused
  weft network rm -f web                       disconnects its sandboxes first"
    )]
    Rm {
        /// Disconnect attached sandboxes first.
        #[arg(short, long)]
        force: bool,
        /// Network names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all networks no sandbox uses (never the default network `weft`).
    #[command(after_help = "\
Examples:
  weft network prune                           asks first: answer y to remove
  weft network prune -f                        no question (scripts)")]
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Attach a sandbox to a network (also while it runs).
    #[command(after_help = "\
Examples:
  weft network connect backend web             web gets eth1 on backend
  weft network connect backend web --ip 10.89.5.10 --alias api")]
    Connect {
        /// Network.
        network: String,
        /// Sandbox.
        sandbox: String,
        /// Static address (IPv4 or IPv6).
        #[arg(long)]
        ip: Vec<String>,
        /// Extra name on this network.
        #[arg(long)]
        alias: Vec<String>,
    },
    /// Detach a sandbox from a network.
    #[command(after_help = "\
Example:
  weft network disconnect backend web")]
    Disconnect {
        /// Accepted as in Docker; weft's disconnect has nothing to force.
        #[arg(short, long)]
        force: bool,
        /// Network.
        network: String,
        /// Sandbox.
        sandbox: String,
    },
}

/// `weft network create` flags.
#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// Network name.
    pub name: String,
    /// Driver: bridge (this host) or overlay (every host of a cluster; in progress: needs
    /// `weft daemon --etcd URL --advertise IP`).
    #[arg(long, short, default_value = "bridge")]
    pub driver: String,
    /// VXLAN network identifier of an overlay network, 1 to 16777215 (default: allocated
    /// in the cluster).
    #[arg(long, value_name = "N")]
    pub vni: Option<u64>,
    /// Subnet in CIDR form (once for IPv4, once for IPv6).
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Limit dynamic allocation to this range.
    #[arg(long)]
    pub ip_range: Vec<String>,
    /// Gateway address (default: first usable).
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Reserve an address: NAME=IP.
    #[arg(long)]
    pub aux_address: Vec<String>,
    /// Give the network an IPv6 subnet too.
    #[arg(long)]
    pub ipv6: bool,
    /// No way out of the host.
    #[arg(long)]
    pub internal: bool,
    /// MTU of the bridge and veths (overlay: at most the underlay's MTU minus 50, or 70 over
    /// IPv6, on every live host of the cluster, and that by default).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Driver options: dns=true|false (name resolution by weft), icc=true|false,
    /// masquerade=true|false, host_ip=ADDR (default host address of published ports), and
    /// Docker's com.docker.network.bridge.{name, enable_icc, enable_ip_masquerade,
    /// host_binding_ipv4}, com.docker.network.driver.mtu and
    /// com.docker.network.driver.overlay.vxlanid_list (--vni).
    #[arg(long, short)]
    pub opt: Vec<String>,
    /// Name of the bridge interface.
    #[arg(long)]
    pub bridge_name: Option<String>,
    /// Labels KEY=VALUE (KEY alone: an empty value).
    #[arg(long)]
    pub label: Vec<String>,
    /// Accept a subnet that overlaps routes, addresses, peers or avoid ranges.
    #[arg(long)]
    pub allow_overlap: bool,
}

/// `weft network ls` flags.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print only network ids, one per line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't shorten ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show only matching networks: name=PART, id=PREFIX, driver=NAME, label=KEY[=VALUE]
    /// (the same key again: either; other keys: both).
    #[arg(short, long = "filter", value_name = "KEY=VALUE", value_parser = parse_filter)]
    pub filter: Vec<Filter>,
}

fn parse_filter(s: &str) -> Result<Filter, String> {
    filter::parse(s, filter::NETWORK_KEYS).map_err(|e| e.to_string())
}

/// `weft network connect --format json`: the endpoint as `inspect` shows it in `networks`,
/// with the sandbox's name.
#[derive(Debug, Serialize)]
struct Connected {
    /// Sandbox name.
    sandbox: String,
    /// The endpoint.
    #[serde(flatten)]
    endpoint: view::SandboxNetworkView,
}

/// `weft network disconnect --format json`.
#[derive(Debug, Serialize)]
struct Disconnected {
    /// Network name.
    network: String,
    /// Sandbox name.
    sandbox: String,
}

fn name(cmd: &NetworkCmd) -> (&'static str, Kind) {
    match cmd {
        NetworkCmd::Create(_) => ("network create", Kind::Text),
        NetworkCmd::Ls(_) => ("network ls", Kind::Table),
        NetworkCmd::Inspect { .. } => ("network inspect", Kind::Text),
        NetworkCmd::Rm { .. } => ("network rm", Kind::Text),
        NetworkCmd::Prune { .. } => ("network prune", Kind::Text),
        NetworkCmd::Connect { .. } => ("network connect", Kind::Text),
        NetworkCmd::Disconnect { .. } => ("network disconnect", Kind::Text),
    }
}

/// Runs `weft network ...`.
pub fn run_network(ctx: &Ctx, cmd: NetworkCmd, format: Option<Format>) -> Result<i32> {
    use crate::adapters::store::Mode;
    let (what, kind) = name(&cmd);
    let style = output::style(format, what, kind)?;
    let json = style == Style::Json;
    match cmd {
        NetworkCmd::Create(a) => {
            if crate::core::driver::lookup(&a.driver).is_none() {
                // A usage error (exit 2): nothing was looked at yet.
                return Err(anyhow::Error::new(output::UsageError(
                    crate::core::driver::DriverError::Unknown { name: a.driver }.to_string(),
                )));
            }
            let req = network::CreateRequest {
                name: a.name,
                driver: a.driver,
                vni: a.vni,
                subnets: a.subnet,
                ip_ranges: a.ip_range,
                gateways: a.gateway,
                aux: a.aux_address,
                ipv6: a.ipv6,
                internal: a.internal,
                mtu: a.mtu,
                opts: a.opt,
                bridge_name: a.bridge_name,
                labels: a.label,
                allow_overlap: a.allow_overlap,
            };
            let net = network::create(ctx, &req)?;
            if json {
                print_json(&view::network(&net, &[]))?;
            } else {
                println!("{}", net.id);
            }
        }
        NetworkCmd::Ls(args) => {
            warn_unreadable(ctx, "networks")?;
            let tx = ctx.store.begin(Mode::Read)?;
            let sbs = tx.sandboxes()?;
            let nets: Vec<_> = tx
                .networks()?
                .into_iter()
                .filter(|n| filter::network_matches(&args.filter, n))
                .collect();
            drop(tx);
            let id = |n: &crate::core::model::Network| {
                if args.no_trunc {
                    n.id.clone()
                } else {
                    n.short_id().to_string()
                }
            };
            if args.quiet {
                for n in &nets {
                    println!("{}", id(n));
                }
            } else if json {
                print_json(
                    &nets
                        .iter()
                        .map(|n| view::network(n, &sbs))
                        .collect::<Vec<_>>(),
                )?;
            } else {
                let rows: Vec<Vec<String>> = nets
                    .iter()
                    .map(|n| {
                        vec![
                            id(n),
                            n.name.clone(),
                            n.driver.clone(),
                            n.bridge.clone(),
                            n.subnets
                                .iter()
                                .map(|s| s.subnet.to_string())
                                .collect::<Vec<_>>()
                                .join(","),
                            sbs.iter()
                                .filter(|s| s.endpoints.iter().any(|e| e.network_id == n.id))
                                .count()
                                .to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "NETWORK ID",
                            "NAME",
                            "DRIVER",
                            "BRIDGE",
                            "SUBNETS",
                            "SANDBOXES"
                        ],
                        &rows
                    )
                );
            }
        }
        NetworkCmd::Inspect { networks } => {
            let tx = ctx.store.begin(Mode::Read)?;
            let sbs = tx.sandboxes()?;
            let mut out = Vec::new();
            for n in &networks {
                out.push(view::network(&network::find(tx.as_ref(), n)?, &sbs));
            }
            drop(tx);
            if json {
                print_json(&out)?;
            } else {
                let now = crate::engine::now();
                let text: Vec<String> = out.iter().map(|v| network_text(v, now)).collect();
                print!("{}", text.join("\n"));
            }
        }
        NetworkCmd::Rm { force, networks } => {
            let mut out = Removed {
                removed: vec![],
                errors: vec![],
            };
            // Every name is tried, as `docker network rm` does: one refusal does not keep
            // the others.
            for n in &networks {
                match network::remove::remove(ctx, std::slice::from_ref(n), force) {
                    Ok(names) => out.removed.extend(names),
                    Err(e) => out.errors.push(format!("{e:#}")),
                }
            }
            return out.print(style);
        }
        NetworkCmd::Prune { force } => {
            if !force && !confirm_prune()? {
                if json {
                    print_json(&Removed {
                        removed: vec![],
                        errors: vec![],
                    })?;
                }
                return Ok(0);
            }
            return Removed {
                removed: network::remove::prune(ctx)?,
                errors: vec![],
            }
            .print(style);
        }
        NetworkCmd::Connect {
            network: n,
            sandbox: s,
            ip,
            alias,
        } => {
            let ep = sandbox::connect::connect(ctx, &n, &s, &ip, &alias)?;
            if json {
                let sandbox = {
                    let tx = ctx.store.begin(Mode::Read)?;
                    sandbox::find(tx.as_ref(), &s)?.name
                };
                print_json(&Connected {
                    sandbox,
                    endpoint: view::endpoint(&ep),
                })?;
            } else {
                println!(
                    "{} {}",
                    ep.interface,
                    ep.ipv4
                        .or(ep.ipv6)
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                );
            }
        }
        NetworkCmd::Disconnect {
            network: n,
            sandbox: s,
            ..
        } => {
            // The names as stored (the user may have given ids).
            let names = {
                let tx = ctx.store.begin(Mode::Read)?;
                (
                    network::find(tx.as_ref(), &n)?.name,
                    sandbox::find(tx.as_ref(), &s)?.name,
                )
            };
            sandbox::connect::disconnect(ctx, &n, &s)?;
            if json {
                print_json(&Disconnected {
                    network: names.0,
                    sandbox: names.1,
                })?;
            }
        }
    }
    Ok(0)
}

/// Asks as `docker network prune` does. Like Docker it reads the answer from stdin even when
/// stdin is not a terminal (`yes | weft network prune` works); end of input means no.
fn confirm_prune() -> Result<bool> {
    use std::io::Write as _;
    // On stderr: stdout carries only the result (names, or JSON), also for scripts.
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "WARNING! This will remove all custom networks not used by at least one sandbox.\n\
         Are you sure you want to continue? [y/N] "
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y"))
}

fn kv_line<V: std::fmt::Display>(map: &std::collections::BTreeMap<String, V>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `network inspect` for people.
fn network_text(v: &view::NetworkView, now: u64) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let indent = |t: String| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let _ = writeln!(o, "Network {} ({})", v.name, &v.id[..12.min(v.id.len())]);
    let _ = writeln!(
        o,
        "  Created:     {} ({})",
        display::utc(v.created),
        display::ago(v.created, now)
    );
    let _ = writeln!(o, "  Driver:      {}", v.driver);
    let _ = writeln!(o, "  Bridge:      {}", v.bridge);
    let _ = writeln!(o, "  MTU:         {}", v.mtu);
    let _ = writeln!(o, "  Internal:    {}", v.internal);
    let _ = writeln!(o, "  IPv6:        {}", v.ipv6);
    let _ = writeln!(o, "  Options:     {}", kv_line(&v.options));
    let _ = writeln!(o, "  Labels:      {}", kv_line(&v.labels));
    let _ = writeln!(o, "  Aux:         {}", kv_line(&v.aux_addresses));
    let _ = writeln!(o, "  Subnets:");
    let rows: Vec<Vec<String>> = v
        .subnets
        .iter()
        .map(|s| {
            vec![
                s.subnet.clone(),
                s.gateway.clone(),
                s.ip_range.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    o.push_str(&indent(table(&["SUBNET", "GATEWAY", "IP RANGE"], &rows)));
    if let Some(a) = &v.allocation {
        let _ = writeln!(
            o,
            "  Chosen automatically from pool {}{}",
            a.pool,
            if a.skipped.is_empty() {
                "; no candidate skipped".to_string()
            } else {
                format!("; skipped {}:", a.skipped.len())
            }
        );
        if !a.skipped.is_empty() {
            let rows: Vec<Vec<String>> = a
                .skipped
                .iter()
                .map(|s| vec![s.candidate.to_string(), s.reason.clone()])
                .collect();
            o.push_str(&indent(table(&["SUBNET", "REASON"], &rows)));
        }
    }
    if v.endpoints.is_empty() {
        let _ = writeln!(o, "  Sandboxes:   -");
    } else {
        let _ = writeln!(o, "  Sandboxes:");
        let rows: Vec<Vec<String>> = v
            .endpoints
            .iter()
            .map(|e| {
                vec![
                    e.sandbox.clone(),
                    e.interface.clone(),
                    e.ipv4.clone().unwrap_or_else(|| "-".into()),
                    e.ipv6.clone().unwrap_or_else(|| "-".into()),
                    e.mac.clone(),
                ]
            })
            .collect();
        o.push_str(&indent(table(
            &["NAME", "INTERFACE", "IPV4", "IPV6", "MAC"],
            &rows,
        )));
    }
    o
}

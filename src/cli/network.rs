//! `weft network ...`: parsing and output of the network commands.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::output::{print_json, warn_unreadable};
use crate::adapters::store::Store as _;
use crate::engine::{network, sandbox, view, Ctx};

/// `weft network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network.
    Create(NetworkCreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show networks in detail, with the subnet choice explained.
    Inspect {
        /// Network names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Disconnect attached sandboxes first.
        #[arg(short, long)]
        force: bool,
        /// Network names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all networks no sandbox uses.
    Prune,
    /// Attach a sandbox to a network (also while it runs).
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
    Disconnect {
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
    /// Driver.
    #[arg(long, short, default_value = "bridge")]
    pub driver: String,
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
    /// MTU of the bridge and veths.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Driver options: icc=false, masquerade=false.
    #[arg(long, short)]
    pub opt: Vec<String>,
    /// Name of the bridge interface.
    #[arg(long)]
    pub bridge_name: Option<String>,
    /// Labels K=V.
    #[arg(long)]
    pub label: Vec<String>,
    /// Accept a subnet that overlaps routes, addresses, peers or avoid ranges.
    #[arg(long)]
    pub allow_overlap: bool,
}

pub fn run_network(ctx: &Ctx, cmd: NetworkCmd, json: bool) -> Result<i32> {
    use crate::adapters::store::Mode;
    match cmd {
        NetworkCmd::Create(a) => {
            let req = network::CreateRequest {
                name: a.name,
                driver: a.driver,
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
        NetworkCmd::Ls => {
            warn_unreadable(ctx, "networks")?;
            let tx = ctx.store.begin(Mode::Read)?;
            let sbs = tx.sandboxes()?;
            let nets = tx.networks()?;
            if json {
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
                            n.short_id().to_string(),
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
                    view::table(
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
            if json {
                print_json(&out)?;
            } else {
                for v in &out {
                    print_network_text(v);
                }
            }
        }
        NetworkCmd::Rm { force, networks } => {
            for n in network::remove::remove(ctx, &networks, force)? {
                println!("{n}");
            }
        }
        NetworkCmd::Prune => {
            for n in network::remove::prune(ctx)? {
                println!("{n}");
            }
        }
        NetworkCmd::Connect {
            network: n,
            sandbox: s,
            ip,
            alias,
        } => {
            let ep = sandbox::connect::connect(ctx, &n, &s, &ip, &alias)?;
            if json {
                print_json(&ep)?;
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
        } => sandbox::connect::disconnect(ctx, &n, &s)?,
    }
    Ok(0)
}

fn print_network_text(v: &view::NetworkView) {
    println!("Network {} ({})", v.name, &v.id[..12.min(v.id.len())]);
    println!(
        "  driver {}  bridge {}  mtu {}  internal {}",
        v.driver, v.bridge, v.mtu, v.internal
    );
    for s in &v.subnets {
        println!(
            "  subnet {}  gateway {}{}",
            s.subnet,
            s.gateway,
            s.ip_range
                .as_ref()
                .map(|r| format!("  ip-range {r}"))
                .unwrap_or_default()
        );
    }
    if let Some(a) = &v.allocation {
        println!("  chosen automatically from pool {}", a.pool);
        for sk in &a.skipped {
            println!("    skipped {}: {}", sk.candidate, sk.reason);
        }
    }
    for e in &v.endpoints {
        println!(
            "  {} {} {} {}",
            e.sandbox,
            e.interface,
            e.ipv4.clone().or(e.ipv6.clone()).unwrap_or_default(),
            e.mac
        );
    }
}

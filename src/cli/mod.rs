//! Command-line parsing and output. Everything the user types is parsed here and handed to
//! [`crate::engine`]; everything printed is formatted here.

use crate::adapters::store::Store as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

// Named apart from `engine::sandbox`, which this file uses throughout.
#[path = "sandbox.rs"]
pub mod sandbox_cli;
pub use sandbox_cli::{CreateArgs, CreateCmd, ExecArgs, LogsArgs, RestartArgs, RunArgs, StartArgs};

use crate::engine::{self, gc, network, sandbox, tools, view, Ctx};

/// Docker-style container networking without Docker.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
// Each command's own options come first in its help, these after them.
#[command(next_help_heading = "Global options")]
pub struct Cli {
    /// Persistent state (networks, sandboxes, allocations).
    #[arg(
        long,
        global = true,
        env = "WEFT_STATE_DIR",
        default_value = "/var/lib/weft"
    )]
    pub state_dir: PathBuf,
    /// Runtime state (namespace handles, per-sandbox files).
    #[arg(long, global = true, env = "WEFT_RUN_DIR", default_value = "/run/weft")]
    pub run_dir: PathBuf,
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "WEFT_CONFIG",
        default_value = "/etc/weft/weft.toml"
    )]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether this is a command whose output a person reads or pipes (not the agent, a
    /// sandbox's monitor or init, which must survive their readers going away).
    pub fn prints_for_people(&self) -> bool {
        !matches!(
            self.command,
            Command::Daemon { action: None, .. } | Command::Monitor { .. } | Command::Init { .. }
        )
    }
}

impl Cli {
    /// The exit code when the command fails in weft itself: 125 for the commands that run a
    /// sandbox's command (as `docker run`, so that it differs from the command's own codes),
    /// 1 for the others.
    pub fn failure_code(&self) -> i32 {
        match self.command {
            Command::Run(_)
            | Command::Create(_)
            | Command::Start(_)
            | Command::Restart(_)
            | Command::Exec(_) => 125,
            _ => 1,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for programs.
    Json,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Create a sandbox and run a command in it.
    Run(RunArgs),
    /// Create a sandbox; its command, if given, runs at `weft start`.
    Create(CreateCmd),
    /// Start created or stopped sandboxes' commands.
    Start(StartArgs),
    /// Stop and start sandboxes' commands again.
    Restart(RestartArgs),
    /// Run a command in an existing sandbox.
    Exec(ExecArgs),
    /// Show a sandbox's output (of `run -d`, `start`).
    Logs(LogsArgs),
    /// List sandboxes.
    Ps {
        /// Include sandboxes that are not running.
        #[arg(short, long)]
        all: bool,
    },
    /// Show sandboxes in detail.
    Inspect {
        /// Sandbox names or ids.
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
    /// Stop a sandbox's command (SIGTERM, then SIGKILL).
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Sandbox names or ids.
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
    /// Remove sandboxes.
    Rm {
        /// Kill a running command first.
        #[arg(short, long)]
        force: bool,
        /// Sandbox names or ids.
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
    /// IP address management.
    #[command(subcommand)]
    Ipam(IpamCmd),
    /// List a sandbox's published ports.
    Port {
        /// Sandbox name or id.
        sandbox: String,
    },
    /// Remove what a crash left behind and reconcile state with the kernel.
    Gc,
    /// The host agent: repairs drift within a second and holds published ports. Without a
    /// subcommand it runs in the foreground (as systemd starts it); commands start it on
    /// demand.
    Daemon {
        /// Keep running when nothing weft-made is left (for a service manager; started on
        /// demand, the agent leaves then).
        #[arg(long)]
        stay: bool,
        /// What to do; nothing runs the agent.
        #[command(subcommand)]
        action: Option<DaemonCmd>,
    },
    /// Show weft working, inside a throwaway namespace.
    Demo,
    /// Small network probes (for demos and tests on machines without ping or nc).
    #[command(subcommand)]
    Tool(ToolCmd),
    /// Internal: PID 1 of a sandbox command's PID namespace.
    #[command(name = "__init", hide = true)]
    Init {
        /// Socket on which the spawning weft gives the go-ahead and hears the outcome.
        #[arg(long)]
        control_fd: Option<i32>,
        /// Working directory of the command.
        #[arg(long)]
        workdir: Option<String>,
        /// USER[:GROUP] the command runs as.
        #[arg(long)]
        user: Option<String>,
        /// HOME was given: not replaced by the user's home directory.
        #[arg(long)]
        keep_home: bool,
        /// Command and arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Internal: waits for a detached sandbox's command.
    #[command(name = "__monitor", hide = true)]
    Monitor {
        /// Sandbox id.
        id: String,
    },
}

/// `weft daemon ...`
#[derive(Debug, Subcommand)]
pub enum DaemonCmd {
    /// Whether the agent runs, its repairs and their causes, what it watches and holds.
    Status,
    /// Stop the agent (commands start it again when they need it).
    Stop,
    /// Ask the agent to check and repair everything now.
    Repair,
}

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

/// `weft ipam ...`
#[derive(Debug, Subcommand)]
pub enum IpamCmd {
    /// Ranges weft must never allocate.
    #[command(subcommand)]
    Avoid(AvoidCmd),
}

/// `weft ipam avoid ...`
#[derive(Debug, Subcommand)]
pub enum AvoidCmd {
    /// Add a range.
    Add {
        /// CIDR.
        cidr: String,
    },
    /// Remove a range.
    Rm {
        /// CIDR.
        cidr: String,
    },
    /// List ranges (config file and added ones).
    Ls,
}

/// `weft tool ...`
#[derive(Debug, Subcommand)]
pub enum ToolCmd {
    /// ICMP echo; exits 0 when answered.
    Ping {
        /// Destination.
        addr: IpAddr,
        /// Tries, one per 200 ms.
        #[arg(short, long, default_value_t = 10)]
        count: u32,
    },
    /// Accept TCP connections and tell each client its address.
    Serve {
        /// Address to listen on.
        addr: SocketAddr,
        /// Connections to serve before exiting.
        #[arg(short, long, default_value_t = 1)]
        count: u32,
        /// Seconds before giving up.
        #[arg(short, long, default_value_t = 30)]
        timeout: u64,
        /// Seconds to keep each connection open after answering.
        #[arg(long, default_value_t = 0)]
        hold: u64,
        /// UDP instead of TCP.
        #[arg(long)]
        udp: bool,
    },
    /// Send raw Ethernet frames from an interface (packet socket): what a sandbox with
    /// CAP_NET_RAW can do, for tests of the port guard.
    Frame {
        /// Interface to send from.
        iface: String,
        /// Frames in hex, Ethernet header included.
        #[arg(required = true)]
        frames: Vec<String>,
        /// Times to send each frame.
        #[arg(short, long, default_value_t = 1)]
        count: u32,
    },
    /// Count the frames an interface receives that contain markers (hex); prints
    /// `listening IFACE`, then one `MARKER=COUNT` line per marker.
    Sniff {
        /// Interface to listen on.
        iface: String,
        /// Byte strings to look for, in hex.
        #[arg(short, long = "marker", required = true)]
        markers: Vec<String>,
        /// Seconds to listen.
        #[arg(short, long, default_value_t = 3)]
        timeout: u64,
        /// Stop once every marker was seen this many times.
        #[arg(long)]
        until: Option<usize>,
    },
    /// Connect over TCP and print the server's answer.
    Connect {
        /// Server address.
        addr: SocketAddr,
        /// Seconds before giving up.
        #[arg(short, long, default_value_t = 3)]
        timeout: u64,
        /// UDP instead of TCP.
        #[arg(long)]
        udp: bool,
    },
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn opt(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".into())
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    // Probes and the demo need no state.
    match &cli.command {
        Command::Tool(t) => return run_tool(t),
        Command::Demo => return engine::demo::run(),
        // The init's exit code is its command's; nothing of weft's may be printed after it.
        Command::Init {
            control_fd,
            workdir,
            user,
            keep_home,
            command,
        } => std::process::exit(crate::adapters::init::run(
            *control_fd,
            &crate::adapters::init::InitOptions {
                workdir: workdir.clone(),
                user: user.clone(),
                keep_home: *keep_home,
            },
            command,
        )),
        _ => {}
    }
    if let Command::Daemon { action: None, stay } = &cli.command {
        return engine::agent::run(&cli.state_dir, &cli.run_dir, &cli.config, *stay);
    }
    let ctx = Ctx::open(&cli.state_dir, &cli.run_dir, &cli.config)?;
    let json = cli.format == Format::Json;
    match cli.command {
        Command::Network(n) => run_network(&ctx, n, json),
        Command::Run(r) => sandbox_cli::run(&ctx, r, json),
        Command::Create(c) => sandbox_cli::create(&ctx, c, json),
        Command::Exec(e) => sandbox_cli::exec(&ctx, e),
        Command::Start(a) => sandbox_cli::start(&ctx, a, json),
        Command::Restart(a) => sandbox_cli::restart(&ctx, a, json),
        Command::Logs(a) => sandbox_cli::logs(&ctx, a),
        Command::Ps { all } => {
            warn_unreadable(&ctx, "sandboxes")?;
            let list = sandbox::list(&ctx, all)?;
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
        Command::Inspect { sandboxes } => {
            let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
            let mut out = Vec::new();
            for s in &sandboxes {
                out.push(view::sandbox(&sandbox::find(tx.as_ref(), s)?));
            }
            print_json(&out)?;
            Ok(0)
        }
        Command::Stop { time, sandboxes } => {
            for s in &sandboxes {
                let sb = sandbox::stop(&ctx, s, Duration::from_secs(time))?;
                println!("{}", sb.name);
            }
            Ok(0)
        }
        Command::Rm { force, sandboxes } => {
            let (removed, errors) = sandbox::remove(&ctx, &sandboxes, force);
            for name in removed {
                println!("{name}");
            }
            let code = if errors.is_empty() { 0 } else { 1 };
            for e in errors {
                eprintln!("error: {e:#}");
            }
            Ok(code)
        }
        Command::Ipam(IpamCmd::Avoid(a)) => run_avoid(&ctx, a, json),
        Command::Port { sandbox: s } => {
            let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
            let sb = sandbox::find(tx.as_ref(), &s)?;
            if json {
                print_json(&sb.ports)?;
            } else {
                for m in &sb.ports {
                    println!("{m}");
                }
            }
            Ok(0)
        }
        Command::Gc => {
            let report = gc::run(&ctx)?;
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
        Command::Monitor { id } => {
            sandbox::monitor(&ctx, &id)?;
            Ok(0)
        }
        Command::Daemon { action, .. } => run_daemon(&ctx, action, json),
        Command::Tool(_) | Command::Demo | Command::Init { .. } => Ok(0),
    }
}

fn run_daemon(ctx: &Ctx, action: Option<DaemonCmd>, json: bool) -> Result<i32> {
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
    for e in &s.errors {
        println!("error: {e}");
    }
}

/// Names, on stderr, the records of `table` a listing skips because they cannot be read.
fn warn_unreadable(ctx: &Ctx, table: &str) -> Result<()> {
    let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
    for r in tx.corrupt_records()?.iter().filter(|r| r.table == table) {
        let rm = if table == "networks" {
            "weft network rm"
        } else {
            "weft rm"
        };
        eprintln!(
            "warning: skipping unreadable {r}; `{rm} {}` or `weft gc` removes it",
            r.name
        );
    }
    Ok(())
}

fn run_network(ctx: &Ctx, cmd: NetworkCmd, json: bool) -> Result<i32> {
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

fn run_avoid(ctx: &Ctx, cmd: AvoidCmd, json: bool) -> Result<i32> {
    use crate::adapters::store::Mode;
    let parse = |s: &str| -> Result<ipnet::IpNet> {
        s.parse::<ipnet::IpNet>()
            .map(|n| n.trunc())
            .map_err(|_| crate::user_err!("invalid CIDR {s:?}: expected e.g. 172.22.0.0/16"))
    };
    let tx = ctx.store.begin(Mode::Write)?;
    match cmd {
        AvoidCmd::Add { cidr } => {
            let n = parse(&cidr)?;
            tx.add_avoid(n)?;
            println!("{n}");
        }
        AvoidCmd::Rm { cidr } => {
            let n = parse(&cidr)?;
            if !tx.remove_avoid(n)? {
                return Err(crate::user_err!(
                    "{n} is not in the avoid list (ranges from the config file are removed there)"
                ));
            }
            println!("{n}");
        }
        AvoidCmd::Ls => {
            let entries = network::avoid_entries(ctx, tx.as_ref())?;
            if json {
                print_json(
                    &entries
                        .iter()
                        .map(
                            |e| serde_json::json!({"cidr": e.cidr.to_string(), "source": e.source}),
                        )
                        .collect::<Vec<_>>(),
                )?;
            } else {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| vec![e.cidr.to_string(), e.source.clone()])
                    .collect();
                print!("{}", view::table(&["CIDR", "SOURCE"], &rows));
            }
        }
    }
    tx.commit()?;
    Ok(0)
}

fn run_tool(t: &ToolCmd) -> Result<i32> {
    match t {
        ToolCmd::Ping { addr, count } => {
            let n = tools::ping(*addr, *count, Duration::from_secs(10))?;
            if n > 0 {
                println!("{addr} answered");
                Ok(0)
            } else {
                println!("{addr} did not answer");
                Ok(1)
            }
        }
        ToolCmd::Serve {
            addr,
            count,
            timeout,
            udp: true,
            ..
        } => {
            tools::serve_udp(*addr, *count, Duration::from_secs(*timeout))?;
            Ok(0)
        }
        ToolCmd::Connect {
            addr,
            timeout,
            udp: true,
        } => {
            print!(
                "{}",
                tools::connect_udp(*addr, Duration::from_secs(*timeout))?
            );
            Ok(0)
        }
        ToolCmd::Serve {
            addr,
            count,
            timeout,
            hold,
            ..
        } => {
            tools::serve(
                *addr,
                *count,
                Duration::from_secs(*timeout),
                Duration::from_secs(*hold),
            )?;
            Ok(0)
        }
        ToolCmd::Connect { addr, timeout, .. } => {
            print!("{}", tools::connect(*addr, Duration::from_secs(*timeout))?);
            Ok(0)
        }
        ToolCmd::Frame {
            iface,
            frames,
            count,
        } => {
            let frames = frames
                .iter()
                .map(|f| tools::parse_hex(f))
                .collect::<Result<Vec<_>>>()?;
            tools::send_frames(iface, &frames, *count)?;
            Ok(0)
        }
        ToolCmd::Sniff {
            iface,
            markers,
            timeout,
            until,
        } => {
            let bytes = markers
                .iter()
                .map(|m| tools::parse_hex(m))
                .collect::<Result<Vec<_>>>()?;
            let counts = tools::sniff(iface, &bytes, Duration::from_secs(*timeout), *until)?;
            for (m, c) in markers.iter().zip(counts) {
                println!("{m}={c}");
            }
            Ok(0)
        }
    }
}

//! Command-line parsing and output. Everything the user types is parsed here and handed to
//! [`crate::engine`]; everything printed is formatted here.

mod cluster;
mod daemon;
mod gc;
mod inspect;
mod ipam;
mod network;
mod output;
mod parse;
mod ps;
// Named apart from `engine::sandbox`, which this file uses throughout.
#[path = "sandbox.rs"]
mod sandbox_cli;
mod stop;
mod wait;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{self, sandbox, tools, Ctx};
pub use daemon::DaemonCmd;
pub use ipam::{AvoidCmd, IpamCmd};
pub use network::{NetworkCmd, NetworkCreateArgs};
pub use parse::parse;
pub use sandbox_cli::{CreateArgs, CreateCmd, ExecArgs, LogsArgs, RestartArgs, RunArgs, StartArgs};

/// Docker-style container networking without Docker.
#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about,
    propagate_version = true,
    // As Docker's flags: an option given twice takes the last value (`-d -d` is `-d`).
    args_override_self = true,
    after_help = "Environment: WEFT_STATE_DIR, WEFT_RUN_DIR and WEFT_CONFIG set the defaults of \
--state-dir, --run-dir and --config."
)]
pub struct Cli {
    /// The options every command takes.
    #[command(flatten)]
    pub globals: Globals,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The options every command takes (also read by the one-subcommand parse, `parse.rs`).
#[derive(Debug, Args)]
pub struct Globals {
    /// Persistent state (networks, sandboxes, allocations).
    #[arg(
        long,
        global = true,
        env = "WEFT_STATE_DIR",
        hide_env = true,
        default_value = "/var/lib/weft",
        help_heading = "Global options"
    )]
    pub state_dir: PathBuf,
    /// Runtime state (namespace handles, per-sandbox files).
    #[arg(
        long,
        global = true,
        env = "WEFT_RUN_DIR",
        hide_env = true,
        default_value = "/run/weft",
        help_heading = "Global options"
    )]
    pub run_dir: PathBuf,
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "WEFT_CONFIG",
        hide_env = true,
        default_value = "/etc/weft/weft.toml",
        help_heading = "Global options"
    )]
    pub config: PathBuf,
    /// Output format: table or json (default: each command's own; see README, JSON output).
    #[arg(
        long,
        global = true,
        value_enum,
        hide_possible_values = true,
        // As Docker's flags: given twice, the last one counts.
        overrides_with = "format",
        help_heading = "Global options"
    )]
    pub format: Option<Format>,
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

    /// Whether the process ends as soon as its work is done, in milliseconds: the commands an
    /// orchestrator runs once per sandbox. Those keep the bump arena as their heap
    /// (`adapters::arena`); every other process (the agent, a monitor, a foreground `run`,
    /// `logs -f`) goes to the system allocator right after parsing.
    pub fn is_one_shot(&self) -> bool {
        matches!(
            self.command,
            Command::Create(_)
                | Command::Rm(_)
                | Command::Stop { .. }
                | Command::Kill(_)
                | Command::Ps(_)
                | Command::Inspect { .. }
                | Command::Network(_)
                | Command::Ipam(_)
                | Command::Port { .. }
        )
    }

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
    Ps(ps::PsArgs),
    /// Show sandboxes (or networks) in detail.
    #[command(after_help = inspect::INSPECT_EXAMPLES)]
    Inspect {
        /// Sandbox (or network) names or ids.
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
    /// Stop a sandbox's command (SIGTERM, then SIGKILL).
    #[command(
        after_help = "Examples:\n  weft stop api                       SIGTERM, SIGKILL after 10 s; its host ports are freed\n  weft stop -t 0 api db               SIGKILL at once, both\n  weft stop api --format json         {\"stopped\": [\"api\"], \"errors\": []}"
    )]
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Sandbox names or ids.
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
    /// Send a signal to sandboxes' commands (SIGKILL unless -s).
    #[command(after_help = stop::KILL_EXAMPLES)]
    Kill(stop::KillArgs),
    /// Block until sandboxes' commands exit, then print their exit codes.
    #[command(after_help = wait::EXAMPLES)]
    Wait {
        /// Sandbox names or ids.
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
    /// Remove sandboxes.
    #[command(
        after_help = "Examples:\n  weft rm api                         a sandbox whose command does not run\n  weft rm -f api                      kill its command first\n  weft rm -f $(weft ps -aq)           every sandbox"
    )]
    Rm(stop::RmArgs),
    /// IP address management.
    #[command(
        subcommand,
        after_help = "Examples:\n  weft ipam avoid add 10.0.0.0/8\n  weft ipam avoid ls"
    )]
    Ipam(IpamCmd),
    /// List a sandbox's published ports.
    #[command(after_help = inspect::PORT_EXAMPLES)]
    Port {
        /// Sandbox name or id.
        sandbox: String,
        /// Only this sandbox port: PORT[/tcp|udp|sctp] (tcp when not given), as Docker's.
        #[arg(value_parser = inspect::parse_private_port)]
        port: Option<(u16, crate::core::ports::Protocol)>,
    },
    /// Remove what a crash left behind and reconcile state with the kernel.
    #[command(after_help = gc::EXAMPLES)]
    Gc,
    /// The host agent: repairs drift within a second and holds published ports. Without a
    /// subcommand it runs in the foreground (as systemd starts it); commands start it on
    /// demand.
    #[command(after_help = daemon::EXAMPLES)]
    Daemon {
        /// Keep running when nothing weft-made is left (for a service manager; started on
        /// demand, the agent leaves then).
        #[arg(long)]
        stay: bool,
        /// The cluster to join (overlay networks).
        #[command(flatten)]
        cluster: daemon::ClusterArgs,
        /// What to do; nothing runs the agent.
        #[command(subcommand)]
        action: Option<DaemonCmd>,
    },
    /// The cluster of overlay networks (through the agent).
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Show weft working, inside a throwaway namespace.
    #[command(
        after_help = "Examples:\n  sudo weft demo                      leaves nothing behind on the machine"
    )]
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
        /// Relay the command's output to stdout with each line's time (a detached log).
        #[arg(long)]
        timestamps: bool,
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

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match run_command(cli) {
        // A usage error exits 2, as clap's own do, before anything was done.
        Err(e) if e.is::<output::UsageError>() => {
            eprintln!("error: {e}");
            Ok(2)
        }
        other => other,
    }
}

fn run_command(cli: Cli) -> Result<i32> {
    let format = cli.globals.format;
    // Probes and the demo need no state.
    match &cli.command {
        Command::Tool(t) => {
            output::style(format, "tool", output::Kind::TextOnly)?;
            return run_tool(t);
        }
        Command::Demo => {
            output::style(format, "demo", output::Kind::TextOnly)?;
            return engine::demo::run();
        }
        // The init's exit code is its command's; nothing of weft's may be printed after it.
        Command::Init {
            control_fd,
            workdir,
            user,
            keep_home,
            timestamps,
            command,
        } => std::process::exit(crate::adapters::init::run(
            *control_fd,
            &crate::adapters::init::InitOptions {
                workdir: workdir.clone(),
                user: user.clone(),
                keep_home: *keep_home,
                timestamps: *timestamps,
            },
            command,
        )),
        _ => {}
    }
    if let Command::Daemon {
        action: None,
        stay,
        cluster,
    } = &cli.command
    {
        output::style(format, "daemon", output::Kind::TextOnly)?;
        return engine::agent::run(
            &cli.globals.state_dir,
            &cli.globals.run_dir,
            &cli.globals.config,
            *stay,
            cluster.settings(),
        );
    }
    if let Command::Daemon {
        action: Some(_),
        cluster,
        ..
    } = &cli.command
    {
        if cluster.given() {
            return Err(anyhow::Error::new(output::UsageError(
                "the cluster flags (--etcd, --advertise, ...) configure the agent when it starts: give them to `weft daemon` without a subcommand".into(),
            )));
        }
    }
    let ctx = Ctx::open(
        &cli.globals.state_dir,
        &cli.globals.run_dir,
        &cli.globals.config,
    )?;
    match cli.command {
        Command::Network(n) => network::run_network(&ctx, n, format),
        Command::Run(r) => sandbox_cli::run(&ctx, r, format),
        Command::Create(c) => sandbox_cli::create(&ctx, c, format),
        Command::Exec(e) => sandbox_cli::exec(&ctx, e, format),
        Command::Start(a) => sandbox_cli::start(&ctx, a, format),
        Command::Restart(a) => sandbox_cli::restart(&ctx, a, format),
        Command::Logs(a) => sandbox_cli::logs(&ctx, a, format),
        Command::Ps(args) => ps::run_ps(&ctx, &args, format),
        Command::Inspect { sandboxes } => inspect::run_inspect(&ctx, &sandboxes, format),
        Command::Stop { time, sandboxes } => stop::run_stop(&ctx, &sandboxes, time, format),
        Command::Kill(a) => stop::run_kill(&ctx, &a, format),
        Command::Wait { sandboxes } => wait::run_wait(&ctx, &sandboxes, format),
        Command::Rm(a) => stop::run_rm(&ctx, &a.sandboxes, a.force, format),
        Command::Ipam(IpamCmd::Avoid(a)) => ipam::run_avoid(&ctx, a, format),
        Command::Port { sandbox: s, port } => inspect::run_port(&ctx, &s, port, format),
        Command::Gc => gc::run_gc(&ctx, format),
        Command::Monitor { id } => {
            sandbox::monitor(&ctx, &id)?;
            Ok(0)
        }
        Command::Daemon { action, .. } => daemon::run_daemon(&ctx, action, format),
        Command::Cluster(c) => cluster::run_cluster(&ctx, c, format),
        Command::Tool(_) | Command::Demo | Command::Init { .. } => Ok(0),
    }
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

//! The sandbox lifecycle commands (`weft run`, `create`, `start`, `restart`, `exec`,
//! `logs`): their flags and handlers.

use anyhow::Result;
use clap::Args;

use super::output::{self, print_json, Kind, Style, UsageError};
use super::Format;
use crate::adapters::store::Store as _;
use crate::engine::{sandbox, view, Ctx};
use crate::user_err;

/// Flags shared by `create` and `run`. Options end at `--` or at the first word that is
/// not an option (the command); an unknown option is a usage error.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Sandbox name.
    #[arg(long)]
    pub name: Option<String>,
    /// Networks to join, in order (`host`, `none` or network names).
    #[arg(long = "network", alias = "net")]
    pub networks: Vec<String>,
    /// Static IPv4 or IPv6 address on the first network.
    #[arg(long)]
    pub ip: Vec<String>,
    /// Static IPv6 address on the first network.
    #[arg(long)]
    pub ip6: Vec<String>,
    /// Extra names on every network.
    #[arg(long, visible_alias = "network-alias")]
    pub alias: Vec<String>,
    /// MAC address of the first network's interface.
    #[arg(long)]
    pub mac_address: Option<String>,
    /// Hostname inside the sandbox.
    #[arg(long, short = 'h')]
    pub hostname: Option<String>,
    /// Add a line to the sandbox's /etc/hosts: NAME:IP (IP may be host-gateway).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Name server for the sandbox's resolv.conf (replaces the host's).
    #[arg(long)]
    pub dns: Vec<String>,
    /// Search domain for the sandbox's resolv.conf (replaces the host's).
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Resolver option for the sandbox's resolv.conf (replaces the host's).
    #[arg(long, alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Set an environment variable: NAME=VALUE, or NAME to pass weft's own.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file, one NAME=VALUE per line.
    #[arg(long)]
    pub env_file: Vec<String>,
    /// Working directory of the command (absolute).
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Run the command as USER[:GROUP] (names or numeric ids).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Restart policy: no, on-failure[:MAX-RETRIES], always, unless-stopped.
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Labels KEY=VALUE (KEY alone: an empty value).
    #[arg(long)]
    pub label: Vec<String>,
    /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp|/sctp].
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Keep stdin attached (it always is in the foreground; accepted as in Docker).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Accepted as in Docker; weft allocates no pseudo-terminal: the command gets weft's own
    /// standard streams, a terminal when weft runs on one.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Accepted as in Docker: weft's own init is always PID 1 of the command's PID namespace.
    #[arg(long)]
    pub init: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Command and arguments.
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    pub command: Vec<String>,
}

/// `weft create`.
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    after_help = "Examples:\n  weft create --name api --network web -p 8080:80 -- my-server --port 80\n  weft start -a api\n  weft create --name idle --network web     # no command: a namespace to exec into"
)]
pub struct CreateCmd {
    /// Remove the sandbox when its command exits (after `weft start`).
    #[arg(long)]
    pub rm: bool,
    /// Sandbox flags.
    #[command(flatten)]
    pub sandbox: CreateArgs,
}

/// `weft run` flags.
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    after_help = "Examples:\n  weft run --network web -e MODE=dev -- sh\n  weft run -d --name api --restart on-failure:5 -p 8080:80 -- my-server\n  weft run --rm --dns 1.1.1.1 --add-host db:10.0.0.5 -- cat /etc/hosts /etc/resolv.conf\n\nExit codes: the command's own (128+N when signal N killed it); 125 when weft itself\nfails, 126 when the command cannot be executed, 127 when it is not found."
)]
pub struct RunArgs {
    /// Run in the background and print the sandbox id.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the sandbox when the command exits.
    #[arg(long)]
    pub rm: bool,
    /// Sandbox flags.
    #[command(flatten)]
    pub sandbox: CreateArgs,
}

/// `weft exec` flags.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  weft exec api -- ip addr\n  weft exec -e DEBUG=1 -w /tmp api sh -c 'env; pwd'\n  weft exec -d api -- sh -c 'sleep 60 > /dev/null'   returns at once; ends with the sandbox\n\nExit codes as `weft run`: 125, 126, 127, or the command's own."
)]
pub struct ExecArgs {
    /// Run in the background: return once the command runs; its output is discarded.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin attached (it always is; accepted as in Docker).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Accepted as in Docker; no pseudo-terminal is allocated (see `weft run --help`).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (besides the sandbox's own): NAME=VALUE or NAME.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory of the command (absolute).
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Run the command as USER[:GROUP] (names or numeric ids).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Sandbox name or id.
    pub sandbox: String,
    /// Command and arguments.
    #[arg(value_name = "CMD", trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

pub(crate) fn sandbox_request(a: &CreateArgs, auto_remove: bool) -> sandbox::SandboxRequest {
    sandbox::SandboxRequest {
        name: a.name.clone(),
        networks: a.networks.clone(),
        ips: a.ip.clone(),
        ip6: a.ip6.clone(),
        aliases: a.alias.clone(),
        hostname: a.hostname.clone(),
        labels: a.label.clone(),
        command: a.command.clone(),
        auto_remove,
        ports: a.publish.clone(),
        mac_address: a.mac_address.clone(),
        add_hosts: a.add_host.clone(),
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        restart: a.restart.clone(),
    }
}

/// `weft start` flags.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  weft create --name api -- my-server && weft start api\n  weft start -a api     # follow its output; exit with its exit code"
)]
pub struct StartArgs {
    /// Follow the command's output and exit with its exit code.
    #[arg(short, long)]
    pub attach: bool,
    /// Sandbox names or ids.
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

/// `weft restart` flags.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  weft restart api\n  weft restart -t 0 api    # SIGKILL at once"
)]
pub struct RestartArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    /// Sandbox names or ids.
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
}

/// `weft logs` flags.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  weft logs api\n  weft logs -f --tail 20 api    # the last 20 lines, then follow until the command exits\n  weft logs -t --since 10m api  # the last ten minutes, each line with its time\n  weft logs --since 2026-01-02T15:00:00Z --until 2026-01-02T16:00:00+00:00 api"
)]
pub struct LogsArgs {
    /// Keep printing new output until the sandbox's command exits (and is not restarted).
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (`all`: everything).
    #[arg(short = 'n', long, default_value = "all", value_parser = parse_tail)]
    pub tail: Tail,
    /// Show each line's time (RFC 3339, UTC, nanoseconds), as Docker's `logs -t`.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only lines from this time on: 2026-01-02T15:04:05Z, a duration ago (10m, 1h30m) or
    /// Unix seconds.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<crate::core::time::Timestamp>,
    /// Only lines before this time (same forms as --since); -f stops once it has passed.
    #[arg(long, value_parser = parse_until)]
    pub until: Option<crate::core::time::Timestamp>,
    /// Sandbox name or id.
    pub sandbox: String,
}

/// How much of a log `weft logs` prints first.
#[derive(Debug, Clone, Copy)]
pub enum Tail {
    /// All of it.
    All,
    /// The last lines.
    Lines(u64),
}

fn parse_since(s: &str) -> Result<crate::core::time::Timestamp, String> {
    crate::core::time::parse("--since", s, sandbox::logs::now()).map_err(|e| e.to_string())
}

fn parse_until(s: &str) -> Result<crate::core::time::Timestamp, String> {
    crate::core::time::parse("--until", s, sandbox::logs::now()).map_err(|e| e.to_string())
}

fn parse_tail(s: &str) -> Result<Tail, String> {
    if s == "all" {
        return Ok(Tail::All);
    }
    s.parse()
        .map(Tail::Lines)
        .map_err(|_| format!("expected a number of lines or `all`, not {s:?}"))
}

/// `weft run`.
pub fn run(ctx: &Ctx, r: RunArgs, format: Option<Format>) -> Result<i32> {
    // In the foreground the command's own output is all there is: no format applies.
    let kind = if r.detach { Kind::Text } else { Kind::TextOnly };
    let style = output::style(format, "run", kind)?;
    if r.sandbox.command.is_empty() {
        return Err(UsageError(
            "weft run needs a command: weft run [OPTIONS] [--] CMD [ARG...]".into(),
        )
        .into());
    }
    let req = sandbox_request(&r.sandbox, r.rm);
    if r.sandbox.restart != "no" {
        if r.rm {
            return Err(user_err!("conflicting options: --restart and --rm"));
        }
        if !r.detach {
            return Err(user_err!(
                "--restart needs -d: a foreground `weft run` ends with its command (or use `weft create` and `weft start`)"
            ));
        }
    }
    if r.detach {
        let sb = sandbox::run_detached(ctx, &req)?;
        if style == Style::Json {
            print_json(&view::sandbox(&sb))?;
        } else {
            println!("{}", sb.id);
        }
        Ok(0)
    } else {
        sandbox::run_foreground(ctx, &req)
    }
}

/// `weft create`.
pub fn create(ctx: &Ctx, c: CreateCmd, format: Option<Format>) -> Result<i32> {
    let style = output::style(format, "create", Kind::Text)?;
    if c.rm && c.sandbox.restart != "no" {
        return Err(user_err!("conflicting options: --restart and --rm"));
    }
    let req = sandbox_request(&c.sandbox, c.rm);
    let sb = sandbox::create(ctx, &req)?;
    if style == Style::Json {
        print_json(&view::sandbox(&sb))?;
    } else {
        println!("{}", sb.id);
    }
    Ok(0)
}

/// `weft exec`.
pub fn exec(ctx: &Ctx, e: ExecArgs, format: Option<Format>) -> Result<i32> {
    output::style(format, "exec", Kind::TextOnly)?;
    let opts = sandbox::ExecOptions {
        env: e.env,
        workdir: e.workdir,
        user: e.user,
        detach: e.detach,
    };
    sandbox::exec(ctx, &e.sandbox, &e.command, &opts)
}

/// `weft start`: each sandbox's stored command, under a monitor, as `run -d` does.
pub fn start(ctx: &Ctx, a: StartArgs, format: Option<Format>) -> Result<i32> {
    let kind = if a.attach { Kind::TextOnly } else { Kind::Text };
    let style = output::style(format, "start", kind)?;
    if a.attach {
        let [name] = a.sandboxes.as_slice() else {
            return Err(user_err!(
                "you cannot start and attach multiple sandboxes at once"
            ));
        };
        let from = sandbox::logs::size(ctx, name)?;
        let (sb, report) = sandbox::start_reporting(ctx, name)?;
        let plain = crate::core::logline::Show::default();
        sandbox::logs::print(ctx, &sb.id, Some(from), Tail::All.into(), true, plain)?;
        return sandbox::logs::final_code(ctx, &sb.id, report);
    }
    each(&a.sandboxes, style, "started", |name| {
        sandbox::start(ctx, name)
    })
}

/// `weft restart`: stop (SIGTERM, SIGKILL after `-t`), then start.
pub fn restart(ctx: &Ctx, a: RestartArgs, format: Option<Format>) -> Result<i32> {
    let style = output::style(format, "restart", Kind::Text)?;
    each(&a.sandboxes, style, "restarted", |name| {
        sandbox::stop(ctx, name, std::time::Duration::from_secs(a.time))?;
        sandbox::start(ctx, name)
    })
}

/// Does `act` for every name, as `stop` and `rm` do (and Docker's `start` and `restart`):
/// prints each name done (text) or `{"<done>": [names], "errors": [messages]}` (JSON), each
/// error on stderr. The exit code: 0 when all went well; for one name its failure's code
/// (125, or 126/127 for a command that cannot run), as `weft run`'s; for several, 1.
fn each(
    names: &[String],
    style: Style,
    done: &str,
    act: impl Fn(&str) -> Result<crate::core::model::Sandbox>,
) -> Result<i32> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    let mut code = 0;
    for name in names {
        match act(name) {
            Ok(sb) => {
                if style == Style::Text {
                    println!("{}", sb.name);
                }
                ok.push(sb.name);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                code = if names.len() == 1 {
                    failure_code(&e)
                } else {
                    1
                };
                errors.push(format!("{e:#}"));
            }
        }
    }
    if style == Style::Json {
        print_json(&Outcome {
            done,
            names: ok,
            errors,
        })?;
    }
    Ok(code)
}

/// `{"<done>": [names], "errors": [messages]}`, in that order (as `stop`'s document).
struct Outcome<'a> {
    done: &'a str,
    names: Vec<String>,
    errors: Vec<String>,
}

impl serde::Serialize for Outcome<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry(self.done, &self.names)?;
        m.serialize_entry("errors", &self.errors)?;
        m.end()
    }
}

/// The exit code of a start that failed: Docker's 126 or 127 for a command that cannot run,
/// 125 for anything else.
fn failure_code(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<crate::adapters::process::StartError>()
                .map(|s| s.code)
                .or_else(|| {
                    c.downcast_ref::<std::io::Error>()
                        .and_then(crate::adapters::process::start_error)
                        .map(|s| s.code)
                })
        })
        .unwrap_or(125)
}

/// `weft logs`.
pub fn logs(ctx: &Ctx, a: LogsArgs, format: Option<Format>) -> Result<i32> {
    output::style(format, "logs", Kind::TextOnly)?;
    let id = {
        let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
        sandbox::find(tx.as_ref(), &a.sandbox)?.id
    };
    let show = crate::core::logline::Show {
        timestamps: a.timestamps,
        since: a.since,
        until: a.until,
    };
    sandbox::logs::print(ctx, &id, None, a.tail.into(), a.follow, show)?;
    Ok(0)
}

impl From<Tail> for Option<u64> {
    fn from(t: Tail) -> Self {
        match t {
            Tail::All => None,
            Tail::Lines(n) => Some(n),
        }
    }
}

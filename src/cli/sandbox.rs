//! `weft run`, `create` and `exec`: their flags and handlers.

use anyhow::Result;
use clap::Args;

use super::print_json;
use crate::engine::{sandbox, view, Ctx};

/// Flags shared by `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Sandbox name.
    #[arg(long)]
    pub name: Option<String>,
    /// Networks to join, in order (`host`, `none` or network names).
    #[arg(long = "network", alias = "net")]
    pub networks: Vec<String>,
    /// Static address on the first network.
    #[arg(long)]
    pub ip: Vec<String>,
    /// Extra names on every network.
    #[arg(long)]
    pub alias: Vec<String>,
    /// Hostname inside the sandbox.
    #[arg(long, short = 'H')]
    pub hostname: Option<String>,
    /// Labels K=V.
    #[arg(long)]
    pub label: Vec<String>,
    /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp|/sctp].
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Command and arguments (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `weft create [NAME]`.
#[derive(Debug, Args)]
pub struct CreateCmd {
    /// Sandbox name (same as --name).
    #[arg(value_name = "NAME", conflicts_with = "name")]
    pub positional_name: Option<String>,
    /// Sandbox flags.
    #[command(flatten)]
    pub sandbox: CreateArgs,
}

/// `weft run` flags.
#[derive(Debug, Args)]
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
pub struct ExecArgs {
    /// Sandbox name or id.
    pub sandbox: String,
    /// Command and arguments (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub(crate) fn sandbox_request(a: &CreateArgs, auto_remove: bool) -> sandbox::SandboxRequest {
    sandbox::SandboxRequest {
        name: a.name.clone(),
        networks: a.networks.clone(),
        ips: a.ip.clone(),
        aliases: a.alias.clone(),
        hostname: a.hostname.clone(),
        labels: a.label.clone(),
        command: a.command.clone(),
        auto_remove,
        ports: a.publish.clone(),
    }
}

/// `weft run`.
pub fn run(ctx: &Ctx, r: RunArgs, json: bool) -> Result<i32> {
    if r.sandbox.command.is_empty() {
        return Err(crate::user_err!(
            "weft run needs a command: weft run [OPTIONS] -- CMD [ARG...]"
        ));
    }
    let req = sandbox_request(&r.sandbox, r.rm);
    if r.detach {
        let sb = sandbox::run_detached(ctx, &req)?;
        if json {
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
pub fn create(ctx: &Ctx, c: CreateCmd, json: bool) -> Result<i32> {
    let mut req = sandbox_request(&c.sandbox, false);
    if c.positional_name.is_some() {
        req.name = c.positional_name;
    }
    let sb = sandbox::create(ctx, &req)?;
    if json {
        print_json(&view::sandbox(&sb))?;
    } else {
        println!("{}", sb.id);
    }
    Ok(0)
}

/// `weft exec`.
pub fn exec(ctx: &Ctx, e: ExecArgs) -> Result<i32> {
    sandbox::exec(ctx, &e.sandbox, &e.command)
}

//! `weft inspect` and `weft port`: one sandbox in detail.

use anyhow::Result;

use super::output::{self, print_json, Kind, Style};
use super::Format;
use crate::adapters::store::Store as _;
use crate::core::ports::Protocol;
use crate::engine::{sandbox, view, Ctx};

/// Examples shown by `weft inspect --help`.
pub const INSPECT_EXAMPLES: &str = "\
Examples:
  weft inspect web                    the sandbox as JSON (always JSON, as docker inspect)
  weft inspect web db                 an array of both
  weft inspect backend                a network, when no sandbox has that name
  weft inspect web | jq -r '.[0].networks[0].ipv4'";

/// Examples shown by `weft port --help`.
pub const PORT_EXAMPLES: &str = "\
Examples:
  weft port web                       80/tcp -> 0.0.0.0:8080, one line per host port
  weft port web 80                    0.0.0.0:8080: where its port 80/tcp is published
  weft port web --format json         the same as an array of objects";

/// One object `weft inspect` shows.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Inspected {
    /// A sandbox, as `ps --format json`.
    Sandbox(Box<view::SandboxView>),
    /// A network (a name no sandbox has), as `network inspect --format json`.
    Network(Box<view::NetworkView>),
}

/// Prints sandboxes as JSON; a name that is no sandbox's but a network's shows the network,
/// as `docker inspect` looks through every kind of object.
pub fn run_inspect(ctx: &Ctx, sandboxes: &[String], format: Option<Format>) -> Result<i32> {
    output::style(format, "inspect", Kind::Json)?;
    let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
    let mut out = Vec::new();
    for s in sandboxes {
        let found = match tx.sandbox(s)? {
            Some(sb) => Inspected::Sandbox(Box::new(view::sandbox(&sandbox::as_seen(sb)))),
            None => match tx.network(s)? {
                Some(net) => Inspected::Network(Box::new(view::network(&net, &tx.sandboxes()?))),
                // The sandbox error: sandboxes are what `inspect` is mostly for.
                None => {
                    sandbox::find(tx.as_ref(), s)?;
                    continue;
                }
            },
        };
        out.push(found);
    }
    print_json(&out)?;
    Ok(0)
}

/// Parses `weft port`'s PORT[/PROTO].
pub fn parse_private_port(s: &str) -> Result<(u16, Protocol), String> {
    let bad = || format!("expected PORT[/tcp|udp|sctp] with PORT 1 to 65535, not {s:?}");
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return Err(bad()),
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok((p, proto)),
        _ => Err(bad()),
    }
}

/// Prints a sandbox's published ports; with `only`, those of that sandbox port, as
/// Docker's `port CONTAINER PORT`: `HOST_IP:HOST_PORT` lines, an error if there are none.
pub fn run_port(
    ctx: &Ctx,
    s: &str,
    only: Option<(u16, Protocol)>,
    format: Option<Format>,
) -> Result<i32> {
    let style = output::style(format, "port", Kind::Text)?;
    let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
    let sb = sandbox::find(tx.as_ref(), s)?;
    let ports: Vec<_> = sb
        .ports
        .iter()
        .filter(|m| only.is_none_or(|(p, proto)| m.container_port == p && m.protocol == proto))
        .collect();
    if let Some((p, proto)) = only {
        if ports.is_empty() {
            return Err(crate::user_err!(
                "no public port '{p}/{}' published for {:?}",
                proto.name(),
                sb.name
            ));
        }
    }
    if style == Style::Json {
        print_json(&ports)?;
    } else if only.is_some() {
        for m in &ports {
            match m.host_ip {
                std::net::IpAddr::V6(a) => println!("[{a}]:{}", m.host_port),
                std::net::IpAddr::V4(a) => println!("{a}:{}", m.host_port),
            }
        }
    } else {
        for m in &ports {
            println!("{m}");
        }
    }
    Ok(0)
}

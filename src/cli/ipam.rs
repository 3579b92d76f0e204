//! `weft ipam ...`: the avoid list.

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;

use super::output::{self, print_json, table, Kind, Style};
use super::Format;
use crate::adapters::store::Store as _;
use crate::engine::{network, Ctx};

/// `weft ipam ...`
#[derive(Debug, Subcommand)]
pub enum IpamCmd {
    /// Ranges weft must never allocate.
    #[command(subcommand, after_help = AVOID_EXAMPLES)]
    Avoid(AvoidCmd),
}

const AVOID_EXAMPLES: &str = "\
Examples:
  weft ipam avoid add 10.0.0.0/8      never choose a subnet inside the office network
  weft ipam avoid ls                  the ranges, from the config file and added here
  weft ipam avoid rm 10.0.0.0/8";

/// `weft ipam avoid ...`
#[derive(Debug, Subcommand)]
pub enum AvoidCmd {
    /// Add a range.
    #[command(after_help = "Example:\n  weft ipam avoid add 192.168.0.0/16")]
    Add {
        /// CIDR.
        cidr: String,
    },
    /// Remove a range.
    #[command(after_help = "Example:\n  weft ipam avoid rm 192.168.0.0/16")]
    Rm {
        /// CIDR.
        cidr: String,
    },
    /// List ranges (config file and added ones).
    #[command(after_help = "Examples:\n  weft ipam avoid ls\n  weft ipam avoid ls --format json")]
    Ls,
}

/// One avoid range, as `ipam avoid ls --format json` lists it and `add`/`rm` print it.
#[derive(Debug, Serialize)]
struct AvoidView {
    /// The range.
    cidr: String,
    /// `config` or `weft ipam avoid`.
    source: String,
}

/// Runs `weft ipam avoid ...`.
pub fn run_avoid(ctx: &Ctx, cmd: AvoidCmd, format: Option<Format>) -> Result<i32> {
    use crate::adapters::store::Mode;
    let (name, kind) = match cmd {
        AvoidCmd::Add { .. } => ("ipam avoid add", Kind::Text),
        AvoidCmd::Rm { .. } => ("ipam avoid rm", Kind::Text),
        AvoidCmd::Ls => ("ipam avoid ls", Kind::Table),
    };
    let style = output::style(format, name, kind)?;
    let parse = |s: &str| -> Result<ipnet::IpNet> {
        s.parse::<ipnet::IpNet>()
            .map(|n| n.trunc())
            .map_err(|_| crate::user_err!("invalid CIDR {s:?}: expected e.g. 172.22.0.0/16"))
    };
    let print_one = |n: ipnet::IpNet| -> Result<()> {
        if style == Style::Json {
            print_json(&AvoidView {
                cidr: n.to_string(),
                source: "weft ipam avoid".into(),
            })
        } else {
            println!("{n}");
            Ok(())
        }
    };
    let tx = ctx.store.begin(Mode::Write)?;
    match cmd {
        AvoidCmd::Add { cidr } => {
            let n = parse(&cidr)?;
            tx.add_avoid(n)?;
            tx.commit()?;
            print_one(n)?;
        }
        AvoidCmd::Rm { cidr } => {
            let n = parse(&cidr)?;
            if !tx.remove_avoid(n)? {
                return Err(crate::user_err!(
                    "{n} is not in the avoid list (ranges from the config file are removed there)"
                ));
            }
            tx.commit()?;
            print_one(n)?;
        }
        AvoidCmd::Ls => {
            let entries = network::avoid_entries(ctx, tx.as_ref())?;
            drop(tx);
            if style == Style::Json {
                print_json(
                    &entries
                        .iter()
                        .map(|e| AvoidView {
                            cidr: e.cidr.to_string(),
                            source: e.source.clone(),
                        })
                        .collect::<Vec<_>>(),
                )?;
            } else {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| vec![e.cidr.to_string(), e.source.clone()])
                    .collect();
                print!("{}", table(&["CIDR", "SOURCE"], &rows));
            }
        }
    }
    Ok(0)
}

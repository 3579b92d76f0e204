//! `weft ipam ...`: the avoid list.

use anyhow::Result;
use clap::Subcommand;

use super::output::print_json;
use crate::adapters::store::Store as _;
use crate::engine::{network, view, Ctx};

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

pub fn run_avoid(ctx: &Ctx, cmd: AvoidCmd, json: bool) -> Result<i32> {
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

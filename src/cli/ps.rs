//! `weft ps`: the sandbox listing.

use anyhow::Result;
use clap::Args;

use super::output::{self, print_json, table, warn_unreadable, Kind, Style};
use super::Format;
use crate::core::display;
use crate::core::filter::{self, Filter};
use crate::core::model::Status;
use crate::engine::{sandbox, view, Ctx};

/// `weft ps` flags.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  weft ps -a                          every sandbox, also created and exited ones
  weft ps -q -f label=app=web         ids of the running sandboxes labelled app=web
  weft ps -f status=exited -f network=backend --format json")]
pub struct PsArgs {
    /// Include sandboxes that are not running.
    #[arg(short, long)]
    pub all: bool,
    /// Print only sandbox ids, one per line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't shorten ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show only matching sandboxes: name=PART, id=PREFIX, network=NAME, label=KEY[=VALUE],
    /// status=created|running|exited|..., exited=CODE (the same key again: either; other
    /// keys: both). A status or exited filter also lists sandboxes that are not running.
    #[arg(short, long = "filter", value_name = "KEY=VALUE", value_parser = parse_filter)]
    pub filter: Vec<Filter>,
}

fn parse_filter(s: &str) -> Result<Filter, String> {
    filter::parse(s, filter::SANDBOX_KEYS).map_err(|e| e.to_string())
}

/// Lists sandboxes.
pub fn run_ps(ctx: &Ctx, args: &PsArgs, format: Option<Format>) -> Result<i32> {
    let style = output::style(format, "ps", Kind::Table)?;
    warn_unreadable(ctx, "sandboxes")?;
    let all = args.all
        || args
            .filter
            .iter()
            .any(|f| f.key == "status" || f.key == "exited");
    let list: Vec<_> = sandbox::list(ctx, all)?
        .into_iter()
        .filter(|s| filter::sandbox_matches(&args.filter, s))
        .collect();
    let id = |s: &crate::core::model::Sandbox| {
        if args.no_trunc {
            s.id.clone()
        } else {
            s.short_id().to_string()
        }
    };
    if args.quiet {
        for s in &list {
            println!("{}", id(s));
        }
        return Ok(0);
    }
    if style == Style::Json {
        print_json(&list.iter().map(view::sandbox).collect::<Vec<_>>())?;
        return Ok(0);
    }
    let now = crate::engine::now();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let command = s.command.join(" ");
            vec![
                id(s),
                format!(
                    "\"{}\"",
                    if args.no_trunc {
                        command
                    } else {
                        display::ellipsis(&command, 20)
                    }
                ),
                display::ago(s.created, now),
                display::sandbox_status(s, now),
                // As Docker: a sandbox whose command does not run publishes nothing.
                if s.status == Status::Running {
                    display::ports_column(&s.ports)
                } else {
                    String::new()
                },
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
                s.name.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "SANDBOX ID",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NETWORKS",
                "NAMES"
            ],
            &rows
        )
    );
    Ok(0)
}

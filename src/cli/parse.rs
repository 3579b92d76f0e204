//! Reading the command line. clap's derive builds the whole command tree (every subcommand,
//! every flag, the global options copied into each) before it looks at a word: ~0.4 ms of a
//! ~5 ms attach. `weft create` and `weft rm`, which an orchestrator runs once per sandbox, are
//! parsed against a tree holding only the global options and that one subcommand, with the
//! very same flag definitions, so a line that parses gives the same [`Cli`] either way.
//! Anything else, and anything that tree does not accept (help, version, any error), is parsed
//! again by the whole tree, so messages, help and exit codes stay clap's own.

use std::ffi::OsString;

use clap::{Args, FromArgMatches, Parser};

use super::sandbox_cli::CreateCmd;
use super::stop::RmArgs;
use super::{Cli, Command, Globals};

/// The global options that take a value (`--state-dir DIR` or `--state-dir=DIR`).
const VALUED_GLOBALS: [&str; 4] = ["--state-dir", "--run-dir", "--config", "--format"];

/// Parses the process's arguments; exits with clap's message and code on a usage error.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    fast(&args).unwrap_or_else(|| Cli::parse_from(args))
}

/// The subcommand word: the first argument after the global options. `None` when something
/// else comes first (`--help`, `--version`, a typo), which the whole tree must handle.
fn subcommand(args: &[OsString]) -> Option<&str> {
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        let a = a.to_str()?;
        if !a.starts_with('-') {
            return Some(a);
        }
        let flag = a.split_once('=').map_or(a, |(f, _)| f);
        if !VALUED_GLOBALS.contains(&flag) {
            return None;
        }
        if !a.contains('=') {
            rest.next()?;
        }
    }
    None
}

/// The one-subcommand parse, or `None` to use the whole tree.
fn fast(args: &[OsString]) -> Option<Cli> {
    let sub = subcommand(args)?;
    // As the whole tree (`Cli`'s attributes): an option given twice takes the last value.
    let new = |name: &'static str| clap::Command::new(name).args_override_self(true);
    let root = Globals::augment_args(new("weft"));
    let root = match sub {
        "create" => root.subcommand(CreateCmd::augment_args(new("create"))),
        "rm" => root.subcommand(RmArgs::augment_args(new("rm"))),
        _ => return None,
    };
    let m = root.try_get_matches_from(args).ok()?;
    let g = Globals::from_arg_matches(&m).ok()?;
    let command = match m.subcommand()? {
        ("create", sm) => Command::Create(CreateCmd::from_arg_matches(sm).ok()?),
        ("rm", sm) => Command::Rm(RmArgs::from_arg_matches(sm).ok()?),
        _ => return None,
    };
    Some(Cli {
        globals: g,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn fast_and_full_parse_agree() {
        for line in [
            "weft create --name a --network n",
            "weft --state-dir /s --run-dir=/r --config /c create --name a -- sh -c x",
            "weft create --format json --name a -p 80:80 -e A=1 --network x --network y",
            "weft --format table create --format json --name a",
            "weft create -h host --ip 10.0.0.2 --restart always -- true",
            "weft create",
            "weft rm a b",
            "weft create --name a --name b",
            "weft rm -fv a",
            "weft rm -f --format json a",
            "weft --run-dir /r rm --state-dir /s a",
        ] {
            let args = argv(line);
            let fast = fast(&args).unwrap_or_else(|| panic!("{line}: not taken by the fast path"));
            let full = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{line}");
        }
    }

    #[test]
    fn what_the_fast_path_does_not_accept_goes_to_the_whole_tree() {
        for line in [
            "weft",
            "weft --help",
            "weft -V",
            "weft create --help",
            "weft create --version",
            "weft create --bogus",
            "weft rm",
            "weft rm --help",
            "weft --bogus create --name a",
            "weft --state-dir",
            "weft ps",
            "weft network rm x",
            "weft -- create",
        ] {
            assert!(fast(&argv(line)).is_none(), "{line}");
        }
    }
}

//! The `weft` binary: parse, run, print one-line errors.

use clap::Parser;

fn main() {
    let start = std::time::Instant::now();
    // Before anything is created: state, logs and run files are private to root.
    weft::adapters::process::restrict_umask();
    let cli = weft::timing::time("args", weft::cli::Cli::parse);
    let code = match weft::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the outermost context first, then its causes.
            eprintln!("error: {e:#}");
            1
        }
    };
    if let Some(line) = weft::timing::report(start.elapsed()) {
        eprintln!("{line}");
    }
    std::process::exit(code);
}

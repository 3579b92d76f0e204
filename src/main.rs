//! The `weft` binary: parse, run, print one-line errors.

/// The heap: a bump arena for one-shot commands, the system allocator past it and in
/// long-lived processes (see `adapters::arena`).
#[global_allocator]
static HEAP: weft::adapters::arena::Arena = weft::adapters::arena::Arena;

fn main() {
    let start = std::time::Instant::now();
    // Before anything is created: state, logs and run files are private to root.
    weft::adapters::process::restrict_umask();
    let cli = weft::timing::time("args", weft::cli::parse);
    if cli.is_one_shot() {
        // SQLite's pieces into the arena too (before the store is first opened).
        weft::adapters::sqlite_heap::install();
    } else {
        weft::adapters::arena::stop();
    }
    if cli.prints_for_people() {
        // `weft ps | head -1`: end quietly when the reader goes away, as other tools do,
        // instead of panicking on the broken pipe. (Weft's own long-lived processes keep
        // ignoring SIGPIPE: a client that hangs up must not kill the agent.)
        // SAFETY: setting a signal's disposition to its default has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        // A command that exits soon hands the nf_tables sockets of its deletions to the agent
        // instead of waiting for their release (see `adapters::fd_park`).
        weft::adapters::nftables::park_sockets_at(weft::adapters::fd_park::path(
            &cli.globals.run_dir,
        ));
    }
    let failure = cli.failure_code();
    let code = match weft::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the outermost context first, then its causes.
            eprintln!("error: {e:#}");
            // A command that could not start says why with Docker's code (126, 127).
            e.chain()
                .find_map(|c| {
                    c.downcast_ref::<weft::adapters::process::StartError>()
                        .map(|s| s.code)
                        .or_else(|| {
                            c.downcast_ref::<std::io::Error>()
                                .and_then(weft::adapters::process::start_error)
                                .map(|s| s.code)
                        })
                })
                .unwrap_or(failure)
        }
    };
    if let Some(line) = weft::timing::report(start.elapsed()) {
        eprintln!("{line}");
    }
    std::process::exit(code);
}

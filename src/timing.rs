//! Where a command's time goes, for `bench/`: with `WEFT_TIMINGS=1` in the environment,
//! weft prints one line `weft-timings phase=µs ...` on stderr when it exits. Phases add up
//! across calls (e.g. every netlink request of a command lands in `netlink`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

static PHASES: Mutex<Vec<(&'static str, Duration)>> = Mutex::new(Vec::new());

/// Whether timings are collected.
pub fn enabled() -> bool {
    std::env::var_os("WEFT_TIMINGS").is_some()
}

/// Adds `d` to `phase`.
pub fn record(phase: &'static str, d: Duration) {
    if let Ok(mut p) = PHASES.lock() {
        match p.iter_mut().find(|(n, _)| *n == phase) {
            Some((_, t)) => *t += d,
            None => p.push((phase, d)),
        }
    }
}

/// Runs `f` and adds its duration to `phase`.
pub fn time<T>(phase: &'static str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    record(phase, start.elapsed());
    out
}

/// The summary line, if timings are enabled.
pub fn report(total: Duration) -> Option<String> {
    if !enabled() {
        return None;
    }
    let p = PHASES.lock().ok()?;
    let mut line = format!(
        "weft-timings total={} arena-kib={}",
        total.as_micros(),
        crate::adapters::arena::used() / 1024
    );
    for (n, d) in p.iter() {
        line.push_str(&format!(" {n}={}", d.as_micros()));
    }
    Some(line)
}

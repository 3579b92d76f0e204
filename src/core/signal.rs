//! Signals as `weft kill -s` takes them (Docker's spellings: `KILL`, `SIGKILL`, `kill`, `9`)
//! and where each one goes: SIGKILL ends a sandbox's init, and with it every process of the
//! sandbox; the init passes the others it catches on to the command ([`FORWARDED`]); the
//! rest cannot reach the command and are refused rather than silently dropped.

use thiserror::Error;

/// Linux's standard signals, by number (x86-64, arm64 and most other architectures share
/// this numbering; weft builds for x86-64).
const NAMES: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Other names Linux gives some of them.
const ALIASES: [(&str, i32); 3] = [("IOT", 6), ("CLD", 17), ("POLL", 29)];

/// SIGKILL.
pub const SIGKILL: i32 = 9;

/// The signals a sandbox's init catches and passes on to its command when a process sends
/// them (the terminal's reach the command directly). Not among them: SIGKILL and SIGSTOP
/// (nobody can catch them), SIGCHLD (the init's own business) and the signals of faults
/// (SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS), which the init must feel
/// itself if it faults, as tini leaves them.
pub const FORWARDED: [i32; 21] = [
    1, 2, 3, 10, 12, 13, 14, 15, 16, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
];

/// A `-s` value weft cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignalError {
    /// Neither a signal name nor a number of one.
    #[error("invalid signal {0:?}: use a name like TERM or SIGTERM, or a number like 15 (see `kill -l`)")]
    Unknown(String),
    /// A real signal that cannot reach a sandbox's command.
    #[error("signal {name} cannot reach a sandbox's command: its init does not pass it on; use KILL to end the sandbox's processes, or one of {forwarded}")]
    NotForwarded {
        /// Its name (`SIGSTOP`).
        name: String,
        /// The ones that can, for the message.
        forwarded: String,
    },
}

/// Reads a signal as Docker's `kill -s` does: a name with or without `SIG`, any case, or
/// its number. Only Linux's 31 standard signals; real-time ones are refused as unknown.
pub fn parse(s: &str) -> Result<i32, SignalError> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        // u8 first: a huge number is refused, not wrapped.
        return t
            .parse::<u8>()
            .ok()
            .map(i32::from)
            .filter(|n| NAMES.iter().any(|(_, m)| m == n))
            .ok_or_else(|| SignalError::Unknown(s.to_string()));
    }
    let upper = t.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .chain(ALIASES.iter())
        .find(|(n, _)| *n == bare)
        .map(|(_, num)| *num)
        .ok_or_else(|| SignalError::Unknown(s.to_string()))
}

/// The name of signal `sig` (`SIGTERM`), or its number when it has none.
pub fn name(sig: i32) -> String {
    NAMES
        .iter()
        .find(|(_, n)| *n == sig)
        .map_or_else(|| sig.to_string(), |(n, _)| format!("SIG{n}"))
}

/// Where `weft kill -s` sends a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// To the sandbox's init: SIGKILL, which ends every process of the sandbox at once.
    Init,
    /// To the init, which passes it on to the command.
    Command,
}

/// Where signal `sig` (a number from [`parse`]) goes, or why it cannot be sent.
pub fn target(sig: i32) -> Result<Target, SignalError> {
    if sig == SIGKILL {
        return Ok(Target::Init);
    }
    if FORWARDED.contains(&sig) {
        return Ok(Target::Command);
    }
    Err(SignalError::NotForwarded {
        name: name(sig),
        forwarded: FORWARDED
            .iter()
            .map(|s| name(*s).trim_start_matches("SIG").to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_as_docker_spells_them() {
        for s in ["KILL", "SIGKILL", "kill", "SigKill", "9", " 9 "] {
            assert_eq!(parse(s), Ok(9), "{s}");
        }
        assert_eq!(parse("TERM"), Ok(15));
        assert_eq!(parse("sigusr1"), Ok(10));
        assert_eq!(parse("IOT"), Ok(6));
        assert_eq!(parse("SIGPOLL"), Ok(29));
        assert_eq!(parse("31"), Ok(31));
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(40), "40");
    }

    #[test]
    fn hostile_values_are_refused_naming_them() {
        for s in [
            "",
            "0",
            "32",
            "64",
            "-9",
            "+9",
            "256",
            "99999999999999999999999999",
            "SIG",
            "SIGSIGKILL",
            "TERM\0",
            "KILL9",
            "RTMIN",
            "ТЕRM",
        ] {
            assert_eq!(parse(s), Err(SignalError::Unknown(s.to_string())), "{s:?}");
        }
        let e = parse("SIGBOGUS").unwrap_err().to_string();
        assert!(e.contains("\"SIGBOGUS\"") && e.contains("SIGTERM"), "{e}");
    }

    #[test]
    fn kill_ends_the_init_the_caught_ones_reach_the_command_the_rest_are_refused() {
        assert_eq!(target(9), Ok(Target::Init));
        for s in [1, 2, 3, 10, 12, 15, 28] {
            assert_eq!(target(s), Ok(Target::Command), "{s}");
        }
        for s in [4, 5, 6, 7, 8, 11, 17, 19, 31] {
            assert!(target(s).is_err(), "{s}");
        }
        let e = target(19).unwrap_err().to_string();
        assert!(e.starts_with("signal SIGSTOP cannot reach"), "{e}");
        assert!(e.contains("TSTP"), "{e}");
        // Every forwarded signal has a name, none is a fault's.
        for s in FORWARDED {
            assert!(name(s).starts_with("SIG"), "{s}");
        }
    }
}

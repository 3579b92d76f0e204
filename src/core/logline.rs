//! The line format of a sandbox's log: each line its command wrote starts with the time its
//! first byte was read (`core::time::format`) and a space; the rest is the command's bytes,
//! untouched (binary, invalid UTF-8, lines of any length). A line without a time (written
//! by weft's monitor itself, or to a log older than this format) is kept as it is.
//!
//! Both ends are streaming state machines over chunks, holding at most a time's worth of
//! bytes: a line of gigabytes without a newline goes through in bounded memory.

use super::time::{parse_formatted, Timestamp, FORMATTED_LEN};

/// The bytes at the start of a line that may hold its time, the space included.
const HEAD: usize = FORMATTED_LEN + 1;

/// Adds the time to the start of every line of a stream (the writing end, in the init).
#[derive(Debug)]
pub struct Stamper {
    at_line_start: bool,
}

impl Default for Stamper {
    fn default() -> Self {
        Self::new()
    }
}

impl Stamper {
    /// A stream at the start of a line.
    pub fn new() -> Self {
        Self {
            at_line_start: true,
        }
    }

    /// Appends `chunk` to `out`, with `time` (as formatted) before each line that starts in
    /// it.
    pub fn stamp(&mut self, chunk: &[u8], time: &str, out: &mut Vec<u8>) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.at_line_start {
                out.extend_from_slice(time.as_bytes());
                out.push(b' ');
                self.at_line_start = false;
            }
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&rest[..=i]);
                    rest = &rest[i + 1..];
                    self.at_line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
    }
}

/// What `weft logs` shows of each line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Show {
    /// Keep each line's time (`-t`); otherwise it is cut.
    pub timestamps: bool,
    /// Only lines from this time on (`--since`).
    pub since: Option<Timestamp>,
    /// Only lines before this time (`--until`).
    pub until: Option<Timestamp>,
}

/// Reads a log as [`Stamper`] wrote it and keeps what [`Show`] asks for (the reading end).
#[derive(Debug)]
pub struct Reader {
    show: Show,
    /// Bytes of the current line's start, until there are enough to tell its time.
    head: Vec<u8>,
    at_line_start: bool,
    /// Whether the current line (once its head is read) is printed.
    keep: bool,
    /// The time of the last line that had one: a line without inherits it.
    last: Option<Timestamp>,
}

impl Reader {
    /// A reader at the start of a line.
    pub fn new(show: Show) -> Self {
        Self {
            show,
            head: Vec::with_capacity(HEAD),
            at_line_start: true,
            keep: true,
            last: None,
        }
    }

    /// Appends to `out` what is shown of `chunk`. A line's start shorter than a time stays
    /// held until more comes or [`Reader::finish`].
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.at_line_start {
                let want = HEAD - self.head.len();
                let nl = rest.iter().take(want).position(|b| *b == b'\n');
                let take = nl.map_or(want.min(rest.len()), |i| i + 1);
                self.head.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if self.head.len() < HEAD && nl.is_none() {
                    // Not enough to tell yet.
                    return;
                }
                self.decide(out);
                if nl.is_some() {
                    continue;
                }
            }
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if self.keep {
                        out.extend_from_slice(&rest[..=i]);
                    }
                    rest = &rest[i + 1..];
                    self.at_line_start = true;
                }
                None => {
                    if self.keep {
                        out.extend_from_slice(rest);
                    }
                    rest = &[];
                }
            }
        }
    }

    /// The end of the log: a last line's start still held is shown as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.at_line_start && !self.head.is_empty() {
            self.decide(out);
        }
    }

    /// Whether a line of time `t` (none known: older than any) is shown.
    fn wanted(&self, t: Option<Timestamp>) -> bool {
        let after_since = match (self.show.since, t) {
            (None, _) => true,
            (Some(s), Some(t)) => t >= s,
            (Some(_), None) => false,
        };
        let before_until = match (self.show.until, t) {
            (None, _) | (Some(_), None) => true,
            (Some(u), Some(t)) => t < u,
        };
        after_since && before_until
    }

    /// Decides on the line whose start is in `head`, shows that start if kept, and moves
    /// past it (a line ended within its head starts the next).
    fn decide(&mut self, out: &mut Vec<u8>) {
        let time = parse_formatted(&self.head);
        if time.is_some() {
            self.last = time;
        }
        self.keep = self.wanted(self.last);
        if self.keep {
            let cut = if time.is_some() && !self.show.timestamps {
                HEAD
            } else {
                0
            };
            out.extend_from_slice(&self.head[cut..]);
        }
        let ended = self.head.last() == Some(&b'\n');
        self.head.clear();
        self.at_line_start = ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::format;

    const T1: &str = "2026-12-03T08:00:00.000000001Z";
    const T2: &str = "2026-12-03T09:00:00.000000002Z";

    fn stamped(parts: &[(&[u8], &str)]) -> Vec<u8> {
        let mut s = Stamper::new();
        let mut out = Vec::new();
        for (chunk, t) in parts {
            s.stamp(chunk, t, &mut out);
        }
        out
    }

    /// Feeds `log` in chunks of `n` bytes.
    fn read(log: &[u8], show: Show, n: usize) -> Vec<u8> {
        let mut r = Reader::new(show);
        let mut out = Vec::new();
        for c in log.chunks(n) {
            r.feed(c, &mut out);
        }
        r.finish(&mut out);
        out
    }

    fn ts(s: &str) -> Timestamp {
        parse_formatted(format!("{s} ").as_bytes()).unwrap()
    }

    #[test]
    fn lines_get_the_time_they_started_at() {
        let log = stamped(&[(b"a\nb", T1), (b"b\nc\n", T2), (b"", T2)]);
        assert_eq!(
            String::from_utf8(log).unwrap(),
            format!("{T1} a\n{T1} bb\n{T2} c\n")
        );
        assert_eq!(format(ts(T1)), T1);
    }

    #[test]
    fn reading_cuts_or_keeps_times_and_filters_in_any_chunking() {
        let log = stamped(&[(b"one\n", T1), (b"two\nthree", T2)]);
        for n in [1, 2, 7, 30, 31, 32, 1000] {
            assert_eq!(read(&log, Show::default(), n), b"one\ntwo\nthree", "{n}");
            let all = Show {
                timestamps: true,
                ..Show::default()
            };
            assert_eq!(read(&log, all, n), log, "{n}");
            let since = Show {
                since: Some(ts(T2)),
                ..Show::default()
            };
            assert_eq!(read(&log, since, n), b"two\nthree", "{n}");
            let until = Show {
                until: Some(ts(T2)),
                ..Show::default()
            };
            assert_eq!(read(&log, until, n), b"one\n", "{n}");
        }
    }

    #[test]
    fn lines_without_a_time_are_kept_as_they_are() {
        // A monitor's own message amid stamped lines, an old log's lines, short lines.
        let mut log = format!("{T1} one\nerror: x\n").into_bytes();
        log.extend_from_slice(b"\n\nab\n2026-12-03T08:00:00Z not ours\n");
        log.extend_from_slice(format!("{T2} two\n").as_bytes());
        let plain = b"one\nerror: x\n\n\nab\n2026-12-03T08:00:00Z not ours\ntwo\n";
        for n in [1, 3, 31, 4096] {
            assert_eq!(read(&log, Show::default(), n), plain, "{n}");
            // Untimed lines go with the last time seen.
            let since = Show {
                since: Some(ts(T2)),
                ..Show::default()
            };
            assert_eq!(read(&log, since, n), b"two\n", "{n}");
            let until = Show {
                until: Some(ts(T2)),
                ..Show::default()
            };
            assert_eq!(read(&log, until, n), &plain[..plain.len() - 4], "{n}");
        }
        // A log of lines before times: everything, and nothing is since any time.
        assert_eq!(read(b"old\nlog", Show::default(), 2), b"old\nlog");
        let since = Show {
            since: Some(ts(T1)),
            ..Show::default()
        };
        assert_eq!(read(b"old\nlog", since, 2), b"");
    }

    #[test]
    fn hostile_output_goes_through_untouched_in_bounded_memory() {
        // Binary, invalid UTF-8, NULs, CRs, a huge line without a newline.
        let mut data: Vec<u8> = (0u8..=255).collect();
        data.extend_from_slice(b"\xff\xfe\x00\r\n");
        data.extend(std::iter::repeat_n(b'x', 3 << 20));
        let mut s = Stamper::new();
        let mut log = Vec::new();
        for c in data.chunks(65_536) {
            s.stamp(c, T1, &mut log);
        }
        let mut r = Reader::new(Show::default());
        let mut out = Vec::new();
        for c in log.chunks(65_536) {
            r.feed(c, &mut out);
            // Nothing piles up inside: at most a time's worth is held.
            assert!(r.head.len() <= HEAD);
        }
        r.finish(&mut out);
        assert_eq!(out, data);
        // A time planted by the command inside its own line is its text, not a time.
        let log = stamped(&[(format!("{T2} fake\n").as_bytes(), T1)]);
        assert_eq!(
            read(&log, Show::default(), 5),
            format!("{T2} fake\n").as_bytes()
        );
    }
}

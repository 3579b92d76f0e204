//! Times as `weft logs --since/--until` take them (Docker's forms: an RFC 3339 time, a
//! duration before now such as `10m` or `1h30m`, or Unix seconds) and as log lines carry
//! them (RFC 3339 in UTC with nanoseconds, `2026-12-03T08:29:22.123456789Z`). All pure, all
//! arithmetic checked: a value out of range is an error naming it, never a wrap.

use thiserror::Error;

/// A point in time: nanoseconds since 1970-01-01T00:00:00Z (up to the year 2554).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

/// Nanoseconds in a second.
const NANOS: u64 = 1_000_000_000;

/// The length of a log line's time as [`format`] writes it.
pub const FORMATTED_LEN: usize = "2026-12-03T08:29:22.123456789Z".len();

/// A `--since` or `--until` value weft cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TimeError {
    /// Not one of the forms.
    #[error("invalid {flag} {value:?}: use an RFC 3339 time like 2026-01-02T15:04:05Z (or with +01:00, fractions allowed), a duration before now like 10m, 1h30m or 90s, or Unix seconds like 1767366245")]
    Syntax {
        /// `--since` or `--until`.
        flag: &'static str,
        /// As given.
        value: String,
    },
    /// A well-formed value outside what weft can represent (before 1970, after 2554, or a
    /// duration longer than that).
    #[error("invalid {flag} {value:?}: out of range (times from 1970 to 2554, durations up to about 584 years)")]
    Range {
        /// `--since` or `--until`.
        flag: &'static str,
        /// As given.
        value: String,
    },
}

/// Reads a `--since`/`--until` value (`flag` names which, for the error) relative to `now`.
pub fn parse(flag: &'static str, value: &str, now: Timestamp) -> Result<Timestamp, TimeError> {
    let syntax = || TimeError::Syntax {
        flag,
        value: value.to_string(),
    };
    let range = || TimeError::Range {
        flag,
        value: value.to_string(),
    };
    if value.is_empty() {
        return Err(syntax());
    }
    // A date starts YYYY-; a duration has a unit; Unix seconds are only digits.
    if value.as_bytes().get(4) == Some(&b'-') {
        return rfc3339(value).map_err(|e| e.with(flag, value));
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return unix(value).map_err(|e| e.with(flag, value));
    }
    let d = duration(value).map_err(|e| e.with(flag, value))?;
    now.0.checked_sub(d).map(Timestamp).ok_or_else(range)
}

/// Why a value failed, before the flag is known.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    Syntax,
    Range,
}

impl Bad {
    fn with(self, flag: &'static str, value: &str) -> TimeError {
        let value = value.to_string();
        match self {
            Bad::Syntax => TimeError::Syntax { flag, value },
            Bad::Range => TimeError::Range { flag, value },
        }
    }
}

/// Digits only, as a number; too many of them is out of range.
fn number(s: &str) -> Result<u64, Bad> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad::Syntax);
    }
    s.parse().map_err(|_| Bad::Range)
}

/// A fraction's digits (after the point) as nanoseconds; digits past the ninth are dropped
/// (they must still be digits).
fn fraction_nanos(s: &str) -> Result<u64, Bad> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad::Syntax);
    }
    let mut n = 0u64;
    for i in 0..9 {
        let d = s.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        n = n * 10 + d;
    }
    Ok(n)
}

/// `SECONDS[.FRACTION]` since the epoch.
fn unix(s: &str) -> Result<Timestamp, Bad> {
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, fraction_nanos(b)?),
        None => (s, 0),
    };
    number(secs)?
        .checked_mul(NANOS)
        .and_then(|n| n.checked_add(frac))
        .map(Timestamp)
        .ok_or(Bad::Range)
}

/// A duration as Go writes them (what Docker takes): one or more NUMBER[.FRACTION]UNIT with
/// units h, m, s, ms, us (µs) and ns; in nanoseconds.
fn duration(s: &str) -> Result<u64, Bad> {
    let mut rest = s;
    let mut total = 0u64;
    if rest.is_empty() {
        return Err(Bad::Syntax);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(Bad::Syntax)?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale: u64 = match unit {
            "h" => 3600 * NANOS,
            "m" => 60 * NANOS,
            "s" => NANOS,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return Err(Bad::Syntax),
        };
        let (whole, frac) = match num.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (num, None),
        };
        let whole = if whole.is_empty() && frac.is_some() {
            0
        } else {
            number(whole)?
        };
        let mut part = whole.checked_mul(scale).ok_or(Bad::Range)?;
        if let Some(f) = frac {
            // The fraction of the unit, to the nanosecond: f * scale / 10^9 with f in
            // nanos-of-one; u128 so that no step overflows.
            let f = u128::from(fraction_nanos(f)?);
            let extra = f * u128::from(scale) / u128::from(NANOS);
            part = part
                .checked_add(u64::try_from(extra).map_err(|_| Bad::Range)?)
                .ok_or(Bad::Range)?;
        }
        total = total.checked_add(part).ok_or(Bad::Range)?;
        rest = next;
    }
    Ok(total)
}

/// `YYYY-MM-DDTHH:MM:SS[.FRACTION](Z|±HH:MM)`.
fn rfc3339(s: &str) -> Result<Timestamp, Bad> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(Bad::Syntax);
    }
    let field = |from: usize, to: usize| number(s.get(from..to).ok_or(Bad::Syntax)?);
    let sep = |i: usize, c: &[u8]| {
        if c.contains(&b[i]) {
            Ok(())
        } else {
            Err(Bad::Syntax)
        }
    };
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    sep(13, b":")?;
    sep(16, b":")?;
    let (year, month, day) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
    let (hour, min, sec) = (field(11, 13)?, field(14, 16)?, field(17, 19)?);
    let mut rest = &s[19..];
    let mut nanos = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        nanos = fraction_nanos(&r[..end])?;
        rest = &r[end..];
    }
    // The offset: the local time minus UTC, in seconds.
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(Bad::Syntax),
            };
            let (h, m) = rest[1..].split_once(':').ok_or(Bad::Syntax)?;
            if h.len() != 2 || m.len() != 2 {
                return Err(Bad::Syntax);
            }
            let (h, m) = (number(h)?, number(m)?);
            if h > 23 || m > 59 {
                return Err(Bad::Syntax);
            }
            sign * i64::try_from(h * 3600 + m * 60).map_err(|_| Bad::Range)?
        }
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(Bad::Syntax);
    }
    // 60: a leap second, taken as the next second's start.
    if hour > 23 || min > 59 || sec > 60 {
        return Err(Bad::Syntax);
    }
    let days = days_from_civil(i64::try_from(year).map_err(|_| Bad::Range)?, month, day);
    let secs = days
        .checked_mul(86_400)
        .and_then(|d| d.checked_add(i64::try_from(hour * 3600 + min * 60 + sec).ok()?))
        .and_then(|d| d.checked_sub(offset))
        .ok_or(Bad::Range)?;
    let secs = u64::try_from(secs).map_err(|_| Bad::Range)?;
    secs.checked_mul(NANOS)
        .and_then(|n| n.checked_add(nanos))
        .map(Timestamp)
        .ok_or(Bad::Range)
}

fn is_leap(y: u64) -> bool {
    y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); the
/// year is at most 9999 here, so nothing overflows.
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let m = i64::try_from(m).unwrap_or(1);
    let d = i64::try_from(d).unwrap_or(1);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: u64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `t` as log lines carry it: RFC 3339, UTC, nanoseconds, [`FORMATTED_LEN`] characters.
pub fn format(t: Timestamp) -> String {
    let secs = t.0 / NANOS;
    let nanos = t.0 % NANOS;
    let (y, mo, d) = civil_from_days(secs / 86_400);
    let s = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The time at the start of a log line as [`format`] wrote it, followed by a space; `None`
/// when the line does not start so (a line weft's monitor wrote itself, or a log written
/// before lines carried times).
pub fn parse_formatted(head: &[u8]) -> Option<Timestamp> {
    let ts = head.get(..FORMATTED_LEN)?;
    if head.get(FORMATTED_LEN) != Some(&b' ') || ts.get(FORMATTED_LEN - 1) != Some(&b'Z') {
        return None;
    }
    let s = std::str::from_utf8(ts).ok()?;
    if s.as_bytes().get(19) != Some(&b'.') {
        return None;
    }
    rfc3339(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_796_286_562_123_456_789);

    fn since(v: &str) -> Result<Timestamp, TimeError> {
        parse("--since", v, NOW)
    }

    #[test]
    fn rfc3339_times_with_zones_and_fractions() {
        assert_eq!(since("1970-01-01T00:00:00Z"), Ok(Timestamp(0)));
        assert_eq!(
            since("2026-12-03T08:29:22Z"),
            Ok(Timestamp(1_796_286_562 * NANOS))
        );
        assert_eq!(
            since("2026-12-03T09:29:22.5+01:00"),
            Ok(Timestamp(1_796_286_562 * NANOS + 500_000_000))
        );
        assert_eq!(
            since("2026-12-03t07:29:22.123456789123-01:00"),
            Ok(Timestamp(1_796_286_562_123_456_789))
        );
        assert_eq!(
            since("2024-02-29T00:00:00Z").map(|t| t.0 / NANOS),
            Ok(1_709_164_800)
        );
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+1:00",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00Zjunk",
            "2026-1-01T00:00:00Z",
            "+026-01-01T00:00:00Z",
        ] {
            assert!(
                matches!(since(bad), Err(TimeError::Syntax { .. })),
                "{bad}: {:?}",
                since(bad)
            );
        }
        for far in [
            "1969-12-31T23:59:59Z",
            "9999-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
        ] {
            assert!(matches!(since(far), Err(TimeError::Range { .. })), "{far}");
        }
    }

    #[test]
    fn durations_before_now_as_go_writes_them() {
        let ago = |v: &str| since(v).map(|t| NOW.0 - t.0);
        assert_eq!(ago("10m"), Ok(600 * NANOS));
        assert_eq!(ago("1h30m"), Ok(5400 * NANOS));
        assert_eq!(ago("1.5h"), Ok(5400 * NANOS));
        assert_eq!(ago("90s"), Ok(90 * NANOS));
        assert_eq!(ago("2h45m3s7ms8us9ns"), Ok(9903 * NANOS + 7_008_009));
        assert_eq!(ago(".5s"), Ok(NANOS / 2));
        assert_eq!(ago("0s"), Ok(0));
        for bad in [
            "m", "10x", "1h-5m", "-10m", "1..5h", "1h 30m", "h1", "1.5.2s",
        ] {
            assert!(
                matches!(since(bad), Err(TimeError::Syntax { .. })),
                "{bad}: {:?}",
                since(bad)
            );
        }
        // Huge numbers: refused as out of range, never wrapped.
        for far in [
            "99999999999999999999h",
            "18446744073709551615h",
            "5124096h",
            "999999999999s1h",
            "100000y",
        ] {
            let r = since(far);
            assert!(r.is_err(), "{far}: {r:?}");
        }
        assert!(matches!(
            since("18446744073709551615h"),
            Err(TimeError::Range { .. })
        ));
        let e = since("57 minutes").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid --since \"57 minutes\": use an RFC 3339"),
            "{e}"
        );
    }

    #[test]
    fn unix_seconds() {
        assert_eq!(since("1767366245"), Ok(Timestamp(1_767_366_245 * NANOS)));
        assert_eq!(
            since("1767366245.25"),
            Ok(Timestamp(1_767_366_245 * NANOS + 250_000_000))
        );
        assert!(matches!(since("1.2.3"), Err(TimeError::Syntax { .. })));
        assert!(matches!(
            since("99999999999999999999"),
            Err(TimeError::Range { .. })
        ));
        assert!(matches!(since(""), Err(TimeError::Syntax { .. })));
        assert!(matches!(since("１０m"), Err(TimeError::Syntax { .. })));
    }

    #[test]
    fn log_times_round_trip() {
        for t in [
            Timestamp(0),
            NOW,
            Timestamp(951_782_400 * NANOS + 1),
            Timestamp(u64::MAX),
        ] {
            let s = format(t);
            assert_eq!(s.len(), FORMATTED_LEN, "{s}");
            let line = format!("{s} hello");
            assert_eq!(parse_formatted(line.as_bytes()), Some(t), "{s}");
        }
        assert_eq!(format(NOW), "2026-12-03T08:29:22.123456789Z");
        assert_eq!(
            format(Timestamp(951_782_400 * NANOS)),
            "2000-02-29T00:00:00.000000000Z"
        );
        for bad in [
            &b"2026-12-03T08:29:22.123456789Zhello"[..],
            b"2026-12-03T08:29:22Z hello",
            b"2026-12-03T08:29:22.123456789+00:00 x",
            b"short",
            b"",
            b"\xff\xfe2026-12-03T08:29:22.1234567Z hello",
        ] {
            assert_eq!(parse_formatted(bad), None, "{bad:?}");
        }
    }
}

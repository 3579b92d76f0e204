//! Per-source limits: a token bucket of queries per second for each asking address, and a
//! bound on each source's forwarded queries in flight, so one flooding sandbox cannot starve
//! the others. Time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// One token, in the bucket's unit (a token per second is one per 10⁹ ns).
const TOKEN: u64 = 1_000_000_000;
/// Buckets idle this long are forgotten (they are full again by then).
const IDLE: Duration = Duration::from_secs(10);
/// Beyond this many tracked sources, idle ones are forgotten.
const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens × 10⁹.
    level: u64,
    last: Duration,
}

/// Token buckets by source address.
#[derive(Debug)]
pub struct RateLimiter {
    /// Queries per second per source; 0 turns the limit off.
    rate: u64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `rate` queries per second per source, with a burst of one second's worth; 0 is no
    /// limit.
    pub fn new(rate: u32) -> RateLimiter {
        RateLimiter {
            rate: u64::from(rate),
            buckets: HashMap::new(),
        }
    }

    fn capacity(&self) -> u64 {
        self.rate.saturating_mul(TOKEN)
    }

    /// Whether `src` may be answered at `now` (taking a token if so).
    pub fn allow(&mut self, src: IpAddr, now: Duration) -> bool {
        if self.rate == 0 {
            return true;
        }
        let cap = self.capacity();
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&src) {
            self.buckets
                .retain(|_, b| now.saturating_sub(b.last) < IDLE);
        }
        let b = self.buckets.entry(src).or_insert(Bucket {
            level: cap,
            last: now,
        });
        let elapsed = u64::try_from(now.saturating_sub(b.last).as_nanos()).unwrap_or(u64::MAX);
        b.level = b
            .level
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(cap);
        b.last = now;
        if b.level >= TOKEN {
            b.level -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// Forwarded queries in flight, by source.
#[derive(Debug)]
pub struct InFlight {
    per_source: u32,
    total: u32,
    max_total: u32,
    by_source: HashMap<IpAddr, u32>,
}

impl InFlight {
    /// At most `per_source` per source and `max_total` in all.
    pub fn new(per_source: u32, max_total: u32) -> InFlight {
        InFlight {
            per_source,
            total: 0,
            max_total,
            by_source: HashMap::new(),
        }
    }

    /// Takes a slot for `src`, if one is free.
    pub fn start(&mut self, src: IpAddr) -> bool {
        if self.total >= self.max_total {
            return false;
        }
        let n = self.by_source.entry(src).or_insert(0);
        if *n >= self.per_source {
            return false;
        }
        *n += 1;
        self.total += 1;
        true
    }

    /// Gives back a slot of `src`.
    pub fn finish(&mut self, src: IpAddr) {
        if let Some(n) = self.by_source.get_mut(&src) {
            *n = n.saturating_sub(1);
            self.total = self.total.saturating_sub(1);
            if *n == 0 {
                self.by_source.remove(&src);
            }
        }
    }

    /// Queries in flight.
    pub fn total(&self) -> u32 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_flooding_source_is_limited_and_others_are_not() {
        let mut r = RateLimiter::new(100);
        let t = Duration::from_secs(1);
        let allowed = (0..1000).filter(|_| r.allow(ip("10.0.0.2"), t)).count();
        assert_eq!(allowed, 100, "a burst of one second's worth");
        assert!(r.allow(ip("10.0.0.3"), t), "another source is untouched");
        // 10 ms later: one more token.
        assert!(r.allow(ip("10.0.0.2"), t + Duration::from_millis(10)));
        assert!(!r.allow(ip("10.0.0.2"), t + Duration::from_millis(10)));
        // A second later: full again, never more.
        let later = t + Duration::from_secs(5);
        assert_eq!(
            (0..1000).filter(|_| r.allow(ip("10.0.0.2"), later)).count(),
            100
        );
    }

    #[test]
    fn zero_is_no_limit() {
        let mut r = RateLimiter::new(0);
        assert!((0..100_000).all(|_| r.allow(ip("10.0.0.2"), Duration::ZERO)));
    }

    #[test]
    fn in_flight_is_bounded_per_source_and_in_all() {
        let mut f = InFlight::new(2, 3);
        assert!(f.start(ip("10.0.0.2")));
        assert!(f.start(ip("10.0.0.2")));
        assert!(!f.start(ip("10.0.0.2")));
        assert!(f.start(ip("10.0.0.3")));
        assert!(!f.start(ip("10.0.0.4")), "total reached");
        f.finish(ip("10.0.0.2"));
        assert!(f.start(ip("10.0.0.4")));
        f.finish(ip("10.0.0.9"));
        assert_eq!(f.total(), 3);
    }
}

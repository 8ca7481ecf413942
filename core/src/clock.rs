//! The hybrid logical clock that orders writes across devices.
//!
//! A clock value is a `u64`: milliseconds since the Unix epoch in the high 48
//! bits and a counter in the low 16 (Kulkarni et al., "Logical Physical Clocks
//! and Consistent Snapshots in Globally Distributed Databases", 2014). Local
//! events take the larger of the wall clock and the last value plus one, so
//! values only grow. A value seen from another device moves the clock forward,
//! but never further than the wall clock plus the drift limit: one device with
//! its clock an hour ahead cannot drag every other device's clock with it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of a clock value that hold the counter.
pub const COUNTER_BITS: u32 = 16;

/// The default drift limit: five minutes.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 5 * 60 * 1000;

/// Milliseconds since the Unix epoch by the system clock, 0 before 1970.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Builds a clock value from milliseconds and a counter.
pub fn clock_value(ms: u64, counter: u16) -> u64 {
    (ms << COUNTER_BITS) | u64::from(counter)
}

/// The milliseconds part of a clock value.
pub fn clock_ms(value: u64) -> u64 {
    value >> COUNTER_BITS
}

/// What [`Hlc::observe`] did with a remote value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The remote value was within the drift limit.
    Within,
    /// The remote value was further ahead than the drift limit; the clock
    /// advanced only to the limit.
    Bounded,
}

/// A hybrid logical clock.
#[derive(Clone, Debug)]
pub struct Hlc {
    last: u64,
    max_drift_ms: u64,
}

impl Hlc {
    /// Resumes a clock whose last value was `last`.
    pub fn new(last: u64, max_drift_ms: u64) -> Self {
        Self { last, max_drift_ms }
    }

    /// The last value handed out or observed.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The drift limit in milliseconds.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// Returns a value for a local event at wall-clock time `now_ms`,
    /// greater than every value before it.
    pub fn tick(&mut self, now_ms: u64) -> u64 {
        let next = clock_value(now_ms, 0).max(self.last.saturating_add(1));
        self.last = next;
        next
    }

    /// Moves the clock past a value seen from another device, bounded by
    /// `now_ms` plus the drift limit.
    pub fn observe(&mut self, remote: u64, now_ms: u64) -> Observed {
        let limit = clock_value(now_ms.saturating_add(self.max_drift_ms), u16::MAX);
        if remote > limit {
            self.last = self.last.max(limit);
            Observed::Bounded
        } else {
            self.last = self.last.max(remote);
            Observed::Within
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_strictly_increasing() {
        let mut hlc = Hlc::new(0, DEFAULT_MAX_DRIFT_MS);
        let a = hlc.tick(1000);
        let b = hlc.tick(1000);
        let c = hlc.tick(999);
        assert!(a < b && b < c);
        assert_eq!(clock_ms(a), 1000);
        assert_eq!(hlc.tick(2000), clock_value(2000, 0));
    }

    #[test]
    fn observe_within_drift_advances() {
        let mut hlc = Hlc::new(0, 1000);
        let remote = clock_value(1500, 3);
        assert_eq!(hlc.observe(remote, 1000), Observed::Within);
        assert!(hlc.tick(1000) > remote);
    }

    #[test]
    fn observe_far_ahead_is_bounded() {
        let mut hlc = Hlc::new(0, 1000);
        let remote = clock_value(1000 + 3_600_000, 0);
        assert_eq!(hlc.observe(remote, 1000), Observed::Bounded);
        let next = hlc.tick(1000);
        assert!(next < remote);
        assert!(clock_ms(next) <= 2001);
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(wall_clock_ms() > 1_577_836_800_000);
    }
}

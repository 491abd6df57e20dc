//! One retry policy for every loop that waits before trying again: exponential from a
//! base, capped, with jitter so that many clients retrying one server do not retry in step.
//!
//! It is a pure function of the attempt number (no iterator state), because the callers
//! keep their attempt counts in different places: a driver's per-instance record, a
//! link's loop, a connection's failure count, a datagram's retransmit count.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff with jitter: attempt 0 waits about `base`, each later attempt
/// about twice the one before, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// The spread around the nominal delay, as a fraction: 0.5 draws from 50% to 150%.
    pub jitter: f64,
}

impl Backoff {
    /// `base` doubling up to `max`, with ±50% jitter.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            jitter: 0.5,
        }
    }

    /// The same policy with another jitter fraction (clamped to 0..=1).
    pub fn with_jitter(self, jitter: f64) -> Self {
        Backoff {
            jitter: jitter.clamp(0.0, 1.0),
            ..self
        }
    }

    /// The nominal delay of `attempt` (0-based), before jitter.
    pub fn nominal(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// The delay to wait before retry number `attempt` (0-based): the nominal delay
    /// scaled by a random factor in `1 ± jitter`, and never above `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        // The thread's own generator: no system call on a retry path (UDP retransmits).
        let unit: f64 = rand::thread_rng().gen();
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit;
        self.nominal(attempt).mul_f64(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_within_the_jitter_band_and_are_capped() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(b.nominal(0), Duration::from_millis(100));
        assert_eq!(b.nominal(3), Duration::from_millis(800));
        assert_eq!(b.nominal(40), Duration::from_secs(2));
        for attempt in 0..40 {
            for _ in 0..20 {
                let d = b.delay(attempt);
                assert!(d <= b.max, "attempt {attempt}: {d:?}");
                assert!(d >= b.nominal(attempt) / 2, "attempt {attempt}: {d:?}");
                assert!(
                    d <= b.nominal(attempt).mul_f64(1.5),
                    "attempt {attempt}: {d:?}"
                );
            }
        }
        let none = b.with_jitter(0.0);
        assert_eq!(none.delay(2), Duration::from_millis(400));
        assert_eq!(b.with_jitter(7.0).jitter, 1.0);
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        let draws: std::collections::BTreeSet<Duration> = (0..50).map(|_| b.delay(4)).collect();
        assert!(draws.len() > 10, "{draws:?}");
    }
}

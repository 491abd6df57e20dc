//! Token buckets for the per-key (or per-IP) rate limit. A refused request is refused before
//! any route runs, so it changes nothing.

use crate::settings::RateLimit;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many buckets are kept before full ones are forgotten (a full bucket is the same as
/// no bucket, so forgetting it changes no answer); bounds memory under many client IPs.
const MAX_BUCKETS: usize = 65_536;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of one limit, keyed by who is asking.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.limit.enabled()
    }

    /// Take one token for `who` at `now`: `Ok(())`, or how long until a token is back.
    pub fn take(&self, who: &str, now: Instant) -> Result<(), Duration> {
        if !self.limit.enabled() {
            return Ok(());
        }
        let rate = f64::from(self.limit.per_second);
        let burst = f64::from(self.limit.burst.max(1));
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned map only means another request panicked; never refuse for it.
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(who) {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let b = buckets.entry(who.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

/// Whole seconds to put in `Retry-After`: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_caller() {
        let l = RateLimiter::new(RateLimit {
            per_second: 2,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        assert!(l.take("b", t0).is_ok(), "another caller has its own bucket");
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn zero_rate_never_refuses() {
        let l = RateLimiter::new(RateLimit::OFF);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| l.take("a", t0).is_ok()));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}

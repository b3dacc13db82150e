//! Per-token rate limiting for the API (a token bucket per caller): a
//! runaway script or a leaked token cannot flood the store, the audit log or
//! the sources behind sweeps. Over the limit the API answers 429 with the
//! stable code `rate_limited` and a `Retry-After` header.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets keyed by caller (token name).
#[derive(Debug)]
pub struct RateLimiter {
    /// Refill per second; 0 turns limiting off.
    rate: f64,
    /// Bucket size: requests allowed in a burst.
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        RateLimiter {
            rate: rate_per_sec as f64,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from `key`'s bucket: Ok, or Err(whole seconds until
    /// the next request is allowed).
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = b.entry(key.to_string()).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_refills_per_key() {
        let l = RateLimiter::new(2, 3);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t).is_ok());
        }
        assert_eq!(l.check_at("a", t), Err(1));
        assert!(l.check_at("b", t).is_ok(), "buckets are per token");
        assert!(l.check_at("a", t + Duration::from_millis(500)).is_ok());
        assert!(l.check_at("a", t + Duration::from_millis(500)).is_err());
        assert!(RateLimiter::new(0, 1).check_at("a", t).is_ok());
    }
}

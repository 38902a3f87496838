//! Per-user rate limit on claims: the generic cell rate algorithm (GCRA), in memory.
//!
//! A user may make `rate` claims per second on average, with bursts of up to `burst`.
//! GCRA keeps one instant per user (the "theoretical arrival time"), so a check is one
//! hash lookup under a lock; the map is split into shards so that concurrent claims
//! of different users rarely wait on the same lock. Users idle long enough to have
//! their whole burst back are forgotten when a shard grows, which bounds memory.
//!
//! The limit is per gateway process: N gateways behind a load balancer allow N times
//! the rate. That is enough to stop one client hammering a drop; a global limit would
//! cost a Redis round trip on every claim.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 32;
/// Entries per shard before expired ones are swept out.
const SHARD_SWEEP_AT: usize = 4096;

pub(crate) struct UserRateLimiter {
    /// Time one claim "costs": 1 / rate.
    interval: Duration,
    /// How far ahead of now a user's arrival time may run: (burst - 1) × interval.
    tolerance: Duration,
    shards: Vec<Mutex<HashMap<String, Instant>>>,
}

impl UserRateLimiter {
    /// `rate` claims per second, bursts of `burst`. `None` when `rate` is 0 (no limit).
    pub fn new(rate: f64, burst: u32) -> Option<Self> {
        if rate <= 0.0 || !rate.is_finite() {
            return None;
        }
        let interval = Duration::from_secs_f64(1.0 / rate);
        Some(Self {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        })
    }

    /// Admits one claim of `user` at `now`, or says how long until it would be.
    pub fn check(&self, user: &str, now: Instant) -> Result<(), Duration> {
        let mut hasher = DefaultHasher::new();
        user.hash(&mut hasher);
        let shard = &self.shards[hasher.finish() as usize % SHARDS];
        let mut tats = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = tats.get(user).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        if tats.len() >= SHARD_SWEEP_AT && !tats.contains_key(user) {
            tats.retain(|_, t| *t > now);
        }
        tats.insert(user.to_owned(), tat + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = UserRateLimiter::new(2.0, 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("alice", t0).is_ok());
        }
        let wait = limiter.check("alice", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(
            limiter.check("bob", t0).is_ok(),
            "users are limited separately"
        );
        assert!(limiter.check("alice", t0 + wait).is_ok());
        assert!(limiter.check("alice", t0 + wait).is_err());
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        assert!(UserRateLimiter::new(0.0, 10).is_none());
    }

    #[test]
    fn idle_users_are_forgotten_when_a_shard_fills() {
        let limiter = UserRateLimiter::new(1000.0, 1).unwrap();
        let t0 = Instant::now();
        for i in 0..(SHARDS * SHARD_SWEEP_AT * 2) {
            let _ = limiter.check(&format!("u{i}"), t0 + Duration::from_secs(i as u64));
        }
        let total: usize = limiter.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * SHARD_SWEEP_AT, "{total}");
    }
}

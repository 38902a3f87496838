//! Capped exponential backoff with full jitter, the one schedule every retry loop uses
//! (the reconciler, the settle notifications, MySQL lock conflicts, the startup's wait
//! for MySQL, the load generator's clients): the wait is uniform in
//! `[0, min(cap, 50 ms × 2^attempt)]`, so retrying clients spread out instead of
//! arriving together.

use rand::Rng;
use std::time::Duration;

/// The first ceiling (attempt 0).
const BASE: Duration = Duration::from_millis(50);

/// How long to wait before retry number `attempt` (0 for the first), at most `cap`.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = BASE.saturating_mul(1u32 << attempt.min(16)).min(cap);
    ceiling.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 0..40 {
            assert!(backoff(attempt, Duration::from_secs(2)) <= Duration::from_secs(2));
        }
        assert!(backoff(0, Duration::from_secs(2)) <= Duration::from_millis(50));
    }
}

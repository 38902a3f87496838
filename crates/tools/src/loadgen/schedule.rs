//! The arithmetic of an open-loop drop: when each claim is meant to be sent, and what
//! its latency is once coordinated omission is corrected for.
//!
//! In a closed loop a slow answer delays the next request, so the requests that would
//! have waited behind it are never sent and their wait is never measured (coordinated
//! omission). An open loop fixes the send times in advance: claim `i` is due at
//! `start + i / rate`, whatever the server does. Its latency is measured from that
//! *intended* time, so time spent waiting to be sent (because the generator or its
//! bound on outstanding requests held it back) counts, as it would for a real user.
//! The service time (from the actual send) is kept beside it, to show the difference.

use std::time::{Duration, Instant};

/// A send that starts more than this after its intended time is counted late (the
/// timer's own granularity is about a millisecond).
pub const LATE_THRESHOLD: Duration = Duration::from_millis(5);

/// A fixed-rate schedule of claims.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// A schedule of `rate` claims per second; `None` unless `rate` is finite and
    /// positive.
    pub fn new(rate: f64) -> Option<Self> {
        (rate.is_finite() && rate > 0.0).then_some(Self { rate })
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When claim `index` is due, from the schedule's start: `index / rate`, to the
    /// nanosecond.
    pub fn offset(&self, index: u64) -> Duration {
        Duration::from_nanos((index as f64 * 1e9 / self.rate).round() as u64)
    }

    /// How many of `total` claims are due strictly before `within` (all of them when
    /// `within` is `None`).
    pub fn claims_within(&self, within: Option<Duration>, total: u64) -> u64 {
        let Some(within) = within else {
            return total;
        };
        // First guess from the rate, then settle it against `offset` itself, so the
        // two can never disagree by a rounding.
        let mut n = ((within.as_secs_f64() * self.rate).ceil() as u64).min(total);
        while n > 0 && self.offset(n - 1) >= within {
            n -= 1;
        }
        while n < total && self.offset(n) < within {
            n += 1;
        }
        n
    }
}

/// The three instants of one open-loop claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When the schedule said to send it.
    pub intended: Instant,
    /// When its first attempt actually started.
    pub sent: Instant,
    /// When its final answer arrived (retries included).
    pub done: Instant,
}

impl Timing {
    /// The latency corrected for coordinated omission: from the intended send time.
    pub fn corrected(&self) -> Duration {
        self.done.saturating_duration_since(self.intended)
    }

    /// The service time: from the actual send.
    pub fn service(&self) -> Duration {
        self.done.saturating_duration_since(self.sent)
    }

    /// How far behind schedule the send started.
    pub fn lateness(&self) -> Duration {
        self.sent.saturating_duration_since(self.intended)
    }

    /// True when the send started more than [`LATE_THRESHOLD`] behind schedule.
    pub fn is_late(&self) -> bool {
        self.lateness() > LATE_THRESHOLD
    }
}

/// A latency in whole microseconds (at least 1, the histograms' lowest value).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn claims_are_due_at_fixed_intervals() {
        let s = Schedule::new(1000.0).unwrap();
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), MS);
        assert_eq!(s.offset(2500), Duration::from_millis(2500));
        let s = Schedule::new(3.0).unwrap();
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        let s = Schedule::new(5000.0).unwrap();
        assert_eq!(s.offset(1), Duration::from_micros(200));
        assert_eq!(s.offset(1_000_000), Duration::from_secs(200));
    }

    #[test]
    fn rates_must_be_positive_and_finite() {
        assert!(Schedule::new(0.0).is_none());
        assert!(Schedule::new(-5.0).is_none());
        assert!(Schedule::new(f64::NAN).is_none());
        assert!(Schedule::new(f64::INFINITY).is_none());
        assert!(Schedule::new(0.5).is_some());
    }

    #[test]
    fn a_duration_bounds_the_claims_sent() {
        let s = Schedule::new(1000.0).unwrap();
        // Due at 0, 1, …, 999 ms: 1000 claims before 1 s; claim 1000 is due at 1 s.
        assert_eq!(
            s.claims_within(Some(Duration::from_secs(1)), 1_000_000),
            1000
        );
        assert_eq!(
            s.claims_within(Some(Duration::from_micros(1_000_500)), 1_000_000),
            1001
        );
        assert_eq!(s.claims_within(Some(Duration::from_secs(1)), 10), 10);
        assert_eq!(s.claims_within(None, 123), 123);
        assert_eq!(s.claims_within(Some(Duration::ZERO), 123), 0);
        let s = Schedule::new(3.0).unwrap();
        // Due at 0, 1/3, 2/3 s; claim 3 is due at 1 s exactly.
        assert_eq!(s.claims_within(Some(Duration::from_secs(1)), 100), 3);
        for n in 0..50 {
            let within = Some(s.offset(n));
            assert_eq!(
                s.claims_within(within, 100),
                n,
                "claims due before claim {n}"
            );
        }
    }

    #[test]
    fn latency_is_measured_from_the_intended_send() {
        let t0 = Instant::now();
        // Due at 0, held back 50 ms (the generator was behind), answered 10 ms later.
        let t = Timing {
            intended: t0,
            sent: t0 + 50 * MS,
            done: t0 + 60 * MS,
        };
        assert_eq!(t.corrected(), 60 * MS);
        assert_eq!(t.service(), 10 * MS);
        assert_eq!(t.lateness(), 50 * MS);
        assert!(t.is_late());

        // On time (within the timer's granularity).
        let t = Timing {
            intended: t0,
            sent: t0 + MS,
            done: t0 + 3 * MS,
        };
        assert_eq!(t.corrected(), 3 * MS);
        assert!(!t.is_late());

        // Sent a hair early (timer rounding): never a negative lateness.
        let t = Timing {
            intended: t0 + MS,
            sent: t0,
            done: t0 + 2 * MS,
        };
        assert_eq!(t.lateness(), Duration::ZERO);
        assert_eq!(t.corrected(), MS);
    }

    #[test]
    fn a_stalled_server_shows_in_every_later_claim() {
        // The classic case: at 100/s, the server stalls for 1 s and answers everything
        // queued when it comes back. A closed loop records one slow request; the
        // corrected open loop records the wait of each claim that was due meanwhile.
        let s = Schedule::new(100.0).unwrap();
        let t0 = Instant::now();
        let back = t0 + Duration::from_secs(1);
        let corrected: Vec<u64> = (0..100)
            .map(|i| {
                let intended = t0 + s.offset(i);
                micros(
                    Timing {
                        intended,
                        sent: intended,
                        done: back,
                    }
                    .corrected(),
                )
            })
            .collect();
        assert_eq!(corrected[0], 1_000_000);
        assert_eq!(corrected[50], 500_000);
        assert_eq!(corrected[99], 10_000);
        let mean = corrected.iter().sum::<u64>() / 100;
        assert_eq!(mean, 505_000);
    }

    #[test]
    fn micros_never_records_zero() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_nanos(999)), 1);
        assert_eq!(micros(Duration::from_millis(2)), 2000);
    }
}

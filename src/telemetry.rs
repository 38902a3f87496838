//! Logging and metrics.
//!
//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or
//! JSON (`SEATGATE_LOG_FORMAT=json`); every request runs in a span named by its
//! `x-request-id` (see `api::router`). Rules kept
//! throughout the code: identifiers as fields (`event.id = %id`), an error logged once
//! where it is handled, and never a token, secret or request body.
//!
//! Metrics: the `metrics` facade with a Prometheus recorder, rendered by `GET /metrics`
//! (see `api::metrics`). Every metric name lives in this module. The recorder is
//! global and can be installed only once per process, so [`prometheus`] installs it
//! on first use and hands back the same handle ever after; several gateways in one
//! process (the tests) therefore share their counters.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `seatgate_claims_total` | counter | `outcome` ([`ClaimResult::label`]) |
//! | `seatgate_claim_duration_seconds` | histogram | |
//! | `seatgate_claims_in_flight` | gauge | |
//! | `seatgate_bookings_settled_total` | counter | `result`: confirmed, rejected, cancelled |
//! | `seatgate_reconciler_retries_total` | counter | |
//! | `seatgate_reconciler_dead_letters_total` | counter | |
//! | `seatgate_reconciler_lag_seconds` | gauge | |
//! | `seatgate_outbox_length` | gauge | |
//! | `seatgate_store_errors_total` | counter | `store`: redis, mysql |
//! | `seatgate_redis_fences_total` | counter | `cause`: new_redis_node, no_record, event_keys_lost |
//! | `seatgate_redis_fenced` | gauge | 1 while claims are fenced |
//! | `seatgate_redis_fence_seconds` | histogram | from a fence's detection to its lifting |
//! | `seatgate_replication_rounds_total` | counter | `result`: ok, too_few_replicas, failed |
//! | `seatgate_replication_round_claims` | histogram | |
//! | `seatgate_replication_wait_seconds` | histogram | |
//! | `seatgate_bookings_restored_total` | counter | |
//! | `seatgate_sweeper_seats_total` | counter | `outcome` (see [`sweeper_seats`]) |

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls are no-ops). Lines are text, or
/// one JSON object per line with `SEATGATE_LOG_FORMAT=json` (for log shippers); either
/// way each line inside a request carries that request's `request.id`.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("SEATGATE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}

const CLAIMS: &str = "seatgate_claims_total";
const CLAIM_DURATION: &str = "seatgate_claim_duration_seconds";
const CLAIMS_IN_FLIGHT: &str = "seatgate_claims_in_flight";
const SETTLED: &str = "seatgate_bookings_settled_total";
const RETRIES: &str = "seatgate_reconciler_retries_total";
const DEAD_LETTERS: &str = "seatgate_reconciler_dead_letters_total";
const LAG: &str = "seatgate_reconciler_lag_seconds";
const OUTBOX_LENGTH: &str = "seatgate_outbox_length";
const STORE_ERRORS: &str = "seatgate_store_errors_total";
const FENCES: &str = "seatgate_redis_fences_total";
const FENCED: &str = "seatgate_redis_fenced";
const FENCE_SECONDS: &str = "seatgate_redis_fence_seconds";
const REPLICATION_ROUNDS: &str = "seatgate_replication_rounds_total";
const REPLICATION_ROUND_CLAIMS: &str = "seatgate_replication_round_claims";
const REPLICATION_WAIT: &str = "seatgate_replication_wait_seconds";
const RESTORED: &str = "seatgate_bookings_restored_total";
const SWEPT: &str = "seatgate_sweeper_seats_total";
const HOLDS: &str = "seatgate_holds_total";
const EXPIRY_LAG: &str = "seatgate_hold_expiry_lag_seconds";
/// The `action` labels of [`HOLDS`].
const HOLD_ACTIONS: [&str; 4] = ["checkout", "extension", "expiry", "cancel"];

/// The sweeper's outcomes that are registered at 0 from the start.
const SWEPT_OUTCOMES: [&str; 5] = [
    "lost_in_redis_failover",
    "deadline_exceeded",
    "confirmed",
    "cancelled",
    "rejected",
];

/// Upper bounds of the claim duration histogram's buckets, in seconds: a claim is a
/// few hundred microseconds; `Prefer: wait` claims can take up to 10 s.
const CLAIM_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Upper bounds of the claims-per-round histogram's buckets (group commit): one claim
/// per round when claims come one by one, hundreds in a drop.
const ROUND_CLAIMS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

/// How often histograms are folded (without it, samples pile up until a scrape).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder: installed on the first call, the same handle
/// after. If another recorder was installed first (an embedding program), that one
/// keeps the metrics and this handle renders nothing.
pub(crate) fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(CLAIM_DURATION.into()), CLAIM_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(Matcher::Full(REPLICATION_WAIT.into()), CLAIM_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full(REPLICATION_ROUND_CLAIMS.into()),
                ROUND_CLAIMS_BUCKETS,
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if let Err(err) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %err, "another metrics recorder is installed; /metrics stays empty");
        }
        describe();
        register_zeros();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot start the metrics upkeep thread");
        }
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(CLAIMS, "Claims answered, by outcome");
    describe_histogram!(
        CLAIM_DURATION,
        Unit::Seconds,
        "Time from an authenticated claim request to its answer"
    );
    describe_gauge!(CLAIMS_IN_FLIGHT, "Claims holding a load-shedding permit");
    describe_counter!(SETTLED, "Bookings settled, by result");
    describe_counter!(
        RETRIES,
        "Outbox entries that failed transiently and were left for a retry"
    );
    describe_counter!(
        DEAD_LETTERS,
        "Undecodable outbox entries moved to a dead-letter stream"
    );
    describe_gauge!(
        LAG,
        Unit::Seconds,
        "Age of the oldest outbox entry in the reconciler's last read (0 if none)"
    );
    describe_gauge!(
        OUTBOX_LENGTH,
        "Entries in all outbox streams (unsettled claims), sampled at most once a second"
    );
    describe_counter!(STORE_ERRORS, "Failed Redis or MySQL calls answered 503");
    describe_counter!(
        REPLICATION_ROUNDS,
        "Replication WAIT rounds (SEATGATE_REDIS_MIN_REPLICAS), by result"
    );
    describe_histogram!(
        REPLICATION_ROUND_CLAIMS,
        "Claims acknowledged (or failed) together by one replication WAIT round"
    );
    describe_histogram!(
        REPLICATION_WAIT,
        Unit::Seconds,
        "Time one replication WAIT round took"
    );
    describe_counter!(
        FENCES,
        "Times claims were fenced because Redis may have lost writes, by cause"
    );
    describe_gauge!(
        FENCED,
        "1 while claims are fenced, waiting for Redis to be rebuilt from MySQL"
    );
    describe_histogram!(
        FENCE_SECONDS,
        Unit::Seconds,
        "Time from a fence's detection to its lifting"
    );
    describe_counter!(
        RESTORED,
        "Confirmed bookings whose record Redis had lost, written back into Redis from MySQL"
    );
    describe_counter!(
        HOLDS,
        "What happened to held bookings (events with holds), by action: checkout, extension, expiry, cancel; new holds count as seatgate_bookings_settled_total{result=\"held\"}"
    );
    describe_histogram!(
        EXPIRY_LAG,
        Unit::Seconds,
        "Time from a hold's deadline to its expiry in MySQL and Redis"
    );
    describe_counter!(
        SWEPT,
        "Seats the sweeper found held by a claim that could not settle, by how it settled them"
    );
}

/// Registers the series that appear only on trouble, so they read 0 rather than
/// being absent until the first one (which rate() and alerts handle badly).
fn register_zeros() {
    for action in HOLD_ACTIONS {
        metrics::counter!(HOLDS, "action" => action).increment(0);
    }
    for result in ["confirmed", "held", "rejected", "cancelled"] {
        metrics::counter!(SETTLED, "result" => result).increment(0);
    }
    for store in ["redis", "mysql"] {
        metrics::counter!(STORE_ERRORS, "store" => store).increment(0);
    }
    for result in ["ok", "too_few_replicas", "failed"] {
        metrics::counter!(REPLICATION_ROUNDS, "result" => result).increment(0);
    }
    for outcome in SWEPT_OUTCOMES {
        metrics::counter!(SWEPT, "outcome" => outcome).increment(0);
    }
    metrics::counter!(RETRIES).increment(0);
    metrics::counter!(DEAD_LETTERS).increment(0);
    metrics::counter!(RESTORED).increment(0);
    metrics::gauge!(LAG).increment(0.0);
    metrics::gauge!(OUTBOX_LENGTH).increment(0.0);
    metrics::gauge!(FENCED).increment(0.0);
}

/// Installs the recorder (see [`prometheus`]) and registers every series, so that
/// all of them show from the first scrape.
pub(crate) fn init_metrics() {
    claim_metrics();
}

/// How a claim request was answered (the `outcome` label of `seatgate_claims_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimResult {
    Pending,
    /// The `mysql` strategy's synchronous booking.
    Confirmed,
    SeatsUnavailable,
    SoldOut,
    UserLimit,
    UnknownSeats,
    EventNotFound,
    KeyReused,
    /// The first answer again, for a repeated Idempotency-Key and body.
    Replay,
    /// 400: a malformed body or header.
    InvalidRequest,
    Overloaded,
    RateLimited,
    /// 503: Redis or MySQL failed or timed out on the claim path.
    Unavailable,
}

impl ClaimResult {
    const ALL: [ClaimResult; 13] = [
        Self::Pending,
        Self::Confirmed,
        Self::SeatsUnavailable,
        Self::SoldOut,
        Self::UserLimit,
        Self::UnknownSeats,
        Self::EventNotFound,
        Self::KeyReused,
        Self::Replay,
        Self::InvalidRequest,
        Self::Overloaded,
        Self::RateLimited,
        Self::Unavailable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::SeatsUnavailable => "seats_unavailable",
            Self::SoldOut => "sold_out",
            Self::UserLimit => "user_limit",
            Self::UnknownSeats => "unknown_seats",
            Self::EventNotFound => "event_not_found",
            Self::KeyReused => "key_reused",
            Self::Replay => "replay",
            Self::InvalidRequest => "invalid_request",
            Self::Overloaded => "overloaded",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The claim path's metric handles, registered once: recording one is an atomic
/// operation, with no registry lookup and no allocation.
struct ClaimMetrics {
    outcomes: [Counter; ClaimResult::ALL.len()],
    duration: Histogram,
    in_flight: Gauge,
}

fn claim_metrics() -> &'static ClaimMetrics {
    static METRICS: OnceLock<ClaimMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        // The handles must come from the real recorder, not the no-op one.
        prometheus();
        ClaimMetrics {
            outcomes: ClaimResult::ALL
                .map(|outcome| metrics::counter!(CLAIMS, "outcome" => outcome.label())),
            duration: metrics::histogram!(CLAIM_DURATION),
            in_flight: metrics::gauge!(CLAIMS_IN_FLIGHT),
        }
    })
}

/// Records one claim request: created once the caller is authenticated, told the
/// outcome, and recorded (count and duration) when dropped. A request abandoned
/// before its answer (the request timeout of the API, which answers 503
/// `unavailable`, or a client that went away) is recorded as `unavailable`.
pub(crate) struct ClaimProbe {
    started: Instant,
    outcome: ClaimResult,
}

impl ClaimProbe {
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            outcome: ClaimResult::Unavailable,
        }
    }

    pub fn set(&mut self, outcome: ClaimResult) {
        self.outcome = outcome;
    }

    pub fn outcome(&self) -> ClaimResult {
        self.outcome
    }
}

impl Drop for ClaimProbe {
    fn drop(&mut self) {
        let m = claim_metrics();
        m.outcomes[self.outcome as usize].increment(1);
        m.duration.record(self.started.elapsed());
    }
}

/// Sets `seatgate_claims_in_flight`.
pub(crate) fn claims_in_flight(n: usize) {
    claim_metrics().in_flight.set(n as f64);
}

/// Counts settled bookings: `result` is `confirmed`, `rejected` or `cancelled`.
pub(crate) fn bookings_settled(result: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!(SETTLED, "result" => result).increment(n as u64);
    }
}

/// Counts one reconciler step's retried and dead-lettered entries.
pub(crate) fn reconciler_trouble(retries: usize, dead: usize) {
    if retries > 0 {
        metrics::counter!(RETRIES).increment(retries as u64);
    }
    if dead > 0 {
        metrics::counter!(DEAD_LETTERS).increment(dead as u64);
    }
}

pub(crate) fn reconciler_lag(lag: Duration) {
    metrics::gauge!(LAG).set(lag.as_secs_f64());
}

pub fn outbox_length(n: u64) {
    metrics::gauge!(OUTBOX_LENGTH).set(n as f64);
}

/// Counts a confirmed booking written back into Redis after Redis lost its record.
pub(crate) fn booking_restored() {
    metrics::counter!(RESTORED).increment(1);
}

/// Counts `seats` that the sweeper freed from a stuck claim. `outcome` is how the claim
/// ended: the booking status MySQL had and Redis now follows (`confirmed`, `cancelled`,
/// `rejected`), or the reason it was rejected now (`lost_in_redis_failover`,
/// `deadline_exceeded`, `seats_taken`, ...).
pub(crate) fn sweeper_seats(outcome: &'static str, seats: usize) {
    metrics::counter!(SWEPT, "outcome" => outcome).increment(seats as u64);
}

/// Counts one thing done to a held booking: `action` is one of [`HOLD_ACTIONS`].
pub(crate) fn hold_action(action: &'static str) {
    debug_assert!(HOLD_ACTIONS.contains(&action), "{action}");
    metrics::counter!(HOLDS, "action" => action).increment(1);
}

/// Records how late a hold was expired after its deadline.
pub(crate) fn hold_expired(lag: Duration) {
    metrics::counter!(HOLDS, "action" => "expiry").increment(1);
    metrics::histogram!(EXPIRY_LAG).record(lag.as_secs_f64());
}

/// Counts a failed Redis (`store = "redis"`) or MySQL (`"mysql"`) call.
pub(crate) fn store_error(store: &'static str) {
    metrics::counter!(STORE_ERRORS, "store" => store).increment(1);
}

/// Counts a fence put up for `cause` and shows claims as fenced.
pub(crate) fn fence_raised(cause: &'static str) {
    metrics::counter!(FENCES, "cause" => cause).increment(1);
    metrics::gauge!(FENCED).set(1.0);
}

/// Shows claims open again after a fence of `lasted`.
pub(crate) fn fence_lifted(lasted: Duration) {
    metrics::gauge!(FENCED).set(0.0);
    metrics::histogram!(FENCE_SECONDS).record(lasted.as_secs_f64());
}

/// Records one replication `WAIT` round: its result (`ok`, `too_few_replicas`,
/// `failed`), how many claims it answered, and how long it took.
pub(crate) fn replication_round(result: &'static str, claims: u64, took: Duration) {
    metrics::counter!(REPLICATION_ROUNDS, "result" => result).increment(1);
    metrics::histogram!(REPLICATION_ROUND_CLAIMS).record(claims as f64);
    metrics::histogram!(REPLICATION_WAIT).record(took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_results_index_their_own_label() {
        for (i, outcome) in ClaimResult::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
        }
    }
}

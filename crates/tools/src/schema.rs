//! The JSON drop report (`seatgate-tools drop --json`) as types: `drop` writes them
//! (from the load generator's report) and `plot` reads them, so the two agree on every
//! field by construction.
//!
//! A single drop is a [`DropRun`] tagged [`SCHEMA`]; a `--compare` run is a [`Compare`]
//! tagged [`COMPARE_SCHEMA`] holding both drops. Latencies are in microseconds, times
//! in seconds, as the field names say. An absent value (a quantile of an empty
//! histogram, a rate of a closed loop) is `null`, never left out.
//!
//! A drop over several events (`--events N`) gives its totals where a single event's
//! report has them, `config.events` = N, and one [`EventRun`] per event in `events`.
//! Reports written before `events` existed read as one event with no per-event lines.
//!
//! A drop on events with holds (`--hold-seconds`) adds [`Holds`] under `holds`: the
//! holds made, checked out and expired, the seats re-sold after an expiry and the
//! final seat count.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version tag of the JSON report; bump it when a field changes meaning.
pub const SCHEMA: &str = "seatgate.drop.v1";
/// Version tag of the JSON of a `--compare` run.
pub const COMPARE_SCHEMA: &str = "seatgate.drop.compare.v1";

/// One drop: its settings, what it measured, and what the checks found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropRun {
    /// [`SCHEMA`].
    pub schema: String,
    pub config: Config,
    pub event_id: String,
    pub claims: Claims,
    /// From the first send to the last answer.
    pub drop_time_s: f64,
    /// Claims answered per second of the drop.
    pub throughput_per_s: f64,
    /// Claim latency, retries included.
    pub latency_us: Latency,
    /// Open loop only: the service time, from the actual send.
    pub service_time_us: Option<Latency>,
    pub outcomes: Outcomes,
    pub retries: u64,
    pub confirmation: Confirmation,
    pub verification: Verification,
    /// `--watchers`: what the live seat map's subscribers received.
    pub live_watchers: Option<WatchSummary>,
    /// One entry per event of the drop, in the order claims went round them (empty in
    /// reports written before it existed).
    #[serde(default)]
    pub events: Vec<EventRun>,
    /// Events with holds (`--hold-seconds`): what the holds came to, over every event;
    /// `null` without holds (and in reports written before holds existed).
    #[serde(default)]
    pub holds: Option<Holds>,
}

/// A drop on events with holds: the holds its buyers made and how each ended, the
/// returning waves, and the seats at the end, as the stores have them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holds {
    /// The events' `hold_seconds`.
    pub hold_seconds: u32,
    /// The share of holds the buyers meant to check out.
    pub checkout_ratio: f64,
    /// Waves of buyers, the drop included (a returning wave follows once every hold
    /// of the one before has ended and expiries freed seats).
    pub waves: u32,
    /// Claims of returning buyers (beyond the drop's `claims`), and the holds they won.
    pub returning_claims: u64,
    pub returning_won: u64,
    /// Claims answered 202 in every wave: each became a hold.
    pub holds: u64,
    /// Holds checked out (booking `confirmed`).
    pub checkouts: u64,
    /// Holds that expired (booking `expired`); `checkouts + expiries = holds`.
    pub expiries: u64,
    /// Buyers who chose not to check out.
    pub abandoned: u64,
    /// Checkouts answered 409 `hold_expired`.
    pub late_checkouts: u64,
    /// Seats a later buyer checked out after an earlier hold on them expired.
    pub resold_seats: u64,
    /// The seats at the end: `booked + available = total`, every seat booked once or free.
    pub seats: SeatCount,
}

/// The seats of the drop's events at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatCount {
    pub total: u64,
    pub booked: u64,
    pub available: u64,
}

/// One event of a drop: its share of the claims and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRun {
    pub event_id: String,
    /// On a Redis Cluster: `host:port` of the primary that served the event's slot.
    pub shard: Option<String>,
    /// Claims sent to this event (each has a final answer).
    pub sent: u64,
    pub won: u64,
    pub won_seats: u64,
    pub lost: u64,
    /// Errors (answers neither won, lost nor limited).
    pub errors: u64,
    /// The event's claims' latency; no `distribution`.
    pub latency_us: Latency,
    pub confirmed_seats: u64,
    pub time_to_all_confirmed_s: Option<f64>,
    /// The event's checks passed.
    pub ok: bool,
}

/// How the claims were paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pacing {
    /// A fixed number of claims in flight.
    Closed,
    /// A fixed rate, on a schedule.
    Open,
}

/// The run's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `in-process` or the gateway's URL.
    pub target: String,
    /// The claim strategy, when known (in-process runs).
    pub strategy: Option<String>,
    pub mode: Pacing,
    /// Seats of each event.
    pub seats: u32,
    pub claims_per_seat: u32,
    /// Events of the drop, each of `seats` seats (1 in reports written before it).
    #[serde(default = "one")]
    pub events: u32,
    pub users: u64,
    pub claims: u64,
    /// Closed loop: claims in flight; open loop: the bound on outstanding claims.
    pub concurrency: u32,
    /// Open loop only.
    pub rate_per_s: Option<f64>,
    /// Open loop only: how late a claim may start before it is dropped.
    pub max_lateness_ms: Option<u64>,
    pub duration_s: Option<f64>,
    pub quantity_mix: Option<Vec<MixShare>>,
    pub per_user_limit: u32,
    pub seed: u64,
}

fn one() -> u32 {
    1
}

/// One entry of the `--quantity-mix`: `percent` of the claims ask for `quantity` seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixShare {
    pub quantity: u32,
    pub percent: u32,
}

/// What became of the workload's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub planned: u64,
    pub sent: u64,
    pub not_sent: u64,
    pub dropped: u64,
    pub late: u64,
}

/// A latency histogram, summarised (µs; `None` when it recorded nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// `first_attempt`, `intended_send` or `actual_send`.
    pub measured_from: String,
    pub count: u64,
    pub min: Option<u64>,
    pub mean: Option<u64>,
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub p99_9: Option<u64>,
    pub max: Option<u64>,
    /// `(percentile in 0..=100, µs)` points, percentile ascending, denser towards the
    /// tail, the last at 100 %. `None` only when a report has no such field; `plot`
    /// then says it cannot draw it.
    pub distribution: Option<Vec<(f64, u64)>>,
}

/// The answers the clients got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    pub won: u64,
    pub won_seats: u64,
    pub won_pending: u64,
    pub won_confirmed: u64,
    pub lost: u64,
    pub user_limit_exceeded: u64,
    pub errors: u64,
    /// Every final answer by label (`202 pending`, `409 sold_out`, …).
    pub by_answer: BTreeMap<String, u64>,
}

/// How the wait for every won claim to be confirmed ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confirmation {
    pub confirmed_seats: u64,
    pub all_confirmed: bool,
    pub time_to_all_confirmed_s: Option<f64>,
}

/// The checks that ran, and the ones that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub checks: Vec<String>,
    pub failures: Vec<String>,
}

/// A `--compare` run: the same drop against two claim strategies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    /// [`COMPARE_SCHEMA`].
    pub schema: String,
    /// Ours first, then the baseline.
    pub runs: Vec<DropRun>,
    pub comparison: Ratios,
}

/// Ours against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub ours: String,
    pub baseline: String,
    /// Above 1: ours answers more claims per second.
    pub throughput_ratio: f64,
    /// Below 1: ours is faster at p99.
    pub p99_ratio: f64,
}

/// What the `--watchers` received, summed over them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSummary {
    pub watchers: u32,
    pub snapshots: u64,
    pub deltas: u64,
    pub bytes: u64,
}

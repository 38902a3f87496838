//! What a drop measured and found: the report, its JSON form for machines and its
//! short table for people. One file because the report's fields, its table and its
//! mapping onto the JSON types of [`crate::schema`] change together.

use hdrhistogram::Histogram;
use seatgate::cli::thousands;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::mix::QuantityMix;
use super::schedule::LATE_THRESHOLD;
use crate::schema::{self, COMPARE_SCHEMA, SCHEMA};

/// How long the verifier waits for every won claim to be confirmed once the drop
/// has ended.
pub const CONFIRM_DEADLINE: Duration = Duration::from_secs(120);

/// How the claims were paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `concurrency` claims in flight at all times.
    Closed { concurrency: u32 },
    /// `rate` claims per second on a fixed schedule, at most `max_outstanding` in
    /// flight; a claim that cannot start within `max_lateness` of its time is dropped.
    Open {
        rate: f64,
        max_outstanding: u32,
        max_lateness: Duration,
    },
}

/// The run's settings, as the report repeats them.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `in-process` or the gateway's URL.
    pub target: String,
    /// The claim strategy, when known (in-process runs).
    pub strategy: Option<String>,
    pub mode: Mode,
    /// Seats of each event.
    pub seats: u32,
    pub claims_per_seat: u32,
    pub users: u64,
    /// Claims in the workload (`events × seats × claims_per_seat`).
    pub claims: u64,
    pub duration: Option<Duration>,
    pub quantity_mix: Option<QuantityMix>,
    pub per_user_limit: u32,
    pub seed: u64,
    /// The first (or only) event.
    pub event_id: String,
}

/// One event of a drop (see [`DropReport::events`]).
#[derive(Debug)]
pub struct EventTally {
    pub event_id: String,
    /// On a Redis Cluster: `host:port` of the primary serving the event's slot.
    pub shard: Option<String>,
    pub sent: u64,
    pub won: u64,
    pub won_seats: u64,
    pub won_pending: u64,
    pub lost: u64,
    pub errors: u64,
    /// As [`DropReport::latency`], this event's claims only.
    pub latency: Histogram<u64>,
    pub confirmed: u64,
    pub confirmed_after: Option<Duration>,
    /// The event's checks all passed.
    pub ok: bool,
}

impl EventTally {
    pub fn new(event_id: &str) -> Self {
        Self {
            event_id: event_id.to_owned(),
            shard: None,
            sent: 0,
            won: 0,
            won_seats: 0,
            won_pending: 0,
            lost: 0,
            errors: 0,
            latency: histogram(),
            confirmed: 0,
            confirmed_after: None,
            ok: true,
        }
    }

    fn to_schema(&self, measured_from: &str) -> schema::EventRun {
        let mut latency_us = latency_summary(&self.latency, measured_from);
        latency_us.distribution = None;
        schema::EventRun {
            event_id: self.event_id.clone(),
            shard: self.shard.clone(),
            sent: self.sent,
            won: self.won,
            won_seats: self.won_seats,
            lost: self.lost,
            errors: self.errors,
            latency_us,
            confirmed_seats: self.confirmed,
            time_to_all_confirmed_s: self.confirmed_after.map(|d| d.as_secs_f64()),
            ok: self.ok,
        }
    }
}

/// What one drop measured and found.
#[derive(Debug)]
pub struct DropReport {
    pub config: RunConfig,
    /// Claims sent (each has a final answer, errors included).
    pub sent: u64,
    /// Claims of the workload never sent because `--duration` ran out.
    pub not_sent: u64,
    /// Open loop: claims not sent because the bound on outstanding requests held them
    /// back past the allowed lateness.
    pub dropped: u64,
    /// Open loop: claims sent more than [`super::schedule::LATE_THRESHOLD`] late.
    pub late: u64,
    /// From the first send to the last answer.
    pub drop_time: Duration,
    /// Claim latency in µs, retries included: from the intended send time in an open
    /// loop (corrected for coordinated omission), from the first attempt otherwise.
    pub latency: Histogram<u64>,
    /// Open loop: the service time in µs, from the actual send.
    pub service: Option<Histogram<u64>>,
    /// Won claims (bookings) and the seats they hold.
    pub won: u64,
    pub won_seats: u64,
    /// Won claims answered 202 pending (the rest were 201 confirmed).
    pub won_pending: u64,
    /// 409 seats_unavailable / sold_out.
    pub lost: u64,
    /// 422 user_limit_exceeded.
    pub user_limit: u64,
    /// Every final answer by label (`202 pending`, `409 sold_out`, …).
    pub answers: BTreeMap<String, u64>,
    /// The answers that are errors (not won, lost or limited), by label.
    pub errors: BTreeMap<String, u64>,
    pub retries: u64,
    /// Seats confirmed (booked) when the wait for confirmations ended.
    pub confirmed: u64,
    /// From the drop's end until every won claim was confirmed (`None`: not within
    /// [`CONFIRM_DEADLINE`]).
    pub confirmed_after: Option<Duration>,
    /// What the MySQL check found, when it ran and passed.
    pub mysql_summary: Option<String>,
    /// The checks that ran and passed, in words.
    pub checks: Vec<String>,
    /// `--watchers`: what the live seat map's subscribers received during the run.
    pub watch: Option<schema::WatchSummary>,
    pub failures: Vec<String>,
    /// Events with holds: what the holds came to, over every event (and every wave).
    pub holds: Option<schema::Holds>,
    /// Each event's share, in the order claims went round them (one for a
    /// single-event drop). The fields above are the totals.
    pub events: Vec<EventTally>,
}

impl DropReport {
    /// An empty report for `config`.
    pub fn new(config: RunConfig) -> Self {
        let open = matches!(config.mode, Mode::Open { .. });
        Self {
            sent: 0,
            not_sent: 0,
            dropped: 0,
            late: 0,
            drop_time: Duration::ZERO,
            latency: histogram(),
            service: open.then(histogram),
            won: 0,
            won_seats: 0,
            won_pending: 0,
            lost: 0,
            user_limit: 0,
            answers: BTreeMap::new(),
            errors: BTreeMap::new(),
            retries: 0,
            confirmed: 0,
            confirmed_after: None,
            mysql_summary: None,
            checks: Vec::new(),
            failures: Vec::new(),
            watch: None,
            holds: None,
            events: vec![EventTally::new(&config.event_id)],
            config,
        }
    }

    /// Claims answered per second of the drop.
    pub fn throughput(&self) -> f64 {
        self.sent as f64 / self.drop_time.as_secs_f64().max(1e-9)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The machine-readable report.
    pub fn to_schema(&self) -> schema::DropRun {
        let c = &self.config;
        let (mode, concurrency, rate_per_s, max_lateness_ms) = match c.mode {
            Mode::Closed { concurrency } => (schema::Pacing::Closed, concurrency, None, None),
            Mode::Open {
                rate,
                max_outstanding,
                max_lateness,
            } => (
                schema::Pacing::Open,
                max_outstanding,
                Some(rate),
                Some(max_lateness.as_millis() as u64),
            ),
        };
        let quantity_mix = c.quantity_mix.as_ref().map(|m| {
            m.entries()
                .iter()
                .map(|e| schema::MixShare {
                    quantity: e.quantity,
                    percent: e.percent,
                })
                .collect()
        });
        let measured_from = if self.service.is_some() {
            "intended_send"
        } else {
            "first_attempt"
        };
        schema::DropRun {
            schema: SCHEMA.to_owned(),
            config: schema::Config {
                target: c.target.clone(),
                strategy: c.strategy.clone(),
                mode,
                seats: c.seats,
                claims_per_seat: c.claims_per_seat,
                events: self.events.len().max(1) as u32,
                users: c.users,
                claims: c.claims,
                concurrency,
                rate_per_s,
                max_lateness_ms,
                duration_s: c.duration.map(|d| d.as_secs_f64()),
                quantity_mix,
                per_user_limit: c.per_user_limit,
                seed: c.seed,
            },
            event_id: c.event_id.clone(),
            claims: schema::Claims {
                planned: c.claims,
                sent: self.sent,
                not_sent: self.not_sent,
                dropped: self.dropped,
                late: self.late,
            },
            drop_time_s: self.drop_time.as_secs_f64(),
            throughput_per_s: self.throughput(),
            latency_us: latency_summary(&self.latency, measured_from),
            service_time_us: self
                .service
                .as_ref()
                .map(|h| latency_summary(h, "actual_send")),
            outcomes: schema::Outcomes {
                won: self.won,
                won_seats: self.won_seats,
                won_pending: self.won_pending,
                won_confirmed: self.won - self.won_pending,
                lost: self.lost,
                user_limit_exceeded: self.user_limit,
                errors: self.error_count(),
                by_answer: self.answers.clone(),
            },
            retries: self.retries,
            confirmation: schema::Confirmation {
                confirmed_seats: self.confirmed,
                all_confirmed: self.confirmed_after.is_some(),
                time_to_all_confirmed_s: self.confirmed_after.map(|d| d.as_secs_f64()),
            },
            verification: schema::Verification {
                ok: self.ok(),
                checks: self.checks.clone(),
                failures: self.failures.clone(),
            },
            live_watchers: self.watch,
            events: self
                .events
                .iter()
                .map(|e| e.to_schema(measured_from))
                .collect(),
            holds: self.holds.clone(),
        }
    }

    /// [`to_schema`](Self::to_schema) as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_schema()).expect("a drop report serializes")
    }

    /// The short table for people.
    pub fn render(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        let strategy = c
            .strategy
            .as_deref()
            .map(|s| format!("{s} strategy, "))
            .unwrap_or_default();
        let target = if c.target == "in-process" {
            "in-process gateway".to_owned()
        } else {
            c.target.clone()
        };
        let pacing = match c.mode {
            Mode::Closed { concurrency } => {
                format!("closed loop, {} in flight", thousands(concurrency.into()))
            }
            Mode::Open {
                rate,
                max_outstanding,
                ..
            } => format!(
                "open loop at {} claims/s, at most {} outstanding",
                thousands(rate.round() as u64),
                thousands(max_outstanding.into())
            ),
        };
        let _ = writeln!(out, "seatgate drop: {strategy}{target}, {pacing}");
        let wants = match &c.quantity_mix {
            Some(mix) => format!("quantity mix {mix}"),
            None => "one named seat each".to_owned(),
        };
        let events = match self.events.len() {
            0 | 1 => String::new(),
            n => format!("{n} events × "),
        };
        let _ = writeln!(
            out,
            "  workload        {events}{} seats × {} claims per seat = {} claims by {} users, {wants}",
            thousands(c.seats.into()),
            thousands(c.claims_per_seat.into()),
            thousands(c.claims),
            thousands(c.users),
        );
        if self.events.len() <= 1 {
            let shard = self
                .events
                .first()
                .and_then(|e| e.shard.as_deref())
                .map(|s| format!("   (shard {s})"))
                .unwrap_or_default();
            let _ = writeln!(out, "  event           {}{shard}", c.event_id);
        } else {
            let _ = writeln!(out, "  events");
            self.render_events(&mut out);
        }
        let mut sent = format!(
            "  sent            {} in {:.2} s = {} claims/s",
            thousands(self.sent),
            self.drop_time.as_secs_f64(),
            thousands(self.throughput().round() as u64),
        );
        if self.not_sent > 0 {
            let _ = write!(
                sent,
                "   ({} not sent: --duration)",
                thousands(self.not_sent)
            );
        }
        if let Mode::Open { max_lateness, .. } = c.mode {
            let _ = write!(
                sent,
                "   late {} (>{} ms), dropped {} (no slot within {} ms)",
                thousands(self.late),
                LATE_THRESHOLD.as_millis(),
                thousands(self.dropped),
                max_lateness.as_millis()
            );
        }
        let _ = writeln!(out, "{sent}");
        let label = if self.service.is_some() {
            "latency (CO)   "
        } else {
            "latency        "
        };
        let _ = writeln!(out, "  {label} {}", percentiles(&self.latency));
        if let Some(service) = &self.service {
            let _ = writeln!(out, "  service time    {}", percentiles(service));
        }
        let _ = writeln!(
            out,
            "  won             {} bookings, {} seats",
            thousands(self.won),
            thousands(self.won_seats)
        );
        let _ = writeln!(
            out,
            "  lost/limited    {} / {}",
            thousands(self.lost),
            thousands(self.user_limit)
        );
        let _ = writeln!(
            out,
            "  errors/retries  {} / {}",
            thousands(self.error_count()),
            thousands(self.retries)
        );
        for (label, count) in &self.answers {
            let _ = writeln!(out, "    {label:<28} {}", thousands(*count));
        }
        match &self.holds {
            Some(h) => render_holds(&mut out, h, "  ", 16),
            None => {
                let _ = writeln!(out, "  confirmed       {}", self.confirmation_line());
            }
        }
        if let Some(w) = &self.watch {
            let _ = writeln!(
                out,
                "  live watchers   {} streams: {} snapshots, {} deltas, {} KiB",
                w.watchers,
                thousands(w.snapshots),
                thousands(w.deltas),
                thousands(w.bytes / 1024)
            );
        }
        if self.failures.is_empty() {
            let _ = writeln!(out, "  verification    ok: {}", self.checks.join("; "));
        } else {
            let _ = writeln!(out, "  verification    FAILED");
            self.render_failures(&mut out);
        }
        out
    }

    /// One line per event: its shard, claims, winners, p99 and confirmations.
    pub fn render_events(&self, out: &mut String) {
        let width = self
            .events
            .iter()
            .map(|e| e.event_id.len())
            .max()
            .unwrap_or(0);
        for e in &self.events {
            let shard = e
                .shard
                .as_deref()
                .map(|s| format!("  shard {s}"))
                .unwrap_or_default();
            let p99 = if e.latency.is_empty() {
                "-".to_owned()
            } else {
                millis(e.latency.value_at_quantile(0.99))
            };
            let confirmed = match e.confirmed_after {
                Some(after) => format!(
                    "{} confirmed within {:.2} s",
                    thousands(e.confirmed),
                    after.as_secs_f64()
                ),
                None => format!("{} confirmed (NOT all)", thousands(e.confirmed)),
            };
            let _ = writeln!(
                out,
                "    {:<width$}{shard}  sent {}  won {}  lost {}  errors {}  p99 {p99}  {confirmed}{}",
                e.event_id,
                thousands(e.sent),
                thousands(e.won),
                thousands(e.lost),
                thousands(e.errors),
                if e.ok { "" } else { "  FAILED" },
            );
        }
    }

    /// "N seats, all within S s of the drop's end", or how far it got.
    fn confirmation_line(&self) -> String {
        match self.confirmed_after {
            Some(after) => format!(
                "{} seats, all within {:.2} s of the drop's end",
                thousands(self.confirmed),
                after.as_secs_f64()
            ),
            None => format!(
                "{} of {} seats (not all within {} s)",
                thousands(self.confirmed),
                thousands(self.won_seats),
                CONFIRM_DEADLINE.as_secs()
            ),
        }
    }

    /// The failures, at most 20 of them, one per line.
    pub fn render_failures(&self, out: &mut String) {
        for failure in self.failures.iter().take(20) {
            let _ = writeln!(out, "    - {failure}");
        }
        if self.failures.len() > 20 {
            let _ = writeln!(out, "    … and {} more", self.failures.len() - 20);
        }
    }
}

/// The holds' lines of a report: `indent` before each label, padded to `width`.
pub fn render_holds(out: &mut String, h: &schema::Holds, indent: &str, width: usize) {
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{indent}{label:<width$}{text}");
    };
    line(
        "holds",
        format!(
            "{} of {} s, checkout ratio {:.2}, {} wave{} of buyers ({} returning claims won {})",
            thousands(h.holds),
            h.hold_seconds,
            h.checkout_ratio,
            h.waves,
            if h.waves == 1 { "" } else { "s" },
            thousands(h.returning_claims),
            thousands(h.returning_won),
        ),
    );
    line(
        "checkouts",
        format!(
            "{}   expiries {} ({} abandoned, {} checkouts too late)",
            thousands(h.checkouts),
            thousands(h.expiries),
            thousands(h.abandoned),
            thousands(h.late_checkouts),
        ),
    );
    line(
        "re-sold",
        format!("{} seats after an expiry", thousands(h.resold_seats)),
    );
    line(
        "seats",
        format!(
            "{} booked + {} available = {} (every seat booked once or free)",
            thousands(h.seats.booked),
            thousands(h.seats.available),
            thousands(h.seats.total),
        ),
    );
}

/// The same workload against two gateways: `ours` (redis) and the `baseline`.
pub struct Comparison<'a> {
    pub ours: &'a DropReport,
    pub baseline: &'a DropReport,
}

impl Comparison<'_> {
    /// Throughput of ours over the baseline's (above 1: ours answers more per second).
    pub fn throughput_ratio(&self) -> f64 {
        self.ours.throughput() / self.baseline.throughput().max(1e-9)
    }

    /// p99 latency of ours over the baseline's (below 1: ours is faster).
    pub fn p99_ratio(&self) -> f64 {
        p99(&self.ours.latency) as f64 / p99(&self.baseline.latency).max(1) as f64
    }

    fn name(report: &DropReport) -> &str {
        report.config.strategy.as_deref().unwrap_or("?")
    }

    /// The machine-readable comparison, both runs included.
    pub fn to_schema(&self) -> schema::Compare {
        schema::Compare {
            schema: COMPARE_SCHEMA.to_owned(),
            runs: vec![self.ours.to_schema(), self.baseline.to_schema()],
            comparison: schema::Ratios {
                ours: Self::name(self.ours).to_owned(),
                baseline: Self::name(self.baseline).to_owned(),
                throughput_ratio: self.throughput_ratio(),
                p99_ratio: self.p99_ratio(),
            },
        }
    }

    /// [`to_schema`](Self::to_schema) as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_schema()).expect("a comparison serializes")
    }

    pub fn render(&self) -> String {
        let (a, b) = (Self::name(self.ours), Self::name(self.baseline));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{a} vs {b}: throughput {:.2}× ({} vs {} claims/s), p99 {:.2}× ({} vs {})",
            self.throughput_ratio(),
            thousands(self.ours.throughput().round() as u64),
            thousands(self.baseline.throughput().round() as u64),
            self.p99_ratio(),
            millis(p99(&self.ours.latency)),
            millis(p99(&self.baseline.latency)),
        );
        out
    }
}

/// A latency histogram in µs, from 1 µs to an hour, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn p99(h: &Histogram<u64>) -> u64 {
    h.value_at_quantile(0.99)
}

fn latency_summary(h: &Histogram<u64>, measured_from: &str) -> schema::Latency {
    let some = |v: u64| (!h.is_empty()).then_some(v);
    let q = |q: f64| some(h.value_at_quantile(q));
    schema::Latency {
        measured_from: measured_from.to_owned(),
        count: h.len(),
        min: some(h.min()),
        mean: some(h.mean().round() as u64),
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p99_9: q(0.999),
        max: some(h.max()),
        distribution: Some(distribution(h)),
    }
}

/// Points per halving of the distance to 100 % in [`distribution`].
const DISTRIBUTION_TICKS_PER_HALF: u32 = 5;

/// The percentile distribution for plotting: `[percentile, µs]` points (percentile in
/// 0..=100, ascending), denser towards the tail, the last one at 100 % (the maximum),
/// as HdrHistogram's percentile output has them. Empty for an empty histogram.
fn distribution(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    h.iter_quantiles(DISTRIBUTION_TICKS_PER_HALF)
        .map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to()))
        .collect()
}

/// `p50 … p90 … p99 … p99.9 … max …`.
fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "(no answers)".to_owned();
    }
    format!(
        "p50 {}   p90 {}   p99 {}   p99.9 {}   max {}",
        millis(h.value_at_quantile(0.5)),
        millis(h.value_at_quantile(0.9)),
        millis(h.value_at_quantile(0.99)),
        millis(h.value_at_quantile(0.999)),
        millis(h.max()),
    )
}

/// Microseconds as milliseconds (seconds from 1 s) with sensible precision.
pub fn millis(micros: u64) -> String {
    let ms = micros as f64 / 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn latencies_read_in_milliseconds() {
        assert_eq!(millis(850), "0.85 ms");
        assert_eq!(millis(1_900), "1.9 ms");
        assert_eq!(millis(15_400), "15 ms");
        assert_eq!(millis(4_063_000), "4.1 s");
    }

    fn config(mode: Mode) -> RunConfig {
        RunConfig {
            target: "in-process".into(),
            strategy: Some("redis".into()),
            mode,
            seats: 2,
            claims_per_seat: 3,
            users: 6,
            claims: 6,
            duration: None,
            quantity_mix: Some("1:80,2:20".parse().unwrap()),
            per_user_limit: 4,
            seed: 7,
            event_id: "drop-1".into(),
        }
    }

    fn sample(mode: Mode) -> DropReport {
        let mut r = DropReport::new(config(mode));
        r.sent = 6;
        r.drop_time = Duration::from_secs(2);
        for us in [100, 200, 300, 400, 500, 10_000] {
            r.latency.record(us).unwrap();
        }
        if let Some(s) = &mut r.service {
            s.record(90).unwrap();
        }
        r.won = 2;
        r.won_seats = 2;
        r.won_pending = 2;
        r.lost = 3;
        r.errors.insert("500 internal".into(), 1);
        r.answers.insert("202 pending".into(), 2);
        r.answers.insert("409 seats_unavailable".into(), 3);
        r.answers.insert("500 internal".into(), 1);
        r.confirmed = 2;
        r.confirmed_after = Some(Duration::from_millis(250));
        r.checks.push("MySQL ok".into());
        r
    }

    /// The keys of a JSON object, sorted.
    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn the_json_report_has_its_documented_shape() {
        let j = sample(Mode::Closed { concurrency: 8 }).to_json();
        assert_eq!(
            keys(&j),
            [
                "claims",
                "config",
                "confirmation",
                "drop_time_s",
                "event_id",
                "events",
                "holds",
                "latency_us",
                "live_watchers",
                "outcomes",
                "retries",
                "schema",
                "service_time_us",
                "throughput_per_s",
                "verification"
            ]
        );
        assert_eq!(j["schema"], SCHEMA);
        assert_eq!(j["config"]["mode"], "closed");
        assert_eq!(j["config"]["concurrency"], 8);
        assert_eq!(j["config"]["rate_per_s"], Value::Null);
        assert_eq!(
            j["config"]["quantity_mix"],
            json!([{"quantity": 1, "percent": 80}, {"quantity": 2, "percent": 20}])
        );
        assert_eq!(j["claims"]["sent"], 6);
        assert_eq!(j["throughput_per_s"], 3.0);
        let lat = &j["latency_us"];
        assert_eq!(
            keys(lat),
            [
                "count",
                "distribution",
                "max",
                "mean",
                "measured_from",
                "min",
                "p50",
                "p90",
                "p99",
                "p99_9"
            ]
        );
        assert_eq!(lat["measured_from"], "first_attempt");
        assert_eq!(lat["count"], 6);
        assert_eq!(lat["p50"], 300);
        // 3 significant figures: 10,000 µs is recorded within 0.1 %.
        assert!((9_990..=10_010).contains(&lat["max"].as_u64().unwrap()));
        let dist = lat["distribution"].as_array().unwrap();
        assert!(dist.len() >= 3, "{dist:?}");
        assert_eq!(dist.first().unwrap()[1], 100);
        assert_eq!(dist.last().unwrap()[0], 100.0);
        assert_eq!(dist.last().unwrap()[1], lat["max"]);
        assert!(dist
            .windows(2)
            .all(|w| w[0][0].as_f64() <= w[1][0].as_f64() && w[0][1].as_u64() <= w[1][1].as_u64()));
        assert_eq!(j["service_time_us"], Value::Null);
        assert_eq!(j["outcomes"]["won"], 2);
        assert_eq!(j["outcomes"]["won_confirmed"], 0);
        assert_eq!(j["outcomes"]["errors"], 1);
        assert_eq!(j["outcomes"]["by_answer"]["409 seats_unavailable"], 3);
        assert_eq!(j["confirmation"]["all_confirmed"], true);
        assert_eq!(j["confirmation"]["time_to_all_confirmed_s"], 0.25);
        assert_eq!(j["verification"]["ok"], true);
        assert_eq!(j["verification"]["failures"], json!([]));
        // One event: its entry repeats the totals.
        assert_eq!(j["config"]["events"], 1);
        assert_eq!(j["events"].as_array().unwrap().len(), 1);
        assert_eq!(j["events"][0]["event_id"], "drop-1");
        assert_eq!(j["events"][0]["shard"], Value::Null);
        assert_eq!(j["holds"], Value::Null);
    }

    #[test]
    fn a_drop_with_holds_reports_them_in_the_table_and_the_json() {
        let mut r = sample(Mode::Closed { concurrency: 8 });
        r.holds = Some(schema::Holds {
            hold_seconds: 5,
            checkout_ratio: 0.7,
            waves: 3,
            returning_claims: 40,
            returning_won: 4,
            holds: 6,
            checkouts: 4,
            expiries: 2,
            abandoned: 2,
            late_checkouts: 0,
            resold_seats: 1,
            seats: schema::SeatCount {
                total: 5,
                booked: 4,
                available: 1,
            },
        });
        let j = r.to_json();
        assert_eq!(j["holds"]["checkouts"], 4);
        assert_eq!(j["holds"]["seats"]["available"], 1);
        let back: crate::schema::DropRun = serde_json::from_value(j).unwrap();
        assert_eq!(back, r.to_schema());
        let table = r.render();
        assert!(table.contains("expiries 2"), "{table}");
        assert!(table.contains("4 booked + 1 available = 5"), "{table}");
        assert!(table.contains("1 seats after an expiry"), "{table}");
    }

    #[test]
    fn an_open_loop_report_carries_both_latencies() {
        let mut r = sample(Mode::Open {
            rate: 500.0,
            max_outstanding: 64,
            max_lateness: Duration::from_secs(1),
        });
        r.failures.push("seat S1 was won twice".into());
        r.confirmed_after = None;
        let j = r.to_json();
        assert_eq!(j["config"]["mode"], "open");
        assert_eq!(j["config"]["rate_per_s"], 500.0);
        assert_eq!(j["config"]["concurrency"], 64);
        assert_eq!(j["config"]["max_lateness_ms"], 1000);
        assert_eq!(j["latency_us"]["measured_from"], "intended_send");
        assert_eq!(j["service_time_us"]["measured_from"], "actual_send");
        assert_eq!(j["service_time_us"]["count"], 1);
        assert_eq!(j["confirmation"]["time_to_all_confirmed_s"], Value::Null);
        assert_eq!(j["verification"]["ok"], false);
        let table = r.render();
        assert!(table.contains("open loop at 500 claims/s"), "{table}");
        assert!(table.contains("latency (CO)"), "{table}");
        assert!(table.contains("service time"), "{table}");
        assert!(table.contains("FAILED"), "{table}");
    }

    #[test]
    fn an_empty_histogram_reports_nulls() {
        let r = DropReport::new(config(Mode::Closed { concurrency: 1 }));
        let j = r.to_json();
        assert_eq!(j["latency_us"]["count"], 0);
        assert_eq!(j["latency_us"]["p99"], Value::Null);
        assert_eq!(j["latency_us"]["distribution"], json!([]));
        assert!(r.render().contains("(no answers)"));
    }

    #[test]
    fn a_comparison_gives_both_runs_and_the_ratios() {
        let ours = sample(Mode::Closed { concurrency: 8 });
        let mut baseline = sample(Mode::Closed { concurrency: 8 });
        baseline.config.strategy = Some("mysql".into());
        baseline.drop_time = Duration::from_secs(8);
        baseline.latency = histogram();
        baseline.latency.record(40_000).unwrap();
        let c = Comparison {
            ours: &ours,
            baseline: &baseline,
        };
        assert!((c.throughput_ratio() - 4.0).abs() < 1e-9);
        assert!(c.p99_ratio() < 0.3);
        let j = c.to_json();
        assert_eq!(j["schema"], COMPARE_SCHEMA);
        assert_eq!(j["runs"].as_array().unwrap().len(), 2);
        assert_eq!(j["runs"][1]["config"]["strategy"], "mysql");
        assert_eq!(j["comparison"]["ours"], "redis");
        assert_eq!(j["comparison"]["baseline"], "mysql");
        assert!(c.render().starts_with("redis vs mysql: throughput 4.00×"));
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::schema::DropRun;

    fn two_events() -> DropReport {
        let mut r = DropReport::new(RunConfig {
            target: "in-process".into(),
            strategy: Some("redis".into()),
            mode: Mode::Closed { concurrency: 4 },
            seats: 2,
            claims_per_seat: 2,
            users: 8,
            claims: 8,
            duration: None,
            quantity_mix: None,
            per_user_limit: 4,
            seed: 1,
            event_id: "d-0a".into(),
        });
        r.events = ["d-0a", "d-1b"]
            .iter()
            .map(|id| EventTally::new(id))
            .collect();
        for (i, e) in r.events.iter_mut().enumerate() {
            e.shard = Some(format!("127.0.0.1:700{i}"));
            e.sent = 4;
            e.won = 2;
            e.won_seats = 2;
            e.lost = 2;
            e.latency.record(1_000 * (i as u64 + 1)).unwrap();
            e.confirmed = 2;
            e.confirmed_after = Some(Duration::from_millis(100));
        }
        r.sent = 8;
        r.won = 4;
        r.drop_time = Duration::from_secs(1);
        r
    }

    #[test]
    fn a_report_of_several_events_has_a_line_and_an_entry_per_event() {
        let r = two_events();
        let j = r.to_json();
        assert_eq!(j["config"]["events"], 2);
        let events = j["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["event_id"], "d-1b");
        assert_eq!(events[1]["shard"], "127.0.0.1:7001");
        assert_eq!(events[1]["won"], 2);
        assert_eq!(events[1]["latency_us"]["p99"], 2_000);
        assert_eq!(events[1]["latency_us"]["distribution"], Value::Null);
        assert_eq!(events[0]["time_to_all_confirmed_s"], 0.1);
        let table = r.render();
        assert!(table.contains("2 events × 2 seats"), "{table}");
        let line = table.lines().find(|l| l.contains("d-1b")).unwrap();
        assert!(line.contains("shard 127.0.0.1:7001"), "{line}");
        assert!(line.contains("won 2"), "{line}");
        // And the typed report reads back what was written.
        let back: DropRun = serde_json::from_value(j).unwrap();
        assert_eq!(back, r.to_schema());
    }

    #[test]
    fn a_report_written_before_events_existed_still_reads() {
        let mut old = two_events().to_json();
        old.as_object_mut().unwrap().remove("events");
        old["config"].as_object_mut().unwrap().remove("events");
        let back: DropRun = serde_json::from_value(old).unwrap();
        assert_eq!(back.config.events, 1);
        assert!(back.events.is_empty());
    }
}

//! `seatgate-tools demo`: a real ticket drop on this machine, through the real HTTP API.
//!
//! The demo is a preset of `seatgate-tools drop` (see [`crate::loadgen`]): it starts the
//! gateway in this process (on a free port, with the reconciler), creates an event and
//! warms it, then fires `seats × claims-per-seat` claims, each from a different
//! simulated user asking for one seat, with exactly `concurrency` requests in flight.
//! It waits until every winning claim is confirmed in MySQL, then checks MySQL directly
//! (one confirmed booking per seat, each seat owned by the booking its winner was told
//! about, no seat booked twice), checks Redis holds each seat for its winner, and asks
//! the audit endpoint whether Redis and MySQL agree. It prints a short report and exits
//! non-zero if any check failed.
//!
//! If Redis or MySQL does not answer at the configured URL but its server binary is
//! installed, the demo runs a private one (see [`seatgate_sandbox`]) for its own use and
//! stops it at the end. The demo's event keeps its MySQL data (its id is unique per
//! run); its Redis keys are deleted unless `--keep`.
//!
//! `--events N` runs the drop over N events at once (claims round robin over them),
//! and `--cluster` on a private Redis Cluster of three primaries and three replicas,
//! started for the demo and shut down at its end: the events (three by default) are
//! named so that each primary serves at least one, and the report says which primary
//! (port) served which event.
//!
//! `--hold-seconds N` gives the event holds of N seconds: each claim that wins is a
//! hold its buyer checks out (with probability `--checkout-ratio`, after a short think)
//! or abandons; buyers who lost come back in waves for the seats the expiries free
//! (see [`crate::loadgen::buyers`]). The run ends when every hold has ended, and the
//! report gives the holds, checkouts, expiries, seats re-sold and the final seat count,
//! checked against MySQL, Redis and the event's counters.
//!
//! Clients behave as the contract asks of them: every claim carries an
//! `Idempotency-Key`, and a 429, a 503 or a failed connection is retried with the same
//! key after a full-jitter exponential backoff that honours `Retry-After`.

use anyhow::bail;
use clap::Args;
use seatgate::cli::thousands;
use std::fmt::Write as _;
use std::time::Duration;

use crate::loadgen::report::CONFIRM_DEADLINE;
use crate::loadgen::report::{millis, render_holds, Mode};
use crate::loadgen::runner::MAX_CLAIMS;
use crate::loadgen::{
    cluster, DropReport, HoldPlan, InProcessGateway, Pacing, Plan, Stores, Workload,
};
use seatgate::cli::StoreArgs;
use seatgate::config::ClaimStrategy;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run on a private Redis Cluster (three primaries, three replicas) started for the
    /// demo and shut down at its end, with the events spread over its primaries.
    #[arg(long)]
    pub cluster: bool,
    /// Events, each of --seats seats, the claims going round them (default 1; 3 with
    /// --cluster, one per primary).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub events: Option<u32>,
    /// Seats in each event.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub seats: u32,
    /// Claims per seat, each from a different user.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub claims_per_seat: u32,
    /// Claims in flight at once.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub concurrency: u32,
    /// The event's per-user limit.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub per_user_limit: u32,
    /// Keep the demo event's Redis keys (booking and idempotency records, about 100
    /// bytes per claim) instead of deleting them at the end; MySQL keeps its rows
    /// either way.
    #[arg(long)]
    pub keep: bool,
    /// Where the demo's gateway listens (port 0: a free port); its live seat map is
    /// at /live/<event id>, printed when the demo starts.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http_addr: String,
    /// Send claims at this steady rate (claims per second, open loop) instead of as
    /// fast as `--concurrency` allows: slow enough to watch the seats fill.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Keep the gateway up this many seconds after the drop, to look around.
    #[arg(long, default_value_t = 0)]
    pub linger: u64,
    /// Give the event holds of this many seconds (0: none, every persisted claim is
    /// confirmed). Each winner waits until its booking is held, then checks out (see
    /// --checkout-ratio) after a short random think, or walks away and lets the hold
    /// expire. Buyers who lost queue up: once every hold has ended, the seats the
    /// expiries freed go on sale to a wave of them (claims-per-seat per free seat, best
    /// available), up to four such waves; the run ends when every hold has ended. (A
    /// drop that outlasts the hold re-sells expired seats to its own later claims.)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=7200))]
    pub hold_seconds: u32,
    /// With --hold-seconds: the share of holds their buyers check out (0.0 to 1.0); the
    /// others abandon theirs.
    #[arg(long, default_value_t = 1.0)]
    pub checkout_ratio: f64,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let events = args.events.unwrap_or(if args.cluster { 3 } else { 1 });
    let holds = HoldPlan::new(args.hold_seconds, args.checkout_ratio)?;
    let total = u64::from(events) * u64::from(args.seats) * u64::from(args.claims_per_seat);
    if total > MAX_CLAIMS {
        bail!("{total} claims is more than one demo run makes (at most {MAX_CLAIMS}); lower --events, --seats or --claims-per-seat");
    }
    // Private servers, if any, live until the end of this function (after the
    // gateway has stopped using them).
    let stores = if args.cluster {
        Stores::ensure_cluster(&args.store, 3, 1).await?
    } else {
        Stores::ensure(&args.store).await?
    };
    let namespace = stores
        .redis_namespace(&args.store.redis_namespace)
        .to_owned();
    let gateway = InProcessGateway::start_at(
        &stores,
        &args.store,
        ClaimStrategy::Redis,
        args.concurrency,
        &args.http_addr,
    )
    .await?;
    let pacing = Pacing::new(args.rate, args.concurrency, Duration::from_secs(1))?;
    let event_ids = cluster::name_events("demo", events, &stores.redis_url, &namespace).await?;
    let base = &gateway.target.base;
    eprintln!("seatgate demo: gateway at {base}");
    for event_id in &event_ids {
        eprintln!("  live seat map  {base}/live/{event_id}   (shows the event once it is warmed)");
    }
    eprintln!("  metrics        {base}/metrics");
    let plan = Plan {
        workload: Workload {
            events,
            seats: args.seats,
            claims_per_seat: args.claims_per_seat,
            users: None,
            per_user_limit: args.per_user_limit,
            mix: None,
            seed: 0,
        },
        pacing,
        duration: None,
        event_ids,
        event_name: "seatgate demo drop".into(),
        progress: false,
        watchers: 0,
        holds,
    };
    let mut report = gateway
        .run_and_stop(&plan, args.keep, Duration::from_secs(args.linger))
        .await?;
    cluster::mark_shards(&mut report, &stores.redis_url, &namespace).await;
    // Stops the private servers (the cluster's six nodes with --cluster).
    drop(stores);

    print!("{}", render(&report));
    if !report.failures.is_empty() {
        bail!("the demo's checks failed: {}", report.failures.join("; "));
    }
    Ok(())
}

/// The demo's own short report.
fn render(report: &DropReport) -> String {
    let mut out = String::new();
    let c = &report.config;
    let h = &report.latency;
    let secs = report.drop_time.as_secs_f64().max(1e-9);
    let concurrency = match c.mode {
        Mode::Closed { concurrency } => concurrency,
        Mode::Open {
            max_outstanding, ..
        } => max_outstanding,
    };
    let events = match report.events.len() {
        0 | 1 => String::new(),
        n => format!("{n} events × "),
    };
    let _ = writeln!(
        out,
        "seatgate demo: {events}{} seats × {} claims per seat = {} claims, {} in flight",
        thousands(c.seats.into()),
        thousands(c.claims_per_seat.into()),
        thousands(c.claims),
        thousands(concurrency.into()),
    );
    match report.events.as_slice() {
        [one] if one.shard.is_none() => {
            let _ = writeln!(out, "  event            {}", one.event_id);
        }
        _ => {
            let _ = writeln!(out, "  events (and the primary serving each)");
            report.render_events(&mut out);
        }
    }
    let _ = writeln!(
        out,
        "  claims/s         {}   ({:.2} s for the drop)",
        thousands((c.claims as f64 / secs).round() as u64),
        secs
    );
    let _ = writeln!(
        out,
        "  latency          p50 {}   p99 {}   p99.9 {}   max {}",
        millis(h.value_at_quantile(0.5)),
        millis(h.value_at_quantile(0.99)),
        millis(h.value_at_quantile(0.999)),
        millis(h.max()),
    );
    let seats_in_all = u64::from(c.seats) * report.events.len().max(1) as u64;
    let one_per_seat = if report.holds.is_some() {
        // A seat whose hold expired during the drop is won again by a later claim.
        "(holds, in the drop)"
    } else if report.won == seats_in_all {
        "(one per seat)"
    } else {
        "(NOT one per seat)"
    };
    let _ = writeln!(
        out,
        "  won              {:<6} {one_per_seat}",
        thousands(report.won)
    );
    let _ = writeln!(
        out,
        "  lost             {:<6} (409 seats_unavailable)",
        thousands(report.lost)
    );
    let _ = writeln!(
        out,
        "  errors/retries   {} / {}",
        thousands(report.error_count() + report.user_limit),
        thousands(report.retries)
    );
    for (label, count) in &report.errors {
        let _ = writeln!(out, "    {label:<28} {}", thousands(*count));
    }
    if report.user_limit > 0 {
        let _ = writeln!(
            out,
            "    {:<28} {}",
            "422 user_limit_exceeded",
            thousands(report.user_limit)
        );
    }
    match (&report.holds, report.confirmed_after) {
        (Some(holds), after) => {
            render_holds(&mut out, holds, "  ", 17);
            if let Some(after) = after {
                let _ = writeln!(
                    out,
                    "  {:<17}{:.2} s after the drop's end",
                    "all holds ended",
                    after.as_secs_f64()
                );
            }
        }
        (None, Some(after)) => {
            let _ = writeln!(
                out,
                "  confirmed        {:<6} all within {:.2} s of the drop's end",
                thousands(report.confirmed),
                after.as_secs_f64()
            );
        }
        (None, None) => {
            let _ = writeln!(
                out,
                "  confirmed        {} of {} (not all within {} s)",
                thousands(report.confirmed),
                thousands(report.won),
                CONFIRM_DEADLINE.as_secs()
            );
        }
    }
    if report.failures.is_empty() {
        let summary = report.mysql_summary.as_deref().unwrap_or("");
        let _ = writeln!(out, "  MySQL check      ok: {summary}, audit consistent");
    } else {
        let _ = writeln!(out, "  checks           FAILED");
        report.render_failures(&mut out);
    }
    out
}

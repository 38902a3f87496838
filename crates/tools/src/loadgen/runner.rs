//! One drop: create and warm an event, fire the workload at it (closed or open loop),
//! record every answer, then verify. One file because these steps are one sequence
//! over shared in-flight state (the claims, their tally, the progress bar) that
//! nothing else uses.

use anyhow::{ensure, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use seatgate::cli::thousands;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use super::buyers::{BuyerContext, Buyers, HoldPlan};
use super::client::{send_claim, Api, ClaimCall, Outcome, Sent};
use super::gateway::{InProcessGateway, Target};
use super::mix::QuantityMix;
use super::report::{DropReport, EventTally, Mode, RunConfig};
use super::schedule::{micros, Schedule, Timing};
use super::verify::{HoldCounts, HoldVerifier, Verifier, Win};
use seatgate::api::auth::sign_user_token;
use seatgate::config::{ClaimStrategy, Secret};

/// Most claims one run makes: every claim's token and key are made before the clock
/// starts, and this keeps that under a few hundred MB.
pub const MAX_CLAIMS: u64 = 2_000_000;
/// Lifetime of the users' tokens: longer than any drop.
const TOKEN_TTL_SECS: u64 = 3600;

/// What the simulated users want.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Events, each of `seats` seats with `claims_per_seat` claims per seat; claim `i`
    /// goes to event `i % events` (round robin), so each gets the same share.
    pub events: u32,
    pub seats: u32,
    pub claims_per_seat: u32,
    /// Distinct users; `None`: one per claim. Claim `i` is made by user `u<i % users>`.
    pub users: Option<u64>,
    pub per_user_limit: u32,
    /// `None`: claim `i` asks for seat `i % seats` by name; otherwise for a quantity,
    /// best available, in this mix.
    pub mix: Option<QuantityMix>,
    /// Orders the quantities of the mix.
    pub seed: u64,
}

impl Workload {
    /// Claims in the workload, over every event.
    pub fn claims(&self) -> u64 {
        u64::from(self.events.max(1)) * u64::from(self.seats) * u64::from(self.claims_per_seat)
    }

    /// Distinct users (at least one, at most one per claim).
    pub fn users(&self) -> u64 {
        let claims = self.claims().max(1);
        self.users.unwrap_or(claims).clamp(1, claims)
    }

    /// The seat ids, `S0001`…, in best-available order.
    pub fn seat_ids(&self) -> Vec<String> {
        let width = self.seats.to_string().len().max(4);
        (1..=self.seats).map(|n| format!("S{n:0width$}")).collect()
    }
}

/// How claims are paced.
#[derive(Debug, Clone)]
pub enum Pacing {
    /// `concurrency` claims in flight at all times.
    Closed { concurrency: u32 },
    /// Claims sent on a fixed schedule whatever the answers, at most
    /// `max_outstanding` in flight; a claim that cannot start within `max_lateness` of
    /// its time is dropped (counted, not sent) rather than queued without bound.
    Open {
        schedule: Schedule,
        max_outstanding: u32,
        max_lateness: Duration,
    },
}

impl Pacing {
    /// `concurrency` claims in flight (closed loop), or with a `rate`, an open loop at
    /// `rate` claims per second with at most `concurrency` outstanding, dropping a
    /// claim that cannot start within `max_lateness` of its time.
    pub fn new(
        rate: Option<f64>,
        concurrency: u32,
        max_lateness: Duration,
    ) -> anyhow::Result<Self> {
        Ok(match rate {
            None => Pacing::Closed { concurrency },
            Some(rate) => Pacing::Open {
                schedule: Schedule::new(rate)
                    .filter(|_| rate <= 1_000_000.0)
                    .with_context(|| {
                        format!(
                            "--rate {rate}: give claims per second, above 0 and at most 1000000"
                        )
                    })?,
                max_outstanding: concurrency,
                max_lateness,
            },
        })
    }

    fn in_flight(&self) -> u32 {
        match self {
            Pacing::Closed { concurrency } => *concurrency,
            Pacing::Open {
                max_outstanding, ..
            } => *max_outstanding,
        }
    }

    fn mode(&self) -> Mode {
        match self {
            Pacing::Closed { concurrency } => Mode::Closed {
                concurrency: *concurrency,
            },
            Pacing::Open {
                schedule,
                max_outstanding,
                max_lateness,
            } => Mode::Open {
                rate: schedule.rate(),
                max_outstanding: *max_outstanding,
                max_lateness: *max_lateness,
            },
        }
    }
}

/// One drop to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload: Workload,
    pub pacing: Pacing,
    /// Stop sending after this long (else the whole workload is sent).
    pub duration: Option<Duration>,
    /// One id per event of the workload (see [`event_ids`]).
    pub event_ids: Vec<String>,
    pub event_name: String,
    /// Show a progress bar on stderr (only ever when stderr is a terminal).
    pub progress: bool,
    /// Live seat map streams held open on the event during the run.
    pub watchers: u32,
    /// Events with holds, and what their buyers do (see [`super::buyers`]); `None`:
    /// every persisted claim is confirmed.
    pub holds: Option<HoldPlan>,
}

/// `<prefix>-<unix millis>`: an event id unique per run.
pub fn event_id(prefix: &str) -> anyhow::Result<String> {
    Ok(format!("{prefix}-{}", seatgate::clock::unix_millis()))
}

/// `n` event ids unique per run: [`event_id`] for one, `<that>-<k>` for several.
pub fn event_ids(prefix: &str, n: u32) -> anyhow::Result<Vec<String>> {
    let base = event_id(prefix)?;
    Ok(match n {
        0 | 1 => vec![base],
        n => (0..n).map(|k| format!("{base}-{k}")).collect(),
    })
}

/// The name of a claim strategy, as the command line spells it.
pub fn strategy_name(strategy: ClaimStrategy) -> &'static str {
    match strategy {
        ClaimStrategy::Redis => "redis",
        ClaimStrategy::Mysql => "mysql",
    }
}

/// One claim, made before the clock starts.
struct Claim {
    key: String,
    user: u32,
    body: u32,
    /// Index of its event in [`Plan::event_ids`].
    event: u32,
}

/// What every claim task reads.
struct Shared {
    client: reqwest::Client,
    /// The bookings URL of each event.
    urls: Vec<String>,
    /// One token per user.
    tokens: Vec<String>,
    /// The distinct claim bodies.
    bodies: Vec<String>,
}

impl Shared {
    async fn send(&self, claim: &Claim) -> Sent {
        send_claim(
            &self.client,
            &ClaimCall {
                url: &self.urls[claim.event as usize],
                token: &self.tokens[claim.user as usize],
                key: &claim.key,
                body: &self.bodies[claim.body as usize],
            },
        )
        .await
    }
}

/// A claim's answer, or an open-loop claim that was never sent.
enum Event {
    Done {
        user: u32,
        event: u32,
        /// The claim's body, by index (a returning buyer asks for as many seats).
        body: u32,
        /// Open loop: when the schedule said to send it.
        intended: Option<Instant>,
        sent: Sent,
    },
    Dropped,
}

impl InProcessGateway {
    /// Runs `plan` on this gateway, keeps it up for `linger` after a successful run (to
    /// look around), then stops it and cleans up (see [`InProcessGateway::stop_after`]).
    pub async fn run_and_stop(
        self,
        plan: &Plan,
        keep: bool,
        linger: Duration,
    ) -> anyhow::Result<DropReport> {
        let outcome = run(&self.target, plan).await;
        if !linger.is_zero() && outcome.is_ok() {
            eprintln!(
                "the drop is over; the gateway stays up for {} s more (live map: {}/live/{})",
                linger.as_secs(),
                self.target.base,
                plan.event_ids.join(", /live/")
            );
            tokio::time::sleep(linger).await;
        }
        self.stop_after(outcome, &plan.event_ids, keep).await
    }
}

/// Runs `plan` against `target` and verifies the result.
pub async fn run(target: &Target, plan: &Plan) -> anyhow::Result<DropReport> {
    let w = &plan.workload;
    ensure!(
        !plan.event_ids.is_empty() && plan.event_ids.len() == w.events.max(1) as usize,
        "the plan names {} events for a workload of {}",
        plan.event_ids.len(),
        w.events
    );
    let total = w.claims();
    ensure!(
        total <= MAX_CLAIMS,
        "{total} claims is more than one run makes (at most {MAX_CLAIMS}); lower --seats or --claims-per-seat"
    );
    let planned = match &plan.pacing {
        Pacing::Closed { .. } => total,
        Pacing::Open { schedule, .. } => schedule.claims_within(plan.duration, total),
    };
    let users = w.users();
    let seat_ids = w.seat_ids();
    let in_flight = plan.pacing.in_flight().max(1);

    let api = Api::new(&target.base, &target.admin_token, in_flight as usize)?;
    for event_id in &plan.event_ids {
        let hold_seconds = plan.holds.map_or(0, |h| h.hold_seconds);
        api.create_and_warm(
            event_id,
            &plan.event_name,
            &seat_ids,
            w.per_user_limit,
            hold_seconds,
        )
        .await?;
    }
    let first_event = &plan.event_ids[0];
    let watchers = match plan.watchers {
        0 => None,
        n => Some(super::watchers::Watchers::start(&api.base, first_event, n).await?),
    };

    // Tokens and keys are made before the clock starts, off the runtime's threads.
    let (tokens, bodies, claims) = {
        let secret = target.jwt_secret.clone();
        let workload = w.clone();
        let seat_ids = seat_ids.clone();
        tokio::task::spawn_blocking(move || {
            make_claims(&secret, &workload, &seat_ids, planned, users)
        })
        .await
        .context("making the claims' tokens failed")?
    };
    let urls: Vec<String> = plan
        .event_ids
        .iter()
        .map(|id| format!("{}/v1/events/{id}/bookings", api.base))
        .collect();
    let buyers = plan.holds.map(|holds| {
        Buyers::new(
            BuyerContext {
                client: api.client.clone(),
                urls: urls.clone(),
                tokens: tokens.clone(),
                bodies: bodies.clone(),
                plan: holds,
                seed: w.seed,
            },
            plan.event_ids.len(),
        )
    });
    let shared = Arc::new(Shared {
        client: api.client.clone(),
        urls,
        tokens,
        bodies,
    });

    let mut tally = Tally::new(
        RunConfig {
            target: target.description.clone(),
            strategy: target.strategy.map(|s| strategy_name(s).to_owned()),
            mode: plan.pacing.mode(),
            seats: w.seats,
            claims_per_seat: w.claims_per_seat,
            users,
            claims: total,
            duration: plan.duration,
            quantity_mix: w.mix.clone(),
            per_user_limit: w.per_user_limit,
            seed: w.seed,
            event_id: first_event.clone(),
        },
        &plan.event_ids,
        progress_bar(plan.progress, planned, target.strategy),
    );
    tally.buyers = buyers;

    let started = Instant::now();
    match &plan.pacing {
        Pacing::Closed { concurrency } => {
            let deadline = plan.duration.map(|d| started + d);
            // Each claim is its own task so the client's work spreads over the
            // runtime's threads; buffer_unordered keeps exactly `concurrency` in
            // flight, and stops taking claims once the deadline has passed.
            let mut results = futures::stream::iter(
                claims
                    .into_iter()
                    .take_while(move |_| deadline.is_none_or(|d| Instant::now() < d))
                    .map(|claim| {
                        let shared = Arc::clone(&shared);
                        tokio::spawn(async move {
                            let sent = shared.send(&claim).await;
                            Event::Done {
                                user: claim.user,
                                event: claim.event,
                                body: claim.body,
                                intended: None,
                                sent,
                            }
                        })
                    }),
            )
            .buffer_unordered(*concurrency as usize);
            while let Some(event) = results.next().await {
                tally.record(event.context("a claim task failed")?);
            }
        }
        Pacing::Open {
            schedule,
            max_outstanding,
            max_lateness,
        } => {
            let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
            let outstanding = Arc::new(Semaphore::new(*max_outstanding as usize));
            let (schedule, max_lateness) = (*schedule, *max_lateness);
            let shared = Arc::clone(&shared);
            let scheduler = tokio::spawn(async move {
                for (index, claim) in claims.into_iter().enumerate() {
                    let intended = started + schedule.offset(index as u64);
                    if intended > Instant::now() {
                        tokio::time::sleep_until(intended.into()).await;
                    }
                    // Bounded: wait for a free slot only until the allowed lateness.
                    let permit = tokio::time::timeout_at(
                        (intended + max_lateness).into(),
                        Arc::clone(&outstanding).acquire_owned(),
                    )
                    .await;
                    let Ok(Ok(permit)) = permit else {
                        let _ = tx.send(Event::Dropped);
                        continue;
                    };
                    let tx = tx.clone();
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let sent = shared.send(&claim).await;
                        drop(permit);
                        let _ = tx.send(Event::Done {
                            user: claim.user,
                            event: claim.event,
                            body: claim.body,
                            intended: Some(intended),
                            sent,
                        });
                    });
                }
            });
            // Ends when the scheduler and every claim task have let go of the sender.
            while let Some(event) = rx.recv().await {
                tally.record(event);
            }
            scheduler.await.context("the open-loop scheduler failed")?;
        }
    }
    let drop_ended = Instant::now();
    let (mut report, wins, buyers) = tally.finish(drop_ended - started);
    report.not_sent = total - report.sent - report.dropped;
    if let (Some(buyers), Some(holds)) = (buyers, plan.holds) {
        verify_holds(target, plan, &api, buyers, holds, &mut report, drop_ended).await?;
        if let Some(watchers) = watchers {
            report.watch = Some(watchers.finish().await?);
        }
        return Ok(report);
    }

    // The mysql strategy books in MySQL alone (201 confirmed, never 202).
    let redis_in_path = target.strategy != Some(ClaimStrategy::Mysql)
        && (report.won == 0 || report.won_pending > 0);
    // Each event is checked on its own, all at once (the confirmation waits overlap).
    let checks = futures::future::join_all(plan.event_ids.iter().zip(&wins).enumerate().map(
        |(i, (event_id, wins))| {
            let verifier = Verifier {
                api: &api,
                event_id,
                database_url: target.database_url.as_deref(),
                redis: target.redis.as_ref(),
                redis_in_path,
                wins,
            };
            let mut scratch = DropReport::new(report.config.clone());
            scratch.won_seats = report.events[i].won_seats;
            scratch.won_pending = report.events[i].won_pending;
            async move {
                verifier.verify(&mut scratch, drop_ended).await?;
                anyhow::Ok(scratch)
            }
        },
    ))
    .await;
    let several = plan.event_ids.len() > 1;
    report.confirmed = 0;
    report.confirmed_after = Some(Duration::ZERO);
    let mut mysql_ok = true;
    for (i, checked) in checks.into_iter().enumerate() {
        let checked = checked?;
        let event = &mut report.events[i];
        event.confirmed = checked.confirmed;
        event.confirmed_after = checked.confirmed_after;
        event.ok = checked.failures.is_empty();
        report.confirmed += checked.confirmed;
        report.confirmed_after = match (report.confirmed_after, checked.confirmed_after) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        mysql_ok &= checked.mysql_summary.is_some();
        let tag = |text: String| {
            if several {
                format!("{}: {text}", event.event_id)
            } else {
                text
            }
        };
        report
            .failures
            .extend(checked.failures.into_iter().map(tag));
        if several {
            // The same checks pass for every event: say them once, for all.
            if i == 0 {
                report.checks.extend(checked.checks);
            }
        } else {
            report.checks.extend(checked.checks);
            report.mysql_summary = checked.mysql_summary;
        }
    }
    if several {
        if report.failures.is_empty() {
            let n = plan.event_ids.len();
            report.checks = report
                .checks
                .iter()
                .map(|c| format!("each of the {n} events: {c}"))
                .collect();
        }
        if mysql_ok && report.failures.is_empty() {
            report.mysql_summary = Some(format!(
                "{} seats booked over {} events, no seat with two bookings",
                thousands(report.won_seats),
                plan.event_ids.len()
            ));
        }
    }
    if let Some(watchers) = watchers {
        report.watch = Some(watchers.finish().await?);
    }

    // Every seat had claims asking for it by name: unless some were never sent or
    // refused for the user's limit, each must have exactly one winner.
    if w.mix.is_none() && report.not_sent == 0 && report.dropped == 0 && report.user_limit == 0 {
        let mut failures = Vec::new();
        for event in &mut report.events {
            if event.won != u64::from(w.seats) {
                event.ok = false;
                failures.push(format!(
                    "{}: {} of {} seats were won; every seat had claims, so each should have exactly one winner",
                    event.event_id, event.won, w.seats
                ));
            }
        }
        report.failures.extend(failures);
    }
    Ok(report)
}

/// The claims, their users' tokens and the distinct bodies.
fn make_claims(
    secret: &Secret,
    workload: &Workload,
    seat_ids: &[String],
    planned: u64,
    users: u64,
) -> (Vec<String>, Vec<String>, Vec<Claim>) {
    let users = users.min(planned.max(1));
    let tokens: Vec<String> = (0..users)
        .map(|u| sign_user_token(secret, &format!("u{u}"), TOKEN_TTL_SECS))
        .collect();
    let (bodies, body_of): (Vec<String>, Vec<u32>) = match &workload.mix {
        None => (
            seat_ids
                .iter()
                .map(|s| json!({ "seats": [s] }).to_string())
                .collect(),
            // Claim i goes to event i % events and is that event's claim number
            // i / events: each event's claims go round its seats in order.
            (0..planned)
                .map(|i| {
                    ((i / u64::from(workload.events.max(1))) % u64::from(workload.seats)) as u32
                })
                .collect(),
        ),
        Some(mix) => {
            let entries = mix.entries();
            let bodies = entries
                .iter()
                .map(|e| json!({ "quantity": e.quantity }).to_string())
                .collect();
            // The assignment covers the whole workload, so a shorter run (open loop
            // with --duration) sends a prefix of the same sequence.
            let quantities = mix.assign(workload.claims(), workload.seed);
            let index: HashMap<u32, u32> = entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.quantity, i as u32))
                .collect();
            let body_of = quantities
                .iter()
                .take(planned as usize)
                .map(|q| index[q])
                .collect();
            (bodies, body_of)
        }
    };
    let events = u64::from(workload.events.max(1));
    let claims = body_of
        .into_iter()
        .enumerate()
        .map(|(i, body)| Claim {
            key: Uuid::now_v7().to_string(),
            user: (i as u64 % users) as u32,
            body,
            event: (i as u64 % events) as u32,
        })
        .collect();
    (tokens, bodies, claims)
}

/// The progress bar on stderr: hidden unless asked for and stderr is a terminal.
fn progress_bar(wanted: bool, len: u64, strategy: Option<ClaimStrategy>) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix}[{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {rate:>9} eta {eta} {msg}",
    ) {
        bar.set_style(style.with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", thousands(state.per_sec().round() as u64));
            },
        ));
    }
    if let Some(s) = strategy {
        bar.set_prefix(format!("{} ", strategy_name(s)));
    }
    bar
}

/// Records answers as they come.
struct Tally {
    report: DropReport,
    /// Per event.
    wins: Vec<Vec<Win>>,
    /// (event, seat) → the user who won it, to catch a seat won twice.
    seat_winner: HashMap<(u32, String), String>,
    bar: ProgressBar,
    /// Events with holds: the winners' buyers at work, and the queue of those who lost.
    buyers: Option<Buyers>,
}

impl Tally {
    fn new(config: RunConfig, event_ids: &[String], bar: ProgressBar) -> Self {
        let mut report = DropReport::new(config);
        report.events = event_ids.iter().map(|id| EventTally::new(id)).collect();
        Self {
            report,
            wins: event_ids.iter().map(|_| Vec::new()).collect(),
            seat_winner: HashMap::new(),
            bar,
            buyers: None,
        }
    }

    fn record(&mut self, event: Event) {
        let r = &mut self.report;
        self.bar.inc(1);
        let (user, event, body, intended, sent) = match event {
            Event::Dropped => {
                r.dropped += 1;
                return;
            }
            Event::Done {
                user,
                event,
                body,
                intended,
                sent,
            } => (user, event, body, intended, sent),
        };
        r.sent += 1;
        let e = &mut r.events[event as usize];
        e.sent += 1;
        r.retries += u64::from(sent.retries);
        match intended {
            // Open loop: latency from the intended send, service time beside it.
            Some(intended) => {
                let timing = Timing {
                    intended,
                    sent: sent.started,
                    done: sent.done,
                };
                r.latency.saturating_record(micros(timing.corrected()));
                if let Some(service) = &mut r.service {
                    service.saturating_record(micros(timing.service()));
                }
                if timing.is_late() {
                    r.late += 1;
                }
            }
            None => r
                .latency
                .saturating_record(micros(sent.done.saturating_duration_since(sent.started))),
        }
        let e = &mut r.events[event as usize];
        let first = sent.started;
        e.latency.saturating_record(micros(
            sent.done
                .saturating_duration_since(intended.unwrap_or(first)),
        ));
        *r.answers.entry(sent.outcome.label()).or_default() += 1;
        let claim_user = user;
        match sent.outcome {
            Outcome::Won {
                booking_id,
                seats,
                confirmed,
            } => {
                r.won += 1;
                r.won_seats += seats.len() as u64;
                e.won += 1;
                e.won_seats += seats.len() as u64;
                if !confirmed {
                    r.won_pending += 1;
                    e.won_pending += 1;
                }
                let user = format!("u{user}");
                // With holds, a seat comes back when its hold expires and a later claim
                // may win it again: the hold checks judge that, in order.
                let holds = self.buyers.is_some();
                for seat in seats.iter().filter(|_| !holds) {
                    if let Some(other) =
                        self.seat_winner.insert((event, seat.clone()), user.clone())
                    {
                        e.ok = false;
                        r.failures.push(format!(
                            "{}: seat {seat} was won twice ({other} and {user})",
                            e.event_id
                        ));
                    }
                }
                let win = Win {
                    user,
                    booking_id,
                    seats,
                };
                if let (Some(buyers), false) = (&mut self.buyers, confirmed) {
                    buyers.won(event, claim_user, win.clone());
                }
                self.wins[event as usize].push(win);
            }
            Outcome::Lost(_) => {
                r.lost += 1;
                e.lost += 1;
                if let Some(buyers) = &mut self.buyers {
                    buyers.lost(event, claim_user, body);
                }
            }
            Outcome::UserLimit => r.user_limit += 1,
            Outcome::Error(label) => {
                *r.errors.entry(label).or_default() += 1;
                e.errors += 1;
            }
        }
        if r.sent.is_multiple_of(512) {
            self.bar.set_message(format!(
                "won {} lost {} errors {}",
                thousands(r.won),
                thousands(r.lost),
                thousands(r.error_count())
            ));
        }
    }

    fn finish(self, drop_time: Duration) -> (DropReport, Vec<Vec<Win>>, Option<Buyers>) {
        self.bar.finish_and_clear();
        let mut report = self.report;
        report.drop_time = drop_time;
        (report, self.wins, self.buyers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(mix: Option<&str>) -> Workload {
        Workload {
            events: 1,
            seats: 3,
            claims_per_seat: 4,
            users: None,
            per_user_limit: 4,
            mix: mix.map(|m| m.parse().unwrap()),
            seed: 1,
        }
    }

    #[test]
    fn named_seat_claims_go_round_the_seats() {
        let w = workload(None);
        assert_eq!(w.claims(), 12);
        assert_eq!(w.users(), 12);
        let seats = w.seat_ids();
        assert_eq!(seats, ["S0001", "S0002", "S0003"]);
        let (tokens, bodies, claims) = make_claims(&Secret::new("s"), &w, &seats, 12, 12);
        assert_eq!(tokens.len(), 12);
        assert_eq!(bodies[1], r#"{"seats":["S0002"]}"#);
        let picked: Vec<u32> = claims.iter().map(|c| c.body).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
        assert_eq!(claims[5].user, 5);
    }

    #[test]
    fn fewer_users_make_several_claims_each() {
        let w = Workload {
            users: Some(5),
            ..workload(Some("1:50,2:50"))
        };
        assert_eq!(w.users(), 5);
        assert_eq!(
            Workload {
                users: Some(0),
                ..workload(None)
            }
            .users(),
            1
        );
        assert_eq!(
            Workload {
                users: Some(99),
                ..workload(None)
            }
            .users(),
            12
        );
        let (tokens, bodies, claims) = make_claims(&Secret::new("s"), &w, &w.seat_ids(), 12, 5);
        assert_eq!(tokens.len(), 5);
        assert_eq!(bodies, [r#"{"quantity":1}"#, r#"{"quantity":2}"#]);
        assert_eq!(claims[7].user, 2);
        assert_eq!(claims.iter().filter(|c| c.body == 1).count(), 6);
        // A shorter run sends a prefix of the same sequence.
        let (_, _, short) = make_claims(&Secret::new("s"), &w, &w.seat_ids(), 5, 5);
        let full: Vec<u32> = claims.iter().take(5).map(|c| c.body).collect();
        let prefix: Vec<u32> = short.iter().map(|c| c.body).collect();
        assert_eq!(full, prefix);
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::loadgen::report::Mode;

    fn workload(events: u32) -> Workload {
        Workload {
            events,
            seats: 2,
            claims_per_seat: 3,
            users: None,
            per_user_limit: 4,
            mix: None,
            seed: 1,
        }
    }

    #[test]
    fn claims_go_round_the_events_and_each_event_round_its_seats() {
        let w = workload(3);
        assert_eq!(w.claims(), 18);
        let (_, bodies, claims) = make_claims(&Secret::new("s"), &w, &w.seat_ids(), 18, 18);
        assert_eq!(bodies.len(), 2, "the same seat names in every event");
        let events: Vec<u32> = claims.iter().map(|c| c.event).collect();
        assert_eq!(events, [0, 1, 2].repeat(6));
        for event in 0..3 {
            let seats: Vec<u32> = claims
                .iter()
                .filter(|c| c.event == event)
                .map(|c| c.body)
                .collect();
            assert_eq!(seats, [0, 1, 0, 1, 0, 1], "event {event}");
        }
        // One event: as before.
        let one = workload(1);
        let (_, _, claims) = make_claims(&Secret::new("s"), &one, &one.seat_ids(), 6, 6);
        assert!(claims.iter().all(|c| c.event == 0));
        let seats: Vec<u32> = claims.iter().map(|c| c.body).collect();
        assert_eq!(seats, [0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn several_event_ids_are_distinct_and_one_keeps_its_old_form() {
        let one = event_ids("drop", 1).unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].starts_with("drop-") && !one[0][5..].contains('-'));
        let three = event_ids("drop", 3).unwrap();
        assert_eq!(three.len(), 3);
        assert!(three[2].ends_with("-2"));
        assert_ne!(three[0], three[1]);
    }

    fn won(user: u32, event: u32, seat: &str) -> Event {
        let now = Instant::now();
        Event::Done {
            user,
            event,
            body: 0,
            intended: None,
            sent: Sent {
                outcome: Outcome::Won {
                    booking_id: format!("b{user}"),
                    seats: vec![seat.to_owned()],
                    confirmed: false,
                },
                started: now,
                done: now,
                retries: 0,
            },
        }
    }

    fn tally(ids: &[String]) -> Tally {
        let config = RunConfig {
            target: "in-process".into(),
            strategy: Some("redis".into()),
            mode: Mode::Closed { concurrency: 1 },
            seats: 2,
            claims_per_seat: 1,
            users: 4,
            claims: 4,
            duration: None,
            quantity_mix: None,
            per_user_limit: 4,
            seed: 1,
            event_id: ids[0].clone(),
        };
        Tally::new(config, ids, ProgressBar::hidden())
    }

    #[test]
    fn the_same_seat_in_two_events_is_two_wins_but_twice_in_one_is_a_failure() {
        let ids = vec!["e-0".to_owned(), "e-1".to_owned()];
        let mut t = tally(&ids);
        t.record(won(0, 0, "S0001"));
        t.record(won(1, 1, "S0001"));
        t.record(won(2, 1, "S0002"));
        let (report, wins, _) = Tally::finish(t, Duration::from_secs(1));
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.won, 3);
        assert_eq!(
            report.events.iter().map(|e| e.won).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(wins[0].len(), 1);
        assert_eq!(wins[1].len(), 2);
        assert_eq!(wins[1][0].booking_id, "b1");

        let mut t = tally(&ids);
        t.record(won(0, 1, "S0002"));
        t.record(won(3, 1, "S0002"));
        let (report, _, _) = Tally::finish(t, Duration::from_secs(1));
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(report.failures[0].starts_with("e-1: seat S0002 was won twice"));
        assert!(report.events[0].ok && !report.events[1].ok);
    }
}

/// A drop on events with holds, after its claims: lets every buyer finish (and the
/// returning waves run, see [`super::buyers`]) until every hold has ended, then checks
/// each event's stores (see [`HoldVerifier`]) and puts what the holds came to in the
/// report. `confirmed` is then the seats booked at the end, and `confirmed_after` the
/// time from the drop's end until every hold had ended.
async fn verify_holds(
    target: &Target,
    plan: &Plan,
    api: &Api,
    buyers: Buyers,
    holds: HoldPlan,
    report: &mut DropReport,
    drop_ended: Instant,
) -> anyhow::Result<()> {
    let w = &plan.workload;
    let in_flight = plan.pacing.in_flight().max(1) as usize;
    let (per_event, returns) = buyers
        .finish(api, &plan.event_ids, w.claims_per_seat, in_flight)
        .await?;
    let ended_after = drop_ended.elapsed();
    let seat_ids = w.seat_ids();
    let several = plan.event_ids.len() > 1;
    let mut total = HoldCounts::default();
    report.confirmed = 0;
    for (i, (event_id, event_holds)) in plan.event_ids.iter().zip(&per_event).enumerate() {
        let verifier = HoldVerifier {
            api,
            event_id,
            database_url: target.database_url.as_deref(),
            redis: target.redis.as_ref(),
            seats: &seat_ids,
            holds: event_holds,
        };
        let mut scratch = DropReport::new(report.config.clone());
        let counts = verifier.verify(&mut scratch).await?;
        total.add(&counts);
        let event = &mut report.events[i];
        event.confirmed = counts.booked;
        event.confirmed_after = Some(ended_after);
        event.ok = scratch.failures.is_empty();
        let tag = |text: String| {
            if several {
                format!("{}: {text}", event.event_id)
            } else {
                text
            }
        };
        report
            .failures
            .extend(scratch.failures.into_iter().map(tag));
        // Each event's checks carry its own counts: named, not said once for all.
        report.checks.extend(scratch.checks.into_iter().map(tag));
    }
    report.confirmed = total.booked;
    report.confirmed_after = Some(ended_after);
    if report.failures.is_empty() {
        report.mysql_summary = Some(format!(
            "{} seats booked once + {} free = {}",
            thousands(total.booked),
            thousands(total.available),
            thousands(total.seats_total)
        ));
    }
    if total.checkouts + total.expiries != total.holds {
        report.failures.push(format!(
            "{} checkouts + {} expiries is not the {} holds",
            total.checkouts, total.expiries, total.holds
        ));
    }
    report.holds = Some(crate::schema::Holds {
        hold_seconds: holds.hold_seconds,
        checkout_ratio: holds.checkout_ratio,
        waves: returns.waves,
        returning_claims: returns.claims,
        returning_won: returns.won,
        holds: total.holds,
        checkouts: total.checkouts,
        expiries: total.expiries,
        abandoned: total.abandoned,
        late_checkouts: total.too_late,
        resold_seats: total.resold_seats,
        seats: crate::schema::SeatCount {
            total: total.seats_total,
            booked: total.booked,
            available: total.available,
        },
    });
    // Every seat had claims asking for it by name: unless some were never sent or
    // refused, each must have been held in the drop (some, if the drop outlasted the
    // hold, more than once).
    if w.mix.is_none() && report.not_sent == 0 && report.dropped == 0 && report.user_limit == 0 {
        for (event, holds) in report.events.iter_mut().zip(&per_event) {
            let held: HashSet<&str> = holds
                .iter()
                .filter(|h| h.wave == 1)
                .flat_map(|h| h.win.seats.iter().map(String::as_str))
                .collect();
            if held.len() != w.seats as usize {
                event.ok = false;
                report.failures.push(format!(
                    "{}: {} of {} seats were held in the drop; every seat had claims",
                    event.event_id,
                    held.len(),
                    w.seats
                ));
            }
        }
    }
    Ok(())
}

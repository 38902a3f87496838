//! One drop: create and warm an event, fire the workload at it (closed or open loop),
//! record every answer, then verify. One file because these steps are one sequence
//! over shared in-flight state (the claims, their tally, the progress bar) that
//! nothing else uses.

use anyhow::{ensure, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use seatgate::cli::thousands;
use serde_json::json;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use super::client::{send_claim, Api, ClaimCall, Outcome, Sent};
use super::gateway::{InProcessGateway, Target};
use super::mix::QuantityMix;
use super::report::{DropReport, Mode, RunConfig};
use super::schedule::{micros, Schedule, Timing};
use super::verify::{Verifier, Win};
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
    /// Claims in the workload.
    pub fn claims(&self) -> u64 {
        u64::from(self.seats) * u64::from(self.claims_per_seat)
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
    pub event_id: String,
    pub event_name: String,
    /// Show a progress bar on stderr (only ever when stderr is a terminal).
    pub progress: bool,
    /// Live seat map streams held open on the event during the run.
    pub watchers: u32,
}

/// `<prefix>-<unix millis>`: an event id unique per run.
pub fn event_id(prefix: &str) -> anyhow::Result<String> {
    Ok(format!("{prefix}-{}", seatgate::clock::unix_millis()))
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
}

/// What every claim task reads.
struct Shared {
    client: reqwest::Client,
    url: String,
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
                url: &self.url,
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
                plan.event_id
            );
            tokio::time::sleep(linger).await;
        }
        self.stop_after(outcome, &plan.event_id, keep).await
    }
}

/// Runs `plan` against `target` and verifies the result.
pub async fn run(target: &Target, plan: &Plan) -> anyhow::Result<DropReport> {
    let w = &plan.workload;
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
    api.create_and_warm(
        &plan.event_id,
        &plan.event_name,
        &seat_ids,
        w.per_user_limit,
    )
    .await?;
    let watchers = match plan.watchers {
        0 => None,
        n => Some(super::watchers::Watchers::start(&api.base, &plan.event_id, n).await?),
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
    let shared = Arc::new(Shared {
        client: api.client.clone(),
        url: format!("{}/v1/events/{}/bookings", api.base, plan.event_id),
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
            event_id: plan.event_id.clone(),
        },
        progress_bar(plan.progress, planned, target.strategy),
    );

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
    let (mut report, wins) = tally.finish(drop_ended - started);
    report.not_sent = total - report.sent - report.dropped;

    let verifier = Verifier {
        api: &api,
        event_id: &plan.event_id,
        database_url: target.database_url.as_deref(),
        redis: target.redis.as_ref(),
        // The mysql strategy books in MySQL alone (201 confirmed, never 202).
        redis_in_path: target.strategy != Some(ClaimStrategy::Mysql)
            && (report.won == 0 || report.won_pending > 0),
        wins: &wins,
    };
    verifier.verify(&mut report, drop_ended).await?;
    if let Some(watchers) = watchers {
        report.watch = Some(watchers.finish().await?);
    }

    // Every seat had claims asking for it by name: unless some were never sent or
    // refused for the user's limit, each must have exactly one winner.
    if w.mix.is_none()
        && report.not_sent == 0
        && report.dropped == 0
        && report.user_limit == 0
        && report.won != u64::from(w.seats)
    {
        report.failures.push(format!(
            "{} of {} seats were won; every seat had claims, so each should have exactly one winner",
            report.won, w.seats
        ));
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
            (0..planned)
                .map(|i| (i % u64::from(workload.seats)) as u32)
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
    let claims = body_of
        .into_iter()
        .enumerate()
        .map(|(i, body)| Claim {
            key: Uuid::now_v7().to_string(),
            user: (i as u64 % users) as u32,
            body,
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
    wins: Vec<Win>,
    /// seat → the user who won it, to catch a seat won twice.
    seat_winner: HashMap<String, String>,
    bar: ProgressBar,
}

impl Tally {
    fn new(config: RunConfig, bar: ProgressBar) -> Self {
        Self {
            report: DropReport::new(config),
            wins: Vec::new(),
            seat_winner: HashMap::new(),
            bar,
        }
    }

    fn record(&mut self, event: Event) {
        let r = &mut self.report;
        self.bar.inc(1);
        let (user, intended, sent) = match event {
            Event::Dropped => {
                r.dropped += 1;
                return;
            }
            Event::Done {
                user,
                intended,
                sent,
            } => (user, intended, sent),
        };
        r.sent += 1;
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
        *r.answers.entry(sent.outcome.label()).or_default() += 1;
        match sent.outcome {
            Outcome::Won {
                booking_id,
                seats,
                confirmed,
            } => {
                r.won += 1;
                r.won_seats += seats.len() as u64;
                if !confirmed {
                    r.won_pending += 1;
                }
                let user = format!("u{user}");
                for seat in &seats {
                    if let Some(other) = self.seat_winner.insert(seat.clone(), user.clone()) {
                        r.failures
                            .push(format!("seat {seat} was won twice ({other} and {user})"));
                    }
                }
                self.wins.push(Win {
                    user,
                    booking_id,
                    seats,
                });
            }
            Outcome::Lost(_) => r.lost += 1,
            Outcome::UserLimit => r.user_limit += 1,
            Outcome::Error(label) => *r.errors.entry(label).or_default() += 1,
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

    fn finish(self, drop_time: Duration) -> (DropReport, Vec<Win>) {
        self.bar.finish_and_clear();
        let mut report = self.report;
        report.drop_time = drop_time;
        (report, self.wins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(mix: Option<&str>) -> Workload {
        Workload {
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

//! Buyers on an event with holds (`--hold-seconds`): what a winner does with its hold,
//! and the buyers who come back for the seats abandoned holds free.
//!
//! The model, in three rules:
//!
//! 1. Every claim answered 202 is a hold. Its buyer polls the booking until it is
//!    `held` (persisted), then, with probability `--checkout-ratio`, thinks for a short
//!    random time (up to a quarter of the hold, at most 2 s) and checks out, naming one
//!    attendee per seat (a made-up name, an `@example.org` address); otherwise it walks
//!    away and the hold expires.
//! 2. Buyers whose claim lost (409 `sold_out` / `seats_unavailable`) queue up, first
//!    lost first. Once every hold of a wave has ended (checked out or expired), the
//!    seats the expiries freed go on sale again to a new wave of them: `claims per
//!    seat` returning buyers per available seat, each asking for as many seats, best
//!    available, as it asked for before. Their holds follow rule 1; those who lose
//!    again go back to the end of the queue.
//!    (A drop that outlasts the hold re-sells seats within itself: its later claims,
//!    asking for seats by name, win the ones whose holds expired meanwhile.)
//! 3. At most [`RETURN_WAVES`] such waves follow the drop; the run ends when the last
//!    wave's holds have all ended and no claim is pending. Every seat is then booked
//!    once or free.
//!
//! The decisions (check out or not, how long to think) come from a hash of the seed,
//! the wave and the claim's number, so one seed gives the same buyers.

use anyhow::{bail, Context};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::client::{backoff, send_claim, Api, ClaimCall, Outcome, MAX_ATTEMPTS};
use super::verify::Win;

/// Longest hold an event may have (the gateway's bound).
pub const HOLD_SECONDS_MAX: u32 = 7200;
/// Waves of returning buyers after the drop, at most.
pub const RETURN_WAVES: u32 = 4;
/// The longest a buyer thinks before checking out.
const THINK_MAX: Duration = Duration::from_secs(2);
/// Pause between a buyer's reads of its booking while it is pending.
const POLL: Duration = Duration::from_millis(25);
/// Pause between reads of the events' counters while holds are open.
const COUNTERS_POLL: Duration = Duration::from_millis(100);
/// Beyond a hold's deadline: the gateway expires it within 2 s, and a loaded
/// reconciler may take a while to persist the claims at all.
const GRACE: Duration = Duration::from_secs(60);

/// Holds on the drop's events, and what their buyers do with them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldPlan {
    /// The events' `hold_seconds` (1..=7200).
    pub hold_seconds: u32,
    /// The share of holds their buyers check out (0.0..=1.0).
    pub checkout_ratio: f64,
}

impl HoldPlan {
    /// `None` for `hold_seconds` 0 (no holds: every persisted claim is confirmed);
    /// an error for values out of range.
    pub fn new(hold_seconds: u32, checkout_ratio: f64) -> anyhow::Result<Option<Self>> {
        if !(0.0..=1.0).contains(&checkout_ratio) {
            bail!("--checkout-ratio {checkout_ratio}: give a share from 0.0 to 1.0");
        }
        if hold_seconds > HOLD_SECONDS_MAX {
            bail!("--hold-seconds {hold_seconds}: at most {HOLD_SECONDS_MAX}");
        }
        Ok((hold_seconds > 0).then_some(Self {
            hold_seconds,
            checkout_ratio,
        }))
    }

    fn hold(&self) -> Duration {
        Duration::from_secs(self.hold_seconds.into())
    }

    /// Up to a quarter of the hold, at most [`THINK_MAX`]: well inside the hold.
    fn think_max(&self) -> Duration {
        (self.hold() / 4).min(THINK_MAX)
    }
}

/// How a buyer's hold ended, as the buyer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyerEnd {
    /// The checkout answered 200 `confirmed`.
    CheckedOut,
    /// The buyer chose not to check out.
    Abandoned,
    /// The checkout answered 409 `hold_expired`: the buyer came too late.
    TooLate,
    /// The booking expired before it was ever `held` (it stayed pending to the end).
    ExpiredPending,
    /// Anything else (labelled): the checks count it as a failure.
    Failed(String),
}

/// One hold: the win it came from, the wave (1: the drop), its number in the order the
/// holds' answers came, and how its buyer ended.
///
/// The order matters for a seat held more than once: a seat is held again only after
/// its hold expired, which is `hold_seconds` after that hold's answer, so the later
/// hold's answer comes later. (A drop longer than the hold re-sells seats within the
/// drop itself: claims still asking for a seat by name win it again once it expired.)
#[derive(Debug, Clone)]
pub struct Hold {
    pub win: Win,
    pub wave: u32,
    pub seq: u64,
    pub end: BuyerEnd,
}

/// What the buyers need to reach the gateway.
pub struct BuyerContext {
    pub client: reqwest::Client,
    /// The bookings URL of each event.
    pub urls: Vec<String>,
    /// One token per user (`u<index>`).
    pub tokens: Vec<String>,
    /// The wave-1 claim bodies, by index.
    pub bodies: Vec<String>,
    pub plan: HoldPlan,
    pub seed: u64,
}

/// The buyers at work, and the queue of those who lost.
pub struct Buyers {
    ctx: Arc<BuyerContext>,
    running: JoinSet<(u32, Hold)>,
    /// Per event: (user, body) of each claim that lost, first lost first.
    lost: Vec<VecDeque<(u32, u32)>>,
    /// Holds started, to number the buyers' decisions.
    started: u64,
    wave: u32,
}

/// What the returning waves did, over every event.
#[derive(Debug, Default, Clone)]
pub struct Returns {
    /// Waves of buyers in all, the drop included.
    pub waves: u32,
    /// Claims the returning buyers made, and how many won a hold.
    pub claims: u64,
    pub won: u64,
}

impl Buyers {
    pub fn new(ctx: BuyerContext, events: usize) -> Self {
        Self {
            ctx: Arc::new(ctx),
            running: JoinSet::new(),
            lost: vec![VecDeque::new(); events],
            started: 0,
            wave: 1,
        }
    }

    /// A claim of `user` on `event` won a hold: its buyer goes to work.
    pub fn won(&mut self, event: u32, user: u32, win: Win) {
        let n = self.started;
        self.started += 1;
        let ctx = Arc::clone(&self.ctx);
        let wave = self.wave;
        self.running.spawn(async move {
            let end = buy(&ctx, event, user, &win, roll(ctx.seed, wave, n)).await;
            let seq = n;
            (
                event,
                Hold {
                    win,
                    wave,
                    seq,
                    end,
                },
            )
        });
    }

    /// A claim of `user` on `event` with body `body` lost: the buyer queues to come back.
    pub fn lost(&mut self, event: u32, user: u32, body: u32) {
        self.lost[event as usize].push_back((user, body));
    }

    /// After the drop: waits for every hold to end, sends the returning waves while
    /// expiries free seats, and waits for their holds to end too. Returns each event's
    /// holds and what the returning waves did.
    pub async fn finish(
        mut self,
        api: &Api,
        event_ids: &[String],
        claims_per_seat: u32,
        in_flight: usize,
    ) -> anyhow::Result<(Vec<Vec<Hold>>, Returns)> {
        let mut holds: Vec<Vec<Hold>> = event_ids.iter().map(|_| Vec::new()).collect();
        let mut returns = Returns {
            waves: 1,
            ..Returns::default()
        };
        loop {
            while let Some(done) = self.running.join_next().await {
                let (event, hold) = done.context("a buyer task failed")?;
                holds[event as usize].push(hold);
            }
            let available = self.wait_until_holds_end(api, event_ids).await?;
            if self.wave > RETURN_WAVES {
                break;
            }
            // Claims per seat for each seat on sale again, from the front of the queue.
            let mut wave: Vec<(u32, u32, u32)> = Vec::new();
            for (event, (queue, free)) in self.lost.iter_mut().zip(&available).enumerate() {
                let n = (free * u64::from(claims_per_seat)).min(queue.len() as u64);
                wave.extend(
                    queue
                        .drain(..n as usize)
                        .map(|(user, body)| (event as u32, user, body)),
                );
            }
            if wave.is_empty() {
                break;
            }
            self.wave += 1;
            returns.waves = self.wave;
            returns.claims += wave.len() as u64;
            returns.won += self.send_wave(wave, in_flight).await;
        }
        Ok((holds, returns))
    }

    /// Sends one wave of returning claims, `in_flight` at a time; returns the holds won.
    async fn send_wave(&mut self, wave: Vec<(u32, u32, u32)>, in_flight: usize) -> u64 {
        use futures::StreamExt;
        let ctx = Arc::clone(&self.ctx);
        let mut answers = futures::stream::iter(wave.into_iter().map(|(event, user, body)| {
            let ctx = Arc::clone(&ctx);
            async move {
                let body_text = returning_body(&ctx.bodies[body as usize]);
                let key = Uuid::now_v7().to_string();
                let sent = send_claim(
                    &ctx.client,
                    &ClaimCall {
                        url: &ctx.urls[event as usize],
                        token: &ctx.tokens[user as usize],
                        key: &key,
                        body: &body_text,
                    },
                )
                .await;
                (event, user, body, sent.outcome)
            }
        }))
        .buffer_unordered(in_flight.max(1));
        let mut won = 0;
        while let Some((event, user, body, outcome)) = answers.next().await {
            match outcome {
                Outcome::Won {
                    booking_id, seats, ..
                } => {
                    won += 1;
                    let win = Win {
                        user: format!("u{user}"),
                        booking_id,
                        seats,
                    };
                    self.won(event, user, win);
                }
                Outcome::Lost(_) => self.lost(event, user, body),
                Outcome::UserLimit | Outcome::Error(_) => {}
            }
        }
        won
    }

    /// Polls each event's counters until none has a pending claim or a held booking;
    /// returns the seats each has available then.
    async fn wait_until_holds_end(
        &self,
        api: &Api,
        event_ids: &[String],
    ) -> anyhow::Result<Vec<u64>> {
        let deadline = Instant::now() + self.ctx.plan.hold() + GRACE;
        let mut available = vec![0; event_ids.len()];
        let mut open: Vec<usize> = (0..event_ids.len()).collect();
        loop {
            let mut still = Vec::new();
            for &i in &open {
                let counters = api.event(&event_ids[i]).await?;
                match counters.as_ref().and_then(holds_ended) {
                    Some(free) => available[i] = free,
                    None => still.push(i),
                }
            }
            open = still;
            if open.is_empty() {
                return Ok(available);
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = open.iter().map(|&i| event_ids[i].as_str()).collect();
                bail!(
                    "holds were still open or claims pending {} s after the last could have expired, on {}",
                    GRACE.as_secs(),
                    names.join(", ")
                );
            }
            tokio::time::sleep(COUNTERS_POLL).await;
        }
    }
}

/// The seats available once an event's counters show no pending claim and no held
/// booking (`held` is absent when 0); `None` while some are.
pub fn holds_ended(counters: &Value) -> Option<u64> {
    let pending = counters["pending"].as_u64()?;
    let held = counters["held"].as_u64().unwrap_or(0);
    (pending == 0 && held == 0).then(|| counters["available"].as_u64().unwrap_or(0))
}

/// A returning buyer's claim: as many seats as before, best available (a named seat
/// is long gone to someone else).
fn returning_body(original: &str) -> String {
    let v: Value = serde_json::from_str(original).unwrap_or(Value::Null);
    let quantity = match v["seats"].as_array() {
        Some(seats) => seats.len().max(1) as u64,
        None => v["quantity"].as_u64().unwrap_or(1),
    };
    json!({ "quantity": quantity }).to_string()
}

/// A buyer's two draws in [0, 1): whether to check out, and how long to think.
#[derive(Debug, Clone, Copy)]
struct Roll {
    checkout: f64,
    think: f64,
}

fn roll(seed: u64, wave: u32, n: u64) -> Roll {
    let a = splitmix64(seed ^ (u64::from(wave) << 48) ^ n);
    let b = splitmix64(a);
    Roll {
        checkout: unit(a),
        think: unit(b),
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits as a float in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// One buyer: waits for the hold, then checks out or walks away.
async fn buy(ctx: &BuyerContext, event: u32, user: u32, win: &Win, roll: Roll) -> BuyerEnd {
    let url = format!("{}/{}", ctx.urls[event as usize], win.booking_id);
    let token = &ctx.tokens[user as usize];
    let deadline = Instant::now() + ctx.plan.hold() + GRACE;
    // Until the reconciler has persisted the claim, the booking is pending.
    let mut failures = 0;
    loop {
        let read = ctx.client.get(&url).bearer_auth(token).send().await;
        let status = match read {
            Ok(r) if r.status() == StatusCode::OK => match r.json::<Value>().await {
                Ok(b) => b["status"].as_str().unwrap_or("").to_owned(),
                Err(_) => String::new(),
            },
            Ok(r) => format!("GET answered {}", r.status().as_u16()),
            Err(_) => String::new(),
        };
        match status.as_str() {
            "held" => break,
            "expired" => return BuyerEnd::ExpiredPending,
            "pending" => {}
            "" if failures + 1 < MAX_ATTEMPTS => failures += 1,
            "" => return BuyerEnd::Failed("reading the booking failed".into()),
            other => return BuyerEnd::Failed(format!("the booking read {other}")),
        }
        if Instant::now() >= deadline {
            return BuyerEnd::Failed("the booking was never held".into());
        }
        tokio::time::sleep(POLL).await;
    }
    if roll.checkout >= ctx.plan.checkout_ratio {
        return BuyerEnd::Abandoned;
    }
    tokio::time::sleep(ctx.plan.think_max().mul_f64(roll.think)).await;
    checkout(ctx, &url, token, win).await
}

/// The checkout body: one made-up attendee per seat.
pub fn attendees(user: &str, seats: &[String]) -> Value {
    let list: Vec<Value> = seats
        .iter()
        .map(|seat| {
            json!({
                "seat": seat,
                "name": format!("Guest {seat} of {user}"),
                "email": format!("{user}.{}@example.org", seat.to_lowercase()),
            })
        })
        .collect();
    json!({ "attendees": list, "payment_reference": format!("demo-{user}") })
}

/// `POST …/checkout`, retried on 409 `booking_pending` (after its `Retry-After`), 429,
/// 503 and transport failures.
async fn checkout(ctx: &BuyerContext, url: &str, token: &str, win: &Win) -> BuyerEnd {
    let body = attendees(&win.user, &win.seats).to_string();
    let mut label = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let sent = ctx
            .client
            .post(format!("{url}/checkout"))
            .bearer_auth(token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let mut retry_after = None;
        match sent {
            Ok(r) => {
                let status = r.status();
                retry_after = r
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                let code = answer["error"].as_str().unwrap_or("");
                match (status, code) {
                    (StatusCode::OK, _) if answer["status"] == "confirmed" => {
                        return BuyerEnd::CheckedOut
                    }
                    (StatusCode::CONFLICT, "hold_expired") => return BuyerEnd::TooLate,
                    (StatusCode::CONFLICT, "booking_pending")
                    | (StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, _) => {
                        label = format!("checkout {} {code}", status.as_u16());
                    }
                    _ => {
                        return BuyerEnd::Failed(
                            format!("checkout {} {code}", status.as_u16())
                                .trim_end()
                                .to_owned(),
                        )
                    }
                }
            }
            Err(e) => label = format!("checkout transport error: {e}"),
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(backoff(attempt, retry_after)).await;
        }
    }
    BuyerEnd::Failed(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_takes_only_sensible_values() {
        assert_eq!(HoldPlan::new(0, 1.0).unwrap(), None);
        let plan = HoldPlan::new(5, 0.7).unwrap().unwrap();
        assert_eq!(plan.think_max(), Duration::from_millis(1250));
        assert_eq!(
            HoldPlan::new(600, 0.0).unwrap().unwrap().think_max(),
            THINK_MAX
        );
        assert!(HoldPlan::new(7201, 0.5).is_err());
        assert!(HoldPlan::new(5, 1.5).is_err());
        assert!(HoldPlan::new(5, f64::NAN).is_err());
    }

    #[test]
    fn the_share_of_checkouts_follows_the_ratio_and_the_seed() {
        let checked = (0..10_000)
            .filter(|&n| roll(7, 1, n).checkout < 0.7)
            .count();
        assert!((6_800..7_200).contains(&checked), "{checked}");
        assert_eq!(roll(7, 2, 5).checkout, roll(7, 2, 5).checkout);
        assert_ne!(roll(7, 2, 5).checkout, roll(7, 3, 5).checkout);
        assert!((0..1000).all(|n| (0.0..1.0).contains(&roll(1, 1, n).think)));
    }

    #[test]
    fn returning_buyers_ask_for_as_many_seats_best_available() {
        assert_eq!(
            returning_body(r#"{"seats":["S0007"]}"#),
            r#"{"quantity":1}"#
        );
        assert_eq!(returning_body(r#"{"quantity":3}"#), r#"{"quantity":3}"#);
    }

    #[test]
    fn counters_say_when_every_hold_has_ended() {
        let open = json!({"available": 2, "pending": 0, "held": 3, "booked": 5});
        assert_eq!(holds_ended(&open), None);
        let pending = json!({"available": 2, "pending": 1, "booked": 5});
        assert_eq!(holds_ended(&pending), None);
        let ended = json!({"available": 2, "pending": 0, "booked": 8});
        assert_eq!(holds_ended(&ended), Some(2));
    }

    #[test]
    fn every_seat_gets_one_attendee_at_example_org() {
        let body = attendees("u3", &["S0001".into(), "S0002".into()]);
        let list = body["attendees"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1]["seat"], "S0002");
        assert!(list
            .iter()
            .all(|a| a["email"].as_str().unwrap().ends_with("@example.org")));
    }
}

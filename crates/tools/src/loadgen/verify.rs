//! After the drop: wait until every won claim is confirmed, then check that the stores
//! hold exactly what the clients were told.
//!
//! - MySQL (when its URL is known), the system of record: every won booking is
//!   confirmed for its winner and books exactly its seats; no other booking is
//!   confirmed; no seat is booked twice or by a booking nobody won.
//! - Redis, read directly for an in-process gateway: every won seat is held by its
//!   winner's booking and no other seat is held. Against a gateway at a URL, the public
//!   seat map says the same in less detail.
//! - Without MySQL, each won booking is read back through the API as admin.
//! - The audit endpoint: Redis and MySQL agree.
//!
//! With the `mysql` claim strategy Redis is not in the claim path (seats are booked in
//! MySQL directly), so a won seat that Redis still shows available is expected there;
//! a seat that Redis holds for any booking but its winner is still a failure.

use anyhow::Context;
use futures::StreamExt;
use seatgate::cli::thousands;
use serde_json::Value;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::client::Api;
use super::report::{DropReport, CONFIRM_DEADLINE};
use seatgate::claims::RedisStore;
use seatgate::db::{opt_text, text};
use seatgate::domain::SeatState;

/// Pause between reads of the event's counters while waiting for confirmations.
const CONFIRM_POLL: Duration = Duration::from_millis(50);
/// Booking reads in flight at once when checking through the API.
const API_CHECK_CONCURRENCY: usize = 32;

/// One won claim: who won it, the booking id they were given, and its seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Win {
    pub user: String,
    pub booking_id: String,
    pub seats: Vec<String>,
}

/// What the checks look at.
pub struct Verifier<'a> {
    pub api: &'a Api,
    pub event_id: &'a str,
    pub database_url: Option<&'a str>,
    /// Direct access to the gateway's Redis (in-process runs).
    pub redis: Option<&'a RedisStore>,
    /// False when the claims never went through Redis (the `mysql` strategy).
    pub redis_in_path: bool,
    pub wins: &'a [Win],
}

impl Verifier<'_> {
    /// The seat → booking id every client-reported win implies.
    fn seat_owners(&self) -> HashMap<&str, &str> {
        self.wins
            .iter()
            .flat_map(|w| w.seats.iter().map(|s| (s.as_str(), w.booking_id.as_str())))
            .collect()
    }

    /// Runs every check that applies, recording what passed and what failed.
    pub async fn verify(&self, report: &mut DropReport, drop_ended: Instant) -> anyhow::Result<()> {
        self.wait_for_confirmations(report, drop_ended).await?;
        if let Some(url) = self.database_url {
            self.check_mysql(url, report).await?;
        } else {
            self.check_bookings_via_api(report).await?;
        }
        if let Some(redis) = self.redis {
            self.check_redis(redis, report).await?;
        } else {
            self.check_seat_map(report).await?;
        }
        self.check_audit(report).await?;
        Ok(())
    }

    /// Waits until nothing is pending and every won seat is booked, polling the
    /// event's counters (cheap enough to poll). Claims answered 201 were confirmed
    /// when answered.
    async fn wait_for_confirmations(
        &self,
        report: &mut DropReport,
        drop_ended: Instant,
    ) -> anyhow::Result<()> {
        if report.won_pending == 0 {
            report.confirmed = report.won_seats;
            report.confirmed_after = Some(Duration::ZERO);
            return Ok(());
        }
        let mut last = Value::Null;
        loop {
            if let Some(event) = self.api.event(self.event_id).await? {
                let pending = event["pending"].as_u64();
                let booked = event["booked"].as_u64();
                report.confirmed = booked.unwrap_or(0);
                last = event;
                // At least: a claim whose answer never arrived may have won too, and
                // the MySQL check names it.
                if pending == Some(0) && booked.is_some_and(|b| b >= report.won_seats) {
                    report.confirmed_after = Some(drop_ended.elapsed());
                    return Ok(());
                }
            }
            if drop_ended.elapsed() >= CONFIRM_DEADLINE {
                report.failures.push(format!(
                    "not every won claim was confirmed within {CONFIRM_DEADLINE:?}: won {} seats, event counters {last}",
                    report.won_seats
                ));
                return Ok(());
            }
            tokio::time::sleep(CONFIRM_POLL).await;
        }
    }

    /// Looks at MySQL directly: the system of record must hold exactly the winners.
    async fn check_mysql(&self, database_url: &str, report: &mut DropReport) -> anyhow::Result<()> {
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .connect(database_url)
            .await
            .context("cannot connect to MySQL to check the drop")?;
        let result = mysql_failures(&pool, self.event_id, self.wins).await;
        pool.close().await;
        let (booked, failures) = result.context("checking the drop in MySQL failed")?;
        if failures.is_empty() {
            let summary = format!(
                "{} seats booked, no seat with two bookings",
                thousands(booked)
            );
            report.checks.push(format!("MySQL {summary}"));
            report.mysql_summary = Some(summary);
        }
        report.failures.extend(failures);
        Ok(())
    }

    /// Without MySQL: reads every won booking back as admin.
    async fn check_bookings_via_api(&self, report: &mut DropReport) -> anyhow::Result<()> {
        let answers: Vec<(&Win, anyhow::Result<Option<Value>>)> =
            futures::stream::iter(self.wins.iter().map(|win| async move {
                (win, self.api.booking(self.event_id, &win.booking_id).await)
            }))
            .buffer_unordered(API_CHECK_CONCURRENCY)
            .collect()
            .await;
        let before = report.failures.len();
        for (win, answer) in answers {
            let b = &win.booking_id;
            match answer.with_context(|| format!("reading booking {b}"))? {
                None => report
                    .failures
                    .push(format!("booking {b} of {} answers 404", win.user)),
                Some(booking) => {
                    let seats: Vec<&str> = booking["seats"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    if booking["status"] != "confirmed"
                        || booking["user_id"] != win.user.as_str()
                        || seats != win.seats
                    {
                        report.failures.push(format!(
                            "booking {b} of {} for {:?} reads back as {booking}",
                            win.user, win.seats
                        ));
                    }
                }
            }
        }
        if report.failures.len() == before {
            report.checks.push(format!(
                "all {} won bookings read back confirmed",
                thousands(self.wins.len() as u64)
            ));
        }
        Ok(())
    }

    /// Reads the seats' states in Redis: each seat held by exactly its winner.
    async fn check_redis(&self, redis: &RedisStore, report: &mut DropReport) -> anyhow::Result<()> {
        let states = redis
            .seat_states(self.event_id)
            .await
            .context("reading the seats from Redis failed")?;
        let owners = self.seat_owners();
        let mut failures = Vec::new();
        let mut booked = 0u64;
        let mut untouched = 0u64;
        for s in &states {
            let holder = s.state.booking();
            match (owners.get(s.seat.as_str()), holder) {
                (Some(winner), Some(h))
                    if h == *winner && matches!(s.state, SeatState::Booked(_)) =>
                {
                    booked += 1;
                }
                (Some(_), None) if !self.redis_in_path => untouched += 1,
                (Some(winner), _) => failures.push(format!(
                    "Redis: seat {} is {}, its winner was told booking {winner}",
                    s.seat,
                    s.state.to_redis()
                )),
                (None, Some(_)) => failures.push(format!(
                    "Redis: seat {} is {} but no client won it",
                    s.seat,
                    s.state.to_redis()
                )),
                (None, None) => {}
            }
        }
        let known: HashSet<&str> = states.iter().map(|s| s.seat.as_str()).collect();
        for seat in owners.keys().filter(|s| !known.contains(*s)) {
            failures.push(format!("Redis: won seat {seat} is missing"));
        }
        if failures.is_empty() {
            report.checks.push(if self.redis_in_path {
                format!(
                    "Redis holds each of the {} won seats for its winner, no other",
                    thousands(booked)
                )
            } else {
                format!(
                    "Redis holds no seat for anyone else ({} won seats booked in MySQL only: Redis is not in this strategy's claim path)",
                    thousands(untouched + booked)
                )
            });
        }
        report.failures.extend(failures);
        Ok(())
    }

    /// Without direct Redis access: the public seat map shows each won seat booked,
    /// nothing pending, and no seat booked that nobody won.
    async fn check_seat_map(&self, report: &mut DropReport) -> anyhow::Result<()> {
        let map = self.api.seats(self.event_id).await?;
        let owners = self.seat_owners();
        let mut failures = Vec::new();
        let mut booked = 0u64;
        for seat in map["seats"].as_array().into_iter().flatten() {
            let id = seat["id"].as_str().unwrap_or("");
            let status = seat["status"].as_str().unwrap_or("");
            let won = owners.contains_key(id);
            match (won, status) {
                (true, "booked") => booked += 1,
                (false, "available") => {}
                (true, "available") if !self.redis_in_path => {}
                _ => failures.push(format!(
                    "seat map: seat {id} is {status}, {}",
                    if won {
                        "it was won"
                    } else {
                        "no client won it"
                    }
                )),
            }
        }
        if failures.is_empty() {
            report.checks.push(format!(
                "seat map shows the {} won seats booked, no other",
                thousands(booked)
            ));
        }
        report.failures.extend(failures);
        Ok(())
    }

    /// Asks the gateway whether Redis and MySQL agree about the event. With Redis out
    /// of the claim path, a won seat available in Redis and booked in MySQL by its
    /// winner is expected; any other divergence is not.
    async fn check_audit(&self, report: &mut DropReport) -> anyhow::Result<()> {
        let audit = self.api.audit(self.event_id).await?;
        let owners = self.seat_owners();
        let divergences: Vec<&Value> = audit["divergences"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let (expected, unexpected): (Vec<&Value>, Vec<&Value>) =
            divergences.into_iter().partition(|d| {
                !self.redis_in_path
                    && d["redis"] == "available"
                    && owners
                        .get(d["seat"].as_str().unwrap_or(""))
                        .is_some_and(|b| d["mysql"] == format!("booked:{b}").as_str())
            });
        if unexpected.is_empty()
            && (audit["consistent"] == Value::Bool(true) || !expected.is_empty())
        {
            report.checks.push(if expected.is_empty() {
                "audit consistent".to_owned()
            } else {
                format!(
                    "audit: only the {} won seats Redis never saw differ",
                    thousands(expected.len() as u64)
                )
            });
        } else {
            let first: Vec<String> = unexpected.iter().take(3).map(|d| d.to_string()).collect();
            report.failures.push(format!(
                "the audit found Redis and MySQL inconsistent: {} divergences, e.g. {}",
                unexpected.len(),
                first.join(", ")
            ));
        }
        Ok(())
    }
}

/// Every way MySQL disagrees with what the clients were told, and the booked count.
pub async fn mysql_failures(
    pool: &MySqlPool,
    event_id: &str,
    wins: &[Win],
) -> Result<(u64, Vec<String>), sqlx::Error> {
    let mut failures = Vec::new();
    let won_seats: u64 = wins.iter().map(|w| w.seats.len() as u64).sum();

    let booked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM seats WHERE event_id = ? AND status = 'booked'")
            .bind(event_id)
            .fetch_one(pool)
            .await?;
    let booked = u64::try_from(booked).unwrap_or(0);
    if booked != won_seats {
        failures.push(format!(
            "MySQL has {booked} seats booked, clients won {won_seats}"
        ));
    }

    let doubled = sqlx::query(
        "SELECT seat_id FROM seats WHERE event_id = ? GROUP BY seat_id HAVING COUNT(*) > 1",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await?;
    if !doubled.is_empty() {
        failures.push(format!("{} seats have more than one row", doubled.len()));
    }

    // Each booked seat is booked by the booking its winner was told about, and each
    // won seat is booked.
    let owners: HashMap<&str, &str> = wins
        .iter()
        .flat_map(|w| w.seats.iter().map(|s| (s.as_str(), w.booking_id.as_str())))
        .collect();
    let rows = sqlx::query("SELECT seat_id, status, booking_id FROM seats WHERE event_id = ?")
        .bind(event_id)
        .fetch_all(pool)
        .await?;
    let mut seen: HashSet<String> = HashSet::new();
    for row in &rows {
        let seat = text(row, "seat_id")?;
        let status = text(row, "status")?;
        let booking = opt_text(row, "booking_id")?;
        let winner = owners.get(seat.as_str()).copied();
        match (winner, status.as_str(), booking.as_deref()) {
            (Some(w), "booked", Some(b)) if b == w => {}
            (None, "available", _) => {}
            (_, "booked", None) => {
                failures.push(format!("seat {seat} is booked with no booking id"))
            }
            (Some(w), _, b) => failures.push(format!(
                "seat {seat}: the winner got booking {w}, MySQL says {status} by {b:?}"
            )),
            (None, _, b) => failures.push(format!(
                "seat {seat} is {status} by {b:?}, but no client won it"
            )),
        }
        seen.insert(seat);
    }
    for seat in owners.keys().filter(|s| !seen.contains(**s)) {
        failures.push(format!("seat {seat} is missing from MySQL"));
    }

    // Every won booking is confirmed, for its winner; no other booking is.
    let rows = sqlx::query("SELECT id, user_id, status FROM bookings WHERE event_id = ?")
        .bind(event_id)
        .fetch_all(pool)
        .await?;
    let mut bookings: HashMap<String, (String, String)> = HashMap::new();
    for row in &rows {
        bookings.insert(
            text(row, "id")?,
            (text(row, "user_id")?, text(row, "status")?),
        );
    }
    let won_ids: HashSet<&str> = wins.iter().map(|w| w.booking_id.as_str()).collect();
    for win in wins {
        let (user, booking_id) = (&win.user, &win.booking_id);
        match bookings.get(booking_id) {
            Some((u, status)) if u == user && status == "confirmed" => {}
            Some((u, status)) => failures.push(format!(
                "booking {booking_id} of {user} is {status} for {u} in MySQL"
            )),
            None => failures.push(format!("booking {booking_id} of {user} is not in MySQL")),
        }
    }
    let extra = bookings
        .iter()
        .filter(|(id, (_, status))| status == "confirmed" && !won_ids.contains(id.as_str()))
        .count();
    if extra > 0 {
        failures.push(format!(
            "{extra} confirmed bookings in MySQL were never reported as won"
        ));
    }
    Ok((booked, failures))
}

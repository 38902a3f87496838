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

use super::buyers::{BuyerEnd, Hold};
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

/// What one event's holds came to, as the stores have it at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HoldCounts {
    /// Claims answered 202, over every wave: each became a hold.
    pub holds: u64,
    /// Holds whose booking ended `confirmed` (checked out).
    pub checkouts: u64,
    /// Holds whose booking ended `expired`.
    pub expiries: u64,
    /// Buyers who chose not to check out.
    pub abandoned: u64,
    /// Checkouts answered 409 `hold_expired`.
    pub too_late: u64,
    /// Seats booked in the end by a later buyer after an earlier hold on them expired.
    pub resold_seats: u64,
    pub seats_total: u64,
    pub booked: u64,
    pub available: u64,
}

impl HoldCounts {
    pub fn add(&mut self, other: &HoldCounts) {
        self.holds += other.holds;
        self.checkouts += other.checkouts;
        self.expiries += other.expiries;
        self.abandoned += other.abandoned;
        self.too_late += other.too_late;
        self.resold_seats += other.resold_seats;
        self.seats_total += other.seats_total;
        self.booked += other.booked;
        self.available += other.available;
    }
}

/// After a drop on an event with holds, once every hold has ended: every hold ended
/// checked out or expired, as its buyer was told; every seat is booked once, by the
/// booking a buyer checked out, or free; and MySQL (seat rows and bookings), Redis
/// (each seat's state, and the event's counters) and the audit agree on it.
pub struct HoldVerifier<'a> {
    pub api: &'a Api,
    pub event_id: &'a str,
    pub database_url: Option<&'a str>,
    /// Direct access to the gateway's Redis (in-process runs).
    pub redis: Option<&'a RedisStore>,
    /// The event's seat ids.
    pub seats: &'a [String],
    pub holds: &'a [Hold],
}

impl HoldVerifier<'_> {
    /// Runs every check that applies, recording what passed and what failed; returns
    /// the counts (the seat counts from MySQL when it is read, else from the counters).
    pub async fn verify(&self, report: &mut DropReport) -> anyhow::Result<HoldCounts> {
        let (finals, rows) = match self.database_url {
            Some(url) => {
                let pool = MySqlPoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await
                    .context("cannot connect to MySQL to check the holds")?;
                let read = mysql_hold_state(&pool, self.event_id).await;
                pool.close().await;
                let (finals, rows) = read.context("reading the holds from MySQL failed")?;
                (finals, Some(rows))
            }
            None => (self.finals_via_api().await?, None),
        };
        let before = report.failures.len();
        let (mut counts, owners, failures) = settle(self.holds, &finals);
        report.failures.extend(failures);
        counts.seats_total = self.seats.len() as u64;
        counts.booked = owners.len() as u64;
        counts.available = counts.seats_total.saturating_sub(counts.booked);

        if let Some(rows) = rows {
            let (booked, available, failures) = seat_rows_failures(&rows, self.seats, &owners);
            if failures.is_empty() {
                report.checks.push(format!(
                    "MySQL: {} seats booked by the bookings checked out + {} available = {}, none held",
                    thousands(booked),
                    thousands(available),
                    thousands(counts.seats_total)
                ));
            }
            report.failures.extend(failures);
            let extra: Vec<&String> = finals
                .iter()
                .filter(|(id, status)| {
                    status.as_str() != "expired"
                        && status.as_str() != "rejected"
                        && status.as_str() != "cancelled"
                        && !self.holds.iter().any(|h| &h.win.booking_id == *id)
                })
                .map(|(id, _)| id)
                .collect();
            if !extra.is_empty() {
                report.failures.push(format!(
                    "MySQL has {} bookings confirmed, held or pending that no buyer won, e.g. {}",
                    extra.len(),
                    extra[0]
                ));
            }
            counts.booked = booked;
            counts.available = available;
        }
        match self.redis {
            Some(redis) => self.check_redis_seats(redis, &owners, report).await?,
            None => self.check_seat_map(&owners, report).await?,
        }
        self.check_counters(&counts, report).await?;
        self.check_audit(report).await?;
        if report.failures.len() == before {
            report.checks.push(format!(
                "{} holds: {} checked out + {} expired, each as its buyer was told; {} seats re-sold after an expiry",
                thousands(counts.holds),
                thousands(counts.checkouts),
                thousands(counts.expiries),
                thousands(counts.resold_seats)
            ));
        }
        Ok(counts)
    }

    /// Without MySQL: each hold's booking read back as admin.
    async fn finals_via_api(&self) -> anyhow::Result<HashMap<String, String>> {
        let answers: Vec<(&Hold, anyhow::Result<Option<Value>>)> =
            futures::stream::iter(self.holds.iter().map(|h| async move {
                (h, self.api.booking(self.event_id, &h.win.booking_id).await)
            }))
            .buffer_unordered(API_CHECK_CONCURRENCY)
            .collect()
            .await;
        let mut finals = HashMap::new();
        for (hold, answer) in answers {
            let b = &hold.win.booking_id;
            if let Some(booking) = answer.with_context(|| format!("reading booking {b}"))? {
                let status = booking["status"].as_str().unwrap_or("").to_owned();
                finals.insert(b.clone(), status);
            }
        }
        Ok(finals)
    }

    /// Redis, seat by seat: booked by the booking checked out, or available.
    async fn check_redis_seats(
        &self,
        redis: &RedisStore,
        owners: &HashMap<String, String>,
        report: &mut DropReport,
    ) -> anyhow::Result<()> {
        let states = redis
            .seat_states(self.event_id)
            .await
            .context("reading the seats from Redis failed")?;
        let mut failures = Vec::new();
        for s in &states {
            match (owners.get(&s.seat), &s.state) {
                (Some(owner), SeatState::Booked(b)) if b == owner => {}
                (None, SeatState::Available) => {}
                (owner, state) => failures.push(format!(
                    "Redis: seat {} is {}, {}",
                    s.seat,
                    state.to_redis(),
                    match owner {
                        Some(b) => format!("booking {b} checked it out"),
                        None => "nobody checked it out".to_owned(),
                    }
                )),
            }
        }
        if states.len() != self.seats.len() {
            failures.push(format!(
                "Redis has {} seats, the event {}",
                states.len(),
                self.seats.len()
            ));
        }
        if failures.is_empty() {
            report.checks.push(
                "Redis: each seat booked by the booking checked out, or available".to_owned(),
            );
        }
        report.failures.extend(failures);
        Ok(())
    }

    /// Without direct Redis access: the public seat map.
    async fn check_seat_map(
        &self,
        owners: &HashMap<String, String>,
        report: &mut DropReport,
    ) -> anyhow::Result<()> {
        let map = self.api.seats(self.event_id).await?;
        let mut failures = Vec::new();
        for seat in map["seats"].as_array().into_iter().flatten() {
            let id = seat["id"].as_str().unwrap_or("");
            let status = seat["status"].as_str().unwrap_or("");
            let want = if owners.contains_key(id) {
                "booked"
            } else {
                "available"
            };
            if status != want {
                failures.push(format!("seat map: seat {id} is {status}, not {want}"));
            }
        }
        if failures.is_empty() {
            report
                .checks
                .push("seat map: the seats checked out booked, the rest available".to_owned());
        }
        report.failures.extend(failures);
        Ok(())
    }

    /// The event's counters (Redis): nothing pending or held, booked + available =
    /// total, as MySQL has it.
    async fn check_counters(
        &self,
        counts: &HoldCounts,
        report: &mut DropReport,
    ) -> anyhow::Result<()> {
        let Some(v) = self.api.event(self.event_id).await? else {
            report.failures.push(format!(
                "GET /v1/events/{} did not answer 200",
                self.event_id
            ));
            return Ok(());
        };
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let seen = (
            n("pending"),
            n("held"),
            n("booked"),
            n("available"),
            n("seats_total"),
        );
        let want = (0, 0, counts.booked, counts.available, counts.seats_total);
        if seen == want {
            report.checks.push(format!(
                "counters: {} booked + {} available = {}, nothing pending or held",
                thousands(counts.booked),
                thousands(counts.available),
                thousands(counts.seats_total)
            ));
        } else {
            report.failures.push(format!(
                "the event's counters (pending, held, booked, available, total) are {seen:?}, the stores say {want:?}: {v}"
            ));
        }
        Ok(())
    }

    async fn check_audit(&self, report: &mut DropReport) -> anyhow::Result<()> {
        let audit = self.api.audit(self.event_id).await?;
        if audit["consistent"] == Value::Bool(true) {
            report.checks.push("audit consistent".to_owned());
        } else {
            report.failures.push(format!(
                "the audit found Redis and MySQL inconsistent: {audit}"
            ));
        }
        Ok(())
    }
}

/// One seat row of MySQL: seat, status, booking.
type SeatRow = (String, String, Option<String>);

/// Every booking's status, and every seat row, of the event in MySQL.
async fn mysql_hold_state(
    pool: &MySqlPool,
    event_id: &str,
) -> Result<(HashMap<String, String>, Vec<SeatRow>), sqlx::Error> {
    let rows = sqlx::query("SELECT id, status FROM bookings WHERE event_id = ?")
        .bind(event_id)
        .fetch_all(pool)
        .await?;
    let mut finals = HashMap::new();
    for row in &rows {
        finals.insert(text(row, "id")?, text(row, "status")?);
    }
    let rows = sqlx::query("SELECT seat_id, status, booking_id FROM seats WHERE event_id = ?")
        .bind(event_id)
        .fetch_all(pool)
        .await?;
    let mut seats = Vec::with_capacity(rows.len());
    for row in &rows {
        seats.push((
            text(row, "seat_id")?,
            text(row, "status")?,
            opt_text(row, "booking_id")?,
        ));
    }
    Ok((finals, seats))
}

/// What the holds came to, given each booking's final status: the counts, the seat →
/// booking of every seat checked out, and every inconsistency. A seat may be held
/// again only after its earlier hold expired, and be checked out once at most: of a
/// seat's holds, in the order their answers came, every one but the last expired.
pub fn settle(
    holds: &[Hold],
    finals: &HashMap<String, String>,
) -> (HoldCounts, HashMap<String, String>, Vec<String>) {
    let mut counts = HoldCounts {
        holds: holds.len() as u64,
        ..HoldCounts::default()
    };
    let mut failures = Vec::new();
    for h in holds {
        let (b, user) = (&h.win.booking_id, &h.win.user);
        match &h.end {
            BuyerEnd::Abandoned => counts.abandoned += 1,
            BuyerEnd::TooLate => counts.too_late += 1,
            BuyerEnd::Failed(why) => {
                failures.push(format!("the buyer of booking {b} ({user}): {why}"))
            }
            BuyerEnd::CheckedOut | BuyerEnd::ExpiredPending => {}
        }
        match finals.get(b).map(String::as_str) {
            Some("confirmed") => {
                counts.checkouts += 1;
                if h.end != BuyerEnd::CheckedOut {
                    failures.push(format!(
                        "booking {b} of {user} is confirmed, but its buyer ended {:?}",
                        h.end
                    ));
                }
            }
            Some("expired") => {
                counts.expiries += 1;
                if h.end == BuyerEnd::CheckedOut {
                    failures.push(format!(
                        "booking {b} of {user} was checked out (200) but is expired"
                    ));
                }
            }
            Some(other) => failures.push(format!(
                "booking {b} of {user} is {other}: every hold should end checked out or expired"
            )),
            None => failures.push(format!("booking {b} of {user} is unknown to the gateway")),
        }
    }
    if counts.checkouts + counts.expiries != counts.holds && failures.is_empty() {
        failures.push(format!(
            "{} checkouts + {} expiries is not the {} holds",
            counts.checkouts, counts.expiries, counts.holds
        ));
    }
    // Per seat, its holds in the order of the waves.
    let mut by_seat: HashMap<&str, Vec<&Hold>> = HashMap::new();
    for h in holds {
        for seat in &h.win.seats {
            by_seat.entry(seat.as_str()).or_default().push(h);
        }
    }
    let mut owners = HashMap::new();
    for (seat, mut seat_holds) in by_seat {
        seat_holds.sort_by_key(|h| (h.wave, h.seq));
        let status = |h: &Hold| finals.get(&h.win.booking_id).map(String::as_str);
        let confirmed: Vec<usize> = (0..seat_holds.len())
            .filter(|&i| status(seat_holds[i]) == Some("confirmed"))
            .collect();
        match confirmed.as_slice() {
            [] => {}
            [i] => {
                if *i + 1 != seat_holds.len() {
                    failures.push(format!(
                        "seat {seat} was held again (booking {}) after booking {} checked it out",
                        seat_holds[*i + 1].win.booking_id,
                        seat_holds[*i].win.booking_id
                    ));
                }
                if seat_holds[..*i]
                    .iter()
                    .any(|h| status(h) == Some("expired"))
                {
                    counts.resold_seats += 1;
                }
                owners.insert(seat.to_owned(), seat_holds[*i].win.booking_id.clone());
            }
            many => failures.push(format!("seat {seat} was checked out {} times", many.len())),
        }
    }
    (counts, owners, failures)
}

/// MySQL's seat rows against the seats checked out: each booked by its booking, the
/// rest available, none held; returns (booked, available, failures).
fn seat_rows_failures(
    rows: &[SeatRow],
    seats: &[String],
    owners: &HashMap<String, String>,
) -> (u64, u64, Vec<String>) {
    let mut failures = Vec::new();
    let (mut booked, mut available) = (0, 0);
    let mut seen = HashSet::new();
    for (seat, status, booking) in rows {
        if !seen.insert(seat.as_str()) {
            failures.push(format!("MySQL: seat {seat} has more than one row"));
        }
        match (owners.get(seat), status.as_str(), booking) {
            (Some(owner), "booked", Some(b)) if b == owner => booked += 1,
            (None, "available", None) => available += 1,
            (owner, _, b) => failures.push(format!(
                "MySQL: seat {seat} is {status} by {b:?}, {}",
                match owner {
                    Some(o) => format!("booking {o} checked it out"),
                    None => "nobody checked it out".to_owned(),
                }
            )),
        }
    }
    if rows.len() != seats.len() || booked + available != seats.len() as u64 {
        failures.push(format!(
            "MySQL: {booked} booked + {available} available seats of {} rows, the event has {}",
            rows.len(),
            seats.len()
        ));
    }
    (booked, available, failures)
}

#[cfg(test)]
mod hold_tests {
    use super::*;

    fn hold(b: &str, seat: &str, wave: u32, end: BuyerEnd) -> Hold {
        Hold {
            win: Win {
                user: format!("u-{b}"),
                booking_id: b.to_owned(),
                seats: vec![seat.to_owned()],
            },
            wave,
            seq: b[1..].parse().unwrap(),
            end,
        }
    }

    fn finals(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(b, s)| ((*b).to_owned(), (*s).to_owned()))
            .collect()
    }

    #[test]
    fn a_seat_abandoned_then_checked_out_is_resold_once() {
        let holds = [
            hold("b1", "S1", 1, BuyerEnd::Abandoned),
            hold("b2", "S2", 1, BuyerEnd::CheckedOut),
            hold("b3", "S1", 2, BuyerEnd::CheckedOut),
            hold("b4", "S3", 1, BuyerEnd::TooLate),
        ];
        let f = finals(&[
            ("b1", "expired"),
            ("b2", "confirmed"),
            ("b3", "confirmed"),
            ("b4", "expired"),
        ]);
        let (counts, owners, failures) = settle(&holds, &f);
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(
            (
                counts.holds,
                counts.checkouts,
                counts.expiries,
                counts.resold_seats
            ),
            (4, 2, 2, 1)
        );
        // Within one wave too (a drop longer than the hold), in the answers' order.
        let again = [
            hold("b1", "S1", 1, BuyerEnd::Abandoned),
            hold("b5", "S1", 1, BuyerEnd::CheckedOut),
        ];
        let f1 = finals(&[("b1", "expired"), ("b5", "confirmed")]);
        let (counts1, owners1, failures1) = settle(&again, &f1);
        assert!(failures1.is_empty(), "{failures1:?}");
        assert_eq!((counts1.resold_seats, owners1["S1"].as_str()), (1, "b5"));
        assert_eq!((counts.abandoned, counts.too_late), (1, 1));
        assert_eq!(owners["S1"], "b3");
        assert!(!owners.contains_key("S3"));
        let rows = vec![
            ("S1".to_owned(), "booked".to_owned(), Some("b3".to_owned())),
            ("S2".to_owned(), "booked".to_owned(), Some("b2".to_owned())),
            ("S3".to_owned(), "available".to_owned(), None),
        ];
        let seats: Vec<String> = ["S1", "S2", "S3"].map(String::from).to_vec();
        let (booked, available, failures) = seat_rows_failures(&rows, &seats, &owners);
        assert_eq!((booked, available), (2, 1));
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn every_inconsistency_is_named() {
        // Sold twice; a checkout (200) that MySQL expired; a hold still held.
        let holds = [
            hold("b1", "S1", 1, BuyerEnd::CheckedOut),
            hold("b2", "S1", 2, BuyerEnd::CheckedOut),
            hold("b3", "S2", 1, BuyerEnd::CheckedOut),
            hold("b4", "S3", 1, BuyerEnd::Abandoned),
        ];
        let f = finals(&[
            ("b1", "confirmed"),
            ("b2", "confirmed"),
            ("b3", "expired"),
            ("b4", "held"),
        ]);
        let (_, _, failures) = settle(&holds, &f);
        let all = failures.join("\n");
        assert!(all.contains("S1 was checked out 2 times"), "{all}");
        // Held again after a checkout.
        let after = [
            hold("b1", "S1", 1, BuyerEnd::CheckedOut),
            hold("b2", "S1", 1, BuyerEnd::Abandoned),
        ];
        let (_, _, f2) = settle(&after, &finals(&[("b1", "confirmed"), ("b2", "expired")]));
        assert!(
            f2[0].contains("held again (booking b2) after booking b1"),
            "{f2:?}"
        );
        assert!(
            all.contains("b3 of u-b3 was checked out (200) but is expired"),
            "{all}"
        );
        assert!(all.contains("b4 of u-b4 is held"), "{all}");
        // A seat left held in MySQL, or booked by nobody's checkout.
        let owners = HashMap::from([("S1".to_owned(), "b1".to_owned())]);
        let rows = vec![
            ("S1".to_owned(), "booked".to_owned(), Some("b1".to_owned())),
            ("S2".to_owned(), "held".to_owned(), Some("b9".to_owned())),
        ];
        let seats: Vec<String> = ["S1", "S2"].map(String::from).to_vec();
        let (_, _, failures) = seat_rows_failures(&rows, &seats, &owners);
        assert!(failures[0].contains("seat S2 is held"), "{failures:?}");
    }
}

//! The sweeper: settles claims that hold seats but can no longer settle by the outbox.
//! One file because its scan, its judgement (a pure function, tested here) and its
//! metrics are one procedure.
//!
//! A claim settles when the reconciler reads its outbox entry. Two losses leave its
//! seats `pending:<bid>` with nothing on its way: the outbox entry is gone (an
//! eviction, a restart from older data, a hand at the keyboard) while the booking
//! record is still pending, or the record is gone too. Warm and audit repair leave
//! pending seats alone (their claim is presumed on its way), so without the sweeper
//! such seats stay unsellable for ever.
//!
//! Each tick (driven by [`Reconciler::run`] every `sweep_every`; tests call
//! [`Reconciler::sweep`]) walks, for every registered event of this database, a bounded
//! slice of the event's seats hash with `HSCAN` (about `sweep_batch` seats), the cursor
//! kept between ticks, and notes which claim holds each pending seat. When a pass over
//! the hash completes, every claim noted is judged ([`verdict`]) on what Redis holds
//! now (only seats still pending on it count):
//!
//! - its record is pending and younger than `claim_deadline + sweep_grace`: its outbox
//!   entry is most likely still on its way (or being retried by the reconciler, which
//!   gives up on it itself at the deadline). Never touched.
//! - its record is pending and older: the claim is settled as the reconciler settles a
//!   claim it gives up on ([`Reconciler::reject_claim`]'s path, `settle_all` with
//!   `deadline_exceeded`): under the seats' `FOR UPDATE` locks, Redis follows MySQL if
//!   MySQL has the booking (confirmed, cancelled, rejected), else the claim is rejected
//!   and its seats take MySQL's state.
//! - its record is missing: if MySQL has the booking, Redis follows MySQL (a confirmed
//!   booking is restored: `Reconciler::restore`); if not, the claim is rejected
//!   `lost_in_redis_failover` and recorded, through the same `settle_all`, whose
//!   decision (`decide`) already rejects a claim whose record Redis lost. That needs its
//!   owner, which only the record, the outbox entry or the owner's tally names: a claim
//!   whose entry is still in the outbox is left to the reconciler (which knows the
//!   owner); otherwise the event's tallies are searched (`SCAN`, again about
//!   `sweep_batch` keys per tick) for the claim's booking id. A claim whose owner cannot
//!   be found is rejected all the same, with an empty user id (no JWT can name one, so
//!   only the admin sees it): its seats matter more than its record.
//! - its record is settled (confirmed, rejected, cancelled) although a seat is still
//!   pending on it: not a state the scripts leave; left alone.
//!
//! Everything a resolution writes is written under the seats' locks by the code the
//! reconciler settles with, so a sweeper racing a reconciler (or another sweeper) on
//! the same claim cannot do anything twice: whichever comes second finds the booking
//! in MySQL and only follows it. A committed booking is never rolled back.
//!
//! Work per tick is bounded by `sweep_batch` (seats or keys read) per event, plus the
//! settling of the claims one completed pass found stuck, in transactions of
//! [`SETTLE_CHUNK`] claims. Each resolution is logged once and counted in
//! `seatgate_sweeper_seats_total{outcome}` (the seats it freed).

use std::collections::HashMap;
use std::time::Duration;

use super::{Claim, Reconciler, SettleError, Settled};
use crate::claims::ClaimRecord;
use crate::clock::unix_millis;
use crate::db;
use crate::domain::{BookingStatus, RejectReason, SeatState};
use crate::telemetry;

/// Most elements asked of one `HSCAN` or `SCAN` call: each call stays short, so claims
/// waiting behind it in Redis barely notice (an `HSCAN … COUNT 250` of a 100,000-seat
/// hash took about 0.3 ms of Redis time here; `COUNT 1000`, about 1 ms).
const SCAN_COUNT: usize = 250;
/// Claims settled per MySQL transaction.
const SETTLE_CHUNK: usize = 100;
/// An outbox longer than this is not searched for lost claims' entries: the
/// reconciler is behind, and those claims are judged again at the next pass.
const OUTBOX_LOOKUP_MAX: usize = 10_000;

/// What one sweep did, over every event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Seat states read.
    pub seats_scanned: usize,
    /// Events whose pass over their seats completed in this sweep.
    pub passes_completed: usize,
    /// Claims found holding seats, pending and young: left alone.
    pub young: usize,
    /// Claims settled by this sweep.
    pub settled: usize,
    /// Seats those claims still held.
    pub seats_freed: usize,
    /// Claims Redis lost whose owner is still being searched for.
    pub searching: usize,
}

/// The sweep of one event, kept between ticks.
#[derive(Debug, Default)]
pub(super) struct EventSweep {
    /// `HSCAN` cursor of the pass in progress (0: the next tick starts one).
    cursor: u64,
    /// Seats seen pending in this pass, by the booking holding them.
    seen: HashMap<String, Vec<String>>,
    /// Claims Redis lost and MySQL does not know, whose owner is being searched for.
    owners: Option<OwnerSearch>,
}

#[derive(Debug)]
struct OwnerSearch {
    /// `SCAN` cursor over the event's tallies (0 once the search is done).
    cursor: u64,
    /// Booking id → the seats still pending on it.
    lost: HashMap<String, Vec<String>>,
}

/// How the sweeper judges a claim that holds seats, from its record in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Pending and young: its outbox entry is presumed on its way. Left alone.
    Young,
    /// Pending past the deadline and grace: settled from MySQL, given up on
    /// (`deadline_exceeded`) if MySQL has no booking.
    Overdue { user: String, seats: Vec<String> },
    /// Redis has no record: settled from MySQL, rejected `lost_in_redis_failover` if
    /// MySQL has no booking.
    Lost,
    /// A record that is settled, or that cannot be read as a claim: left alone.
    Other,
}

/// Judges a claim holding `held` seats (see the module documentation); pure.
pub(super) fn verdict(
    record: Option<&ClaimRecord>,
    held: &[String],
    now_ms: u64,
    overdue_after: Duration,
) -> Verdict {
    let Some(record) = record else {
        return Verdict::Lost;
    };
    if record.status != Some(BookingStatus::Pending) {
        return Verdict::Other;
    }
    // claim.lua always writes created_ms; a pending record without it cannot tell its
    // age, and is judged as old rather than left holding seats for ever.
    let age_ms = record
        .created_ms
        .map_or(u64::MAX, |t| now_ms.saturating_sub(t));
    if u128::from(age_ms) <= overdue_after.as_millis() {
        return Verdict::Young;
    }
    match &record.user {
        Some(user) => Verdict::Overdue {
            user: user.clone(),
            seats: record.seats.clone().unwrap_or_else(|| held.to_vec()),
        },
        None => Verdict::Other,
    }
}

/// The `outcome` label of a settled claim: the reason it was rejected now, or the
/// status MySQL had and Redis follows.
fn outcome(settled: &Settled) -> &'static str {
    match settled {
        Settled::Confirmed => "confirmed",
        Settled::Held => "held",
        Settled::Rejected(reason) => reason.as_str(),
        Settled::AlreadySettled(Some(status)) => status.as_str(),
        Settled::AlreadySettled(None) => "unchanged",
    }
}

impl Reconciler {
    /// One sweep tick over every registered event of this database (see the module
    /// documentation). [`Reconciler::run`] calls it every `sweep_every`.
    pub async fn sweep(&self) -> anyhow::Result<SweepReport> {
        let events = self.ours(self.redis.registered_events().await?).await?;
        let mut sweeps = self.sweeps.lock().await;
        sweeps.retain(|event, _| events.contains(event));
        let mut report = SweepReport::default();
        for event in events {
            let sweep = sweeps.entry(event.clone()).or_default();
            self.sweep_event(&event, sweep, &mut report).await?;
            report.searching += sweep.owners.as_ref().map_or(0, |s| s.lost.len());
        }
        Ok(report)
    }

    /// One tick of one event: a step of the owner search if one is running, else a
    /// slice of the pass over the seats, and the judgement when the pass completes.
    async fn sweep_event(
        &self,
        event: &str,
        sweep: &mut EventSweep,
        report: &mut SweepReport,
    ) -> Result<(), SettleError> {
        if let Some(search) = &mut sweep.owners {
            if self.search_owners(event, search, report).await? {
                sweep.owners = None;
            }
            return Ok(());
        }
        let mut budget = self.config.sweep_batch.max(1);
        loop {
            let count = SCAN_COUNT.min(budget);
            let (next, pairs) = self.redis.scan_seats(event, sweep.cursor, count).await?;
            report.seats_scanned += pairs.len();
            budget = budget.saturating_sub(pairs.len().max(count));
            for (seat, text) in pairs {
                if let Some(SeatState::Pending(booking)) = SeatState::from_redis(&text) {
                    sweep.seen.entry(booking).or_default().push(seat);
                }
            }
            sweep.cursor = next;
            if next == 0 {
                break;
            }
            if budget == 0 {
                return Ok(());
            }
        }
        report.passes_completed += 1;
        let seen = std::mem::take(&mut sweep.seen);
        let lost = self.judge(event, seen, report).await?;
        if !lost.is_empty() {
            sweep.owners = Some(OwnerSearch { cursor: 0, lost });
        }
        Ok(())
    }

    /// Judges the claims a completed pass saw holding seats and settles the stuck ones
    /// that can be settled now; returns the lost claims whose owner must be searched
    /// for (booking id → seats still pending on it).
    async fn judge(
        &self,
        event: &str,
        mut seen: HashMap<String, Vec<String>>,
        report: &mut SweepReport,
    ) -> Result<HashMap<String, Vec<String>>, SettleError> {
        let overdue_after = self.config.claim_deadline + self.config.sweep_grace;
        let mut overdue = Vec::new();
        let mut lost: HashMap<String, Vec<String>> = HashMap::new();
        let bookings: Vec<String> = seen.keys().cloned().collect();
        for chunk in bookings.chunks(SETTLE_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let records = self.redis.claim_records(event, &ids).await?;
            // Only the seats still pending on each claim now count.
            let mut seats: Vec<String> = Vec::new();
            for id in &ids {
                let list = seen.get_mut(*id).expect("seen");
                list.sort_unstable();
                list.dedup();
                seats.extend(list.iter().cloned());
            }
            let texts = self.redis.seat_texts(event, &seats).await?;
            let now: HashMap<&str, Option<&str>> = seats
                .iter()
                .map(String::as_str)
                .zip(texts.iter().map(Option::as_deref))
                .collect();
            let now_ms = unix_millis();
            for (id, record) in ids.iter().zip(&records) {
                let pending = format!("pending:{id}");
                let held: Vec<String> = seen[*id]
                    .iter()
                    .filter(|seat| now.get(seat.as_str()) == Some(&Some(pending.as_str())))
                    .cloned()
                    .collect();
                if held.is_empty() {
                    continue; // settled meanwhile
                }
                match verdict(record.as_ref(), &held, now_ms, overdue_after) {
                    Verdict::Young => report.young += 1,
                    Verdict::Overdue { user, seats } => {
                        let claim = Claim {
                            event_id: event.to_owned(),
                            booking_id: id.to_string(),
                            user_id: user,
                            seats,
                            hold: None,
                        };
                        overdue.push((claim, held.len()));
                    }
                    Verdict::Lost => {
                        lost.insert(id.to_string(), held);
                    }
                    Verdict::Other => {
                        tracing::debug!(event.id = %event, booking.id = %id, "seats pending on a settled booking; left alone");
                    }
                }
            }
        }
        self.settle_stuck(overdue, Some(RejectReason::DeadlineExceeded), report)
            .await?;
        if lost.is_empty() {
            return Ok(lost);
        }

        // Lost claims MySQL has: Redis follows MySQL, with MySQL's owner and seats.
        let ids: Vec<&str> = lost.keys().map(String::as_str).collect();
        let mut conn = self.db.acquire().await?;
        let known = db::bookings::find_bookings(&mut conn, &ids).await?;
        drop(conn);
        let mut follow = Vec::new();
        for (id, row) in known {
            let Some(held) = lost.remove(&id) else {
                continue;
            };
            if row.event_id != event {
                // Booking ids are UUIDs: not a state anything makes. Left alone.
                tracing::error!(event.id = %event, booking.id = %id, "seats pending on a booking MySQL has in another event; left alone");
                continue;
            }
            let claim = Claim {
                event_id: row.event_id,
                booking_id: row.id,
                user_id: row.user_id,
                seats: row.seats,
                hold: None,
            };
            follow.push((claim, held.len()));
        }
        self.settle_stuck(follow, None, report).await?;

        // Lost claims still in the outbox: the reconciler settles them, owner known.
        match self.redis.outbox_bookings(event, OUTBOX_LOOKUP_MAX).await? {
            Some(queued) => lost.retain(|id, _| !queued.contains(id)),
            None => lost.clear(),
        }
        Ok(lost)
    }

    /// One step of the search for lost claims' owners in the event's tallies; settles
    /// the claims whose owner turned up and, once the search is done, the rest without
    /// one. Returns true when the search is done.
    async fn search_owners(
        &self,
        event: &str,
        search: &mut OwnerSearch,
        report: &mut SweepReport,
    ) -> Result<bool, SettleError> {
        let mut budget = self.config.sweep_batch.max(1);
        let mut owners: HashMap<String, String> = HashMap::new();
        let done = loop {
            let ids: Vec<&str> = search
                .lost
                .keys()
                .filter(|id| !owners.contains_key(*id))
                .map(String::as_str)
                .collect();
            let count = SCAN_COUNT.min(budget);
            let (next, found) = self
                .redis
                .find_owners(event, search.cursor, count, &ids)
                .await?;
            owners.extend(found.into_iter().map(|(user, id)| (id, user)));
            search.cursor = next;
            budget = budget.saturating_sub(count);
            if next == 0 || owners.len() == search.lost.len() {
                break true;
            }
            if budget == 0 {
                break false;
            }
        };
        let mut claims = Vec::new();
        for (id, user) in owners {
            if let Some(seats) = search.lost.remove(&id) {
                claims.push((claim_of(event, id, user, seats.clone()), seats.len()));
            }
        }
        if done {
            for (id, seats) in search.lost.drain() {
                tracing::warn!(event.id = %event, booking.id = %id, "no owner found for a claim Redis lost; rejecting it without one");
                claims.push((
                    claim_of(event, id, String::new(), seats.clone()),
                    seats.len(),
                ));
            }
        }
        self.settle_stuck(claims, None, report).await?;
        Ok(done)
    }

    /// Settles stuck claims (each with the number of seats still pending on it) through
    /// the settle transaction, in chunks; logs and counts each resolution.
    async fn settle_stuck(
        &self,
        claims: Vec<(Claim, usize)>,
        give_up: Option<RejectReason>,
        report: &mut SweepReport,
    ) -> Result<(), SettleError> {
        for chunk in claims.chunks(SETTLE_CHUNK) {
            let batch: Vec<Claim> = chunk.iter().map(|(c, _)| c.clone()).collect();
            let settled = self.settle_all(&batch, give_up).await?;
            for ((claim, held), settled) in chunk.iter().zip(settled) {
                let outcome = outcome(&settled);
                telemetry::sweeper_seats(outcome, *held);
                report.settled += 1;
                report.seats_freed += held;
                tracing::warn!(
                    event.id = %claim.event_id, booking.id = %claim.booking_id, seats = held, outcome,
                    "sweeper settled a claim stuck on its seats"
                );
            }
        }
        Ok(())
    }
}

fn claim_of(event: &str, booking_id: String, user_id: String, seats: Vec<String>) -> Claim {
    Claim {
        event_id: event.to_owned(),
        booking_id,
        user_id,
        seats,
        hold: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const NOW: u64 = 1_767_225_600_000;

    fn record(status: Option<BookingStatus>, created_ms: Option<u64>) -> ClaimRecord {
        ClaimRecord {
            status,
            user: Some("alice".into()),
            seats: Some(vec!["A1".into(), "A2".into()]),
            created_ms,
        }
    }

    fn held() -> Vec<String> {
        vec!["A1".into()]
    }

    fn judge(record: Option<&ClaimRecord>) -> Verdict {
        verdict(record, &held(), NOW, 5 * MINUTE)
    }

    #[test]
    fn a_young_pending_claim_is_left_alone() {
        for age in [0, 1, 5 * 60_000] {
            let r = record(Some(BookingStatus::Pending), Some(NOW - age));
            assert_eq!(judge(Some(&r)), Verdict::Young, "{age} ms old");
        }
        // A clock that stepped back makes a claim look younger, never older.
        let r = record(Some(BookingStatus::Pending), Some(NOW + 60_000));
        assert_eq!(judge(Some(&r)), Verdict::Young);
    }

    #[test]
    fn a_pending_claim_past_the_deadline_and_grace_is_overdue_with_all_its_seats() {
        let overdue = Verdict::Overdue {
            user: "alice".into(),
            seats: vec!["A1".into(), "A2".into()],
        };
        let r = record(Some(BookingStatus::Pending), Some(NOW - 5 * 60_000 - 1));
        assert_eq!(judge(Some(&r)), overdue);
        // No age at all: not left holding seats for ever.
        let r = record(Some(BookingStatus::Pending), None);
        assert_eq!(judge(Some(&r)), overdue);
        // Seats unreadable: the seats seen held.
        let mut r = record(Some(BookingStatus::Pending), None);
        r.seats = None;
        let want = Verdict::Overdue {
            user: "alice".into(),
            seats: held(),
        };
        assert_eq!(judge(Some(&r)), want);
    }

    #[test]
    fn a_claim_without_a_record_is_lost() {
        assert_eq!(judge(None), Verdict::Lost);
    }

    #[test]
    fn settled_or_unreadable_records_are_left_alone() {
        for status in [
            Some(BookingStatus::Confirmed),
            Some(BookingStatus::Rejected),
            Some(BookingStatus::Cancelled),
            None,
        ] {
            let r = record(status, Some(0));
            assert_eq!(judge(Some(&r)), Verdict::Other, "{status:?}");
        }
        let mut r = record(Some(BookingStatus::Pending), Some(0));
        r.user = None;
        assert_eq!(judge(Some(&r)), Verdict::Other);
    }

    #[test]
    fn outcomes_are_the_reason_or_the_status_followed() {
        assert_eq!(
            outcome(&Settled::Rejected(RejectReason::LostInRedisFailover)),
            "lost_in_redis_failover"
        );
        assert_eq!(
            outcome(&Settled::Rejected(RejectReason::DeadlineExceeded)),
            "deadline_exceeded"
        );
        for status in [
            BookingStatus::Confirmed,
            BookingStatus::Cancelled,
            BookingStatus::Rejected,
        ] {
            assert_eq!(
                outcome(&Settled::AlreadySettled(Some(status))),
                status.as_str()
            );
        }
    }
}

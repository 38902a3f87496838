//! Settling claims: the MySQL transaction that locks the claims' seat rows, reads
//! what the decision needs under those locks (the booking rows MySQL already has,
//! Redis's status of each claim), lets `decide` decide each claim, writes the
//! bookings, tells Redis of rejections while the locks are held, commits, and then
//! sends Redis the follow-ups (confirmations, cancellations). The at-least-once
//! protocol is documented in `reconciler` (the parent module), the lock order in
//! `db::bookings`.

use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

use super::decide::{decide, Decision, Follow};
use super::outbox::Entry;
use super::{Claim, Reconciler, SettleError, Settled};
use crate::backoff::backoff;
use crate::claims::Restore;
use crate::db::{self, bookings::BookingRow};
use crate::domain::{BookingStatus, RejectReason, SeatState};
use crate::telemetry;

/// Redis follow-ups (`confirm.lua` and its notification) of one batch in flight at
/// once, after its COMMIT: Redis calls only, pipelined on one multiplexed connection, so
/// many can be in flight without holding anything else.
const FOLLOW_UPS_IN_FLIGHT: usize = 256;

impl Reconciler {
    /// Settles a batch of entries: all decodable claims in one MySQL transaction
    /// ([`Reconciler::settle_batch`]) when batching is on and there is more than one;
    /// if that fails, each claim on its own ([`Reconciler::settle`]), so that one bad
    /// claim cannot hold up the others and each failure is judged by itself.
    pub(super) async fn settle_entries(
        &self,
        entries: Vec<Entry>,
    ) -> Vec<(Entry, Result<Settled, SettleError>)> {
        let claims: Vec<Claim> = entries
            .iter()
            .filter_map(|e| e.claim.as_ref().ok().cloned())
            .collect();
        if self.config.batched && claims.len() > 1 {
            match self.settle_batch(&claims).await {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    return entries
                        .into_iter()
                        .map(|entry| {
                            let outcome = match &entry.claim {
                                Ok(_) => Ok(outcomes.next().expect("one outcome per claim")),
                                Err(_) => Ok(Settled::AlreadySettled(None)),
                            };
                            (entry, outcome)
                        })
                        .collect();
                }
                Err(err) => {
                    tracing::warn!(claims = claims.len(), error = %err, "batch not settled; settling its claims one by one");
                }
            }
        }
        futures::stream::iter(entries)
            .map(|entry| async move {
                let outcome = match &entry.claim {
                    Ok(claim) => self.settle(claim).await,
                    Err(_) => Ok(Settled::AlreadySettled(None)),
                };
                (entry, outcome)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await
    }

    /// Settles many claims in one MySQL transaction: the same decisions as
    /// [`Reconciler::settle`], claim by claim in stream order, with one round trip per
    /// kind of statement instead of per claim. Every seat row of the batch is locked
    /// `FOR UPDATE` in (event, seat) order first, so batches and single settles cannot
    /// deadlock each other. A conflict rejects only the claim concerned. Returns one
    /// outcome per claim, in order; any error fails the whole batch (nothing of it is
    /// committed) and the caller falls back to single settles.
    pub async fn settle_batch(&self, claims: &[Claim]) -> Result<Vec<Settled>, SettleError> {
        self.settle_all(claims, None).await
    }

    /// Persists one claim and settles it in Redis: a batch of one. Idempotent.
    pub async fn settle(&self, claim: &Claim) -> Result<Settled, SettleError> {
        self.settle_one(claim, None).await
    }

    /// Gives up on a claim that cannot be persisted (a permanent database error, the
    /// claim deadline, an undecodable entry): rejects it for `reason` and gives Redis
    /// MySQL's state for its seats. The rejection is recorded in MySQL under the seats'
    /// locks, so no later delivery can persist it; and if MySQL turns out to have the
    /// booking after all (a COMMIT whose answer was lost), it is confirmed instead: a
    /// committed booking is never rolled back. Needs MySQL, like `settle`.
    pub(crate) async fn reject_claim(
        &self,
        claim: &Claim,
        reason: RejectReason,
    ) -> Result<Settled, SettleError> {
        self.settle_one(claim, Some(reason)).await
    }

    async fn settle_one(
        &self,
        claim: &Claim,
        give_up: Option<RejectReason>,
    ) -> Result<Settled, SettleError> {
        let mut settled = self
            .settle_all(std::slice::from_ref(claim), give_up)
            .await?;
        Ok(settled.pop().expect("one outcome per claim"))
    }

    /// One settle attempt, bounded in time: a stalled connection (the network, or a
    /// server that stopped answering) must not hang the reconciler. On timeout the
    /// transaction is dropped, so MySQL rolls it back, and the entries are retried.
    /// With `give_up`, claims that could be persisted are rejected for that reason.
    /// Waits for one of the reconciler's MySQL permits first (every event's settles
    /// share them, see `worker`); the wait does not count against the time bound.
    pub(super) async fn settle_all(
        &self,
        claims: &[Claim],
        give_up: Option<RejectReason>,
    ) -> Result<Vec<Settled>, SettleError> {
        let _permit = self
            .mysql
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let limit = self.config.settle_timeout;
        tokio::time::timeout(limit, self.settle_all_unbounded(claims, give_up))
            .await
            .unwrap_or(Err(SettleError::Timeout(limit)))
    }

    /// The steps, for every claim in stream order:
    /// 1. lock the seat rows (done for the whole batch first);
    /// 2. if MySQL already knows the booking, Redis follows MySQL;
    /// 3. if Redis holds the claim as settled, there is nothing to persist (the seat
    ///    locks serialise this read with every other settle of the booking); if Redis
    ///    lost its record, reject it (`lost_in_redis_failover`) as in 4;
    /// 4. if a seat is missing or booked by another booking, reject (recorded in
    ///    MySQL, and in Redis while the locks are held);
    /// 5. otherwise book; after the COMMIT, confirm in Redis.
    ///
    /// Steps 2 to 5 are decided by [`decide::decide`] from what was read under the
    /// locks; this function does the reading and carries the decisions out.
    async fn settle_all_unbounded(
        &self,
        claims: &[Claim],
        give_up: Option<RejectReason>,
    ) -> Result<Vec<Settled>, SettleError> {
        // Seats by event, both sorted: the global lock order.
        let mut by_event: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for claim in claims {
            by_event
                .entry(claim.event_id.as_str())
                .or_default()
                .extend(claim.seats.iter().cloned());
        }
        let mut tx = self.db.begin().await?;
        // (event, seat) → (status, booking id) as MySQL has it, updated as the batch
        // decides.
        let mut seats: HashMap<(String, String), db::bookings::LockedSeat> = HashMap::new();
        for (event_id, list) in &mut by_event {
            list.sort_unstable();
            list.dedup();
            for chunk in list.chunks(1000) {
                for locked in db::bookings::lock_seats(&mut tx, event_id, chunk).await? {
                    seats.insert((event_id.to_string(), locked.seat.clone()), locked);
                }
            }
        }
        let ids: Vec<&str> = claims.iter().map(|c| c.booking_id.as_str()).collect();
        let known = db::bookings::find_bookings(&mut tx, &ids).await?;
        let in_redis = self
            .redis
            .booking_statuses(
                claims
                    .iter()
                    .map(|c| (c.event_id.as_str(), c.booking_id.as_str())),
            )
            .await?;

        let mut outcomes = Vec::with_capacity(claims.len());
        let mut after = Vec::with_capacity(claims.len());
        let mut rows = Vec::new();
        let mut to_book: Vec<&Claim> = Vec::new();
        let mut to_hold: Vec<&Claim> = Vec::new();
        // (index of the claim, claim, reason) of every rejection to tell Redis.
        let mut rejects: Vec<(usize, &Claim, RejectReason)> = Vec::new();
        for (i, (claim, redis_status)) in claims.iter().zip(in_redis).enumerate() {
            let key = |seat: &String| (claim.event_id.clone(), seat.clone());
            let locked: Vec<Option<&db::bookings::LockedSeat>> = claim
                .seats
                .iter()
                .map(|seat| seats.get(&key(seat)))
                .collect();
            let decision = decide(
                claim,
                known.get(claim.booking_id.as_str()),
                redis_status,
                &locked,
                give_up,
            );
            match decision {
                Decision::FollowMysql(follow) => {
                    match follow {
                        Follow::Confirm => after.push(After::Confirm),
                        Follow::Hold => {
                            let row = &known[claim.booking_id.as_str()];
                            after.push(match row.expires_ms {
                                Some(at) => After::Hold(at),
                                // Not a row anything writes (a hold has its deadline).
                                None => After::Nothing,
                            })
                        }
                        Follow::Cancel => after.push(After::Cancel),
                        Follow::Expire => after.push(After::Expire),
                        Follow::Reject(reason) => {
                            rejects.push((i, claim, reason));
                            after.push(After::Nothing);
                        }
                    }
                    outcomes.push(None);
                }
                Decision::AlreadySettled(redis_status) => {
                    outcomes.push(Some(Settled::AlreadySettled(Some(redis_status))));
                    after.push(After::Nothing);
                }
                Decision::Reject { reason, record } => {
                    if record {
                        rows.push(row(claim, BookingStatus::Rejected, Some(reason)));
                    }
                    rejects.push((i, claim, reason));
                    outcomes.push(Some(Settled::Rejected(reason)));
                    after.push(After::Nothing);
                }
                Decision::Persist => {
                    // Held on an event with holds, else booked; later claims of the
                    // batch see these seats taken.
                    let (status, seat_status) = match claim.hold {
                        Some(_) => (BookingStatus::Held, "held"),
                        None => (BookingStatus::Confirmed, "booked"),
                    };
                    for seat in &claim.seats {
                        if let Some(l) = seats.get_mut(&key(seat)) {
                            l.status = seat_status.into();
                            l.booking_id = Some(claim.booking_id.clone());
                        }
                    }
                    rows.push(row(claim, status, None));
                    match claim.hold {
                        Some(hold) => {
                            to_hold.push(claim);
                            outcomes.push(Some(Settled::Held));
                            after.push(After::Hold(hold.expires_ms));
                        }
                        None => {
                            to_book.push(claim);
                            outcomes.push(Some(Settled::Confirmed));
                            after.push(After::Confirm);
                        }
                    }
                }
            }
        }

        db::bookings::insert_bookings(&mut tx, &rows).await?;
        db::bookings::book_seats_of(&mut tx, &seats_of(&to_book), "booked").await?;
        db::bookings::book_seats_of(&mut tx, &seats_of(&to_hold), "held").await?;
        // Rejections go to Redis while the locks are held (see `settle`).
        for &(i, claim, reason) in &rejects {
            let locked: Vec<db::bookings::LockedSeat> = claim
                .seats
                .iter()
                .filter_map(|seat| seats.get(&(claim.event_id.clone(), seat.clone())).cloned())
                .collect();
            let status = self.reject_in_redis(claim, reason, &locked).await?;
            // A rejection MySQL already had: report what Redis now says.
            outcomes[i].get_or_insert(Settled::AlreadySettled(status));
        }
        tx.commit().await?;
        for &(i, claim, reason) in &rejects {
            if outcomes[i] != Some(Settled::Rejected(reason)) {
                continue;
            }
            if reason == RejectReason::LostInRedisFailover {
                tracing::warn!(event.id = %claim.event_id, booking.id = %claim.booking_id, reason = reason.as_str(), "claim rejected: Redis lost its booking record");
            } else {
                tracing::info!(event.id = %claim.event_id, booking.id = %claim.booking_id, reason = reason.as_str(), "claim rejected");
            }
        }

        // After the COMMIT: Redis learns of the confirmations and cancellations.
        let mut results = Vec::with_capacity(claims.len());
        let followups: Vec<_> = claims
            .iter()
            .zip(after)
            .zip(outcomes)
            .map(|((claim, after), outcome)| self.follow_up(claim, after, outcome))
            .collect();
        for settled in futures::stream::iter(followups)
            .buffered(FOLLOW_UPS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
        {
            results.push(settled?);
        }
        Ok(results)
    }

    /// What a batch does in Redis for one claim after its COMMIT.
    async fn follow_up(
        &self,
        claim: &Claim,
        after: After,
        decided: Option<Settled>,
    ) -> Result<Settled, SettleError> {
        let status = match after {
            After::Confirm => self.confirm(claim, None).await?,
            After::Hold(expires_ms) => self.confirm(claim, Some(expires_ms)).await?,
            After::Expire => {
                self.redis
                    .expire(
                        &claim.event_id,
                        &claim.booking_id,
                        &claim.user_id,
                        &claim.seats,
                    )
                    .await?
            }
            After::Cancel => {
                self.redis
                    .cancel(
                        &claim.event_id,
                        &claim.booking_id,
                        &claim.user_id,
                        &claim.seats,
                    )
                    .await?
            }
            After::Nothing => None,
        };
        Ok(decided.unwrap_or(Settled::AlreadySettled(status)))
    }

    /// `reject.lua` with MySQL's state of the claim's seats, read under the locks the
    /// caller still holds.
    async fn reject_in_redis(
        &self,
        claim: &Claim,
        reason: RejectReason,
        locked: &[db::bookings::LockedSeat],
    ) -> Result<Option<BookingStatus>, SettleError> {
        let states = truth(&claim.seats, locked);
        Ok(self
            .redis
            .reject(
                &claim.event_id,
                &claim.booking_id,
                &claim.user_id,
                reason,
                &states,
            )
            .await?)
    }

    /// `confirm.lua`, retried: after a COMMIT the booking is confirmed (or, with
    /// `hold`, held until then) for good, and Redis must learn it. If Redis stays
    /// unreachable the error goes up, the entry stays pending, and its redelivery
    /// confirms through step 2 of `settle`. If Redis lost the booking's record, MySQL's
    /// truth is written back ([`Reconciler::restore`]).
    async fn confirm(
        &self,
        claim: &Claim,
        hold: Option<u64>,
    ) -> Result<Option<BookingStatus>, SettleError> {
        let mut attempt = 0;
        loop {
            let (event, booking, user) = (&claim.event_id, &claim.booking_id, &claim.user_id);
            let promoted = match hold {
                Some(at) => {
                    self.redis
                        .hold(event, booking, user, at, &claim.seats)
                        .await
                }
                None => self.redis.confirm(event, booking, user, &claim.seats).await,
            };
            match promoted {
                Ok(None) => return self.restore(claim).await,
                Ok(status) => return Ok(status),
                Err(err) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(booking.id = %claim.booking_id, error = %err, "confirm failed; retrying");
                    tokio::time::sleep(backoff(attempt, Duration::from_millis(500))).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// A booking MySQL committed whose record Redis no longer has (lost after the
    /// claim): writes MySQL's truth into Redis, its seats booked, its record, its
    /// owner's tally. Done under the seats' `FOR UPDATE` locks, from the booking row
    /// read under them: a cancellation that committed since the confirm's COMMIT (its
    /// `cancel.lua`, finding no record, freed the seats) shows there as `cancelled`,
    /// and nothing is restored; one that comes after waits for the locks and then
    /// frees the restored seats. Returns the booking's status as Redis has it after.
    async fn restore(&self, claim: &Claim) -> Result<Option<BookingStatus>, SettleError> {
        let limit = self.config.settle_timeout;
        tokio::time::timeout(limit, self.restore_unbounded(claim))
            .await
            .unwrap_or(Err(SettleError::Timeout(limit)))
    }

    async fn restore_unbounded(&self, claim: &Claim) -> Result<Option<BookingStatus>, SettleError> {
        let mut seats = claim.seats.clone();
        seats.sort_unstable();
        seats.dedup();
        let mut tx = self.db.begin().await?;
        let locked = db::bookings::lock_seats(&mut tx, &claim.event_id, &seats).await?;
        let row = db::bookings::find_booking(&mut *tx, &claim.booking_id).await?;
        let row = match row {
            Some(row) if matches!(row.status, BookingStatus::Confirmed | BookingStatus::Held) => {
                row
            }
            // Cancelled since: its own cancel.lua gave the seats back.
            Some(row) => return Ok(Some(row.status)),
            None => return Ok(None),
        };
        // MySQL's truth: the seats the booking holds under the locks (all of them,
        // for a confirmed booking).
        let held: Vec<String> = row
            .seats
            .iter()
            .filter(|seat| {
                locked
                    .iter()
                    .any(|l| {
                        &l.seat == *seat
                            && matches!(l.state(), SeatState::Booked(b) | SeatState::Held(b) if b == row.id)
                    })
            })
            .cloned()
            .collect();
        if held.is_empty() {
            // Not a state MySQL can be in (a confirmed booking holds its seats).
            tracing::error!(event.id = %claim.event_id, booking.id = %row.id, "a confirmed booking holds none of its seats in MySQL; not restored");
            return Ok(None);
        }
        let restored = self
            .redis
            .restore(
                &claim.event_id,
                &row.id,
                &row.user_id,
                row.expires_ms.filter(|_| row.status == BookingStatus::Held),
                &held,
            )
            .await?;
        tx.commit().await?;
        Ok(match restored {
            Restore::Restored => {
                tracing::warn!(
                    event.id = %claim.event_id, booking.id = %row.id, seats = held.len(),
                    "Redis had lost a confirmed booking's record; restored it from MySQL"
                );
                telemetry::booking_restored();
                Some(row.status)
            }
            Restore::Present(status) => Some(status),
            Restore::EventMissing => None,
        })
    }
}

/// What a batch still has to tell Redis about a claim once MySQL has committed.
enum After {
    Confirm,
    /// Held until this deadline (ms since the epoch).
    Hold(u64),
    Cancel,
    Expire,
    Nothing,
}

/// MySQL's state of each seat of the claim; a seat MySQL does not have is given back
/// as available.
fn truth(seats: &[String], locked: &[db::bookings::LockedSeat]) -> Vec<(String, SeatState)> {
    seats
        .iter()
        .map(|seat| {
            let state = locked
                .iter()
                .find(|l| &l.seat == seat)
                .map(|l| l.state())
                .unwrap_or(SeatState::Available);
            (seat.clone(), state)
        })
        .collect()
}

fn row(claim: &Claim, status: BookingStatus, reason: Option<RejectReason>) -> BookingRow {
    BookingRow {
        id: claim.booking_id.clone(),
        event_id: claim.event_id.clone(),
        user_id: claim.user_id.clone(),
        status,
        seats: claim.seats.clone(),
        reason: reason.map(|r| r.as_str().to_owned()),
        claimed_ms: claim.hold.map(|h| h.claimed_ms),
        expires_ms: claim.hold.map(|h| h.expires_ms),
    }
}

/// `(event, booking id, seats)` of each claim, as `book_seats_of` takes them.
fn seats_of<'c>(claims: &[&'c Claim]) -> Vec<(&'c str, &'c str, &'c [String])> {
    claims
        .iter()
        .map(|c| {
            (
                c.event_id.as_str(),
                c.booking_id.as_str(),
                c.seats.as_slice(),
            )
        })
        .collect()
}

//! Audit: compare an event's seats in Redis and MySQL, and optionally repair Redis.

use serde::Serialize;
use sqlx::MySqlConnection;
use sqlx::MySqlPool;
use std::collections::{BTreeSet, HashMap};

use super::{OpError, WARM_CHUNK};
use crate::claims::RedisStore;
use crate::db;
use crate::domain::{BookingStatus, SeatState};

/// One seat whose states differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Divergence {
    pub seat: String,
    /// Redis's state (`available`, `booked:<bid>`, or `missing`).
    pub redis: String,
    /// MySQL's state (`available`, `booked:<bid>`, or `missing`).
    pub mysql: String,
}

/// What an audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub divergences: Vec<Divergence>,
    /// True when Redis was repaired: the divergences, and any seat out of its place in
    /// the order list (which an event warmed before that list existed lacks).
    pub repaired: bool,
}

const MISSING: &str = "missing";

/// Audits the event. A seat held by a pending claim is not a divergence: its claim is
/// on its way to MySQL. With `repair`, Redis takes MySQL's state for every divergent
/// seat (pending claims untouched) and its counters are recounted; seats missing from
/// their place in Redis's order list are put back in it too (not a divergence: no state
/// differs); and a booking that Redis still shows holding seats but MySQL has
/// cancelled is cancelled in Redis too, record and owner's tally with its seats (see
/// [`finish_cancellations`]). A lock conflict is retried as a whole transaction (`db::retry`): the
/// audit reads both sides again, and a repair already made finds nothing left to do.
pub async fn audit(
    redis: &RedisStore,
    pool: &MySqlPool,
    event_id: &str,
    repair: bool,
) -> Result<AuditReport, OpError> {
    let event = db::events::find_event(pool, event_id)
        .await?
        .ok_or(OpError::EventNotFound)?;
    db::retry::retry_lock_conflicts("audit", || {
        audit_in_one_transaction(redis, pool, &event, repair)
    })
    .await
}

/// One attempt at an audit, under the inventory's share locks.
async fn audit_in_one_transaction(
    redis: &RedisStore,
    pool: &MySqlPool,
    event: &db::events::EventRow,
    repair: bool,
) -> Result<AuditReport, OpError> {
    let event_id = event.id.as_str();
    // Share locks keep MySQL still while Redis is read (and repaired), so a booking
    // committing in between cannot show up as a false divergence, nor be undone by
    // the repair.
    let mut tx = pool.begin().await?;
    let inventory = db::events::lock_inventory(&mut tx, event_id).await?;
    let mut in_redis: HashMap<String, (SeatState, i64)> = redis
        .seat_states(event_id)
        .await?
        .into_iter()
        .map(|s| (s.seat, (s.state, s.ordinal)))
        .collect();

    let mut divergences = Vec::new();
    // In ordinal order (the inventory's), as `warm.lua` wants them.
    let mut repairs = Vec::new();
    // Bookings that Redis shows holding a seat MySQL says they do not hold.
    let mut stale_bookings = BTreeSet::new();
    for seat in &inventory {
        let (state, ordinal) = match in_redis.remove(&seat.seat) {
            Some((state, ordinal)) => (Some(state), Some(ordinal)),
            None => (None, None),
        };
        // Out of its place in Redis's order list (which lists seats in best-available
        // order): not a divergence of state, but repaired with the rest (`warm.lua`
        // places the seat and leaves a pending seat's state alone).
        let misplaced = ordinal != Some(seat.ordinal);
        let pending = matches!(state, Some(SeatState::Pending(_)));
        if !pending && state.as_ref() != Some(&seat.state) {
            if let Some(SeatState::Booked(bid) | SeatState::Held(bid)) = &state {
                stale_bookings.insert(bid.clone());
            }
            divergences.push(Divergence {
                seat: seat.seat.clone(),
                redis: state.map_or_else(|| MISSING.to_owned(), |s| s.to_redis()),
                mysql: seat.state.to_redis(),
            });
            repairs.push((seat.seat.clone(), seat.ordinal, seat.state.clone()));
        } else if misplaced {
            repairs.push((seat.seat.clone(), seat.ordinal, seat.state.clone()));
        }
    }
    // Seats Redis has and MySQL does not: reported, not deleted (a human should look).
    let mut extra: Vec<_> = in_redis.into_iter().collect();
    extra.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (seat, (state, _)) in extra {
        divergences.push(Divergence {
            seat,
            redis: state.to_redis(),
            mysql: MISSING.to_owned(),
        });
    }

    let repaired = repair && !repairs.is_empty();
    if repaired {
        for chunk in repairs.chunks(WARM_CHUNK) {
            redis.warm_chunk(event_id, chunk).await?;
        }
        // Seats first, then the bookings: seats go straight from their stale booking to
        // MySQL's state, never through `available` on the way to another booking.
        finish_cancellations(redis, &mut tx, event_id, &stale_bookings).await?;
        redis
            .warm_finish(
                event_id,
                &event.name,
                event.per_user_limit,
                event.seats_total,
                false,
                event.hold_seconds,
            )
            .await?;
        tracing::warn!(event.id = %event_id, seats = repairs.len(), "audit repaired Redis from MySQL");
    }
    tx.commit().await?;
    Ok(AuditReport {
        divergences,
        repaired,
    })
}

/// Finishes in Redis the cancellations (and expiries) MySQL committed but Redis never
/// heard of.
///
/// Cancel commits in MySQL first and runs `cancel.lua` second; a crash in between
/// leaves Redis with the booking `confirmed`, its seats booked and its seats still
/// counted against the owner's per-user limit. The seat states alone are repaired like
/// any divergence; for each booking among `bookings` (those Redis showed on a divergent
/// seat) that MySQL has cancelled, `cancel.lua` does the rest, as the cancel would
/// have: the record says `cancelled` and the owner's tally forgets the booking. Read
/// under the caller's share locks on the seats, which every writer of a booking row
/// must lock first, so MySQL's status cannot change meanwhile. Any other status is
/// left alone: the seat repair already put Redis's seats in line with MySQL. Warm
/// calls it too, for the bookings on the seats it overwrites.
pub(super) async fn finish_cancellations(
    redis: &RedisStore,
    conn: &mut MySqlConnection,
    event_id: &str,
    bookings: &BTreeSet<String>,
) -> Result<(), OpError> {
    for booking_id in bookings {
        let Some(row) = db::bookings::find_booking(&mut *conn, booking_id).await? else {
            continue;
        };
        if row.event_id != event_id {
            continue;
        }
        match row.status {
            BookingStatus::Cancelled => {
                redis
                    .cancel(event_id, booking_id, &row.user_id, &row.seats)
                    .await?
            }
            BookingStatus::Expired => {
                redis
                    .expire(event_id, booking_id, &row.user_id, &row.seats)
                    .await?
            }
            _ => continue,
        };
        tracing::warn!(event.id = %event_id, booking.id = %booking_id,
            "audit finished a cancellation Redis had missed");
    }
    Ok(())
}

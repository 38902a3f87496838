//! Cancel: give a booking's seats back, in MySQL first and then in Redis.

use sqlx::MySqlPool;

use super::OpError;
use crate::claims::RedisStore;
use crate::db::{self, bookings::BookingRow};
use crate::domain::{Booking, BookingStatus, RejectReason};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester<'a> {
    Admin,
    User(&'a str),
}

impl Requester<'_> {
    /// True when this requester may see and cancel `booking`.
    pub(crate) fn may_access(&self, booking: &Booking) -> bool {
        match self {
            Requester::Admin => true,
            Requester::User(user) => booking.user_id == *user,
        }
    }
}

/// Finds a booking of the event for `requester`: Redis's record (which has pending
/// bookings and current statuses), else MySQL's (which outlives a Redis loss), else,
/// for a booking id minted before Redis last lost the event's claims, the news that
/// it was lost ([`lost_claim`]).
pub async fn find(
    redis: &RedisStore,
    pool: &MySqlPool,
    event_id: &str,
    booking_id: &str,
    requester: &Requester<'_>,
) -> Result<Booking, OpError> {
    let booking = match redis.booking(event_id, booking_id).await? {
        Some(b) => Some(b),
        None => db::bookings::find_booking(pool, booking_id)
            .await?
            .filter(|row| row.event_id == event_id)
            .map(BookingRow::into_booking),
    };
    let booking = match booking {
        Some(b) => Some(b),
        None => lost_claim(
            redis.lost_before(event_id).await?,
            event_id,
            booking_id,
            requester,
        ),
    };
    booking
        .filter(|b| requester.may_access(b))
        .ok_or(OpError::BookingNotFound)
}

/// A booking that neither store knows, whose id (a UUID v7, which carries the time it
/// was made) is older than the moment Redis was found to have lost the event's claims
/// (`lost_before_ms`, written by the fence keeper's rebuild): it was acknowledged by
/// a Redis that then lost it, so its owner learns it was rejected
/// (`lost_in_redis_failover`) instead of a 404 for an id the gateway handed out. Who
/// owned it is lost with it: it is shown to the user who asks, and to the admin.
fn lost_claim(
    lost_before_ms: i64,
    event_id: &str,
    booking_id: &str,
    requester: &Requester<'_>,
) -> Option<Booking> {
    let id = uuid::Uuid::parse_str(booking_id).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let minted_ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
    if id.get_version_num() != 7 || minted_ms >= lost_before_ms {
        return None;
    }
    Some(Booking {
        booking_id: booking_id.to_owned(),
        event_id: event_id.to_owned(),
        user_id: match requester {
            Requester::User(user) => (*user).to_owned(),
            Requester::Admin => String::new(),
        },
        seats: Vec::new(),
        status: BookingStatus::Rejected,
        reason: Some(RejectReason::LostInRedisFailover.as_str().to_owned()),
        expires_at: None,
        attendees: None,
    })
}

/// Cancels `booking`, as [`find`] gave it to its requester. Idempotent.
///
/// MySQL goes first, under the seats' `FOR UPDATE` locks: a confirmed booking becomes
/// `cancelled` and frees its seats; a booking MySQL has not seen yet (still pending)
/// gets a `cancelled` tombstone, so the reconciler, which takes the same locks, never
/// persists it afterwards. Only after the COMMIT does `cancel.lua` free the seats in
/// Redis, so Redis never offers a seat MySQL still has booked. If the process dies in
/// between, a retried DELETE (or the reconciler, which sees the tombstone, or an audit
/// repair, which sees the cancelled booking) finishes the Redis side. A lock conflict in
/// the MySQL part is retried as a whole transaction (`db::retry`).
pub async fn cancel(
    redis: &RedisStore,
    pool: &MySqlPool,
    mut booking: Booking,
) -> Result<Booking, OpError> {
    if booking.status == BookingStatus::Rejected {
        return Err(OpError::BookingRejected);
    }
    let event_id = booking.event_id.as_str();
    let newly_cancelled =
        db::retry::retry_lock_conflicts("cancel", || cancel_in_mysql(pool, event_id, &booking))
            .await?;
    let newly_cancelled = match newly_cancelled {
        Some(newly) => newly,
        None => {
            // The hold expired before: nothing to cancel. Redis follows MySQL (it may
            // not have heard yet), and the answer says how the booking ended.
            redis
                .expire(
                    event_id,
                    &booking.booking_id,
                    &booking.user_id,
                    &booking.seats,
                )
                .await?;
            booking.status = BookingStatus::Expired;
            booking.reason = None;
            return Ok(booking);
        }
    };
    let was_held = booking.status == BookingStatus::Held;

    let freed = redis
        .cancel(
            event_id,
            &booking.booking_id,
            &booking.user_id,
            &booking.seats,
        )
        .await?;
    if freed == Some(BookingStatus::Rejected) {
        return Err(OpError::BookingRejected);
    }
    if newly_cancelled {
        crate::telemetry::bookings_settled("cancelled", 1);
        if was_held {
            crate::telemetry::hold_action("cancel");
        }
    }
    tracing::info!(event.id = %booking.event_id, booking.id = %booking.booking_id, "booking cancelled");
    booking.status = BookingStatus::Cancelled;
    booking.reason = None;
    Ok(booking)
}

/// The MySQL part of [`cancel`], one whole transaction: `Some(true)` when this call
/// cancelled the booking, `Some(false)` when MySQL had it cancelled already (a repeated
/// DELETE), `None` when its hold had expired (nothing to cancel).
async fn cancel_in_mysql(
    pool: &MySqlPool,
    event_id: &str,
    booking: &Booking,
) -> Result<Option<bool>, OpError> {
    let booking_id = booking.booking_id.as_str();
    // Seat id order: the lock order of every writer (see `db::bookings`).
    let mut seats = booking.seats.clone();
    seats.sort_unstable();
    seats.dedup();

    let mut tx = pool.begin().await?;
    db::bookings::lock_seats(&mut tx, event_id, &seats).await?;
    let newly_cancelled = match db::bookings::find_booking(&mut *tx, booking_id).await? {
        Some(row) if row.status == BookingStatus::Rejected => return Err(OpError::BookingRejected),
        Some(row) if row.status == BookingStatus::Expired => return Ok(None),
        Some(row) if matches!(row.status, BookingStatus::Confirmed | BookingStatus::Held) => {
            db::bookings::cancel_confirmed(&mut tx, event_id, booking_id).await?;
            // The `mysql` strategy's per-user tally (the Redis one is freed by the caller).
            db::sync_claim::release_holdings(&mut tx, event_id, &row.user_id, row.seats.len())
                .await?;
            true
        }
        Some(_) => false, // already cancelled
        None => {
            let tombstone = BookingRow {
                id: booking_id.to_owned(),
                event_id: event_id.to_owned(),
                user_id: booking.user_id.clone(),
                status: BookingStatus::Cancelled,
                seats: booking.seats.clone(),
                reason: None,
                claimed_ms: None,
                expires_ms: None,
            };
            db::bookings::insert_booking(&mut tx, &tombstone).await?;
            true
        }
    };
    tx.commit().await?;
    Ok(Some(newly_cancelled))
}

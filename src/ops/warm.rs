//! Warm: copy an event's inventory from MySQL into Redis and put it on sale.

use sqlx::MySqlPool;
use std::collections::{BTreeSet, HashMap};

use super::{audit, OpError, WARM_CHUNK};
use crate::claims::{RedisStore, SeatCounts};
use crate::db;
use crate::domain::SeatState;

/// Told how far a warm has got: `(seats copied into Redis, seats in all)`. Called
/// once when the inventory is read (with 0 copied) and after every chunk.
pub(crate) type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Warms the event and opens its sale. Safe at any time, also during a drop: the seat
/// rows stay share-locked while Redis is written, so no booking or cancellation can
/// commit in between and make the copied states stale; seats of pending claims are
/// left alone by `warm.lua`. A cancellation MySQL committed and Redis never heard of
/// (its process died in between) is finished in Redis, as audit repair finishes it.
pub async fn warm(
    redis: &RedisStore,
    pool: &MySqlPool,
    event_id: &str,
) -> Result<SeatCounts, OpError> {
    warm_with_progress(redis, pool, event_id, None).await
}

/// [`warm`], reporting its progress to `progress` (for the admin CLI's progress bar).
///
/// A lock conflict (a deadlock with a transaction that locks seats against the rule,
/// a lock wait timeout) is retried as a whole: a fresh transaction reads and copies
/// the inventory again (`db::retry`); warming the same states twice is harmless.
pub(crate) async fn warm_with_progress(
    redis: &RedisStore,
    pool: &MySqlPool,
    event_id: &str,
    progress: Option<Progress<'_>>,
) -> Result<SeatCounts, OpError> {
    let event = db::events::find_event(pool, event_id)
        .await?
        .ok_or(OpError::EventNotFound)?;
    let counts = db::retry::retry_lock_conflicts("warm", || {
        warm_in_one_transaction(redis, pool, &event, progress)
    })
    .await?;
    tracing::info!(event.id = %event_id, seats = counts.seats_total, available = counts.available,
        pending = counts.pending, booked = counts.booked, "event warmed and on sale");
    Ok(counts)
}

/// One attempt at warming: the inventory locked, copied into Redis, the sale opened,
/// and the locks released by the COMMIT.
async fn warm_in_one_transaction(
    redis: &RedisStore,
    pool: &MySqlPool,
    event: &db::events::EventRow,
    progress: Option<Progress<'_>>,
) -> Result<SeatCounts, OpError> {
    let report = |done: usize, total: usize| {
        if let Some(progress) = progress {
            progress(done as u64, total as u64);
        }
    };
    let event_id = event.id.as_str();
    // On a cluster, the shard's primary as the warm begins (see `claims::fence`).
    let shard = redis.shard_of(event_id).await?;
    let mut tx = pool.begin().await?;
    let inventory = db::events::lock_inventory(&mut tx, event_id).await?;
    report(0, inventory.len());
    // Bookings Redis shows holding a seat that MySQL has in another state. Read before
    // the seats are overwritten: afterwards nothing in the seats names them, and one
    // whose cancellation died between its MySQL COMMIT and cancel.lua would stay
    // `confirmed` in Redis, counted against its owner's limit, with its seats sold again.
    let in_redis: HashMap<String, SeatState> = redis
        .seat_states(event_id)
        .await?
        .into_iter()
        .map(|s| (s.seat, s.state))
        .collect();
    let stale_bookings: BTreeSet<String> = inventory
        .iter()
        .filter_map(|seat| {
            let state = in_redis.get(&seat.seat)?;
            let (SeatState::Booked(bid) | SeatState::Held(bid)) = state else {
                return None;
            };
            (*state != seat.state).then(|| bid.clone())
        })
        .collect();
    let mut chunk = Vec::with_capacity(WARM_CHUNK);
    let mut done = 0;
    for seats in inventory.chunks(WARM_CHUNK) {
        chunk.clear();
        chunk.extend(
            seats
                .iter()
                .map(|s| (s.seat.clone(), s.ordinal, s.state.clone())),
        );
        redis.warm_chunk(event_id, &chunk).await?;
        done += seats.len();
        report(done, inventory.len());
    }
    // Seats first, then the bookings, as audit repair does (see `finish_cancellations`).
    audit::finish_cancellations(redis, &mut tx, event_id, &stale_bookings).await?;
    // Per-user tallies of confirmed bookings (rebuilt after a Redis loss; rewriting
    // the same numbers otherwise).
    let holdings = db::events::confirmed_holdings(&mut tx, event_id).await?;
    redis.set_holdings(event_id, &holdings).await?;
    // The outbox's consumer group exists before the first claim can be made.
    redis.register_event(event_id).await?;
    // Before the sale opens, so that no claim finds it unrecorded.
    if let Some(run_id) = &shard {
        redis.record_shard(event_id, run_id).await?;
    }
    let counts = redis
        .warm_finish(
            event_id,
            &event.name,
            event.per_user_limit,
            event.seats_total,
            true,
            event.hold_seconds,
        )
        .await?;
    // The `mysql` claim strategy reads the on-sale flag from MySQL.
    sqlx::query("UPDATE events SET on_sale = 1 WHERE id = ?")
        .bind(event_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(counts)
}

//! Audit: compare an event's seats in Redis and MySQL, and optionally repair Redis.

use serde::Serialize;
use sqlx::MySqlPool;
use std::collections::HashMap;

use super::{OpError, WARM_CHUNK};
use crate::claims::RedisStore;
use crate::db;

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
/// differs). A lock conflict is retried as a whole transaction (`db::retry`): the
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
    let mut in_redis: HashMap<String, (String, i64)> = redis
        .seat_states(event_id)
        .await?
        .into_iter()
        .map(|s| (s.seat, (s.state, s.ordinal)))
        .collect();

    let mut divergences = Vec::new();
    // In ordinal order (the inventory's), as `warm.lua` wants them.
    let mut repairs = Vec::new();
    for seat in &inventory {
        let (state, ordinal) = match in_redis.remove(&seat.seat) {
            Some((state, ordinal)) => (Some(state), Some(ordinal)),
            None => (None, None),
        };
        // Out of its place in Redis's order list (which lists seats in best-available
        // order): not a divergence of state, but repaired with the rest (`warm.lua`
        // places the seat and leaves a pending seat's state alone).
        let misplaced = ordinal != Some(seat.ordinal);
        let pending = state.as_deref().is_some_and(|s| s.starts_with("pending:"));
        if !pending && state.as_deref() != Some(seat.state.as_str()) {
            divergences.push(Divergence {
                seat: seat.seat.clone(),
                redis: state.unwrap_or_else(|| MISSING.to_owned()),
                mysql: seat.state.clone(),
            });
            repairs.push((seat.seat.clone(), seat.ordinal, seat.state.clone()));
        } else if misplaced {
            repairs.push((seat.seat.clone(), seat.ordinal, seat.state.clone()));
        }
    }
    // Seats Redis has and MySQL does not: reported, not deleted (a human should look).
    let mut extra: Vec<_> = in_redis.into_iter().collect();
    extra.sort();
    for (seat, (state, _)) in extra {
        divergences.push(Divergence {
            seat,
            redis: state,
            mysql: MISSING.to_owned(),
        });
    }

    let repaired = repair && !repairs.is_empty();
    if repaired {
        for chunk in repairs.chunks(WARM_CHUNK) {
            redis.warm_chunk(event_id, chunk).await?;
        }
        redis
            .warm_finish(
                event_id,
                &event.name,
                event.per_user_limit,
                event.seats_total,
                false,
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

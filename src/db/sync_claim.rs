//! The `mysql` claim strategy: the seed's synchronous booking, kept as the baseline
//! benchmarks compare the Redis design against.
//!
//! One transaction per claim, built to be fair rather than a strawman: pooled
//! connections, no needless round trips, locks taken in a fixed order (the user's
//! holdings row, then the seat rows sorted by id) so claims cannot deadlock, and
//! `SKIP LOCKED` for best available so concurrent quantity claims do not queue on the
//! same first free seat. Same contract as the Redis path otherwise: all or nothing,
//! per-user limit, idempotency (outcomes recorded in `claim_idempotency` and replayed
//! for [`IDEMPOTENCY_TTL`]). User ids and idempotency keys are `VARBINARY` columns, so
//! they compare byte for byte, trailing spaces included (see the migration
//! `20261201000001_sync_claims_binary.sql`).

use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{MySqlConnection, Row};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bookings::{self, BookingRow};
use super::{is_duplicate_key, text};
use crate::domain::claim::{ClaimOutcome, ClaimRequest, EventSummary, Selection};
use crate::domain::{BookingStatus, SeatStatus};

/// How long a recorded claim outcome is replayed (the contract's 24 h). Older records
/// count as absent: the key is free again.
pub(crate) const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// One claim in this many starts a purge of expired idempotency records.
const PURGE_EVERY: u64 = 1000;

/// Expired records deleted per purge. At least [`PURGE_EVERY`], since every claim
/// records at most one, so purges keep up with any claim rate.
const PURGE_BATCH: u64 = 1000;

/// Claims made by this process, to start a purge every [`PURGE_EVERY`] of them.
static CLAIMS: AtomicU64 = AtomicU64::new(0);

/// Books the claim in MySQL, or says why not. Takes the Redis path's request
/// (`now_ms` is unused: MySQL stamps the rows) and gives its outcomes, with
/// `Confirmed` in place of `Pending`. Now and then starts a purge of expired
/// idempotency records in the background.
pub async fn claim(pool: &MySqlPool, req: &ClaimRequest<'_>) -> Result<ClaimOutcome, sqlx::Error> {
    if CLAIMS
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(PURGE_EVERY)
    {
        let pool = pool.clone();
        // Off the claim's path: the claim neither waits for it nor fails with it.
        tokio::spawn(async move {
            if let Err(err) = purge_expired_idempotency(&pool).await {
                tracing::warn!(error = %err, "purging expired idempotency records failed");
            }
        });
    }
    let mut tx = pool.begin().await?;
    if let Some((key, fp)) = req.idempotency {
        if let Some(replay) = recorded(&mut tx, req, key, fp).await? {
            return Ok(replay);
        }
    }
    let outcome = decide(&mut tx, req).await?;
    if matches!(outcome, ClaimOutcome::EventNotFound) {
        return Ok(outcome); // not recorded, like the Redis path
    }
    if let Some((key, fp)) = req.idempotency {
        let recorded = sqlx::query(
            "INSERT INTO claim_idempotency (event_id, user_id, idem_key, fingerprint, outcome) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(req.event_id.as_str())
        .bind(req.user_id.as_str())
        .bind(key)
        .bind(fp)
        .bind(serde_json::to_string(&outcome).expect("outcomes serialise"))
        .execute(&mut *tx)
        .await;
        match recorded {
            // A concurrent request with the same key won: this one answers as it did.
            Err(e) if is_duplicate_key(&e) => {
                drop(tx);
                let mut tx = pool.begin().await?;
                return recorded_or_reused(&mut tx, req, key, fp).await;
            }
            other => other?,
        };
    }
    tx.commit().await?;
    Ok(outcome)
}

async fn recorded_or_reused(
    conn: &mut MySqlConnection,
    req: &ClaimRequest<'_>,
    key: &str,
    fp: &str,
) -> Result<ClaimOutcome, sqlx::Error> {
    Ok(recorded(conn, req, key, fp)
        .await?
        .unwrap_or(ClaimOutcome::KeyReused))
}

/// The recorded answer for this key, if any: a replay, or `KeyReused` for another body.
///
/// A record older than [`IDEMPOTENCY_TTL`] is absent as far as the contract goes; it is
/// deleted here so that this claim's record can take its place. The DELETE locks that
/// one existing row only (no gap lock, which concurrent inserts would queue on) and
/// checks the age again, so a fresh record a concurrent request with the same key put
/// in its place is kept, and this request then meets it as a duplicate key.
async fn recorded(
    conn: &mut MySqlConnection,
    req: &ClaimRequest<'_>,
    key: &str,
    fp: &str,
) -> Result<Option<ClaimOutcome>, sqlx::Error> {
    let ttl_secs = IDEMPOTENCY_TTL.as_secs();
    let row = sqlx::query(
        "SELECT fingerprint, outcome, \
         CAST(created_at < NOW(3) - INTERVAL ? SECOND AS SIGNED) AS expired \
         FROM claim_idempotency WHERE event_id = ? AND user_id = ? AND idem_key = ?",
    )
    .bind(ttl_secs)
    .bind(req.event_id.as_str())
    .bind(req.user_id.as_str())
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.try_get::<i64, _>("expired")? != 0 {
        sqlx::query(
            "DELETE FROM claim_idempotency WHERE event_id = ? AND user_id = ? AND idem_key = ? \
             AND created_at < NOW(3) - INTERVAL ? SECOND",
        )
        .bind(req.event_id.as_str())
        .bind(req.user_id.as_str())
        .bind(key)
        .bind(ttl_secs)
        .execute(&mut *conn)
        .await?;
        return Ok(None);
    }
    if text(&row, "fingerprint")? != fp {
        return Ok(Some(ClaimOutcome::KeyReused));
    }
    let outcome: ClaimOutcome =
        serde_json::from_str(&text(&row, "outcome")?).map_err(|e| sqlx::Error::ColumnDecode {
            index: "outcome".into(),
            source: Box::new(e),
        })?;
    Ok(Some(ClaimOutcome::Replay {
        first: Box::new(outcome),
        answered: None,
    }))
}

/// Deletes up to a batch of idempotency records older than [`IDEMPOTENCY_TTL`], of
/// every event, oldest first; returns how many. Claims treat such records as absent
/// anyway (see `recorded`): this only keeps the table from growing for ever. One
/// short autocommit statement on the records' age index, so it holds its locks briefly
/// and only on old rows (and the gap next to the oldest fresh one).
pub async fn purge_expired_idempotency(pool: &MySqlPool) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM claim_idempotency WHERE created_at < NOW(3) - INTERVAL ? SECOND \
         ORDER BY created_at LIMIT ?",
    )
    .bind(IDEMPOTENCY_TTL.as_secs())
    .bind(PURGE_BATCH)
    .execute(pool)
    .await?
    .rows_affected();
    if deleted > 0 {
        tracing::info!(deleted, "purged expired idempotency records");
    }
    Ok(deleted)
}

async fn decide(
    conn: &mut MySqlConnection,
    req: &ClaimRequest<'_>,
) -> Result<ClaimOutcome, sqlx::Error> {
    let event = sqlx::query("SELECT per_user_limit, on_sale FROM events WHERE id = ?")
        .bind(req.event_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(event) = event else {
        return Ok(ClaimOutcome::EventNotFound);
    };
    if event.try_get::<i8, _>("on_sale")? != 1 {
        return Ok(ClaimOutcome::EventNotFound);
    }
    let limit = event.try_get::<i32, _>("per_user_limit")?.max(0) as u32;

    // The user's row, locked: one user's claims go one at a time.
    sqlx::query(
        "INSERT INTO user_holdings (event_id, user_id, seats) VALUES (?, ?, 0) \
         ON DUPLICATE KEY UPDATE seats = seats",
    )
    .bind(req.event_id.as_str())
    .bind(req.user_id.as_str())
    .execute(&mut *conn)
    .await?;
    let held: i32 = sqlx::query(
        "SELECT seats FROM user_holdings WHERE event_id = ? AND user_id = ? FOR UPDATE",
    )
    .bind(req.event_id.as_str())
    .bind(req.user_id.as_str())
    .fetch_one(&mut *conn)
    .await?
    .try_get("seats")?;
    let wanted = match req.selection {
        Selection::Seats(seats) => seats.len() as u64,
        Selection::Quantity(n) => u64::from(n),
    };
    if held.max(0) as u64 + wanted > u64::from(limit) {
        return Ok(ClaimOutcome::UserLimit(limit));
    }

    let seats: Vec<String> = match req.selection {
        Selection::Seats(requested) => {
            let requested: Vec<String> = requested.iter().map(|s| s.to_string()).collect();
            let mut sorted = requested.clone();
            sorted.sort_unstable();
            let locked = bookings::lock_seats(conn, req.event_id.as_str(), &sorted).await?;
            let unknown: Vec<String> = requested
                .iter()
                .filter(|s| !locked.iter().any(|l| &l.seat == *s))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Ok(ClaimOutcome::UnknownSeats(unknown));
            }
            let taken: Vec<String> = requested
                .iter()
                .filter(|s| {
                    locked
                        .iter()
                        .any(|l| &l.seat == *s && l.status != "available")
                })
                .cloned()
                .collect();
            if !taken.is_empty() {
                return Ok(ClaimOutcome::SeatsUnavailable(taken));
            }
            requested
        }
        Selection::Quantity(n) => {
            let free: Vec<String> = sqlx::query(
                "SELECT seat_id FROM seats WHERE event_id = ? AND status = 'available' \
                 ORDER BY ordinal LIMIT ? FOR UPDATE SKIP LOCKED",
            )
            .bind(req.event_id.as_str())
            .bind(n)
            .try_map(|row: MySqlRow| text(&row, "seat_id"))
            .fetch_all(&mut *conn)
            .await?;
            if free.len() < n as usize {
                return Ok(ClaimOutcome::SoldOut);
            }
            free
        }
    };

    let booking = BookingRow {
        id: req.booking_id.to_owned(),
        event_id: req.event_id.as_str().to_owned(),
        user_id: req.user_id.as_str().to_owned(),
        status: BookingStatus::Confirmed,
        seats: seats.clone(),
        reason: None,
        claimed_ms: None,
        expires_ms: None,
    };
    bookings::insert_booking(conn, &booking).await?;
    let mut sorted = seats.clone();
    sorted.sort_unstable();
    bookings::book_seats(conn, req.event_id.as_str(), req.booking_id, &sorted).await?;
    sqlx::query("UPDATE user_holdings SET seats = seats + ? WHERE event_id = ? AND user_id = ?")
        .bind(seats.len() as i64)
        .bind(req.event_id.as_str())
        .bind(req.user_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(ClaimOutcome::Confirmed {
        booking_id: req.booking_id.to_owned(),
        seats,
    })
}

/// An event's counters from MySQL (the `mysql` strategy's public reads; nothing is
/// ever pending there), or `None` when the event is unknown or not on sale.
pub async fn event_summary(
    pool: &MySqlPool,
    event_id: &str,
) -> Result<Option<EventSummary>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT e.name, e.per_user_limit, e.seats_total, e.on_sale, \
         (SELECT COUNT(*) FROM seats s WHERE s.event_id = e.id AND s.status = 'booked') AS booked \
         FROM events e WHERE e.id = ?",
    )
    .bind(event_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.try_get::<i8, _>("on_sale")? != 1 {
        return Ok(None);
    }
    let seats_total = row.try_get::<i32, _>("seats_total")?.max(0) as u64;
    let booked = row.try_get::<i64, _>("booked")?.max(0) as u64;
    Ok(Some(EventSummary {
        name: text(&row, "name")?,
        per_user_limit: row.try_get::<i32, _>("per_user_limit")?.max(0) as u32,
        seats_total,
        available: seats_total.saturating_sub(booked),
        pending: 0,
        booked,
        held: 0,
        hold_seconds: 0,
    }))
}

/// Every seat with its status, in best-available order (the `mysql` strategy's seat map).
pub async fn seat_map(
    pool: &MySqlPool,
    event_id: &str,
) -> Result<Vec<(String, SeatStatus)>, sqlx::Error> {
    sqlx::query("SELECT seat_id, status FROM seats WHERE event_id = ? ORDER BY ordinal")
        .bind(event_id)
        .try_map(|row: MySqlRow| {
            let status = if text(&row, "status")? == "booked" {
                SeatStatus::Booked
            } else {
                SeatStatus::Available
            };
            Ok((text(&row, "seat_id")?, status))
        })
        .fetch_all(pool)
        .await
}

/// Takes a cancelled booking's seats off its user's holdings.
pub(crate) async fn release_holdings(
    conn: &mut MySqlConnection,
    event_id: &str,
    user_id: &str,
    seats: usize,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE user_holdings SET seats = GREATEST(seats - ?, 0) WHERE event_id = ? AND user_id = ?",
    )
    .bind(seats as i64)
    .bind(event_id)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

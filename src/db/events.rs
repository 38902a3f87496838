//! Events and their seat inventory.

use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{MySqlConnection, Row};

use super::{opt_text, text};
use crate::domain::SeatState;

/// An event as MySQL holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventRow {
    pub id: String,
    pub name: String,
    pub per_user_limit: u32,
    pub seats_total: u64,
    /// Seconds a persisted claim is held for its checkout (0: no holds).
    pub hold_seconds: u32,
    /// Seconds after the claim a hold may be extended to.
    pub hold_max_seconds: u32,
}

/// A new event, already validated.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// In best-available order: the index is the ordinal.
    pub seats: &'a [String],
    pub per_user_limit: u32,
    /// Seconds a persisted claim is held for its checkout (0: no holds).
    pub hold_seconds: u32,
    /// Seconds after the claim a hold may be extended to (>= `hold_seconds`).
    pub hold_max_seconds: u32,
}

/// Why an event could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateEventError {
    #[error("an event with this id exists")]
    Exists,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Rows per multi-row INSERT when creating seats.
const SEAT_INSERT_CHUNK: usize = 1000;

/// Creates the event and all its seats in one transaction: all or nothing.
pub async fn create_event(pool: &MySqlPool, event: &NewEvent<'_>) -> Result<(), CreateEventError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO events (id, name, per_user_limit, seats_total, hold_seconds, \
         hold_max_seconds) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(event.id)
    .bind(event.name)
    .bind(event.per_user_limit)
    .bind(event.seats.len() as u64)
    .bind(event.hold_seconds)
    .bind(event.hold_max_seconds)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if super::is_duplicate_key(&e) => return Err(CreateEventError::Exists),
        other => other?,
    };
    for (chunk_no, chunk) in event.seats.chunks(SEAT_INSERT_CHUNK).enumerate() {
        let mut sql = String::from("INSERT INTO seats (event_id, seat_id, ordinal) VALUES ");
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
        }
        let mut q = sqlx::query(&sql);
        for (i, seat) in chunk.iter().enumerate() {
            q = q
                .bind(event.id)
                .bind(seat)
                .bind((chunk_no * SEAT_INSERT_CHUNK + i) as i64);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn find_event(
    pool: &MySqlPool,
    id: &str,
) -> Result<Option<EventRow>, sqlx::Error> {
    sqlx::query(
        "SELECT id, name, per_user_limit, seats_total, hold_seconds, hold_max_seconds \
         FROM events WHERE id = ?",
    )
    .bind(id)
    .try_map(|row: MySqlRow| event_row(&row))
    .fetch_optional(pool)
    .await
}

/// The events that are on sale (warmed at least once), by id.
pub(crate) async fn on_sale(pool: &MySqlPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("SELECT id FROM events WHERE on_sale = 1 ORDER BY id")
        .try_map(|row: MySqlRow| text(&row, "id"))
        .fetch_all(pool)
        .await
}

/// Which of `ids` are events of this database.
pub async fn existing(
    pool: &MySqlPool,
    ids: &[&str],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT id FROM events WHERE id IN ({})",
        super::placeholders(ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    q.try_map(|row: MySqlRow| text(&row, "id"))
        .fetch_all(pool)
        .await
        .map(|ids| ids.into_iter().collect())
}

/// An event with MySQL's counts, for the admin listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventStats {
    pub event: EventRow,
    /// Set by warm (read by the `mysql` claim strategy; Redis has its own flag).
    pub on_sale: bool,
    /// Seats MySQL has booked.
    pub seats_booked: u64,
    /// Confirmed bookings.
    pub bookings_confirmed: u64,
}

/// Every event, oldest first, with MySQL's counts of booked seats and confirmed
/// bookings (each an index range count).
pub(crate) async fn list_events_with_counts(
    pool: &MySqlPool,
) -> Result<Vec<EventStats>, sqlx::Error> {
    sqlx::query(
        "SELECT e.id, e.name, e.per_user_limit, e.seats_total, e.hold_seconds, \
           e.hold_max_seconds, e.on_sale, \
           (SELECT COUNT(*) FROM seats s WHERE s.event_id = e.id AND s.status = 'booked') AS seats_booked, \
           (SELECT COUNT(*) FROM bookings b WHERE b.event_id = e.id AND b.status = 'confirmed') AS bookings_confirmed \
         FROM events e ORDER BY e.created_at, e.id",
    )
    .try_map(|row: MySqlRow| {
        Ok(EventStats {
            event: event_row(&row)?,
            on_sale: row.try_get::<i8, _>("on_sale")? != 0,
            seats_booked: row.try_get::<i64, _>("seats_booked")?.max(0) as u64,
            bookings_confirmed: row.try_get::<i64, _>("bookings_confirmed")?.max(0) as u64,
        })
    })
    .fetch_all(pool)
    .await
}

/// An event's own columns (`id`, `name`, `per_user_limit`, `seats_total`,
/// `hold_seconds`, `hold_max_seconds`) of a row.
fn event_row(row: &MySqlRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        id: text(row, "id")?,
        name: text(row, "name")?,
        per_user_limit: row.try_get::<i32, _>("per_user_limit")?.max(0) as u32,
        seats_total: row.try_get::<i32, _>("seats_total")?.max(0) as u64,
        hold_seconds: row.try_get::<i32, _>("hold_seconds")?.max(0) as u32,
        hold_max_seconds: row.try_get::<i32, _>("hold_max_seconds")?.max(0) as u32,
    })
}

/// One seat of the inventory with its MySQL state (available or booked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InventorySeat {
    pub seat: String,
    pub ordinal: i64,
    pub state: SeatState,
}

/// Reads the whole inventory of an event, share-locking every seat row until the
/// transaction ends: while warm or audit copies these states into Redis, no booking
/// or cancellation can commit and make them stale. Returned in ordinal order.
///
/// The rows are locked in seat id order (the primary key's), the one order every
/// writer of seat rows uses (see `db::bookings`). Locked in ordinal order instead, a
/// warm during a drop would hold a seat that a reconciler or cancel wants next while
/// waiting for one that transaction holds: a deadlock. `FORCE INDEX (PRIMARY)` keeps
/// the optimizer from walking the ordinal index, whose order is the lock order.
pub(crate) async fn lock_inventory(
    conn: &mut MySqlConnection,
    event_id: &str,
) -> Result<Vec<InventorySeat>, sqlx::Error> {
    let mut seats = sqlx::query(
        "SELECT seat_id, ordinal, status, booking_id FROM seats FORCE INDEX (PRIMARY) \
         WHERE event_id = ? ORDER BY seat_id LOCK IN SHARE MODE",
    )
    .bind(event_id)
    .try_map(|row: MySqlRow| {
        Ok(InventorySeat {
            seat: text(&row, "seat_id")?,
            ordinal: row.try_get::<i32, _>("ordinal")?.into(),
            state: state_of(&text(&row, "status")?, opt_text(&row, "booking_id")?),
        })
    })
    .fetch_all(conn)
    .await?;
    seats.sort_unstable_by_key(|s| s.ordinal);
    Ok(seats)
}

/// `(user, booking id, seats held)` of every confirmed or held booking of the event,
/// to rebuild the per-user tallies in Redis.
pub async fn confirmed_holdings(
    conn: &mut MySqlConnection,
    event_id: &str,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT user_id, booking_id, COUNT(*) AS n FROM seats JOIN bookings b ON b.id = seats.booking_id \
         WHERE seats.event_id = ? AND seats.status IN ('booked', 'held') GROUP BY user_id, booking_id",
    )
    .bind(event_id)
    .try_map(|row: MySqlRow| {
        Ok((
            text(&row, "user_id")?,
            text(&row, "booking_id")?,
            row.try_get("n")?,
        ))
    })
    .fetch_all(conn)
    .await
}

/// The state of a MySQL seat row (`status`, `booking_id`).
pub(crate) fn state_of(status: &str, booking_id: Option<String>) -> SeatState {
    match (status, booking_id) {
        ("booked", Some(bid)) => SeatState::Booked(bid),
        ("held", Some(bid)) => SeatState::Held(bid),
        _ => SeatState::Available,
    }
}

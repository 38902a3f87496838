//! Bookings and the seat rows they hold.
//!
//! Every writer locks the seat rows it touches with `SELECT … FOR UPDATE` *sorted by
//! seat id* before anything else. Two transactions that want overlapping seats then
//! queue on the first seat they share instead of each holding one the other needs,
//! so they cannot deadlock each other; and a booking row is only ever read or written
//! by a transaction that holds all of its seats, which serialises everything that
//! happens to one booking (reconciler redelivery, cancellation) through those locks.
//! Readers that lock seat rows (warm and audit share-lock a whole inventory, see
//! `db::events::lock_inventory`) take them in the same seat id order, for the same
//! reason. A deadlock with anything outside this rule is retried as a whole
//! transaction (`db::retry`).

use sqlx::mysql::MySqlRow;
use sqlx::MySqlConnection;

use super::{opt_text, placeholders, text};
use crate::domain::{Booking, BookingStatus, SeatState, Timestamp};

/// A seat row as a writer sees it under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedSeat {
    pub seat: String,
    pub status: String,
    pub booking_id: Option<String>,
}

impl LockedSeat {
    /// This seat's state.
    pub fn state(&self) -> SeatState {
        super::events::state_of(&self.status, self.booking_id.clone())
    }

    /// True when another booking than `booking_id` holds the seat (booked or held).
    pub(crate) fn taken_by_other(&self, booking_id: &str) -> bool {
        self.status != "available" && self.booking_id.as_deref() != Some(booking_id)
    }
}

/// Locks the given seats of an event `FOR UPDATE`, in seat id order. `seats` must be
/// sorted (byte order, as the binary collation sorts). Seats that do not exist are
/// simply absent from the result.
pub async fn lock_seats(
    conn: &mut MySqlConnection,
    event_id: &str,
    seats: &[String],
) -> Result<Vec<LockedSeat>, sqlx::Error> {
    debug_assert!(
        seats.windows(2).all(|w| w[0] <= w[1]),
        "seats must be sorted"
    );
    let sql = format!(
        "SELECT seat_id, status, booking_id FROM seats WHERE event_id = ? AND seat_id IN ({}) \
         ORDER BY seat_id FOR UPDATE",
        placeholders(seats.len())
    );
    let mut q = sqlx::query(&sql).bind(event_id);
    for seat in seats {
        q = q.bind(seat);
    }
    q.try_map(|row: MySqlRow| {
        Ok(LockedSeat {
            seat: text(&row, "seat_id")?,
            status: text(&row, "status")?,
            booking_id: opt_text(&row, "booking_id")?,
        })
    })
    .fetch_all(conn)
    .await
}

/// A booking row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BookingRow {
    pub id: String,
    pub event_id: String,
    pub user_id: String,
    pub status: BookingStatus,
    pub seats: Vec<String>,
    pub reason: Option<String>,
    /// The claim's time (ms since the epoch), on bookings of events with holds.
    pub claimed_ms: Option<u64>,
    /// When the hold ends unless checked out (ms since the epoch), on bookings of
    /// events with holds.
    pub expires_ms: Option<u64>,
}

impl BookingRow {
    pub(crate) fn into_booking(self) -> Booking {
        Booking {
            booking_id: self.id,
            event_id: self.event_id,
            user_id: self.user_id,
            seats: self.seats,
            status: self.status,
            reason: self.reason,
            expires_at: self
                .expires_ms
                .map(Timestamp)
                .filter(|_| self.status.has_deadline()),
            attendees: None,
        }
    }

    /// True when this held booking's hold has run out at `now_ms`.
    pub(crate) fn hold_ended(&self, now_ms: u64) -> bool {
        self.status == BookingStatus::Held && self.expires_ms.is_some_and(|at| at <= now_ms)
    }
}

/// The columns [`booking_row`] reads.
pub(crate) const BOOKING_COLUMNS: &str =
    "id, event_id, user_id, status, seats, reason, claimed_ms, expires_ms";

pub(crate) fn booking_row(row: MySqlRow) -> Result<BookingRow, sqlx::Error> {
    let seats = text(&row, "seats")?;
    let status = text(&row, "status")?;
    let corrupt = |what: String| sqlx::Error::ColumnDecode {
        index: "bookings".into(),
        source: what.into(),
    };
    Ok(BookingRow {
        id: text(&row, "id")?,
        event_id: text(&row, "event_id")?,
        user_id: text(&row, "user_id")?,
        status: BookingStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown booking status {status:?}")))?,
        seats: serde_json::from_str(&seats)
            .map_err(|e| corrupt(format!("seats is not a JSON list: {e}")))?,
        reason: opt_text(&row, "reason")?,
        claimed_ms: opt_millis(&row, "claimed_ms")?,
        expires_ms: opt_millis(&row, "expires_ms")?,
    })
}

fn opt_millis(row: &MySqlRow, column: &str) -> Result<Option<u64>, sqlx::Error> {
    use sqlx::Row;
    Ok(row
        .try_get::<Option<i64>, _>(column)?
        .map(|ms| u64::try_from(ms).unwrap_or(0)))
}

/// The booking row: inside a transaction that holds the booking's seat locks (the
/// reconciler, cancel), or on the pool (reads for clients).
pub(crate) async fn find_booking<'e, E>(
    executor: E,
    booking_id: &str,
) -> Result<Option<BookingRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::MySql>,
{
    sqlx::query(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = ?"
    ))
    .bind(booking_id)
    .try_map(booking_row)
    .fetch_optional(executor)
    .await
}

/// The booking rows of these ids that exist, by id (inside the batch transaction).
pub(crate) async fn find_bookings(
    conn: &mut MySqlConnection,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, BookingRow>, sqlx::Error> {
    let mut found = std::collections::HashMap::new();
    for chunk in ids.chunks(1000) {
        let sql = format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.try_map(booking_row).fetch_all(&mut *conn).await? {
            found.insert(row.id.clone(), row);
        }
    }
    Ok(found)
}

/// Inserts many booking rows with multi-row INSERTs.
pub(crate) async fn insert_bookings(
    conn: &mut MySqlConnection,
    rows: &[BookingRow],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO bookings (id, event_id, user_id, status, seats, reason, claimed_ms, \
             expires_ms) VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(?, ?, ?, ?, ?, ?, ?, ?)"
            } else {
                ", (?, ?, ?, ?, ?, ?, ?, ?)"
            });
        }
        let mut q = sqlx::query(&sql);
        for row in chunk {
            q = q
                .bind(&row.id)
                .bind(&row.event_id)
                .bind(&row.user_id)
                .bind(row.status.as_str())
                .bind(serde_json::to_string(&row.seats).expect("a list of strings serialises"))
                .bind(&row.reason)
                .bind(row.claimed_ms.map(millis))
                .bind(row.expires_ms.map(millis));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Marks the (locked) seats of many bookings `status` (`booked` or `held`): `(event,
/// booking id, seats)`. One UPDATE per event and chunk, with a CASE mapping each seat
/// to its booking.
pub(crate) async fn book_seats_of(
    conn: &mut MySqlConnection,
    bookings: &[(&str, &str, &[String])],
    status: &'static str,
) -> Result<(), sqlx::Error> {
    let mut by_event: std::collections::BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
    for (event, booking, seats) in bookings {
        for seat in seats.iter() {
            by_event
                .entry(event)
                .or_default()
                .push((seat.as_str(), booking));
        }
    }
    for (event, pairs) in by_event {
        for chunk in pairs.chunks(500) {
            let mut sql =
                format!("UPDATE seats SET status = '{status}', booking_id = CASE seat_id");
            for _ in chunk {
                sql.push_str(" WHEN ? THEN ?");
            }
            sql.push_str(&format!(
                " END WHERE event_id = ? AND seat_id IN ({})",
                placeholders(chunk.len())
            ));
            let mut q = sqlx::query(&sql);
            for (seat, booking) in chunk {
                q = q.bind(*seat).bind(*booking);
            }
            q = q.bind(event);
            for (seat, _) in chunk {
                q = q.bind(*seat);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Inserts a booking row (`confirmed`, a `cancelled` tombstone, or a `rejected` record).
pub(crate) async fn insert_booking(
    conn: &mut MySqlConnection,
    row: &BookingRow,
) -> Result<(), sqlx::Error> {
    let seats = serde_json::to_string(&row.seats).expect("a list of strings serialises");
    sqlx::query(
        "INSERT INTO bookings (id, event_id, user_id, status, seats, reason, claimed_ms, expires_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&row.id)
    .bind(&row.event_id)
    .bind(&row.user_id)
    .bind(row.status.as_str())
    .bind(seats)
    .bind(&row.reason)
    .bind(row.claimed_ms.map(millis))
    .bind(row.expires_ms.map(millis))
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the (locked) seats booked by `booking_id`.
pub(crate) async fn book_seats(
    conn: &mut MySqlConnection,
    event_id: &str,
    booking_id: &str,
    seats: &[String],
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "UPDATE seats SET status = 'booked', booking_id = ? WHERE event_id = ? AND seat_id IN ({})",
        placeholders(seats.len())
    );
    let mut q = sqlx::query(&sql).bind(booking_id).bind(event_id);
    for seat in seats {
        q = q.bind(seat);
    }
    Ok(q.execute(conn).await?.rows_affected())
}

/// Cancels a confirmed or held booking: the row says `cancelled` and its seats are
/// free.
pub(crate) async fn cancel_confirmed(
    conn: &mut MySqlConnection,
    event_id: &str,
    booking_id: &str,
) -> Result<(), sqlx::Error> {
    release(conn, event_id, booking_id, BookingStatus::Cancelled).await
}

/// Ends a booking that holds seats (`cancelled`, or `expired` for a hold that ran
/// out): the row takes `status` and its seats are free. Under the seats' locks.
pub(crate) async fn release(
    conn: &mut MySqlConnection,
    event_id: &str,
    booking_id: &str,
    status: BookingStatus,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE bookings SET status = ? WHERE id = ?")
        .bind(status.as_str())
        .bind(booking_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE seats SET status = 'available', booking_id = NULL WHERE event_id = ? AND booking_id = ?",
    )
    .bind(event_id)
    .bind(booking_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Milliseconds as MySQL's BIGINT.
fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Records a checkout's attendees, one row per seat (inside the checkout's
/// transaction, under the booking's seat locks).
pub(crate) async fn insert_attendees(
    conn: &mut MySqlConnection,
    booking_id: &str,
    attendees: &[crate::domain::Attendee],
) -> Result<(), sqlx::Error> {
    if attendees.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO attendees (booking_id, seat_id, name, email) VALUES {}",
        vec!["(?, ?, ?, ?)"; attendees.len()].join(", ")
    );
    let mut q = sqlx::query(&sql);
    for a in attendees {
        q = q
            .bind(booking_id)
            .bind(&a.seat)
            .bind(&a.name)
            .bind(&a.email);
    }
    q.execute(conn).await?;
    Ok(())
}

/// A checked-out booking's attendees (by seat) and payment reference.
pub(crate) async fn checkout_of(
    conn: &mut MySqlConnection,
    booking_id: &str,
) -> Result<(Vec<crate::domain::Attendee>, Option<String>), sqlx::Error> {
    use sqlx::Row;
    let attendees = sqlx::query(
        "SELECT seat_id, name, email FROM attendees WHERE booking_id = ? ORDER BY seat_id",
    )
    .bind(booking_id)
    .try_map(|row: MySqlRow| {
        Ok(crate::domain::Attendee {
            seat: text(&row, "seat_id")?,
            name: text(&row, "name")?,
            email: text(&row, "email")?,
        })
    })
    .fetch_all(&mut *conn)
    .await?;
    let reference: Option<Option<String>> =
        sqlx::query("SELECT payment_reference FROM bookings WHERE id = ?")
            .bind(booking_id)
            .try_map(|row: MySqlRow| row.try_get::<Option<String>, _>("payment_reference"))
            .fetch_optional(&mut *conn)
            .await?;
    Ok((attendees, reference.flatten()))
}

/// Held bookings whose deadline is at or before `now_ms`, earliest first, at most
/// `limit` (the expirer's scan of MySQL, which finds holds whose entry Redis lost):
/// `(booking id, deadline)`. Served by `bookings_by_expiry`.
pub(crate) async fn due_holds(
    pool: &sqlx::MySqlPool,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    use sqlx::Row;
    sqlx::query(
        "SELECT id, expires_ms FROM bookings WHERE status = 'held' AND expires_ms <= ? \
         ORDER BY expires_ms LIMIT ?",
    )
    .bind(millis(now_ms))
    .bind(limit as u64)
    .try_map(|row: MySqlRow| {
        Ok((
            text(&row, "id")?,
            row.try_get::<i64, _>("expires_ms")?.max(0) as u64,
        ))
    })
    .fetch_all(pool)
    .await
}

//! Listings of an event's bookings, newest first, one page at a time.
//!
//! Booking ids are UUID v7 in their hyphenated lower-case spelling, and the id column
//! compares byte for byte (`utf8mb4_bin`), so descending id order is newest first.
//! Pages are keyset-paginated: the next page starts below the last id of the previous
//! one (`id < ?`). Unlike an `OFFSET`, that reads only the rows a page returns, however
//! deep the page, and neither skips nor repeats a booking when new ones are made
//! between two pages (a new booking sorts above every cursor handed out before it).
//! The indexes behind it: `bookings_by_user (event_id, user_id)` for one user's
//! bookings (InnoDB appends the primary key to it, so its entries of one user are in
//! id order), and `bookings_by_event` / `bookings_by_event_status` for every booking
//! of an event (migration `20261202000002_booking_listing.sql`).

use sqlx::MySqlPool;
use std::collections::HashMap;

use super::bookings::{booking_row, find_bookings, BookingRow, BOOKING_COLUMNS};
use crate::domain::BookingStatus;

/// Which bookings of an event a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageQuery<'a> {
    /// Only this user's bookings (`None`: everyone's).
    pub user_id: Option<&'a str>,
    /// Only bookings of this status.
    pub status: Option<BookingStatus>,
    /// Only bookings whose id sorts below this one (the previous page's last id, in
    /// the hyphenated lower-case spelling the ids are stored in).
    pub before: Option<&'a str>,
    /// At most this many rows.
    pub limit: u32,
}

impl PageQuery<'_> {
    /// True when a booking with this id, owner and status belongs in the listing this
    /// query pages through (for bookings that were not read with the query itself).
    pub(crate) fn admits(&self, id: &str, user_id: &str, status: BookingStatus) -> bool {
        self.user_id.is_none_or(|u| u == user_id)
            && self.status.is_none_or(|s| s == status)
            && self.before.is_none_or(|before| id < before)
    }
}

/// The booking rows of the event that `query` selects, newest (highest id) first, at
/// most `query.limit` of them. Reads the pool, without locks: a listing is a snapshot,
/// and must not queue behind (or hold up) the writers' seat locks.
pub(crate) async fn event_bookings(
    pool: &MySqlPool,
    event_id: &str,
    query: &PageQuery<'_>,
) -> Result<Vec<BookingRow>, sqlx::Error> {
    let mut sql = format!("SELECT {BOOKING_COLUMNS} FROM bookings WHERE event_id = ?");
    if query.user_id.is_some() {
        sql.push_str(" AND user_id = ?");
    }
    if query.status.is_some() {
        sql.push_str(" AND status = ?");
    }
    if query.before.is_some() {
        sql.push_str(" AND id < ?");
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    let mut q = sqlx::query(&sql).bind(event_id);
    if let Some(user) = query.user_id {
        q = q.bind(user);
    }
    if let Some(status) = query.status {
        q = q.bind(status.as_str());
    }
    if let Some(before) = query.before {
        q = q.bind(before);
    }
    q.bind(query.limit)
        .try_map(booking_row)
        .fetch_all(pool)
        .await
}

/// The booking rows of these ids that MySQL has, by id, whatever their event: the
/// caller checks the event. For the few claims a user's Redis tally names that a page
/// did not show, to learn whether MySQL has them after all.
pub(crate) async fn bookings_by_id(
    pool: &MySqlPool,
    ids: &[&str],
) -> Result<HashMap<String, BookingRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut conn = pool.acquire().await?;
    find_bookings(&mut conn, ids).await
}

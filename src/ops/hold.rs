//! Holds: the checkout, extension and expiry of a held booking (events with holds).
//!
//! A held booking ends in exactly one way: checked out (`confirmed`), cancelled, or
//! expired. MySQL decides which, inside one transaction that holds the booking's seat
//! rows `FOR UPDATE` (the lock order of every writer, see `db::bookings`) and reads the
//! booking row under them: a checkout and an expiry racing at the deadline queue on the
//! same locks, and the second finds the first one's verdict. The deadline is read
//! against the clock of whoever decides (`now_ms`), so each decision is made once, on
//! one clock; Redis follows after the COMMIT. If Redis misses a follow-up (it is down
//! at that instant), the booking stays in the event's holds zset, and the expirer,
//! which reads that zset, finds it and brings Redis in line with MySQL's verdict.
//!
//! Personal data: attendee names and e-mails go to MySQL (`attendees`) and back to the
//! booking's owner in the checkout's answer; never to Redis, never to a log line.

use sqlx::{MySqlConnection, MySqlPool};
use std::time::Duration;

use super::OpError;
use crate::claims::RedisStore;
use crate::db::{self, bookings::BookingRow};
use crate::domain::{Attendee, Booking, BookingStatus, Timestamp};
use crate::telemetry;

/// The longest attendee name, in characters.
pub const NAME_MAX: usize = 200;
/// The longest e-mail address (RFC 5321's path limit), in characters.
pub const EMAIL_MAX: usize = 254;
/// The longest payment reference, in characters.
pub const PAYMENT_REFERENCE_MAX: usize = 200;

/// What a checkout gives: one attendee per seat, and optionally a payment reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub attendees: Vec<Attendee>,
    pub payment_reference: Option<String>,
}

impl Checkout {
    /// Checks the checkout against the booking's seats: exactly one attendee per seat,
    /// names of 1 to [`NAME_MAX`] characters (not only spaces), e-mail addresses that
    /// look like one, a payment reference of 1 to [`PAYMENT_REFERENCE_MAX`]
    /// characters. The message says what is wrong without repeating the personal data.
    pub fn validate(&self, seats: &[String]) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.attendees.iter().enumerate() {
            if !seats.contains(&a.seat) {
                return Err(format!(
                    "attendees[{i}]: seat {:?} is not a seat of this booking",
                    a.seat
                ));
            }
            if !seen.insert(a.seat.as_str()) {
                return Err(format!("attendees[{i}]: seat {:?} is listed twice", a.seat));
            }
            let name = a.name.chars().count();
            if name == 0 || name > NAME_MAX || a.name.trim().is_empty() {
                return Err(format!(
                    "attendees[{i}]: name must be 1 to {NAME_MAX} characters, not only spaces"
                ));
            }
            if !is_email(&a.email) {
                return Err(format!(
                    "attendees[{i}]: email must be an e-mail address of at most {EMAIL_MAX} characters"
                ));
            }
        }
        if let Some(missing) = seats.iter().find(|s| !seen.contains(s.as_str())) {
            return Err(format!(
                "attendees must name every seat of the booking once; {missing:?} has none"
            ));
        }
        if let Some(reference) = &self.payment_reference {
            let n = reference.chars().count();
            if n == 0 || n > PAYMENT_REFERENCE_MAX || reference.trim().is_empty() {
                return Err(format!(
                    "payment_reference must be 1 to {PAYMENT_REFERENCE_MAX} characters"
                ));
            }
        }
        Ok(())
    }

    /// True when `other` gives the same attendees (in any order) and reference: a
    /// repeated checkout.
    fn same_as(&self, attendees: &[Attendee], payment_reference: Option<&str>) -> bool {
        let sorted = |list: &[Attendee]| {
            let mut list = list.to_vec();
            list.sort_by(|a, b| a.seat.cmp(&b.seat));
            list
        };
        sorted(&self.attendees) == sorted(attendees)
            && self.payment_reference.as_deref() == payment_reference
    }
}

/// A plausible e-mail address: at most [`EMAIL_MAX`] characters, one `@` between a
/// local part and a domain with a dot, no spaces or control characters. Deliverability
/// is the mailer's business; this catches typing mistakes and garbage.
pub fn is_email(email: &str) -> bool {
    if email.chars().count() > EMAIL_MAX
        || email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
    {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

/// Checks out `booking` (its owner's, found by `cancel::find`): MySQL first, then
/// Redis. Answers the booking `confirmed` with its attendees; the same checkout again
/// answers the same. A hold found past its deadline is expired here and then (the
/// checkout lost the race) and answered `HoldExpired`.
pub async fn checkout(
    redis: &RedisStore,
    pool: &MySqlPool,
    mut booking: Booking,
    checkout: &Checkout,
    now_ms: u64,
) -> Result<Booking, OpError> {
    checkout
        .validate(&booking.seats)
        .map_err(OpError::InvalidCheckout)?;
    let verdict = db::retry::retry_lock_conflicts("checkout", || {
        checkout_in_mysql(pool, &booking, checkout, now_ms)
    })
    .await?;
    let (event, bid, user) = (&booking.event_id, &booking.booking_id, &booking.user_id);
    match verdict {
        Verdict::Done => {
            telemetry::hold_action("checkout");
            tracing::info!(event.id = %event, booking.id = %bid, "checked out");
            // MySQL has it confirmed: that is the answer. Should Redis miss it now, the
            // expirer finds the booking in the holds zset at its deadline and confirms
            // it there from MySQL. Should Redis have lost the booking's record (and
            // with it the holds entry), MySQL's truth is written back here.
            match redis.confirm(event, bid, user, &booking.seats).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    if let Err(err) = restore_checked_out(redis, pool, &booking).await {
                        tracing::warn!(event.id = %event, booking.id = %bid, error = %err,
                            "checkout committed; cannot restore Redis's lost record yet");
                    }
                }
                Err(err) => {
                    tracing::warn!(event.id = %event, booking.id = %bid, error = %err,
                        "checkout committed; Redis not told yet (the expirer will)");
                }
            }
        }
        Verdict::Again => {}
        Verdict::Expired { now } => {
            follow_expiry(redis, &booking, now).await;
            return Err(OpError::HoldExpired);
        }
    }
    booking.status = BookingStatus::Confirmed;
    booking.expires_at = None;
    booking.attendees = Some(checkout.attendees.clone());
    Ok(booking)
}

/// What MySQL decided about a checkout or an extension.
enum Verdict {
    /// Checked out (or extended) now.
    Done,
    /// The same checkout was made before.
    Again,
    /// The hold had run out: expired now (`now` true), or before.
    Expired { now: bool },
}

/// The MySQL half of [`checkout`]: one transaction under the seats' locks.
async fn checkout_in_mysql(
    pool: &MySqlPool,
    booking: &Booking,
    checkout: &Checkout,
    now_ms: u64,
) -> Result<Verdict, OpError> {
    let mut tx = pool.begin().await?;
    let row = locked_row(&mut tx, booking).await?;
    let verdict = match row.status {
        BookingStatus::Held if row.hold_ended(now_ms) => {
            expire_locked(&mut tx, &row).await?;
            Verdict::Expired { now: true }
        }
        BookingStatus::Held => {
            sqlx::query(
                "UPDATE bookings SET status = 'confirmed', payment_reference = ? WHERE id = ?",
            )
            .bind(&checkout.payment_reference)
            .bind(&row.id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE seats SET status = 'booked' WHERE event_id = ? AND booking_id = ?")
                .bind(&row.event_id)
                .bind(&row.id)
                .execute(&mut *tx)
                .await?;
            db::bookings::insert_attendees(&mut tx, &row.id, &checkout.attendees).await?;
            Verdict::Done
        }
        BookingStatus::Confirmed => {
            let (attendees, reference) = db::bookings::checkout_of(&mut tx, &row.id).await?;
            if attendees.is_empty() || !checkout.same_as(&attendees, reference.as_deref()) {
                return Err(OpError::BookingNotHeld(BookingStatus::Confirmed));
            }
            Verdict::Again
        }
        BookingStatus::Expired => Verdict::Expired { now: false },
        other => return Err(ended(other)),
    };
    tx.commit().await?;
    Ok(verdict)
}

/// Extends `booking`'s hold to `now + seconds`, capped at the claim's time plus the
/// event's `hold_max_seconds` (0 ends it at once: the expirer frees it within its
/// tick). MySQL first, then Redis. Answers the booking, held, with its new deadline.
pub async fn extend(
    redis: &RedisStore,
    pool: &MySqlPool,
    mut booking: Booking,
    seconds: u32,
    now_ms: u64,
) -> Result<Booking, OpError> {
    let event = db::events::find_event(pool, &booking.event_id)
        .await?
        .ok_or(OpError::EventNotFound)?;
    let max_ms = u64::from(event.hold_max_seconds) * 1000;
    let wanted = now_ms.saturating_add(u64::from(seconds) * 1000);
    let (verdict, deadline) = db::retry::retry_lock_conflicts("extend", || async {
        let mut tx = pool.begin().await?;
        let row = locked_row(&mut tx, &booking).await?;
        let verdict = match row.status {
            BookingStatus::Held if row.hold_ended(now_ms) => {
                expire_locked(&mut tx, &row).await?;
                (Verdict::Expired { now: true }, 0)
            }
            BookingStatus::Held => {
                let cap = match (row.claimed_ms, row.expires_ms) {
                    (Some(claimed), _) => claimed.saturating_add(max_ms),
                    (None, Some(expires)) => expires,
                    (None, None) => wanted,
                };
                let deadline = wanted.min(cap);
                sqlx::query("UPDATE bookings SET expires_ms = ? WHERE id = ?")
                    .bind(i64::try_from(deadline).unwrap_or(i64::MAX))
                    .bind(&row.id)
                    .execute(&mut *tx)
                    .await?;
                (Verdict::Done, deadline)
            }
            BookingStatus::Expired => (Verdict::Expired { now: false }, 0),
            BookingStatus::Confirmed => {
                return Err(OpError::BookingNotHeld(BookingStatus::Confirmed))
            }
            other => return Err(ended(other)),
        };
        tx.commit().await?;
        Ok::<_, OpError>(verdict)
    })
    .await?;
    match verdict {
        Verdict::Expired { now } => {
            follow_expiry(redis, &booking, now).await;
            Err(OpError::HoldExpired)
        }
        Verdict::Done | Verdict::Again => {
            telemetry::hold_action("extension");
            if let Err(err) = redis
                .extend(&booking.event_id, &booking.booking_id, deadline)
                .await
            {
                // The expirer reads MySQL's deadline before it expires anything.
                tracing::warn!(booking.id = %booking.booking_id, error = %err,
                    "extension committed; Redis not told yet");
            }
            booking.status = BookingStatus::Held;
            booking.expires_at = Some(Timestamp(deadline));
            Ok(booking)
        }
    }
}

/// What [`expire_due`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Expired now, this long after its deadline.
    Expired(Duration),
    /// Not due (extended meanwhile): Redis has the new deadline now.
    NotDue,
    /// MySQL had already ended it (checked out, cancelled, expired, rejected): Redis
    /// follows MySQL.
    Followed(BookingStatus),
    /// MySQL does not have the booking (yet): nothing to do.
    Unknown,
}

/// Expires the booking `booking_id` if its hold ran out by `now_ms` (the expirer's
/// call, for each booking found due in an event's holds zset or in MySQL), else brings
/// Redis in line with what MySQL has.
pub async fn expire_due(
    redis: &RedisStore,
    pool: &MySqlPool,
    booking_id: &str,
    now_ms: u64,
) -> Result<Expiry, OpError> {
    // Read once without locks for the seats to lock; decided on the read under them.
    let Some(first) = db::bookings::find_booking(pool, booking_id).await? else {
        return Ok(Expiry::Unknown);
    };
    let booking = first.clone().into_booking();
    let (row, expired_now) = db::retry::retry_lock_conflicts("expire", || async {
        let mut tx = pool.begin().await?;
        let row = locked_row(&mut tx, &booking).await?;
        let now = row.hold_ended(now_ms);
        if now {
            expire_locked(&mut tx, &row).await?;
        }
        tx.commit().await?;
        Ok::<_, OpError>((row, now))
    })
    .await?;
    let (event, bid, user) = (&row.event_id, &row.id, &row.user_id);
    Ok(match row.status {
        BookingStatus::Held if expired_now => {
            redis.expire(event, bid, user, &row.seats).await?;
            let lag =
                Duration::from_millis(now_ms.saturating_sub(row.expires_ms.unwrap_or(now_ms)));
            telemetry::hold_expired(lag);
            tracing::info!(event.id = %event, booking.id = %bid, lag_ms = lag.as_millis() as u64, "hold expired");
            Expiry::Expired(lag)
        }
        BookingStatus::Held => {
            if let Some(deadline) = row.expires_ms {
                redis.extend(event, bid, deadline).await?;
            }
            Expiry::NotDue
        }
        BookingStatus::Confirmed => {
            redis.confirm(event, bid, user, &row.seats).await?;
            Expiry::Followed(row.status)
        }
        BookingStatus::Cancelled => {
            redis.cancel(event, bid, user, &row.seats).await?;
            Expiry::Followed(row.status)
        }
        BookingStatus::Expired | BookingStatus::Rejected | BookingStatus::Pending => {
            // `cancel.lua` leaves a rejected booking alone but takes it off the holds.
            redis.expire(event, bid, user, &row.seats).await?;
            Expiry::Followed(row.status)
        }
    })
}

/// Writes a checked-out booking whose record Redis lost (a restart from older data, a
/// failover) back into Redis from MySQL: under the seats' locks, as the reconciler's
/// restore does, so a cancellation committed meanwhile is never undone in Redis.
async fn restore_checked_out(
    redis: &RedisStore,
    pool: &MySqlPool,
    booking: &Booking,
) -> Result<(), OpError> {
    let mut tx = pool.begin().await?;
    let row = locked_row(&mut tx, booking).await?;
    if row.status == BookingStatus::Confirmed {
        redis
            .restore_confirmed(&row.event_id, &row.id, &row.user_id, &row.seats)
            .await?;
        tracing::warn!(event.id = %row.event_id, booking.id = %row.id,
            "Redis had lost a checked-out booking's record; restored it from MySQL");
    }
    tx.commit().await?;
    Ok(())
}

/// Locks `booking`'s seats (sorted: the lock order) and reads its row under them.
/// A booking MySQL does not have yet is still pending (its claim is on its way).
async fn locked_row(conn: &mut MySqlConnection, booking: &Booking) -> Result<BookingRow, OpError> {
    let mut seats = booking.seats.clone();
    seats.sort_unstable();
    seats.dedup();
    db::bookings::lock_seats(&mut *conn, &booking.event_id, &seats).await?;
    db::bookings::find_booking(&mut *conn, &booking.booking_id)
        .await?
        .filter(|row| row.event_id == booking.event_id)
        .ok_or(OpError::BookingPending)
}

/// Marks a held booking expired and frees its seats, under the seats' locks.
async fn expire_locked(conn: &mut MySqlConnection, row: &BookingRow) -> Result<(), OpError> {
    db::bookings::release(conn, &row.event_id, &row.id, BookingStatus::Expired).await?;
    Ok(())
}

/// Redis follows an expiry MySQL has (made now by a checkout or an extension that came
/// too late, or before). A failure is logged: the booking is still in the holds zset,
/// and the expirer finishes the job.
async fn follow_expiry(redis: &RedisStore, booking: &Booking, now: bool) {
    let (event, bid) = (&booking.event_id, &booking.booking_id);
    match redis
        .expire(event, bid, &booking.user_id, &booking.seats)
        .await
    {
        Ok(_) if now => {
            telemetry::hold_expired(Duration::ZERO);
            tracing::info!(event.id = %event, booking.id = %bid, "hold expired (found at its checkout or extension)");
        }
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(event.id = %event, booking.id = %bid, error = %err, "expiry committed; Redis not told yet (the expirer will)");
        }
    }
}

/// The error for a booking that has ended in another way than expiry.
fn ended(status: BookingStatus) -> OpError {
    match status {
        BookingStatus::Cancelled => OpError::BookingCancelled,
        BookingStatus::Rejected => OpError::BookingRejected,
        BookingStatus::Expired => OpError::HoldExpired,
        BookingStatus::Pending => OpError::BookingPending,
        BookingStatus::Held | BookingStatus::Confirmed => OpError::BookingNotHeld(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attendee(seat: &str, name: &str, email: &str) -> Attendee {
        Attendee {
            seat: seat.into(),
            name: name.into(),
            email: email.into(),
        }
    }

    fn seats(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn e_mail_addresses_are_checked_for_their_shape() {
        for ok in ["a@b.co", "ann.lee+wc@example.org", "ü@exämple.de"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.org",
            "ann@example",
            "ann@@example.org",
            "ann lee@example.org",
            "ann@example..org",
            "ann@example.org\n",
            "<ann@example.org>",
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
        assert!(!is_email(&format!("{}@example.org", "a".repeat(250))));
    }

    #[test]
    fn a_checkout_names_every_seat_once() {
        let booking = seats(&["A1", "A2"]);
        let good = Checkout {
            attendees: vec![
                attendee("A2", "Bo", "bo@example.org"),
                attendee("A1", "Ann", "ann@example.org"),
            ],
            payment_reference: Some("pi_123".into()),
        };
        assert_eq!(good.validate(&booking), Ok(()));

        let mut missing = good.clone();
        missing.attendees.pop();
        assert!(missing
            .validate(&booking)
            .unwrap_err()
            .contains("\"A1\" has none"));

        let mut twice = good.clone();
        twice.attendees[1].seat = "A2".into();
        assert!(twice
            .validate(&booking)
            .unwrap_err()
            .contains("listed twice"));

        let mut stranger = good.clone();
        stranger.attendees[0].seat = "Z9".into();
        assert!(stranger
            .validate(&booking)
            .unwrap_err()
            .contains("not a seat"));

        for name in ["", "   ", &"n".repeat(201)] {
            let mut bad = good.clone();
            bad.attendees[0].name = name.to_owned();
            let err = bad.validate(&booking).unwrap_err();
            assert!(err.contains("name must be"), "{err}");
            assert!(
                !err.contains(name) || name.is_empty(),
                "no personal data in {err}"
            );
        }
        let mut email = good.clone();
        email.attendees[0].email = "bo at example".into();
        let err = email.validate(&booking).unwrap_err();
        assert!(
            err.contains("email") && !err.contains("bo at example"),
            "{err}"
        );

        let mut reference = good.clone();
        reference.payment_reference = Some(String::new());
        assert!(reference.validate(&booking).is_err());
    }

    #[test]
    fn a_repeated_checkout_is_the_same_in_any_order() {
        let a = Checkout {
            attendees: vec![
                attendee("A1", "Ann", "ann@example.org"),
                attendee("A2", "Bo", "bo@example.org"),
            ],
            payment_reference: None,
        };
        let reversed: Vec<Attendee> = a.attendees.iter().rev().cloned().collect();
        assert!(a.same_as(&reversed, None));
        assert!(!a.same_as(&reversed, Some("pi_1")));
        let mut other = reversed.clone();
        other[0].name = "Bob".into();
        assert!(!a.same_as(&other, None));
    }
}

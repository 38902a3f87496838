//! Validated identifiers and the vocabulary shared by the API, Redis and MySQL layers.
//!
//! Ids are checked once, where they enter the system, so the layers below can build
//! Redis keys and SQL from them without re-checking. Lengths count Unicode characters
//! and ids compare byte for byte, as the contract says.

pub mod claim;
pub mod event;
mod ids;

pub use ids::{BookingId, EventId, InvalidId, SeatId, UserId};

use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;

/// Longest event id: `[A-Za-z0-9_-]{1,64}`.
pub(crate) const EVENT_ID_MAX: usize = 64;
/// Longest seat id, in characters.
pub const SEAT_ID_MAX: usize = 32;
/// Longest user id (JWT `sub`), in characters.
pub(crate) const USER_ID_MAX: usize = 128;
/// Longest event name, in characters.
pub(crate) const EVENT_NAME_MAX: usize = 200;
/// Most seats an event may have.
pub(crate) const SEATS_MAX: usize = 100_000;
/// Highest per-user limit an event may set; also bounds what one claim can take.
pub const PER_USER_LIMIT_MAX: u32 = 100;
/// Per-user limit when the admin names none.
pub(crate) const PER_USER_LIMIT_DEFAULT: u32 = 4;

/// True when `id` is a well-formed event id (see [`EventId`]).
pub(crate) fn is_valid_event_id(id: &str) -> bool {
    EventId::is_valid(id)
}

/// True when `id` is a well-formed seat id (see [`SeatId`]).
pub fn is_valid_seat_id(id: &str) -> bool {
    SeatId::is_valid(id)
}

/// True when `id` is a well-formed user id (see [`UserId`]).
pub(crate) fn is_valid_user_id(id: &str) -> bool {
    UserId::is_valid(id)
}

/// True when `key` is a valid `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn is_valid_idempotency_key(key: &[u8]) -> bool {
    (1..=255).contains(&key.len()) && key.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The life of a booking. `Pending` lives only in Redis; the others are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Pending,
    /// Persisted and waiting for its checkout until `expires_at` (events with holds).
    Held,
    Confirmed,
    Rejected,
    Cancelled,
    /// A hold that was not checked out in time: its seats are available again.
    Expired,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// True for the statuses whose JSON shows `expires_at` (on an event with holds).
    pub fn has_deadline(self) -> bool {
        matches!(self, Self::Pending | Self::Held | Self::Expired)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "held" => Self::Held,
            "confirmed" => Self::Confirmed,
            "rejected" => Self::Rejected,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A seat's public status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeatStatus {
    Available,
    Pending,
    /// Held for a booking that waits for its checkout.
    Held,
    Booked,
}

impl SeatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Pending => "pending",
            Self::Held => "held",
            Self::Booked => "booked",
        }
    }
}

/// What holds a seat: nothing, a pending claim, a held booking, or a booking. Redis
/// keeps one per seat (spelled in `claims::state`, the only code that reads or writes
/// that text); MySQL's seat rows know only the persisted ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SeatState {
    /// Free to claim.
    Available,
    /// Held by this booking's claim, not yet settled.
    Pending(String),
    /// Held by this booking, persisted and waiting for its checkout.
    Held(String),
    /// Booked by this booking.
    Booked(String),
}

impl SeatState {
    /// The status the public seat map shows for this state.
    pub fn status(&self) -> SeatStatus {
        match self {
            Self::Available => SeatStatus::Available,
            Self::Pending(_) => SeatStatus::Pending,
            Self::Held(_) => SeatStatus::Held,
            Self::Booked(_) => SeatStatus::Booked,
        }
    }

    /// The booking that holds the seat, pending or booked.
    pub fn booking(&self) -> Option<&str> {
        match self {
            Self::Available => None,
            Self::Pending(bid) | Self::Held(bid) | Self::Booked(bid) => Some(bid),
        }
    }
}

/// A booking as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Booking {
    /// A UUID (v7).
    #[schema(format = "uuid")]
    pub booking_id: String,
    pub event_id: String,
    /// The JWT `sub` of the user who claimed it.
    pub user_id: String,
    pub seats: Vec<String>,
    pub status: BookingStatus,
    /// Only when `rejected`: why (`seats_taken`, `event_not_found`,
    /// `deadline_exceeded`, `persist_failed`, `malformed_claim`,
    /// `lost_in_redis_failover`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// Events with holds only: when the hold ends unless checked out (RFC 3339, UTC),
    /// on `pending` and `held` bookings (and kept on `expired` ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = "date-time")]
    pub expires_at: Option<Timestamp>,
    /// After a checkout, to its owner: one attendee per seat.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub attendees: Option<Vec<Attendee>>,
}

/// The attendee of one seat, given at checkout. Personal data: kept in MySQL only,
/// shown to the booking's owner only, never logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attendee {
    /// A seat of the booking.
    pub seat: String,
    /// 1 to 200 characters.
    pub name: String,
    /// An e-mail address (at most 254 characters).
    pub email: String,
}

/// The longest hold an event may have, and the most its holds may be extended to
/// (seconds after the claim).
pub const HOLD_SECONDS_MAX: u32 = 7200;

/// An instant, milliseconds since the Unix epoch, that serialises as RFC 3339 in UTC
/// with milliseconds (`2026-12-02T17:31:12.345Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn millis(self) -> u64 {
        self.0
    }

    /// The RFC 3339 text.
    pub fn rfc3339(self) -> String {
        let at = time::OffsetDateTime::UNIX_EPOCH
            + time::Duration::milliseconds(i64::try_from(self.0).unwrap_or(i64::MAX / 2));
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        at.format(&format)
            .unwrap_or_else(|_| "9999-12-31T23:59:59.999Z".to_owned())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .into()
    }
}

impl ToSchema for Timestamp {}

/// Why the reconciler rejected a claim: a booking's `reason`, spelled on the wire, in
/// MySQL and in Redis as [`RejectReason::as_str`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// MySQL has one of the seats booked by another booking.
    SeatsTaken,
    /// The event or one of the seats does not exist in MySQL.
    EventNotFound,
    /// The claim could not be persisted before the claim deadline.
    DeadlineExceeded,
    /// MySQL refused the booking for good (a constraint, say).
    PersistFailed,
    /// The outbox entry could not be decoded.
    MalformedClaim,
    /// Redis lost the claim's booking record after acknowledging the claim (a
    /// failover, a restart from older data, an eviction): nothing is left from which
    /// to persist it safely (its tally and idempotency record may be gone too).
    LostInRedisFailover,
}

impl RejectReason {
    /// Every reason, for lookups and tests.
    pub(crate) const ALL: [Self; 6] = [
        Self::SeatsTaken,
        Self::EventNotFound,
        Self::DeadlineExceeded,
        Self::PersistFailed,
        Self::MalformedClaim,
        Self::LostInRedisFailover,
    ];

    /// The reason's wire spelling (`seats_taken`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SeatsTaken => "seats_taken",
            Self::EventNotFound => "event_not_found",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::PersistFailed => "persist_failed",
            Self::MalformedClaim => "malformed_claim",
            Self::LostInRedisFailover => "lost_in_redis_failover",
        }
    }

    /// The reason spelled `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_follow_the_contract() {
        assert!(is_valid_event_id("wc-2026_eu"));
        assert!(is_valid_event_id(&"a".repeat(64)));
        assert!(!is_valid_event_id(&"a".repeat(65)));
        assert!(!is_valid_event_id(""));
        assert!(!is_valid_event_id("wc 2026"));
        assert!(!is_valid_event_id("wc:2026"));
        assert!(!is_valid_event_id("é"));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(is_valid_seat_id(&"é".repeat(32)));
        assert!(!is_valid_seat_id(&"é".repeat(33)));
        assert!(is_valid_user_id(&"ü".repeat(128)));
        assert!(!is_valid_user_id(""));
    }

    #[test]
    fn reject_reasons_keep_their_wire_spelling() {
        let wire = [
            "seats_taken",
            "event_not_found",
            "deadline_exceeded",
            "persist_failed",
            "malformed_claim",
            "lost_in_redis_failover",
        ];
        for (reason, text) in RejectReason::ALL.into_iter().zip(wire) {
            assert_eq!(reason.as_str(), text);
            assert_eq!(reason.to_string(), text);
            assert_eq!(serde_json::to_value(reason).unwrap(), text);
            assert_eq!(RejectReason::parse(text), Some(reason));
        }
        assert_eq!(RejectReason::parse("Seats_Taken"), None);
        assert_eq!(RejectReason::parse(""), None);
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc_with_milliseconds() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_796_232_672_345).rfc3339(),
            "2026-12-02T17:31:12.345Z"
        );
        assert_eq!(
            serde_json::to_value(Timestamp(1_000)).unwrap(),
            "1970-01-01T00:00:01.000Z"
        );
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(is_valid_idempotency_key(b"abc-123_~!"));
        assert!(is_valid_idempotency_key(&[b'k'; 255]));
        assert!(!is_valid_idempotency_key(&[b'k'; 256]));
        assert!(!is_valid_idempotency_key(b""));
        assert!(!is_valid_idempotency_key(b"has space"));
        assert!(!is_valid_idempotency_key("é".as_bytes()));
    }
}

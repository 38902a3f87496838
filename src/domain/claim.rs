//! A claim as every claim strategy sees it: what is asked for and what it came to.
//!
//! The Redis claim script and the MySQL baseline take the same [`ClaimRequest`] and
//! answer the same [`ClaimOutcome`], so the handlers do not know which one ran.

/// One claim request, as a claim strategy takes it.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub event_id: &'a crate::domain::EventId,
    pub user_id: &'a crate::domain::UserId,
    /// UUID v7, made by the caller so the script needs no randomness.
    pub booking_id: &'a str,
    pub selection: Selection<'a>,
    /// `(Idempotency-Key, fingerprint of the request body)`.
    pub idempotency: Option<(&'a str, &'a str)>,
    pub now_ms: u64,
}

/// What a claim asks for.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// These seats, all or nothing.
    Seats(&'a [crate::domain::SeatId]),
    /// The lowest-ordinal free seats.
    Quantity(u32),
}

/// An event as the public endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    pub name: String,
    pub per_user_limit: u32,
    pub seats_total: u64,
    pub available: u64,
    pub pending: u64,
    pub booked: u64,
    /// Seats held for their checkout.
    pub held: u64,
    /// The event's hold (0: none).
    pub hold_seconds: u32,
}

/// What a claim came to: what `claim.lua` decided or, with the `mysql` strategy, what
/// the synchronous transaction did (`Confirmed`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClaimOutcome {
    /// The seats are held for this booking; the claim is in the outbox.
    Pending {
        booking_id: String,
        seats: Vec<String>,
        /// On an event with holds: when the hold ends unless checked out (ms since
        /// the epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_ms: Option<u64>,
    },
    /// Booked and committed in MySQL at once (the `mysql` strategy only).
    Confirmed {
        booking_id: String,
        seats: Vec<String>,
    },
    /// These requested seats are taken (pending or booked).
    SeatsUnavailable(Vec<String>),
    /// Fewer free seats than the quantity asked for.
    SoldOut,
    /// The user's seats would exceed the event's per-user limit (the limit).
    UserLimit(u32),
    /// These requested seats do not exist in the event.
    UnknownSeats(Vec<String>),
    /// No such event, or it is not on sale.
    EventNotFound,
    /// The idempotency key was used before by this user with another request.
    KeyReused,
    /// The user claims faster than the per-user claim rate allows in this event: the
    /// same claim would be admitted in this many milliseconds (at least 1). Nothing
    /// was written, the idempotency key included.
    RateLimited { retry_after_ms: u64 },
    /// The idempotency key was used before with this request: its first outcome, and
    /// the status code the first answer had when that was not the outcome's own (a
    /// `Prefer: wait` claim answered 201 or 409 instead of 202).
    Replay {
        first: Box<ClaimOutcome>,
        answered: Option<u16>,
    },
}

//! Operations that span Redis and MySQL: warming an event, auditing it, cancelling a
//! booking, checking out, extending and expiring a hold. Each keeps the rule that MySQL is the system of record and Redis never
//! offers a seat MySQL has booked, nor frees one a pending claim holds.

pub mod audit;
pub mod cancel;
pub mod fence;
pub mod hold;
pub mod import;
pub mod warm;

use crate::claims::StoreError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("event not found")]
    EventNotFound,
    #[error("booking not found")]
    BookingNotFound,
    #[error("booking was rejected")]
    BookingRejected,
    #[error("booking was cancelled")]
    BookingCancelled,
    #[error("the hold has expired")]
    HoldExpired,
    #[error("booking is not held: {0}")]
    BookingNotHeld(crate::domain::BookingStatus),
    #[error("booking is not persisted yet")]
    BookingPending,
    #[error("{0}")]
    InvalidCheckout(String),
    #[error("mysql: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] StoreError),
}

/// Seats per `warm.lua` call: large enough to be quick, small enough that no single
/// call blocks Redis for long.
pub const WARM_CHUNK: usize = 2000;

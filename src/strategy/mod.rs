//! The claim strategy: the one interface through which the handlers and the live seat
//! map book seats and read an event.
//!
//! [`RedisStrategy`] is the product: the claim script arbitrates in Redis, appends the
//! claim to the event's outbox, and the reconciler persists it later. [`MysqlStrategy`]
//! is the benchmarks' baseline (`SEATGATE_CLAIM_STRATEGY=mysql`): one MySQL transaction
//! per claim, booked at once. Nothing above this module asks which one it has.

mod mysql;
mod redis;

use std::collections::HashMap;

use crate::claims::StoreError;
use crate::domain::claim::{ClaimOutcome, ClaimRequest, EventSummary};
use crate::domain::{Booking, SeatStatus};

pub use self::mysql::MysqlStrategy;
pub use self::redis::{OutboxInfo, RedisStrategy};

/// Why a strategy call failed: the store it needed did not answer as it should. All of
/// these are "try again later" for a client.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    #[error(transparent)]
    Redis(#[from] StoreError),
    #[error(transparent)]
    Mysql(#[from] sqlx::Error),
}

/// How claims are made and events read. Cheap to share: the gateway holds one behind
/// an `Arc` for its whole life.
#[async_trait::async_trait]
pub trait Strategy: Send + Sync + 'static {
    /// Makes one claim (or replays it, under an Idempotency-Key used before).
    async fn claim(&self, request: &ClaimRequest<'_>) -> Result<ClaimOutcome, StrategyError>;

    /// A booking as it is now, or `None` when this strategy's store has none.
    async fn booking(
        &self,
        event_id: &str,
        booking_id: &str,
    ) -> Result<Option<Booking>, StrategyError>;

    /// The event's name and counters; `None` when it is not (or no longer) on sale.
    async fn event_summary(&self, event_id: &str) -> Result<Option<EventSummary>, StrategyError>;

    /// Every seat and its status, in best-available order.
    async fn seats(&self, event_id: &str) -> Result<Vec<(String, SeatStatus)>, StrategyError>;

    /// The seats' current statuses, by seat id, in any order. May be read in steps
    /// rather than as one snapshot: a seat that changes meanwhile is seen in one state or
    /// the other, and caught up on the next read.
    async fn statuses(&self, event_id: &str) -> Result<HashMap<String, SeatStatus>, StrategyError>;

    /// The event's outbox of unsettled claims; `None` when claims do not go through one.
    async fn outbox(&self, event_id: &str) -> Result<Option<OutboxInfo>, StrategyError>;
}

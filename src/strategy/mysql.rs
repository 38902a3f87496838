//! The baseline strategy: every claim is one MySQL transaction, booked (or refused) at
//! once; the reads come from MySQL too. Nothing is ever pending here.

use sqlx::MySqlPool;
use std::collections::HashMap;

use super::{OutboxInfo, Strategy, StrategyError};
use crate::db::{bookings, sync_claim};
use crate::domain::claim::{ClaimOutcome, ClaimRequest, EventSummary};
use crate::domain::{Booking, SeatStatus};

/// Claims booked synchronously in MySQL.
#[derive(Clone)]
pub struct MysqlStrategy {
    db: MySqlPool,
}

impl MysqlStrategy {
    pub fn new(db: MySqlPool) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl Strategy for MysqlStrategy {
    async fn claim(&self, request: &ClaimRequest<'_>) -> Result<ClaimOutcome, StrategyError> {
        Ok(sync_claim::claim(&self.db, request).await?)
    }

    async fn booking(
        &self,
        _event_id: &str,
        booking_id: &str,
    ) -> Result<Option<Booking>, StrategyError> {
        let row = bookings::find_booking(&self.db, booking_id).await?;
        Ok(row.map(bookings::BookingRow::into_booking))
    }

    async fn event_summary(&self, event_id: &str) -> Result<Option<EventSummary>, StrategyError> {
        Ok(sync_claim::event_summary(&self.db, event_id).await?)
    }

    async fn seats(&self, event_id: &str) -> Result<Vec<(String, SeatStatus)>, StrategyError> {
        Ok(sync_claim::seat_map(&self.db, event_id).await?)
    }

    async fn statuses(&self, event_id: &str) -> Result<HashMap<String, SeatStatus>, StrategyError> {
        Ok(self.seats(event_id).await?.into_iter().collect())
    }

    async fn outbox(&self, _event_id: &str) -> Result<Option<OutboxInfo>, StrategyError> {
        Ok(None)
    }
}

//! What the live map reads: an event's counters and seats, through the claim strategy
//! (Redis, the truth of the hot path, or MySQL under the baseline). Reads only; nothing
//! here writes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::stream_entry_age;
use crate::domain::SeatStatus;
use crate::strategy::Strategy;

/// The event's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub seats_total: u64,
    pub available: u64,
    pub pending: u64,
    /// Seats held for their checkout (events with holds).
    pub held: u64,
    pub booked: u64,
    /// Claims accepted since the event was warmed (the outbox's `entries-added`);
    /// `None` under the mysql strategy, which has no outbox.
    pub claims_total: Option<u64>,
    /// Claims not yet settled by the reconciler (the outbox's length).
    pub outbox_length: u64,
    /// Age of the oldest unsettled claim, in milliseconds (0 when none).
    pub reconciler_lag_ms: u64,
}

/// One read of an event: its name and counters.
#[derive(Debug, Clone)]
pub struct Reading {
    pub name: String,
    pub counters: Counters,
}

/// The strategy the live map reads through, and the reading it assembles.
#[derive(Clone)]
pub struct Source(Arc<dyn Strategy>);

impl Source {
    pub fn new(strategy: Arc<dyn Strategy>) -> Self {
        Self(strategy)
    }

    /// Every seat and its status, in best-available order.
    pub async fn seats(&self, event_id: &str) -> anyhow::Result<Vec<(String, SeatStatus)>> {
        Ok(self.0.seats(event_id).await?)
    }

    /// The seats' current statuses, by seat id, in any order (see [`Strategy::statuses`]).
    pub async fn statuses(&self, event_id: &str) -> anyhow::Result<HashMap<String, SeatStatus>> {
        Ok(self.0.statuses(event_id).await?)
    }

    /// The event's name and counters; `None` when it is not (or no longer) on sale.
    pub async fn read(&self, event_id: &str) -> anyhow::Result<Option<Reading>> {
        let Some(summary) = self.0.event_summary(event_id).await? else {
            return Ok(None);
        };
        let outbox = self.0.outbox(event_id).await?;
        let counters = Counters {
            seats_total: summary.seats_total,
            available: summary.available,
            pending: summary.pending,
            held: summary.held,
            booked: summary.booked,
            claims_total: outbox.as_ref().map(|o| o.entries_added),
            outbox_length: outbox.as_ref().map_or(0, |o| o.length),
            reconciler_lag_ms: outbox
                .and_then(|o| o.first_entry_id)
                .map_or(0, |id| stream_entry_age(&id).as_millis() as u64),
        };
        Ok(Some(Reading {
            name: summary.name,
            counters,
        }))
    }
}

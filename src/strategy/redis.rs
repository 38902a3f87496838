//! The product's strategy: the claim script arbitrates in Redis and appends each claim
//! to the event's outbox in the same step; the reconciler persists it later. Reads come
//! from Redis, the truth of the hot path.

use redis::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Strategy, StrategyError};
use crate::claims::posture::PostureGate;
use crate::claims::replication::{acknowledges_pending, GroupCommit, ReplicationError};
use crate::claims::{state, RedisStore, StoreError};
use crate::domain::claim::{ClaimOutcome, ClaimRequest, EventSummary};
use crate::domain::{Booking, SeatStatus};

/// Seats per `HSCAN` step: small steps keep each Redis call short, so a 10,000-seat
/// map is read without blocking claims for milliseconds the way one `HGETALL` would.
const SCAN_COUNT: usize = 1000;
/// Longest one seat map or outbox read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Claims arbitrated by Redis.
#[derive(Clone)]
pub struct RedisStrategy {
    redis: RedisStore,
    /// With `SEATGATE_REDIS_MIN_REPLICAS` >= 1: the `WAIT` rounds a claim answered
    /// 202 waits for. `None` costs a claim nothing.
    group_commit: Option<GroupCommit>,
    /// When the gateway started before Redis answered: the posture check that claims
    /// wait for (503 until it passes). `None` once checked at startup.
    posture_gate: Option<Arc<PostureGate>>,
}

impl RedisStrategy {
    pub fn new(redis: RedisStore) -> Self {
        Self {
            redis,
            group_commit: None,
            posture_gate: None,
        }
    }

    /// Claims are answered 503 until `gate`'s posture check has passed.
    pub fn with_posture_gate(mut self, gate: Option<Arc<PostureGate>>) -> Self {
        self.posture_gate = gate;
        self
    }

    /// Claims that would be answered 202 wait until `group_commit`'s replicas hold
    /// them (or fail 503 when they do not confirm in time).
    pub fn with_group_commit(mut self, group_commit: Option<GroupCommit>) -> Self {
        self.group_commit = group_commit;
        self
    }
}

#[async_trait::async_trait]
impl Strategy for RedisStrategy {
    async fn claim(&self, request: &ClaimRequest<'_>) -> Result<ClaimOutcome, StrategyError> {
        if let Some(gate) = &self.posture_gate {
            gate.ensure().await?;
        }
        let (outcome, generation) = self.redis.claim_on_connection(request).await?;
        if let Some(group_commit) = &self.group_commit {
            // Only a 202 promises that a claim is held; a 409 or 422 promises nothing
            // that a failover could break, so it is not held up.
            if acknowledges_pending(&outcome) {
                group_commit
                    .covered()
                    .await
                    .map_err(StoreError::Replication)?;
                // The round covered the writes of the node its connection reached. If
                // that is not the connection the claim ran on (the old one broke, and
                // the new one may reach a promoted replica that never saw the claim),
                // nothing says the claim is on a replica. Connections are numbered in
                // order, so an unchanged number after the round means the round ran on
                // the claim's connection.
                if self.redis.primary().generation() != Some(generation) {
                    return Err(StoreError::Replication(ReplicationError::WaitFailed(
                        "the Redis connection changed between the claim and its WAIT".into(),
                    ))
                    .into());
                }
            }
        }
        Ok(outcome)
    }

    async fn booking(
        &self,
        event_id: &str,
        booking_id: &str,
    ) -> Result<Option<Booking>, StrategyError> {
        Ok(self.redis.booking(event_id, booking_id).await?)
    }

    async fn event_summary(&self, event_id: &str) -> Result<Option<EventSummary>, StrategyError> {
        Ok(self.redis.event_summary(event_id).await?)
    }

    async fn seats(&self, event_id: &str) -> Result<Vec<(String, SeatStatus)>, StrategyError> {
        Ok(self
            .redis
            .seat_states(event_id)
            .await?
            .into_iter()
            .map(|s| {
                let status = s.state.status();
                (s.seat, status)
            })
            .collect())
    }

    /// A sequence of short `HSCAN` steps, not one snapshot.
    async fn statuses(&self, event_id: &str) -> Result<HashMap<String, SeatStatus>, StrategyError> {
        let key = self.redis.keys(event_id).seats();
        let mut conn = self.redis.connection();
        let mut cursor: u64 = 0;
        let mut out = HashMap::new();
        loop {
            let (next, pairs): (u64, Vec<(String, String)>) = bounded(
                redis::cmd("HSCAN")
                    .arg(&key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut conn),
            )
            .await?;
            for (seat, state) in pairs {
                let status = state::status_of(&state);
                out.insert(seat, status);
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn outbox(&self, event_id: &str) -> Result<Option<OutboxInfo>, StrategyError> {
        // Warming creates the outbox (with its consumer group), so an event on sale has
        // one.
        let mut conn = self.redis.connection();
        let info: Value = bounded(
            redis::cmd("XINFO")
                .arg("STREAM")
                .arg(self.redis.keys(event_id).outbox())
                .query_async(&mut conn),
        )
        .await?;
        Ok(Some(OutboxInfo::parse(info)))
    }
}

/// A read of the live map's own, bounded by [`READ_TIMEOUT`].
async fn bounded<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(READ_TIMEOUT, fut).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Timeout(READ_TIMEOUT)),
    }
}

/// An event's outbox as `XINFO STREAM <outbox>` describes it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutboxInfo {
    pub length: u64,
    pub(crate) entries_added: u64,
    /// The oldest entry's id: the oldest unsettled claim (settled entries are deleted
    /// from the outbox).
    pub(crate) first_entry_id: Option<String>,
}

impl OutboxInfo {
    /// Reads the reply's field/value pairs. Redis before 7.0 has no `entries-added`;
    /// it then counts as 0.
    pub fn parse(reply: Value) -> Self {
        let fields: HashMap<String, Value> = redis::from_redis_value(reply).unwrap_or_default();
        let number = |field: &str| {
            fields
                .get(field)
                .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                .unwrap_or(0)
        };
        Self {
            length: number("length"),
            entries_added: number("entries-added"),
            // `[id, [field, value, ...]]`, or nil when the stream is empty.
            first_entry_id: fields
                .get("first-entry")
                .and_then(|v| redis::from_redis_value_ref::<(String, Value)>(v).ok())
                .map(|(id, _)| id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `XINFO STREAM` reply: field names as bulk strings, each before its value.
    fn xinfo(fields: Vec<(&str, Value)>) -> Value {
        let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        Value::Array(
            fields
                .into_iter()
                .flat_map(|(name, value)| [text(name), value])
                .collect(),
        )
    }

    fn entry(id: &str) -> Value {
        Value::Array(vec![
            Value::BulkString(id.as_bytes().to_vec()),
            Value::Array(vec![]),
        ])
    }

    #[test]
    fn reads_the_outbox_length_total_and_oldest_entry() {
        let reply = xinfo(vec![
            ("length", Value::Int(3)),
            ("entries-added", Value::Int(42)),
            ("first-entry", entry("1767225600123-0")),
            ("last-entry", entry("1767225600999-4")),
        ]);
        assert_eq!(
            OutboxInfo::parse(reply),
            OutboxInfo {
                length: 3,
                entries_added: 42,
                first_entry_id: Some("1767225600123-0".into()),
            }
        );
    }

    #[test]
    fn an_empty_outbox_has_no_oldest_entry() {
        let reply = xinfo(vec![
            ("length", Value::Int(0)),
            ("entries-added", Value::Int(7)),
            ("first-entry", Value::Nil),
        ]);
        let info = OutboxInfo::parse(reply);
        assert_eq!((info.length, info.entries_added), (0, 7));
        assert_eq!(info.first_entry_id, None);
        assert_eq!(OutboxInfo::parse(Value::Nil), OutboxInfo::default());
    }
}

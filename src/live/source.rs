//! Where the live seat map reads from: Redis under the redis strategy (the truth of
//! the hot path), MySQL under the mysql baseline. Reads only; nothing here writes.

use redis::Value;
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::time::Duration;

use crate::claims::{state, RedisStore};
use crate::config::ClaimStrategy;
use crate::db::sync_claim;
use crate::domain::SeatStatus;
use crate::reconciler::entry_age;

/// Seats per `HSCAN` step: small steps keep each Redis call short, so a 10,000-seat
/// map is read without blocking claims for milliseconds the way one `HGETALL` would.
const SCAN_COUNT: usize = 1000;
/// Longest one read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The event's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub seats_total: u64,
    pub available: u64,
    pub pending: u64,
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

#[derive(Clone)]
pub enum Source {
    Redis(RedisStore),
    Mysql(MySqlPool),
}

impl Source {
    pub fn new(strategy: ClaimStrategy, redis: RedisStore, db: MySqlPool) -> Self {
        match strategy {
            ClaimStrategy::Redis => Self::Redis(redis),
            ClaimStrategy::Mysql => Self::Mysql(db),
        }
    }

    /// Every seat and its status, in best-available order.
    pub async fn seats(&self, event_id: &str) -> anyhow::Result<Vec<(String, SeatStatus)>> {
        Ok(match self {
            Self::Redis(redis) => redis
                .seat_states(event_id)
                .await?
                .into_iter()
                .map(|s| {
                    let status = s.state.status();
                    (s.seat, status)
                })
                .collect(),
            Self::Mysql(db) => sync_claim::seat_map(db, event_id)
                .await?
                .into_iter()
                .map(|(seat, status)| {
                    let status = if status == "booked" {
                        SeatStatus::Booked
                    } else {
                        SeatStatus::Available
                    };
                    (seat, status)
                })
                .collect(),
        })
    }

    /// The seats' current statuses, by seat id, in any order. Under Redis this is a
    /// sequence of short `HSCAN` steps, not one snapshot: a seat that changes during
    /// the scan is seen in one state or the other and caught up on the next read.
    pub async fn statuses(&self, event_id: &str) -> anyhow::Result<HashMap<String, SeatStatus>> {
        match self {
            Self::Redis(redis) => {
                let key = redis.keys(event_id).seats();
                let mut conn = redis.connection();
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
            Self::Mysql(_) => Ok(self.seats(event_id).await?.into_iter().collect()),
        }
    }

    /// The event's name and counters; `None` when it is not (or no longer) on sale.
    pub async fn read(&self, event_id: &str) -> anyhow::Result<Option<Reading>> {
        let (summary, outbox) = match self {
            Self::Redis(redis) => {
                let Some(summary) = redis.event_summary(event_id).await? else {
                    return Ok(None);
                };
                // Warming creates the outbox (with its consumer group), so an event on
                // sale has one.
                let mut conn = redis.connection();
                let info: Value = bounded(
                    redis::cmd("XINFO")
                        .arg("STREAM")
                        .arg(redis.keys(event_id).outbox())
                        .query_async(&mut conn),
                )
                .await?;
                (summary, Some(OutboxInfo::parse(info)))
            }
            Self::Mysql(db) => match sync_claim::event_summary(db, event_id).await? {
                Some(summary) => (summary, None),
                None => return Ok(None),
            },
        };
        let counters = Counters {
            seats_total: summary.seats_total,
            available: summary.available,
            pending: summary.pending,
            booked: summary.booked,
            claims_total: outbox.as_ref().map(|o| o.entries_added),
            outbox_length: outbox.as_ref().map_or(0, |o| o.length),
            reconciler_lag_ms: outbox
                .and_then(|o| o.first_entry_id)
                .map_or(0, |id| entry_age(&id).as_millis() as u64),
        };
        Ok(Some(Reading {
            name: summary.name,
            counters,
        }))
    }
}

async fn bounded<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(READ_TIMEOUT, fut).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("Redis read timed out after {READ_TIMEOUT:?}"),
    }
}

/// What the live map needs from `XINFO STREAM <outbox>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutboxInfo {
    pub length: u64,
    pub entries_added: u64,
    /// The oldest entry's id: the oldest unsettled claim (settled entries are deleted
    /// from the outbox).
    pub first_entry_id: Option<String>,
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

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_the_outbox_length_total_and_oldest_entry() {
        let reply = Value::Array(vec![
            bulk("length"),
            Value::Int(3),
            bulk("entries-added"),
            Value::Int(42),
            bulk("first-entry"),
            Value::Array(vec![bulk("1767225600123-0"), Value::Array(vec![])]),
            bulk("last-entry"),
            Value::Array(vec![bulk("1767225600999-4"), Value::Array(vec![])]),
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
        let reply = Value::Array(vec![
            bulk("length"),
            Value::Int(0),
            bulk("entries-added"),
            Value::Int(7),
            bulk("first-entry"),
            Value::Nil,
        ]);
        let info = OutboxInfo::parse(reply);
        assert_eq!((info.length, info.entries_added), (0, 7));
        assert_eq!(info.first_entry_id, None);
        assert_eq!(OutboxInfo::parse(Value::Nil), OutboxInfo::default());
    }
}

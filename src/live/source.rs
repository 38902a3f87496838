//! Where the live seat map reads from: Redis under the redis strategy (the truth of
//! the hot path), MySQL under the mysql baseline. Reads only; nothing here writes.

use redis::Value;
use sqlx::MySqlPool;
use std::collections::HashMap;
use std::time::Duration;

use crate::claims::RedisStore;
use crate::config::ClaimStrategy;
use crate::db::sync_claim;
use crate::domain::SeatStatus;

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

/// One read of the counters; `None` when the event is not (or no longer) on sale.
pub type CountersRead = Option<Counters>;

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
                    let status = SeatStatus::from_state(&s.state);
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
                        let status = SeatStatus::from_state(&state);
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

    pub async fn counters(&self, event_id: &str) -> anyhow::Result<CountersRead> {
        match self {
            Self::Redis(redis) => {
                let Some(summary) = redis.event_summary(event_id).await? else {
                    return Ok(None);
                };
                let mut conn = redis.connection();
                let info: Value = bounded(
                    redis::cmd("XINFO")
                        .arg("STREAM")
                        .arg(redis.keys(event_id).outbox())
                        .query_async(&mut conn),
                )
                .await
                // No outbox yet (nothing claimed since an old warm): nothing pending.
                .unwrap_or(Value::Nil);
                let outbox = OutboxInfo::parse(&info);
                Ok(Some(Counters {
                    seats_total: summary.seats_total,
                    available: summary.available,
                    pending: summary.pending,
                    booked: summary.booked,
                    claims_total: Some(outbox.entries_added),
                    outbox_length: outbox.length,
                    reconciler_lag_ms: outbox
                        .first_entry_ms
                        .map(|ms| now_ms().saturating_sub(ms))
                        .unwrap_or(0),
                }))
            }
            Self::Mysql(db) => {
                Ok(sync_claim::event_summary(db, event_id)
                    .await?
                    .map(|s| Counters {
                        seats_total: s.seats_total,
                        available: s.available,
                        pending: s.pending,
                        booked: s.booked,
                        claims_total: None,
                        outbox_length: 0,
                        reconciler_lag_ms: 0,
                    }))
            }
        }
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the live map needs from `XINFO STREAM <outbox>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutboxInfo {
    pub length: u64,
    pub entries_added: u64,
    /// Milliseconds part of the oldest entry's id: when the oldest unsettled claim
    /// was made (settled entries are deleted from the outbox).
    pub first_entry_ms: Option<u64>,
}

impl OutboxInfo {
    /// Reads the reply, a flat list of field/value pairs (RESP2) or a map (RESP3).
    /// Redis before 7.0 has no `entries-added`; it then counts as 0.
    pub fn parse(reply: &Value) -> Self {
        let pairs: Vec<(&Value, &Value)> = match reply {
            Value::Array(items) => items.chunks_exact(2).map(|p| (&p[0], &p[1])).collect(),
            Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
            _ => Vec::new(),
        };
        let mut info = Self::default();
        for (field, value) in pairs {
            match text(field).as_deref() {
                Some("length") => info.length = int(value).unwrap_or(0),
                Some("entries-added") => info.entries_added = int(value).unwrap_or(0),
                Some("first-entry") => {
                    info.first_entry_ms = match value {
                        Value::Array(entry) => entry
                            .first()
                            .and_then(text)
                            .and_then(|id| id.split('-').next()?.parse().ok()),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        info
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
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
            OutboxInfo::parse(&reply),
            OutboxInfo {
                length: 3,
                entries_added: 42,
                first_entry_ms: Some(1_767_225_600_123),
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
        let info = OutboxInfo::parse(&reply);
        assert_eq!((info.length, info.entries_added), (0, 7));
        assert_eq!(info.first_entry_ms, None);
        assert_eq!(OutboxInfo::parse(&Value::Nil), OutboxInfo::default());
    }
}

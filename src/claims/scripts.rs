//! The Lua scripts of `lua/`, embedded once, and their replies as Rust types.
//!
//! [`redis::Script`] runs `EVALSHA` and falls back to `EVAL` (which loads the script)
//! when Redis answers `NOSCRIPT`, e.g. after a restart or `SCRIPT FLUSH`. The SHA1 is
//! computed once per process behind a `LazyLock`. Replies are parsed here into enums,
//! so no caller ever matches on raw strings.

use redis::{Script, Value};
use std::sync::LazyLock;

use super::StoreError;
use crate::domain::claim::ClaimOutcome;
use crate::domain::BookingStatus;

pub static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/claim.lua")));
/// True when `claim.lua` refused to run on a node other than the one its event was
/// verified on (`{"fenced"}`, on a cluster).
pub(crate) fn is_fenced(value: &Value) -> bool {
    matches!(value, Value::Array(items)
        if items.len() == 1 && matches!(&items[0], Value::BulkString(tag) if tag == b"fenced"))
}

pub static MARK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/mark.lua")));
pub(crate) static CONFIRM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/confirm.lua")));
pub(crate) static REJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../../lua/lib/ordinals.lua"),
        include_str!("../../lua/reject.lua")
    ))
});
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../../lua/lib/ordinals.lua"),
        include_str!("../../lua/cancel.lua")
    ))
});
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/extend.lua")));
pub(crate) static ANSWERED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/answered.lua")));
pub(crate) static WARM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/warm.lua")));
pub(crate) static WARM_FINISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/warm_finish.lua")));

impl ClaimOutcome {
    /// Reads `claim.lua`'s reply. Any reply the script cannot give is an error, never a
    /// panic (public for the `script_reply` fuzz target in `fuzz/`).
    pub fn parse(value: Value) -> Result<Self, StoreError> {
        let Value::Array(items) = value else {
            return Err(StoreError::unexpected("claim", &value));
        };
        let mut items = items.into_iter();
        let tag = items
            .next()
            .map(string)
            .transpose()?
            .ok_or_else(|| StoreError::Reply("claim: empty reply".into()))?;
        let rest: Vec<Value> = items.collect();
        let strings = |rest: Vec<Value>| -> Result<Vec<String>, StoreError> {
            rest.into_iter().map(string).collect()
        };
        Ok(match tag.as_str() {
            "pending" => {
                let mut rest = strings(rest)?.into_iter();
                let booking_id = rest
                    .next()
                    .ok_or_else(|| StoreError::Reply("claim: pending without id".into()))?;
                Self::Pending {
                    booking_id,
                    seats: rest.collect(),
                    expires_ms: None,
                }
            }
            "pending_until" => {
                let mut rest = strings(rest)?.into_iter();
                let (Some(booking_id), Some(expires)) = (rest.next(), rest.next()) else {
                    return Err(StoreError::Reply("claim: pending_until without id".into()));
                };
                let expires_ms = expires
                    .parse()
                    .map_err(|_| StoreError::Reply(format!("claim: expiry {expires:?}")))?;
                Self::Pending {
                    booking_id,
                    seats: rest.collect(),
                    expires_ms: Some(expires_ms),
                }
            }
            "unavailable" => Self::SeatsUnavailable(strings(rest)?),
            "sold_out" => Self::SoldOut,
            "limit" => {
                let limit = rest
                    .into_iter()
                    .next()
                    .map(integer)
                    .transpose()?
                    .ok_or_else(|| StoreError::Reply("claim: limit without value".into()))?;
                let limit = u32::try_from(limit)
                    .map_err(|_| StoreError::Reply(format!("claim: limit {limit}")))?;
                Self::UserLimit(limit)
            }
            "unknown" => Self::UnknownSeats(strings(rest)?),
            "not_found" => Self::EventNotFound,
            "reused" => Self::KeyReused,
            "rate_limited" => {
                let ms = rest
                    .into_iter()
                    .next()
                    .map(integer)
                    .transpose()?
                    .ok_or_else(|| StoreError::Reply("claim: rate_limited without wait".into()))?;
                let retry_after_ms = u64::try_from(ms)
                    .ok()
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| StoreError::Reply(format!("claim: rate_limited {ms}")))?;
                Self::RateLimited { retry_after_ms }
            }
            "replay" => {
                let mut rest = rest.into_iter();
                let first = rest
                    .next()
                    .ok_or_else(|| StoreError::Reply("claim: replay without reply".into()))?;
                let answered = rest
                    .next()
                    .map(integer)
                    .transpose()?
                    .map(|status| {
                        u16::try_from(status)
                            .map_err(|_| StoreError::Reply(format!("claim: status {status}")))
                    })
                    .transpose()?;
                match Self::parse(first)? {
                    Self::Replay { .. } => {
                        return Err(StoreError::Reply("claim: nested replay".into()));
                    }
                    Self::RateLimited { .. } => {
                        return Err(StoreError::Reply("claim: a replayed rate_limited".into()));
                    }
                    inner => Self::Replay {
                        first: Box::new(inner),
                        answered,
                    },
                }
            }
            other => return Err(StoreError::Reply(format!("claim: unknown tag {other:?}"))),
        })
    }
}

/// The booking status a settle script (confirm, reject, cancel) left behind, or
/// `None` when Redis had no record of the booking (public for the `script_reply` fuzz
/// target in `fuzz/`).
pub fn parse_status(script: &str, value: Value) -> Result<Option<BookingStatus>, StoreError> {
    let s = string(value)?;
    if s == "missing" {
        return Ok(None);
    }
    BookingStatus::parse(&s)
        .map(Some)
        .ok_or_else(|| StoreError::Reply(format!("{script}: unknown status {s:?}")))
}

/// What `confirm.lua` did when asked to restore a booking (see
/// `RedisStore::restore_confirmed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// Redis had lost the record; MySQL's confirmed booking is back in Redis.
    Restored,
    /// Redis has a record (it was not lost, or another settle restored it first): its
    /// status, which the script left as it was unless it was pending (then confirmed).
    Present(BookingStatus),
    /// Redis has neither the record nor the event's seats: nothing to restore into.
    EventMissing,
}

/// Reads the reply of a restoring `confirm.lua`.
pub fn parse_restore(value: Value) -> Result<Restore, StoreError> {
    let s = string(value)?;
    Ok(match s.as_str() {
        "restored" => Restore::Restored,
        "missing" => Restore::EventMissing,
        other => Restore::Present(
            BookingStatus::parse(other)
                .ok_or_else(|| StoreError::Reply(format!("confirm: unknown status {s:?}")))?,
        ),
    })
}

pub(crate) fn string(value: Value) -> Result<String, StoreError> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| StoreError::Reply("reply is not UTF-8".into()))
        }
        Value::SimpleString(s) => Ok(s),
        Value::Int(n) => Ok(n.to_string()),
        Value::Okay => Ok("OK".into()),
        other => Err(StoreError::unexpected("string", &other)),
    }
}

pub(crate) fn integer(value: Value) -> Result<i64, StoreError> {
    match value {
        Value::Int(n) => Ok(n),
        Value::BulkString(ref bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::unexpected("integer", &value)),
        other => Err(StoreError::unexpected("integer", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn claim_replies_parse_into_outcomes() {
        let v = Value::Array(vec![bulk("pending"), bulk("b1"), bulk("A1"), bulk("A2")]);
        assert_eq!(
            ClaimOutcome::parse(v).unwrap(),
            ClaimOutcome::Pending {
                booking_id: "b1".into(),
                seats: vec!["A1".into(), "A2".into()],
                expires_ms: None,
            }
        );
        let v = Value::Array(vec![
            bulk("pending_until"),
            bulk("b1"),
            bulk("1796232672345"),
            bulk("A1"),
        ]);
        assert_eq!(
            ClaimOutcome::parse(v).unwrap(),
            ClaimOutcome::Pending {
                booking_id: "b1".into(),
                seats: vec!["A1".into()],
                expires_ms: Some(1_796_232_672_345),
            }
        );
        let v = Value::Array(vec![bulk("limit"), Value::Int(4)]);
        assert_eq!(ClaimOutcome::parse(v).unwrap(), ClaimOutcome::UserLimit(4));
        let v = Value::Array(vec![
            bulk("replay"),
            Value::Array(vec![bulk("unavailable"), bulk("A1")]),
        ]);
        assert_eq!(
            ClaimOutcome::parse(v).unwrap(),
            ClaimOutcome::Replay {
                first: Box::new(ClaimOutcome::SeatsUnavailable(vec!["A1".into()])),
                answered: None
            }
        );
        let v = Value::Array(vec![
            bulk("replay"),
            Value::Array(vec![bulk("pending"), bulk("b1"), bulk("A1")]),
            Value::Int(201),
        ]);
        assert_eq!(
            ClaimOutcome::parse(v).unwrap(),
            ClaimOutcome::Replay {
                first: Box::new(ClaimOutcome::Pending {
                    booking_id: "b1".into(),
                    seats: vec!["A1".into()],
                    expires_ms: None,
                }),
                answered: Some(201)
            }
        );
    }

    #[test]
    fn a_rate_limited_reply_carries_a_positive_wait() {
        let v = Value::Array(vec![bulk("rate_limited"), Value::Int(1500)]);
        assert_eq!(
            ClaimOutcome::parse(v).unwrap(),
            ClaimOutcome::RateLimited {
                retry_after_ms: 1500
            }
        );
        for wait in [Value::Int(0), Value::Int(-3), bulk("soon")] {
            let v = Value::Array(vec![bulk("rate_limited"), wait.clone()]);
            assert!(ClaimOutcome::parse(v).is_err(), "{wait:?}");
        }
        assert!(ClaimOutcome::parse(Value::Array(vec![bulk("rate_limited")])).is_err());
        // A refusal is never recorded, so never replayed.
        let v = Value::Array(vec![
            bulk("replay"),
            Value::Array(vec![bulk("rate_limited"), Value::Int(5)]),
        ]);
        assert!(ClaimOutcome::parse(v).is_err());
    }

    #[test]
    fn malformed_claim_replies_are_errors_not_panics() {
        assert!(ClaimOutcome::parse(Value::Nil).is_err());
        assert!(ClaimOutcome::parse(Value::Array(vec![])).is_err());
        assert!(ClaimOutcome::parse(Value::Array(vec![bulk("what")])).is_err());
        assert!(ClaimOutcome::parse(Value::Array(vec![bulk("pending")])).is_err());
    }

    #[test]
    fn a_limit_outside_u32_is_an_error_not_a_limit_of_zero() {
        // Found by the script_reply fuzz target: 2^32 + 1028 was read as a limit of 0.
        for limit in [
            Value::Int(4_294_968_324),
            Value::Int(-1),
            bulk("4294967296"),
        ] {
            let v = Value::Array(vec![bulk("limit"), limit.clone()]);
            assert!(ClaimOutcome::parse(v).is_err(), "{limit:?}");
        }
        let v = Value::Array(vec![bulk("limit"), Value::Int(i64::from(u32::MAX))]);
        assert_eq!(
            ClaimOutcome::parse(v).unwrap(),
            ClaimOutcome::UserLimit(u32::MAX)
        );
    }
}

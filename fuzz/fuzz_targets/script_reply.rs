//! The Lua scripts' replies: `ClaimOutcome::parse` (claim.lua) and `parse_status` (the
//! settle scripts). Whatever Redis hands back, even a reply no script gives, is `Ok`
//! or `Err`, never a panic.
//!
//! The input is decoded into a `redis::Value` tree of every kind of node, at most
//! [`MAX_DEPTH`] deep. Strings are often the words the scripts answer with, so the
//! fuzzer gets past the tag match without having to guess them.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use redis::{PushKind, Value, VerbatimFormat};
use seatgate::claims::scripts::parse_status;
use seatgate::claims::ClaimOutcome;

/// Deep enough for a replay (array in an array) and some more.
const MAX_DEPTH: usize = 5;
/// Most items of one array, map or set.
const MAX_ITEMS: usize = 8;

/// Replies' words: claim.lua's tags and the statuses of the settle scripts.
const WORDS: &[&str] = &[
    "pending",
    "unavailable",
    "sold_out",
    "limit",
    "rate_limited",
    "unknown",
    "not_found",
    "reused",
    "replay",
    "missing",
    "confirmed",
    "rejected",
    "cancelled",
    "OK",
    "201",
    "-1",
];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(value) = value(&mut u, 0) else {
        return;
    };
    if let Ok(outcome) = ClaimOutcome::parse(value.clone()) {
        // The limit a client is told is the one the script sent, never a stand-in.
        if let Some(limit) = user_limit(&outcome) {
            assert_eq!(Some(i64::from(limit)), limit_sent(&value), "{value:?}");
        }
    }
    let _ = parse_status("fuzz", value);
});

fn user_limit(outcome: &ClaimOutcome) -> Option<u32> {
    match outcome {
        ClaimOutcome::UserLimit(limit) => Some(*limit),
        ClaimOutcome::Replay { first, .. } => user_limit(first),
        _ => None,
    }
}

/// The limit in a `{"limit", n}` reply (or the first reply of a replay), as sent.
fn limit_sent(value: &Value) -> Option<i64> {
    let Value::Array(items) = value else {
        return None;
    };
    match (items.first()?, items.get(1)?) {
        (tag, first) if is_word(tag, "replay") => limit_sent(first),
        (_, Value::Int(n)) => Some(*n),
        (_, Value::BulkString(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn is_word(value: &Value, word: &str) -> bool {
    match value {
        Value::BulkString(b) => b == word.as_bytes(),
        Value::SimpleString(s) => s == word,
        _ => false,
    }
}

fn value(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    // Leaves only at the bottom; arrays (what the scripts answer) most often above it.
    let kinds = if depth >= MAX_DEPTH { 9 } else { 16 };
    Ok(match u.choose_index(kinds)? {
        0 => Value::Nil,
        1 => Value::Int(u.arbitrary()?),
        2 | 3 => Value::BulkString(bytes(u)?),
        4 => Value::SimpleString(string(u)?),
        5 => Value::Okay,
        6 => Value::Double(u.arbitrary()?),
        7 => Value::Boolean(u.arbitrary()?),
        8 => match u.choose_index(3)? {
            0 => Value::VerbatimString {
                format: VerbatimFormat::Text,
                text: string(u)?,
            },
            // Through the RESP3 parser: its type depends on redis's features.
            1 => redis::parse_redis_value(format!("({}\r\n", u.arbitrary::<i128>()?).as_bytes())
                .unwrap_or(Value::Nil),
            _ => Value::ServerError(
                redis::make_extension_error(string(u)?, Some(string(u)?))
                    .try_into()
                    .expect("an extension error is a server error"),
            ),
        },
        9..=12 => Value::Array(values(u, depth)?),
        13 => Value::Set(values(u, depth)?),
        14 => Value::Map(pairs(u, depth)?),
        _ => match u.choose_index(2)? {
            0 => Value::Attribute {
                data: Box::new(value(u, depth + 1)?),
                attributes: pairs(u, depth)?,
            },
            _ => Value::Push {
                kind: PushKind::Other(string(u)?),
                data: values(u, depth)?,
            },
        },
    })
}

fn values(u: &mut Unstructured<'_>, depth: usize) -> Result<Vec<Value>> {
    let n = u.choose_index(MAX_ITEMS + 1)?;
    (0..n).map(|_| value(u, depth + 1)).collect()
}

fn pairs(u: &mut Unstructured<'_>, depth: usize) -> Result<Vec<(Value, Value)>> {
    let n = u.choose_index(MAX_ITEMS / 2 + 1)?;
    (0..n)
        .map(|_| Ok((value(u, depth + 1)?, value(u, depth + 1)?)))
        .collect()
}

/// Bytes: half the time a reply word, else any bytes (not always UTF-8).
fn bytes(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    if u.arbitrary()? {
        Ok(u.choose(WORDS)?.as_bytes().to_vec())
    } else {
        Ok(u.arbitrary::<&[u8]>()?.to_vec())
    }
}

fn string(u: &mut Unstructured<'_>) -> Result<String> {
    if u.arbitrary()? {
        Ok((*u.choose(WORDS)?).to_owned())
    } else {
        u.arbitrary()
    }
}

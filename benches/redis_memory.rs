//! Redis memory per seat: creates a 100,000-seat event in a database of its own, warms
//! it into a key namespace of its own (`ops::warm`, as `POST /v1/admin/events/{id}/warm`
//! does), sums `MEMORY USAGE <key> SAMPLES 0` over every key of the event, and prints
//! the total and the bytes per seat, key by key. Then, for information, it claims every
//! seat (quantity claims of 4, one user each, no idempotency key) and prints the same
//! again. Everything it made is deleted at the end.
//!
//! `SAMPLES 0` makes Redis walk every element of a hash or sorted set instead of
//! estimating from a sample, so the figure is exact for this Redis build (allocator
//! size classes included) and repeatable.
//!
//! Run: `cargo bench --bench redis_memory` (a few seconds; needs Redis and MySQL, else
//! it prints `skipped: …` and exits 0). `SEATGATE_MEMORY_SEATS` changes the seat count.

mod common;

use futures::StreamExt;
use seatgate::claims::{ClaimOutcome, ClaimRequest, RedisStore, Selection};
use seatgate::db::events::{create_event, NewEvent};
use seatgate::domain::{EventId, UserId};
use std::process::ExitCode;

/// Seats of the measured event (the figure of issue 4 is per seat of a 100k event).
const SEATS: usize = 100_000;
/// Seats per quantity claim when claiming everything.
const PER_CLAIM: u32 = 4;

fn main() -> ExitCode {
    let rt = common::runtime();
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Skip(reason)) => {
            println!("skipped: redis_memory needs Redis and MySQL: {reason}");
            ExitCode::SUCCESS
        }
    }
}

struct Skip(String);

async fn run() -> Result<(), Skip> {
    common::probe_mysql().await.map_err(Skip)?;
    let namespace = common::namespace();
    let store = RedisStore::connect(&common::redis_url(), &namespace, common::PROBE_TIMEOUT)
        .await
        .map_err(|e| Skip(format!("Redis: {e:#}")))?;
    let database = format!("sg_bench_{}", common::unique_id());
    // Deletes the keys and the database at the end, also on a panic.
    let _cleanup = common::Cleanup {
        label: "redis_memory",
        namespace: namespace.clone(),
        database: Some(database.clone()),
    };
    let pool =
        seatgate::db::connect_and_migrate(&format!("{}/{database}", common::mysql_server()), 8)
            .await
            .map_err(|e| Skip(format!("MySQL: {e:#}")))?;

    let n: usize = std::env::var("SEATGATE_MEMORY_SEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEATS);
    let event = "mem";
    let seats: Vec<String> = (0..n).map(|i| format!("S{i:06}")).collect();
    create_event(
        &pool,
        &NewEvent {
            id: event,
            name: "memory",
            seats: &seats,
            per_user_limit: PER_CLAIM,
            hold_seconds: 0,
            hold_max_seconds: 0,
        },
    )
    .await
    .expect("event created");
    let started = std::time::Instant::now();
    seatgate::ops::warm::warm(&store, &pool, event)
        .await
        .expect("warmed");
    let warm_time = started.elapsed();
    println!("{n} seats (ids S000000…), warmed in {warm_time:.2?}");
    report(&store, event, n, "warmed").await;

    // Warm again over the existing state: the figure must not change.
    let started = std::time::Instant::now();
    seatgate::ops::warm::warm(&store, &pool, event)
        .await
        .expect("warmed again");
    println!(
        "warmed again over the existing state in {:.2?}",
        started.elapsed()
    );
    report(&store, event, n, "warmed twice").await;

    // Claim every seat (informative: booking records, user tallies and the outbox grow
    // with the claims, not with the seats).
    let claims = n.div_ceil(PER_CLAIM as usize);
    let event_id = EventId::parse(event).expect("a well-formed event id");
    let results: Vec<ClaimOutcome> = futures::stream::iter(0..claims)
        .map(|i| {
            let store = &store;
            let event_id = &event_id;
            async move {
                let user = UserId::parse(format!("u{i}")).expect("a well-formed user id");
                let bid = uuid::Uuid::now_v7().to_string();
                let left = (n - i * PER_CLAIM as usize).min(PER_CLAIM as usize) as u32;
                store
                    .claim(&ClaimRequest {
                        event_id,
                        user_id: &user,
                        booking_id: &bid,
                        selection: Selection::Quantity(left),
                        idempotency: None,
                        now_ms: common::now_ms(),
                    })
                    .await
                    .expect("claim.lua answers")
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let won = results
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Pending { .. }))
        .count();
    println!("{won} of {claims} quantity claims pending");
    report(&store, event, n, "every seat claimed (pending)").await;
    Ok(())
}

/// Prints `MEMORY USAGE … SAMPLES 0` of every key of the event, largest first, and the
/// total per seat. Keys of the claims (booking records, user tallies) are summed by kind.
async fn report(store: &RedisStore, event: &str, seats: usize, label: &str) {
    let mut conn = store.connection();
    let pattern = store.keys(event).pattern();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let prefix = pattern.trim_end_matches('*');
    let mut by_kind: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0);
        }
        let sizes: Vec<Option<u64>> = pipe.query_async(&mut conn).await.expect("MEMORY USAGE");
        for (key, size) in chunk.iter().zip(sizes) {
            let rest = key.strip_prefix(prefix).unwrap_or(key);
            // `user:<uid>` and `b:<bid>` are one kind each.
            let kind = match rest.split_once(':') {
                Some((kind, _)) => format!("{kind}:*"),
                None => rest.to_owned(),
            };
            let entry = by_kind.entry(kind).or_default();
            entry.0 += 1;
            entry.1 += size.unwrap_or(0);
        }
    }
    let total: u64 = by_kind.values().map(|(_, bytes)| bytes).sum();
    println!("-- {label}: {} keys", keys.len());
    let mut rows: Vec<_> = by_kind.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1 .1));
    for (kind, (count, bytes)) in rows {
        println!(
            "   {kind:<10} {count:>7} key(s) {bytes:>12} B  {:>7.1} B/seat",
            bytes as f64 / seats as f64
        );
    }
    println!(
        "   total      {total:>20} B  {:>7.1} B/seat",
        total as f64 / seats as f64
    );
}

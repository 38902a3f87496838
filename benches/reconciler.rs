//! The reconciler's throughput: confirmed claims per second into MySQL, by batch size
//! (outbox entries read and settled in one MySQL transaction: 1, 10, 100, 1000), and
//! the unbatched path (one transaction per claim) for comparison.
//!
//! Each measured iteration settles one claim: the claims are made (through the claim
//! script, untimed) before the clock starts, then `Reconciler::step` runs until the
//! outbox is drained. Needs Redis and MySQL; without them it says so and skips.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use seatgate::claims::{ClaimRequest, RedisStore, Selection};
use seatgate::db::events::{create_event, NewEvent};
use seatgate::domain::{EventId, UserId};
use seatgate::reconciler::{Reconciler, ReconcilerConfig};
use std::time::{Duration, Instant};

struct Setup {
    store: RedisStore,
    pool: sqlx::MySqlPool,
    _cleanup: common::Cleanup,
}

async fn setup() -> Result<Setup, String> {
    common::probe_mysql().await?;
    let namespace = common::namespace();
    let store = RedisStore::connect(&common::redis_url(), &namespace, common::PROBE_TIMEOUT)
        .await
        .map_err(|e| format!("Redis: {e:#}"))?;
    let database = format!("sg_bench_{}", common::unique_id());
    let pool =
        seatgate::db::connect_and_migrate(&format!("{}/{database}", common::mysql_server()), 32)
            .await
            .map_err(|e| format!("MySQL: {e:#}"))?;
    Ok(Setup {
        store,
        pool,
        _cleanup: common::Cleanup {
            label: "reconciler",
            namespace,
            database: Some(database),
        },
    })
}

/// Creates and warms an event of `n` seats and makes `n` pending claims on it.
async fn pending_claims(s: &Setup, n: u64) {
    let event = format!("rb-{}", common::unique_id());
    let seats: Vec<String> = (0..n).map(|i| format!("S{i}")).collect();
    create_event(
        &s.pool,
        &NewEvent {
            id: &event,
            name: "bench",
            seats: &seats,
            per_user_limit: 1,
            hold_seconds: 0,
            hold_max_seconds: 0,
        },
    )
    .await
    .expect("event created");
    seatgate::ops::warm::warm(&s.store, &s.pool, &event)
        .await
        .expect("warmed");
    let event = EventId::parse(event).expect("a well-formed event id");
    let claims = (0..n).map(|i| {
        let event = &event;
        let store = &s.store;
        async move {
            let user = UserId::parse(format!("u{i}")).expect("a well-formed user id");
            let bid = uuid::Uuid::now_v7().to_string();
            store
                .claim(&ClaimRequest {
                    event_id: event,
                    user_id: &user,
                    booking_id: &bid,
                    selection: Selection::Quantity(1),
                    idempotency: None,
                    now_ms: common::now_ms(),
                })
                .await
                .expect("claimed");
        }
    });
    futures::stream::iter(claims)
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

use futures::StreamExt;

fn bench(c: &mut Criterion) {
    let rt = common::runtime();
    let s = match rt.block_on(setup()) {
        Ok(s) => s,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let mut group = c.benchmark_group("reconciler");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    // Batch size 1 is one transaction per claim; `per_claim/100` reads 100 entries per
    // step but settles each in its own transaction (16 at a time), the unbatched path.
    let runs = [
        ("batched", 1usize, true),
        ("batched", 10, true),
        ("batched", 100, true),
        ("batched", 1000, true),
        ("per_claim", 100, false),
    ];
    for (name, batch, batched) in runs {
        let config = ReconcilerConfig {
            batch,
            batched,
            concurrency: batch.min(16),
            block: Duration::from_millis(1),
            ..ReconcilerConfig::default()
        };
        let reconciler =
            Reconciler::new(s.store.clone(), s.pool.clone(), config).expect("reconciler");
        group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, _| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    pending_claims(&s, iters).await;
                    let start = Instant::now();
                    let mut settled = 0;
                    while settled < iters as usize {
                        settled += reconciler
                            .step(Duration::from_millis(1))
                            .await
                            .expect("step")
                            .settled();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    drop(s);
}

criterion_group!(benches, bench);
criterion_main!(benches);

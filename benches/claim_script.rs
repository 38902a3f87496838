//! The claim hot path without HTTP: `claim.lua` through `RedisStore::claim`, against
//! the machine's Redis, compared with a PING through the same `RedisStore`.
//!
//! Sequential (one claim at a time, so a latency):
//! - `ping`: one round trip, the floor every claim pays.
//! - `uncontended`: each iteration claims a different free seat of a 100k-seat event,
//!   each by a different user (the per-user limit never trips). When the seats run out
//!   a fresh event is warmed outside the timed section.
//! - `uncontended_held`: the same on an event with holds (`hold_seconds` 900): the
//!   claim also stamps its deadline on the booking record and the outbox entry.
//! - `hot_seat`: every iteration claims the same taken seat (the 409 path: what almost
//!   every request of a drop gets).
//! - `quantity`: best-available claims of 2 seats on a 100k-seat event.
//!
//! Concurrent (64 in flight at once; throughput in claims per second):
//! - `ping_x64`, `hot_seat_x64`, `uncontended_x64`.
//!
//! Everything lives under a key namespace of its own (`sgbench<uuid>:`), deleted at the
//! end. Without Redis the suite prints `skipped: …` and exits 0.
//!
//! Run: `cargo bench --bench claim_script`

mod common;

use criterion::{Criterion, Throughput};
use futures::future::join_all;
use seatgate::claims::{ClaimOutcome, ClaimRequest, RedisStore, Selection};
use seatgate::domain::{EventId, SeatId, SeatState, UserId};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

use common::now_ms;

/// Seats of the large events (uncontended and quantity claims).
const LARGE_EVENT_SEATS: usize = 100_000;
/// Seats per `warm.lua` call, as the gateway's warm does.
const WARM_CHUNK: usize = 2_000;
/// Claims in flight at once in the concurrent variants.
const IN_FLIGHT: usize = 64;
/// The seat every hot-seat claim asks for.
const HOT_SEAT: &str = "HOT";

fn main() -> ExitCode {
    let rt = common::runtime();
    let namespace = common::namespace();
    let store = match rt.block_on(connect(&namespace)) {
        Ok(store) => store,
        Err(reason) => {
            println!("skipped: claim_script benchmarks need Redis: {reason}");
            return ExitCode::SUCCESS;
        }
    };

    // Deletes every key of this run at the end, also if a benchmark panics.
    let _cleanup = common::Cleanup {
        label: "claim_script",
        namespace: namespace.clone(),
        database: None,
    };

    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let fixtures = match rt.block_on(Fixtures::new(store)) {
        Ok(fixtures) => fixtures,
        Err(err) => {
            eprintln!("claim_script: setting up the events failed: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    sequential(&mut criterion, &rt, &fixtures);
    concurrent(&mut criterion, &rt, &fixtures);
    criterion.final_summary();
    ExitCode::SUCCESS
}

async fn connect(namespace: &str) -> Result<RedisStore, String> {
    let url = common::redis_url();
    match tokio::time::timeout(
        common::PROBE_TIMEOUT,
        RedisStore::connect(&url, namespace, Duration::from_secs(2)),
    )
    .await
    {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(err)) => Err(format!("{url} refused: {err:#}")),
        Err(_) => Err(format!(
            "{url} did not answer within {:?}",
            common::PROBE_TIMEOUT
        )),
    }
}

/// Puts an event on sale in Redis as warm does: `warm.lua` per chunk, then
/// `warm_finish.lua`. `taken` seats are warmed as booked.
async fn warm_event(
    store: &RedisStore,
    event_id: &str,
    seats: &[String],
    taken: &[&str],
    per_user_limit: u32,
    hold_seconds: u32,
) -> anyhow::Result<()> {
    for (n, chunk) in seats.chunks(WARM_CHUNK).enumerate() {
        let triples: Vec<(String, i64, SeatState)> = chunk
            .iter()
            .enumerate()
            .map(|(i, seat)| {
                let state = if taken.contains(&seat.as_str()) {
                    SeatState::Booked("0190c0de-0000-7000-8000-000000000000".to_owned())
                } else {
                    SeatState::Available
                };
                (seat.clone(), (n * WARM_CHUNK + i) as i64, state)
            })
            .collect();
        store.warm_chunk(event_id, &triples).await?;
    }
    let counts = store
        .warm_finish(
            event_id,
            "bench",
            per_user_limit,
            seats.len() as u64,
            true,
            hold_seconds,
        )
        .await?;
    anyhow::ensure!(
        counts.seats_total == seats.len() as u64,
        "warm_finish counted {counts:?}"
    );
    Ok(())
}

/// A supply of free seats: a large event, replaced by a freshly warmed one (outside the
/// timed section) when its seats run out.
struct Feed {
    store: RedisStore,
    seats: Vec<String>,
    /// The same seats as claims name them.
    ids: Vec<SeatId>,
    /// Seats each claim takes.
    per_claim: usize,
    label: &'static str,
    /// The events' hold (0: none).
    hold_seconds: u32,
    generation: u32,
    event: String,
    /// Seats taken so far from the current event.
    used: usize,
    /// Distinct users, so the per-user limit never trips.
    next_user: u64,
}

impl Feed {
    async fn new(
        store: RedisStore,
        label: &'static str,
        per_claim: usize,
        hold_seconds: u32,
    ) -> anyhow::Result<Self> {
        let seats: Vec<String> = (0..LARGE_EVENT_SEATS).map(|i| format!("S{i:06}")).collect();
        let ids = seats.iter().map(|s| seat_id(s)).collect();
        let mut feed = Self {
            store,
            seats,
            ids,
            per_claim,
            label,
            hold_seconds,
            generation: 0,
            event: String::new(),
            used: 0,
            next_user: 0,
        };
        feed.refill().await?;
        Ok(feed)
    }

    /// Claims the current event can still take.
    fn left(&self) -> usize {
        (self.seats.len() - self.used) / self.per_claim
    }

    /// Drops the exhausted event and warms a fresh one.
    async fn refill(&mut self) -> anyhow::Result<()> {
        if !self.event.is_empty() {
            self.store.delete_event(&self.event).await?;
        }
        self.generation += 1;
        self.event = format!("{}-{}", self.label, self.generation);
        warm_event(
            &self.store,
            &self.event,
            &self.seats,
            &[],
            self.per_claim as u32,
            self.hold_seconds,
        )
        .await?;
        self.used = 0;
        Ok(())
    }

    /// How many of `wanted` claims can run now, refilling first if needed.
    async fn ready(&mut self, wanted: usize) -> usize {
        if self.left() == 0 {
            self.refill().await.expect("warming a fresh event");
        }
        wanted.min(self.left())
    }

    fn user(&mut self) -> String {
        self.next_user += 1;
        format!("u{}", self.next_user)
    }
}

/// A seat id of the fixtures (all well formed).
fn seat_id(id: &str) -> SeatId {
    SeatId::parse(id).expect("a well-formed seat id")
}

/// The event and user ids of a claim (the fixtures' are all well formed).
fn ids(event: &str, user: &str) -> (EventId, UserId) {
    let event = EventId::parse(event).expect("a well-formed event id");
    (event, UserId::parse(user).expect("a well-formed user id"))
}

/// One claim of a specific seat; returns the outcome.
async fn claim_seat(store: &RedisStore, event: &str, user: &str, seat: &[SeatId]) -> ClaimOutcome {
    let booking_id = uuid::Uuid::now_v7().to_string();
    let (event, user) = ids(event, user);
    store
        .claim(&ClaimRequest {
            event_id: &event,
            user_id: &user,
            booking_id: &booking_id,
            selection: Selection::Seats(seat),
            idempotency: None,
            now_ms: now_ms(),
        })
        .await
        .expect("claim.lua answers")
}

async fn claim_quantity(store: &RedisStore, event: &str, user: &str, n: u32) -> ClaimOutcome {
    let booking_id = uuid::Uuid::now_v7().to_string();
    let (event, user) = ids(event, user);
    store
        .claim(&ClaimRequest {
            event_id: &event,
            user_id: &user,
            booking_id: &booking_id,
            selection: Selection::Quantity(n),
            idempotency: None,
            now_ms: now_ms(),
        })
        .await
        .expect("claim.lua answers")
}

fn expect_pending(outcome: &ClaimOutcome) {
    assert!(
        matches!(outcome, ClaimOutcome::Pending { .. }),
        "expected a pending claim, got {outcome:?}"
    );
}

fn expect_taken(outcome: &ClaimOutcome) {
    assert!(
        matches!(outcome, ClaimOutcome::SeatsUnavailable(seats) if seats.len() == 1),
        "expected the hot seat to be unavailable, got {outcome:?}"
    );
}

struct Fixtures {
    store: RedisStore,
    /// A small event whose seat `HOT` is held by a pending claim.
    hot_event: String,
    hot_seat: Vec<SeatId>,
    uncontended: Mutex<Feed>,
    uncontended_held: Mutex<Feed>,
    quantity: Mutex<Feed>,
}

impl Fixtures {
    async fn new(store: RedisStore) -> anyhow::Result<Self> {
        let hot_event = "hot".to_owned();
        let mut seats = vec![HOT_SEAT.to_owned()];
        seats.extend((1..100).map(|i| format!("H{i:03}")));
        warm_event(&store, &hot_event, &seats, &[], 4, 0).await?;
        let hot_seat = vec![seat_id(HOT_SEAT)];
        // The first claim wins the seat; every claim after it gets the 409.
        expect_pending(&claim_seat(&store, &hot_event, "holder", &hot_seat).await);
        expect_taken(&claim_seat(&store, &hot_event, "late", &hot_seat).await);

        let uncontended = Feed::new(store.clone(), "free", 1, 0).await?;
        let held = Feed::new(store.clone(), "held", 1, 900).await?;
        let quantity = Feed::new(store.clone(), "qty", 2, 0).await?;
        Ok(Self {
            store,
            hot_event,
            hot_seat,
            uncontended: Mutex::new(uncontended),
            uncontended_held: Mutex::new(held),
            quantity: Mutex::new(quantity),
        })
    }
}

fn sequential(c: &mut Criterion, rt: &Runtime, fx: &Fixtures) {
    let mut group = c.benchmark_group("claim_script");
    let store = &fx.store;

    group.bench_function("ping", |b| {
        b.to_async(rt)
            .iter(|| async move { store.ping().await.expect("PING") });
    });

    for (name, feed) in [
        ("uncontended", &fx.uncontended),
        ("uncontended_held", &fx.uncontended_held),
    ] {
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let mut feed = feed.lock().await;
                let mut left = iters as usize;
                let mut elapsed = Duration::ZERO;
                while left > 0 {
                    let n = feed.ready(left).await;
                    // Seat names and users are made outside the timed section.
                    let batch: Vec<(String, usize)> =
                        (0..n).map(|i| (feed.user(), feed.used + i)).collect();
                    let start = Instant::now();
                    for (user, seat) in &batch {
                        let seat = std::slice::from_ref(&feed.ids[*seat]);
                        let outcome = claim_seat(store, &feed.event, user, seat).await;
                        expect_pending(black_box(&outcome));
                    }
                    elapsed += start.elapsed();
                    feed.used += n;
                    left -= n;
                }
                elapsed
            });
        });
    }

    group.bench_function("hot_seat", |b| {
        b.to_async(rt).iter(|| async move {
            let outcome = claim_seat(store, &fx.hot_event, "fan", &fx.hot_seat).await;
            expect_taken(black_box(&outcome));
        });
    });

    group.bench_function("quantity", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut feed = fx.quantity.lock().await;
            let mut left = iters as usize;
            let mut elapsed = Duration::ZERO;
            while left > 0 {
                let n = feed.ready(left).await;
                let users: Vec<String> = (0..n).map(|_| feed.user()).collect();
                let start = Instant::now();
                for user in &users {
                    let outcome = claim_quantity(store, &feed.event, user, 2).await;
                    expect_pending(black_box(&outcome));
                }
                elapsed += start.elapsed();
                feed.used += n * 2;
                left -= n;
            }
            elapsed
        });
    });
    group.finish();
}

fn concurrent(c: &mut Criterion, rt: &Runtime, fx: &Fixtures) {
    let mut group = c.benchmark_group("claim_script_concurrent");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    let store = &fx.store;

    group.bench_function("ping_x64", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for _ in 0..iters {
                let replies = join_all((0..IN_FLIGHT).map(|_| store.ping())).await;
                for reply in replies {
                    reply.expect("PING");
                }
            }
            start.elapsed()
        });
    });

    group.bench_function("hot_seat_x64", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for _ in 0..iters {
                let outcomes = join_all(
                    (0..IN_FLIGHT).map(|_| claim_seat(store, &fx.hot_event, "fan", &fx.hot_seat)),
                )
                .await;
                for outcome in &outcomes {
                    expect_taken(outcome);
                }
            }
            start.elapsed()
        });
    });

    group.bench_function("uncontended_x64", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut feed = fx.uncontended.lock().await;
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                // A batch never spans two events: refill early instead.
                if feed.left() < IN_FLIGHT {
                    feed.refill().await.expect("warming a fresh event");
                }
                let batch: Vec<(String, usize)> = (0..IN_FLIGHT)
                    .map(|i| (feed.user(), feed.used + i))
                    .collect();
                let feed_ref = &*feed;
                let start = Instant::now();
                let outcomes = join_all(batch.iter().map(|(user, seat)| {
                    let seat = std::slice::from_ref(&feed_ref.ids[*seat]);
                    claim_seat(store, &feed_ref.event, user, seat)
                }))
                .await;
                elapsed += start.elapsed();
                for outcome in &outcomes {
                    expect_pending(outcome);
                }
                feed.used += IN_FLIGHT;
            }
            elapsed
        });
    });
    group.finish();
}

//! The reconciler: persists every claim of the outbox into MySQL, then settles it in
//! Redis.
//!
//! Each on-sale event has an outbox stream that `claim.lua` appends to in the same
//! atomic step as the claim. Reconcilers share the work through one consumer group
//! per stream (`reconcilers`): Redis hands each entry to one consumer, keeps it in that
//! consumer's pending list until it is acknowledged, and `XAUTOCLAIM` lets another
//! consumer take over the entries of one that died. Delivery is therefore at least
//! once, and [`Reconciler::settle`] is written to be idempotent:
//!
//! 1. `BEGIN`; lock the claim's seat rows `FOR UPDATE`, sorted (see `db::bookings`).
//! 2. If MySQL already knows the booking (a redelivery, or a cancellation tombstone),
//!    only bring Redis in line with it.
//! 3. If Redis holds the claim as settled (rejected by an earlier delivery), there is
//!    nothing to persist. If Redis lost the claim's record (a failover, a restart from
//!    older data, an eviction), the claim is rejected `lost_in_redis_failover` as in 4:
//!    the tally and idempotency record that went with it make persisting it unsafe.
//! 4. If any seat is missing or booked by another booking, reject: `reject.lua` runs
//!    *while the locks are held*, so the MySQL states it copies are current.
//! 5. Otherwise insert the booking, mark the seats booked, `COMMIT`, then `confirm.lua`.
//!
//! Only then is the entry acknowledged (`XACK` + `XDEL`). A transient failure leaves
//! the entry unacknowledged in this consumer's pending list; the next step reads the
//! pending list first and tries again, after a backoff.
//!
//! Each event's outbox is read on its own, by a worker task of its own, with
//! non-blocking reads on the shared connection; the settle transactions of all events
//! share a bounded number of MySQL connections (see `worker`). [`Reconciler::run`]
//! supervises the workers; tests drive [`Reconciler::step`] (one read and one batch per
//! event) and [`Reconciler::settle`] (one claim) directly.
//!
//! The work is split by job: `worker` runs one event's outbox (the loop, its pacing,
//! the step that settles and acknowledges a batch); `outbox` reads, acknowledges, takes
//! over and dead-letters stream entries and decodes them into [`Claim`]s; `decide` is
//! the per-claim decision, a pure function; `settle` is the MySQL transaction that
//! reads what the decision needs under the seat locks and carries it out, with the
//! Redis follow-ups. This module holds the types, the [`Reconciler`] and its
//! `run`/`step`.

use crate::backoff::backoff;
use anyhow::Context;
use sqlx::MySqlPool;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::claims::{RedisStore, StoreError};
use crate::db;
use crate::domain::{BookingStatus, RejectReason};
use crate::telemetry;

mod decide;
mod expirer;
mod outbox;
mod settle;
mod sweeper;
mod worker;

pub use sweeper::SweepReport;

pub use expirer::ExpiryReport;
use outbox::OutboxState;
use worker::{Gauges, Workers};

/// Tuning of one reconciler.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Most entries read per stream per step.
    pub batch: usize,
    /// The longest pause between two reads of an idle outbox: reads never block, and
    /// an event whose outbox had nothing polls it again after a pause that doubles from
    /// 2 ms up to this (see `worker`). It bounds the latency a quiet event adds to its
    /// next claim, and sets what an idle event costs (one `XREADGROUP` per `block`).
    pub block: Duration,
    /// Claims settled at once by one event when a batch falls back to single settles
    /// (each its own MySQL transaction, each within `mysql_permits`).
    pub concurrency: usize,
    /// Settle transactions open at once, over every event (a semaphore). `None`: half
    /// the MySQL pool's connections (at least one), leaving the rest to the API.
    pub mysql_permits: Option<usize>,
    /// Entries idle this long in another consumer's pending list are taken over.
    /// Must exceed the slowest settle, or live consumers lose work to each other
    /// (harmless, since settle is idempotent, but wasteful).
    pub claim_min_idle: Duration,
    /// How often to look for other consumers' stale entries.
    pub autoclaim_every: Duration,
    /// Upper bound of the backoff between steps that hit transient failures.
    pub max_backoff: Duration,
    /// A claim still not persisted this long after it was made is rejected
    /// (`deadline_exceeded`) as soon as MySQL lets the rejection be recorded.
    pub claim_deadline: Duration,
    /// Longest one settle attempt may take before it is abandoned and retried.
    pub settle_timeout: Duration,
    /// Settle the claims of one read in one MySQL transaction (see `settle_batch`).
    pub batched: bool,
    /// How often [`Reconciler::run`] sweeps for seats held by claims that cannot settle
    /// (see `sweeper`).
    pub sweep_every: Duration,
    /// A pending claim is swept once it is older than `claim_deadline` plus this: by
    /// then the reconciler would have given up on it itself, had its outbox entry
    /// survived.
    pub sweep_grace: Duration,
    /// About how many seats (or, searching a lost claim's owner, keys) one sweep tick
    /// reads per event.
    pub sweep_batch: usize,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            batch: 200,
            block: Duration::from_millis(20),
            concurrency: 16,
            mysql_permits: None,
            claim_min_idle: Duration::from_secs(30),
            autoclaim_every: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            claim_deadline: Duration::from_secs(300),
            settle_timeout: Duration::from_secs(30),
            batched: true,
            sweep_every: Duration::from_secs(5),
            sweep_grace: Duration::from_secs(60),
            sweep_batch: 10_000,
        }
    }
}

/// One claim, as the outbox carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub event_id: String,
    pub booking_id: String,
    pub user_id: String,
    pub seats: Vec<String>,
    /// On an event with holds: the claim's time and the end of its hold (ms since
    /// the epoch), and the claim is persisted `held`. `None`: persisted `confirmed`.
    pub hold: Option<Hold>,
}

/// The hold a claim on an event with holds carries (outbox fields `t` and `x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub claimed_ms: u64,
    pub expires_ms: u64,
}

/// How a claim was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Persisted now and confirmed in Redis.
    Confirmed,
    /// Persisted now as held for its checkout (an event with holds) and held in Redis.
    Held,
    /// Rejected now, for this reason; Redis took MySQL's state for its seats.
    Rejected(RejectReason),
    /// Settled before (a redelivery, a cancellation, a rejection MySQL recorded, or a
    /// booking MySQL has whose record Redis lost); Redis was brought in line with MySQL
    /// where needed. Carries the booking's status in Redis afterwards (`None`: Redis
    /// has no record of it).
    AlreadySettled(Option<BookingStatus>),
}

/// Why a claim could not be settled this time.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("mysql: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] StoreError),
    #[error("settling took longer than {0:?}")]
    Timeout(Duration),
}

impl SettleError {
    /// True when trying again later may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Db(e) => db::is_transient(e),
            Self::Redis(_) | Self::Timeout(_) => true,
        }
    }
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    pub confirmed: usize,
    /// Persisted as held for their checkout (events with holds).
    pub held: usize,
    pub rejected: usize,
    pub already_settled: usize,
    /// Entries that failed transiently and stay pending for the next step.
    pub retry: usize,
    /// Entries that could not be decoded; moved to the dead-letter stream.
    pub dead: usize,
}

impl StepReport {
    pub fn settled(&self) -> usize {
        self.confirmed + self.held + self.rejected + self.already_settled + self.dead
    }
}

/// One consumer of the outboxes.
pub struct Reconciler {
    redis: RedisStore,
    db: MySqlPool,
    /// Permits for settle transactions, shared by every event (`mysql_permits`).
    mysql: tokio::sync::Semaphore,
    consumer: String,
    config: ReconcilerConfig,
    /// Outboxes whose consumer group this process has made sure of; forgotten when a
    /// read answers `NOGROUP` (a stream lost with its group), so the next ensure
    /// recreates it.
    grouped: Mutex<HashSet<String>>,
    /// Registered events looked up in MySQL: true for this database's own. An event
    /// found stays found (events are never deleted); one not found is looked up again
    /// each step, and only warned about the first time.
    known_events: Mutex<HashMap<String, bool>>,
    /// The per-event figures behind the outbox gauges.
    gauges: Gauges,
    /// What [`Reconciler::step`] keeps of each outbox between calls (`run`'s workers
    /// keep their own).
    stepped: tokio::sync::Mutex<HashMap<String, OutboxState>>,
    /// The sweeper's progress through each event (see `sweeper`); one sweep at a time.
    sweeps: tokio::sync::Mutex<HashMap<String, sweeper::EventSweep>>,
    last_sweep: Mutex<Option<Instant>>,
}

impl Reconciler {
    /// A reconciler on `redis` and `db`. Every Redis command goes through `redis` (its
    /// reads do not block, see `worker`); `_redis_url` is what the blocking reads used
    /// to open a connection of their own with, and is no longer needed.
    pub fn new(redis: RedisStore, db: MySqlPool, config: ReconcilerConfig) -> anyhow::Result<Self> {
        let consumer = format!("reconciler-{}", uuid::Uuid::now_v7());
        let permits = config
            .mysql_permits
            .unwrap_or(db.options().get_max_connections() as usize / 2)
            .max(1);
        Ok(Self {
            redis,
            db,
            mysql: tokio::sync::Semaphore::new(permits),
            consumer,
            config,
            grouped: Mutex::default(),
            known_events: Mutex::default(),
            gauges: Gauges::default(),
            stepped: tokio::sync::Mutex::default(),
            sweeps: tokio::sync::Mutex::default(),
            last_sweep: Mutex::default(),
        })
    }

    /// This consumer's name in the groups.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs a worker per registered event (see `worker`) until `shutdown` resolves,
    /// starting and stopping workers as the registry changes, a sweep (see
    /// `sweeper`) every `sweep_every`, and the expirer of holds (see `expirer`) beside
    /// them. On shutdown each worker finishes the step it is in, so no claim is left
    /// half settled (and none would be lost if it were: it stays pending in the
    /// stream); the expirer is stopped where it is (see `expire_forever`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let this = Arc::new(self);
        let expirer = tokio::spawn({
            let this = this.clone();
            async move { this.expire_forever().await }
        });
        let mut workers = Workers::default();
        let mut failures: u32 = 0;
        loop {
            match this.registered().await {
                Ok(events) => {
                    failures = 0;
                    workers.align(&this, &events);
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %format!("{err:#}"), "cannot read the registry of events on sale");
                }
            }
            this.sweep_if_due().await;
            let pause = if failures == 0 {
                worker::REGISTRY_EVERY
            } else {
                backoff(failures, this.config.max_backoff)
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        expirer.abort();
        workers.stop().await;
        tracing::info!(consumer = %this.consumer, "reconciler stopped");
    }

    /// A sweep, if the last one was `sweep_every` ago or more. A failure is logged and
    /// the sweep tried again at its next turn.
    async fn sweep_if_due(&self) {
        {
            let mut last = self.last_sweep.lock().expect("not poisoned");
            if last.is_some_and(|t| t.elapsed() < self.config.sweep_every) {
                return;
            }
            *last = Some(Instant::now());
        }
        if let Err(err) = self.sweep().await {
            tracing::warn!(error = %format!("{err:#}"), "sweep failed");
        }
    }

    /// One step on every registered event's outbox, the events side by side: each
    /// reads a batch (this consumer's pending entries, then new ones), settles it and
    /// acknowledges what was settled. If no outbox had anything, reads again until
    /// `block` has passed. An event whose step fails is logged and left out of the
    /// report; the step fails only if every event's did.
    pub async fn step(&self, block: Duration) -> anyhow::Result<StepReport> {
        let events = self.registered().await?;
        if events.is_empty() {
            telemetry::reconciler_lag(Duration::ZERO);
            tokio::time::sleep(block).await;
            return Ok(StepReport::default());
        }
        let mut states = self.stepped.lock().await;
        states.retain(|event, _| events.contains(event));
        for event in &events {
            if !states.contains_key(event) {
                states.insert(event.clone(), OutboxState::new(self, event));
            }
        }
        let until = Instant::now() + block;
        loop {
            let steps =
                futures::future::join_all(states.values_mut().map(|s| self.step_event(s))).await;
            let (mut read, mut report, mut failed) = (0, StepReport::default(), None);
            let all = steps.len();
            let mut failures = 0;
            for step in steps {
                match step {
                    Ok((n, r)) => {
                        read += n;
                        report.add(r);
                    }
                    Err(err) => {
                        tracing::warn!(error = %format!("{err:#}"), "outbox step failed");
                        failures += 1;
                        failed.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = failed.filter(|_| failures == all) {
                return Err(err);
            }
            if read > 0 || Instant::now() >= until {
                return Ok(report);
            }
            tokio::time::sleep(worker::IDLE_FIRST.min(until - Instant::now())).await;
        }
    }

    /// This database's events of the registry (see [`Reconciler::ours`]).
    async fn registered(&self) -> anyhow::Result<Vec<String>> {
        self.ours(self.redis.registered_events().await?).await
    }

    /// The registered events that this reconciler's database has. One it does not
    /// have belongs to another deployment sharing the namespace (see `deployment`): its
    /// outbox is not read at all, so its entries wait, undelivered, for the reconcilers
    /// of the database that owns it. Settling them here would reject that deployment's
    /// claims ("event not found") and hand their seats back.
    async fn ours(&self, registered: Vec<String>) -> anyhow::Result<Vec<String>> {
        let unknown: Vec<&str> = {
            let known = self.known_events.lock().expect("not poisoned");
            registered
                .iter()
                .filter(|event| known.get(event.as_str()) != Some(&true))
                .map(String::as_str)
                .collect()
        };
        if !unknown.is_empty() {
            let found = db::events::existing(&self.db, &unknown)
                .await
                .context("cannot look the registered events up in MySQL")?;
            let mut known = self.known_events.lock().expect("not poisoned");
            for event in unknown {
                let ours = found.contains(event);
                if known.insert(event.to_owned(), ours).is_none() && !ours {
                    tracing::warn!(
                        event.id = %event,
                        "an event registered in this Redis namespace is not in this database; \
                         its claims are left to the deployment that owns it"
                    );
                }
            }
        }
        let known = self.known_events.lock().expect("not poisoned");
        Ok(registered
            .into_iter()
            .filter(|event| known.get(event) == Some(&true))
            .collect())
    }
}

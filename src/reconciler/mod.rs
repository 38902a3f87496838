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
//! Tests drive [`Reconciler::step`] (one read, one batch) and [`Reconciler::settle`]
//! (one claim) directly; [`Reconciler::run`] is the loop around `step`.
//!
//! The work is split by job: `outbox` reads, acknowledges, takes over and
//! dead-letters stream entries and decodes them into [`Claim`]s; `decide` is the
//! per-claim decision, a pure function; `settle` is the MySQL transaction that reads
//! what the decision needs under the seat locks and carries it out, with the Redis
//! follow-ups. This module holds the types, the [`Reconciler`] and its `run`/`step`.

use crate::backoff::backoff;
use anyhow::Context;
use sqlx::MySqlPool;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::claims::{Primary, RedisStore, StoreError, Target};
use crate::db;
use crate::domain::{BookingStatus, RejectReason};
use crate::telemetry;

mod decide;
mod outbox;
mod settle;
mod sweeper;

pub use sweeper::SweepReport;

use crate::clock::stream_entry_age;
use outbox::is_no_group;

/// Tuning of one reconciler.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Most entries read per stream per step.
    pub batch: usize,
    /// How long one read waits for new entries.
    pub block: Duration,
    /// Claims settled at once (each its own MySQL transaction).
    pub concurrency: usize,
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
            block: Duration::from_millis(500),
            concurrency: 16,
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
}

/// How a claim was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Persisted now and confirmed in Redis.
    Confirmed,
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
    pub rejected: usize,
    pub already_settled: usize,
    /// Entries that failed transiently and stay pending for the next step.
    pub retry: usize,
    /// Entries that could not be decoded; moved to the dead-letter stream.
    pub dead: usize,
}

impl StepReport {
    pub fn settled(&self) -> usize {
        self.confirmed + self.rejected + self.already_settled + self.dead
    }
}

/// One consumer of the outboxes.
pub struct Reconciler {
    redis: RedisStore,
    /// A connection of its own for the blocking `XREADGROUP`: a blocked read would
    /// stall every other command pipelined on the shared multiplexed connection.
    reader: Primary,
    db: MySqlPool,
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
    last_autoclaim: Mutex<Option<Instant>>,
    last_outbox_sample: Mutex<Option<Instant>>,
    /// The sweeper's progress through each event (see `sweeper`); one sweep at a time.
    sweeps: tokio::sync::Mutex<HashMap<String, sweeper::EventSweep>>,
    last_sweep: Mutex<Option<Instant>>,
}

impl Reconciler {
    pub fn new(
        redis: RedisStore,
        redis_url: &str,
        db: MySqlPool,
        config: ReconcilerConfig,
    ) -> anyhow::Result<Self> {
        // The read blocks for `config.block`, so its reply timeout must be longer.
        let reader = Primary::with_timeouts(
            Target::parse(redis_url).context("invalid SEATGATE_REDIS_URL")?,
            Duration::from_secs(2),
            config.block + Duration::from_secs(5),
        );
        let consumer = format!("reconciler-{}", uuid::Uuid::now_v7());
        Ok(Self {
            redis,
            reader,
            db,
            consumer,
            config,
            grouped: Mutex::default(),
            known_events: Mutex::default(),
            last_autoclaim: Mutex::default(),
            last_outbox_sample: Mutex::default(),
            sweeps: tokio::sync::Mutex::default(),
            last_sweep: Mutex::default(),
        })
    }

    /// This consumer's name in the groups.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs steps until `shutdown` resolves, and a sweep (see `sweeper`) every
    /// `sweep_every` between them. A step or sweep in progress is finished first, so no
    /// claim is left half settled (and none would be lost if it were: it stays pending
    /// in the stream).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
            self.sweep_if_due().await;
            let step = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                step = self.step(self.config.block) => step,
            };
            let trouble = match step {
                Ok(report) => report.retry > 0,
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "reconciler step failed");
                    true
                }
            };
            if !trouble {
                failures = 0;
                continue;
            }
            failures = failures.saturating_add(1);
            let pause = backoff(failures, self.config.max_backoff);
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!(consumer = %self.consumer, "reconciler stopped");
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

    /// Reads one batch (this consumer's pending entries first, then new ones, waiting
    /// up to `block` for them), settles it, and acknowledges what was settled.
    pub async fn step(&self, block: Duration) -> anyhow::Result<StepReport> {
        let events = self.ours(self.redis.registered_events().await?).await?;
        if events.is_empty() {
            telemetry::reconciler_lag(Duration::ZERO);
            tokio::time::sleep(block).await;
            return Ok(StepReport::default());
        }
        let outboxes: HashMap<String, String> = events
            .into_iter()
            .map(|event| (self.redis.keys(&event).outbox(), event))
            .collect();
        let keys: Vec<&String> = outboxes.keys().collect();
        self.ensure_groups(&keys).await?;
        self.sample_outboxes(&keys).await;
        let entries = match self.read(&keys, &outboxes, block).await {
            // One read covers every outbox, so one stream that lost its group (deleted,
            // or lost with Redis's data) fails it for all of them: forget which groups
            // exist, make sure of them again (recreating the lost one) and read again.
            Err(err) if is_no_group(&err) => {
                tracing::warn!(error = %format!("{err:#}"), "an outbox lost its consumer group; recreating it");
                self.grouped.lock().expect("not poisoned").clear();
                self.ensure_groups(&keys).await?;
                self.read(&keys, &outboxes, block).await?
            }
            read => read?,
        };
        telemetry::reconciler_lag(
            entries
                .iter()
                .map(|e| stream_entry_age(&e.id))
                .max()
                .unwrap_or_default(),
        );

        let mut report = StepReport::default();
        let mut acks: HashMap<String, Vec<String>> = HashMap::new();
        for (entry, outcome) in self.settle_entries(entries).await {
            match (&entry.claim, outcome) {
                (Err(problem), _) => {
                    if !self.dead_letter(&entry, problem).await? {
                        report.retry += 1;
                        continue;
                    }
                    report.dead += 1;
                }
                (Ok(_), Ok(Settled::Confirmed)) => report.confirmed += 1,
                (Ok(_), Ok(Settled::Rejected(_))) => report.rejected += 1,
                (Ok(_), Ok(Settled::AlreadySettled(_))) => report.already_settled += 1,
                (Ok(claim), Err(err)) => {
                    let give_up = if !err.is_transient() {
                        Some(RejectReason::PersistFailed)
                    } else if stream_entry_age(&entry.id) > self.config.claim_deadline {
                        Some(RejectReason::DeadlineExceeded)
                    } else {
                        None
                    };
                    tracing::warn!(
                        event.id = %claim.event_id, booking.id = %claim.booking_id,
                        transient = err.is_transient(), error = %err, giving_up = give_up.is_some(),
                        "claim not persisted"
                    );
                    let rejected = match give_up {
                        Some(reason) => self.reject_claim(claim, reason).await,
                        None => {
                            report.retry += 1;
                            continue;
                        }
                    };
                    match rejected {
                        Ok(Settled::Confirmed) => report.confirmed += 1,
                        Ok(Settled::Rejected(_)) => report.rejected += 1,
                        Ok(Settled::AlreadySettled(_)) => report.already_settled += 1,
                        Err(err) => {
                            tracing::warn!(booking.id = %claim.booking_id, error = %err,
                                "cannot reject the claim either; it stays pending and is retried");
                            report.retry += 1;
                            continue;
                        }
                    }
                }
            }
            acks.entry(entry.outbox).or_default().push(entry.id);
        }
        self.acknowledge(acks).await?;
        telemetry::bookings_settled("confirmed", report.confirmed);
        telemetry::bookings_settled("rejected", report.rejected);
        telemetry::reconciler_trouble(report.retry, report.dead);
        Ok(report)
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

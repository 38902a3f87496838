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
//! 3. If Redis no longer holds the claim as pending (rejected by an earlier delivery,
//!    or lost with Redis's data), there is nothing to persist.
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

use anyhow::Context;
use futures::StreamExt;
use rand::Rng;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use sqlx::MySqlPool;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::claims::keys::RECONCILER_GROUP;
use crate::claims::{ensure_group, RedisStore, StoreError};
use crate::db::{self, bookings::BookingRow};
use crate::domain::{reasons, BookingStatus};
use crate::telemetry;

mod decide;

use decide::{decide, Decision, Follow};

/// Redis follow-ups (`confirm.lua` and its notification) of one batch in flight at
/// once, after its COMMIT: Redis calls only, pipelined on one multiplexed connection, so
/// many can be in flight without holding anything else.
const FOLLOW_UPS_IN_FLIGHT: usize = 256;

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
    Rejected(&'static str),
    /// Settled before (redelivery, cancellation, or Redis no longer has the claim);
    /// Redis was brought in line with MySQL where needed.
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
    pub fn is_transient(&self) -> bool {
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
    /// Dedicated connections for the blocking `XREADGROUP`: a blocked read would stall
    /// every other command pipelined on the shared multiplexed connection.
    readers: deadpool_redis::Pool,
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
}

/// How often `seatgate_outbox_length` is sampled, at most.
const OUTBOX_SAMPLE_EVERY: Duration = Duration::from_secs(1);

impl Reconciler {
    pub fn new(
        redis: RedisStore,
        redis_url: &str,
        db: MySqlPool,
        config: ReconcilerConfig,
    ) -> anyhow::Result<Self> {
        // The read blocks for `config.block`, so its response timeout must be longer.
        let conn_config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(config.block + Duration::from_secs(5)));
        let manager = deadpool_redis::Manager::new_with_config(redis_url, conn_config)
            .context("invalid SEATGATE_REDIS_URL")?;
        let readers = deadpool_redis::Pool::builder(manager)
            .max_size(2)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .context("cannot build the reconciler's Redis pool")?;
        let consumer = format!("reconciler-{}", uuid::Uuid::now_v7());
        Ok(Self {
            redis,
            readers,
            db,
            consumer,
            config,
            grouped: Mutex::default(),
            known_events: Mutex::default(),
            last_autoclaim: Mutex::default(),
            last_outbox_sample: Mutex::default(),
        })
    }

    /// This consumer's name in the groups.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs steps until `shutdown` resolves. A step in progress is finished first, so
    /// no claim is left half settled (and none would be lost if it were: it stays
    /// pending in the stream).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
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
                .map(|e| entry_age(&e.id))
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
                        Some(reasons::PERSIST_FAILED)
                    } else if entry_age(&entry.id) > self.config.claim_deadline {
                        Some(reasons::DEADLINE_EXCEEDED)
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

    /// Settles a batch of entries: all decodable claims in one MySQL transaction
    /// ([`Reconciler::settle_batch`]) when batching is on and there is more than one;
    /// if that fails, each claim on its own ([`Reconciler::settle`]), so that one bad
    /// claim cannot hold up the others and each failure is judged by itself.
    async fn settle_entries(
        &self,
        entries: Vec<Entry>,
    ) -> Vec<(Entry, Result<Settled, SettleError>)> {
        let claims: Vec<Claim> = entries
            .iter()
            .filter_map(|e| e.claim.as_ref().ok().cloned())
            .collect();
        if self.config.batched && claims.len() > 1 {
            match self.settle_batch(&claims).await {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    return entries
                        .into_iter()
                        .map(|entry| {
                            let outcome = match &entry.claim {
                                Ok(_) => Ok(outcomes.next().expect("one outcome per claim")),
                                Err(_) => Ok(Settled::AlreadySettled(None)),
                            };
                            (entry, outcome)
                        })
                        .collect();
                }
                Err(err) => {
                    tracing::warn!(claims = claims.len(), error = %err, "batch not settled; settling its claims one by one");
                }
            }
        }
        futures::stream::iter(entries)
            .map(|entry| async move {
                let outcome = match &entry.claim {
                    Ok(claim) => self.settle(claim).await,
                    Err(_) => Ok(Settled::AlreadySettled(None)),
                };
                (entry, outcome)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await
    }

    /// Settles many claims in one MySQL transaction: the same decisions as
    /// [`Reconciler::settle`], claim by claim in stream order, with one round trip per
    /// kind of statement instead of per claim. Every seat row of the batch is locked
    /// `FOR UPDATE` in (event, seat) order first, so batches and single settles cannot
    /// deadlock each other. A conflict rejects only the claim concerned. Returns one
    /// outcome per claim, in order; any error fails the whole batch (nothing of it is
    /// committed) and the caller falls back to single settles.
    pub async fn settle_batch(&self, claims: &[Claim]) -> Result<Vec<Settled>, SettleError> {
        self.settle_all(claims, None).await
    }

    /// Persists one claim and settles it in Redis: a batch of one. Idempotent.
    pub async fn settle(&self, claim: &Claim) -> Result<Settled, SettleError> {
        self.settle_one(claim, None).await
    }

    /// Gives up on a claim that cannot be persisted (a permanent database error, the
    /// claim deadline, an undecodable entry): rejects it for `reason` and gives Redis
    /// MySQL's state for its seats. The rejection is recorded in MySQL under the seats'
    /// locks, so no later delivery can persist it; and if MySQL turns out to have the
    /// booking after all (a COMMIT whose answer was lost), it is confirmed instead: a
    /// committed booking is never rolled back. Needs MySQL, like `settle`.
    pub async fn reject_claim(
        &self,
        claim: &Claim,
        reason: &'static str,
    ) -> Result<Settled, SettleError> {
        self.settle_one(claim, Some(reason)).await
    }

    async fn settle_one(
        &self,
        claim: &Claim,
        give_up: Option<&'static str>,
    ) -> Result<Settled, SettleError> {
        let mut settled = self
            .settle_all(std::slice::from_ref(claim), give_up)
            .await?;
        Ok(settled.pop().expect("one outcome per claim"))
    }

    /// One settle attempt, bounded in time: a stalled connection (the network, or a
    /// server that stopped answering) must not hang the reconciler. On timeout the
    /// transaction is dropped, so MySQL rolls it back, and the entries are retried.
    /// With `give_up`, claims that could be persisted are rejected for that reason.
    async fn settle_all(
        &self,
        claims: &[Claim],
        give_up: Option<&'static str>,
    ) -> Result<Vec<Settled>, SettleError> {
        let limit = self.config.settle_timeout;
        tokio::time::timeout(limit, self.settle_all_unbounded(claims, give_up))
            .await
            .unwrap_or(Err(SettleError::Timeout(limit)))
    }

    /// The steps, for every claim in stream order:
    /// 1. lock the seat rows (done for the whole batch first);
    /// 2. if MySQL already knows the booking, Redis follows MySQL;
    /// 3. if Redis no longer holds the claim as pending, there is nothing to persist
    ///    (the seat locks serialise this read with every other settle of the booking);
    /// 4. if a seat is missing or booked by another booking, reject (recorded in
    ///    MySQL, and in Redis while the locks are held);
    /// 5. otherwise book; after the COMMIT, confirm in Redis.
    ///
    /// Steps 2 to 5 are decided by [`decide::decide`] from what was read under the
    /// locks; this function does the reading and carries the decisions out.
    async fn settle_all_unbounded(
        &self,
        claims: &[Claim],
        give_up: Option<&'static str>,
    ) -> Result<Vec<Settled>, SettleError> {
        // Seats by event, both sorted: the global lock order.
        let mut by_event: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for claim in claims {
            by_event
                .entry(claim.event_id.as_str())
                .or_default()
                .extend(claim.seats.iter().cloned());
        }
        let mut tx = self.db.begin().await?;
        // (event, seat) → (status, booking id) as MySQL has it, updated as the batch
        // decides.
        let mut seats: HashMap<(String, String), db::bookings::LockedSeat> = HashMap::new();
        for (event_id, list) in &mut by_event {
            list.sort_unstable();
            list.dedup();
            for chunk in list.chunks(1000) {
                for locked in db::bookings::lock_seats(&mut tx, event_id, chunk).await? {
                    seats.insert((event_id.to_string(), locked.seat.clone()), locked);
                }
            }
        }
        let ids: Vec<&str> = claims.iter().map(|c| c.booking_id.as_str()).collect();
        let known = db::bookings::find_bookings(&mut tx, &ids).await?;
        let in_redis = self
            .redis
            .booking_statuses(
                claims
                    .iter()
                    .map(|c| (c.event_id.as_str(), c.booking_id.as_str())),
            )
            .await?;

        let mut outcomes = Vec::with_capacity(claims.len());
        let mut after = Vec::with_capacity(claims.len());
        let mut rows = Vec::new();
        let mut to_book: Vec<&Claim> = Vec::new();
        // (index of the claim, claim, reason) of every rejection to tell Redis.
        let mut rejects: Vec<(usize, &Claim, &'static str)> = Vec::new();
        for (i, (claim, redis_status)) in claims.iter().zip(in_redis).enumerate() {
            let key = |seat: &String| (claim.event_id.clone(), seat.clone());
            let locked: Vec<Option<&db::bookings::LockedSeat>> = claim
                .seats
                .iter()
                .map(|seat| seats.get(&key(seat)))
                .collect();
            let decision = decide(
                claim,
                known.get(claim.booking_id.as_str()),
                redis_status,
                &locked,
                give_up,
            );
            match decision {
                Decision::FollowMysql(follow) => {
                    match follow {
                        Follow::Confirm => after.push(After::Confirm),
                        Follow::Cancel => after.push(After::Cancel),
                        Follow::Reject(reason) => {
                            rejects.push((i, claim, reason));
                            after.push(After::Nothing);
                        }
                    }
                    outcomes.push(None);
                }
                Decision::AlreadySettled(redis_status) => {
                    outcomes.push(Some(Settled::AlreadySettled(redis_status)));
                    after.push(After::Nothing);
                }
                Decision::Reject { reason, record } => {
                    if record {
                        rows.push(row(claim, BookingStatus::Rejected, Some(reason)));
                    }
                    rejects.push((i, claim, reason));
                    outcomes.push(Some(Settled::Rejected(reason)));
                    after.push(After::Nothing);
                }
                Decision::Persist => {
                    // Later claims of the batch see these seats booked.
                    for seat in &claim.seats {
                        if let Some(l) = seats.get_mut(&key(seat)) {
                            l.status = "booked".into();
                            l.booking_id = Some(claim.booking_id.clone());
                        }
                    }
                    rows.push(row(claim, BookingStatus::Confirmed, None));
                    to_book.push(claim);
                    outcomes.push(Some(Settled::Confirmed));
                    after.push(After::Confirm);
                }
            }
        }

        db::bookings::insert_bookings(&mut tx, &rows).await?;
        db::bookings::book_seats_of(
            &mut tx,
            &to_book
                .iter()
                .map(|c| {
                    (
                        c.event_id.as_str(),
                        c.booking_id.as_str(),
                        c.seats.as_slice(),
                    )
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        // Rejections go to Redis while the locks are held (see `settle`).
        for (i, claim, reason) in &rejects {
            let locked: Vec<db::bookings::LockedSeat> = claim
                .seats
                .iter()
                .filter_map(|seat| seats.get(&(claim.event_id.clone(), seat.clone())).cloned())
                .collect();
            let status = self.reject_in_redis(claim, reason, &locked).await?;
            // A rejection MySQL already had: report what Redis now says.
            outcomes[*i].get_or_insert(Settled::AlreadySettled(status));
        }
        tx.commit().await?;
        for (i, claim, reason) in &rejects {
            if outcomes[*i] == Some(Settled::Rejected(reason)) {
                tracing::info!(event.id = %claim.event_id, booking.id = %claim.booking_id, reason, "claim rejected");
            }
        }

        // After the COMMIT: Redis learns of the confirmations and cancellations.
        let mut results = Vec::with_capacity(claims.len());
        let followups: Vec<_> = claims
            .iter()
            .zip(after)
            .zip(outcomes)
            .map(|((claim, after), outcome)| self.follow_up(claim, after, outcome))
            .collect();
        for settled in futures::stream::iter(followups)
            .buffered(FOLLOW_UPS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
        {
            results.push(settled?);
        }
        Ok(results)
    }

    /// What a batch does in Redis for one claim after its COMMIT.
    async fn follow_up(
        &self,
        claim: &Claim,
        after: After,
        decided: Option<Settled>,
    ) -> Result<Settled, SettleError> {
        let status = match after {
            After::Confirm => self.confirm(claim).await?,
            After::Cancel => {
                self.redis
                    .cancel(
                        &claim.event_id,
                        &claim.booking_id,
                        &claim.user_id,
                        &claim.seats,
                    )
                    .await?
            }
            After::Nothing => None,
        };
        Ok(decided.unwrap_or(Settled::AlreadySettled(status)))
    }

    /// `reject.lua` with MySQL's state of the claim's seats, read under the locks the
    /// caller still holds.
    async fn reject_in_redis(
        &self,
        claim: &Claim,
        reason: &str,
        locked: &[db::bookings::LockedSeat],
    ) -> Result<Option<BookingStatus>, SettleError> {
        let states = truth(&claim.seats, locked);
        Ok(self
            .redis
            .reject(
                &claim.event_id,
                &claim.booking_id,
                &claim.user_id,
                reason,
                &states,
            )
            .await?)
    }

    /// `confirm.lua`, retried: after a COMMIT the booking is confirmed for good, and
    /// Redis must learn it. If Redis stays unreachable the error goes up, the entry
    /// stays pending, and its redelivery confirms through step 2 of `settle`.
    async fn confirm(&self, claim: &Claim) -> Result<Option<BookingStatus>, SettleError> {
        let mut attempt = 0;
        loop {
            match self
                .redis
                .confirm(&claim.event_id, &claim.booking_id, &claim.seats)
                .await
            {
                Ok(status) => return Ok(status),
                Err(err) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(booking.id = %claim.booking_id, error = %err, "confirm failed; retrying");
                    tokio::time::sleep(backoff(attempt, Duration::from_millis(500))).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
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

    /// Takes over stale entries, then reads this consumer's pending entries and, after
    /// them, new ones (waiting up to `block` only if there were none pending).
    async fn read(
        &self,
        keys: &[&String],
        outboxes: &HashMap<String, String>,
        block: Duration,
    ) -> anyhow::Result<Vec<Entry>> {
        self.autoclaim(keys).await?;
        let mut reader = self.readers.get().await.context("reconciler redis pool")?;
        let opts = StreamReadOptions::default()
            .group(RECONCILER_GROUP, &self.consumer)
            .count(self.config.batch);
        let own: Vec<&str> = vec!["0"; keys.len()];
        let mut entries = decode(reader.xread_options(keys, &own, &opts).await?, outboxes);
        let new: Vec<&str> = vec![">"; keys.len()];
        let opts = if entries.is_empty() {
            opts.block(block.as_millis() as usize)
        } else {
            opts
        };
        entries.extend(decode(
            reader.xread_options(keys, &new, &opts).await?,
            outboxes,
        ));
        Ok(entries)
    }

    async fn ensure_groups(&self, outboxes: &[&String]) -> anyhow::Result<()> {
        let missing: Vec<String> = {
            let grouped = self.grouped.lock().expect("not poisoned");
            outboxes
                .iter()
                .filter(|k| !grouped.contains(k.as_str()))
                .map(|k| k.to_string())
                .collect()
        };
        let mut conn = self.redis.connection();
        for outbox in missing {
            ensure_group(&mut conn, &outbox).await?;
            self.grouped.lock().expect("not poisoned").insert(outbox);
        }
        Ok(())
    }

    /// Takes over entries that sat too long in other (presumably dead) consumers'
    /// pending lists; they are settled by the following steps.
    async fn autoclaim(&self, outboxes: &[&String]) -> anyhow::Result<()> {
        {
            let mut last = self.last_autoclaim.lock().expect("not poisoned");
            if last.is_some_and(|t| t.elapsed() < self.config.autoclaim_every) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let mut conn = self.redis.connection();
        let idle = self.config.claim_min_idle.as_millis() as u64;
        for outbox in outboxes {
            let reply: StreamAutoClaimReply = conn
                .xautoclaim_options(
                    outbox.as_str(),
                    RECONCILER_GROUP,
                    &self.consumer,
                    idle,
                    "0-0",
                    StreamAutoClaimOptions::default().count(self.config.batch),
                )
                .await?;
            if !reply.claimed.is_empty() {
                tracing::info!(outbox = %outbox, entries = reply.claimed.len(), "took over stale outbox entries");
            }
        }
        Ok(())
    }

    /// Sets `seatgate_outbox_length` to the outboxes' summed `XLEN` (one pipelined
    /// round trip), at most once a second; a failure only skips the sample.
    async fn sample_outboxes(&self, outboxes: &[&String]) {
        {
            let mut last = self.last_outbox_sample.lock().expect("not poisoned");
            if last.is_some_and(|t| t.elapsed() < OUTBOX_SAMPLE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut pipe = redis::pipe();
        for outbox in outboxes {
            pipe.xlen(outbox.as_str());
        }
        let mut conn = self.redis.connection();
        match pipe.query_async::<Vec<u64>>(&mut conn).await {
            Ok(lengths) => telemetry::outbox_length(lengths.iter().sum()),
            Err(err) => tracing::debug!(error = %err, "cannot sample the outbox lengths"),
        }
    }

    async fn acknowledge(&self, acks: HashMap<String, Vec<String>>) -> anyhow::Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (outbox, ids) in &acks {
            // XDEL after XACK keeps the stream from growing; the entry is settled.
            pipe.xack(outbox, RECONCILER_GROUP, ids).ignore();
            pipe.xdel(outbox, ids).ignore();
        }
        let mut conn = self.redis.connection();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Moves an undecodable entry to the event's dead-letter stream with its error.
    /// If the entry still names its booking and Redis has the booking's record, the
    /// booking is rejected (seats back to MySQL's truth) first, so its seats are not
    /// held forever. Returns false when that rejection failed transiently (the entry
    /// stays pending and is tried again).
    async fn dead_letter(&self, entry: &Entry, problem: &str) -> anyhow::Result<bool> {
        if let Some(booking_id) = &entry.booking_hint {
            if let Some(booking) = self.redis.booking(&entry.event_id, booking_id).await? {
                let claim = Claim {
                    event_id: entry.event_id.clone(),
                    booking_id: booking.booking_id,
                    user_id: booking.user_id,
                    seats: booking.seats,
                };
                if let Err(err) = self.reject_claim(&claim, reasons::MALFORMED_CLAIM).await {
                    tracing::warn!(booking.id = %claim.booking_id, error = %err, "cannot reject the booking of an undecodable entry yet");
                    return Ok(false);
                }
            }
        }
        tracing::error!(outbox = %entry.outbox, entry.id = %entry.id, problem, "undecodable outbox entry moved to the dead-letter stream");
        let mut conn = self.redis.connection();
        let dead = self.redis.keys(&entry.event_id).dead_letters();
        let _: String = conn
            .xadd(
                dead,
                "*",
                &[
                    ("entry", entry.id.as_str()),
                    ("booking", entry.booking_hint.as_deref().unwrap_or("")),
                    ("error", problem),
                ],
            )
            .await?;
        Ok(true)
    }
}

/// What a batch still has to tell Redis about a claim once MySQL has committed.
enum After {
    Confirm,
    Cancel,
    Nothing,
}

/// An outbox entry and the claim decoded from it.
struct Entry {
    outbox: String,
    event_id: String,
    id: String,
    claim: Result<Claim, String>,
    /// The booking id, when the entry has a readable one (for dead letters).
    booking_hint: Option<String>,
}

fn decode(reply: Option<StreamReadReply>, outboxes: &HashMap<String, String>) -> Vec<Entry> {
    let Some(reply) = reply else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for stream in reply.keys {
        let Some(event_id) = outboxes.get(&stream.key) else {
            continue;
        };
        for item in stream.ids {
            let field = |name: &str| -> Result<String, String> {
                match item.map.get(name) {
                    Some(redis::Value::BulkString(b)) => String::from_utf8(b.clone())
                        .map_err(|_| format!("field {name} is not UTF-8")),
                    _ => Err(format!("field {name} is missing")),
                }
            };
            let claim = (|| {
                let seats: Vec<String> = serde_json::from_str(&field("s")?)
                    .map_err(|e| format!("field s is not a list of seats: {e}"))?;
                if seats.is_empty() {
                    return Err("field s is empty".to_owned());
                }
                Ok(Claim {
                    event_id: event_id.clone(),
                    booking_id: field("b")?,
                    user_id: field("u")?,
                    seats,
                })
            })();
            let booking_hint = field("b").ok().filter(|b| uuid::Uuid::parse_str(b).is_ok());
            entries.push(Entry {
                outbox: stream.key.clone(),
                event_id: event_id.clone(),
                id: item.id,
                claim,
                booking_hint,
            });
        }
    }
    entries
}

/// True when Redis answered `NOGROUP`: a stream, or its consumer group, is gone.
fn is_no_group(err: &anyhow::Error) -> bool {
    err.downcast_ref::<redis::RedisError>()
        .is_some_and(|e| e.code() == Some("NOGROUP"))
}

/// How long ago an outbox entry was added: its id is `<milliseconds>-<sequence>`.
pub(crate) fn entry_age(id: &str) -> Duration {
    let added_ms: u64 = id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(u64::MAX);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(now_ms.saturating_sub(added_ms))
}

/// MySQL's state of each seat of the claim, in Redis's spelling; a seat MySQL does
/// not have is given back as available.
fn truth(seats: &[String], locked: &[db::bookings::LockedSeat]) -> Vec<(String, String)> {
    seats
        .iter()
        .map(|seat| {
            let state = locked
                .iter()
                .find(|l| &l.seat == seat)
                .map(|l| l.state())
                .unwrap_or_else(|| "available".to_owned());
            (seat.clone(), state)
        })
        .collect()
}

fn row(claim: &Claim, status: BookingStatus, reason: Option<&str>) -> BookingRow {
    BookingRow {
        id: claim.booking_id.clone(),
        event_id: claim.event_id.clone(),
        user_id: claim.user_id.clone(),
        status,
        seats: claim.seats.clone(),
        reason: reason.map(str::to_owned),
    }
}

/// Capped exponential backoff with full jitter: uniform in `[0, min(cap, 50ms·2^n)]`.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = Duration::from_millis(50)
        .saturating_mul(1u32 << attempt.min(16))
        .min(cap);
    ceiling.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_tell_their_age() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let age = entry_age(&format!("{}-0", now_ms - 5_000));
        assert!(age >= Duration::from_secs(5) && age < Duration::from_secs(60));
        assert_eq!(entry_age("garbage"), Duration::ZERO);
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 0..40 {
            assert!(backoff(attempt, Duration::from_secs(2)) <= Duration::from_secs(2));
        }
        assert!(backoff(0, Duration::from_secs(2)) <= Duration::from_millis(50));
    }
}

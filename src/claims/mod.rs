//! The Redis side of seatgate: the claim hot path and every script that moves seats.
//! One file for [`RedisStore`] because each of its methods is the same few lines around
//! one script or command on the one connection; the replies' parsing is in [`scripts`],
//! the seat states' spelling in [`state`], the key names in [`keys`].
//!
//! [`RedisStore`] wraps one [`Primary`]: a multiplexed connection that pipelines every
//! concurrent request on one socket, reconnects by itself (through Sentinel when the
//! URL names sentinels) and checks each new connection before it carries a claim
//! ([`fence`]). On this
//! workload it carries more claims than a small connection pool (measured in
//! BENCHMARKS.md, "Redis connection"), because hundreds of concurrent claims share one
//! socket instead of queueing for a few. Nothing here ever blocks the connection: blocking
//! stream reads use their own connection (see `reconciler`).
//!
//! Every call is bounded by a timeout, so a stalled Redis turns into a quick
//! [`StoreError::Timeout`] (503 upstream) instead of a hung request.

pub mod fence;
pub mod keys;
pub mod posture;
pub mod primary;
pub mod replication;
pub mod scripts;
pub mod settled;
pub mod state;

use redis::{AsyncCommands, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use crate::domain::claim::{ClaimOutcome, ClaimRequest, EventSummary, Selection};
pub use fence::Fence;
pub use keys::EventKeys;
pub use primary::{Primary, Target};
pub use scripts::Restore;

use crate::domain::{Booking, BookingStatus, RejectReason, SeatState, Timestamp};

/// Why a Redis call failed. All of these are "try again later" for a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
    /// Redis may have lost writes (a restart, a failover, lost keys) and has not been
    /// rebuilt from MySQL yet: no claim is taken until it is (see [`fence`]).
    #[error("claims are fenced: {0}")]
    Fenced(&'static str),
    /// The claim ran, but the replicas it needs did not confirm it (see `replication`).
    #[error("redis replication: {0}")]
    Replication(#[from] replication::ReplicationError),
    /// Redis answered, but the startup posture check refuses it (see `posture`).
    #[error("redis refused: {0}")]
    Posture(String),
}

impl StoreError {
    pub(crate) fn unexpected(what: &str, value: &Value) -> Self {
        Self::Reply(format!("expected {what}, got {value:?}"))
    }
}

/// Seat counts after a warm or repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatCounts {
    pub seats_total: u64,
    pub available: u64,
    pub pending: u64,
    pub booked: u64,
    /// Seats of bookings held for their checkout (events with holds).
    pub held: u64,
}

/// How long idempotency records are kept.
pub(crate) const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The per-user claim rate that `claim.lua` enforces, per (event, user), on the
/// event's slot: one limit whatever the number of gateways.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserRate {
    /// Claims per second on average (at least one a day).
    per_second: f64,
    /// Claims in a burst (at least 1).
    burst: u32,
}

impl UserRate {
    /// `per_second` claims per second with bursts of `burst`; `None` (no limit) when
    /// `per_second` is 0, negative or not finite. Rates under one claim a day are one a
    /// day (the rate key's expiry must stay within what Redis takes).
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        (per_second > 0.0 && per_second.is_finite()).then(|| Self {
            per_second: per_second.max(1.0 / 86_400.0),
            burst: burst.max(1),
        })
    }
}

/// Handle to Redis for the API and the reconciler. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    conn: Primary,
    namespace: String,
    timeout: Duration,
    fence: Arc<Fence>,
    /// The claims' per-user rate; `None`: no limit (tools, benchmarks, tests).
    user_rate: Option<UserRate>,
}

impl RedisStore {
    /// Connects (failing fast if Redis does not answer) with a per-call `timeout`.
    pub async fn connect(url: &str, namespace: &str, timeout: Duration) -> anyhow::Result<Self> {
        let store = Self::connect_lazy(url, namespace, timeout)?;
        store.ping().await?;
        Ok(store)
    }

    /// A store that connects on first use and reconnects by itself, so the gateway can
    /// start, and stay up, while Redis is down (its calls fail fast meanwhile). Claims
    /// are not fenced: see [`RedisStore::fenced`].
    pub(crate) fn connect_lazy(
        url: &str,
        namespace: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            conn: Primary::new(Target::parse(url)?, timeout),
            namespace: namespace.to_owned(),
            timeout,
            fence: Arc::new(Fence::off()),
            user_rate: None,
        })
    }

    /// This store with claims fenced: a claim runs only on a connection whose Redis
    /// has been checked against MySQL (the gateway's store; tools and benchmarks use
    /// stores without).
    pub fn fenced(mut self) -> Self {
        self.fence = Arc::new(Fence::on());
        self
    }

    /// This store with claims limited per user and event (see [`UserRate`]); `None`
    /// lifts the limit.
    pub fn with_user_rate(mut self, rate: Option<UserRate>) -> Self {
        self.user_rate = rate;
        self
    }

    /// The fence of this store's claims.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The primary this store talks to.
    pub fn primary(&self) -> &Primary {
        &self.conn
    }

    /// The key builder of one event.
    pub fn keys(&self, event_id: &str) -> EventKeys {
        EventKeys::new(&self.namespace, event_id)
    }

    /// The namespace all keys live under.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A connection for commands not wrapped here (tests, admin tools).
    pub fn connection(&self) -> Primary {
        self.conn.clone()
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                self.conn.note_timeout();
                Err(StoreError::Timeout(self.timeout))
            }
        }
    }

    /// Runs one command on the shared connection, bounded like every call.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// Runs commands that each name the keys of one event (of any events), answering
    /// in order: one pipeline on one node; on a cluster, where a pipeline must stay on
    /// one slot, each command on its own (the cluster client still pipelines those
    /// bound for one node).
    pub(crate) async fn query_each<T: redis::FromRedisValue>(
        &self,
        cmds: Vec<redis::Cmd>,
    ) -> Result<Vec<T>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let live = self.bounded(self.conn.live()).await?;
        let conn = self.conn.bound(live.clone());
        if !live.is_cluster() {
            let mut pipe = redis::pipe();
            for cmd in cmds {
                pipe.add_command(cmd);
            }
            return self.bounded(pipe.query_async(&mut conn.clone())).await;
        }
        let each = cmds.iter().map(|cmd| {
            let mut conn = conn.clone();
            async move { cmd.query_async::<T>(&mut conn).await }
        });
        self.bounded(futures::future::try_join_all(each)).await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// The hot path: one `EVALSHA claim.lua`.
    pub async fn claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimOutcome, StoreError> {
        Ok(self.claim_on_connection(req).await?.0)
    }

    /// [`RedisStore::claim`], also answering which connection ran it (its
    /// generation, see [`primary::Live::generation`]): a replication round must follow
    /// the claim on the same connection to cover it.
    pub(crate) async fn claim_on_connection(
        &self,
        req: &ClaimRequest<'_>,
    ) -> Result<(ClaimOutcome, u64), StoreError> {
        // On a cluster, a node that does not hold the mark the claim carried (it expired
        // while the keeper could not refresh it, or the shard changed) runs nothing of
        // it. The event is then checked again: vouched for anew, the claim runs once
        // more; otherwise it is fenced.
        if let Some(answer) = self.claim_once(req).await? {
            return Ok(answer);
        }
        self.claim_once(req).await?.ok_or(StoreError::Fenced(
            "the Redis Cluster shard of the event changed; it is rebuilt from MySQL",
        ))
    }

    /// One attempt at a claim; `None` when its node did not hold the claim's mark.
    async fn claim_once(
        &self,
        req: &ClaimRequest<'_>,
    ) -> Result<Option<(ClaimOutcome, u64)>, StoreError> {
        let (mut conn, mark) = self.claim_connection(req.event_id.as_str()).await?;
        let k = self.keys(req.event_id.as_str());
        let mut inv = scripts::CLAIM.prepare_invoke();
        inv.key(k.meta())
            .key(k.seats())
            .key(k.avail())
            .key(k.user(req.user_id.as_str()))
            .key(k.outbox())
            .key(k.booking(req.booking_id))
            .key(k.rate(req.user_id.as_str()))
            .key(k.mark());
        let fingerprint = match req.idempotency {
            Some((key, fp)) => {
                inv.key(k.idempotency(req.user_id.as_str(), key));
                fp
            }
            None => "",
        };
        inv.arg(req.booking_id)
            .arg(req.user_id.as_str())
            .arg(req.now_ms)
            .arg(fingerprint)
            .arg(IDEMPOTENCY_TTL.as_secs());
        let (mode, quantity) = match req.selection {
            Selection::Seats(_) => ("seats", 0),
            Selection::Quantity(n) => ("quantity", n),
        };
        inv.arg(mode).arg(quantity);
        match self.user_rate {
            // Display of an f64 is the shortest text that reads back as the same f64.
            Some(rate) => inv.arg(rate.per_second.to_string()).arg(rate.burst),
            None => inv.arg(0).arg(1),
        };
        inv.arg(&mark);
        if let Selection::Seats(seats) = req.selection {
            inv.arg(seats);
        }
        let generation = conn.live().generation();
        let value: Value = match self.bounded(inv.invoke_async(&mut conn)).await {
            Ok(value) => value,
            Err(err) => {
                // On a cluster, a shard that fails (or fails over) shows itself first by
                // errors: the event is checked again before its next claim runs, so a
                // promoted replica is seen at once, not at the keeper's next look.
                if conn.live().is_cluster() {
                    self.fence.forget_event(req.event_id.as_str());
                }
                return Err(err);
            }
        };
        if scripts::is_fenced(&value) {
            self.fence.forget_event(req.event_id.as_str());
            self.fence.want_rebuild();
            return Ok(None);
        }
        let outcome = ClaimOutcome::parse(value)?;
        if outcome == ClaimOutcome::EventNotFound && self.fence.lost_keys_of(req.event_id.as_str())
        {
            return Err(StoreError::Fenced("the event's keys are missing in Redis"));
        }
        Ok(Some((outcome, generation)))
    }

    /// Waits until `replicas` replicas hold every write the primary ran before this
    /// call, or `timeout` passes; answers how many did (see `replication`, which also
    /// says why the `WAIT` follows a write of its own).
    pub(crate) async fn wait_for_replicas(
        &self,
        replicas: u32,
        timeout: Duration,
    ) -> Result<u64, StoreError> {
        // WAIT 0 would block for ever.
        let wait_ms = timeout.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut pipe = redis::pipe();
        pipe.set(keys::replication_mark(&self.namespace), 1)
            .ignore()
            .cmd("WAIT")
            .arg(replicas)
            .arg(wait_ms);
        let mut conn = self.conn.clone();
        // WAIT itself takes up to `timeout`; the usual bound is on top of it.
        let bound = Duration::from_millis(wait_ms) + self.timeout;
        match tokio::time::timeout(bound, pipe.query_async::<(u64,)>(&mut conn)).await {
            Ok(result) => Ok(result?.0),
            Err(_) => Err(StoreError::Timeout(bound)),
        }
    }

    /// `INFO <section>`, as Redis writes it.
    pub(crate) async fn info(&self, section: &str) -> Result<Vec<String>, StoreError> {
        let reply: Value = self.query(redis::cmd("INFO").arg(section)).await?;
        // On a cluster, INFO goes to every primary: a map of node address to its reply.
        let texts = match reply {
            Value::Map(nodes) => nodes.into_iter().map(|(_, text)| text).collect(),
            one => vec![one],
        };
        texts
            .into_iter()
            .map(|text| {
                redis::from_redis_value(text)
                    .map_err(|e| StoreError::from(redis::RedisError::from(e)))
            })
            .collect()
    }

    /// `CONFIG GET <parameter>`: its value, or `None` when the server refuses (`CONFIG`
    /// renamed or disabled, as managed services do) or does not know the parameter.
    pub(crate) async fn config_get(&self, parameter: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::RedisResult<HashMap<String, String>> = match tokio::time::timeout(
            self.timeout,
            redis::cmd("CONFIG")
                .arg("GET")
                .arg(parameter)
                .query_async(&mut conn),
        )
        .await
        {
            Ok(reply) => reply,
            Err(_) => return Err(StoreError::Timeout(self.timeout)),
        };
        match reply {
            Ok(mut values) => Ok(values.remove(parameter)),
            // A server error reply (`ERR unknown command`): the server answered "no".
            Err(e) if e.code().is_some() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Notes in the idempotency record of (`user_id`, `key`) that its claim was
    /// answered `status` (a `Prefer: wait` claim answered 201 or 409), so that replays
    /// answer the same. False when the record is gone or belongs to another request.
    pub(crate) async fn record_answer(
        &self,
        event_id: &str,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        status: u16,
    ) -> Result<bool, StoreError> {
        let mut inv = scripts::ANSWERED.prepare_invoke();
        inv.key(self.keys(event_id).idempotency(user_id, key))
            .arg(fingerprint)
            .arg(status);
        let mut conn = self.conn.clone();
        let noted: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(noted == 1)
    }

    /// Promotes a pending or held booking to confirmed (after its MySQL COMMIT: the
    /// reconciler's persist, or a checkout). `None` when Redis has no record of it:
    /// see [`RedisStore::restore_confirmed`].
    pub async fn confirm(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        seats: &[String],
    ) -> Result<Option<BookingStatus>, StoreError> {
        self.promote(event_id, booking_id, user_id, Promotion::Confirmed, seats)
            .await
    }

    /// Holds a pending booking until `expires_ms` (after the reconciler's MySQL COMMIT
    /// of it as held): its seats become `held:<bid>` and it joins the event's holds.
    /// `None` when Redis has no record of it.
    pub async fn hold(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        expires_ms: u64,
        seats: &[String],
    ) -> Result<Option<BookingStatus>, StoreError> {
        let to = Promotion::Held(expires_ms);
        self.promote(event_id, booking_id, user_id, to, seats).await
    }

    /// `confirm.lua` without its restoring mode.
    async fn promote(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        to: Promotion,
        seats: &[String],
    ) -> Result<Option<BookingStatus>, StoreError> {
        let k = self.keys(event_id);
        let inv = confirm_invocation(&k, booking_id, user_id, false, to, seats);
        self.settle(inv, "confirm", event_id, booking_id).await
    }

    /// Moves a held (or pending) booking's deadline to `expires_ms` in Redis, after
    /// MySQL recorded it. Returns the booking's status (`None`: no record).
    pub async fn extend(
        &self,
        event_id: &str,
        booking_id: &str,
        expires_ms: u64,
    ) -> Result<Option<BookingStatus>, StoreError> {
        let k = self.keys(event_id);
        let mut inv = scripts::EXTEND.prepare_invoke();
        inv.key(k.booking(booking_id))
            .key(k.holds())
            .arg(booking_id)
            .arg(expires_ms);
        let mut conn = self.conn.clone();
        let value: Value = self.bounded(inv.invoke_async(&mut conn)).await?;
        scripts::parse_status("extend", value)
    }

    /// Up to `limit` held bookings of the event whose deadline is at or before
    /// `now_ms`, from the event's holds zset, earliest first: `(booking id, deadline)`.
    pub(crate) async fn holds_due(
        &self,
        event_id: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.keys(event_id).holds())
            .arg("-inf")
            .arg(now_ms)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES");
        let due: Vec<(String, f64)> = self.query(&cmd).await?;
        Ok(due
            .into_iter()
            .map(|(bid, at)| (bid, at.max(0.0) as u64))
            .collect())
    }

    /// Rejects a pending booking and sets its seats to MySQL's `states`. A booking whose
    /// record Redis lost is rejected too, its record written again (see `reject.lua`).
    pub async fn reject(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        reason: RejectReason,
        states: &[(String, SeatState)],
    ) -> Result<Option<BookingStatus>, StoreError> {
        let mut inv = scripts::REJECT.prepare_invoke();
        self.keys(event_id)
            .releasing(&mut inv, user_id, booking_id)
            .arg(reason.as_str())
            .arg(user_id);
        for (seat, state) in states {
            inv.arg(seat).arg(state.to_redis());
        }
        self.settle(inv, "reject", event_id, booking_id).await
    }

    /// Frees a booking's seats in Redis (after MySQL recorded the cancellation).
    pub async fn cancel(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        seats: &[String],
    ) -> Result<Option<BookingStatus>, StoreError> {
        self.release(
            event_id,
            booking_id,
            user_id,
            BookingStatus::Cancelled,
            seats,
        )
        .await
    }

    /// Frees an expired hold's seats in Redis (after MySQL recorded the expiry). A
    /// booking Redis has confirmed is left alone.
    pub async fn expire(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        seats: &[String],
    ) -> Result<Option<BookingStatus>, StoreError> {
        self.release(event_id, booking_id, user_id, BookingStatus::Expired, seats)
            .await
    }

    /// `cancel.lua`, recording `status` (cancelled or expired).
    async fn release(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        status: BookingStatus,
        seats: &[String],
    ) -> Result<Option<BookingStatus>, StoreError> {
        let k = self.keys(event_id);
        let mut inv = scripts::CANCEL.prepare_invoke();
        k.releasing(&mut inv, user_id, booking_id)
            .key(k.holds())
            .arg(status.as_str())
            .arg(seats);
        self.settle(inv, status.as_str(), event_id, booking_id)
            .await
    }

    /// Runs a script that settles a booking (confirm, reject, cancel), reads the
    /// booking's status from its reply, and tells the waiters.
    async fn settle(
        &self,
        inv: redis::ScriptInvocation<'_>,
        script: &str,
        event_id: &str,
        booking_id: &str,
    ) -> Result<Option<BookingStatus>, StoreError> {
        let mut conn = self.conn.clone();
        let value: Value = self.bounded(inv.invoke_async(&mut conn)).await?;
        let status = scripts::parse_status(script, value)?;
        self.announce_settled(event_id, booking_id).await;
        Ok(status)
    }

    /// Tells waiting requests (`Prefer: wait`) that the booking may have settled. Best
    /// effort: a lost notification only means a waiter answers at its timeout.
    /// On a cluster the notification goes on the event's sharded channel (`SPUBLISH`),
    /// which only the event's shard carries, instead of a channel every node relays.
    async fn announce_settled(&self, event_id: &str, booking_id: &str) {
        let published: Result<i64, _> = if self.conn.is_cluster() {
            let channel = self.keys(event_id).settled();
            let mut publish = redis::cmd("SPUBLISH");
            publish.arg(&channel).arg(booking_id);
            self.bounded(self.conn.query_at(&channel, publish)).await
        } else {
            let mut conn = self.conn.clone();
            let channel = keys::settled_channel(&self.namespace);
            self.bounded(conn.publish(channel, booking_id)).await
        };
        if let Err(err) = published {
            tracing::debug!(booking.id = %booking_id, error = %err, "settle notification not published");
        }
    }

    /// The statuses of many bookings, in order, in one round trip (`None`: no record).
    pub(crate) async fn booking_statuses<'a>(
        &self,
        bookings: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<Option<BookingStatus>>, StoreError> {
        let cmds = bookings
            .map(|(event_id, booking_id)| {
                redis::Cmd::hget(self.keys(event_id).booking(booking_id), "status")
            })
            .collect();
        let statuses: Vec<Option<String>> = self.query_each(cmds).await?;
        Ok(statuses
            .into_iter()
            .map(|s| s.as_deref().and_then(BookingStatus::parse))
            .collect())
    }

    /// Copies one chunk of `(seat, ordinal, MySQL state)`, in ascending ordinal order,
    /// into Redis, leaving seats of pending claims alone, and puts each seat in its
    /// place in the order list. Returns how many seats' states changed.
    pub async fn warm_chunk(
        &self,
        event_id: &str,
        chunk: &[(String, i64, SeatState)],
    ) -> Result<i64, StoreError> {
        let k = self.keys(event_id);
        let mut inv = scripts::WARM.prepare_invoke();
        inv.key(k.seats()).key(k.avail()).key(k.order());
        for (seat, ordinal, state) in chunk {
            inv.arg(seat).arg(ordinal).arg(state.to_redis());
        }
        let mut conn = self.conn.clone();
        let value: Value = self.bounded(inv.invoke_async(&mut conn)).await?;
        scripts::integer(value)
    }

    /// Recounts an event's seats, stores its meta and, if `on_sale`, opens the sale.
    pub async fn warm_finish(
        &self,
        event_id: &str,
        name: &str,
        per_user_limit: u32,
        seats_total: u64,
        on_sale: bool,
        hold_seconds: u32,
    ) -> Result<SeatCounts, StoreError> {
        let k = self.keys(event_id);
        let mut inv = scripts::WARM_FINISH.prepare_invoke();
        inv.key(k.meta())
            .key(k.seats())
            .key(k.avail())
            .arg(name)
            .arg(per_user_limit)
            .arg(seats_total)
            .arg(if on_sale { "1" } else { "0" })
            .arg(hold_seconds);
        let mut conn = self.conn.clone();
        let value: Value = self.bounded(inv.invoke_async(&mut conn)).await?;
        let n = match value {
            Value::Array(items) if items.len() == 5 => items
                .into_iter()
                .map(|v| scripts::integer(v).map(|n| n.max(0) as u64))
                .collect::<Result<Vec<_>, _>>()?,
            other => return Err(StoreError::unexpected("five counts", &other)),
        };
        Ok(SeatCounts {
            seats_total: n[0],
            available: n[1],
            pending: n[2],
            booked: n[3],
            held: n[4],
        })
    }

    /// Sets the per-user tallies of confirmed bookings: `(user, booking id, seats)`.
    pub async fn set_holdings(
        &self,
        event_id: &str,
        holdings: &[(String, String, i64)],
    ) -> Result<(), StoreError> {
        let k = self.keys(event_id);
        for chunk in holdings.chunks(1000) {
            let mut pipe = redis::pipe();
            for (user, booking_id, seats) in chunk {
                pipe.hset(k.user(user), booking_id, seats).ignore();
            }
            let mut conn = self.conn.clone();
            let () = self.bounded(pipe.query_async(&mut conn)).await?;
        }
        Ok(())
    }

    /// Records that the event is on sale (for reconcilers) and makes sure its outbox
    /// has the reconcilers' consumer group.
    pub(crate) async fn register_event(&self, event_id: &str) -> Result<(), StoreError> {
        let k = self.keys(event_id);
        let mut conn = self.conn.clone();
        self.bounded(ensure_group(&mut conn, &k.outbox())).await?;
        let registry = keys::events_registry(&self.namespace);
        let _: i64 = self.bounded(conn.sadd(registry, event_id)).await?;
        Ok(())
    }

    /// Deletes every Redis key of the event and takes it off the registry: the event is
    /// no longer on sale, and a warm brings it back from MySQL. For demos and tools;
    /// never on a path that serves a drop.
    ///
    /// The keys the event is known by (its meta and inventory) go last, in one `DEL`,
    /// after it has left the registry: until then the event looks whole, so the fence
    /// keeper does not rebuild it while this is still deleting; once they are gone,
    /// nothing here deletes again, so a rebuild that follows at once is not undone.
    pub async fn delete_event(&self, event_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let k = self.keys(event_id);
        let last = k.core();
        let pattern = k.pattern();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            // A large COUNT: the event's keys are a small part of a big keyspace.
            let (next, keys): (u64, Vec<String>) =
                self.scan_event(&k, cursor, &pattern, 10_000).await?;
            let keys: Vec<String> = keys.into_iter().filter(|key| !last.contains(key)).collect();
            if !keys.is_empty() {
                let n: u64 = self.bounded(conn.del(keys)).await?;
                deleted += n;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let registry = keys::events_registry(&self.namespace);
        let _: i64 = self.bounded(conn.srem(registry, event_id)).await?;
        let n: u64 = self.bounded(conn.del(&last)).await?;
        Ok(deleted + n)
    }

    /// One `SCAN` step for keys of one event matching `pattern`. On a cluster it runs on
    /// the primary serving the event's slot, which holds every key of the event: one
    /// node's keyspace, not the cluster's.
    async fn scan_event(
        &self,
        k: &keys::EventKeys,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        self.bounded(self.conn.query_at(&k.meta(), scan)).await
    }

    /// The on-sale events (the registry reconcilers read).
    pub(crate) async fn registered_events(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let registry = keys::events_registry(&self.namespace);
        self.bounded(conn.smembers(registry)).await
    }

    /// Records `owner` as the owner of this namespace unless it already has one
    /// (`SET NX`), and returns the owner the namespace has now: `owner` itself, or
    /// whoever set it first.
    pub(crate) async fn claim_namespace(&self, owner: &str) -> Result<String, StoreError> {
        let key = keys::namespace_owner(&self.namespace);
        let mut conn = self.conn.clone();
        // SET NX, then GET (`SET … NX GET` would need Redis 7). Should the key vanish
        // between the two, the next SET NX takes it.
        for _ in 0..3 {
            let set: bool = self.bounded(conn.set_nx(&key, owner)).await?;
            if set {
                return Ok(owner.to_owned());
            }
            let found: Option<String> = self.bounded(conn.get(&key)).await?;
            if let Some(found) = found {
                return Ok(found);
            }
        }
        Err(StoreError::Reply(format!(
            "{key} keeps vanishing between SET NX and GET"
        )))
    }

    /// The event's summary, or `None` when it is unknown or not on sale.
    pub async fn event_summary(&self, event_id: &str) -> Result<Option<EventSummary>, StoreError> {
        let k = self.keys(event_id);
        let mut conn = self.conn.clone();
        let (meta, available): (HashMap<String, String>, u64) = self
            .bounded(
                redis::pipe()
                    .hgetall(k.meta())
                    .zcard(k.avail())
                    .query_async(&mut conn),
            )
            .await?;
        if meta.get("on_sale").map(String::as_str) != Some("1") {
            return Ok(None);
        }
        let num = |f: &str| meta.get(f).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Ok(Some(EventSummary {
            name: meta.get("name").cloned().unwrap_or_default(),
            per_user_limit: num("limit").max(0) as u32,
            seats_total: num("seats_total").max(0) as u64,
            available,
            pending: num("pending").max(0) as u64,
            booked: num("booked").max(0) as u64,
            held: num("held").max(0) as u64,
            hold_seconds: num("hold").max(0) as u32,
        }))
    }

    /// True when the event is on sale.
    pub(crate) async fn is_on_sale(&self, event_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let flag: Option<String> = self
            .bounded(conn.hget(self.keys(event_id).meta(), "on_sale"))
            .await?;
        Ok(flag.as_deref() == Some("1"))
    }

    /// Every seat with its ordinal and Redis state, in best-available order: the order
    /// list gives the ordinals. A seat the list lacks (an event warmed before the list
    /// existed, until its next warm or audit repair) comes last, by id, with ordinal
    /// `i64::MAX`. A state no script writes is a [`StoreError::Reply`].
    pub async fn seat_states(&self, event_id: &str) -> Result<Vec<SeatRecord>, StoreError> {
        let k = self.keys(event_id);
        let mut conn = self.conn.clone();
        let (mut states, order): (HashMap<String, String>, Vec<String>) = self
            .bounded(
                redis::pipe()
                    .hgetall(k.seats())
                    .lrange(k.order(), 0, -1)
                    .query_async(&mut conn),
            )
            .await?;
        let record = |seat: String, ordinal: i64, text: &str| match SeatState::from_redis(text) {
            Some(state) => Ok(SeatRecord {
                seat,
                ordinal,
                state,
            }),
            None => Err(StoreError::Reply(format!("seat {seat:?} is {text:?}"))),
        };
        let mut seats = Vec::with_capacity(states.len());
        for (ordinal, seat) in order.into_iter().enumerate() {
            if let Some(text) = states.remove(&seat) {
                seats.push(record(seat, ordinal as i64, &text)?);
            }
        }
        let mut rest = states
            .into_iter()
            .map(|(seat, text)| record(seat, i64::MAX, &text))
            .collect::<Result<Vec<_>, _>>()?;
        rest.sort_unstable_by(|a, b| a.seat.cmp(&b.seat));
        seats.extend(rest);
        Ok(seats)
    }

    /// The booking record, or `None` when Redis has none.
    pub async fn booking(
        &self,
        event_id: &str,
        booking_id: &str,
    ) -> Result<Option<Booking>, StoreError> {
        let mut conn = self.conn.clone();
        let mut rec: HashMap<String, String> = self
            .bounded(conn.hgetall(self.keys(event_id).booking(booking_id)))
            .await?;
        let (Some(user_id), Some(seats), Some(status)) = (
            rec.remove("user"),
            rec.remove("seats"),
            rec.remove("status"),
        ) else {
            return Ok(None);
        };
        let seats: Vec<String> = serde_json::from_str(&seats)
            .map_err(|e| StoreError::Reply(format!("booking seats: {e}")))?;
        let status = BookingStatus::parse(&status)
            .ok_or_else(|| StoreError::Reply(format!("booking status {status:?}")))?;
        Ok(Some(Booking {
            booking_id: booking_id.to_owned(),
            event_id: event_id.to_owned(),
            user_id,
            seats,
            status,
            reason: rec.remove("reason"),
            expires_at: rec
                .remove("expires_ms")
                .and_then(|ms| ms.parse().ok())
                .map(Timestamp)
                .filter(|_| status.has_deadline()),
            attendees: None,
        }))
    }

    /// Writes a confirmed booking whose record Redis lost back into Redis, from MySQL:
    /// its `seats` booked by it, its record, its owner's tally (`confirm.lua` in its
    /// restoring mode). Only while the caller holds the seats' rows locked in MySQL and
    /// has read the booking confirmed there (see `confirm.lua` for why).
    pub async fn restore_confirmed(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        seats: &[String],
    ) -> Result<Restore, StoreError> {
        self.restore(event_id, booking_id, user_id, None, seats)
            .await
    }

    /// [`RedisStore::restore_confirmed`] for a booking MySQL has confirmed
    /// (`held_until` `None`) or held until `held_until`.
    pub async fn restore(
        &self,
        event_id: &str,
        booking_id: &str,
        user_id: &str,
        held_until: Option<u64>,
        seats: &[String],
    ) -> Result<Restore, StoreError> {
        let inv = confirm_invocation(
            &self.keys(event_id),
            booking_id,
            user_id,
            true,
            held_until.map_or(Promotion::Confirmed, Promotion::Held),
            seats,
        );
        let mut conn = self.conn.clone();
        let value: Value = self.bounded(inv.invoke_async(&mut conn)).await?;
        let restored = scripts::parse_restore(value)?;
        self.announce_settled(event_id, booking_id).await;
        Ok(restored)
    }

    /// One `HSCAN` step over the event's seats from `cursor` (0 starts a pass): the
    /// next cursor (0 when the pass is complete) and the `(seat, state)` pairs read.
    pub(crate) async fn scan_seats(
        &self,
        event_id: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<(String, String)>), StoreError> {
        self.query(
            redis::cmd("HSCAN")
                .arg(self.keys(event_id).seats())
                .arg(cursor)
                .arg("COUNT")
                .arg(count),
        )
        .await
    }

    /// The states of these seats (`None`: no such seat), in order, in one round trip.
    pub(crate) async fn seat_texts(
        &self,
        event_id: &str,
        seats: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        if seats.is_empty() {
            return Ok(Vec::new());
        }
        // HMGET with one field answers a list as well; `hget` would not.
        self.query(
            redis::cmd("HMGET")
                .arg(self.keys(event_id).seats())
                .arg(seats),
        )
        .await
    }

    /// The booking records of these ids as the sweeper reads them, in order, in one
    /// round trip (`None`: Redis has no record).
    pub(crate) async fn claim_records(
        &self,
        event_id: &str,
        booking_ids: &[&str],
    ) -> Result<Vec<Option<ClaimRecord>>, StoreError> {
        let k = self.keys(event_id);
        let mut pipe = redis::pipe();
        for booking_id in booking_ids {
            pipe.cmd("HMGET").arg(k.booking(booking_id)).arg(&[
                "status",
                "user",
                "seats",
                "created_ms",
            ]);
        }
        let mut conn = self.conn.clone();
        type Fields = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Fields> = self.bounded(pipe.query_async(&mut conn)).await?;
        Ok(rows
            .into_iter()
            .map(|(status, user, seats, created_ms)| {
                let status = status?;
                Some(ClaimRecord {
                    status: BookingStatus::parse(&status),
                    user,
                    seats: seats.and_then(|s| serde_json::from_str(&s).ok()),
                    created_ms: created_ms.and_then(|t| t.parse().ok()),
                })
            })
            .collect())
    }

    /// The booking ids of the event's outbox entries, if it holds at most `limit`.
    pub(crate) async fn outbox_bookings(
        &self,
        event_id: &str,
        limit: usize,
    ) -> Result<Option<HashSet<String>>, StoreError> {
        let outbox = self.keys(event_id).outbox();
        let mut conn = self.conn.clone();
        let length: usize = self.bounded(conn.xlen(&outbox)).await?;
        if length > limit {
            return Ok(None);
        }
        let reply: redis::streams::StreamRangeReply = self
            .bounded(conn.xrange_count(&outbox, "-", "+", limit.max(1)))
            .await?;
        Ok(Some(
            reply
                .ids
                .into_iter()
                .filter_map(|entry| entry.get::<String>("b"))
                .collect(),
        ))
    }

    /// One `SCAN` step over the event's user tallies from `cursor` (0 starts): the next
    /// cursor (0 when done) and, for each tally found that holds one of `booking_ids`,
    /// `(user, booking id)`. Only the sweeper's search for the owner of a claim whose
    /// record Redis lost walks the keyspace like this.
    pub(crate) async fn find_owners(
        &self,
        event_id: &str,
        cursor: u64,
        count: usize,
        booking_ids: &[&str],
    ) -> Result<(u64, Vec<(String, String)>), StoreError> {
        let k = self.keys(event_id);
        let mut conn = self.conn.clone();
        let (next, tallies): (u64, Vec<String>) = self
            .scan_event(&k, cursor, &k.users_pattern(), count)
            .await?;
        let tallies: Vec<(String, String)> = tallies
            .into_iter()
            .filter_map(|key| Some((k.user_of(&key)?.to_owned(), key)))
            .collect();
        if tallies.is_empty() || booking_ids.is_empty() {
            return Ok((next, Vec::new()));
        }
        let mut pipe = redis::pipe();
        for (_, key) in &tallies {
            pipe.cmd("HMGET").arg(key).arg(booking_ids);
        }
        let held: Vec<Vec<Option<String>>> = self.bounded(pipe.query_async(&mut conn)).await?;
        let mut owners = Vec::new();
        for ((user, _), held) in tallies.into_iter().zip(held) {
            for (booking_id, n) in booking_ids.iter().zip(held) {
                if n.is_some() {
                    owners.push((user.clone(), booking_id.to_string()));
                }
            }
        }
        Ok((next, owners))
    }

    /// The ids of `user_id`'s live bookings in the event (pending, held or confirmed):
    /// the fields of the user's tally, in no particular order. The user's listing of
    /// their bookings reads it for the claims MySQL does not have yet, which only Redis
    /// knows; the per-user limit bounds how many there can be.
    pub async fn user_booking_ids(
        &self,
        event_id: &str,
        user_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(conn.hkeys(self.keys(event_id).user(user_id)))
            .await
    }
}

/// What `confirm.lua` makes of a booking.
#[derive(Debug, Clone, Copy)]
enum Promotion {
    Confirmed,
    /// Held until this deadline (ms since the epoch).
    Held(u64),
}

/// `confirm.lua`'s call: keys, then booking id, user, restore flag, target and seats.
fn confirm_invocation<'a>(
    k: &EventKeys,
    booking_id: &str,
    user_id: &str,
    restore: bool,
    to: Promotion,
    seats: &[String],
) -> redis::ScriptInvocation<'a> {
    let mut inv = scripts::CONFIRM.prepare_invoke();
    inv.key(k.meta())
        .key(k.seats())
        .key(k.avail())
        .key(k.user(user_id))
        .key(k.booking(booking_id))
        .key(k.holds())
        .arg(booking_id)
        .arg(user_id)
        .arg(if restore { "1" } else { "0" });
    match to {
        Promotion::Confirmed => inv.arg("confirmed").arg(""),
        Promotion::Held(at) => inv.arg("held").arg(at),
    };
    inv.arg(seats);
    inv
}

/// A booking record as the sweeper reads it: each field as Redis has it, `None` where
/// it is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimRecord {
    pub status: Option<BookingStatus>,
    pub user: Option<String>,
    pub seats: Option<Vec<String>>,
    pub created_ms: Option<u64>,
}

/// One seat as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRecord {
    pub seat: String,
    /// Its place in best-available order (`i64::MAX` when the order list lacks it).
    pub ordinal: i64,
    pub state: SeatState,
}

/// `XGROUP CREATE <outbox> reconcilers 0 MKSTREAM`, treating "already exists" as done.
pub(crate) async fn ensure_group<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    outbox: &str,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(outbox)
        .arg(keys::RECONCILER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

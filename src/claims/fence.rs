//! Fencing: no claim is acknowledged on Redis data that may have lost writes.
//!
//! Redis loses writes in three ways: it restarts from older data (an RDB snapshot, an
//! AOF fsynced a second ago), a replica that lags is promoted, or keys vanish (a
//! flush, an eviction, a hand-made `DEL`). Afterwards an event can look on sale with
//! seats `available` that MySQL has booked and with users' tallies gone. seatgate must
//! not take claims on that state until it has put MySQL's truth back (the safe warm).
//!
//! **The argument.** The Redis node a connection reaches is named by its `run_id`,
//! which is new at every start of a server process; a promoted replica is another
//! process with its own. seatgate keeps, in Redis itself, the `run_id` of the node it
//! last rebuilt from MySQL (`<namespace>seatgate:incarnation`). So:
//!
//! - a node that restarted, from any data, has a `run_id` that the record (restored
//!   with that data, or absent) does not name;
//! - a promoted replica has its own `run_id`, and the record it holds (replicated from
//!   the old primary) names the old primary;
//! - a flush takes the record with it.
//!
//! In each case the record and the node disagree. Both restart and failover break the
//! TCP connection (Sentinel also kills the clients of a demoted primary), and
//! [`Primary`](super::Primary) learns the `run_id` of every new connection before it
//! sends anything on it; a claim runs only on a connection checked against the record
//! ([`RedisStore::claim_connection`]). Hence no claim is acknowledged on a node
//! between its loss and its rebuild: the window is zero for restarts and failovers.
//! The rebuild (`ops::fence`) warms every event MySQL has on sale and then writes the
//! record with the `run_id` it started from; if the node changed meanwhile, the record
//! names the old one and the fence stays.
//!
//! Keys lost *without* a new connection (a flush, eviction, `DEL`) are seen by the
//! keeper's periodic check (every `ops::fence::CHECK_EVERY`): until then a claim on a
//! lost event finds no event and is answered 503, not 404 (it would not be
//! acknowledged either way), because MySQL says the event is on sale
//! ([`Fence::lost_keys_of`]).
//!
//! The record is checked again on every new connection, and by the keeper every
//! `CHECK_EVERY` on the current one, so a process that starts on a Redis that lost its
//! data is fenced too (its first connection is new).
//!
//! **On a Redis Cluster** each shard restarts and fails over on its own, and one
//! cluster connection stands for all of them, so the record is per event: its meta's
//! `node` field names the primary (by `run_id`) that served the event's slot when it was
//! last warmed or rebuilt. A claim runs only on an event whose record was found to name
//! the slot's primary of the moment ([`RedisStore::verify_event`], remembered per
//! event; the keeper checks every event on sale each `CHECK_EVERY`). A failover or a
//! restart of one shard fences the events of that shard only, and the keeper rebuilds
//! just those; so does a slot moved to another primary (`CLUSTER SETSLOT`), whose
//! data came along intact, but which seatgate cannot tell from a loss. The window is
//! not zero there: the cluster client follows a failover by itself, so claims on the
//! failed shard's events run on the promoted replica until the keeper's next check
//! (at most `CHECK_EVERY`) sees the new `run_id`, unless a claim on the shard failed
//! meanwhile (a dying primary times out or drops connections before its replica takes
//! over): a failed claim makes the next one check the shard first. With `SEATGATE_REDIS_MIN_REPLICAS`
//! ≥ 1 the promoted replica holds every acknowledged claim, and what it may lack
//! (confirmations, cancellations) leaves seats more taken than MySQL says, never less.

use redis::AsyncCommands;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

use super::primary::{Bound, Live};
use super::{keys, RedisStore, StoreError};

/// The fencing state of one store.
#[derive(Default)]
pub struct Fence {
    on: bool,
    /// The events MySQL has on sale, as the keeper last read them: a claim that finds
    /// one of them missing in Redis found lost keys.
    on_sale: RwLock<HashSet<String>>,
    /// Woken when a claim finds Redis unverified or an event's keys missing.
    wanted: Notify,
    /// On a cluster: the events whose record was last found to name their slot's
    /// primary, and that primary's `run_id`.
    verified_events: RwLock<HashMap<String, String>>,
    /// Whether `on_sale` has been read from MySQL yet.
    on_sale_known: std::sync::atomic::AtomicBool,
}

impl Fence {
    /// No fencing: every connection takes claims (tools, tests of the scripts).
    pub(crate) fn off() -> Self {
        Self::default()
    }

    pub(crate) fn on() -> Self {
        Self {
            on: true,
            ..Self::default()
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Records the events MySQL has on sale.
    pub fn set_on_sale(&self, events: HashSet<String>) {
        *self.on_sale.write().expect("not poisoned") = events;
        self.on_sale_known
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// True when the keeper has read MySQL and found the event not on sale: nothing of
    /// it in Redis needs guarding (a claim on it is answered 404 by the script).
    fn known_off_sale(&self, event_id: &str) -> bool {
        self.on_sale_known
            .load(std::sync::atomic::Ordering::Acquire)
            && !self
                .on_sale
                .read()
                .expect("not poisoned")
                .contains(event_id)
    }

    /// True when `event_id`, which Redis does not have on sale, is on sale in MySQL:
    /// its keys were lost. Wakes the keeper to rebuild it.
    pub(crate) fn lost_keys_of(&self, event_id: &str) -> bool {
        let lost = self.on
            && self
                .on_sale
                .read()
                .expect("not poisoned")
                .contains(event_id);
        if lost {
            self.wanted.notify_one();
        }
        lost
    }

    /// True when the event's record was found to name its slot's primary at the last
    /// look (on a cluster).
    fn event_verified(&self, event_id: &str) -> bool {
        self.verified_events
            .read()
            .expect("not poisoned")
            .contains_key(event_id)
    }

    /// Takes the event's verdict back: the next claim on it checks its shard first.
    pub(crate) fn forget_event(&self, event_id: &str) {
        self.set_event_verified(event_id, None);
    }

    fn set_event_verified(&self, event_id: &str, run_id: Option<&str>) {
        let mut verified = self.verified_events.write().expect("not poisoned");
        match run_id {
            Some(run_id) => {
                verified.insert(event_id.to_owned(), run_id.to_owned());
            }
            None => {
                verified.remove(event_id);
            }
        }
    }

    /// Resolves when a claim was refused for want of a rebuild.
    pub async fn wanted(&self) {
        self.wanted.notified().await
    }
}

/// What the incarnation record says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Incarnation {
    /// The node seatgate last rebuilt; `None` when there is no record.
    pub run_id: Option<String>,
}

impl RedisStore {
    /// The connection a claim runs on: the current one, checked against the
    /// incarnation record if it has not been yet. [`StoreError::Fenced`] when Redis
    /// still waits for its rebuild.
    pub(crate) async fn claim_connection(&self, event_id: &str) -> Result<Bound, StoreError> {
        let live = self.bounded(self.conn.live()).await?;
        let verified = !self.fence.on
            || if live.is_cluster() {
                self.fence.event_verified(event_id)
                    || self.verify_event(&live, event_id).await?
                    || self.fence.known_off_sale(event_id)
            } else {
                live.is_verified() || self.verify(&live).await?
            };
        if !verified {
            self.fence.wanted.notify_one();
            return Err(StoreError::Fenced(
                "Redis has not been rebuilt from MySQL since it restarted, failed over or lost keys",
            ));
        }
        Ok(self.conn.bound(live))
    }

    /// On a cluster: checks the event's record against the primary serving its slot
    /// now, and remembers the verdict. True when they agree.
    pub async fn verify_event(&self, live: &Arc<Live>, event_id: &str) -> Result<bool, StoreError> {
        let meta = self.keys(event_id).meta();
        let run_id = self.bounded(self.conn.run_id_for(live, &meta)).await?;
        let mut conn = self.conn.bound(live.clone());
        let node: Option<String> = self.bounded(conn.hget(&meta, "node")).await?;
        let agrees = node.as_deref() == Some(run_id.as_str());
        self.fence
            .set_event_verified(event_id, agrees.then_some(run_id.as_str()));
        Ok(agrees)
    }

    /// On a cluster: the `run_id` of the primary that serves the event's slot now
    /// (`None` on one node, where the incarnation record does this job).
    pub(crate) async fn shard_of(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        let live = self.bounded(self.conn.live()).await?;
        if !live.is_cluster() {
            return Ok(None);
        }
        let meta = self.keys(event_id).meta();
        Ok(Some(
            self.bounded(self.conn.run_id_for(&live, &meta)).await?,
        ))
    }

    /// On a cluster: records that the event was warmed on the primary `run_id` (read
    /// by [`RedisStore::shard_of`] before the warm began: should the slot have moved
    /// meanwhile, the record names the old primary and the event stays fenced until
    /// the keeper rebuilds it).
    pub(crate) async fn record_shard(
        &self,
        event_id: &str,
        run_id: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let () = self
            .bounded(conn.hset(self.keys(event_id).meta(), "node", run_id))
            .await?;
        Ok(())
    }

    /// Checks the node of `live` against the incarnation record and records the
    /// verdict on the connection. True when they agree.
    pub async fn verify(&self, live: &Arc<Live>) -> Result<bool, StoreError> {
        let record = self.incarnation_on(live).await?;
        let agrees = record.run_id.as_deref() == Some(live.run_id());
        live.set_verified(agrees);
        Ok(agrees)
    }

    /// The incarnation record, read on `live`.
    pub async fn incarnation_on(&self, live: &Arc<Live>) -> Result<Incarnation, StoreError> {
        let mut conn = self.conn.bound(live.clone());
        let run_id: Option<String> = self
            .bounded(conn.hget(keys::incarnation(&self.namespace), "run_id"))
            .await?;
        Ok(Incarnation { run_id })
    }

    /// Records that the node `run_id` has been rebuilt from MySQL.
    pub(crate) async fn record_incarnation(
        &self,
        live: &Arc<Live>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.bound(live.clone());
        let () = self
            .bounded(conn.hset_multiple(
                keys::incarnation(&self.namespace),
                &[
                    ("run_id", live.run_id().to_owned()),
                    ("rebuilt_ms", now_ms.to_string()),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Takes the rebuild lock for `ttl` unless another process holds it.
    pub(crate) async fn lock_rebuild(
        &self,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = self
            .bounded(
                redis::cmd("SET")
                    .arg(keys::rebuild_lock(&self.namespace))
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Lets the rebuild lock go if `owner` still holds it.
    pub(crate) async fn unlock_rebuild(&self, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        );
        let _: i64 = self
            .bounded(
                script
                    .key(keys::rebuild_lock(&self.namespace))
                    .arg(owner)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    /// Notes in an event's meta that claims made before `now_ms` may have been lost
    /// with Redis's data: a booking id of that age that neither store knows was
    /// acknowledged and lost (`lost_in_redis_failover`), not made up.
    pub(crate) async fn mark_lost_before(
        &self,
        event_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let () = self
            .bounded(conn.hset(self.keys(event_id).meta(), "lost_before_ms", now_ms))
            .await?;
        Ok(())
    }

    /// Before when claims of the event may have been lost with Redis's data (0: none).
    pub(crate) async fn lost_before(&self, event_id: &str) -> Result<i64, StoreError> {
        let mut conn = self.conn.clone();
        let at: Option<i64> = self
            .bounded(conn.hget(self.keys(event_id).meta(), "lost_before_ms"))
            .await?;
        Ok(at.unwrap_or(0))
    }

    /// Which of `events` Redis has on sale, in one round trip.
    pub(crate) async fn on_sale_flags(&self, events: &[String]) -> Result<Vec<bool>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = events
            .iter()
            .map(|event| redis::Cmd::hget(self.keys(event).meta(), "on_sale"))
            .collect();
        let flags: Vec<Option<String>> = self.query_each(cmds).await?;
        Ok(flags
            .into_iter()
            .map(|f| f.as_deref() == Some("1"))
            .collect())
    }
}

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
//! data came along intact, but which seatgate cannot tell from a loss.
//!
//! The cluster client follows a failover by itself and retries a command in flight on
//! the promoted replica, so a check made before the failover does not cover the claim
//! that runs after it. Hence the **mark** (`mark.lua`): verifying an event writes, on
//! the primary alone (replication off: neither replicas nor the AOF see it), the key
//! `{e:ID}:mark` = `<run_id>:<sync_full>`, and every claim carries the mark it expects;
//! `claim.lua` runs nothing on a node that does not hold it. A promoted replica never
//! received it; a replica that copied it with a full resync is named by the primary's
//! higher `sync_full`, which changes the mark gateways expect; a node restarted from
//! an RDB snapshot holds a mark only if the snapshot is younger than its time to live
//! (`MARK_TTL`, refreshed at each check), and then has another `run_id`, which the
//! keeper sees at its next check: that, a restart from a snapshot taken in the last
//! seconds that a claim in flight meets before the keeper looks, is the window left.
//!
use redis::AsyncCommands;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

use super::primary::{Bound, Live};
use super::{keys, RedisStore, StoreError};

/// How long a shard's mark lasts unless the keeper refreshes it (it does at each check,
/// `ops::fence::CHECK_EVERY`): a node restarted from a snapshot older than this holds
/// none.
const MARK_TTL: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// primary, and the mark that primary holds (see `mark.lua`).
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

    /// The mark of the primary the event was verified on at the last look (on a
    /// cluster), which its claims must find there.
    fn event_mark(&self, event_id: &str) -> Option<String> {
        self.verified_events
            .read()
            .expect("not poisoned")
            .get(event_id)
            .cloned()
    }

    /// Wakes the keeper: a claim found Redis unverified.
    pub(crate) fn want_rebuild(&self) {
        self.wanted.notify_one();
    }

    /// Takes the event's verdict back: the next claim on it checks its shard first.
    pub(crate) fn forget_event(&self, event_id: &str) {
        self.set_event_verified(event_id, None);
    }

    fn set_event_verified(&self, event_id: &str, mark: Option<&str>) {
        let mut verified = self.verified_events.write().expect("not poisoned");
        match mark {
            Some(mark) => {
                verified.insert(event_id.to_owned(), mark.to_owned());
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
    ///
    /// Also answers the mark the claim must find on its node (on a cluster; empty on one
    /// node, where the connection is the check): see `mark.lua`.
    pub(crate) async fn claim_connection(
        &self,
        event_id: &str,
    ) -> Result<(Bound, String), StoreError> {
        let live = self.bounded(self.conn.live()).await?;
        let (verified, mark) = if !self.fence.on {
            (true, String::new())
        } else if live.is_cluster() {
            let mark = match self.fence.event_mark(event_id) {
                Some(mark) => Some(mark),
                None => self.verify_event(&live, event_id).await?,
            };
            match mark {
                Some(mark) => (true, mark),
                // Nothing of an event off sale needs guarding: its claim is answered 404.
                None => (self.fence.known_off_sale(event_id), String::new()),
            }
        } else {
            (
                live.is_verified() || self.verify(&live).await?,
                String::new(),
            )
        };
        if !verified {
            self.fence.wanted.notify_one();
            return Err(StoreError::Fenced(
                "Redis has not been rebuilt from MySQL since it restarted, failed over or lost keys",
            ));
        }
        Ok((self.conn.bound(live), mark))
    }

    /// On a cluster: checks the event's record against the primary serving its slot
    /// now and, when they agree, (re)writes that primary's mark (`mark.lua`); remembers
    /// the verdict. The mark when they agree.
    pub async fn verify_event(
        &self,
        live: &Arc<Live>,
        event_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mark = self.check_event(live, &self.keys(event_id)).await;
        // A shard that does not answer is not vouched for either.
        let vouched = mark.as_ref().ok().and_then(|mark| mark.as_deref());
        self.fence.set_event_verified(event_id, vouched);
        mark
    }

    async fn check_event(
        &self,
        live: &Arc<Live>,
        k: &keys::EventKeys,
    ) -> Result<Option<String>, StoreError> {
        let meta = k.meta();
        let (run_id, full_syncs) = self.bounded(self.conn.identity_of(live, &meta)).await?;
        let mut conn = self.conn.bound(live.clone());
        let node: Option<String> = self.bounded(conn.hget(&meta, "node")).await?;
        if node.as_deref() != Some(run_id.as_str()) {
            return Ok(None);
        }
        let mark = format!("{run_id}:{full_syncs}");
        let mut inv = super::scripts::MARK.prepare_invoke();
        inv.key(k.mark())
            .arg(&run_id)
            .arg(&mark)
            .arg(MARK_TTL.as_millis() as u64);
        let written: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok((written == 1).then_some(mark))
    }

    /// On a cluster: the `run_id` of the primary that serves the event's slot now
    /// (`None` on one node, where the incarnation record does this job).
    pub(crate) async fn shard_of(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        let live = self.bounded(self.conn.live()).await?;
        if !live.is_cluster() {
            return Ok(None);
        }
        let meta = self.keys(event_id).meta();
        let (run_id, _) = self.bounded(self.conn.identity_of(&live, &meta)).await?;
        Ok(Some(run_id))
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

//! The fence keeper: notices that Redis may have lost writes and rebuilds it from
//! MySQL, so that sales resume with no operator.
//!
//! `claims::fence` explains why a claim runs only on a Redis node checked against the
//! incarnation record. This module is what checks it and, when the record and the
//! node disagree, puts things right:
//!
//! 1. **Fence** (claims answer 503 `unavailable` with `Retry-After`): logged once with
//!    its cause and counted in `seatgate_redis_fences_total`.
//! 2. **Rebuild**, by one process at a time (a lock with a TTL in Redis): every event
//!    MySQL has on sale is warmed, the safe warm that gives Redis MySQL's seats and
//!    tallies without touching seats of pending claims; each is marked as having lost
//!    the claims made before the rebuild began (`lost_before_ms`, see
//!    `ops::cancel::find`).
//! 3. **Lift**: the record names the node the rebuild started on. Every process sees it
//!    at its next check and takes claims again; the time from detection to lifting is
//!    `seatgate_redis_fence_seconds`.
//!
//! On a Redis Cluster there is no one node to check: each event on sale is checked
//! against the primary of its slot ([`Keeper::check`] → `check_shards`), and only the
//! events of a shard that changed are fenced and rebuilt, one by one, so a shard that
//! cannot be reached holds up none of the others.
//!
//! Each gateway runs a keeper (`seatgate reconcile` takes no claims and runs none). It
//! checks at once when its connection is new or a claim was refused, and otherwise every
//! [`CHECK_EVERY`]; the same check finds events that MySQL has on sale and Redis lost
//! (a flush, an eviction) and rebuilds just those.

use sqlx::MySqlPool;
use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use super::OpError;
use crate::claims::{RedisStore, StoreError};
use crate::{clock, db, telemetry};

/// How often the keeper looks when nothing wakes it.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long a rebuild may hold its lock before another process may take over.
const REBUILD_LOCK_TTL: Duration = Duration::from_secs(120);

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Redis is the node seatgate last rebuilt, and has every event MySQL has on sale
    /// (those it had lost are rebuilt now: their ids).
    Verified { rebuilt: Vec<String> },
    /// Claims are fenced; this process rebuilt Redis and lifted the fence.
    Rebuilt { events: usize },
    /// Claims are fenced; another process is rebuilding.
    Waiting,
}

/// Checks Redis against the incarnation record and rebuilds it when they disagree.
pub struct Keeper {
    redis: RedisStore,
    db: MySqlPool,
    owner: String,
    /// Since when, and why, claims have been fenced (as this process saw it).
    fenced: Option<(Instant, &'static str)>,
}

impl Keeper {
    pub fn new(redis: RedisStore, db: MySqlPool) -> Self {
        Self {
            redis,
            db,
            owner: format!("fence-keeper-{}", uuid::Uuid::now_v7()),
            fenced: None,
        }
    }

    /// Checks until `shutdown` resolves. A failed check (a store down) is logged once
    /// per run of failures and tried again.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failing = false;
        loop {
            match self.check().await {
                Ok(_) => failing = false,
                Err(err) => {
                    if failing {
                        tracing::debug!(error = %err, "fence check failed again");
                    } else {
                        tracing::warn!(error = %err, "fence check failed; trying again");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = self.redis.primary().connected() => {}
                _ = self.redis.fence().wanted() => {}
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }

    /// One check (and, when needed, one rebuild).
    pub async fn check(&mut self) -> Result<Checked, OpError> {
        let on_sale = db::events::on_sale(&self.db).await?;
        self.redis
            .fence()
            .set_on_sale(on_sale.iter().cloned().collect::<HashSet<_>>());
        let live = self
            .redis
            .primary()
            .live()
            .await
            .map_err(StoreError::from)?;
        if live.is_cluster() {
            return self.check_shards(&live, on_sale).await;
        }
        if self.redis.verify(&live).await? {
            self.lift();
            let flags = self.redis.on_sale_flags(&on_sale).await?;
            let lost: Vec<String> = on_sale
                .into_iter()
                .zip(flags)
                .filter(|(_, on)| !on)
                .map(|(event, _)| event)
                .collect();
            for event in &lost {
                let detected = Instant::now();
                tracing::warn!(event.id = %event, cause = "event_keys_lost",
                    "Redis lost the keys of an event on sale; claims on it are fenced until it is rebuilt from MySQL");
                telemetry::fence_raised("event_keys_lost");
                self.rebuild_event(event, clock::unix_millis() as i64)
                    .await?;
                telemetry::fence_lifted(detected.elapsed());
                tracing::info!(event.id = %event, fenced_ms = detected.elapsed().as_millis() as u64,
                    "event rebuilt from MySQL; claims on it resume");
            }
            return Ok(Checked::Verified { rebuilt: lost });
        }
        if self.fenced.is_none() {
            let cause = match self.redis.incarnation_on(&live).await?.run_id {
                Some(_) => "new_redis_node",
                None => "no_record",
            };
            if cause == "no_record" && on_sale.is_empty() {
                // A namespace's first use: nothing to rebuild, nothing to warn about.
                tracing::info!(redis.run_id = %live.run_id(), "recording the Redis node of this namespace");
            } else {
                tracing::warn!(cause, redis.run_id = %live.run_id(),
                    "Redis may have lost writes (a restart, a failover or lost keys): claims are fenced until it is rebuilt from MySQL");
                telemetry::fence_raised(cause);
            }
            self.fenced = Some((Instant::now(), cause));
        }
        if !self
            .redis
            .lock_rebuild(&self.owner, REBUILD_LOCK_TTL)
            .await?
        {
            return Ok(Checked::Waiting);
        }
        let rebuilt = self.rebuild(&live, &on_sale).await;
        self.redis.unlock_rebuild(&self.owner).await?;
        rebuilt?;
        // The record names the node the rebuild started on: if that is still the node
        // this connection reaches, claims may run again.
        if self.redis.verify(&live).await? {
            self.lift();
        }
        Ok(Checked::Rebuilt {
            events: on_sale.len(),
        })
    }

    /// On a Redis Cluster: checks each event on sale against the primary of its slot,
    /// and rebuilds those whose record names another (see `claims::fence`). An event
    /// whose shard cannot be reached is skipped, so that one shard down never holds up
    /// the others; the first such error is returned once the rest are done.
    async fn check_shards(
        &mut self,
        live: &std::sync::Arc<crate::claims::primary::Live>,
        on_sale: Vec<String>,
    ) -> Result<Checked, OpError> {
        let mut rebuilt = Vec::new();
        let mut failed = None;
        // Side by side: a shard that does not answer holds up no other's check (nor the
        // refresh of its marks, see `claims::fence`).
        let checks = on_sale.iter().map(|event| self.check_shard(live, event));
        let results = futures::future::join_all(checks).await;
        for (event, result) in on_sale.into_iter().zip(results) {
            match result {
                Ok(false) => {}
                Ok(true) => rebuilt.push(event),
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(Checked::Verified { rebuilt }),
        }
    }

    /// One event on a cluster; true when it was rebuilt.
    async fn check_shard(
        &self,
        live: &std::sync::Arc<crate::claims::primary::Live>,
        event: &str,
    ) -> Result<bool, OpError> {
        if self.redis.verify_event(live, event).await?.is_some() {
            return Ok(false);
        }
        let detected = Instant::now();
        tracing::warn!(event.id = %event, cause = "shard_unverified",
            "the primary of the event's Redis Cluster slot is not the one it was warmed on (a failover, a restart, lost keys or a moved slot); claims on it are fenced until it is rebuilt from MySQL");
        telemetry::fence_raised("shard_unverified");
        self.rebuild_event(event, clock::unix_millis() as i64)
            .await?;
        if self.redis.verify_event(live, event).await?.is_some() {
            telemetry::fence_lifted(detected.elapsed());
            tracing::info!(event.id = %event, fenced_ms = detected.elapsed().as_millis() as u64,
                "event rebuilt from MySQL; claims on it resume");
        }
        Ok(true)
    }

    async fn rebuild(
        &self,
        live: &std::sync::Arc<crate::claims::primary::Live>,
        on_sale: &[String],
    ) -> Result<(), OpError> {
        let started = clock::unix_millis() as i64;
        for event in on_sale {
            self.rebuild_event(event, started).await?;
        }
        self.redis.record_incarnation(live, started).await?;
        Ok(())
    }

    async fn rebuild_event(&self, event: &str, lost_before_ms: i64) -> Result<(), OpError> {
        super::warm::warm(&self.redis, &self.db, event).await?;
        self.redis.mark_lost_before(event, lost_before_ms).await?;
        Ok(())
    }

    fn lift(&mut self) {
        if let Some((since, cause)) = self.fenced.take() {
            telemetry::fence_lifted(since.elapsed());
            tracing::info!(
                cause,
                fenced_ms = since.elapsed().as_millis() as u64,
                "Redis rebuilt from MySQL; claims resume"
            );
        }
    }
}

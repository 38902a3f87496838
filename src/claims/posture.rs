//! Startup posture: what the Redis behind the gateway keeps of a claim, checked once it
//! answers, and a refusal to run on a Redis that evicts keys.
//!
//! A Redis whose `maxmemory-policy` is anything but `noeviction` drops keys under memory
//! pressure. Under `volatile-*` the idempotency records (the only keys with a TTL) go
//! first, so a retried claim books twice; under `allkeys-*` booking records vanish
//! while their seats stay `pending` for ever. Either breaks the durability contract
//! silently, so seatgate refuses to run on such a Redis unless
//! `SEATGATE_ALLOW_EVICTION=1` says it is deliberate.
//!
//! The posture is read from `INFO` (memory, persistence, replication) and, where the
//! server allows it, `CONFIG GET appendfsync` / `save`: managed Redis services often
//! rename or disable `CONFIG`, and then the fsync policy and the snapshot schedule are
//! logged as "unknown" rather than guessed. One info line states it: persistence, the
//! replicas connected, and the replicas each claim needs.
//!
//! The gateway starts while Redis is down (and answers 503 until it is up); then the
//! check runs when Redis first answers, on the claim path, through a [`PostureGate`]:
//! claims are answered 503 until the check has passed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::primary::parse_info;
use super::{RedisStore, StoreError};
use crate::config::Durability;

/// What the Redis behind the gateway keeps of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posture {
    /// `maxmemory-policy`: anything but `noeviction` drops keys under memory pressure.
    pub maxmemory_policy: String,
    /// True when the append-only file is on.
    pub aof: bool,
    /// `appendfsync` (`always`, `everysec`, `no`); `None` when `CONFIG` is unavailable.
    pub appendfsync: Option<String>,
    /// `save` (`""`: no RDB snapshots); `None` when `CONFIG` is unavailable.
    pub save: Option<String>,
    /// `master` or `slave` (a replica: claims fail on it).
    pub role: String,
    /// Replicas connected to this primary now.
    pub connected_replicas: u64,
    /// Replicas each claim needs before its 202 (`SEATGATE_REDIS_MIN_REPLICAS`).
    pub required_replicas: u32,
}

impl Posture {
    /// Reads the posture of the Redis behind `store`.
    pub async fn read(store: &RedisStore, required_replicas: u32) -> Result<Self, StoreError> {
        // One node's INFO; on a cluster, each primary's, and the weakest of them counts:
        // an evicting policy on any, the fewest replicas of any.
        let mut nodes: Vec<std::collections::HashMap<String, String>> = Vec::new();
        for section in ["memory", "persistence", "replication"] {
            for (i, text) in store.info(section).await?.iter().enumerate() {
                if nodes.len() <= i {
                    nodes.push(Default::default());
                }
                nodes[i].extend(parse_info(text));
            }
        }
        let field = |info: &std::collections::HashMap<String, String>, name: &str| {
            info.get(name).cloned().unwrap_or_default()
        };
        let weakest = nodes
            .iter()
            .find(|info| field(info, "maxmemory_policy") != "noeviction")
            .or_else(|| nodes.first())
            .cloned()
            .unwrap_or_default();
        let connected_replicas = nodes
            .iter()
            .map(|info| field(info, "connected_slaves").parse().unwrap_or(0))
            .min()
            .unwrap_or(0);
        Ok(Self {
            maxmemory_policy: field(&weakest, "maxmemory_policy"),
            aof: field(&weakest, "aof_enabled") == "1",
            appendfsync: store.config_get("appendfsync").await?,
            save: store.config_get("save").await?,
            role: field(&weakest, "role"),
            connected_replicas,
            required_replicas,
        })
    }

    /// True when Redis may evict keys under memory pressure.
    pub fn evicts(&self) -> bool {
        self.maxmemory_policy != "noeviction"
    }

    /// What survives a crash of this node: `aof (appendfsync everysec)`,
    /// `rdb (save 3600 1)`, both, `none`, or what is unknown.
    pub fn persistence(&self) -> String {
        let aof = self.aof.then(|| {
            let fsync = self.appendfsync.as_deref().unwrap_or("unknown");
            format!("aof (appendfsync {fsync})")
        });
        let rdb = match self.save.as_deref() {
            Some("") => None,
            Some(save) => Some(format!("rdb (save {save})")),
            None => Some("rdb unknown (CONFIG unavailable)".to_owned()),
        };
        match (aof, rdb) {
            (Some(aof), Some(rdb)) => format!("{aof} + {rdb}"),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => "none".to_owned(),
        }
    }

    /// Refuses an evicting Redis unless `allow_eviction`: the message names the setting.
    pub fn check(&self, allow_eviction: bool) -> Result<(), String> {
        if self.evicts() && !allow_eviction {
            return Err(format!(
                "Redis's maxmemory-policy is {policy}: it evicts keys under memory pressure \
                 (idempotency records, booking records), which breaks seatgate's guarantees. \
                 Set `maxmemory-policy noeviction` on Redis, or set SEATGATE_ALLOW_EVICTION=1 \
                 if evicting is deliberate",
                policy = self.maxmemory_policy
            ));
        }
        Ok(())
    }
}

/// Why the posture check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum PostureError {
    /// Redis did not answer the check (it may be down): try again later.
    #[error(transparent)]
    Redis(#[from] StoreError),
    /// Redis answered, and seatgate must not run on it as it is.
    #[error("{0}")]
    Refused(String),
}

/// Reads the posture, refuses an evicting Redis unless `durability.allow_eviction`, and
/// logs the one posture line.
pub async fn check_and_log(
    store: &RedisStore,
    durability: &Durability,
) -> Result<Posture, PostureError> {
    let posture = Posture::read(store, durability.min_replicas).await?;
    posture
        .check(durability.allow_eviction)
        .map_err(PostureError::Refused)?;
    let cluster = store
        .primary()
        .live()
        .await
        .map_err(StoreError::from)?
        .is_cluster();
    if cluster && durability.min_replicas > 0 {
        // The group commit's WAIT must run on the node each claim ran on, one round
        // per shard; it is written for one primary.
        return Err(PostureError::Refused(
            "SEATGATE_REDIS_MIN_REPLICAS >= 1 is not supported on a Redis Cluster yet;              set it to 0 (a claim is then as durable as its shard's persistence)"
                .to_owned(),
        ));
    }
    tracing::info!(
        persistence = %posture.persistence(),
        role = %posture.role,
        replicas_connected = posture.connected_replicas,
        replicas_required = posture.required_replicas,
        maxmemory_policy = %posture.maxmemory_policy,
        "redis durability posture"
    );
    if posture.evicts() {
        tracing::warn!(maxmemory_policy = %posture.maxmemory_policy,
            "Redis may evict keys; running anyway because SEATGATE_ALLOW_EVICTION is set");
    }
    if u64::from(posture.required_replicas) > posture.connected_replicas {
        tracing::warn!(
            replicas_connected = posture.connected_replicas,
            replicas_required = posture.required_replicas,
            "fewer replicas connected than each claim needs: claims are answered 503 until they are"
        );
    }
    Ok(posture)
}

/// How often a refused posture is checked again (a gateway that started before Redis
/// answered and found it evicting: an operator may fix the policy while it runs).
const RECHECK_REFUSED: Duration = Duration::from_secs(1);

/// The posture check of a gateway that started while Redis was down: claims pass once
/// the check has passed, and are answered 503 until then.
///
/// After the check has passed, [`ensure`](Self::ensure) is one atomic load.
pub struct PostureGate {
    store: RedisStore,
    durability: Durability,
    passed: AtomicBool,
    /// Held while a check runs, so concurrent claims share one check; remembers the
    /// last refusal, which is answered as it is for [`RECHECK_REFUSED`].
    checking: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl PostureGate {
    pub fn new(store: RedisStore, durability: Durability) -> Self {
        Self {
            store,
            durability,
            passed: AtomicBool::new(false),
            checking: tokio::sync::Mutex::new(None),
        }
    }

    /// `Ok` once the posture check has passed; checks it now if it has not (a 503
    /// for the claim when Redis does not answer or is refused).
    pub async fn ensure(&self) -> Result<(), StoreError> {
        if self.passed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut refused = self.checking.lock().await;
        if self.passed.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some((at, why)) = refused.as_ref() {
            if at.elapsed() < RECHECK_REFUSED {
                return Err(StoreError::Posture(why.clone()));
            }
        }
        match check_and_log(&self.store, &self.durability).await {
            Ok(_) => {
                self.passed.store(true, Ordering::Release);
                *refused = None;
                Ok(())
            }
            Err(PostureError::Redis(err)) => Err(err),
            Err(PostureError::Refused(why)) => {
                tracing::error!(reason = %why, "refusing claims on this Redis");
                *refused = Some((Instant::now(), why.clone()));
                Err(StoreError::Posture(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posture() -> Posture {
        Posture {
            maxmemory_policy: "noeviction".into(),
            aof: true,
            appendfsync: Some("everysec".into()),
            save: Some(String::new()),
            role: "master".into(),
            connected_replicas: 1,
            required_replicas: 1,
        }
    }

    #[test]
    fn an_evicting_policy_is_refused_by_name_unless_allowed() {
        assert_eq!(posture().check(false), Ok(()));
        for policy in [
            "allkeys-lru",
            "volatile-ttl",
            "allkeys-random",
            "volatile-lfu",
        ] {
            let evicting = Posture {
                maxmemory_policy: policy.into(),
                ..posture()
            };
            let err = evicting.check(false).unwrap_err();
            assert!(err.contains(policy), "{err}");
            assert!(err.contains("SEATGATE_ALLOW_EVICTION"), "{err}");
            assert_eq!(evicting.check(true), Ok(()));
        }
    }

    #[test]
    fn persistence_says_aof_rdb_both_none_or_unknown() {
        assert_eq!(posture().persistence(), "aof (appendfsync everysec)");
        let rdb = Posture {
            aof: false,
            save: Some("3600 1 300 100".into()),
            ..posture()
        };
        assert_eq!(rdb.persistence(), "rdb (save 3600 1 300 100)");
        let both = Posture {
            save: Some("60 1".into()),
            ..posture()
        };
        assert_eq!(
            both.persistence(),
            "aof (appendfsync everysec) + rdb (save 60 1)"
        );
        let none = Posture {
            aof: false,
            ..posture()
        };
        assert_eq!(none.persistence(), "none");
        let hidden = Posture {
            appendfsync: None,
            save: None,
            ..posture()
        };
        assert_eq!(
            hidden.persistence(),
            "aof (appendfsync unknown) + rdb unknown (CONFIG unavailable)"
        );
    }

    #[test]
    fn info_lines_become_fields() {
        let info =
            parse_info("# Memory\r\nmaxmemory_policy:noeviction\r\n\r\n# x\r\nrole:master\r\n");
        assert_eq!(info["maxmemory_policy"], "noeviction");
        assert_eq!(info["role"], "master");
        assert_eq!(info.len(), 2);
    }
}

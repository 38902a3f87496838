//! The Redis and MySQL an in-process drop uses: the configured ones when they answer,
//! otherwise private servers (see [`seatgate_sandbox`]) when their binaries are installed.

use anyhow::{bail, Context};
use std::str::FromStr;
use std::time::Duration;

use seatgate::cli::StoreArgs;
use seatgate_sandbox::{self as sandbox, PrivateCluster, PrivateMysql, PrivateRedis};

/// Time allowed to Redis/MySQL to answer the first probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis and MySQL a run uses, and the private servers it started, if any (they
/// stop when this is dropped).
pub struct Stores {
    pub redis_url: String,
    pub database_url: String,
    /// The Redis namespace of this run, when it cannot use the configured one (see
    /// [`Stores::redis_namespace`]).
    own_namespace: Option<String>,
    _redis: Option<PrivateRedis>,
    /// A private Redis Cluster (`--cluster`).
    cluster: Option<PrivateCluster>,
    _mysql: Option<PrivateMysql>,
}

impl Stores {
    /// Uses the configured servers if they answer; otherwise starts private ones when
    /// their binaries are installed (and says so on stdout).
    pub async fn ensure(store: &StoreArgs) -> anyhow::Result<Self> {
        Self::ensure_with(store, None).await
    }

    /// As [`ensure`](Self::ensure), with Redis a private Redis Cluster of
    /// `primaries` primaries, each with `replicas` replicas (the configured Redis is not
    /// used); the cluster is shut down when this is dropped.
    pub async fn ensure_cluster(
        store: &StoreArgs,
        primaries: usize,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        if sandbox::binary_on_path("redis-server").is_none() {
            bail!("--cluster starts a private Redis Cluster: redis-server is not installed (apt-get install redis-server)");
        }
        let cluster = PrivateCluster::start(primaries, replicas)
            .await
            .context("cannot start a private Redis Cluster")?;
        println!(
            "started a private Redis Cluster: {primaries} primaries, {} replicas ({})",
            primaries * replicas,
            cluster.seeds_url()
        );
        Self::ensure_with(store, Some(cluster)).await
    }

    async fn ensure_with(
        store: &StoreArgs,
        cluster: Option<PrivateCluster>,
    ) -> anyhow::Result<Self> {
        let mut stores = Self {
            redis_url: cluster
                .as_ref()
                .map_or_else(|| store.redis_url.clone(), PrivateCluster::seeds_url),
            database_url: store.database_url.clone(),
            own_namespace: None,
            _redis: None,
            cluster: None,
            _mysql: None,
        };
        let private_redis = cluster.is_some();
        stores.cluster = cluster;
        if private_redis {
            // Nothing to probe: the cluster is this run's own.
        } else if let Err(e) = sandbox::redis_ping(&store.redis_url, PROBE_TIMEOUT).await {
            if !redis_unreachable(&e) {
                return Err(e.context(format!(
                    "Redis at {} answered, but not as a local drop needs",
                    redact(&store.redis_url)
                )));
            }
            if sandbox::binary_on_path("redis-server").is_none() {
                bail!(
                    "Redis at {}: {e:#}; and redis-server is not installed \
                     to start a private one: apt-get install redis-server, or point \
                     --redis-url / SEATGATE_REDIS_URL at a running Redis",
                    redact(&store.redis_url)
                );
            }
            let redis = PrivateRedis::start(false)
                .await
                .context("cannot start a private redis-server")?;
            println!(
                "Redis did not answer at {}; started a private redis-server on port {}",
                redact(&store.redis_url),
                redis.port()
            );
            stores.redis_url = redis.url();
            stores._redis = Some(redis);
        }
        if let Err(e) = sandbox::mysql_ping(&store.database_url, PROBE_TIMEOUT).await {
            if !mysql_unreachable(&e) {
                return Err(e.context(format!(
                    "MySQL at {} answered, but not as a local drop needs",
                    redact(&store.database_url)
                )));
            }
            if !PrivateMysql::available() {
                bail!(
                    "MySQL at {}: {e:#}; and mariadbd is not installed to \
                     start a private one: apt-get install mariadb-server, or point \
                     --database-url / SEATGATE_DATABASE_URL at a running MySQL",
                    redact(&store.database_url)
                );
            }
            let database = sqlx::mysql::MySqlConnectOptions::from_str(&store.database_url)
                .ok()
                .and_then(|o| o.get_database().map(str::to_owned))
                .unwrap_or_else(|| "seatgate".to_owned());
            let mysql = PrivateMysql::start()
                .await
                .context("cannot start a private mariadbd")?;
            println!(
                "MySQL did not answer at {}; started a private mariadbd on port {}",
                redact(&store.database_url),
                mysql.port()
            );
            stores.database_url = mysql.url(&database);
            stores._mysql = Some(mysql);
            if stores._redis.is_none() && stores.cluster.is_none() {
                let id = uuid::Uuid::now_v7().simple().to_string();
                let namespace = format!("{}sgrun{}:", store.redis_namespace, &id[id.len() - 12..]);
                println!("Redis keys of this run go under the namespace {namespace:?}, as its private database is new");
                stores.own_namespace = Some(namespace);
            }
        }
        Ok(stores)
    }

    /// The Redis namespace the run uses: the configured one, unless the run has a
    /// private MySQL on a Redis it shares. That database is a new one each run, and a
    /// namespace belongs to one database for good (see [`seatgate::deployment`]), so the
    /// run takes a namespace of its own, which the gateway deletes when it stops.
    pub fn redis_namespace<'a>(&'a self, configured: &'a str) -> &'a str {
        self.own_namespace.as_deref().unwrap_or(configured)
    }

    /// The private Redis Cluster of this run, if it has one.
    pub fn cluster(&mut self) -> Option<&mut PrivateCluster> {
        self.cluster.as_mut()
    }

    /// True when [`Stores::redis_namespace`] is this run's own.
    pub fn has_own_namespace(&self) -> bool {
        self.own_namespace.is_some()
    }
}

/// True when a failed PING means nobody is there (worth a private server), rather
/// than a server that answered with an error (a password, say) or a bad URL.
fn redis_unreachable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<redis::RedisError>() {
        Some(r) => {
            r.is_io_error()
                || r.is_connection_refusal()
                || r.is_timeout()
                || r.is_connection_dropped()
        }
        // The probe's own timeout.
        None => true,
    }
}

/// As [`redis_unreachable`], for MySQL.
fn mysql_unreachable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_)) => true,
        Some(_) => false,
        None => true,
    }
}

/// A URL with its user info (which may hold a password) hidden.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redact("mysql://root:hunter2@db:3306/seatgate"),
            "mysql://***@db:3306/seatgate"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}

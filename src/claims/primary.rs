//! The one connection to Redis's primary that the API and the reconciler share.
//!
//! [`Primary`] holds one multiplexed connection (every concurrent command pipelined on
//! one socket, as the claim path needs: BENCHMARKS.md, "Redis connection") and makes a
//! new one when it breaks. It replaces redis-rs's `ConnectionManager` for two reasons
//! the manager cannot serve:
//!
//! - **Sentinel.** With `redis+sentinel://h1:p1,h2:p2/<master>` the primary's address is
//!   asked of the sentinels at every (re)connection, so a failover is followed by
//!   itself. A node that has become a replica answers writes `READONLY`: the connection
//!   is dropped and the next command finds the new primary; a write is never sent to a
//!   node that did not say `ROLE` = master when the connection was made.
//! - **Fencing.** Each connection learns the node's `run_id` when it is made and starts
//!   *unverified*. A Redis that restarted (from whatever data it kept) or a replica that
//!   was promoted has another `run_id`, and can only be reached through a new
//!   connection, so no command reaches it before seatgate has looked at it. Claims run
//!   only on a verified connection ([`Live::is_verified`]); `claims::fence` says when a
//!   connection is verified and why that is enough.
//!
//! Commands that fail because the connection is gone (I/O errors, `READONLY`, three
//! timeouts in a row: a primary that stopped answering) drop it; while Redis cannot be
//! reached, a new connection is tried at most every [`RECONNECT_PAUSE`], and calls in
//! between fail at once (the API answers 503) instead of queueing on a dead address.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Shortest pause between two attempts to connect while Redis cannot be reached.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// Timeouts in a row after which a connection is taken for dead and re-made (with
/// Sentinel: the primary is asked for again).
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;
/// Sentinels' default port.
const SENTINEL_PORT: u16 = 26379;

/// Where the primary is: one node, the sentinels that know it, or the seed nodes of a
/// Redis Cluster (whose primaries, one per shard, the cluster client finds).
pub enum Target {
    /// One node; if it says `redis_mode:cluster`, the seed of a cluster.
    Node(redis::Client),
    /// Seed nodes of a Redis Cluster (`redis://h1:p1,redis://h2:p2,…`).
    Cluster(Vec<String>),
    Sentinel {
        /// The sentinels, asked in turn (redis-rs keeps the one that answered first).
        sentinels: tokio::sync::Mutex<redis::sentinel::Sentinel>,
        master: String,
    },
}

impl Target {
    /// Parses `SEATGATE_REDIS_URL`: `redis://…` (one node) or
    /// `redis+sentinel://host:port[,host:port…]/<master-name>`. Errors name what is
    /// wrong without repeating the URL, which may hold a password.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            if url.contains(',') {
                return Self::cluster_seeds(url);
            }
            return Ok(Self::Node(redis::Client::open(url)?));
        };
        let (hosts, master) = rest
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("a redis+sentinel:// URL ends with /<master-name>"))?;
        if master.is_empty() || hosts.is_empty() {
            anyhow::bail!("a redis+sentinel:// URL names at least one sentinel and the master: redis+sentinel://host:port[,host:port…]/<master-name>");
        }
        let sentinels = hosts
            .split(',')
            .map(|host| {
                let host = host.trim();
                if host.is_empty() {
                    anyhow::bail!("an empty sentinel address in a redis+sentinel:// URL");
                }
                Ok(
                    if host
                        .rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                    {
                        format!("redis://{host}")
                    } else {
                        format!("redis://{host}:{SENTINEL_PORT}")
                    },
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::Sentinel {
            sentinels: tokio::sync::Mutex::new(redis::sentinel::Sentinel::build(sentinels)?),
            master: master.to_owned(),
        })
    }

    /// `redis://h1:p1,redis://h2:p2,…`: each seed a `redis://` URL of its own.
    fn cluster_seeds(url: &str) -> anyhow::Result<Self> {
        let seeds = url
            .split(',')
            .map(|seed| {
                let seed = seed.trim();
                if !seed.starts_with("redis://") && !seed.starts_with("rediss://") {
                    anyhow::bail!("the seed nodes of a Redis Cluster are redis:// URLs separated by commas: redis://h1:p1,redis://h2:p2");
                }
                redis::Client::open(seed)?;
                Ok(seed.to_owned())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::Cluster(seeds))
    }

    /// True when the URL named a cluster's seeds (a single seed node says so only once
    /// connected to: see [`Live::is_cluster`]).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A client for the node that is the primary now (a cluster's first seed).
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Self::Node(client) => Ok(client.clone()),
            Self::Cluster(seeds) => redis::Client::open(seeds[0].as_str()),
            Self::Sentinel { sentinels, master } => {
                sentinels.lock().await.async_master_for(master, None).await
            }
        }
    }

    /// Opens a connection to the primary and checks that it is one. Returns the
    /// connection and the node's `run_id` (empty for a cluster, whose shards each have
    /// their own: see [`Primary::identity_of`]).
    async fn open(
        &self,
        config: &AsyncConnectionConfig,
        timeouts: (Duration, Duration),
    ) -> redis::RedisResult<(Conn, String)> {
        if let Self::Cluster(seeds) = self {
            return open_cluster(seeds.clone(), timeouts).await;
        }
        let client = self.client().await?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        let mut info = parse_info(&info);
        if info.get("redis_mode").map(String::as_str) == Some("cluster") {
            let seed = client.get_connection_info().clone();
            return open_cluster(vec![seed], timeouts).await;
        }
        let role: Value = redis::cmd("ROLE").query_async(&mut conn).await?;
        if !is_primary(&role) {
            return Err(RedisError::from((
                ErrorKind::Io,
                "the Redis node is a replica, not the primary",
            )));
        }
        let run_id = info
            .remove("run_id")
            .ok_or_else(|| RedisError::from((ErrorKind::Parse, "INFO server has no run_id")))?;
        Ok((Conn::Node(conn), run_id))
    }
}

/// Connects to a Redis Cluster through its seeds. The cluster client keeps one
/// multiplexed connection per node, follows `MOVED`/`ASK` and topology changes, and
/// loads scripts on every node (`SCRIPT LOAD` goes to all of them when a node answers
/// `NOSCRIPT`).
async fn open_cluster<T: redis::IntoConnectionInfo + Clone>(
    seeds: Vec<T>,
    (connect, reply): (Duration, Duration),
) -> redis::RedisResult<(Conn, String)> {
    let client = ClusterClientBuilder::new(seeds)
        .connection_timeout(connect)
        .response_timeout(reply)
        .build()?;
    let conn = client.get_async_connection().await?;
    Ok((Conn::Cluster(conn), String::new()))
}

/// The node a key's slot is served by now, as the cluster client routes to it.
pub(crate) fn primary_of(key: &str) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )))
}

/// One connection: to a node (alone or found through Sentinel), or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// True when a `ROLE` reply says master.
fn is_primary(role: &Value) -> bool {
    let Value::Array(items) = role else {
        return false;
    };
    match items.first() {
        Some(Value::BulkString(b)) => b == b"master",
        Some(Value::SimpleString(s)) => s == "master",
        _ => false,
    }
}

/// The fields of an `INFO` reply (`name:value` lines; `# Section` headers skipped).
pub(crate) fn parse_info(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.trim_end().to_owned()))
        .collect()
}

/// One connection to the primary as it was made. Shared (`Arc<Live>`) by every call
/// that uses it.
pub struct Live {
    conn: Conn,
    generation: u64,
    run_id: String,
    verified: AtomicBool,
    timeouts: AtomicU32,
}

impl Live {
    /// Counts the connections made by one [`Primary`]: a later one has a higher number.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The `run_id` of the node this connection reaches (empty for a cluster).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// True when this connection reaches a Redis Cluster: each event lives on the
    /// shard of its slot, and each shard is fenced on its own (`claims::fence`).
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// True once the node's data has been checked against MySQL (see `claims::fence`).
    pub fn is_verified(&self) -> bool {
        self.verified.load(Ordering::Acquire)
    }

    /// Records the outcome of a check; returns what it was before.
    pub(crate) fn set_verified(&self, verified: bool) -> bool {
        self.verified.swap(verified, Ordering::AcqRel)
    }
}

struct Inner {
    target: Target,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    reply_timeout: Duration,
    live: RwLock<Option<Arc<Live>>>,
    connecting: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    /// When the last attempt to connect failed, and why.
    failed: Mutex<Option<(Instant, String)>>,
    /// Woken whenever a new connection is made (the fence keeper checks it at once).
    connected: Notify,
}

/// The primary, reached through one shared connection. Cheap to clone; implements
/// `ConnectionLike`, so commands and scripts run on it as on any redis-rs connection.
#[derive(Clone)]
pub struct Primary {
    inner: Arc<Inner>,
}

impl Primary {
    /// A handle that connects on first use. `timeout` bounds connecting. Replies are
    /// bounded by the caller (`RedisStore` bounds its calls by `timeout`), which
    /// reports a call it gave up on through [`Primary::note_timeout`]; the connection's
    /// own reply timeout, twice as long, is the backstop for callers that do not bound
    /// theirs, and counts too.
    pub fn new(target: Target, timeout: Duration) -> Self {
        Self::with_timeouts(target, timeout, timeout * 2)
    }

    /// A handle whose connections are made within `connect` and whose replies each
    /// come within `reply` (the reconciler's blocking reads wait longer than a
    /// connection may take to be made).
    pub fn with_timeouts(target: Target, connect: Duration, reply: Duration) -> Self {
        let timeout = connect;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(reply));
        Self {
            inner: Arc::new(Inner {
                target,
                config,
                connect_timeout: timeout,
                reply_timeout: reply,
                live: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                generations: AtomicU64::new(0),
                failed: Mutex::new(None),
                connected: Notify::new(),
            }),
        }
    }

    /// Where the primary is found.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// Resolves when a new connection has been made.
    pub async fn connected(&self) {
        self.inner.connected.notified().await
    }

    /// The current connection, made now if there is none.
    pub async fn live(&self) -> redis::RedisResult<Arc<Live>> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _one_at_a_time = self.inner.connecting.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        if let Some((at, why)) = &*self.inner.failed.lock().expect("not poisoned") {
            if at.elapsed() < RECONNECT_PAUSE {
                return Err(RedisError::from((
                    ErrorKind::Io,
                    "Redis cannot be reached",
                    why.clone(),
                )));
            }
        }
        let opened = tokio::time::timeout(
            self.inner.connect_timeout,
            self.inner.target.open(
                &self.inner.config,
                (self.inner.connect_timeout, self.inner.reply_timeout),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from((
                ErrorKind::Io,
                "connecting to Redis timed out",
            )))
        });
        match opened {
            Ok((conn, run_id)) => {
                let live = Arc::new(Live {
                    conn,
                    generation: self.inner.generations.fetch_add(1, Ordering::AcqRel) + 1,
                    run_id,
                    verified: AtomicBool::new(false),
                    timeouts: AtomicU32::new(0),
                });
                *self.inner.failed.lock().expect("not poisoned") = None;
                *self.inner.live.write().expect("not poisoned") = Some(live.clone());
                tracing::debug!(generation = live.generation, run_id = %live.run_id,
                    cluster = live.is_cluster(), "connected to the Redis primary");
                self.inner.connected.notify_waiters();
                Ok(live)
            }
            Err(err) => {
                *self.inner.failed.lock().expect("not poisoned") =
                    Some((Instant::now(), err.to_string()));
                Err(err)
            }
        }
    }

    /// True when the current connection (if any) reaches a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.current().is_some_and(|live| live.is_cluster())
    }

    /// The generation of the current connection, if there is one.
    pub fn generation(&self) -> Option<u64> {
        self.current().map(|live| live.generation)
    }

    fn current(&self) -> Option<Arc<Live>> {
        self.inner.live.read().expect("not poisoned").clone()
    }

    /// Counts a call on the current connection that its caller gave up on for want of
    /// a reply (see [`Primary::new`]).
    pub fn note_timeout(&self) {
        if let Some(live) = self.current() {
            self.count_timeout(
                &live,
                &RedisError::from((ErrorKind::Io, "no reply in time")),
            );
        }
    }

    fn count_timeout(&self, live: &Live, err: &RedisError) {
        if live.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_BEFORE_RECONNECT {
            self.drop_connection(live.generation, err);
        }
    }

    /// Drops connection `generation` if it is still the current one.
    fn drop_connection(&self, generation: u64, why: &RedisError) {
        let mut live = self.inner.live.write().expect("not poisoned");
        if live.as_ref().is_some_and(|l| l.generation == generation) {
            tracing::warn!(generation, error = %why, "Redis connection dropped; the next command makes a new one");
            *live = None;
        }
    }

    /// Looks at a command's result on `live`: drops the connection when the error says
    /// it is gone or reaches a node that is no longer the primary. A cluster connection
    /// is never dropped: it stands for every shard, and the cluster client re-makes
    /// the connection to a node that failed (or failed over) by itself.
    fn observe<T>(&self, live: &Live, result: &redis::RedisResult<T>) {
        if live.is_cluster() {
            return;
        }
        match result {
            // Read first: every command passes here, and a write to the shared counter
            // on each would bounce its cache line between the cores.
            Ok(_) => {
                if live.timeouts.load(Ordering::Relaxed) != 0 {
                    live.timeouts.store(0, Ordering::Relaxed);
                }
            }
            Err(err) if err.is_timeout() => self.count_timeout(live, err),
            Err(err)
                if err.is_io_error()
                    || err.is_connection_dropped()
                    || err.is_unrecoverable_error()
                    || err.code() == Some("READONLY") =>
            {
                self.drop_connection(live.generation, err)
            }
            Err(_) => {}
        }
    }

    /// On a cluster: the `run_id` of the primary that serves `key` now, and its count
    /// of full resyncs (`sync_full`), from one `INFO server stats`.
    pub async fn identity_of(&self, live: &Live, key: &str) -> redis::RedisResult<(String, u64)> {
        let Conn::Cluster(conn) = &live.conn else {
            return Err(RedisError::from((
                ErrorKind::Client,
                "a node's identity by key is for a cluster",
            )));
        };
        let mut info = redis::cmd("INFO");
        info.arg("server").arg("stats");
        let reply = conn.clone().route_command(info, primary_of(key)).await;
        self.observe(live, &reply);
        let text: String = redis::from_redis_value(reply?)?;
        let mut fields = parse_info(&text);
        let run_id = fields
            .remove("run_id")
            .ok_or_else(|| RedisError::from((ErrorKind::Parse, "INFO server has no run_id")))?;
        let full_syncs = fields
            .get("sync_full")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok((run_id, full_syncs))
    }

    /// Runs `cmd` on the primary that serves `key` (on one node: on it), for commands
    /// that name no key of their own (`SCAN` over one event's keys).
    pub async fn query_at<T: redis::FromRedisValue>(
        &self,
        key: &str,
        cmd: Cmd,
    ) -> redis::RedisResult<T> {
        let live = self.live().await?;
        let reply = match &live.conn {
            Conn::Cluster(conn) => conn.clone().route_command(cmd, primary_of(key)).await,
            Conn::Node(conn) => cmd.query_async(&mut conn.clone()).await,
        };
        self.observe(&live, &reply);
        Ok(redis::from_redis_value(reply?)?)
    }

    /// A connection-like handle bound to `live`: commands sent through it go to that
    /// connection or fail, never to a newer one (the claim path, whose connection was
    /// checked, and `WAIT`, which must follow the writes it covers on their connection).
    pub fn bound(&self, live: Arc<Live>) -> Bound {
        Bound {
            primary: self.clone(),
            live,
        }
    }
}

/// A [`Primary`] pinned to one of its connections (see [`Primary::bound`]).
#[derive(Clone)]
pub struct Bound {
    primary: Primary,
    live: Arc<Live>,
}

impl Bound {
    pub fn live(&self) -> &Live {
        &self.live
    }
}

impl ConnectionLike for Bound {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.live.conn.clone();
            let result = conn.req_packed_command(cmd).await;
            self.primary.observe(&self.live, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.live.conn.clone();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.primary.observe(&self.live, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.live.conn.get_db()
    }
}

/// Each command goes to the current connection, as a [`Bound`] to it.
impl ConnectionLike for Primary {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.bound(self.live().await?).req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut bound = self.bound(self.live().await?);
            bound.req_packed_commands(pipeline, offset, count).await
        })
    }

    fn get_db(&self) -> i64 {
        self.current().map_or(0, |live| live.conn.get_db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_their_sentinels_and_master() {
        let Target::Sentinel { master, .. } =
            Target::parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster").unwrap()
        else {
            panic!("a sentinel target");
        };
        assert_eq!(master, "mymaster");
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379").unwrap(),
            Target::Node(_)
        ));
        for bad in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel:///mymaster",
            "redis+sentinel://a:1,,b:2/m",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_and_info_fields_are_read() {
        let master = Value::Array(vec![Value::BulkString(b"master".to_vec()), Value::Int(0)]);
        let replica = Value::Array(vec![Value::BulkString(b"slave".to_vec())]);
        assert!(is_primary(&master));
        assert!(!is_primary(&replica));
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\n";
        let fields = parse_info(info);
        assert_eq!(fields.get("run_id").map(String::as_str), Some("abc123"));
        assert_eq!(fields.get("tcp_port"), None);
    }
}

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

/// Where the primary is: one node, or the sentinels that know it.
pub enum Target {
    Node(redis::Client),
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

    /// A client for the node that is the primary now.
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Self::Node(client) => Ok(client.clone()),
            Self::Sentinel { sentinels, master } => {
                sentinels.lock().await.async_master_for(master, None).await
            }
        }
    }

    /// Opens a connection to the primary and checks that it is one. Returns the
    /// connection and the node's `run_id`.
    async fn open(
        &self,
        config: &AsyncConnectionConfig,
    ) -> redis::RedisResult<(MultiplexedConnection, String)> {
        let client = self.client().await?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let role: Value = redis::cmd("ROLE").query_async(&mut conn).await?;
        if !is_primary(&role) {
            return Err(RedisError::from((
                ErrorKind::Io,
                "the Redis node is a replica, not the primary",
            )));
        }
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        let run_id = parse_info(&info)
            .remove("run_id")
            .ok_or_else(|| RedisError::from((ErrorKind::Parse, "INFO server has no run_id")))?;
        Ok((conn, run_id))
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
    conn: MultiplexedConnection,
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

    /// The `run_id` of the node this connection reaches.
    pub fn run_id(&self) -> &str {
        &self.run_id
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
            self.inner.target.open(&self.inner.config),
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
                tracing::debug!(generation = live.generation, run_id = %live.run_id, "connected to the Redis primary");
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
    /// it is gone or reaches a node that is no longer the primary.
    fn observe<T>(&self, live: &Live, result: &redis::RedisResult<T>) {
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

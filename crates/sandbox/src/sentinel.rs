//! Private Redis Sentinels, and a replicated group of private Redis servers watched by
//! them: what a failover test needs (kill the primary, see a replica promoted). One
//! file because a sentinel is only ever started as part of such a group, and the
//! group's readiness is defined by what its sentinels know.
//!
//! [`PrivateSentinel`] is one more [`PrivateServer`]: `redis-server <conf> --sentinel`
//! with a configuration file in its own directory, so it has the same start, kill and
//! restart (a restarted sentinel reads back the state it rewrote into its file, as on a
//! real host). [`ReplicatedRedis`] starts one primary, N replicas and M sentinels, and
//! returns once the group is ready for a failover, which means more than "every process
//! answers PING":
//!
//! - every replica has a live link to the primary (`master_link_status:up`) and the
//!   primary lists it `online`, so a write WAITed for is on the replicas;
//! - every sentinel knows every replica (without a known replica there is nothing to
//!   promote) and every other sentinel (a failover needs a majority of the sentinels a
//!   sentinel knows to vote for its leader; sentinels find each other through hello
//!   messages on the primary, every 2 s, so this is most of the wait).
//!
//! The timings are small (`down-after-milliseconds` 1000, `failover-timeout` 3000, see
//! [`GroupOptions`]) so that a failover takes a few seconds.

use crate::{
    binary_on_path, config_quote, log_tail, redis_url, server_dir, PrivateRedis, PrivateServer,
    RedisOptions, ServerKind, POLL_INTERVAL, REDIS_READY_DEADLINE,
};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The name of a private sentinel's configuration file in its directory.
const SENTINEL_CONFIG_FILE: &str = "sentinel.conf";

/// How long a sentinel query may take before it counts as no answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// `redis-server --sentinel`, run from a configuration file of its own.
pub struct Sentinel {
    binary: PathBuf,
    master_name: String,
}

impl ServerKind for Sentinel {
    const READY_DEADLINE: Duration = REDIS_READY_DEADLINE;
    const OUTPUT_FILE: &'static str = "sentinel.out";
    const READY_VERB: &'static str = "answer PING";
    const READY_GERUND: &'static str = "answering PING";

    fn name(&self) -> String {
        "redis-sentinel".to_owned()
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        // Sentinel mode from the flag rather than the `redis-sentinel` name, which is a
        // separate package on Debian.
        let mut cmd = Command::new(&self.binary);
        cmd.arg(dir.join(SENTINEL_CONFIG_FILE))
            .arg("--sentinel")
            .arg("--port")
            .arg(port.to_string());
        cmd
    }

    fn probe(&self, port: u16) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        let url = redis_url(port);
        async move { crate::redis_ping(&url, Duration::from_millis(500)).await }
    }

    fn log_tail(&self, dir: &Path) -> String {
        format!(
            "{}\n{}",
            log_tail(&dir.join(Self::OUTPUT_FILE)),
            log_tail(&dir.join("sentinel.log"))
        )
    }
}

/// A Redis Sentinel of its own (see [`PrivateServer`] and the module docs).
pub type PrivateSentinel = PrivateServer<Sentinel>;

/// What a sentinel watches and how quickly it acts.
#[derive(Clone, Debug)]
pub struct SentinelOptions {
    /// The name the primary is monitored under (`<master-name>` in
    /// `redis+sentinel://…/<master-name>`).
    pub master_name: String,
    /// The port of the primary on 127.0.0.1.
    pub primary_port: u16,
    /// How many sentinels must agree that the primary is down before a failover.
    pub quorum: usize,
    /// `down-after-milliseconds`: how long the primary may not answer before this
    /// sentinel thinks it down.
    pub down_after: Duration,
    /// `failover-timeout`: bounds each step of a failover, and the pause before the same
    /// primary may be failed over again is twice this.
    pub failover_timeout: Duration,
}

impl SentinelOptions {
    /// Watches the primary on `primary_port` as `master_name` with `quorum`, a 1 s
    /// `down-after-milliseconds` and a 3 s `failover-timeout`.
    pub fn new(master_name: impl Into<String>, primary_port: u16, quorum: usize) -> Self {
        Self {
            master_name: master_name.into(),
            primary_port,
            quorum,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
        }
    }

    fn file(&self, dir: &Path) -> String {
        let name = &self.master_name;
        let dir_text = dir.display().to_string();
        let log = dir.join("sentinel.log").display().to_string();
        [
            "bind 127.0.0.1".to_owned(),
            format!("dir {}", config_quote(&dir_text)),
            "daemonize no".to_owned(),
            format!("logfile {}", config_quote(&log)),
            format!(
                "sentinel monitor {name} 127.0.0.1 {} {}",
                self.primary_port, self.quorum
            ),
            format!(
                "sentinel down-after-milliseconds {name} {}",
                self.down_after.as_millis()
            ),
            format!(
                "sentinel failover-timeout {name} {}",
                self.failover_timeout.as_millis()
            ),
            format!("sentinel parallel-syncs {name} 1"),
            String::new(),
        ]
        .join("\n")
    }
}

impl PrivateServer<Sentinel> {
    /// Starts a sentinel watching the primary `options` name and waits until it answers
    /// PING (it may not have met the replicas or the other sentinels yet; see
    /// [`ReplicatedRedis`]).
    pub async fn start(options: SentinelOptions) -> anyhow::Result<Self> {
        let binary = binary_on_path("redis-server")
            .context("redis-server is not installed (apt-get install redis-server)")?;
        let dir = server_dir("seatgate-sentinel-", "redis-sentinel")?;
        let config = dir.path().join(SENTINEL_CONFIG_FILE);
        // Sentinel rewrites this file as it learns (replicas, other sentinels, epochs),
        // so it is written once here and never again.
        std::fs::write(&config, options.file(dir.path()))
            .with_context(|| format!("cannot write {}", config.display()))?;
        let kind = Sentinel {
            binary,
            master_name: options.master_name,
        };
        Self::launch(kind, dir).await
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        redis_url(self.port)
    }

    /// `127.0.0.1:<port>`, as listed in a `redis+sentinel://` URL.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The name of the primary this sentinel watches.
    pub fn master_name(&self) -> &str {
        &self.kind.master_name
    }

    /// `SENTINEL get-master-addr-by-name`: the primary's port as this sentinel sees it
    /// (`None` if it knows no such primary). Every address in the sandbox is 127.0.0.1.
    pub async fn primary_port(&self) -> anyhow::Result<Option<u16>> {
        let addr: Option<(String, u16)> = self
            .query(&["get-master-addr-by-name", self.master_name()])
            .await?;
        Ok(addr.map(|(_, port)| port))
    }

    /// `SENTINEL MASTER <name>`: this sentinel's view of the primary (`flags`,
    /// `num-slaves`, `num-other-sentinels`, `config-epoch`, ...).
    pub async fn master_state(&self) -> anyhow::Result<HashMap<String, String>> {
        self.query(&["master", self.master_name()]).await
    }

    /// `SENTINEL REPLICAS <name>`: each replica this sentinel knows (`port`, `flags`,
    /// `master-link-status`, ...).
    pub async fn replicas_state(&self) -> anyhow::Result<Vec<HashMap<String, String>>> {
        self.query(&["replicas", self.master_name()]).await
    }

    /// `SENTINEL SENTINELS <name>`: the other sentinels this one knows.
    pub async fn sentinels_state(&self) -> anyhow::Result<Vec<HashMap<String, String>>> {
        self.query(&["sentinels", self.master_name()]).await
    }

    async fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> anyhow::Result<T> {
        let client = redis::Client::open(self.url()).context("bad sentinel URL")?;
        let query = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg(args)
                .query_async::<T>(&mut conn)
                .await
        };
        tokio::time::timeout(QUERY_TIMEOUT, query)
            .await
            .with_context(|| format!("sentinel on port {} did not answer", self.port))?
            .with_context(|| format!("SENTINEL {} on port {}", args.join(" "), self.port))
    }
}

/// The shape of a [`ReplicatedRedis`] group.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// Replicas of the primary.
    pub replicas: usize,
    /// Sentinels watching the primary (0 for a group without failover).
    pub sentinels: usize,
    /// The name the sentinels monitor the primary under (default `seatgate`).
    pub master_name: String,
    /// Sentinels that must agree the primary is down (default: a majority).
    pub quorum: Option<usize>,
    /// See [`SentinelOptions::down_after`] (default 1 s).
    pub down_after: Duration,
    /// See [`SentinelOptions::failover_timeout`] (default 3 s).
    pub failover_timeout: Duration,
    /// The options of every Redis node; a replica gets `replica_of` on top.
    pub redis: RedisOptions,
    /// How long the group may take to be ready (default 30 s).
    pub ready_deadline: Duration,
}

impl GroupOptions {
    /// One primary, `replicas` replicas (no persistence) and `sentinels` sentinels.
    pub fn new(replicas: usize, sentinels: usize) -> Self {
        Self {
            replicas,
            sentinels,
            master_name: "seatgate".to_owned(),
            quorum: None,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
            redis: RedisOptions::new(),
            ready_deadline: Duration::from_secs(30),
        }
    }

    /// The same group with every node configured by `redis`.
    pub fn redis(mut self, redis: RedisOptions) -> Self {
        self.redis = redis;
        self
    }
}

/// One primary, its replicas and the sentinels that watch them, all private (see the
/// module docs).
///
/// `primary` is the node started as the primary: after a failover it is no longer the
/// primary (ask [`current_primary_port`](Self::current_primary_port), and reach a node
/// by port with [`node_mut`](Self::node_mut)). Dropping the group kills every process.
pub struct ReplicatedRedis {
    pub primary: PrivateRedis,
    pub replicas: Vec<PrivateRedis>,
    pub sentinels: Vec<PrivateSentinel>,
    master_name: String,
}

impl ReplicatedRedis {
    /// Starts one primary, `replicas` replicas and `sentinels` sentinels with the
    /// defaults of [`GroupOptions::new`], and waits until the group is ready.
    pub async fn start(replicas: usize, sentinels: usize) -> anyhow::Result<Self> {
        Self::start_with(GroupOptions::new(replicas, sentinels)).await
    }

    /// Starts the group `options` describes and waits until its replicas are in sync
    /// and its sentinels know every replica and each other (see the module docs).
    pub async fn start_with(options: GroupOptions) -> anyhow::Result<Self> {
        let primary = PrivateRedis::start_with(options.redis.clone())
            .await
            .context("cannot start the primary")?;
        let mut replicas = Vec::with_capacity(options.replicas);
        for i in 0..options.replicas {
            let replica =
                PrivateRedis::start_with(options.redis.clone().replica_of(primary.port()))
                    .await
                    .with_context(|| format!("cannot start replica {i}"))?;
            replicas.push(replica);
        }
        let mut group = Self {
            primary,
            replicas,
            sentinels: Vec::new(),
            master_name: options.master_name.clone(),
        };
        let until = Instant::now() + options.ready_deadline;
        // Replicas first: a sentinel learns the replicas from the primary's INFO, which
        // it reads as soon as it connects, so replicas online by then are known at once.
        group.wait_replicas_in_sync(until).await?;
        let quorum = options.quorum.unwrap_or(options.sentinels / 2 + 1);
        for i in 0..options.sentinels {
            let sentinel = PrivateSentinel::start(SentinelOptions {
                master_name: options.master_name.clone(),
                primary_port: group.primary.port(),
                quorum,
                down_after: options.down_after,
                failover_timeout: options.failover_timeout,
            })
            .await
            .with_context(|| format!("cannot start sentinel {i}"))?;
            group.sentinels.push(sentinel);
        }
        group.wait_sentinels_ready(until).await?;
        Ok(group)
    }

    /// The name the sentinels monitor the primary under.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// `redis+sentinel://127.0.0.1:<p1>,127.0.0.1:<p2>…/<master-name>`, the form of
    /// `SEATGATE_REDIS_URL` that names these sentinels.
    pub fn sentinel_url(&self) -> String {
        let addrs: Vec<String> = self.sentinels.iter().map(PrivateSentinel::addr).collect();
        format!("redis+sentinel://{}/{}", addrs.join(","), self.master_name)
    }

    /// Every Redis node, the first-started primary first.
    pub fn nodes(&self) -> impl Iterator<Item = &PrivateRedis> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    /// The Redis node listening on `port`, if it is one of this group's.
    pub fn node_mut(&mut self, port: u16) -> Option<&mut PrivateRedis> {
        std::iter::once(&mut self.primary)
            .chain(self.replicas.iter_mut())
            .find(|node| node.port() == port)
    }

    /// The primary's port as a majority of the running sentinels name it, or the first
    /// primary's port in a group without sentinels. Errors when there is no majority.
    pub async fn current_primary_port(&mut self) -> anyhow::Result<u16> {
        if self.sentinels.is_empty() {
            return Ok(self.primary.port());
        }
        let answers = self.sentinel_answers().await;
        let running = answers.len();
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for port in answers.into_iter().flatten() {
            *counts.entry(port).or_default() += 1;
        }
        counts
            .into_iter()
            .find(|&(_, n)| n > running / 2)
            .map(|(port, _)| port)
            .with_context(|| format!("no majority of {running} sentinels names a primary"))
    }

    /// Waits until every running sentinel names a primary other than `old_port`, the
    /// same one, and that node answers `role:master`; returns its port. This is the end
    /// of a failover as a client sees it.
    pub async fn wait_for_failover(
        &mut self,
        old_port: u16,
        deadline: Duration,
    ) -> anyhow::Result<u16> {
        let until = Instant::now() + deadline;
        let mut last = String::from("no sentinel answered yet");
        loop {
            let answers = self.sentinel_answers().await;
            if let [Some(first), ..] = answers.as_slice() {
                let port = *first;
                let agreed = answers.iter().all(|a| *a == Some(port));
                if agreed && port != old_port {
                    let info = crate::redis_info(&redis_url(port), "replication").await;
                    match info {
                        Ok(info) if info.get("role").map(String::as_str) == Some("master") => {
                            return Ok(port)
                        }
                        Ok(info) => last = format!("{port} says role {:?}", info.get("role")),
                        Err(e) => last = format!("{port} does not answer INFO: {e:#}"),
                    }
                } else {
                    last = format!("sentinels name {answers:?}");
                }
            }
            if Instant::now() >= until {
                bail!(
                    "no failover from port {old_port} within {deadline:?}: {last}\n{}",
                    self.sentinel_logs()
                );
            }
            tokio::time::sleep(POLL_INTERVAL * 4).await;
        }
    }

    /// Each running sentinel's answer to `get-master-addr-by-name` (`None` when it
    /// does not answer or knows no primary).
    async fn sentinel_answers(&mut self) -> Vec<Option<u16>> {
        let mut answers = Vec::new();
        for sentinel in self.sentinels.iter_mut() {
            if sentinel.is_running() {
                answers.push(sentinel.primary_port().await.ok().flatten());
            }
        }
        answers
    }

    /// Waits until every replica's link to the primary is up and the primary lists
    /// every replica `online`.
    pub async fn wait_replicas_in_sync(&self, until: Instant) -> anyhow::Result<()> {
        let expected = self.replicas.len();
        loop {
            let last = match self.replicas_in_sync(expected).await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= until {
                let logs: Vec<String> = self.nodes().map(PrivateRedis::log_tail).collect();
                bail!("replicas not in sync in time: {last}\n{}", logs.join("\n"));
            }
            tokio::time::sleep(POLL_INTERVAL * 2).await;
        }
    }

    async fn replicas_in_sync(&self, expected: usize) -> anyhow::Result<()> {
        for replica in &self.replicas {
            let info = replica.info("replication").await?;
            let link = info.get("master_link_status").map(String::as_str);
            if link != Some("up") {
                bail!("replica {} link is {link:?}", replica.port());
            }
        }
        let info = self.primary.info("replication").await?;
        let online = (0..expected)
            .filter_map(|i| info.get(&format!("slave{i}")))
            .filter(|line| line.contains("state=online"))
            .count();
        if online != expected {
            bail!("the primary lists {online} of {expected} replicas online");
        }
        Ok(())
    }

    /// Waits until every sentinel knows every replica (connected) and every other
    /// sentinel.
    async fn wait_sentinels_ready(&self, until: Instant) -> anyhow::Result<()> {
        let replicas = self.replicas.len();
        let others = self.sentinels.len().saturating_sub(1);
        let mut last = String::new();
        loop {
            let mut ready = true;
            for sentinel in &self.sentinels {
                match sentinel_sees(sentinel, replicas, others).await {
                    Ok(()) => {}
                    Err(e) => {
                        last = format!("{e:#}");
                        ready = false;
                        break;
                    }
                }
            }
            if ready {
                return Ok(());
            }
            if Instant::now() >= until {
                bail!(
                    "sentinels not ready in time: {last}\n{}",
                    self.sentinel_logs()
                );
            }
            tokio::time::sleep(POLL_INTERVAL * 4).await;
        }
    }

    fn sentinel_logs(&self) -> String {
        let logs: Vec<String> = self
            .sentinels
            .iter()
            .map(PrivateSentinel::log_tail)
            .collect();
        logs.join("\n")
    }
}

/// `Ok` when `sentinel` knows `replicas` connected replicas and `others` other
/// sentinels.
async fn sentinel_sees(
    sentinel: &PrivateSentinel,
    replicas: usize,
    others: usize,
) -> anyhow::Result<()> {
    let port = sentinel.port();
    let known = sentinel.replicas_state().await?;
    let connected = known
        .iter()
        .filter(|r| {
            r.get("flags")
                .is_some_and(|flags| !flags.contains("disconnected") && !flags.contains("s_down"))
        })
        .count();
    if connected != replicas {
        bail!("sentinel {port} knows {connected} of {replicas} replicas");
    }
    let sentinels = sentinel.sentinels_state().await?.len();
    if sentinels != others {
        bail!("sentinel {port} knows {sentinels} of {others} other sentinels");
    }
    Ok(())
}

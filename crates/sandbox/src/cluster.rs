//! A private Redis Cluster: N primaries with M replicas each, every node a
//! [`PrivateRedis`] of its own, for tests that need slots, redirections and a cluster
//! failover, and for `seatgate demo --cluster`.
//!
//! [`PrivateCluster::start`] starts every node with `cluster-enabled yes` (its
//! `nodes.conf` in its own directory, so a [`restart`](PrivateRedis::restart) rejoins
//! the cluster with the role it had), joins them with `redis-cli --cluster create`, and
//! returns once the cluster is ready, which means more than "every process answers":
//!
//! - every node reports `cluster_state:ok` with all 16384 slots assigned and every node
//!   known, and every node has the same slot map (the same primaries owning the same
//!   slots, as `redis-cli --cluster check` compares them);
//! - every replica has a live link to its primary (`master_link_status:up`) and every
//!   primary lists its replicas `online`.
//!
//! Each node's cluster bus listens on a port of its own (`cluster-port`) rather than on
//! port + 10000, which for a port from the kernel's ephemeral range may not exist.
//!
//! The timings are small (`cluster-node-timeout` 1000 ms, and a replica may always
//! stand for election, `cluster-replica-validity-factor 0`) so that a failover takes a
//! couple of seconds. Every wait polls the nodes until a deadline, never a fixed sleep.
//!
//! The cluster's state (roles, slot owners, node ids) is read from the nodes
//! (`CLUSTER NODES`, `CLUSTER INFO`, `INFO replication`) each time it is needed, so it
//! stays right whatever a test does to a node through
//! [`nodes_mut`](PrivateCluster::nodes_mut); only [`seeds_url`](PrivateCluster::seeds_url)
//! is remembered. A query to a node that is paused (SIGSTOP) gives up after 2 s and the
//! next running node is asked.

use crate::{try_free_port, PrivateRedis, RedisOptions, POLL_INTERVAL};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The number of hash slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;

/// `cluster-node-timeout` of every node: how long a node may not answer before the
/// others think it failing.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long the cluster may take to be ready after `redis-cli --cluster create`.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a failover may take after a primary is killed.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);
/// How long every node may take to see a migrated slot's new owner.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(10);
/// How long `redis-cli --cluster create` may run.
const CREATE_DEADLINE: Duration = Duration::from_secs(60);
/// How long one command to a node may take (connecting included).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// `MIGRATE`'s own timeout, in milliseconds (below [`QUERY_TIMEOUT`], so that its own
/// error is the one reported).
const MIGRATE_TIMEOUT_MS: u64 = 1500;
/// Keys moved by one `MIGRATE` when the migration is not paced.
const MIGRATE_BATCH: usize = 100;
/// Tries at starting one node with a fresh bus port (see [`start_node`]).
const NODE_START_ATTEMPTS: usize = 3;

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag, mod 16384.
///
/// The hash tag is what lies between the first `{` and the first `}` after it, if that
/// is not empty; otherwise the whole key is hashed (the rule of the cluster
/// specification, and of `CLUSTER KEYSLOT`).
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16_xmodem(hashed) % CLUSTER_SLOTS
}

/// CRC16-CCITT as the cluster uses it (XMODEM: polynomial 0x1021, initial value 0, no
/// reflection, no final xor).
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One line of `CLUSTER NODES`, as far as the sandbox needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node's id (40 hex characters).
    pub id: String,
    /// The node's client port on 127.0.0.1.
    pub port: u16,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`, ...
    pub flags: Vec<String>,
    /// The id of the primary of a replica.
    pub primary_id: Option<String>,
    /// True when the link to the node is `connected`.
    pub connected: bool,
    /// The slot ranges the node owns (inclusive); migrating / importing markers left out.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// True when the node is a primary (`master`).
    pub fn is_primary(&self) -> bool {
        self.has_flag("master")
    }

    /// True when the node is flagged failing (`fail` or `fail?`).
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// True when the node owns `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Parses `CLUSTER NODES`.
fn parse_cluster_nodes(text: &str) -> anyhow::Result<Vec<ClusterNode>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            parse_node_line(line).with_context(|| format!("bad CLUSTER NODES line {line:?}"))
        })
        .collect()
}

fn parse_node_line(line: &str) -> anyhow::Result<ClusterNode> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        bail!("{} fields, expected at least 8", fields.len());
    }
    // `ip:port@cport[,hostname]`
    let addr = fields[1].split('@').next().unwrap_or_default();
    let port = addr
        .rsplit_once(':')
        .context("no port in the address")?
        .1
        .parse()
        .context("bad port")?;
    let mut slots = Vec::new();
    for field in &fields[8..] {
        if field.starts_with('[') {
            continue;
        }
        let range = match field.split_once('-') {
            Some((a, b)) => (a.parse()?, b.parse()?),
            None => {
                let slot = field.parse()?;
                (slot, slot)
            }
        };
        slots.push(range);
    }
    Ok(ClusterNode {
        id: fields[0].to_owned(),
        port,
        flags: fields[2].split(',').map(str::to_owned).collect(),
        primary_id: (fields[3] != "-").then(|| fields[3].to_owned()),
        connected: fields[7] == "connected",
        slots,
    })
}

/// A connection to the node on `port` whose replies may take [`QUERY_TIMEOUT`].
async fn connect(port: u16) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(QUERY_TIMEOUT))
        .set_response_timeout(Some(QUERY_TIMEOUT));
    redis::Client::open(crate::redis_url(port))
        .context("bad Redis URL")?
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("cannot connect to the node on port {port}"))
}

/// Runs `cmd` on the node on `port`, on a connection of its own.
async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> anyhow::Result<T> {
    let mut conn = connect(port).await?;
    run(&mut conn, port, cmd).await
}

/// Runs `cmd` on `conn` (to the node on `port`, for errors).
async fn run<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    port: u16,
    cmd: &redis::Cmd,
) -> anyhow::Result<T> {
    let name = cmd
        .args_iter()
        .take(2)
        .map(|arg| match arg {
            redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => "…".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    tokio::time::timeout(QUERY_TIMEOUT, cmd.query_async::<T>(conn))
        .await
        .with_context(|| format!("{name} on port {port}: no answer within {QUERY_TIMEOUT:?}"))?
        .with_context(|| format!("{name} on port {port}"))
}

/// `CLUSTER NODES` of the node on `port`.
pub async fn cluster_nodes(port: u16) -> anyhow::Result<Vec<ClusterNode>> {
    let text: String = query(port, redis::cmd("CLUSTER").arg("NODES")).await?;
    parse_cluster_nodes(&text)
}

/// `CLUSTER INFO` of the node on `port`, as `name → value`.
pub async fn cluster_info(port: u16) -> anyhow::Result<BTreeMap<String, String>> {
    let text: String = query(port, redis::cmd("CLUSTER").arg("INFO")).await?;
    Ok(crate::parse_info(&text))
}

/// Starts one cluster node: `cluster-port` must be free as well as the client port, so
/// a start that fails is tried again with another bus port (the client port is retried
/// by [`PrivateRedis::start_with`] itself).
async fn start_node(options: &RedisOptions) -> anyhow::Result<PrivateRedis> {
    let mut last = None;
    for _ in 0..NODE_START_ATTEMPTS {
        let bus_port = try_free_port().context("cannot find a free port")?;
        let node_options = options.clone().config("cluster-port", bus_port.to_string());
        match PrivateRedis::start_with(node_options).await {
            Ok(node) => return Ok(node),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// The slot map as one node sees it: each primary's id with its slots, sorted.
fn slot_map(view: &[ClusterNode]) -> Vec<(String, Vec<(u16, u16)>)> {
    let mut map: Vec<(String, Vec<(u16, u16)>)> = view
        .iter()
        .filter(|n| n.is_primary() && !n.slots.is_empty())
        .map(|n| (n.id.clone(), n.slots.clone()))
        .collect();
    map.sort();
    map
}

/// A private Redis Cluster (see the module docs). Dropping it kills every node.
pub struct PrivateCluster {
    nodes: Vec<PrivateRedis>,
    primaries: usize,
    replicas_per_primary: usize,
    /// The ports of the primaries when the cluster was last seen (at start, after a
    /// failover), for [`seeds_url`](Self::seeds_url).
    seeds: Vec<u16>,
}

impl PrivateCluster {
    /// Starts `primaries` primaries (at least 3, as `redis-cli --cluster create` asks)
    /// with `replicas_per_primary` replicas each, creates the cluster, and waits until
    /// it is ready (see the module docs).
    pub async fn start(primaries: usize, replicas_per_primary: usize) -> anyhow::Result<Self> {
        if primaries < 3 {
            bail!("a Redis Cluster needs at least 3 primaries, not {primaries}");
        }
        let redis_cli = crate::binary_on_path("redis-cli")
            .context("redis-cli is not installed (apt-get install redis-tools)")?;
        let options = RedisOptions::new()
            .config("cluster-enabled", "yes")
            .config("cluster-config-file", "nodes.conf")
            .config("cluster-node-timeout", NODE_TIMEOUT.as_millis().to_string())
            // Any replica may stand for election however long its link was down: a test
            // that pauses a node must still see a failover.
            .config("cluster-replica-validity-factor", "0")
            // Replicas stay where they are put, so each primary keeps its own.
            .config("cluster-allow-replica-migration", "no");
        let total = primaries * (1 + replicas_per_primary);
        let mut nodes = Vec::with_capacity(total);
        for i in 0..total {
            let node = start_node(&options)
                .await
                .with_context(|| format!("cannot start cluster node {i}"))?;
            nodes.push(node);
        }
        let mut cluster = Self {
            nodes,
            primaries,
            replicas_per_primary,
            seeds: Vec::new(),
        };
        cluster.create(&redis_cli).await?;
        cluster.wait_ready(Instant::now() + READY_DEADLINE).await?;
        cluster.seeds = cluster.primaries().await?;
        Ok(cluster)
    }

    /// `redis-cli --cluster create <every node> --cluster-replicas N --cluster-yes`.
    async fn create(&self, redis_cli: &std::path::Path) -> anyhow::Result<()> {
        let mut cmd = tokio::process::Command::new(redis_cli);
        cmd.arg("--cluster").arg("create");
        for node in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port()));
        }
        cmd.arg("--cluster-replicas")
            .arg(self.replicas_per_primary.to_string())
            .arg("--cluster-yes")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CREATE_DEADLINE, cmd.output())
            .await
            .with_context(|| format!("redis-cli --cluster create ran over {CREATE_DEADLINE:?}"))?
            .context("cannot run redis-cli")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // redis-cli answers some failures ("[ERR] Node ... is not empty") with status 0.
        if !output.status.success() || text.contains("[ERR]") {
            bail!(
                "redis-cli --cluster create failed ({}):\n{text}\n{}",
                output.status,
                self.logs()
            );
        }
        Ok(())
    }

    /// Waits until the cluster is ready (see the module docs).
    async fn wait_ready(&self, until: Instant) -> anyhow::Result<()> {
        loop {
            let last = match self.check_ready().await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= until {
                bail!("the cluster was not ready in time: {last}\n{}", self.logs());
            }
            tokio::time::sleep(POLL_INTERVAL * 2).await;
        }
    }

    async fn check_ready(&self) -> anyhow::Result<()> {
        let mut first_map = None;
        for node in &self.nodes {
            let port = node.port();
            let info = cluster_info(port).await?;
            let field = |name: &str| info.get(name).map(String::as_str).unwrap_or("?");
            if field("cluster_state") != "ok" {
                bail!("node {port}: cluster_state {}", field("cluster_state"));
            }
            for name in ["cluster_slots_assigned", "cluster_slots_ok"] {
                if field(name) != CLUSTER_SLOTS.to_string() {
                    bail!("node {port}: {name} {}", field(name));
                }
            }
            if field("cluster_known_nodes") != self.nodes.len().to_string() {
                bail!(
                    "node {port}: knows {} of {} nodes",
                    field("cluster_known_nodes"),
                    self.nodes.len()
                );
            }
            let view = cluster_nodes(port).await?;
            let map = slot_map(&view);
            if map.len() != self.primaries {
                bail!(
                    "node {port} sees {} primaries with slots, not {}",
                    map.len(),
                    self.primaries
                );
            }
            match &first_map {
                None => first_map = Some(map),
                Some(first) if *first != map => {
                    bail!("node {port} has another slot map than the first node")
                }
                Some(_) => {}
            }
            let replication = node.info("replication").await?;
            match replication.get("role").map(String::as_str) {
                Some("slave") => {
                    let link = replication.get("master_link_status").map(String::as_str);
                    if link != Some("up") {
                        bail!("replica {port}: master_link_status {link:?}");
                    }
                }
                Some("master") => {
                    let online = (0..self.replicas_per_primary)
                        .filter_map(|i| replication.get(&format!("slave{i}")))
                        .filter(|line| line.contains("state=online"))
                        .count();
                    if online != self.replicas_per_primary {
                        bail!(
                            "primary {port} lists {online} of {} replicas online",
                            self.replicas_per_primary
                        );
                    }
                }
                role => bail!("node {port}: role {role:?}"),
            }
        }
        Ok(())
    }

    /// Every node, in the order they were started (roles change with failovers: ask
    /// [`primaries`](Self::primaries)).
    pub fn nodes(&self) -> &[PrivateRedis] {
        &self.nodes
    }

    /// Every node, to kill, pause, resume or restart one.
    pub fn nodes_mut(&mut self) -> &mut [PrivateRedis] {
        &mut self.nodes
    }

    /// The node listening on `port`, if it is one of this cluster's.
    pub fn node_mut(&mut self, port: u16) -> Option<&mut PrivateRedis> {
        self.nodes.iter_mut().find(|node| node.port() == port)
    }

    /// `redis://127.0.0.1:<port>` of node `i` (in start order).
    ///
    /// # Panics
    ///
    /// If `i` is not below the number of nodes.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// `redis://127.0.0.1:<p1>,redis://127.0.0.1:<p2>,…`: the primaries as this handle
    /// last saw them (at start, updated by
    /// [`kill_primary_and_wait_failover`](Self::kill_primary_and_wait_failover)), the
    /// form of `SEATGATE_REDIS_URL` that names a cluster's seed nodes.
    pub fn seeds_url(&self) -> String {
        let urls: Vec<String> = self.seeds.iter().map(|&p| crate::redis_url(p)).collect();
        urls.join(",")
    }

    /// The port of a running node that answers `CLUSTER NODES`, with its view.
    async fn any_view(&mut self) -> anyhow::Result<(u16, Vec<ClusterNode>)> {
        let mut last = None;
        for node in self.nodes.iter_mut() {
            if !node.is_running() {
                continue;
            }
            match cluster_nodes(node.port()).await {
                Ok(view) => return Ok((node.port(), view)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no cluster node is running")))
    }

    /// The port of the primary that owns `slot`, from `CLUSTER NODES` of the first
    /// running node that answers.
    pub async fn primary_for_slot(&mut self, slot: u16) -> anyhow::Result<u16> {
        if slot >= CLUSTER_SLOTS {
            bail!("slot {slot} is out of range (0..{CLUSTER_SLOTS})");
        }
        let (asked, view) = self.any_view().await?;
        view.iter()
            .find(|n| n.is_primary() && n.owns(slot))
            .map(|n| n.port)
            .with_context(|| format!("node {asked} knows no owner of slot {slot}"))
    }

    /// The ports of the current primaries that own slots, by their lowest slot.
    pub async fn primaries(&mut self) -> anyhow::Result<Vec<u16>> {
        let (_, view) = self.any_view().await?;
        let mut owners: Vec<(u16, u16)> = view
            .iter()
            .filter(|n| n.is_primary() && !n.is_failing())
            .filter_map(|n| n.slots.iter().map(|&(a, _)| a).min().map(|a| (a, n.port)))
            .collect();
        owners.sort();
        Ok(owners.into_iter().map(|(_, port)| port).collect())
    }

    /// For each current primary (in the order of [`primaries`](Self::primaries)), an
    /// event id `<prefix><tag>` with a short tag whose keys
    /// (`<namespace>{e:<id>}:…`) live on that primary, so that a test can put an event
    /// on every primary.
    ///
    /// `prefix` must be of the event id alphabet (`[A-Za-z0-9_-]`); the tags are
    /// lowercase letters and digits, and the ids are distinct.
    pub async fn event_id_on_each_primary(
        &mut self,
        namespace: &str,
        prefix: &str,
    ) -> anyhow::Result<Vec<String>> {
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!("event id prefix {prefix:?} is not of [A-Za-z0-9_-]");
        }
        // Event ids are at most 64 characters; the tags here are at most 4.
        if prefix.len() > 60 {
            bail!("event id prefix {prefix:?} is longer than 60 characters");
        }
        let (_, view) = self.any_view().await?;
        let primaries = self.primaries().await?;
        let owner_of = |slot: u16| {
            view.iter()
                .find(|n| n.is_primary() && n.owns(slot))
                .map(|n| n.port)
        };
        let mut ids: Vec<Option<String>> = vec![None; primaries.len()];
        // Short tags first: a, b, …, z0, …; each primary owns about 1/N of the slots,
        // so a few dozen tags cover every primary.
        let mut found = 0;
        for n in 0..1_000_000u32 {
            let tag = base36(n);
            let id = format!("{prefix}{tag}");
            // The namespace is outside the hash tag, but a namespace with braces of its
            // own would change the slot: hash the key as the gateway builds it.
            let slot = slot_of(&format!("{namespace}{{e:{id}}}:meta"));
            let Some(owner) = owner_of(slot) else {
                continue;
            };
            if let Some(i) = primaries.iter().position(|&p| p == owner) {
                if ids[i].is_none() {
                    ids[i] = Some(id);
                    found += 1;
                    if found == primaries.len() {
                        break;
                    }
                }
            }
        }
        ids.into_iter()
            .zip(&primaries)
            .map(|(id, port)| id.with_context(|| format!("no short tag lands on primary {port}")))
            .collect()
    }

    /// Moves `slot` and its keys to the primary on `to_port`, while clients keep
    /// working (they get `ASK` for keys already moved, `MOVED` once it is done). A
    /// no-op when `to_port` already owns it.
    pub async fn migrate_slot(&mut self, slot: u16, to_port: u16) -> anyhow::Result<()> {
        self.migrate_slot_paced(slot, to_port, None).await
    }

    /// [`migrate_slot`](Self::migrate_slot), one key at a time with
    /// `pause_between_keys` after each when it is given, so that a test can have a
    /// migration in progress for a while.
    ///
    /// The standard sequence: `CLUSTER SETSLOT <slot> IMPORTING <from-id>` on the
    /// target, `MIGRATING <to-id>` on the source, `CLUSTER GETKEYSINSLOT` + `MIGRATE …
    /// KEYS …` until the source has none left, then `CLUSTER SETSLOT <slot> NODE
    /// <to-id>` on the target, the source and every other primary; returns once every
    /// running node names the target as the slot's owner.
    ///
    /// An error part way (a node killed meanwhile, a key on both sides) leaves the slot
    /// `MIGRATING` / `IMPORTING`, as a failed `redis-cli --cluster reshard` would; the
    /// error says which step failed.
    pub async fn migrate_slot_paced(
        &mut self,
        slot: u16,
        to_port: u16,
        pause_between_keys: Option<Duration>,
    ) -> anyhow::Result<()> {
        if slot >= CLUSTER_SLOTS {
            bail!("slot {slot} is out of range (0..{CLUSTER_SLOTS})");
        }
        let (_, view) = self.any_view().await?;
        let from = view
            .iter()
            .find(|n| n.is_primary() && n.owns(slot))
            .with_context(|| format!("no primary owns slot {slot}"))?
            .clone();
        let to = view
            .iter()
            .find(|n| n.port == to_port)
            .with_context(|| format!("no cluster node listens on port {to_port}"))?
            .clone();
        if !to.is_primary() || to.is_failing() {
            bail!("the node on port {to_port} is not a live primary");
        }
        if from.port == to.port {
            return Ok(());
        }
        let mut source = connect(from.port).await?;
        let mut target = connect(to.port).await?;
        let setslot = |state: &str, id: &str| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
            cmd
        };
        // Importing first: once the source says MIGRATING, it sends ASK to the target,
        // which must then accept the slot.
        let () = run(&mut target, to.port, &setslot("IMPORTING", &from.id)).await?;
        let () = run(&mut source, from.port, &setslot("MIGRATING", &to.id)).await?;
        let batch = if pause_between_keys.is_some() {
            1
        } else {
            MIGRATE_BATCH
        };
        loop {
            let keys: Vec<Vec<u8>> = run(
                &mut source,
                from.port,
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(batch),
            )
            .await?;
            if keys.is_empty() {
                break;
            }
            // No REPLACE: during a migration a key lives on one side only (a client
            // is sent to the target only for a key the source no longer has), so a key
            // on both sides is a bug to report, not to paper over.
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg("127.0.0.1")
                .arg(to.port)
                .arg("")
                .arg(0)
                .arg(MIGRATE_TIMEOUT_MS)
                .arg("KEYS")
                .arg(&keys);
            let _: redis::Value = run(&mut source, from.port, &migrate)
                .await
                .with_context(|| format!("MIGRATE of {} keys of slot {slot}", keys.len()))?;
            if let Some(pause) = pause_between_keys {
                tokio::time::sleep(pause).await;
            }
        }
        // The target first, so that it owns the slot before the source sends clients
        // there with MOVED; then the source; then the others (replicas refuse SETSLOT
        // and learn the change from the target's bumped epoch).
        let () = run(&mut target, to.port, &setslot("NODE", &to.id)).await?;
        let () = run(&mut source, from.port, &setslot("NODE", &to.id)).await?;
        for other in view.iter().filter(|n| {
            n.is_primary() && !n.is_failing() && n.port != from.port && n.port != to.port
        }) {
            query::<()>(other.port, &setslot("NODE", &to.id)).await?;
        }
        self.wait_slot_owner(slot, to.port, Instant::now() + CONVERGE_DEADLINE)
            .await
    }

    /// Waits until every running node names `port` as the owner of `slot`.
    async fn wait_slot_owner(
        &mut self,
        slot: u16,
        port: u16,
        until: Instant,
    ) -> anyhow::Result<()> {
        loop {
            let mut last = None;
            for node in self.nodes.iter_mut() {
                if !node.is_running() {
                    continue;
                }
                let view = cluster_nodes(node.port()).await?;
                let owner = view.iter().find(|n| n.is_primary() && n.owns(slot));
                if owner.map(|n| n.port) != Some(port) {
                    last = Some(format!(
                        "node {} names {:?} as the owner of slot {slot}",
                        node.port(),
                        owner.map(|n| n.port)
                    ));
                    break;
                }
            }
            let Some(last) = last else { return Ok(()) };
            if Instant::now() >= until {
                bail!("{last}, not {port}, after {CONVERGE_DEADLINE:?}");
            }
            tokio::time::sleep(POLL_INTERVAL * 2).await;
        }
    }

    /// SIGKILLs the primary on `port` and waits until one of its replicas is the
    /// primary of its slots: it answers `role:master`, and every other running node
    /// reports `cluster_state:ok` and names it the owner of those slots. Returns the
    /// new primary's port.
    pub async fn kill_primary_and_wait_failover(&mut self, port: u16) -> anyhow::Result<u16> {
        let view = cluster_nodes(port)
            .await
            .with_context(|| format!("the primary on port {port} does not answer"))?;
        let me = view
            .iter()
            .find(|n| n.port == port)
            .context("a node does not list itself")?
            .clone();
        if !me.is_primary() || me.slots.is_empty() {
            bail!("the node on port {port} is not a primary with slots");
        }
        let replicas: Vec<u16> = view
            .iter()
            .filter(|n| n.primary_id.as_deref() == Some(me.id.as_str()))
            .map(|n| n.port)
            .collect();
        if replicas.is_empty() {
            bail!("the primary on port {port} has no replica to fail over to");
        }
        let slot = me.slots[0].0;
        self.node_mut(port)
            .context("the primary is not one of this cluster's nodes")?
            .kill();
        let until = Instant::now() + FAILOVER_DEADLINE;
        loop {
            let last = match self.failed_over(&replicas, slot).await {
                Ok(new) => {
                    self.seeds = self.primaries().await?;
                    return Ok(new);
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= until {
                bail!(
                    "no failover from port {port} within {FAILOVER_DEADLINE:?}: {last}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL_INTERVAL * 4).await;
        }
    }

    /// The port of the replica in `replicas` that was promoted, once every running node
    /// is `cluster_state:ok` and names it the owner of `slot`.
    async fn failed_over(&mut self, replicas: &[u16], slot: u16) -> anyhow::Result<u16> {
        let mut promoted = None;
        for &replica in replicas {
            let running = self.node_mut(replica).is_some_and(|n| n.is_running());
            if !running {
                continue;
            }
            let info = crate::redis_info(&crate::redis_url(replica), "replication").await?;
            if info.get("role").map(String::as_str) == Some("master") {
                promoted = Some(replica);
            }
        }
        let new = promoted.context("no replica is a primary yet")?;
        let running: Vec<u16> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then(|| n.port()))
            .collect();
        for port in running {
            let info = cluster_info(port).await?;
            let state = info.get("cluster_state").map(String::as_str);
            if state != Some("ok") {
                bail!("node {port}: cluster_state {state:?}");
            }
            let view = cluster_nodes(port).await?;
            let owner = view.iter().find(|n| n.is_primary() && n.owns(slot));
            if owner.map(|n| n.port) != Some(new) {
                bail!(
                    "node {port} names {:?} as the owner of slot {slot}, not {new}",
                    owner.map(|n| n.port)
                );
            }
        }
        Ok(new)
    }

    /// The tails of every node's log, for errors.
    fn logs(&self) -> String {
        let logs: Vec<String> = self.nodes.iter().map(PrivateRedis::log_tail).collect();
        logs.join("\n")
    }
}

/// `n` in base 36, lowercase (`0`, …, `z`, `10`, …).
fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification_and_redis_cli() {
        // The specification's check value: CRC16/XMODEM("123456789") = 0x31C3.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        // Values from `redis-cli CLUSTER KEYSLOT <key>` on Redis 7.0.15.
        for (key, slot) in SLOTS_FROM_REDIS_CLI {
            assert_eq!(slot_of(key), *slot, "slot of {key:?}");
        }
    }

    /// `(key, CLUSTER KEYSLOT key)` as Redis 7.0.15 answers (tests/cluster.rs asks a
    /// live node about the same keys).
    const SLOTS_FROM_REDIS_CLI: &[(&str, u16)] = &[
        ("foo", 12182),
        ("bar", 5061),
        ("123456789", 12739),
        ("{e:drop-1}:meta", 11397),
        ("ns:{e:drop-1}:seats", 11397),
        ("{user1000}.following", 3443),
        ("foo{}{bar}", 8363),
        ("foo{{bar}}zap", 4015),
        ("foo{bar}{zap}", 5061),
        ("sièges{é}", 10180),
        ("", 0),
        ("seatgate:{e:wordcamp-2027}:outbox", 14825),
    ];

    #[test]
    fn the_hash_tag_is_between_the_first_open_brace_and_the_next_close_brace() {
        assert_eq!(slot_of("{e:abc}:meta"), slot_of("e:abc"));
        assert_eq!(slot_of("ns:{e:abc}:seats"), slot_of("e:abc"));
        assert_eq!(
            slot_of("foo{}{bar}"),
            crc16_xmodem(b"foo{}{bar}") % CLUSTER_SLOTS
        );
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
        assert_eq!(slot_of("foo{bar}{zap}"), slot_of("bar"));
        assert_eq!(
            slot_of("no tag}{"),
            crc16_xmodem(b"no tag}{") % CLUSTER_SLOTS
        );
    }

    #[test]
    fn cluster_nodes_lines_parse_with_slots_roles_and_markers() {
        let text = "\
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 7000 [5461->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@40004,host.example slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30002@40002 master,fail - 1426238316232 1426238316232 2 disconnected 5461-10922
";
        let nodes = parse_cluster_nodes(text).unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].port, 30001);
        assert!(nodes[0].is_primary());
        assert_eq!(nodes[0].slots, vec![(0, 5460), (7000, 7000)]);
        assert!(nodes[0].owns(7000) && nodes[0].owns(0) && !nodes[0].owns(5461));
        assert_eq!(nodes[1].port, 30004);
        assert!(!nodes[1].is_primary());
        assert_eq!(nodes[1].primary_id.as_deref(), Some(nodes[0].id.as_str()));
        assert!(nodes[2].is_failing() && !nodes[2].connected);
        assert!(parse_cluster_nodes("garbage line").is_err());
    }

    #[test]
    fn tags_count_in_base_36() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}

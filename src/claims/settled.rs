//! Notifications that a booking left `pending`, for `Prefer: wait=N` claims.
//!
//! Whoever settles a booking (the reconciler's confirm or reject, the API's cancel)
//! publishes its id. Each gateway keeps one subscription and wakes the requests waiting
//! on that booking, so a waiting request costs no Redis traffic at all while it waits:
//! no polling.
//!
//! - **One node** (alone or behind Sentinel): one channel per namespace, `PUBLISH` /
//!   `SUBSCRIBE`.
//! - **Redis Cluster**: plain pub/sub there is relayed to every node of the cluster, so
//!   each event has a sharded channel on its own slot (`SPUBLISH` / `SSUBSCRIBE`, Redis
//!   7): only the event's shard carries its notifications. A gateway subscribes to an
//!   event's channel when a request first waits on one of its bookings, before that
//!   request reads the booking, and stays subscribed (the events on sale are a handful);
//!   the cluster client subscribes again after a reconnection or a moved slot.
//!
//! Pub/sub is fire and forget: a message published while the subscription is down
//! (Redis restarting, say) is lost. A waiter that misses its message simply waits out
//! its time and then reads the booking, which is always the source of truth; the
//! notification only makes the answer come sooner.

use futures::StreamExt;
use redis::cluster::ClusterClientBuilder;
use redis::{ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::keys::{self, EventKeys};
use super::primary::{parse_info, Target};
use crate::backoff::backoff;

type Waiters = Arc<Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>>;

/// A request to subscribe to one event's sharded channel, answered once subscribed.
type Subscribe = (String, oneshot::Sender<()>);

/// How long a first waiter on an event waits for its channel's subscription before
/// going on without it (it then answers at its timeout at worst).
const SUBSCRIBE_WAIT: Duration = Duration::from_millis(500);

/// Wakes requests waiting for bookings to settle. Cheap to clone.
#[derive(Clone)]
pub struct SettledFeed {
    waiters: Waiters,
    namespace: String,
    /// The events whose channel is subscribed (or asked for), and where to ask for
    /// more (on one node, the answer comes at once: its one channel is subscribed).
    shards: Shards,
}

#[derive(Clone)]
struct Shards {
    subscribed: Arc<Mutex<HashSet<String>>>,
    requests: mpsc::UnboundedSender<Subscribe>,
}

impl SettledFeed {
    /// Starts the subscription task (reconnecting forever with backoff) and returns
    /// the feed. The task ends when the runtime does. A URL naming several seeds is a
    /// cluster; a single node that turns out to be one is subscribed to as one node
    /// (plain pub/sub works on a cluster, at the cost of relaying).
    pub fn start(redis_url: &str, namespace: &str) -> anyhow::Result<Self> {
        let target = Target::parse(redis_url)?;
        let waiters = Waiters::default();
        let (requests, asked) = mpsc::unbounded_channel();
        tokio::spawn(run(
            target,
            keys::settled_channel(namespace),
            waiters.clone(),
            asked,
        ));
        Ok(Self {
            waiters,
            namespace: namespace.to_owned(),
            shards: Shards {
                subscribed: Arc::default(),
                requests,
            },
        })
    }

    /// Registers interest in `booking_id` of `event_id`; the receiver fires when it
    /// settles. Register *before* reading the booking's status, so a settle in between
    /// is not missed.
    pub async fn watch(&self, event_id: &str, booking_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(booking_id.to_owned())
            .or_default()
            .push(tx);
        let channel = EventKeys::new(&self.namespace, event_id).settled();
        let first = self
            .shards
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone());
        if first {
            // Others waiting on the event meanwhile go on at once; should the
            // subscription not be made yet when their booking settles, they answer at
            // their timeout.
            let (done, subscribed) = oneshot::channel();
            if self.shards.requests.send((channel, done)).is_ok() {
                let _ = tokio::time::timeout(SUBSCRIBE_WAIT, subscribed).await;
            }
        }
        rx
    }

    /// Drops the registrations of `booking_id` whose requests stopped waiting.
    pub(crate) fn forget(&self, booking_id: &str) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = waiters.get_mut(booking_id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(booking_id);
            }
        }
    }

    fn notify(waiters: &Waiters, booking_id: &str) {
        let woken = waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(booking_id);
        for tx in woken.into_iter().flatten() {
            let _ = tx.send(());
        }
    }
}

/// Runs `subscription` again and again, with backoff after failures, logging the first
/// failure of a run.
async fn forever<F, Fut>(mut subscription: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<()>>,
{
    let mut failures = 0;
    loop {
        match subscription().await {
            Ok(()) => failures = 0,
            Err(err) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %err, "settle notifications unavailable; waiting requests fall back to their timeout");
                }
            }
        }
        tokio::time::sleep(backoff(failures.min(8), Duration::from_secs(2))).await;
    }
}

/// Finds out whether Redis is a cluster (a single seed may be one), then subscribes
/// as [`run_sharded`] or [`run_plain`] for good.
async fn run(
    target: Target,
    channel: String,
    waiters: Waiters,
    mut asked: mpsc::UnboundedReceiver<Subscribe>,
) {
    let mut failures = 0;
    let seeds = loop {
        match cluster_seeds(&target).await {
            Ok(seeds) => break seeds,
            Err(err) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %err, "settle notifications unavailable; waiting requests fall back to their timeout");
                }
                tokio::time::sleep(backoff(failures.min(8), Duration::from_secs(2))).await;
            }
        }
    };
    match seeds {
        Some(seeds) => run_sharded(seeds, waiters, asked).await,
        None => {
            // The namespace's one channel serves every event: nothing to subscribe to.
            tokio::spawn(async move {
                while let Some((_, done)) = asked.recv().await {
                    let _ = done.send(());
                }
            });
            run_plain(target, channel, waiters).await
        }
    }
}

/// The seeds to subscribe through when Redis is a cluster; `None` for one node.
async fn cluster_seeds(target: &Target) -> redis::RedisResult<Option<Vec<ConnectionInfo>>> {
    match target {
        Target::Cluster(seeds) => Ok(Some(
            seeds
                .iter()
                .map(|seed| seed.as_str().into_connection_info())
                .collect::<redis::RedisResult<_>>()?,
        )),
        Target::Sentinel { .. } => Ok(None),
        Target::Node(client) => {
            let mut conn = client.get_multiplexed_async_connection().await?;
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut conn)
                .await?;
            let cluster =
                parse_info(&info).get("redis_mode").map(String::as_str) == Some("cluster");
            Ok(cluster.then(|| vec![client.get_connection_info().clone()]))
        }
    }
}

/// One node: one channel for the namespace. Each subscription asks for the primary
/// anew (with Sentinel, the node settles are published on after a failover).
async fn run_plain(target: Target, channel: String, waiters: Waiters) {
    forever(|| async {
        let mut pubsub = target.client().await?.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            if let Ok(booking_id) = std::str::from_utf8(msg.get_payload_bytes()) {
                SettledFeed::notify(&waiters, booking_id);
            }
        }
        Ok(())
    })
    .await
}

/// A cluster: one RESP3 cluster connection whose pushes carry the sharded messages;
/// channels are subscribed as waiters ask for them, and all of them again on a new
/// connection.
async fn run_sharded(
    seeds: Vec<redis::ConnectionInfo>,
    waiters: Waiters,
    asked: mpsc::UnboundedReceiver<Subscribe>,
) {
    let asked = tokio::sync::Mutex::new(asked);
    let channels: Mutex<Vec<String>> = Mutex::default();
    forever(|| async {
        let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let client = ClusterClientBuilder::new(seeds.clone())
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(push_tx)
            .build()?;
        let mut conn = client.get_async_connection().await?;
        let known = channels.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for channel in known {
            conn.ssubscribe(&channel).await?;
        }
        let mut asked = asked.lock().await;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return Ok(()) };
                    match push.kind {
                        PushKind::SMessage => {
                            if let Some(Value::BulkString(id)) = push.data.get(1) {
                                if let Ok(booking_id) = std::str::from_utf8(id) {
                                    SettledFeed::notify(&waiters, booking_id);
                                }
                            }
                        }
                        PushKind::Disconnection => {
                            tracing::debug!("settle notifications: a cluster node disconnected");
                        }
                        _ => {}
                    }
                }
                request = asked.recv() => {
                    let Some((channel, done)) = request else { return Ok(()) };
                    // Known first: should the subscription fail, the next connection
                    // makes it.
                    channels.lock().unwrap_or_else(|p| p.into_inner()).push(channel.clone());
                    conn.ssubscribe(&channel).await?;
                    let _ = done.send(());
                }
            }
        }
    })
    .await
}

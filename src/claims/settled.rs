//! Notifications that a booking left `pending`, for `Prefer: wait=N` claims.
//!
//! Whoever settles a booking (the reconciler's confirm or reject, the API's cancel)
//! publishes its id on one Redis pub/sub channel per namespace. Each gateway keeps a
//! single subscription and wakes the requests waiting on that booking, so a waiting
//! request costs no Redis traffic at all while it waits: no polling.
//!
//! Pub/sub is fire and forget: a message published while the subscription is down
//! (Redis restarting, say) is lost. A waiter that misses its message simply waits out
//! its time and then reads the booking, which is always the source of truth; the
//! notification only makes the answer come sooner.

use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

use super::keys;
use crate::backoff::backoff;

type Waiters = Arc<Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>>;

/// The channel settle notifications go to.
pub fn channel(namespace: &str) -> String {
    keys::settled_channel(namespace)
}

/// Wakes requests waiting for bookings to settle. Cheap to clone.
#[derive(Clone, Default)]
pub struct SettledFeed {
    waiters: Waiters,
}

impl SettledFeed {
    /// Starts the subscription task (reconnecting forever with backoff) and returns
    /// the feed. The task ends when the runtime does.
    pub fn start(redis_url: &str, namespace: &str) -> anyhow::Result<Self> {
        let target = super::Target::parse(redis_url)?;
        let feed = Self::default();
        let waiters = feed.waiters.clone();
        let channel = channel(namespace);
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                match subscribe(&target, &channel, &waiters).await {
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
        });
        Ok(feed)
    }

    /// Registers interest in `booking_id`; the receiver fires when it settles. Register
    /// *before* reading the booking's status, so a settle in between is not missed.
    pub fn watch(&self, booking_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.entry(booking_id.to_owned()).or_default().push(tx);
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

/// One subscription's life: returns when the connection ends. Each one asks for the
/// primary anew (with Sentinel, the node settles are published on after a failover).
async fn subscribe(
    target: &super::Target,
    channel: &str,
    waiters: &Waiters,
) -> redis::RedisResult<()> {
    let mut pubsub = target.client().await?.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        if let Ok(booking_id) = std::str::from_utf8(msg.get_payload_bytes()) {
            SettledFeed::notify(waiters, booking_id);
        }
    }
    Ok(())
}

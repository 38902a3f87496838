//! The live seat map behind `GET /v1/events/{id}/stream`.
//!
//! One watcher per watched event, however many people watch it: every tick (200 ms)
//! it reads the event's counters; when they moved (or every few seconds regardless)
//! it reads the seat statuses in short `HSCAN` steps, diffs them against what it saw
//! last, and broadcasts one batched delta, serialised once, to every subscriber. A
//! drop of thousands of claims per second is thus a handful of messages per second per
//! watcher, and the claim path does no work at all for the map: it is read from Redis
//! beside the claims, never pushed by them. The watcher stops when its last subscriber
//! leaves.
//!
//! Messages (each an SSE event whose data is one JSON object):
//! - `snapshot`: `{"event_id", "name", "seats": [id...], "status": "aaphb…", "counters"}`,
//!   the seats in best-available order and their statuses as one character each
//!   (`a` available, `p` pending, `h` held for its checkout, `b` booked); sent first,
//!   and again to a subscriber that fell behind.
//! - `delta`: `{"changes": [[index, "p"], …], "counters"}`, what changed since the
//!   previous message (`changes` may be empty when only the counters moved).
//! - `gone`: the event is no longer on sale; the stream ends.
//!
//! `counters` is `{"seats_total", "available", "pending", "held", "booked",
//! "claims_total", "claims_per_sec", "outbox_length", "reconciler_lag_ms"}` (`claims_total` and
//! `claims_per_sec` are `null` under the mysql strategy, which has no outbox).

mod map;
pub mod snapshot;
pub mod source;
mod watcher;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use map::MapState;
use source::Source;
use watcher::run;

/// How often a watcher reads the event, and so the longest a change waits to be sent.
pub const TICK: Duration = Duration::from_millis(200);
/// Ticks between full reads even when the counters did not move (repairs, warms).
const RESYNC_TICKS: u32 = 25;
/// Messages a subscriber may fall behind before it is sent a fresh snapshot instead.
const BACKLOG: usize = 64;
/// The window over which `claims_per_sec` is measured.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// A message to subscribers, serialised once for all of them.
#[derive(Debug, Clone)]
pub enum Message {
    Snapshot(Arc<str>),
    Delta(Arc<str>),
    Gone,
}

/// The watchers of all watched events. Cheap to clone.
#[derive(Clone)]
pub struct LiveHub {
    hub: Arc<Hub>,
}

struct Hub {
    source: Source,
    /// One permit per open subscription: a bound on the streams a process holds.
    streams: Arc<Semaphore>,
    /// Open subscriptions per client address, so that one client cannot take all of
    /// `streams` and lock everyone else out of the map.
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_client: usize,
    tick: Duration,
    watches: Mutex<HashMap<String, Arc<Watch>>>,
    closed: watch::Sender<bool>,
}

struct Watch {
    tx: broadcast::Sender<Message>,
    /// `None` until the watcher has read the map once.
    map: Mutex<Option<MapState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LiveHub {
    /// A hub allowing at most `max_streams` subscriptions at once, and at most
    /// `max_per_client` of them from one client address.
    pub fn new(source: Source, max_streams: usize, max_per_client: usize) -> Self {
        Self::with_tick(source, max_streams, max_per_client, TICK)
    }

    pub(crate) fn with_tick(
        source: Source,
        max_streams: usize,
        max_per_client: usize,
        tick: Duration,
    ) -> Self {
        Self {
            hub: Arc::new(Hub {
                source,
                streams: Arc::new(Semaphore::new(max_streams)),
                per_client: Arc::default(),
                max_per_client,
                tick,
                watches: Mutex::new(HashMap::new()),
                closed: watch::channel(false).0,
            }),
        }
    }

    /// Subscribes `client` to an event's map (starting its watcher if nobody watches it
    /// yet); `None` when the process already holds its maximum of streams, or this
    /// client its maximum (a client of unknown address counts against the total
    /// only). The caller has checked that the event is on sale.
    pub fn subscribe(&self, event_id: &str, client: Option<IpAddr>) -> Option<Subscription> {
        let client_slot = match client {
            Some(ip) => Some(ClientSlot::take(
                &self.hub.per_client,
                ip,
                self.hub.max_per_client,
            )?),
            None => None,
        };
        let permit = self.hub.streams.clone().try_acquire_owned().ok()?;
        let mut watches = lock(&self.hub.watches);
        let watch = watches
            .entry(event_id.to_owned())
            .or_insert_with(|| {
                let watch = Arc::new(Watch {
                    tx: broadcast::channel(BACKLOG).0,
                    map: Mutex::new(None),
                });
                tokio::spawn(run(self.hub.clone(), event_id.to_owned(), watch.clone()));
                watch
            })
            .clone();
        // Subscribed under the hub's lock: a watcher retiring checks its subscriber
        // count under the same lock, so it never retires under a new subscriber.
        let (first, rx) = watch.snapshot_and_subscribe();
        drop(watches);
        Some(Subscription {
            first,
            rx,
            watch,
            closed: self.hub.closed.subscribe(),
            done: false,
            _permit: permit,
            _client: client_slot,
        })
    }

    /// Ends every subscription and watcher (on shutdown, so that open streams do not
    /// hold the server's graceful shutdown forever).
    pub fn close(&self) {
        self.hub.closed.send_replace(true);
    }

    /// Events being watched now, and their subscriber counts.
    pub fn watched(&self) -> Vec<(String, usize)> {
        lock(&self.hub.watches)
            .iter()
            .map(|(event, w)| (event.clone(), w.tx.receiver_count()))
            .collect()
    }
}

impl Hub {
    /// Removes the watch if nobody subscribes to it any more; true when removed.
    fn retire(&self, event_id: &str, watch: &Arc<Watch>, force: bool) -> bool {
        let mut watches = lock(&self.watches);
        if !force && watch.tx.receiver_count() > 0 {
            return false;
        }
        if watches.get(event_id).is_some_and(|w| Arc::ptr_eq(w, watch)) {
            watches.remove(event_id);
        }
        true
    }
}

impl Watch {
    fn snapshot_and_subscribe(&self) -> (Option<Message>, broadcast::Receiver<Message>) {
        // Under the map's lock: no delta can be sent between the snapshot and the
        // subscription, so a subscriber sees every change exactly once.
        let map = lock(&self.map);
        let rx = self.tx.subscribe();
        (map.as_ref().map(MapState::snapshot), rx)
    }
}

/// One of a client's open streams; gives its place back when dropped.
struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    /// A place for `ip`, if it holds fewer than `max` streams.
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut map = lock(counts);
        let held = map.entry(ip).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.counts);
        if let Some(held) = map.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// One subscriber's view: the snapshot, then deltas; a fresh snapshot after falling
/// behind.
pub struct Subscription {
    first: Option<Message>,
    rx: broadcast::Receiver<Message>,
    watch: Arc<Watch>,
    closed: watch::Receiver<bool>,
    done: bool,
    _permit: OwnedSemaphorePermit,
    _client: Option<ClientSlot>,
}

impl Subscription {
    /// The next message; `None` when the stream is over (event gone, or shutdown).
    pub async fn next(&mut self) -> Option<Message> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.done {
            return None;
        }
        loop {
            let received = tokio::select! {
                _ = self.closed.wait_for(|closed| *closed) => return None,
                received = self.rx.recv() => received,
            };
            match received {
                Ok(Message::Gone) => {
                    self.done = true;
                    return Some(Message::Gone);
                }
                Ok(message) => return Some(message),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let (snapshot, rx) = self.watch.snapshot_and_subscribe();
                    self.rx = rx;
                    if snapshot.is_some() {
                        return snapshot;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::source::Counters;
    use super::*;
    use crate::domain::SeatStatus;

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_a_fresh_snapshot_then_the_deltas() {
        let seats = vec![("A1".to_owned(), SeatStatus::Available)];
        let shared = Arc::new(Watch {
            tx: broadcast::channel(BACKLOG).0,
            map: Mutex::new(Some(MapState::new(
                "e",
                "E".into(),
                seats,
                Counters::default(),
            ))),
        });
        let (first, rx) = shared.snapshot_and_subscribe();
        let (_open, closed) = watch::channel(false);
        let mut sub = Subscription {
            first,
            rx,
            watch: shared.clone(),
            closed,
            done: false,
            _permit: Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap(),
            _client: None,
        };
        assert!(matches!(sub.next().await, Some(Message::Snapshot(_))));

        // The seat changes, and more deltas come than the subscriber may fall behind.
        lock(&shared.map).as_mut().unwrap().status[0] = b'b';
        for _ in 0..=BACKLOG {
            shared.tx.send(Message::Delta("{}".into())).unwrap();
        }
        let Some(Message::Snapshot(body)) = sub.next().await else {
            panic!("a fresh snapshot after falling behind")
        };
        assert!(body.contains(r#""status":"b""#), "{body}");
        shared.tx.send(Message::Delta("next".into())).unwrap();
        assert!(matches!(sub.next().await, Some(Message::Delta(d)) if &*d == "next"));
    }

    #[test]
    fn one_client_holds_at_most_its_share_of_streams_and_gets_them_back() {
        let counts = Arc::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = ClientSlot::take(&counts, a, 2).unwrap();
        let _second = ClientSlot::take(&counts, a, 2).unwrap();
        assert!(ClientSlot::take(&counts, a, 2).is_none());
        assert!(
            ClientSlot::take(&counts, b, 2).is_some(),
            "others are not affected"
        );
        drop(first);
        assert!(
            ClientSlot::take(&counts, a, 2).is_some(),
            "a closed stream gives its place back"
        );
    }
}

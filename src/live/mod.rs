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
//! - `snapshot`: `{"event_id", "name", "seats": [id...], "status": "aapb…", "counters"}`,
//!   the seats in best-available order and their statuses as one character each
//!   (`a` available, `p` pending, `b` booked); sent first, and again to a subscriber
//!   that fell behind.
//! - `delta`: `{"changes": [[index, "p"], …], "counters"}`, what changed since the
//!   previous message (`changes` may be empty when only the counters moved).
//! - `gone`: the event is no longer on sale; the stream ends.
//!
//! `counters` is `{"seats_total", "available", "pending", "booked", "claims_total",
//! "claims_per_sec", "outbox_length", "reconciler_lag_ms"}` (`claims_total` and
//! `claims_per_sec` are `null` under the mysql strategy, which has no outbox).

pub mod snapshot;
pub mod source;

use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use crate::domain::SeatStatus;
use source::{Counters, Reading, Source};

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

struct MapState {
    event_id: String,
    name: String,
    seats: Vec<String>,
    index: HashMap<String, usize>,
    status: Vec<u8>,
    counters: Counters,
    claims_per_sec: Option<f64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn status_char(s: SeatStatus) -> u8 {
    match s {
        SeatStatus::Available => b'a',
        SeatStatus::Pending => b'p',
        SeatStatus::Booked => b'b',
    }
}

impl LiveHub {
    /// A hub allowing at most `max_streams` subscriptions at once, and at most
    /// `max_per_client` of them from one client address.
    pub fn new(source: Source, max_streams: usize, max_per_client: usize) -> Self {
        Self::with_tick(source, max_streams, max_per_client, TICK)
    }

    pub fn with_tick(
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

impl MapState {
    fn new(event_id: &str, name: String, seats: Vec<(String, SeatStatus)>, c: Counters) -> Self {
        let mut ids = Vec::with_capacity(seats.len());
        let mut status = Vec::with_capacity(seats.len());
        let mut index = HashMap::with_capacity(seats.len());
        for (i, (seat, s)) in seats.into_iter().enumerate() {
            index.insert(seat.clone(), i);
            ids.push(seat);
            status.push(status_char(s));
        }
        Self {
            event_id: event_id.to_owned(),
            name,
            seats: ids,
            index,
            status,
            counters: c,
            claims_per_sec: c.claims_total.map(|_| 0.0),
        }
    }

    fn counters_json(&self) -> serde_json::Value {
        let c = &self.counters;
        json!({
            "seats_total": c.seats_total,
            "available": c.available,
            "pending": c.pending,
            "booked": c.booked,
            "claims_total": c.claims_total,
            "claims_per_sec": self.claims_per_sec.map(|r| (r * 10.0).round() / 10.0),
            "outbox_length": c.outbox_length,
            "reconciler_lag_ms": c.reconciler_lag_ms,
        })
    }

    fn snapshot(&self) -> Message {
        let body = json!({
            "event_id": self.event_id,
            "name": self.name,
            "seats": self.seats,
            // Only ASCII letters: the bytes are valid UTF-8.
            "status": String::from_utf8_lossy(&self.status),
            "counters": self.counters_json(),
        });
        Message::Snapshot(body.to_string().into())
    }

    /// Applies fresh statuses; the changed seats as `(index, status)`.
    fn apply(&mut self, statuses: &HashMap<String, SeatStatus>) -> Vec<(usize, u8)> {
        let mut changes = Vec::new();
        for (seat, s) in statuses {
            if let Some(&i) = self.index.get(seat) {
                let c = status_char(*s);
                if self.status[i] != c {
                    self.status[i] = c;
                    changes.push((i, c));
                }
            }
        }
        changes.sort_unstable();
        changes
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

/// A watcher: reads the event every tick until nobody watches or it is gone.
async fn run(hub: Arc<Hub>, event_id: String, watch: Arc<Watch>) {
    let mut ticks = tokio::time::interval(hub.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = hub.closed.subscribe();
    let mut poller = Poller::default();
    tracing::debug!(event.id = %event_id, "live map watcher started");
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = closed.wait_for(|closed| *closed) => break,
        }
        if hub.retire(&event_id, &watch, false) {
            break;
        }
        match poller.poll(&hub.source, &event_id, &watch).await {
            Ok(true) => poller.failing = false,
            Ok(false) => {
                let _ = watch.tx.send(Message::Gone);
                hub.retire(&event_id, &watch, true);
                break;
            }
            Err(err) => {
                // Once per outage, not once per tick; the map resumes by itself.
                if !poller.failing {
                    tracing::warn!(event.id = %event_id, error = %format!("{err:#}"),
                        "live map cannot read the event; retrying");
                }
                poller.failing = true;
            }
        }
    }
    tracing::debug!(event.id = %event_id, "live map watcher stopped");
}

#[derive(Default)]
struct Poller {
    ticks_since_scan: u32,
    /// `(when, claims_total)` samples over the last `RATE_WINDOW`.
    samples: VecDeque<(Instant, u64)>,
    failing: bool,
}

impl Poller {
    /// One tick; false when the event is no longer on sale.
    async fn poll(
        &mut self,
        source: &Source,
        event_id: &str,
        watch: &Watch,
    ) -> anyhow::Result<bool> {
        // Counters first, seats second: any change after this read shows in the next
        // tick's counters, so a change the seat scan misses is caught up then.
        let Some(Reading { name, counters }) = source.read(event_id).await? else {
            return Ok(false);
        };
        let rate = self.rate(counters.claims_total);
        let previous = lock(&watch.map).as_ref().map(|m| m.counters);
        let Some(previous) = previous else {
            let seats = source.seats(event_id).await?;
            let map = MapState::new(event_id, name, seats, counters);
            let mut slot = lock(&watch.map);
            let _ = watch.tx.send(map.snapshot());
            *slot = Some(map);
            return Ok(true);
        };
        self.ticks_since_scan += 1;
        let moved = (
            previous.available,
            previous.pending,
            previous.booked,
            previous.claims_total,
        ) != (
            counters.available,
            counters.pending,
            counters.booked,
            counters.claims_total,
        );
        let statuses = if moved || self.ticks_since_scan >= RESYNC_TICKS {
            self.ticks_since_scan = 0;
            Some(source.statuses(event_id).await?)
        } else {
            None
        };
        let mut slot = lock(&watch.map);
        let Some(map) = slot.as_mut() else {
            return Ok(true);
        };
        let changes = statuses.map(|s| map.apply(&s)).unwrap_or_default();
        if changes.is_empty() && map.counters == counters && map.claims_per_sec == rate {
            return Ok(true);
        }
        map.counters = counters;
        map.claims_per_sec = rate;
        let changes: Vec<serde_json::Value> = changes
            .into_iter()
            .map(|(i, c)| json!([i, (c as char).to_string()]))
            .collect();
        let body = json!({ "changes": changes, "counters": map.counters_json() });
        let _ = watch.tx.send(Message::Delta(body.to_string().into()));
        Ok(true)
    }

    /// Claims per second over the last `RATE_WINDOW`.
    fn rate(&mut self, total: Option<u64>) -> Option<f64> {
        let total = total?;
        let now = Instant::now();
        self.samples.push_back((now, total));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let &(since, first) = self.samples.front()?;
        let secs = now.duration_since(since).as_secs_f64();
        if secs <= 0.0 {
            return Some(0.0);
        }
        Some(total.saturating_sub(first) as f64 / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applying_statuses_reports_only_what_changed_in_seat_order() {
        let c = Counters::default();
        let seats = vec![
            ("A1".to_owned(), SeatStatus::Available),
            ("A2".to_owned(), SeatStatus::Available),
            ("A3".to_owned(), SeatStatus::Booked),
        ];
        let mut map = MapState::new("e", "E".into(), seats, c);
        let fresh: HashMap<String, SeatStatus> = [
            ("A3".to_owned(), SeatStatus::Booked),
            ("A2".to_owned(), SeatStatus::Pending),
            ("A1".to_owned(), SeatStatus::Pending),
            ("ZZ".to_owned(), SeatStatus::Pending), // not in the map: ignored
        ]
        .into();
        assert_eq!(map.apply(&fresh), vec![(0, b'p'), (1, b'p')]);
        assert_eq!(map.status, b"ppb");
        assert!(
            map.apply(&fresh).is_empty(),
            "nothing changed the second time"
        );
    }

    #[test]
    fn the_snapshot_lists_seats_in_order_with_one_status_character_each() {
        let seats = vec![
            ("B1".to_owned(), SeatStatus::Pending),
            ("A1".to_owned(), SeatStatus::Available),
        ];
        let map = MapState::new("e", "E".into(), seats, Counters::default());
        let Message::Snapshot(body) = map.snapshot() else {
            panic!("a snapshot")
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["seats"], json!(["B1", "A1"]));
        assert_eq!(v["status"], "pa");
        assert_eq!(v["counters"]["claims_total"], serde_json::Value::Null);
    }

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

    #[test]
    fn the_claim_rate_is_measured_over_the_window() {
        let mut p = Poller::default();
        assert_eq!(p.rate(None), None);
        assert_eq!(p.rate(Some(10)), Some(0.0));
        let start = p.samples[0].0;
        p.samples[0].0 = start - Duration::from_millis(500);
        let r = p.rate(Some(60)).unwrap();
        assert!((90.0..=100.0).contains(&r), "50 claims in ~0.5 s: {r}");
    }
}

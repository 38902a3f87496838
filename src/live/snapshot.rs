//! Public seat map reads (`GET /v1/events/{id}/seats`) from one shared snapshot per
//! event.
//!
//! The seat map is public and unauthenticated, and reading it costs Redis O(seats)
//! (`HGETALL` plus the order list): on a 100,000-seat event a few milliseconds of
//! Redis's one thread, during which no claim runs. Read per request, a crowd
//! refreshing the map would stall the drop. So each gateway keeps the map of each
//! event as one serialised JSON body, read from the store at most once per
//! [`SNAPSHOT_MAX_AGE`]: however many readers there are, Redis pays one read per
//! interval per event. Concurrent readers of a stale snapshot wait for the one refresh
//! in flight instead of each starting their own. Each body carries an `ETag` (so
//! clients and CDNs can revalidate with `If-None-Match`) and is served with a short
//! `Cache-Control` max-age, so a CDN in front absorbs most readers altogether.

use axum::body::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

use super::source::Source;
use crate::domain::SeatStatus;

/// The oldest a served seat map may be (the live map's tick: the map a reader gets is
/// never older than what the live page shows).
pub(crate) const SNAPSHOT_MAX_AGE: Duration = super::TICK;

/// One event's seat map as served.
#[derive(Debug, Clone)]
pub(crate) struct SeatMapSnapshot {
    /// `{"event_id", "seats": [{"id", "status"}]}`, serialised once for all readers.
    pub body: Bytes,
    /// A strong validator of `body` (quoted, as the header carries it).
    pub etag: Arc<str>,
    taken: Instant,
}

/// An event's seat map, in best-available order: the body served.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeatMap {
    pub event_id: String,
    pub seats: Vec<SeatView>,
}

/// One seat and its status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeatView {
    pub id: String,
    /// `available`, `pending` or `booked` (the mysql claim strategy has no `pending`).
    pub status: SeatStatus,
}

impl SeatMapSnapshot {
    fn new(event_id: &str, seats: Vec<(String, SeatStatus)>, taken: Instant) -> Self {
        let map = SeatMap {
            event_id: event_id.to_owned(),
            seats: seats
                .into_iter()
                .map(|(id, status)| SeatView { id, status })
                .collect(),
        };
        let body = serde_json::to_vec(&map).expect("a seat map serialises");
        let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
        Self {
            body: body.into(),
            etag: etag.into(),
            taken,
        }
    }

    /// Fresh enough for a reader that arrived at `arrived`: younger than `max_age`, or
    /// read from the store after the reader arrived (as good as a read of its own, so
    /// readers that queued behind one refresh share it even when `max_age` is 0).
    fn is_fresh(&self, arrived: Instant, now: Instant, max_age: Duration) -> bool {
        self.taken >= arrived || now.duration_since(self.taken) < max_age
    }
}

/// The seat map snapshots of one gateway. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SeatMaps {
    source: Source,
    max_age: Duration,
    /// Per event: the latest snapshot, behind an async lock that one refresh at a
    /// time holds (readers of a fresh snapshot only take it briefly).
    events: Arc<Mutex<HashMap<String, Slot>>>,
}

/// One event's latest snapshot; its lock is held by the one refresh in flight.
type Slot = Arc<tokio::sync::Mutex<Option<SeatMapSnapshot>>>;

impl SeatMaps {
    /// Snapshots refreshed at most every `max_age` (0: every reader gets a map read
    /// after it arrived; readers that arrive during one read share the next).
    pub(crate) fn with_max_age(source: Source, max_age: Duration) -> Self {
        Self {
            source,
            max_age,
            events: Arc::default(),
        }
    }

    /// The event's seat map, at most `max_age` old. The caller has checked that the
    /// event is on sale (so the map holds only events on sale, a handful).
    pub async fn get(&self, event_id: &str) -> anyhow::Result<SeatMapSnapshot> {
        let arrived = Instant::now();
        let slot = self
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(event_id.to_owned())
            .or_default()
            .clone();
        // Whoever holds the lock is refreshing; waiting for it is waiting for the one
        // read this interval makes.
        let mut current = slot.lock().await;
        let now = Instant::now();
        let fresh = |s: &&SeatMapSnapshot| s.is_fresh(arrived, now, self.max_age);
        if let Some(snapshot) = current.as_ref().filter(fresh) {
            return Ok(snapshot.clone());
        }
        // Stamped with the read's start: a change made during the read may be missing.
        let started = Instant::now();
        let seats = self.source.seats(event_id).await?;
        let snapshot = SeatMapSnapshot::new(event_id, seats, started);
        *current = Some(snapshot.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_changes_exactly_when_the_map_does() {
        let t = Instant::now();
        let seats = |s: SeatStatus| vec![("A1".to_owned(), s), ("A2".to_owned(), s)];
        let a = SeatMapSnapshot::new("e", seats(SeatStatus::Available), t);
        let b = SeatMapSnapshot::new("e", seats(SeatStatus::Available), t);
        let c = SeatMapSnapshot::new("e", seats(SeatStatus::Pending), t);
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event_id": "e", "seats": [
                {"id": "A1", "status": "available"}, {"id": "A2", "status": "available"}
            ]})
        );
    }

    #[test]
    fn a_snapshot_serves_its_max_age_and_the_readers_that_waited_for_it() {
        let t = Instant::now();
        let s = SeatMapSnapshot::new("e", Vec::new(), t);
        let max = Duration::from_millis(200);
        // A reader that arrived after the read started: the max age decides.
        let after = t + Duration::from_millis(1);
        assert!(s.is_fresh(after, t + Duration::from_millis(199), max));
        assert!(!s.is_fresh(after, t + Duration::from_millis(200), max));
        assert!(!s.is_fresh(after, t + Duration::from_millis(1), Duration::ZERO));
        // One that arrived before it started takes it, even with no max age.
        let before = t - Duration::from_millis(1);
        assert!(s.is_fresh(before, t + Duration::from_secs(1), Duration::ZERO));
    }
}

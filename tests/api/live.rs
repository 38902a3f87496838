//! The live seat map: `GET /v1/events/{id}/stream` starts with a snapshot, then sends
//! what changes in batched deltas, to every subscriber alike; its watcher stops when
//! nobody watches; open streams do not hold up a graceful shutdown; the page is served.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use eventsource_stream::{EventStreamError, Eventsource};
use futures::stream::{BoxStream, StreamExt};

use crate::helpers::*;

/// The events of a seat map stream, read by the same Server-Sent Events parser as the
/// load generator's watchers.
struct SseStream {
    events: BoxStream<'static, Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>,
}

impl SseStream {
    async fn open(app: &TestApp, event: &str) -> Self {
        // No overall timeout: the body never ends by itself.
        let client = reqwest::Client::new();
        let response = client
            .get(app.url(&format!("/v1/events/{event}/stream")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let chunks = futures::stream::unfold(response, |mut response| async move {
            let chunk = response.chunk().await.transpose()?;
            Some((chunk, response))
        });
        Self {
            events: chunks.eventsource().boxed(),
        }
    }

    /// The next event as `(name, data)`; `None` when the stream ended. Panics when
    /// nothing comes for 10 s. Keep-alive comments are no events.
    async fn next(&mut self) -> Option<(String, Value)> {
        let event = tokio::time::timeout(Duration::from_secs(10), self.events.next())
            .await
            .expect("the stream sends something within 10 s")?
            .ok()?;
        Some((event.event, serde_json::from_str(&event.data).unwrap()))
    }
}

/// A subscriber's picture of the map, built from the messages as the page builds it.
struct Map {
    seats: Vec<String>,
    status: Vec<u8>,
    counters: Value,
    deltas: usize,
    /// The most seat changes one delta carried.
    max_changes: usize,
}

impl Map {
    /// Subscribes to the event's stream and reads its snapshot.
    async fn subscribe(app: &TestApp, event: &str) -> (SseStream, Self) {
        let mut stream = SseStream::open(app, event).await;
        let map = Self::from_snapshot(&mut stream).await;
        (stream, map)
    }

    async fn from_snapshot(stream: &mut SseStream) -> Self {
        let (name, snapshot) = stream.next().await.expect("a snapshot");
        assert_eq!(name, "snapshot", "{snapshot}");
        Self {
            seats: serde_json::from_value(snapshot["seats"].clone()).unwrap(),
            status: snapshot["status"].as_str().unwrap().as_bytes().to_vec(),
            counters: snapshot["counters"].clone(),
            deltas: 0,
            max_changes: 0,
        }
    }

    fn apply(&mut self, name: &str, data: &Value) {
        assert_eq!(name, "delta", "{data}");
        let changes = data["changes"].as_array().unwrap();
        self.max_changes = self.max_changes.max(changes.len());
        for change in changes {
            let i = change[0].as_u64().unwrap() as usize;
            self.status[i] = change[1].as_str().unwrap().as_bytes()[0];
        }
        self.counters = data["counters"].clone();
        self.deltas += 1;
    }

    /// Applies messages until `done` holds (panics after 20 s).
    async fn until(&mut self, stream: &mut SseStream, what: &str, done: impl Fn(&Map) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(Instant::now() < deadline, "never saw: {what}");
            let (name, data) = stream.next().await.expect("the stream goes on");
            self.apply(&name, &data);
        }
    }

    fn status_of(&self, seat: &str) -> u8 {
        let i = self.seats.iter().position(|s| s == seat).unwrap();
        self.status[i]
    }

    fn count(&self, c: u8) -> usize {
        self.status.iter().filter(|&&s| s == c).count()
    }
}

#[tokio::test]
async fn the_stream_starts_with_a_snapshot_and_sends_claims_and_cancels_as_deltas() {
    let (app, event) = spawn_stepped_app_with_event(12).await;
    let seats = seat_names(12);
    let (mut stream, mut map) = Map::subscribe(&app, &event).await;
    assert_eq!(map.seats, seats, "seats in best-available order");
    assert_eq!(map.status, b"aaaaaaaaaaaa");
    assert_eq!(map.counters["available"], 12);
    assert_eq!(map.counters["claims_total"], 0);

    let booking = app
        .claim_ok(&event, "alice", &json!({"seats": [seats[3], seats[4]]}))
        .await;
    map.until(&mut stream, "two pending seats and their counters", |m| {
        m.count(b'p') == 2 && m.counters["pending"] == 2 && m.counters["claims_total"] == 1
    })
    .await;
    assert_eq!(map.status_of(&seats[3]), b'p');
    assert_eq!(map.status_of(&seats[4]), b'p');
    assert_eq!(map.counters["available"], 10);
    // The reconciler is off: the claim (one claim, two seats) waits in the outbox.
    assert_eq!(map.counters["outbox_length"], 1);

    let r = app.cancel(&event, &booking, &app.admin()).await;
    assert_eq!(r.status(), StatusCode::OK);
    map.until(&mut stream, "the cancelled seats free again", |m| {
        m.count(b'a') == 12 && m.counters["pending"] == 0 && m.counters["available"] == 12
    })
    .await;
}

#[tokio::test]
async fn claims_turn_booked_and_the_outbox_drains_once_the_reconciler_persists_them() {
    let (app, event) = spawn_app_with_event(6).await;
    let (mut stream, mut map) = Map::subscribe(&app, &event).await;
    app.claim_ok(&event, "bob", &json!({"quantity": 3})).await;
    map.until(&mut stream, "three booked seats, nothing pending", |m| {
        m.count(b'b') == 3
            && m.counters["booked"] == 3
            && m.counters["pending"] == 0
            && m.counters["outbox_length"] == 0
            && m.counters["reconciler_lag_ms"] == 0
    })
    .await;
    // Best available: the three lowest ordinals.
    assert_eq!(&map.status, b"bbbaaa");
}

#[tokio::test]
async fn persisted_claims_of_an_event_with_holds_show_held_until_cancelled() {
    let app = spawn_app().await;
    let event = app.event_id();
    let r = app
        .create_event(
            &json!({"id": event, "name": "Held", "seats": seat_names(4), "hold_seconds": 600}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.warm(&event).await.status(), StatusCode::OK);
    let (mut stream, mut map) = Map::subscribe(&app, &event).await;
    assert_eq!(map.counters["held"], 0);

    let booking = app.claim_ok(&event, "dana", &json!({"quantity": 2})).await;
    map.until(&mut stream, "two held seats and their counter", |m| {
        m.count(b'h') == 2
            && m.counters["held"] == 2
            && m.counters["pending"] == 0
            && m.counters["outbox_length"] == 0
    })
    .await;
    // Held, not booked: the checkout has not happened.
    assert_eq!(&map.status, b"hhaa");
    assert_eq!(map.counters["booked"], 0);
    assert_eq!(map.counters["available"], 2);

    let r = app.cancel(&event, &booking, &app.admin()).await;
    assert_eq!(r.status(), StatusCode::OK);
    map.until(&mut stream, "the held seats free again", |m| {
        m.count(b'a') == 4 && m.counters["held"] == 0 && m.counters["available"] == 4
    })
    .await;
}

#[tokio::test]
async fn a_drop_reaches_every_subscriber_in_batches_not_one_message_per_claim() {
    let (app, event) = spawn_app_with_event(300).await;
    let seats = seat_names(300);
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(SseStream::open(&app, &event).await);
    }
    let mut maps = Vec::new();
    for s in &mut streams {
        maps.push(Map::from_snapshot(s).await);
    }

    let started = Instant::now();
    // 600 racing claims for 300 seats: two users per seat.
    let claims = (0..600).map(|i| {
        let app = &app;
        let event = &event;
        let seat = &seats[i % 300];
        async move {
            app.claim_retrying(event, &format!("u{i}"), &json!({ "seats": [seat] }))
                .await
                .status()
        }
    });
    let statuses = join_all(claims).await;
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(won, 300, "exactly one claim per seat wins");

    for (map, stream) in maps.iter_mut().zip(&mut streams) {
        map.until(stream, "every seat booked", |m| {
            m.count(b'b') == 300 && m.counters["booked"] == 300 && m.counters["pending"] == 0
        })
        .await;
    }
    let elapsed = started.elapsed();
    // One message per tick at most (200 ms), whatever the claim rate.
    let ticks = (elapsed.as_millis() / seatgate::live::TICK.as_millis()) as usize + 2;
    for map in &maps {
        assert!(
            map.deltas <= ticks,
            "{} deltas in {elapsed:?}: more than one per tick",
            map.deltas
        );
        assert!(map.deltas < 300, "batched, not one message per claim");
        assert_eq!(map.counters["claims_total"], 300);
    }
}

#[tokio::test]
async fn an_unknown_or_unwarmed_event_has_no_stream() {
    let app = spawn_app().await;
    for path in ["/v1/events/nope/stream", "/v1/events/bad%20id!/stream"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "event_not_found");
    }
    let id = app.event_id();
    let r = app
        .create_event(&json!({"id": id, "name": "Cold", "seats": ["A1"]}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.get(&format!("/v1/events/{id}/stream")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not warmed, not on sale");
}

#[tokio::test]
async fn one_watcher_serves_all_subscribers_and_stops_with_the_last() {
    let (app, event) = spawn_app_with_event(4).await;
    let (a, _) = Map::subscribe(&app, &event).await;
    let (b, _) = Map::subscribe(&app, &event).await;
    assert_eq!(app.live.watched(), vec![(event.clone(), 2)]);
    drop(a);
    drop(b);
    eventually("the watcher stops", Duration::from_secs(30), || async {
        app.live.watched().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn open_streams_do_not_hold_up_a_graceful_shutdown() {
    let mut app = spawn_app().await;
    let event = app.event_with(&seat_names(4), 4).await;
    let (mut stream, _) = Map::subscribe(&app, &event).await;
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the gateway stops although a stream is open");
    assert!(stream.next().await.is_none(), "the stream ended");
}

#[tokio::test]
async fn the_page_and_its_assets_are_served() {
    let app = spawn_app().await;
    for (path, content_type, needle) in [
        ("/live/wc-2026", "text/html", "/live/assets/live.js"),
        ("/live/assets/live.js", "text/javascript", "EventSource"),
        ("/live/assets/live.css", "text/css", ".seat.pending"),
    ] {
        let r = app.get_ok(path, content_type).await;
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    let r = app.get("/live/not%20an%20id").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_10000_seat_event_streams_its_whole_map_and_small_deltas() {
    let (app, event) = spawn_app_with_event(10_000).await;
    let (mut stream, mut map) = Map::subscribe(&app, &event).await;
    assert_eq!(map.seats.len(), 10_000);
    assert_eq!(map.count(b'a'), 10_000);
    app.claim_ok(&event, "carol", &json!({"quantity": 4})).await;
    map.until(&mut stream, "the four best seats booked", |m| {
        m.count(b'b') == 4 && m.counters["booked"] == 4
    })
    .await;
    assert_eq!(&map.status[..5], b"bbbba", "the four lowest ordinals");
    assert!(
        map.max_changes <= 4,
        "deltas carry the changed seats, not the map"
    );
}

/// Opens two streams on a gateway that allows two (in all, or per client), checks a
/// third is shed with Retry-After, runs `also` with the two still open, then checks a
/// closed stream gives its place back.
async fn two_streams_then_shed<F, Fut>(app: &TestApp, also: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let event = app.event_with(&seat_names(4), 4).await;
    let (a, _) = Map::subscribe(app, &event).await;
    let (_b, _) = Map::subscribe(app, &event).await;
    let url = app.url(&format!("/v1/events/{event}/stream"));
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "overloaded");
    also(url.clone()).await;
    // A stream that closes gives its place back.
    drop(a);
    eventually("a place frees up", Duration::from_secs(30), || async {
        let r = reqwest::Client::new().get(&url).send().await.unwrap();
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test]
async fn streams_beyond_the_limit_are_shed_with_retry_after() {
    let app = spawn_app_with(|s| s.max_live_streams = 2).await;
    two_streams_then_shed(&app, |_| async {}).await;
}

#[tokio::test]
async fn one_client_address_cannot_take_every_stream() {
    let app = spawn_app_with(|s| s.max_live_streams_per_client = 2).await;
    two_streams_then_shed(&app, |url| async move {
        // Another address (any 127.x.x.x is this machine) still gets its streams.
        let other = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap();
        let r = other.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

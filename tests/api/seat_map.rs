//! The public seat map: one store read per event per interval however many people
//! read it, and validators (`ETag`, 304) so that clients and CDNs can skip the body.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// `calls` of one command in the private Redis's `INFO commandstats`.
async fn command_calls(url: &str, command: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_reading_the_seat_map_costs_redis_one_read_per_interval() {
    // A private Redis: its command counts are this test's alone.
    let redis = private_redis().await.expect("redis-server is installed");
    let app = spawn_app_with(|s| {
        s.redis_url = redis.url();
        s.seat_map_max_age = Duration::from_millis(200);
    })
    .await;
    let event = app.event_with(&seat_names(2000), 4).await;
    let url = app.url(&format!("/v1/events/{event}/seats"));
    let before = command_calls(&redis.url(), "hgetall").await;
    let started = Instant::now();
    let answers = join_all((0..300).map(|_| app.client.get(&url).send())).await;
    let elapsed = started.elapsed();
    for r in answers {
        let r = r.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.json::<Value>().await.unwrap()["seats"]
                .as_array()
                .unwrap()
                .len(),
            2000
        );
    }
    let reads = command_calls(&redis.url(), "hgetall").await - before;
    // At most one read per started interval (plus the first).
    let bound = elapsed.as_millis() as u64 / 200 + 2;
    assert!(
        reads <= bound,
        "300 readers over {elapsed:?} made {reads} full reads of the map (bound {bound})"
    );
}

#[tokio::test]
async fn the_seat_map_carries_an_etag_and_answers_304_until_it_changes() {
    let (app, event) = spawn_app_with_event(4).await;
    let url = app.url(&format!("/v1/events/{event}/seats"));
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "public, max-age=1");
    assert_eq!(r.headers()["content-type"], "application/json");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();

    let revalidate = || app.client.get(&url).header("If-None-Match", &etag).send();
    let r = revalidate().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().await.unwrap().is_empty());

    app.claim_seats(&event, "alice", &["S0001"]).await;
    let r = revalidate().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"], etag.as_str());
    let map: Value = r.json().await.unwrap();
    assert_eq!(map["seats"][0], json!({"id": "S0001", "status": "pending"}));
}

#[tokio::test]
async fn a_persisted_claim_on_an_event_with_holds_shows_its_seats_held() {
    let app = spawn_app().await;
    let event = app.event_id();
    let r = app
        .create_event(
            &json!({"id": event, "name": "Held", "seats": seat_names(3), "hold_seconds": 600}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.warm(&event).await.status(), StatusCode::OK);
    app.claim_seats(&event, "alice", &["S0002"]).await;
    // Pending until the reconciler persists it, then held for its checkout.
    eventually("the seat held", Duration::from_secs(30), || async {
        (app.seat_status(&event, "S0002").await == "held").then_some(())
    })
    .await;
    assert_eq!(
        app.seat_statuses(&event).await,
        listed(&seat_names(3), &["available", "held", "available"])
    );
    let counters = app.event_json(&event).await;
    assert_eq!(counters["held"], 1, "{counters}");
    assert_eq!(counters["booked"], 0, "{counters}");
}

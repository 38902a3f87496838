//! The per-user claim rate (`SEATGATE_USER_RATE`, `SEATGATE_USER_BURST`), enforced by
//! `claim.lua` on the event's slot: one limit whatever the number of gateways, counting
//! only claims that reach a decision (not 400s, not unknown events, not replays), and
//! writing nothing when it refuses.
//!
//! The rates here are tiny (one claim per 100 or 1000 s) so that nothing refills while a
//! test runs on a loaded machine: every count below is exact, not a timing guess.

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

use crate::helpers::*;

/// A gateway whose users may claim `burst` times, then once per `1 / rate` seconds.
async fn limited_app(rate: f64, burst: u32) -> TestApp {
    spawn_app_with(|s| {
        s.user_rate = rate;
        s.user_burst = burst;
    })
    .await
}

#[tokio::test]
async fn one_user_alternating_between_two_gateways_gets_the_burst_once_not_twice() {
    // On a per-process limiter each gateway admits its own burst: 2 x 5 here.
    let app = limited_app(0.01, 5).await;
    let peer = app.spawn_peer().await;
    let event = app.event_with(&seat_names(40), 100).await;
    let mut admitted = 0;
    let mut refused = Vec::new();
    for i in 0..20 {
        let base = if i % 2 == 0 { &app.base } else { &peer.base };
        let r = app.claim_at(base, &event, "alice", &best_of(1), None).await;
        match r.status() {
            StatusCode::ACCEPTED => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let wait: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let body = expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
                assert!(body["message"].is_string(), "{body}");
                refused.push(wait);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 5, "the burst, across both gateways");
    assert_eq!(refused.len(), 15);
    // Burst 5 at one claim per 100 s: the sixth claim is due 100 s after the first.
    assert!(
        refused.iter().all(|&w| (95..=100).contains(&w)),
        "{refused:?}"
    );
    // Another user, and the same user in another event, have budgets of their own.
    let r = app
        .claim_at(&peer.base, &event, "bob", &best_of(1), None)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let other = app.event_with(&seat_names(4), 4).await;
    let r = app.claim(&other, "alice", &best_of(1), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let summary = app.event_json(&event).await;
    assert_eq!(
        summary["pending"].as_u64().unwrap() + summary["booked"].as_u64().unwrap(),
        6
    );
}

#[tokio::test]
async fn requests_refused_before_a_decision_do_not_spend_the_budget() {
    let app = limited_app(0.001, 2).await;
    let event = app.event_with(&seat_names(10), 10).await;
    // An event that exists but is not on sale answers 404 like an unknown one.
    let unwarmed = app.event_id();
    let r = app
        .create_event(&json!({"id": unwarmed, "name": "Later", "seats": ["A1"]}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let bookings = format!("/v1/events/{event}/bookings");
    for i in 0..50 {
        let r = match i % 5 {
            0 => app
                .client
                .post(app.url(&bookings))
                .bearer_auth(app.user_token("dev"))
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap(),
            1 => {
                let both = json!({"seats": ["S0001"], "quantity": 1});
                app.claim(&event, "dev", &both, None).await
            }
            2 => {
                let too_long = "k".repeat(256);
                app.claim(&event, "dev", &best_of(1), Some(&too_long)).await
            }
            3 => app.claim("no-such-event", "dev", &best_of(1), None).await,
            _ => app.claim(&unwarmed, "dev", &best_of(1), None).await,
        };
        let want = if i % 5 >= 3 {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(r.status(), want, "request {i}: {}", r.text().await.unwrap());
    }
    // The whole burst is still there, and then the limit holds (so it was on).
    for _ in 0..2 {
        let r = app.claim(&event, "dev", &best_of(1), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let r = app.claim(&event, "dev", &best_of(1), None).await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn claims_decided_against_the_user_count_like_any_claim() {
    // A user hammering taken seats is what the limit is for: 409 and 422 count.
    let app = limited_app(0.001, 3).await;
    let event = app.event_with(&seat_names(4), 4).await;
    app.claim_seats(&event, "first", &["S0001"]).await;
    let r = app.claim(&event, "hammer", &pick(&["S0001"]), None).await;
    expect_error(r, StatusCode::CONFLICT, "seats_unavailable").await;
    let r = app.claim(&event, "hammer", &pick(&["Z9"]), None).await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_seats").await;
    let r = app.claim(&event, "hammer", &best_of(1), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.claim(&event, "hammer", &best_of(1), None).await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn a_replay_is_neither_counted_nor_refused_and_a_refusal_records_nothing() {
    let app = limited_app(0.001, 2).await;
    let event = app.event_with(&seat_names(10), 10).await;
    let first = app.claim(&event, "carol", &best_of(1), Some("k1")).await;
    let first = expect_json(first, StatusCode::ACCEPTED).await;
    for _ in 0..10 {
        let r = app.claim(&event, "carol", &best_of(1), Some("k1")).await;
        let again = expect_json(r, StatusCode::ACCEPTED).await;
        assert_eq!(again["booking_id"], first["booking_id"]);
    }
    // The replays spent nothing: the second claim of the burst is still there.
    let r = app.claim(&event, "carol", &best_of(1), Some("k2")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let keys = app.redis.keys(&event);
    let mut conn = app.redis.connection();
    let before: Option<String> = conn.get(keys.rate("carol")).await.unwrap();
    let before = before.expect("the rate state is kept while the user is ahead");
    let ttl_ms: i64 = conn.pttl(keys.rate("carol")).await.unwrap();
    // It expires once the whole burst is back: at most burst x 1000 s from now.
    assert!(ttl_ms > 0 && ttl_ms <= 2_000_000, "{ttl_ms}");

    let r = app.claim(&event, "carol", &best_of(1), Some("k3")).await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The refusal wrote nothing: no idempotency record, the rate state as it was.
    let recorded: bool = conn.exists(keys.idempotency("carol", "k3")).await.unwrap();
    assert!(!recorded, "a 429 is not recorded under its key");
    let after: Option<String> = conn.get(keys.rate("carol")).await.unwrap();
    assert_eq!(after.as_deref(), Some(before.as_str()));
    // Over the limit, a replay is still answered as the first time.
    let r = app.claim(&event, "carol", &best_of(1), Some("k1")).await;
    let again = expect_json(r, StatusCode::ACCEPTED).await;
    assert_eq!(again["booking_id"], first["booking_id"]);
}

#[tokio::test]
async fn a_refused_claim_goes_through_with_the_same_key_once_the_wait_is_over() {
    // One claim per 2 s, no burst: the second claim right after the first is refused
    // (unless two requests in a row took 2 s, which would show as a 202 below).
    let app = limited_app(0.5, 1).await;
    let event = app.event_with(&seat_names(10), 10).await;
    let r = app.claim(&event, "dave", &best_of(1), Some("a")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.claim(&event, "dave", &best_of(1), Some("b")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = app.claim(&event, "dave", &best_of(1), Some("b")).await;
    let done = expect_json(r, StatusCode::ACCEPTED).await;
    let r = app.claim(&event, "dave", &best_of(1), Some("b")).await;
    let replay = expect_json(r, StatusCode::ACCEPTED).await;
    assert_eq!(replay["booking_id"], done["booking_id"]);
}

#[tokio::test]
async fn racing_claims_of_one_user_over_two_gateways_admit_exactly_the_burst() {
    let app = limited_app(0.001, 10).await;
    let peer = app.spawn_peer().await;
    let event = app.event_with(&seat_names(300), 100).await;
    let bases = [app.base.clone(), peer.base.clone()];
    let app = &app;
    let answers: Vec<StatusCode> = futures::future::join_all((0..200).map(|i| {
        let base = bases[i % 2].clone();
        let event = event.clone();
        async move {
            // With a key, so that a 503 (a Redis call past its bound on a loaded
            // machine) can be retried without counting twice.
            let key = format!("race-{i}");
            loop {
                let r = app
                    .claim_at(&base, &event, "racer", &best_of(1), Some(&key))
                    .await;
                if r.status() != StatusCode::SERVICE_UNAVAILABLE {
                    return r.status();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }))
    .await;
    let admitted = answers
        .iter()
        .filter(|&&s| s == StatusCode::ACCEPTED)
        .count();
    let refused = answers
        .iter()
        .filter(|&&s| s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((admitted, refused), (10, 190), "{answers:?}");
    let summary: Value = app.event_json(&event).await;
    assert_eq!(summary["available"], 290);
}

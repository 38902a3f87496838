//! Operations endpoints and load shedding.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn healthz_and_readyz_answer_while_redis_and_mysql_are_up() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get("/readyz").await;
    let body = expect_json(r, StatusCode::OK).await;
    assert_eq!(body["redis"], "up");
    assert_eq!(body["mysql"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_beyond_the_in_flight_bound_are_shed_with_retry_after() {
    // One claim in flight at a time: a burst must see some shed at once, and the
    // rest answered normally.
    let app = spawn_app_with(|s| s.max_inflight_claims = 1).await;
    let event = app.event_with(&seat_names(400), 100).await;
    let answers = join_all((0..300).map(|i| {
        let app = &app;
        let event = &event;
        async move {
            app.claim(event, &format!("u{}", i % 3), &best_of(1), None)
                .await
        }
    }))
    .await;
    let mut shed = 0;
    let mut won = 0;
    for r in answers {
        match r.status() {
            StatusCode::ACCEPTED => won += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.headers()["retry-after"], "1");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"], "overloaded");
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(shed > 0, "nothing was shed");
    assert!(won > 0, "nothing got through");
    let summary = app.settled(&event).await;
    assert_eq!(summary["booked"], won);
}

#[tokio::test]
async fn a_user_claiming_too_fast_gets_429_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.user_rate = 0.5;
        s.user_burst = 3;
    })
    .await;
    let event = app.event_with(&seat_names(20), 100).await;
    for _ in 0..3 {
        let r = app.claim(&event, "eager", &best_of(1), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let r = app.claim(&event, "eager", &best_of(1), Some("k")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "rate_limited");
    // Others are not held back, and a 429 does not use up the idempotency key.
    let r = app.claim(&event, "calm", &best_of(1), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.claim(&event, "calm", &best_of(2), Some("k")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.event_json(&event).await["pending"].as_u64().unwrap()
            + app.event_json(&event).await["booked"].as_u64().unwrap(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_takes_too_long_is_answered_503() {
    let app = spawn_app_with(|s| s.request_timeout = std::time::Duration::from_millis(500)).await;
    let event = app.event_with(&seat_names(3), 4).await;
    // Audit share-locks the seats; a writer holding them makes it wait.
    let blocker = app.lock_seats(&event).await;
    let path = format!("/v1/admin/events/{event}/audit");
    let r = app.call(Method::GET, &path, &app.admin(), None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unavailable");
    blocker.rollback().await.unwrap();
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let r = app.get("/healthz").await;
    assert_ne!(r.headers()["x-request-id"].to_str().unwrap(), id);
    // A caller's own id is kept, also on errors.
    let r = app
        .client
        .get(app.url("/v1/events/nope"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
}

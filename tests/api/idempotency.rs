//! Idempotency-Key: scoped to the user and the event, same body → same answer.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;

use crate::helpers::*;

#[tokio::test]
async fn the_same_key_and_body_get_the_first_answer_again() {
    let (app, event) = spawn_app_with_event(5).await;
    let body = json!({ "seats": ["S0001", "S0002"] });

    let first = app.claim(&event, "alice", &body, Some("key-1")).await;
    let first = expect_json(first, StatusCode::ACCEPTED).await;

    // Key order and whitespace do not make another request.
    let again = app
        .client
        .post(app.url(&format!("/v1/events/{event}/bookings")))
        .bearer_auth(app.user_token("alice"))
        .header("Idempotency-Key", "key-1")
        .body("{ \"seats\" : [ \"S0001\", \"S0002\" ] }")
        .send()
        .await
        .unwrap();
    let again = expect_json(again, StatusCode::ACCEPTED).await;
    assert_eq!(again["booking_id"], first["booking_id"]);

    // After confirmation the replay keeps 202 and the id, and shows the status now.
    app.settled(&event).await;
    let later = app.claim(&event, "alice", &body, Some("key-1")).await;
    let later = expect_json(later, StatusCode::ACCEPTED).await;
    assert_eq!(later["booking_id"], first["booking_id"]);
    assert_eq!(later["status"], "confirmed");
    assert_eq!(app.mysql_confirmed(&event).await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let (app, event) = spawn_app_with_event(5).await;
    let r = app
        .claim(&event, "alice", &pick(&["S0001"]), Some("k"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let r = app
        .claim(&event, "alice", &pick(&["S0002"]), Some("k"))
        .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(app.seat_status(&event, "S0002").await, "available");
}

#[tokio::test]
async fn keys_of_different_users_never_collide() {
    let (app, event) = spawn_app_with_event(5).await;
    let a = app.claim(&event, "alice", &best_of(1), Some("same")).await;
    let b = app.claim(&event, "bob", &best_of(1), Some("same")).await;
    // A user id that contains the separator does not reach another user's record.
    let c = app
        .claim(&event, "alice:same", &best_of(1), Some("x"))
        .await;
    let ids: HashSet<String> = join_all([a, b, c].into_iter().map(|r| async move {
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        r.json::<Value>().await.unwrap()["booking_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn a_recorded_conflict_is_replayed_even_after_the_seat_frees_up() {
    let (app, event) = spawn_app_with_event(2).await;
    let alice = app.claim_seats(&event, "alice", &["S0001"]).await;

    let r = app
        .claim(&event, "bob", &pick(&["S0001"]), Some("bk"))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let r = app.cancel(&event, &alice, &app.user_token("alice")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.seat_status(&event, "S0001").await, "available");

    let r = app
        .claim(&event, "bob", &pick(&["S0001"]), Some("bk"))
        .await;
    let body = expect_error(r, StatusCode::CONFLICT, "seats_unavailable").await;
    assert_eq!(body["seats"], json!(["S0001"]));
    // Without the key, bob simply gets it.
    let r = app.claim(&event, "bob", &pick(&["S0001"]), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_key_make_one_booking() {
    let (app, event) = spawn_app_with_event(10).await;
    let body = json!({"quantity": 2});
    let answers =
        join_all((0..200).map(|_| app.claim(&event, "alice", &body, Some("retry-1")))).await;
    let mut ids = HashSet::new();
    for r in answers {
        let b = expect_json(r, StatusCode::ACCEPTED).await;
        ids.insert(b["booking_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    let summary = app.settled(&event).await;
    assert_eq!(summary["booked"], 2);
    assert_eq!(app.mysql_confirmed(&event).await, 1);
}

#[tokio::test]
async fn answers_that_are_not_claim_outcomes_are_not_recorded() {
    let (app, event) = spawn_app_with_event(2).await;
    // 400: the key is not used up by a bad request.
    let r = app
        .claim(&event, "alice", &json!({"seats": []}), Some("k2"))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .claim(&event, "alice", &pick(&["S0001"]), Some("k2"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_key_identifies_the_body_as_sent_not_as_interpreted() {
    let (app, event) = spawn_app_with_event(4).await;
    // The first body under each key, its answer, and a second body that reads alike.
    let cases = [
        // Both are over any limit and answered alike, but they are two requests.
        (
            "k1",
            best_of(500),
            StatusCode::UNPROCESSABLE_ENTITY,
            best_of(101),
        ),
        // An explicit null is not an absent field.
        (
            "k2",
            json!({"seats": null, "quantity": 1}),
            StatusCode::ACCEPTED,
            best_of(1),
        ),
    ];
    for (key, first, status, second) in cases {
        let r = app.claim(&event, "alice", &first, Some(key)).await;
        assert_eq!(r.status(), status, "{first}");
        let r = app.claim(&event, "alice", &second, Some(key)).await;
        let reused = StatusCode::UNPROCESSABLE_ENTITY;
        expect_error(r, reused, "idempotency_key_reused").await;
    }
}

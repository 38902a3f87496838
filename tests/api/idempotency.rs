//! Idempotency-Key: scoped to the user and the event, same body → same answer.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;

use crate::helpers::*;

#[tokio::test]
async fn the_same_key_and_body_get_the_first_answer_again() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(5), 4).await;
    let body = json!({ "seats": ["S0001", "S0002"] });

    let first = app.claim(&event, "alice", &body, Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();

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
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["booking_id"], first["booking_id"]);

    // After confirmation the replay keeps 202 and the id, and shows the status now.
    app.settled(&event).await;
    let later = app.claim(&event, "alice", &body, Some("key-1")).await;
    assert_eq!(later.status(), StatusCode::ACCEPTED);
    let later: Value = later.json().await.unwrap();
    assert_eq!(later["booking_id"], first["booking_id"]);
    assert_eq!(later["status"], "confirmed");
    assert_eq!(app.mysql_confirmed(&event).await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(5), 4).await;
    let r = app
        .claim(&event, "alice", &json!({"seats": ["S0001"]}), Some("k"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let r = app
        .claim(&event, "alice", &json!({"seats": ["S0002"]}), Some("k"))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "idempotency_key_reused");
    assert_eq!(app.seat_status(&event, "S0002").await, "available");
}

#[tokio::test]
async fn keys_of_different_users_never_collide() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(5), 4).await;
    let a = app
        .claim(&event, "alice", &json!({"quantity": 1}), Some("same"))
        .await;
    let b = app
        .claim(&event, "bob", &json!({"quantity": 1}), Some("same"))
        .await;
    // A user id that contains the separator does not reach another user's record.
    let c = app
        .claim(&event, "alice:same", &json!({"quantity": 1}), Some("x"))
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
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(2), 4).await;
    let alice = app
        .claim_ok(&event, "alice", &json!({"seats": ["S0001"]}))
        .await;

    let r = app
        .claim(&event, "bob", &json!({"seats": ["S0001"]}), Some("bk"))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let r = app.cancel(&event, &alice, &app.user_token("alice")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.seat_status(&event, "S0001").await, "available");

    let r = app
        .claim(&event, "bob", &json!({"seats": ["S0001"]}), Some("bk"))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "seats_unavailable");
    assert_eq!(body["seats"], json!(["S0001"]));
    // Without the key, bob simply gets it.
    let r = app
        .claim(&event, "bob", &json!({"seats": ["S0001"]}), None)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_key_make_one_booking() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(10), 4).await;
    let body = json!({"quantity": 2});
    let answers =
        join_all((0..200).map(|_| app.claim(&event, "alice", &body, Some("retry-1")))).await;
    let mut ids = HashSet::new();
    for r in answers {
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let b: Value = r.json().await.unwrap();
        ids.insert(b["booking_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    let summary = app.settled(&event).await;
    assert_eq!(summary["booked"], 2);
    assert_eq!(app.mysql_confirmed(&event).await, 1);
}

#[tokio::test]
async fn answers_that_are_not_claim_outcomes_are_not_recorded() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(2), 4).await;
    // 400: the key is not used up by a bad request.
    let r = app
        .claim(&event, "alice", &json!({"seats": []}), Some("k2"))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .claim(&event, "alice", &json!({"seats": ["S0001"]}), Some("k2"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_key_identifies_the_body_as_sent_not_as_interpreted() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(4), 4).await;
    // Both are over any limit and answered alike, but they are two requests.
    let r = app
        .claim(&event, "alice", &json!({"quantity": 500}), Some("k1"))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .claim(&event, "alice", &json!({"quantity": 101}), Some("k1"))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "idempotency_key_reused"
    );
    // An explicit null is not an absent field.
    let r = app
        .claim(
            &event,
            "alice",
            &json!({"seats": null, "quantity": 1}),
            Some("k2"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app
        .claim(&event, "alice", &json!({"quantity": 1}), Some("k2"))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "idempotency_key_reused"
    );
}

//! `Prefer: wait=N` on claims: the answer waits (without polling) for the booking to
//! leave `pending`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::helpers::*;

async fn claim_waiting(
    app: &TestApp,
    event: &str,
    user: &str,
    seat: &str,
    wait: &str,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/events/{event}/bookings")))
        .bearer_auth(app.user_token(user))
        .header("Prefer", wait)
        .json(&json!({ "seats": [seat] }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_is_answered_201_once_confirmed() {
    let (app, event) = spawn_app_with_event(2).await;
    let r = claim_waiting(&app, &event, "alice", "S0001", "respond-async, wait=10").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["preference-applied"], "wait=10");
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&format!("/v1/events/{event}/bookings/")));
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["status"], "confirmed");
    assert_eq!(
        app.mysql_booking(b["booking_id"].as_str().unwrap())
            .await
            .as_deref(),
        Some("confirmed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_runs_out_answers_202_pending() {
    let (app, event) = spawn_stepped_app_with_event(2).await;
    let r = claim_waiting(&app, &event, "alice", "S0001", "wait=1").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["preference-applied"], "wait=1");
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "pending");
    // A zero wait answers at once.
    let r = claim_waiting(&app, &event, "bob", "S0002", "wait=0").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_learns_of_its_rejection_when_it_happens() {
    let (app, event) = spawn_stepped_app_with_event(2).await;
    let other = uuid::Uuid::now_v7().to_string();
    app.mysql_book(&event, "S0001", &other, "zed").await;

    let started = Instant::now();
    let waiting = {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/events/{event}/bookings"));
        let token = app.user_token("alice");
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("Prefer", "wait=10")
                .json(&pick(&["S0001"]))
                .send()
                .await
                .unwrap()
        })
    };
    eventually("the claim is pending", Duration::from_secs(30), || async {
        (app.event_json(&event).await["pending"] == 1).then_some(())
    })
    .await;
    let reconciler = app.reconciler();
    assert_eq!(
        reconciler
            .step(Duration::from_millis(50))
            .await
            .unwrap()
            .rejected,
        1
    );

    let r = waiting.await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.headers()["preference-applied"], "wait=10");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "booking_rejected");
    assert_eq!(body["reason"], "seats_taken");
    assert!(body["booking_id"].is_string());
    // Woken by the notification, not by the end of the 10 s wait.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

/// A claim with an `Idempotency-Key`, and a `Prefer` header when given.
async fn keyed_claim(
    app: &TestApp,
    event: &str,
    seat: &str,
    key: &str,
    prefer: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/v1/events/{event}/bookings")))
        .bearer_auth(app.user_token("alice"))
        .header("Idempotency-Key", key)
        .json(&json!({ "seats": [seat] }));
    if let Some(prefer) = prefer {
        req = req.header("Prefer", prefer);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_answers_the_first_status_code_whatever_its_prefer_header_says() {
    let (app, event) = spawn_app_with_event(4).await;

    // First answered 201 after a wait: replayed 201 without one.
    let first = keyed_claim(&app, &event, "S0001", "k-201", Some("wait=10")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let id = first.json::<Value>().await.unwrap()["booking_id"].clone();
    let again = keyed_claim(&app, &event, "S0001", "k-201", None).await;
    let again = expect_json(again, StatusCode::CREATED).await;
    assert_eq!(again["booking_id"], id);
    assert_eq!(again["status"], "confirmed");

    // First answered 202 without a wait: replayed 202 with one, at once.
    let first = keyed_claim(&app, &event, "S0002", "k-202", None).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = first.json::<Value>().await.unwrap()["booking_id"].clone();
    app.settled(&event).await;
    let again = keyed_claim(&app, &event, "S0002", "k-202", Some("wait=10")).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert!(!again.headers().contains_key("preference-applied"));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["booking_id"], id);
    assert_eq!(
        again["status"], "confirmed",
        "the body shows it as it is now"
    );

    // First answered 409 (rejected: MySQL had the seat booked behind Redis's back):
    // replayed 409 without a wait.
    app.mysql_book(&event, "S0003", &uuid::Uuid::now_v7().to_string(), "bob")
        .await;
    let first = keyed_claim(&app, &event, "S0003", "k-409", Some("wait=10")).await;
    let first = expect_error(first, StatusCode::CONFLICT, "booking_rejected").await;
    let again = keyed_claim(&app, &event, "S0003", "k-409", None).await;
    let again = expect_error(again, StatusCode::CONFLICT, "booking_rejected").await;
    assert_eq!(again["booking_id"], first["booking_id"]);
}

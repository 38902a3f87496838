//! The `mysql` claim strategy (the synchronous baseline): same contract, answered 201
//! `confirmed` at once.

use futures::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};

use seatgate::config::ClaimStrategy;

use crate::helpers::*;

async fn baseline() -> TestApp {
    spawn_app_with(|s| s.claim_strategy = ClaimStrategy::Mysql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_has_exactly_one_winner_among_five_hundred() {
    let app = baseline().await;
    let event = app.event_with(&seat_names(3), 4).await;
    let answers: Vec<(StatusCode, Value)> = stream::iter(0..500)
        .map(|u| {
            let app = &app;
            let event = &event;
            async move {
                let r = app
                    .claim(event, &format!("u{u}"), &json!({"seats": ["S0002"]}), None)
                    .await;
                (r.status(), r.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(500)
        .collect()
        .await;
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(won.len(), 1);
    assert_eq!(won[0]["status"], "confirmed");
    for (status, body) in &answers {
        if *status != StatusCode::CREATED {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["error"], "seats_unavailable");
        }
    }
    let id = won[0]["booking_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.mysql_seat(&event, "S0002").await,
        ("booked".to_owned(), Some(id))
    );
    assert_eq!(app.mysql_confirmed(&event).await, 1);
    let e = app.event_json(&event).await;
    assert_eq!(
        (
            e["available"].clone(),
            e["pending"].clone(),
            e["booked"].clone()
        ),
        (json!(2), json!(0), json!(1))
    );
    assert_eq!(app.seat_status(&event, "S0002").await, "booked");
}

#[tokio::test]
async fn the_baseline_keeps_the_rest_of_the_contract() {
    let app = baseline().await;
    let seats: Vec<String> = ["Z9", "A1", "M5", "B2", "C3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let event = app.event_with(&seats, 3).await;

    // Best available by ordinal, answered 201 with Location.
    let r = app
        .claim(&event, "alice", &json!({"quantity": 2}), Some("k1"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().contains_key("location"));
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["seats"], json!(["Z9", "A1"]));
    // Idempotent replay, and a reused key.
    let r = app
        .claim(&event, "alice", &json!({"quantity": 2}), Some("k1"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["booking_id"],
        first["booking_id"]
    );
    let r = app
        .claim(&event, "alice", &json!({"quantity": 1}), Some("k1"))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "idempotency_key_reused"
    );
    // Per-user limit (3): 2 held, 2 more is too many.
    let r = app
        .claim(&event, "alice", &json!({"seats": ["M5", "B2"]}), None)
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["limit"], 3);
    // All or nothing, unknown seats, sold out.
    let r = app
        .claim(&event, "bob", &json!({"seats": ["M5", "A1"]}), None)
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["seats"], json!(["A1"]));
    assert_eq!(app.mysql_seat(&event, "M5").await.0, "available");
    let r = app
        .claim(&event, "bob", &json!({"seats": ["M5", "Q1"]}), None)
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["seats"], json!(["Q1"]));
    let r = app
        .claim(&event, "bob", &json!({"quantity": 3}), None)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .claim(&event, "carol", &json!({"quantity": 1}), None)
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "sold_out");

    // Cancelling gives the seats and the allowance back.
    let id = first["booking_id"].as_str().unwrap();
    let r = app.cancel(&event, id, &app.user_token("alice")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.mysql_seat(&event, "Z9").await,
        ("available".to_owned(), None)
    );
    let r = app
        .claim(&event, "alice", &json!({"quantity": 2}), None)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.get_booking(&event, id, &app.user_token("alice")).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");
}

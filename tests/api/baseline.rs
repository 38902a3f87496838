//! The `mysql` claim strategy (the synchronous baseline): same contract, answered 201
//! `confirmed` at once.

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
    let claims = (0..500)
        .map(|u| (format!("u{u}"), pick(&["S0002"])))
        .collect();
    let answers = app.claim_storm(&event, claims, 500).await;
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
    assert_eq!(app.mysql_seat(&event, "S0002").await, booked_row(&id));
    assert_eq!(app.mysql_confirmed(&event).await, 1);
    let e = app.event_json(&event).await;
    assert_eq!(counts(&e), (2, 0, 1));
    assert_eq!(app.seat_status(&event, "S0002").await, "booked");
}

#[tokio::test]
async fn the_baseline_keeps_the_rest_of_the_contract() {
    let app = baseline().await;
    let seats = seat_ids(&["Z9", "A1", "M5", "B2", "C3"]);
    let event = app.event_with(&seats, 3).await;

    // Best available by ordinal, answered 201 with Location.
    let r = app.claim(&event, "alice", &best_of(2), Some("k1")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().contains_key("location"));
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["seats"], json!(["Z9", "A1"]));
    // Idempotent replay, and a reused key.
    let r = app.claim(&event, "alice", &best_of(2), Some("k1")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["booking_id"],
        first["booking_id"]
    );
    let r = app.claim(&event, "alice", &best_of(1), Some("k1")).await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    // Per-user limit (3): 2 held, 2 more is too many.
    let r = app.claim(&event, "alice", &pick(&["M5", "B2"]), None).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["limit"], 3);
    // All or nothing, unknown seats, sold out.
    let r = app.claim(&event, "bob", &pick(&["M5", "A1"]), None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["seats"], json!(["A1"]));
    assert_eq!(app.mysql_seat(&event, "M5").await.0, "available");
    let r = app.claim(&event, "bob", &pick(&["M5", "Q1"]), None).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["seats"], json!(["Q1"]));
    let r = app.claim(&event, "bob", &best_of(3), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.claim(&event, "carol", &best_of(1), None).await;
    expect_error(r, StatusCode::CONFLICT, "sold_out").await;

    // Cancelling gives the seats and the allowance back.
    let id = first["booking_id"].as_str().unwrap();
    let r = app.cancel(&event, id, &app.user_token("alice")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.mysql_seat(&event, "Z9").await, free_row());
    let r = app.claim(&event, "alice", &best_of(2), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.get_booking(&event, id, &app.user_token("alice")).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");
}

/// Claims `body` as `user` with `key`, expects 201; returns the booking id.
async fn created(app: &TestApp, event: &str, user: &str, body: Value, key: Option<&str>) -> String {
    let r = app.claim(event, user, &body, key).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{user:?}: {body}");
    body["booking_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn users_whose_ids_differ_by_a_trailing_space_have_their_own_limits_and_keys() {
    let app = baseline().await;
    let event = app.event_with(&seat_names(8), 2).await;

    // Limits: each has all of the per-user limit (2).
    created(&app, &event, "alice", json!({"quantity": 2}), None).await;
    created(&app, &event, "alice ", json!({"quantity": 2}), None).await;
    let r = app.claim(&event, "alice ", &best_of(1), None).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Idempotency keys: the same key of two users names two records.
    let first = created(&app, &event, "carol", json!({"quantity": 1}), Some("k1")).await;
    let second = created(&app, &event, "carol ", json!({"quantity": 1}), Some("k1")).await;
    assert_ne!(first, second, "\"carol \" got carol's recorded answer");
    let r = app.claim(&event, "carol ", &best_of(1), Some("k1")).await;
    assert_eq!(r.json::<Value>().await.unwrap()["booking_id"], second);
    let r = app
        .get_booking(&event, &second, &app.user_token("carol "))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["user_id"], "carol ");
}

#[tokio::test]
async fn an_idempotency_record_older_than_a_day_is_not_replayed() {
    let app = baseline().await;
    let event = app.event_with(&seat_names(8), 8).await;
    let age = |key: &'static str| {
        let (db, event) = (app.db.clone(), event.clone());
        async move {
            sqlx::query(
                "UPDATE claim_idempotency SET created_at = NOW(3) - INTERVAL 25 HOUR \
                 WHERE event_id = ? AND idem_key = ?",
            )
            .bind(event)
            .bind(key)
            .execute(&db)
            .await
            .unwrap()
            .rows_affected()
        }
    };

    let first = created(&app, &event, "alice", json!({"quantity": 1}), Some("k1")).await;
    assert_eq!(age("k1").await, 1);
    // Past 24 h the key is free again: a new claim, even with another body.
    let second = created(&app, &event, "alice", json!({"quantity": 2}), Some("k1")).await;
    assert_ne!(first, second);
    // And the new answer is the one recorded.
    let replay = created(&app, &event, "alice", json!({"quantity": 2}), Some("k1")).await;
    assert_eq!(replay, second);

    // Expired records are deleted, fresh ones kept.
    created(&app, &event, "alice", json!({"quantity": 1}), Some("k2")).await;
    assert_eq!(age("k2").await, 1);
    assert!(
        seatgate::db::sync_claim::purge_expired_idempotency(&app.db)
            .await
            .unwrap()
            >= 1
    );
    let (left,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM claim_idempotency WHERE event_id = ?")
            .bind(&event)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(left, 1, "only k1's fresh record is left");
}

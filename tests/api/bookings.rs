//! Claim rules: per-user limit, all or nothing, best available, sold out, unknown seats,
//! and who may read a booking.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn bookings_beyond_the_user_limit_are_rejected() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(10), 3).await;
    app.claim_seats(&event, "alice", &["S0001"]).await;
    let second = app.claim_ok(&event, "alice", &best_of(2)).await;

    let r = app.claim(&event, "alice", &pick(&["S0009"]), None).await;
    let body = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "user_limit_exceeded").await;
    assert_eq!(body["limit"], 3);
    assert_eq!(app.seat_status(&event, "S0009").await, "available");

    // Confirmed seats count too.
    app.settled(&event).await;
    let r = app.claim(&event, "alice", &best_of(1), None).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Other users have their own allowance; a cancellation gives alice hers back.
    app.claim_ok(&event, "bob", &best_of(3)).await;
    let r = app.cancel(&event, &second, &app.user_token("alice")).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.claim_ok(&event, "alice", &best_of(2)).await;
}

#[tokio::test]
async fn a_multi_seat_claim_with_one_taken_seat_takes_nothing() {
    let (app, event) = spawn_app_with_event(4).await;
    app.claim_seats(&event, "bob", &["S0002"]).await;

    let r = app
        .claim(&event, "alice", &pick(&["S0001", "S0002", "S0003"]), None)
        .await;
    let body = expect_error(r, StatusCode::CONFLICT, "seats_unavailable").await;
    assert_eq!(body["seats"], json!(["S0002"]));
    for seat in ["S0001", "S0003", "S0004"] {
        assert_eq!(app.seat_status(&event, seat).await, "available");
    }
    let summary = app.settled(&event).await;
    assert_eq!(summary["available"], 3);
}

#[tokio::test]
async fn best_available_takes_the_lowest_ordinals_not_the_lowest_names() {
    let app = spawn_app().await;
    let seats = seat_ids(&["Z9", "A1", "M5", "B2", "C3"]);
    let event = app.event_with(&seats, 4).await;
    let r = app.claim(&event, "alice", &best_of(2), None).await;
    let body = expect_json(r, StatusCode::ACCEPTED).await;
    assert_eq!(body["seats"], json!(["Z9", "A1"]));
    app.claim_seats(&event, "bob", &["M5"]).await;
    let r = app.claim(&event, "carol", &best_of(1), None).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["seats"], json!(["B2"]));
    // The seat map lists seats in best-available order.
    assert_eq!(app.seat_order(&event).await, seats);
}

#[tokio::test]
async fn a_quantity_beyond_what_is_left_is_sold_out() {
    let (app, event) = spawn_app_with_event(3).await;
    app.claim_ok(&event, "bob", &best_of(2)).await;
    let r = app.claim(&event, "alice", &best_of(2), None).await;
    expect_error(r, StatusCode::CONFLICT, "sold_out").await;
    assert_eq!(app.seat_status(&event, "S0003").await, "available");
}

#[tokio::test]
async fn seats_the_event_does_not_have_are_named() {
    let (app, event) = spawn_app_with_event(3).await;
    // Ids compare byte for byte: s0001 is not S0001.
    let r = app
        .claim(&event, "alice", &pick(&["S0001", "s0001", "X9"]), None)
        .await;
    let body = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_seats").await;
    assert_eq!(body["seats"], json!(["s0001", "X9"]));
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
}

#[tokio::test]
async fn only_the_owner_or_the_admin_can_see_a_booking() {
    let (app, event) = spawn_app_with_event(3).await;
    let id = app.claim_seats(&event, "alice", &["S0001"]).await;

    let r = app.get_booking(&event, &id, &app.user_token("alice")).await;
    let b = expect_json(r, StatusCode::OK).await;
    assert_eq!(b["booking_id"], id.as_str());
    assert_eq!(b["user_id"], "alice");
    assert_eq!(b["event_id"], event.as_str());
    assert_eq!(b["seats"], json!(["S0001"]));

    assert_eq!(
        app.get_booking(&event, &id, &app.admin()).await.status(),
        StatusCode::OK
    );
    let r = app
        .get_booking(&event, &id, &app.user_token("mallory"))
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "booking_not_found").await;
    let r = app.cancel(&event, &id, &app.user_token("mallory")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.get_booking(&event, "not-a-uuid", &app.admin()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_claim_answers_202_with_location_and_the_event_counts_it() {
    let (app, event) = spawn_stepped_app_with_event(4).await;
    let r = app.claim(&event, "alice", &pick(&["S0003"]), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    let id = body["booking_id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/events/{event}/bookings/{id}"));
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(body["user_id"], "alice");
    assert_eq!(body["status"], "pending");

    let e = app.event_json(&event).await;
    assert_eq!(e["id"], event.as_str());
    assert_eq!(e["name"], "Test event");
    assert_eq!(e["seats_total"], 4);
    assert_eq!(e["available"], 3);
    assert_eq!(e["pending"], 1);
    assert_eq!(e["booked"], 0);
    assert_eq!(e["per_user_limit"], 4);
    assert_eq!(app.seat_status(&event, "S0003").await, "pending");
}

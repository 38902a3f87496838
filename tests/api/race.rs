//! The race: hundreds of concurrent claims for the same seats. Exactly one wins each
//! seat, every loser gets 409 `seats_unavailable`, nothing answers 5xx, every winner is
//! confirmed, and MySQL holds exactly one booking per seat.

use futures::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

use crate::helpers::*;

/// Fires `requests` (user, seat) claims with `in_flight` at once; returns
/// (winner booking id by seat, number of 409 seats_unavailable).
async fn storm(
    app: &TestApp,
    event: &str,
    requests: Vec<(String, String)>,
    in_flight: usize,
) -> (HashMap<String, String>, usize) {
    let results: Vec<(String, StatusCode, Value)> = stream::iter(requests)
        .map(|(user, seat)| async move {
            let r = app
                .claim_retrying(event, &user, &json!({ "seats": [seat] }))
                .await;
            let status = r.status();
            (seat, status, r.json::<Value>().await.unwrap())
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let mut winners: HashMap<String, String> = HashMap::new();
    let mut lost = 0;
    for (seat, status, body) in results {
        match status {
            StatusCode::ACCEPTED => {
                assert_eq!(body["status"], "pending");
                assert_eq!(body["seats"], json!([seat]));
                let id = body["booking_id"].as_str().unwrap().to_owned();
                assert!(
                    winners.insert(seat.clone(), id).is_none(),
                    "two winners for {seat}"
                );
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"], "seats_unavailable");
                assert_eq!(body["seats"], json!([seat]));
                lost += 1;
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    (winners, lost)
}

/// After the storm: every winner confirmed in the API and in MySQL, holding its seat.
async fn check_persisted(app: &TestApp, event: &str, winners: &HashMap<String, String>) {
    let summary = app.settled(event).await;
    assert_eq!(summary["booked"], winners.len());
    for (seat, booking) in winners {
        let r = app.get_booking(event, booking, &app.admin()).await;
        assert_eq!(r.status(), StatusCode::OK);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["status"], "confirmed", "{b}");
        assert_eq!(
            app.mysql_seat(event, seat).await,
            ("booked".to_owned(), Some(booking.clone()))
        );
    }
    assert_eq!(app.mysql_confirmed(event).await, winners.len() as i64);
    let audit = app.audit(event, false).await;
    assert_eq!(audit["consistent"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_claims_for_one_seat_have_exactly_one_winner() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(3), 4).await;
    let requests: Vec<_> = (0..500)
        .map(|u| (format!("user-{u}"), "S0002".to_owned()))
        .collect();

    let (winners, lost) = storm(&app, &event, requests, 500).await;

    assert_eq!(winners.len(), 1);
    assert_eq!(lost, 499);
    check_persisted(&app, &event, &winners).await;
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
    assert_eq!(app.seat_status(&event, "S0003").await, "available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seats_with_five_hundred_claims_each_interleaved_have_twenty_winners() {
    let app = spawn_app().await;
    let seats = seat_names(20);
    let event = app.event_with(&seats, 4).await;
    let requests: Vec<_> = (0..10_000)
        .map(|i| (format!("user-{i}"), seats[i % 20].clone()))
        .collect();

    let (winners, lost) = storm(&app, &event, requests, 500).await;

    assert_eq!(winners.len(), 20);
    assert_eq!(lost, 10_000 - 20);
    check_persisted(&app, &event, &winners).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seats_stormed_one_after_another_have_twenty_winners() {
    let app = spawn_app().await;
    let seats = seat_names(20);
    let event = app.event_with(&seats, 4).await;
    let requests: Vec<_> = (0..10_000)
        .map(|i| (format!("user-{i}"), seats[i / 500].clone()))
        .collect();

    let (winners, lost) = storm(&app, &event, requests, 500).await;

    assert_eq!(winners.len(), 20);
    assert_eq!(lost, 10_000 - 20);
    check_persisted(&app, &event, &winners).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_best_available_claims_never_share_a_seat() {
    let app = spawn_app().await;
    let seats = seat_names(100);
    let event = app.event_with(&seats, 4).await;

    let results: Vec<(StatusCode, Value)> = stream::iter(0..500)
        .map(|u| {
            let app = &app;
            let event = &event;
            async move {
                let r = app
                    .claim_retrying(event, &format!("user-{u}"), &json!({ "quantity": 1 }))
                    .await;
                (r.status(), r.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(500)
        .collect()
        .await;

    let mut taken = HashSet::new();
    let mut sold_out = 0;
    for (status, body) in &results {
        match *status {
            StatusCode::ACCEPTED => {
                let seat = body["seats"][0].as_str().unwrap().to_owned();
                assert!(taken.insert(seat), "a seat was handed out twice: {body}");
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"], "sold_out");
                sold_out += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(taken.len(), 100);
    assert_eq!(sold_out, 400);
    let summary = app.settled(&event).await;
    assert_eq!(summary["booked"], 100);
    assert_eq!(summary["available"], 0);
    assert_eq!(app.mysql_confirmed(&event).await, 100);
}

//! The race: hundreds of concurrent claims for the same seats. Exactly one wins each
//! seat, every loser gets 409 `seats_unavailable`, nothing answers 5xx, every winner is
//! confirmed, and MySQL holds exactly one booking per seat.

use reqwest::StatusCode;
use serde_json::json;
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
    let claims = requests
        .iter()
        .map(|(user, seat)| (user.clone(), json!({ "seats": [seat] })))
        .collect();
    let answers = app.claim_storm(event, claims, in_flight).await;
    let mut winners: HashMap<String, String> = HashMap::new();
    let mut lost = 0;
    for ((_, seat), (status, body)) in requests.into_iter().zip(answers) {
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
        let b = expect_json(r, StatusCode::OK).await;
        assert_eq!(b["status"], "confirmed", "{b}");
        assert_eq!(app.mysql_seat(event, seat).await, booked_row(booking));
    }
    assert_eq!(app.mysql_confirmed(event).await, winners.len() as i64);
    let audit = app.audit(event, false).await;
    assert_eq!(audit["consistent"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_claims_for_one_seat_have_exactly_one_winner() {
    let (app, event) = spawn_app_with_event(3).await;
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

/// 10 000 claims, 500 at once, for twenty seats, the `i`-th for seat `seat_of(i)`:
/// twenty winners, every other claim lost, every winner persisted.
async fn twenty_seats_stormed(seat_of: fn(usize) -> usize) {
    let (app, event) = spawn_app_with_event(20).await;
    let seats = seat_names(20);
    let requests: Vec<_> = (0..10_000)
        .map(|i| (format!("user-{i}"), seats[seat_of(i)].clone()))
        .collect();

    let (winners, lost) = storm(&app, &event, requests, 500).await;

    assert_eq!(winners.len(), 20);
    assert_eq!(lost, 10_000 - 20);
    check_persisted(&app, &event, &winners).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seats_with_five_hundred_claims_each_interleaved_have_twenty_winners() {
    twenty_seats_stormed(|i| i % 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seats_stormed_one_after_another_have_twenty_winners() {
    twenty_seats_stormed(|i| i / 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_best_available_claims_never_share_a_seat() {
    let (app, event) = spawn_app_with_event(100).await;

    let claims = (0..500)
        .map(|u| (format!("user-{u}"), best_of(1)))
        .collect();
    let results = app.claim_storm(&event, claims, 500).await;

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

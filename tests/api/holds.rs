//! Holds and checkout (issue 13): a persisted claim on an event with holds is `held`
//! until its owner checks out, extends, cancels, or its deadline passes; then its
//! seats go back on sale at their place. MySQL decides each end under the booking's
//! seat locks; these tests race the ends against each other and check that MySQL and
//! Redis agree afterwards.

use futures::{stream, StreamExt};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::helpers::*;

/// Creates and warms an event of `seats` seats (`S0001`…) with holds; returns its id.
async fn hold_event(
    app: &TestApp,
    seats: usize,
    limit: u32,
    hold: u32,
    max: Option<u32>,
) -> String {
    let id = app.event_id();
    let mut body = json!({"id": id, "name": "Held drop", "seats": seat_names(seats),
        "per_user_limit": limit, "hold_seconds": hold});
    if let Some(max) = max {
        body["hold_max_seconds"] = json!(max);
    }
    let r = app.create_event(&body).await;
    let created = expect_json(r, StatusCode::CREATED).await;
    assert_eq!(created["hold_seconds"], json!(hold));
    assert_eq!(created["hold_max_seconds"], json!(max.unwrap_or(hold)));
    expect_json(app.warm(&id).await, StatusCode::OK).await;
    id
}

/// One attendee per seat, named after the seat.
fn attendees_for(seats: &Value) -> Value {
    let list: Vec<Value> = seats
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let s = s.as_str().unwrap();
            json!({"seat": s, "name": format!("Guest {s}"), "email": format!("{}@example.org", s.to_lowercase())})
        })
        .collect();
    json!({"attendees": list})
}

async fn post(
    app: &TestApp,
    event: &str,
    booking: &str,
    what: &str,
    token: &str,
    body: &Value,
) -> Response {
    let path = format!("/v1/events/{event}/bookings/{booking}/{what}");
    app.call(Method::POST, &path, token, Some(body)).await
}

async fn checkout(app: &TestApp, event: &str, booking: &str, user: &str, body: &Value) -> Response {
    post(app, event, booking, "checkout", &app.user_token(user), body).await
}

async fn extend(app: &TestApp, event: &str, booking: &str, user: &str, seconds: Value) -> Response {
    let body = json!({ "seconds": seconds });
    post(app, event, booking, "extend", &app.user_token(user), &body).await
}

/// Waits until the booking reads `status` (to its owner); returns the booking.
async fn wait_for(app: &TestApp, event: &str, booking: &str, user: &str, status: &str) -> Value {
    let token = app.user_token(user);
    eventually(
        &format!("{booking} is {status}"),
        Duration::from_secs(15),
        || async {
            let b = app.booking_json(event, booking, &token).await;
            (b["status"] == status).then_some(b)
        },
    )
    .await
}

/// `expires_at` as milliseconds since the epoch.
fn deadline_ms(booking: &Value) -> i64 {
    let text = booking["expires_at"].as_str().expect("expires_at");
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `(status, booking_id)` of each seat row in MySQL.
async fn mysql_seats(app: &TestApp, event: &str) -> HashMap<String, (String, Option<String>)> {
    type Row = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT seat_id, status, booking_id FROM seats WHERE event_id = ?")
            .bind(event)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    rows.into_iter()
        .map(|(s, st, b)| (text(s), (text(st), b.map(text))))
        .collect()
}

async fn mysql_status(app: &TestApp, booking: &str) -> String {
    app.mysql_booking(booking)
        .await
        .expect("MySQL has the booking")
}

/// Every seat is available, or held / booked by exactly the booking MySQL has in that
/// state; Redis agrees seat by seat (the audit); the counters add up.
async fn assert_consistent(app: &TestApp, event: &str) {
    let audit = app.audit(event, false).await;
    assert_eq!(audit["consistent"], json!(true), "{audit}");
    let seats = mysql_seats(app, event).await;
    let mut by_booking: HashMap<String, usize> = HashMap::new();
    for (seat, (status, booking)) in &seats {
        match (status.as_str(), booking) {
            ("available", None) => {}
            (st @ ("held" | "booked"), Some(b)) => {
                let want = if st == "held" { "held" } else { "confirmed" };
                assert_eq!(mysql_status(app, b).await, want, "seat {seat} of {b}");
                *by_booking.entry(b.clone()).or_default() += 1;
            }
            other => panic!("seat {seat}: {other:?}"),
        }
    }
    let v = app.event_json(event).await;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    assert_eq!(
        n("available") + n("pending") + n("held") + n("booked"),
        n("seats_total"),
        "{v}"
    );
}

#[tokio::test]
async fn a_held_booking_is_confirmed_by_its_checkout_once() {
    let app = spawn_app().await;
    let event = hold_event(&app, 4, 4, 600, None).await;
    let r = app
        .claim(&event, "alice", &pick(&["S0002", "S0003"]), None)
        .await;
    let pending = expect_json(r, StatusCode::ACCEPTED).await;
    assert_eq!(pending["status"], "pending");
    let bid = pending["booking_id"].as_str().unwrap().to_owned();
    let deadline = deadline_ms(&pending);
    assert!((deadline - now_ms() - 600_000).abs() < 60_000, "{pending}");

    let held = wait_for(&app, &event, &bid, "alice", "held").await;
    assert_eq!(
        deadline_ms(&held),
        deadline,
        "the deadline counts from the claim"
    );
    assert_eq!(mysql_status(&app, &bid).await, "held");
    assert_eq!(app.seat_status(&event, "S0002").await, "held");
    assert_eq!(
        app.mysql_seat(&event, "S0002").await,
        ("held".into(), Some(bid.clone()))
    );
    let counters = app.event_json(&event).await;
    assert_eq!(
        (counters["held"].clone(), counters["available"].clone()),
        (json!(2), json!(2)),
        "{counters}"
    );
    assert_eq!(counters["hold_seconds"], json!(600));

    let body = attendees_for(&pending["seats"]);
    let r = checkout(&app, &event, &bid, "alice", &body).await;
    let done = expect_json(r, StatusCode::OK).await;
    assert_eq!(done["status"], "confirmed");
    assert_eq!(done["attendees"].as_array().unwrap().len(), 2);
    assert!(done.get("expires_at").is_none(), "{done}");
    assert_eq!(mysql_status(&app, &bid).await, "confirmed");
    assert_eq!(
        app.mysql_seat(&event, "S0003").await,
        ("booked".into(), Some(bid.clone()))
    );
    assert_eq!(app.seat_status(&event, "S0003").await, "booked");
    let read = app
        .booking_json(&event, &bid, &app.user_token("alice"))
        .await;
    assert_eq!(read["status"], "confirmed");
    // Personal data is never in a public read.
    let seats = app
        .get(&format!("/v1/events/{event}/seats"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !seats.contains("example.org") && !seats.contains("Guest"),
        "{seats}"
    );

    // The same checkout again: the same answer. Other details: not held any more.
    let again = expect_json(
        checkout(&app, &event, &bid, "alice", &body).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["status"], "confirmed");
    let mut other = body.clone();
    other["attendees"][0]["name"] = json!("Someone Else");
    expect_error(
        checkout(&app, &event, &bid, "alice", &other).await,
        StatusCode::CONFLICT,
        "booking_not_held",
    )
    .await;
    expect_error(
        extend(&app, &event, &bid, "alice", json!(60)).await,
        StatusCode::CONFLICT,
        "booking_not_held",
    )
    .await;
    // Another user's booking, or the admin's token: not theirs to check out.
    expect_error(
        checkout(&app, &event, &bid, "mallory", &body).await,
        StatusCode::NOT_FOUND,
        "booking_not_found",
    )
    .await;
    let r = post(&app, &event, &bid, "checkout", &app.admin(), &body).await;
    expect_error(r, StatusCode::NOT_FOUND, "booking_not_found").await;
    assert_consistent(&app, &event).await;
}

#[tokio::test]
async fn an_abandoned_hold_expires_and_its_seats_return_at_their_place() {
    let app = spawn_app().await;
    let event = hold_event(&app, 6, 2, 1, None).await;
    let (bid, seats) = app.claim_best(&event, "alice", 2).await;
    assert_eq!(seats, json!(["S0001", "S0002"]));
    // The limit counts held seats.
    wait_for(&app, &event, &bid, "alice", "held").await;
    expect_error(
        app.claim(&event, "alice", &best_of(1), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "user_limit_exceeded",
    )
    .await;
    let (later, _) = app.claim_best(&event, "bob", 1).await;
    assert_ne!(later, bid);

    let expired = wait_for(&app, &event, &bid, "alice", "expired").await;
    assert!(expired.get("expires_at").is_some(), "{expired}");
    assert_eq!(mysql_status(&app, &bid).await, "expired");
    assert_eq!(app.mysql_seat(&event, "S0001").await, free_row());
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
    // Back at their place: the next best-available claim gets S0001 again, and the
    // owner's tally is free again.
    let (_, next) = app.claim_best(&event, "carol", 1).await;
    assert_eq!(next, json!(["S0001"]));
    app.claim_best(&event, "alice", 2).await;
    // Checkout and extension of an expired hold.
    let body = attendees_for(&seats);
    expect_error(
        checkout(&app, &event, &bid, "alice", &body).await,
        StatusCode::CONFLICT,
        "hold_expired",
    )
    .await;
    expect_error(
        extend(&app, &event, &bid, "alice", json!(60)).await,
        StatusCode::CONFLICT,
        "hold_expired",
    )
    .await;
    // A DELETE of it says how it ended.
    let r = app.cancel(&event, &bid, &app.user_token("alice")).await;
    assert_eq!(expect_json(r, StatusCode::OK).await["status"], "expired");
    eventually("every hold ended", Duration::from_secs(15), || async {
        let v = app.event_json(&event).await;
        (v.get("held").is_none() && v["pending"] == 0).then_some(())
    })
    .await;
    assert_consistent(&app, &event).await;
}

#[tokio::test]
async fn extensions_are_capped_at_the_longest_hold_and_zero_ends_the_hold() {
    let app = spawn_app().await;
    let event = hold_event(&app, 4, 4, 30, Some(40)).await;
    let r = app.claim(&event, "alice", &pick(&["S0001"]), None).await;
    let pending = expect_json(r, StatusCode::ACCEPTED).await;
    let bid = pending["booking_id"].as_str().unwrap().to_owned();
    let first = deadline_ms(&pending);
    wait_for(&app, &event, &bid, "alice", "held").await;

    let r = extend(&app, &event, &bid, "alice", json!(3600)).await;
    let longer = expect_json(r, StatusCode::OK).await;
    assert_eq!(longer["status"], "held");
    // hold_max_seconds (40) after the claim: 10 s after the first deadline (30).
    assert_eq!(deadline_ms(&longer), first + 10_000, "{longer}");
    let read = app
        .booking_json(&event, &bid, &app.user_token("alice"))
        .await;
    assert_eq!(deadline_ms(&read), first + 10_000);

    let r = extend(&app, &event, &bid, "alice", json!(5)).await;
    let shorter = expect_json(r, StatusCode::OK).await;
    let five = deadline_ms(&shorter) - now_ms();
    assert!((0..=5_000).contains(&five), "now + 5 s: {shorter}");

    let r = extend(&app, &event, &bid, "alice", json!(0)).await;
    expect_json(r, StatusCode::OK).await;
    wait_for(&app, &event, &bid, "alice", "expired").await;
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
    assert_consistent(&app, &event).await;
}

#[tokio::test]
async fn a_pending_booking_cannot_be_checked_out_yet_and_a_cancelled_one_never() {
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let event = hold_event(&app, 4, 4, 600, None).await;
    let r = app.claim(&event, "alice", &pick(&["S0001"]), None).await;
    let pending = expect_json(r, StatusCode::ACCEPTED).await;
    assert!(pending.get("expires_at").is_some(), "{pending}");
    let bid = pending["booking_id"].as_str().unwrap().to_owned();
    let body = attendees_for(&pending["seats"]);
    let r = checkout(&app, &event, &bid, "alice", &body).await;
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, StatusCode::CONFLICT, "booking_pending").await;
    expect_error(
        extend(&app, &event, &bid, "alice", json!(60)).await,
        StatusCode::CONFLICT,
        "booking_pending",
    )
    .await;
    let read = app
        .booking_json(&event, &bid, &app.user_token("alice"))
        .await;
    assert_eq!(deadline_ms(&read), deadline_ms(&pending));

    // Persisted: held. Cancelled: its seats are free at once, and no checkout after.
    let r = app.reconciler();
    r.step(Duration::from_millis(10)).await.unwrap();
    assert_eq!(mysql_status(&app, &bid).await, "held");
    let r = app.cancel(&event, &bid, &app.user_token("alice")).await;
    assert_eq!(expect_json(r, StatusCode::OK).await["status"], "cancelled");
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
    assert_eq!(app.mysql_seat(&event, "S0001").await, free_row());
    expect_error(
        checkout(&app, &event, &bid, "alice", &body).await,
        StatusCode::CONFLICT,
        "booking_cancelled",
    )
    .await;
    assert_consistent(&app, &event).await;
}

#[tokio::test]
async fn checkouts_racing_their_deadline_each_have_exactly_one_outcome() {
    const N: usize = 200;
    let app = spawn_app_with(|s| s.db_max_connections = 32).await;
    let event = hold_event(&app, N, 1, 2, None).await;
    let claims: Vec<(String, Value)> = (0..N).map(|i| (format!("u{i}"), best_of(1))).collect();
    let answers = app.claim_storm(&event, claims, 64).await;
    let bookings: Vec<(String, String, Value)> = answers
        .into_iter()
        .enumerate()
        .map(|(i, (status, body))| {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            (
                format!("u{i}"),
                body["booking_id"].as_str().unwrap().to_owned(),
                body,
            )
        })
        .collect();
    // Each checkout is sent within ±250 ms of its booking's deadline.
    let outcomes: Vec<(String, String, StatusCode)> = stream::iter(bookings.iter().enumerate())
        .map(|(i, (user, bid, claimed))| {
            let app = &app;
            let event = &event;
            async move {
                let jitter = (i as i64 * 37) % 500 - 250;
                let at = deadline_ms(claimed) + jitter;
                let wait = (at - now_ms()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let r = checkout(app, event, bid, user, &attendees_for(&claimed["seats"])).await;
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                match status {
                    StatusCode::OK => assert_eq!(body["status"], "confirmed"),
                    StatusCode::CONFLICT => assert_eq!(body["error"], "hold_expired", "{body}"),
                    other => panic!("{other}: {body}"),
                }
                (user.clone(), bid.clone(), status)
            }
        })
        .buffer_unordered(N)
        .collect()
        .await;
    let won = outcomes.iter().filter(|o| o.2 == StatusCode::OK).count();
    eprintln!("{won} of {N} checkouts beat their deadline");
    for (user, bid, status) in &outcomes {
        let want = if *status == StatusCode::OK {
            "confirmed"
        } else {
            "expired"
        };
        let read = wait_for(&app, &event, bid, user, want).await;
        assert_eq!(mysql_status(&app, bid).await, want, "{read}");
    }
    let seats = mysql_seats(&app, &event).await;
    let booked = seats.values().filter(|(s, _)| s == "booked").count();
    assert_eq!(
        booked, won,
        "a booked seat per checkout that won, none other"
    );
    assert_eq!(
        seats.values().filter(|(s, _)| s == "available").count(),
        N - won
    );
    assert_consistent(&app, &event).await;
}

#[tokio::test]
async fn a_drop_where_a_third_abandon_their_holds_sells_every_seat_once() {
    const SEATS: usize = 60;
    let app = spawn_app().await;
    let event = hold_event(&app, SEATS, 1, 2, None).await;
    // 150 fans race for 60 seats; 60 win a hold.
    let claims: Vec<(String, Value)> = (0..150).map(|i| (format!("fan{i}"), best_of(1))).collect();
    let answers = app.claim_storm(&event, claims, 150).await;
    let winners: Vec<(String, Value)> = answers
        .into_iter()
        .enumerate()
        .filter(|(_, (status, _))| *status == StatusCode::ACCEPTED)
        .map(|(i, (_, body))| (format!("fan{i}"), body))
        .collect();
    assert_eq!(winners.len(), SEATS);
    // Two thirds check out; a third never do.
    let mut abandoned = Vec::new();
    for (i, (user, body)) in winners.iter().enumerate() {
        let bid = body["booking_id"].as_str().unwrap();
        wait_for(&app, &event, bid, user, "held").await;
        if i % 3 == 0 {
            abandoned.push((user.clone(), bid.to_owned(), body["seats"][0].clone()));
            continue;
        }
        let r = checkout(&app, &event, bid, user, &attendees_for(&body["seats"])).await;
        expect_json(r, StatusCode::OK).await;
    }
    assert_eq!(abandoned.len(), SEATS / 3);
    for (user, bid, _) in &abandoned {
        wait_for(&app, &event, bid, user, "expired").await;
    }
    // Later buyers get exactly the abandoned seats, and check out.
    let freed: HashSet<Value> = abandoned.iter().map(|(_, _, seat)| seat.clone()).collect();
    let claims: Vec<(String, Value)> = (0..40).map(|i| (format!("late{i}"), best_of(1))).collect();
    let answers = app.claim_storm(&event, claims, 40).await;
    let mut got = HashSet::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        if *status != StatusCode::ACCEPTED {
            assert_eq!(body["error"], "sold_out", "{body}");
            continue;
        }
        let user = format!("late{i}");
        let bid = body["booking_id"].as_str().unwrap();
        assert!(
            got.insert(body["seats"][0].clone()),
            "a seat sold twice: {body}"
        );
        wait_for(&app, &event, bid, &user, "held").await;
        let r = checkout(&app, &event, bid, &user, &attendees_for(&body["seats"])).await;
        expect_json(r, StatusCode::OK).await;
    }
    assert_eq!(got, freed, "the later buyers got the abandoned seats");
    let seats = mysql_seats(&app, &event).await;
    let mut owners = HashSet::new();
    for (seat, (status, booking)) in &seats {
        assert_eq!(status, "booked", "{seat}");
        assert!(
            owners.insert(booking.clone().unwrap()),
            "{seat}: a booking holds two seats"
        );
    }
    let v = app.event_json(&event).await;
    assert_eq!(
        (v["booked"].clone(), v["available"].clone()),
        (json!(SEATS), json!(0)),
        "{v}"
    );
    assert_consistent(&app, &event).await;
}

#[tokio::test]
async fn expiry_survives_a_restart_of_the_gateway_and_its_reconciler() {
    let mut app = spawn_app().await;
    let event = hold_event(&app, 3, 4, 1, None).await;
    let bid = app.claim_seats(&event, "alice", &["S0002"]).await;
    wait_for(&app, &event, &bid, "alice", "held").await;
    // Every process stops before the deadline; nothing runs when it passes.
    app.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mysql_status(&app, &bid).await, "held");
    // A new gateway (with its reconciler) on the same stores expires it.
    let peer = app.spawn_peer().await;
    let token = app.user_token("alice");
    eventually(
        "the hold expired after the restart",
        Duration::from_secs(15),
        || async {
            let r = app
                .client
                .get(format!("{}/v1/events/{event}/bookings/{bid}", peer.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let b: Value = r.json().await.unwrap();
            (b["status"] == "expired").then_some(())
        },
    )
    .await;
    assert_eq!(mysql_status(&app, &bid).await, "expired");
    assert_eq!(app.mysql_seat(&event, "S0002").await, free_row());
}

#[tokio::test]
async fn bad_checkouts_and_extensions_are_400_invalid_request() {
    let app = spawn_app().await;
    let event = hold_event(&app, 4, 4, 600, None).await;
    let (bid, seats) = app.claim_best(&event, "alice", 2).await;
    wait_for(&app, &event, &bid, "alice", "held").await;
    let good = attendees_for(&seats);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let long = "n".repeat(201);
    let bad = [
        json!({}),
        json!({"attendees": []}),
        json!({"attendees": "Ann"}),
        json!([1, 2]),
        with(&|b| {
            b["attendees"].as_array_mut().unwrap().pop();
        }),
        with(&|b| {
            let extra = json!({"seat": "S0003", "name": "Extra", "email": "x@example.org"});
            b["attendees"].as_array_mut().unwrap().push(extra);
        }),
        with(&|b| b["attendees"][1]["seat"] = json!("S0001")),
        with(&|b| b["attendees"][0]["seat"] = json!("Z99")),
        with(&|b| b["attendees"][0]["name"] = json!("")),
        with(&|b| b["attendees"][0]["name"] = json!("   ")),
        with(&|b| b["attendees"][0]["name"] = json!(long)),
        with(&|b| b["attendees"][0]["email"] = json!("not-an-email")),
        with(&|b| b["attendees"][0]["email"] = json!("ann@localhost")),
        with(&|b| b["attendees"][0]["email"] = json!(42)),
        with(&|b| b["attendees"][0]["name"] = json!(null)),
        with(&|b| b["attendees"][0]["age"] = json!(30)),
        with(&|b| b["payment_reference"] = json!("")),
        with(&|b| b["payment_reference"] = json!(7)),
        with(&|b| b["extra"] = json!(true)),
    ];
    for body in &bad {
        let r = checkout(&app, &event, &bid, "alice", body).await;
        let err = expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        let message = err["message"].as_str().unwrap();
        assert!(!message.contains("@example.org"), "no e-mail in {message}");
    }
    let path = format!("/v1/events/{event}/bookings/{bid}/checkout");
    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(app.user_token("alice"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    for seconds in [json!(-1), json!(7201), json!("60"), json!(1.5), json!(null)] {
        let r = extend(&app, &event, &bid, "alice", seconds).await;
        expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let r = post(
        &app,
        &event,
        &bid,
        "extend",
        &app.user_token("alice"),
        &json!({"seconds": 5, "x": 1}),
    )
    .await;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Nothing above changed the booking.
    let read = app
        .booking_json(&event, &bid, &app.user_token("alice"))
        .await;
    assert_eq!(read["status"], "held");
    // A good checkout still works.
    expect_json(
        checkout(&app, &event, &bid, "alice", &good).await,
        StatusCode::OK,
    )
    .await;

    // Event creation: holds out of range.
    for (hold, max) in [
        (json!(7201), json!(null)),
        (json!(60), json!(59)),
        (json!(-1), json!(null)),
        (json!("60"), json!(null)),
        (json!(0), json!(7201)),
    ] {
        let r = app
            .create_event(&json!({"id": app.event_id(), "name": "x", "seats": ["A1"], "hold_seconds": hold, "hold_max_seconds": max}))
            .await;
        expect_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn holds_survive_redis_losing_their_records_and_deadlines() {
    let app = spawn_app().await;
    let event = hold_event(&app, 4, 4, 1, Some(600)).await;
    let keys = app.redis.keys(&event);
    let lost = app.claim_seats(&event, "alice", &["S0001"]).await;
    let kept = app.claim_seats(&event, "bob", &["S0002"]).await;
    wait_for(&app, &event, &lost, "alice", "held").await;
    wait_for(&app, &event, &kept, "bob", "held").await;
    // Bob keeps his hold long enough to check out below.
    expect_json(
        extend(&app, &event, &kept, "bob", json!(600)).await,
        StatusCode::OK,
    )
    .await;
    // Redis loses both records and the deadlines (an eviction, a restart from an
    // older snapshot): MySQL still has both holds.
    let mut conn = app.redis.connection();
    let _: () = redis::cmd("DEL")
        .arg(keys.booking(&lost))
        .arg(keys.booking(&kept))
        .arg(keys.holds())
        .query_async(&mut conn)
        .await
        .unwrap();
    // Alice's hold still expires (found in MySQL), her seat is free in both stores.
    wait_for(&app, &event, &lost, "alice", "expired").await;
    assert_eq!(app.mysql_seat(&event, "S0001").await, free_row());
    eventually(
        "S0001 is available in Redis",
        Duration::from_secs(10),
        || async { (app.seat_status(&event, "S0001").await == "available").then_some(()) },
    )
    .await;
    // Bob's checkout confirms in MySQL and writes Redis's lost record back.
    let r = checkout(
        &app,
        &event,
        &kept,
        "bob",
        &attendees_for(&json!(["S0002"])),
    )
    .await;
    expect_json(r, StatusCode::OK).await;
    assert_eq!(app.seat_status(&event, "S0002").await, "booked");
    let mut conn = app.redis.connection();
    let status: Option<String> = redis::cmd("HGET")
        .arg(keys.booking(&kept))
        .arg("status")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("confirmed"));
    assert_consistent(&app, &event).await;
}

#[tokio::test]
async fn metrics_count_holds_checkouts_extensions_expiries_and_the_expiry_lag() {
    let app = spawn_app().await;
    let event = hold_event(&app, 4, 4, 1, Some(60)).await;
    let (paid, seats) = app.claim_best(&event, "alice", 1).await;
    let left = app.claim_seats(&event, "bob", &["S0004"]).await;
    wait_for(&app, &event, &paid, "alice", "held").await;
    wait_for(&app, &event, &left, "bob", "held").await;
    expect_json(
        extend(&app, &event, &paid, "alice", json!(30)).await,
        StatusCode::OK,
    )
    .await;
    expect_json(
        checkout(&app, &event, &paid, "alice", &attendees_for(&seats)).await,
        StatusCode::OK,
    )
    .await;
    wait_for(&app, &event, &left, "bob", "expired").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing"))
    };
    // Other tests in this process count too: at least this test's own.
    assert!(value("seatgate_bookings_settled_total{result=\"held\"}") >= 2.0);
    for action in ["checkout", "extension", "expiry"] {
        let series = format!("seatgate_holds_total{{action=\"{action}\"}}");
        assert!(value(&series) >= 1.0, "{series}");
    }
    assert!(value("seatgate_hold_expiry_lag_seconds_count") >= 1.0);
    // No personal data in the metrics.
    assert!(!text.contains("example.org"));
}

#[tokio::test]
async fn two_gateways_with_their_reconcilers_end_every_hold_once() {
    let app = spawn_app().await;
    let peer = app.spawn_peer().await;
    let event = hold_event(&app, 40, 1, 3, None).await;
    // 40 buyers, every other one on the second gateway; half of them check out there
    // too, the rest abandon their holds to whichever expirer gets there first.
    let mut bookings = Vec::new();
    for i in 0..40 {
        let (user, base) = (
            format!("b{i}"),
            if i % 2 == 0 { &app.base } else { &peer.base },
        );
        let r = app.claim_at(base, &event, &user, &best_of(1), None).await;
        let body = expect_json(r, StatusCode::ACCEPTED).await;
        bookings.push((user, body));
    }
    let mut paid = 0;
    for (i, (user, body)) in bookings.iter().enumerate() {
        let bid = body["booking_id"].as_str().unwrap();
        let token = app.user_token(user);
        eventually("persisted", Duration::from_secs(15), || async {
            let b = app.booking_json(&event, bid, &token).await;
            (b["status"] != "pending").then_some(())
        })
        .await;
        if i % 4 < 2 {
            let path = format!("/v1/events/{event}/bookings/{bid}/checkout");
            let r = app
                .client
                .post(format!(
                    "{}{path}",
                    if i % 2 == 0 { &peer.base } else { &app.base }
                ))
                .bearer_auth(app.user_token(user))
                .json(&attendees_for(&body["seats"]))
                .send()
                .await
                .unwrap();
            // A checkout that reaches a gateway after the 3 s deadline loses fairly.
            match r.status() {
                StatusCode::OK => paid += 1,
                _ => {
                    expect_error(r, StatusCode::CONFLICT, "hold_expired").await;
                }
            }
        }
    }
    for (user, body) in &bookings {
        let bid = body["booking_id"].as_str().unwrap();
        let b = app.booking_json(&event, bid, &app.user_token(user)).await;
        if b["status"] != "confirmed" {
            wait_for(&app, &event, bid, user, "expired").await;
        }
    }
    let seats = mysql_seats(&app, &event).await;
    assert_eq!(seats.values().filter(|(s, _)| s == "booked").count(), paid);
    assert_eq!(
        seats.values().filter(|(s, _)| s == "available").count(),
        40 - paid
    );
    assert_consistent(&app, &event).await;
}

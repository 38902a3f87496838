//! Cancel, warm, audit and the reconciler's settle paths, with the reconciler driven
//! step by step where the test needs a claim to stay pending. One file because these
//! tests share that stepping and the reads of a booking's status and reason.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

use seatgate::reconciler::{Claim, Reconciler, ReconcilerConfig, Settled, StepReport};

use crate::helpers::*;

/// One reconciler step, waiting at most 50 ms for new outbox entries.
async fn step(r: &Reconciler) -> StepReport {
    r.step(Duration::from_millis(50)).await.unwrap()
}

/// A booking's status and the reason given for it.
fn status_and_reason(booking: &Value) -> (&str, &str) {
    let field = |name: &str| {
        booking[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {booking}"))
    };
    (field("status"), field("reason"))
}

/// Runs reconciler steps until one settles nothing.
async fn drain(r: &Reconciler) -> usize {
    let mut total = 0;
    loop {
        let report = step(r).await;
        assert_eq!(report.retry, 0, "{report:?}");
        if report.settled() == 0 {
            return total;
        }
        total += report.settled();
    }
}

#[tokio::test]
async fn cancelling_a_confirmed_booking_frees_its_seats_in_both_stores() {
    let (app, event) = spawn_app_with_event(3).await;
    let id = app.claim_seats(&event, "alice", &["S0001", "S0002"]).await;
    app.settled(&event).await;
    assert_eq!(app.mysql_seat(&event, "S0001").await.0, "booked");

    let r = app.cancel(&event, &id, &app.user_token("alice")).await;
    let b = expect_json(r, StatusCode::OK).await;
    assert_eq!(b["status"], "cancelled");
    assert_eq!(app.mysql_seat(&event, "S0001").await, free_row());
    assert_eq!(app.mysql_seat(&event, "S0002").await, free_row());
    assert_eq!(app.mysql_booking(&id).await.as_deref(), Some("cancelled"));
    assert_eq!(app.seat_status(&event, "S0001").await, "available");

    // Idempotent, and the admin may do it too.
    let r = app.cancel(&event, &id, &app.admin()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let e = app.event_json(&event).await;
    let (available, _, booked) = counts(&e);
    assert_eq!((available, booked), (3, 0));

    // The seats are sold again, and the new booking is confirmed.
    let again = app.claim_seats(&event, "bob", &["S0001"]).await;
    app.settled(&event).await;
    assert_eq!(app.mysql_seat(&event, "S0001").await, booked_row(&again));
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn a_pending_booking_cancelled_before_the_reconciler_runs_is_never_booked() {
    let (app, event) = spawn_stepped_app_with_event(2).await;
    let id = app.claim_seats(&event, "alice", &["S0001"]).await;

    let r = app.cancel(&event, &id, &app.user_token("alice")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.seat_status(&event, "S0001").await, "available");

    // The claim is still in the outbox; the reconciler finds the tombstone.
    let r = app.reconciler();
    assert_eq!(drain(&r).await, 1);
    assert_eq!(app.mysql_seat(&event, "S0001").await, free_row());
    assert_eq!(app.mysql_booking(&id).await.as_deref(), Some("cancelled"));
    let b = app.booking_json(&event, &id, &app.admin()).await;
    assert_eq!(b["status"], "cancelled");
}

#[tokio::test]
async fn a_seat_booked_elsewhere_in_mysql_rejects_the_claim_and_redis_follows_mysql() {
    let (app, event) = spawn_stepped_app_with_event(3).await;
    let id = app.claim_seats(&event, "alice", &["S0001", "S0002"]).await;

    // MySQL, the system of record, has S0002 booked by another booking (say, written
    // by an earlier deployment): the claim cannot be persisted.
    let other = uuid::Uuid::now_v7().to_string();
    app.mysql_book(&event, "S0002", &other, "zed").await;

    let r = app.reconciler();
    let report = step(&r).await;
    assert_eq!(report.rejected, 1);

    let b = app
        .booking_json(&event, &id, &app.user_token("alice"))
        .await;
    assert_eq!(b["status"], "rejected");
    assert_eq!(b["reason"], "seats_taken");
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
    assert_eq!(app.seat_status(&event, "S0002").await, "booked");
    assert_eq!(app.mysql_seat(&event, "S0001").await, free_row());
    assert_eq!(app.audit(&event, false).await["consistent"], true);
    let e = app.event_json(&event).await;
    assert_eq!(counts(&e), (2, 0, 1));

    // A rejected booking cannot be cancelled, and alice's allowance is back.
    let r = app.cancel(&event, &id, &app.user_token("alice")).await;
    expect_error(r, StatusCode::CONFLICT, "booking_rejected").await;
    app.claim_ok(&event, "alice", &best_of(2)).await;
}

#[tokio::test]
async fn a_redelivered_claim_that_mysql_already_has_is_confirmed_without_a_second_write() {
    let (app, event) = spawn_stepped_app_with_event(2).await;
    let id = app.claim_seats(&event, "alice", &["S0001"]).await;
    let claim = Claim {
        event_id: event.clone(),
        booking_id: id.clone(),
        user_id: "alice".into(),
        seats: vec!["S0001".into()],
        hold: None,
    };
    let r = app.reconciler();

    // First delivery persists and confirms; the entry is not acknowledged (as if the
    // process died before XACK), so the outbox delivers it again.
    assert_eq!(r.settle(&claim).await.unwrap(), Settled::Confirmed);
    let report = step(&r).await;
    assert_eq!(report.already_settled, 1, "{report:?}");
    assert_eq!(app.mysql_confirmed(&event).await, 1);
    assert_eq!(app.mysql_seat(&event, "S0001").await, booked_row(&id));

    // Committed in MySQL but never confirmed in Redis (died between COMMIT and
    // confirm): the redelivery confirms.
    let id2 = app.claim_seats(&event, "bob", &["S0002"]).await;
    app.mysql_book(&event, "S0002", &id2, "bob").await;
    assert_eq!(app.seat_status(&event, "S0002").await, "pending");
    assert_eq!(drain(&r).await, 1);
    assert_eq!(app.seat_status(&event, "S0002").await, "booked");
    let b = app.booking_json(&event, &id2, &app.admin()).await;
    assert_eq!(b["status"], "confirmed");
    assert_eq!(app.mysql_confirmed(&event).await, 2);
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn warming_during_a_drop_keeps_pending_claims_and_never_offers_mysql_booked_seats() {
    let (app, event) = spawn_stepped_app_with_event(4).await;
    let held = app.claim_seats(&event, "alice", &["S0001"]).await;

    // MySQL has S0004 booked (e.g. sold at the box office).
    let other = uuid::Uuid::now_v7().to_string();
    app.mysql_book(&event, "S0004", &other, "zed").await;

    let r = app.warm(&event).await;
    let counts = expect_json(r, StatusCode::OK).await;
    assert_eq!(
        counts,
        json!({"event_id": event, "seats_total": 4, "available": 2, "pending": 1, "booked": 1})
    );
    assert_eq!(app.seat_status(&event, "S0001").await, "pending");
    assert_eq!(app.seat_status(&event, "S0004").await, "booked");
    let r = app.claim(&event, "bob", &pick(&["S0004"]), None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = app.claim(&event, "bob", &pick(&["S0001"]), None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // The held claim still goes through.
    drain(&app.reconciler()).await;
    assert_eq!(app.mysql_seat(&event, "S0001").await, booked_row(&held));
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn audit_finds_an_injected_divergence_and_repair_fixes_it() {
    let (app, event) = spawn_stepped_app_with_event(4).await;
    app.claim_seats(&event, "alice", &["S0001"]).await;
    let clean = app.audit(&event, false).await;
    assert_eq!(
        clean["consistent"], true,
        "a pending claim is not a divergence: {clean}"
    );

    app.redis_set_seat(&event, "S0002", "booked:ghost").await;
    let report = app.audit(&event, false).await;
    assert_eq!(report["consistent"], false);
    assert_eq!(
        report["divergences"],
        json!([{"seat": "S0002", "redis": "booked:ghost", "mysql": "available"}])
    );
    // Audit alone changes nothing.
    assert_eq!(app.audit(&event, false).await["consistent"], false);

    let repaired = app.audit(&event, true).await;
    assert_eq!(repaired["divergences"].as_array().unwrap().len(), 1);
    assert_eq!(app.audit(&event, false).await["consistent"], true);
    assert_eq!(app.seat_status(&event, "S0002").await, "available");
    assert_eq!(app.seat_status(&event, "S0001").await, "pending");
    app.claim_seats(&event, "bob", &["S0002"]).await;
}

#[tokio::test]
async fn events_that_are_not_warmed_are_not_on_sale() {
    let app = spawn_app().await;
    let id = app.event_id();
    let r = app
        .create_event(&json!({"id": id, "name": "Later", "seats": ["A1", "A2"]}))
        .await;
    let created = expect_json(r, StatusCode::CREATED).await;
    assert_eq!(
        created,
        json!({"id": id, "name": "Later", "seats_total": 2, "per_user_limit": 4})
    );

    assert_eq!(app.event(&id).await.status(), StatusCode::NOT_FOUND);
    let r = app.claim(&id, "alice", &pick(&["A1"]), None).await;
    expect_error(r, StatusCode::NOT_FOUND, "event_not_found").await;
    let r = app.get(&format!("/v1/events/{id}/seats")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    assert_eq!(app.warm(&id).await.status(), StatusCode::OK);
    assert_eq!(app.event(&id).await.status(), StatusCode::OK);
    let r = app.warm("no-such-event").await;
    expect_error(r, StatusCode::NOT_FOUND, "event_not_found").await;
}

/// Makes every write of a confirmed booking fail with the given MySQL error number, as
/// a server would (1205 lock wait timeout is transient; 1644 a plain refusal is not).
async fn fail_confirmed_writes(app: &TestApp, errno: u32) {
    sqlx::query("DROP TRIGGER IF EXISTS fail_confirmed")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TRIGGER fail_confirmed BEFORE INSERT ON bookings FOR EACH ROW \
         IF NEW.status = 'confirmed' THEN \
         SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = {errno}, MESSAGE_TEXT = 'injected failure'; \
         END IF"
    ))
    .execute(&app.db)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_permanent_database_failure_rejects_the_claim_and_rolls_redis_back() {
    let (app, event) = spawn_stepped_app_with_event(3).await;
    let id = app.claim_seats(&event, "alice", &["S0001"]).await;
    fail_confirmed_writes(&app, 1644).await;

    let report = step(&app.reconciler()).await;
    assert_eq!((report.rejected, report.retry), (1, 0), "{report:?}");
    let b = app.booking_json(&event, &id, &app.admin()).await;
    assert_eq!(status_and_reason(&b), ("rejected", "persist_failed"));
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
    assert_eq!(app.mysql_booking(&id).await.as_deref(), Some("rejected"));
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn transient_failures_are_retried_until_the_claim_deadline() {
    let (app, event) = spawn_stepped_app_with_event(3).await;
    let patient = app.claim_seats(&event, "alice", &["S0001"]).await;
    fail_confirmed_writes(&app, 1205).await;

    // Within the deadline: the claim stays pending and the entry unacknowledged.
    let r = app.reconciler();
    let report = step(&r).await;
    assert_eq!((report.retry, report.settled()), (1, 0), "{report:?}");
    assert_eq!(app.seat_status(&event, "S0001").await, "pending");
    // The failure passes: the retry (from the pending list) persists it.
    sqlx::query("DROP TRIGGER fail_confirmed")
        .execute(&app.db)
        .await
        .unwrap();
    let report = step(&r).await;
    assert_eq!(report.confirmed, 1, "{report:?}");
    assert_eq!(
        app.mysql_booking(&patient).await.as_deref(),
        Some("confirmed")
    );

    // Past the deadline, a claim that still fails is rejected, and says why.
    let late = app.claim_seats(&event, "bob", &["S0002"]).await;
    fail_confirmed_writes(&app, 1205).await;
    let impatient = Reconciler::new(
        app.redis.clone(),
        app.db.clone(),
        ReconcilerConfig {
            claim_deadline: Duration::ZERO,
            ..ReconcilerConfig::default()
        },
    )
    .unwrap();
    let report = step(&impatient).await;
    assert_eq!(report.rejected, 1, "{report:?}");
    let b = app.booking_json(&event, &late, &app.admin()).await;
    assert_eq!(status_and_reason(&b), ("rejected", "deadline_exceeded"));
    assert_eq!(app.seat_status(&event, "S0002").await, "available");
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn an_undecodable_outbox_entry_is_dead_lettered_and_its_booking_rejected() {
    let (app, event) = spawn_stepped_app_with_event(2).await;
    let id = app.claim_seats(&event, "alice", &["S0001"]).await;
    // Mangle the entry: same booking, seats field unreadable.
    let keys = app.redis.keys(&event);
    let mut conn = app.redis.connection();
    let _: i64 = redis::cmd("DEL")
        .arg(keys.outbox())
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(keys.outbox())
        .arg("*")
        .arg(&["b", id.as_str(), "u", "alice", "s", "not json"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = app.reconciler();
    let report = step(&r).await;
    assert_eq!(report.dead, 1, "{report:?}");
    let dead: usize = redis::cmd("XLEN")
        .arg(keys.dead_letters())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dead, 1);
    let b = app.booking_json(&event, &id, &app.admin()).await;
    assert_eq!(status_and_reason(&b), ("rejected", "malformed_claim"));
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
}

#[tokio::test]
async fn one_batch_settles_each_claim_on_its_own_merits() {
    let (app, event) = spawn_stepped_app_with_event(6).await;
    let claim = |user: &str, id: &str, seats: &[&str]| Claim {
        event_id: event.clone(),
        booking_id: id.to_owned(),
        user_id: user.to_owned(),
        seats: seats.iter().map(|s| s.to_string()).collect(),
        hold: None,
    };
    let a = app.claim_seats(&event, "a", &["S0001"]).await;
    let b = app.claim_seats(&event, "b", &["S0002"]).await;
    let c = app.claim_seats(&event, "c", &["S0003"]).await;
    let d = app.claim_seats(&event, "d", &["S0004"]).await;
    let e = app.claim_seats(&event, "e", &["S0005", "S0006"]).await;
    // b: MySQL has its seat booked by someone else. c: already committed (a redelivery).
    // d: cancelled while pending (a tombstone in MySQL).
    let other = uuid::Uuid::now_v7().to_string();
    for (id, user, seat) in [(&other, "zed", "S0002"), (&c, "c", "S0003")] {
        app.mysql_book(&event, seat, id, user).await;
    }
    assert_eq!(
        app.cancel(&event, &d, &app.user_token("d")).await.status(),
        StatusCode::OK
    );

    let batch = vec![
        claim("a", &a, &["S0001"]),
        claim("b", &b, &["S0002"]),
        claim("c", &c, &["S0003"]),
        claim("d", &d, &["S0004"]),
        claim("e", &e, &["S0005", "S0006"]),
    ];
    let outcomes = app.reconciler().settle_batch(&batch).await.unwrap();
    assert_eq!(
        outcomes,
        vec![
            Settled::Confirmed,
            Settled::Rejected(seatgate::domain::RejectReason::SeatsTaken),
            Settled::AlreadySettled(Some(seatgate::domain::BookingStatus::Confirmed)),
            Settled::AlreadySettled(Some(seatgate::domain::BookingStatus::Cancelled)),
            Settled::Confirmed,
        ]
    );
    for (id, seat) in [(&a, "S0001"), (&c, "S0003"), (&e, "S0005"), (&e, "S0006")] {
        assert_eq!(app.mysql_seat(&event, seat).await, booked_row(id));
        assert_eq!(app.seat_status(&event, seat).await, "booked");
    }
    assert_eq!(app.mysql_seat(&event, "S0004").await, free_row());
    assert_eq!(app.seat_status(&event, "S0004").await, "available");
    let rejected = app.booking_json(&event, &b, &app.admin()).await;
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(app.seat_status(&event, "S0002").await, "booked");
    // Settling the same batch again changes nothing (the outbox delivers at least once).
    let again = app.reconciler().settle_batch(&batch).await.unwrap();
    assert!(
        again
            .iter()
            .all(|s| matches!(s, Settled::AlreadySettled(_))),
        "{again:?}"
    );
    assert_eq!(app.mysql_confirmed(&event).await, 4);
    // The outbox entries themselves go through the batched step and are acknowledged.
    assert_eq!(drain(&app.reconciler()).await, 5);
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn a_seat_freed_by_a_rejection_goes_back_to_its_ordinal_place() {
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let seats = seat_ids(&["Z9", "A1", "M5", "B2"]);
    let event = app.event_with(&seats, 4).await;
    let (alice, taken) = app.claim_best(&event, "alice", 2).await;
    assert_eq!(taken, json!(["Z9", "A1"]));
    assert_eq!(app.claim_best(&event, "carol", 1).await.1, json!(["M5"]));
    // Meanwhile A1 was booked elsewhere: alice's claim is rejected, Z9 is free again.
    let other = uuid::Uuid::now_v7().to_string();
    app.mysql_book(&event, "A1", &other, "zoe").await;
    drain(&app.reconciler()).await;
    let b = app
        .booking_json(&event, &alice, &app.user_token("alice"))
        .await;
    assert_eq!(b["status"], "rejected");
    let statuses = ["available", "booked", "booked", "available"];
    assert_eq!(app.seat_statuses(&event).await, listed(&seats, &statuses));
    assert_eq!(app.claim_best(&event, "bob", 1).await.1, json!(["Z9"]));
    assert_eq!(app.claim_best(&event, "dave", 1).await.1, json!(["B2"]));
}

#[tokio::test]
async fn seats_freed_by_cancellations_go_back_to_their_ordinal_places() {
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let seats = seat_ids(&["Z9", "A1", "M5", "B2", "C3"]);
    let event = app.event_with(&seats, 4).await;
    let (alice, _) = app.claim_best(&event, "alice", 1).await; // Z9
    app.claim_best(&event, "bob", 1).await; // A1
    drain(&app.reconciler()).await; // both confirmed
    let (carol, taken) = app.claim_best(&event, "carol", 2).await;
    assert_eq!(taken, json!(["M5", "B2"]));
    // Cancel a confirmed booking and a pending one.
    for (user, id) in [("alice", &alice), ("carol", &carol)] {
        let r = app.cancel(&event, id, &app.user_token(user)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Carol's claim meets its tombstone.
    drain(&app.reconciler()).await;
    // Listed in best-available order, and handed out in it.
    let statuses = ["available", "booked", "available", "available", "available"];
    assert_eq!(app.seat_statuses(&event).await, listed(&seats, &statuses));
    assert_eq!(
        app.claim_best(&event, "dave", 3).await.1,
        json!(["Z9", "M5", "B2"])
    );
}

#[tokio::test]
async fn audit_repair_puts_seats_back_in_their_ordinal_places() {
    use redis::AsyncCommands;
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let seats = seat_ids(&["D0", "C1", "B2", "A3"]);
    let event = app.event_with(&seats, 4).await;
    // Redis says C1 is booked by a booking MySQL never had, and lost the order list.
    app.redis_set_seat(&event, "C1", "booked:ghost").await;
    let keys = app.redis.keys(&event);
    let mut conn = app.redis.connection();
    let _: i64 = conn.zrem(keys.avail(), "C1").await.unwrap();
    let _: i64 = conn.del(keys.order()).await.unwrap();
    let report = app.audit(&event, false).await;
    assert_eq!(
        report["divergences"],
        json!([{"seat": "C1", "redis": "booked:ghost", "mysql": "available"}]),
        "a lost order list is no divergence of state"
    );

    let report = app.audit(&event, true).await;
    assert_eq!(report["repaired"], true);
    assert_eq!(app.audit(&event, false).await["consistent"], true);
    let score: Option<f64> = conn.zscore(keys.avail(), "C1").await.unwrap();
    assert_eq!(score, Some(1.0));
    assert_eq!(app.seat_order(&event).await, seats);
    assert_eq!(
        app.claim_best(&event, "alice", 2).await.1,
        json!(["D0", "C1"])
    );
}

/// Alice's confirmed booking of S0001 and S0002 (limit 2), cancelled in MySQL by a
/// cancel whose process died before `cancel.lua`: Redis still shows it confirmed.
async fn a_cancel_lost_after_its_commit(app: &TestApp) -> (String, String) {
    let event = app.event_with(&seat_names(3), 2).await;
    let id = app.claim_seats(&event, "alice", &["S0001", "S0002"]).await;
    app.settled(&event).await;
    sqlx::query("UPDATE bookings SET status = 'cancelled' WHERE id = ?")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE seats SET status = 'available', booking_id = NULL WHERE event_id = ? AND booking_id = ?",
    )
    .bind(&event)
    .bind(&id)
    .execute(&app.db)
    .await
    .unwrap();
    (event, id)
}

/// After the heal: the seats are free, the booking reads cancelled, and Alice's tally
/// no longer counts its seats (the full limit of 2 is hers again).
async fn the_lost_cancel_is_finished(app: &TestApp, event: &str, id: &str) {
    assert_eq!(app.seat_status(event, "S0001").await, "available");
    assert_eq!(app.seat_status(event, "S0002").await, "available");
    let r = app.get_booking(event, id, &app.user_token("alice")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");
    let again = app.claim_seats(event, "alice", &["S0001", "S0002"]).await;
    app.settled(event).await;
    assert_eq!(app.mysql_seat(event, "S0002").await, booked_row(&again));
    assert_eq!(app.audit(event, false).await["consistent"], true);
}

#[tokio::test]
async fn audit_repair_finishes_a_cancel_that_died_between_its_commit_and_redis() {
    let app = spawn_app().await;
    let (event, id) = a_cancel_lost_after_its_commit(&app).await;
    let report = app.audit(&event, true).await;
    assert_eq!(
        report["divergences"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    assert_eq!(app.audit(&event, false).await["consistent"], true);
    the_lost_cancel_is_finished(&app, &event, &id).await;
}

#[tokio::test]
async fn warm_finishes_a_cancel_that_died_between_its_commit_and_redis() {
    // Found by `lua_model`: warm copied the seats of such a booking from MySQL
    // (available) and left its record `confirmed` and its seats on the owner's tally, so
    // Redis kept answering it confirmed, its seats were sold again, and no audit saw a
    // divergence any more.
    let app = spawn_app().await;
    let (event, id) = a_cancel_lost_after_its_commit(&app).await;
    assert_eq!(app.warm(&event).await.status(), StatusCode::OK);
    the_lost_cancel_is_finished(&app, &event, &id).await;
}

//! Claims Redis forgot part of: a booking record lost after the claim (an eviction, a
//! restart from older data, a failover), with or without its outbox entry, before or
//! after MySQL committed it. Every such claim ends settled, and its owner's GET says
//! how (never 404, never pending for ever); the seats end in MySQL's state.
//!
//! The losses are made by deleting keys or stream entries of the test's own namespace
//! behind the gateway's back, on the shared Redis.

use redis::AsyncCommands;
use reqwest::StatusCode;
use seatgate::reconciler::{Reconciler, ReconcilerConfig, StepReport};
use serde_json::Value;
use std::time::Duration;

use crate::helpers::*;
use crate::metrics::{scrape, value};

async fn step(r: &Reconciler) -> StepReport {
    r.step(Duration::from_millis(50)).await.unwrap()
}

/// Runs reconciler steps until one settles nothing; returns what they did in total.
async fn drain(r: &Reconciler) -> StepReport {
    let mut total = StepReport::default();
    loop {
        let report = step(r).await;
        assert_eq!(report.retry, 0, "{report:?}");
        if report.settled() == 0 {
            return total;
        }
        total.confirmed += report.confirmed;
        total.rejected += report.rejected;
        total.already_settled += report.already_settled;
    }
}

/// A booking's status and reason (empty when it has none).
fn status_and_reason(booking: &Value) -> (String, String) {
    let field = |name: &str| booking[name].as_str().unwrap_or_default().to_owned();
    (field("status"), field("reason"))
}

fn rejected_lost() -> (String, String) {
    ("rejected".into(), "lost_in_redis_failover".into())
}

impl TestApp {
    /// Redis loses the booking's record.
    async fn lose_record(&self, event: &str, booking: &str) {
        let mut conn = self.redis.connection();
        let n: i64 = conn
            .del(self.redis.keys(event).booking(booking))
            .await
            .unwrap();
        assert_eq!(n, 1, "the record was there");
    }

    /// Redis loses the outbox entries of the event, but those of `keep`.
    async fn lose_outbox_entries(&self, event: &str, keep: &[&str]) {
        let outbox = self.redis.keys(event).outbox();
        let mut conn = self.redis.connection();
        let entries: redis::streams::StreamRangeReply = conn.xrange_all(&outbox).await.unwrap();
        let lost: Vec<String> = entries
            .ids
            .into_iter()
            .filter(|e| !keep.contains(&e.get::<String>("b").unwrap().as_str()))
            .map(|e| e.id)
            .collect();
        assert!(!lost.is_empty(), "entries to lose");
        let _: i64 = conn.xdel(&outbox, &lost).await.unwrap();
    }

    /// The booking as Redis alone has it (GET falls back to MySQL without a record).
    async fn redis_booking(&self, event: &str, booking: &str) -> Option<(String, String)> {
        self.redis
            .booking(event, booking)
            .await
            .unwrap()
            .map(|b| (b.status.to_string(), b.reason.unwrap_or_default()))
    }

    async fn status_of(&self, event: &str, booking: &str, user: &str) -> (String, String) {
        let b = self
            .booking_json(event, booking, &self.user_token(user))
            .await;
        status_and_reason(&b)
    }
}

#[tokio::test]
async fn a_claim_whose_record_redis_lost_is_rejected_lost_in_redis_failover_not_404() {
    let (app, event) = spawn_stepped_app_with_event(4).await;
    let lost = app.claim_seats(&event, "alice", &["S0001", "S0002"]).await;
    let kept = app.claim_seats(&event, "bob", &["S0003"]).await;
    // Meanwhile MySQL has S0002 booked by another booking: "MySQL's state" differs by
    // seat. Then Redis loses alice's record; her seats, tally and outbox entry remain.
    let other = uuid::Uuid::now_v7().to_string();
    app.mysql_book(&event, "S0002", &other, "zed").await;
    app.lose_record(&event, &lost).await;

    let report = drain(&app.reconciler()).await;
    assert_eq!((report.confirmed, report.rejected), (1, 1), "{report:?}");

    // The owner is told what happened, from Redis and, were Redis to lose the record
    // again, from MySQL.
    assert_eq!(app.status_of(&event, &lost, "alice").await, rejected_lost());
    assert_eq!(
        app.redis_booking(&event, &lost).await,
        Some(rejected_lost())
    );
    assert_eq!(app.mysql_booking(&lost).await.as_deref(), Some("rejected"));
    app.lose_record(&event, &lost).await;
    assert_eq!(app.status_of(&event, &lost, "alice").await, rejected_lost());

    // Seats in MySQL's state, in both stores; bob's claim went through.
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
    assert_eq!(app.mysql_seat(&event, "S0001").await, free_row());
    assert_eq!(app.seat_status(&event, "S0002").await, "booked");
    assert_eq!(app.mysql_seat(&event, "S0002").await, booked_row(&other));
    assert_eq!(app.status_of(&event, &kept, "bob").await.0, "confirmed");
    assert_eq!(counts(&app.event_json(&event).await), (2, 0, 2));
    assert_eq!(app.audit(&event, false).await["consistent"], true);
    // Her tally let go of the lost claim: her whole allowance is hers again.
    let r = app.claim(&event, "alice", &best_of(2), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_confirm_after_commit_that_finds_the_record_lost_restores_it_from_mysql() {
    let (app, event) = spawn_stepped_app_with_event(4).await;
    let (_, before) = scrape(&app).await;
    let id = app.claim_seats(&event, "alice", &["S0001", "S0002"]).await;
    // MySQL committed the booking (its confirm never reached Redis) ...
    for seat in ["S0001", "S0002"] {
        sqlx::query(
            "UPDATE seats SET status = 'booked', booking_id = ? WHERE event_id = ? AND seat_id = ?",
        )
        .bind(&id)
        .bind(&event)
        .bind(seat)
        .execute(&app.db)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO bookings (id, event_id, user_id, status, seats) \
         VALUES (?, ?, 'alice', 'confirmed', JSON_ARRAY('S0001', 'S0002'))",
    )
    .bind(&id)
    .bind(&event)
    .execute(&app.db)
    .await
    .unwrap();
    // ... and Redis lost the record and the tally entry, and holds S0002 as available
    // (older data).
    let k = app.redis.keys(&event);
    app.lose_record(&event, &id).await;
    let mut conn = app.redis.connection();
    let _: i64 = conn.hdel(k.user("alice"), &id).await.unwrap();
    app.redis_set_seat(&event, "S0002", "available").await;
    let _: i64 = conn.zadd(k.avail(), "S0002", 1).await.unwrap();
    let _: i64 = conn.hincr(k.meta(), "pending", -1).await.unwrap();
    assert_eq!(counts(&app.event_json(&event).await), (3, 1, 0));

    // The redelivery finds MySQL's booking and confirms; confirm.lua finds no record.
    let report = drain(&app.reconciler()).await;
    assert_eq!(report.already_settled, 1, "{report:?}");

    // Redis has it all again: record, seats, counters, tally.
    assert_eq!(
        app.redis_booking(&event, &id).await,
        Some(("confirmed".into(), String::new()))
    );
    assert_eq!(app.status_of(&event, &id, "alice").await.0, "confirmed");
    for seat in ["S0001", "S0002"] {
        assert_eq!(app.seat_status(&event, seat).await, "booked", "{seat}");
    }
    let r = app.claim(&event, "bob", &pick(&["S0002"]), None).await;
    expect_error(r, StatusCode::CONFLICT, "seats_unavailable").await;
    assert_eq!(counts(&app.event_json(&event).await), (2, 0, 2));
    // The per-user limit (4) counts the restored booking: 2 held, 3 more is too many.
    let r = app.claim(&event, "alice", &best_of(3), None).await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "user_limit_exceeded").await;
    assert_eq!(app.audit(&event, false).await["consistent"], true);
    let (_, after) = scrape(&app).await;
    let restored = "seatgate_bookings_restored_total";
    assert!(
        value(&after, restored) > value(&before, restored),
        "{restored} counted it"
    );
}

#[tokio::test]
async fn the_sweeper_settles_claims_whose_outbox_entry_is_lost_and_leaves_young_ones_alone() {
    let (app, event) = spawn_stepped_app_with_event(6).await;
    let old = app.claim_seats(&event, "alice", &["S0001"]).await;
    let young = app.claim_seats(&event, "bob", &["S0002"]).await;
    let committed = app.claim_seats(&event, "carol", &["S0003"]).await;
    let queued = app.claim_seats(&event, "dave", &["S0004"]).await;
    // alice's claim is old (made at the epoch); carol's was committed in MySQL and
    // Redis lost its record; dave's record is lost too, but his outbox entry is not.
    // Every other outbox entry is lost.
    let k = app.redis.keys(&event);
    let mut conn = app.redis.connection();
    let _: i64 = conn.hset(k.booking(&old), "created_ms", 1).await.unwrap();
    app.mysql_book(&event, "S0003", &committed, "carol").await;
    app.lose_record(&event, &committed).await;
    app.lose_record(&event, &queued).await;
    app.lose_outbox_entries(&event, &[queued.as_str()]).await;

    let r = app.reconciler();
    let report = r.sweep().await.unwrap();
    assert_eq!(report.passes_completed, 1, "{report:?}");
    assert_eq!(
        (report.settled, report.young, report.searching),
        (2, 1, 0),
        "{report:?}"
    );

    // alice: rejected, deadline exceeded, recorded; her seat free in both stores.
    let deadline = ("rejected".to_owned(), "deadline_exceeded".to_owned());
    assert_eq!(app.status_of(&event, &old, "alice").await, deadline);
    assert_eq!(app.mysql_booking(&old).await.as_deref(), Some("rejected"));
    assert_eq!(app.seat_status(&event, "S0001").await, "available");
    // carol: MySQL has it confirmed, and so has Redis again.
    assert_eq!(
        app.redis_booking(&event, &committed).await,
        Some(("confirmed".into(), String::new()))
    );
    assert_eq!(app.seat_status(&event, "S0003").await, "booked");
    // bob: young, untouched.
    assert_eq!(app.status_of(&event, &young, "bob").await.0, "pending");
    assert_eq!(app.seat_status(&event, "S0002").await, "pending");
    // dave: left to the reconciler, which reads his entry and knows his claim is lost.
    assert_eq!(app.seat_status(&event, "S0004").await, "pending");
    assert_eq!(drain(&r).await.rejected, 1);
    assert_eq!(
        app.status_of(&event, &queued, "dave").await,
        rejected_lost()
    );
    assert_eq!(app.seat_status(&event, "S0004").await, "available");

    // Nothing more to do; the young claim is still left alone.
    let again = r.sweep().await.unwrap();
    assert_eq!((again.settled, again.young), (0, 1), "{again:?}");
    assert_eq!(counts(&app.event_json(&event).await), (4, 1, 1));
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn the_reconcilers_run_loop_sweeps_a_claim_whose_record_and_outbox_entry_are_lost() {
    let (app, event) = spawn_stepped_app_with_event(4).await;
    let (_, before) = scrape(&app).await;
    let lost = app.claim_seats(&event, "alice", &["S0001", "S0002"]).await;
    let young = app.claim_seats(&event, "bob", &["S0003"]).await;
    let other = uuid::Uuid::now_v7().to_string();
    app.mysql_book(&event, "S0002", &other, "zed").await;
    // Redis loses alice's record and every outbox entry: nothing is on its way to
    // settle either claim; only alice's tally and seats remember hers.
    app.lose_record(&event, &lost).await;
    app.lose_outbox_entries(&event, &[]).await;

    let reconciler = Reconciler::new(
        app.redis.clone(),
        app.db.clone(),
        ReconcilerConfig {
            block: Duration::from_millis(50),
            sweep_every: Duration::from_millis(100),
            ..ReconcilerConfig::default()
        },
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(reconciler.run(async move {
        let _ = stopped.await;
    }));

    eventually(
        "the lost claim's seats are back to MySQL's state",
        Duration::from_secs(120),
        || async {
            let seats = app.seat_statuses(&event).await;
            let state = |seat: &str| seats.iter().find(|(s, _)| s == seat).unwrap().1.clone();
            (state("S0001") == "available" && state("S0002") == "booked").then_some(())
        },
    )
    .await;
    let _ = stop.send(());
    running.await.unwrap();

    // Her owner was found (her tally): she is told, from Redis and MySQL alike.
    assert_eq!(app.status_of(&event, &lost, "alice").await, rejected_lost());
    assert_eq!(app.mysql_booking(&lost).await.as_deref(), Some("rejected"));
    assert_eq!(app.mysql_seat(&event, "S0001").await, free_row());
    // The young claim is left alone.
    assert_eq!(app.status_of(&event, &young, "bob").await.0, "pending");
    assert_eq!(app.seat_status(&event, "S0003").await, "pending");
    assert_eq!(counts(&app.event_json(&event).await), (2, 1, 1));
    assert_eq!(app.audit(&event, false).await["consistent"], true);
    let (_, after) = scrape(&app).await;
    let swept = r#"seatgate_sweeper_seats_total{outcome="lost_in_redis_failover"}"#;
    assert!(
        value(&after, swept) >= value(&before, swept) + 2.0,
        "{swept}: {} then {}",
        value(&before, swept),
        value(&after, swept)
    );
}

#[tokio::test]
async fn a_lost_claim_whose_owner_nothing_names_is_still_swept() {
    let (app, event) = spawn_stepped_app_with_event(3).await;
    let lost = app.claim_seats(&event, "alice", &["S0001"]).await;
    // Record, outbox entry and tally entry all lost: only the seat remembers the claim.
    app.lose_record(&event, &lost).await;
    app.lose_outbox_entries(&event, &[]).await;
    let mut conn = app.redis.connection();
    let _: i64 = conn
        .hdel(app.redis.keys(&event).user("alice"), &lost)
        .await
        .unwrap();

    // The owner search walks the whole keyspace (the shared Redis's), a slice a tick.
    let r = app.reconciler();
    eventually(
        "the sweeper freed the seat",
        Duration::from_secs(120),
        || async {
            r.sweep().await.unwrap();
            (app.seat_status(&event, "S0001").await == "available").then_some(())
        },
    )
    .await;
    // Rejected and recorded with no owner: the admin sees it; no user can be named.
    let b = app.booking_json(&event, &lost, &app.admin()).await;
    assert_eq!(status_and_reason(&b), rejected_lost());
    assert_eq!(b["user_id"], "");
    assert_eq!(app.mysql_booking(&lost).await.as_deref(), Some("rejected"));
    assert_eq!(counts(&app.event_json(&event).await), (3, 0, 0));
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

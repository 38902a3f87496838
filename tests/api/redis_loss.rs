//! Claims Redis forgot part of: a booking record lost after the claim (an eviction, a
//! restart from older data, a failover), with or without its outbox entry, before or
//! after MySQL committed it. Every such claim ends settled, and its owner's GET says
//! how (never 404, never pending for ever); the seats end in MySQL's state.
//!
//! The losses are made by deleting keys or stream entries of the test's own namespace
//! behind the gateway's back, on the shared Redis.

use redis::AsyncCommands;
use reqwest::StatusCode;
use seatgate::reconciler::{Reconciler, StepReport};
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

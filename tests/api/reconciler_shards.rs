//! The reconciler reads each event's outbox on its own (issue 12): one event whose
//! outbox cannot be read, or whose claims are stuck in MySQL, holds up no other event.
//! Both tests run the gateway's own reconciler (`Reconciler::run`), as in production.

use redis::AsyncCommands;
use std::time::Duration;

use crate::helpers::*;

/// How long a claim may take to be confirmed in MySQL while nothing is wrong with its
/// event (it takes well under a second; the margin is for a loaded test machine).
const USUAL: Duration = Duration::from_secs(10);

/// Claims `seat` on every event (202 each) and waits until MySQL has every booking
/// confirmed.
async fn claim_and_confirm(app: &TestApp, events: &[String], seat: &str, what: &str) {
    let mut bookings = Vec::new();
    for event in events {
        bookings.push(app.claim_seats(event, "alice", &[seat]).await);
    }
    eventually(what, USUAL, || async {
        for booking in &bookings {
            if app.mysql_booking(booking).await.as_deref() != Some("confirmed") {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_outbox_stalls_no_other_event() {
    let app = spawn_app().await;
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(app.event_with(&seat_names(8), 8).await);
    }
    let (broken, healthy) = events.split_first().unwrap();
    claim_and_confirm(&app, &events, "S0001", "the first claims are confirmed").await;

    // The broken event's outbox becomes a plain string: every XREADGROUP (and XGROUP,
    // XAUTOCLAIM, XLEN) naming it fails with WRONGTYPE.
    let outbox = app.redis.keys(broken).outbox();
    let mut conn = app.redis.connection();
    let _: i64 = conn.del(&outbox).await.unwrap();
    let () = conn.set(&outbox, "not a stream").await.unwrap();

    claim_and_confirm(
        &app,
        healthy,
        "S0002",
        "the other events' claims are confirmed beside an unreadable outbox",
    )
    .await;
    // Still so after the reconciler has failed on the broken outbox for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    claim_and_confirm(
        &app,
        healthy,
        "S0003",
        "the other events' claims are still confirmed",
    )
    .await;

    // Repaired (the string removed), the broken event's worker recovers: the claim's
    // XADD makes a new stream, the reconciler recreates its group and settles it.
    let _: i64 = conn.del(&outbox).await.unwrap();
    let booking = app.claim_seats(broken, "alice", &["S0002"]).await;
    eventually(
        "the repaired event's claim is confirmed",
        Duration::from_secs(30),
        || async {
            (app.mysql_booking(&booking).await.as_deref() == Some("confirmed")).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stalled_in_mysql_stalls_no_other_event() {
    let app = spawn_app().await;
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(app.event_with(&seat_names(8), 8).await);
    }
    let (stalled, healthy) = events.split_first().unwrap();
    claim_and_confirm(&app, &events, "S0001", "the first claims are confirmed").await;

    // Another transaction holds every seat row of one event: its claims' settles wait.
    let blocker = app.lock_seats(stalled).await;
    let waiting = app.claim_seats(stalled, "alice", &["S0002"]).await;
    // Let the reconciler read it and start waiting on the locks.
    tokio::time::sleep(Duration::from_millis(300)).await;

    claim_and_confirm(
        &app,
        healthy,
        "S0002",
        "the other events' claims are confirmed while one event waits on MySQL locks",
    )
    .await;
    assert_eq!(
        app.mysql_booking(&waiting).await,
        None,
        "the stalled event's claim really waited on the locks"
    );

    blocker.rollback().await.unwrap();
    eventually(
        "the stalled event's claim is confirmed once the locks are gone",
        Duration::from_secs(60),
        || async {
            (app.mysql_booking(&waiting).await.as_deref() == Some("confirmed")).then_some(())
        },
    )
    .await;
}

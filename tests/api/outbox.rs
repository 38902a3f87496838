//! The outbox streams and their consumer group, when Redis loses one of them.

use redis::AsyncCommands;
use serde_json::json;
use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_vanished_outbox_stalls_no_event() {
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let reconciler = app.reconciler();
    let lost = app.event_with(&seat_names(4), 4).await;
    let other = app.event_with(&seat_names(4), 4).await;
    let owner = app.user_token("alice");
    let confirmed = |event: &str, booking: &str| {
        let (event, booking, owner) = (event.to_owned(), booking.to_owned(), owner.clone());
        let app = &app;
        async move {
            let r = app.get_booking(&event, &booking, &owner).await;
            let body: serde_json::Value = r.json().await.unwrap();
            body["status"] == "confirmed"
        }
    };

    // A claim on each event, then reconciler steps until both are confirmed.
    let claim_both_and_settle = |seat: &'static str, what: &'static str| {
        let (lost, other) = (lost.clone(), other.clone());
        let (app, reconciler, confirmed) = (&app, &reconciler, &confirmed);
        async move {
            for event in [&other, &lost] {
                let booking = app
                    .claim_ok(event, "alice", &json!({ "seats": [seat] }))
                    .await;
                eventually(what, Duration::from_secs(20), || async {
                    // A step that meets a lost group recreates it and goes on.
                    reconciler.step(Duration::from_millis(50)).await.unwrap();
                    confirmed(event, &booking).await.then_some(())
                })
                .await;
            }
        }
    };
    // Settled once on each event, so the reconciler knows both groups.
    claim_both_and_settle("S0001", "the first claims are confirmed").await;

    // Redis loses one event's outbox (stream and consumer group).
    let mut conn = app.redis.connection();
    let _: i64 = conn.del(app.redis.keys(&lost).outbox()).await.unwrap();

    claim_both_and_settle("S0002", "claims settle after an outbox vanished").await;
}

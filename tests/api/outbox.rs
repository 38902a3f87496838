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

    // A claim on each event settles, so the reconciler knows both groups.
    let first = [
        (
            lost.clone(),
            app.claim_ok(&lost, "alice", &json!({"seats": ["S0001"]}))
                .await,
        ),
        (
            other.clone(),
            app.claim_ok(&other, "alice", &json!({"seats": ["S0001"]}))
                .await,
        ),
    ];
    for (event, booking) in &first {
        eventually(
            "the first claims are confirmed",
            Duration::from_secs(20),
            || async {
                reconciler.step(Duration::from_millis(50)).await.unwrap();
                confirmed(event, booking).await.then_some(())
            },
        )
        .await;
    }

    // Redis loses one event's outbox (stream and consumer group).
    let mut conn = app.redis.connection();
    let _: i64 = conn.del(app.redis.keys(&lost).outbox()).await.unwrap();

    let next = [
        (
            other.clone(),
            app.claim_ok(&other, "alice", &json!({"seats": ["S0002"]}))
                .await,
        ),
        (
            lost.clone(),
            app.claim_ok(&lost, "alice", &json!({"seats": ["S0002"]}))
                .await,
        ),
    ];
    for (event, booking) in &next {
        eventually(
            "claims settle after an outbox vanished",
            Duration::from_secs(20),
            || async {
                // The step that meets the lost group recreates it and goes on.
                reconciler.step(Duration::from_millis(50)).await.unwrap();
                confirmed(event, booking).await.then_some(())
            },
        )
        .await;
    }
}

//! One Redis namespace belongs to one MySQL database: two deployments pointed at one
//! Redis by mistake (staging and production, say) must not settle each other's claims.

use redis::AsyncCommands;
use serde_json::Value;
use std::time::Duration;

use seatgate::reconciler::{Reconciler, ReconcilerConfig, StepReport};
use seatgate::startup::Application;

use crate::helpers::*;

#[tokio::test]
async fn a_gateway_refuses_a_namespace_that_another_database_owns() {
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let other = ScratchDatabase::new();
    let mut settings = app.settings.clone();
    settings.database_url = other.url.clone();

    let err = match Application::build(settings).await {
        Ok(_) => panic!("a second database was given the namespace of the first"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains(app.db_name()) && err.contains(&other.name),
        "the message names both databases: {err}"
    );

    // The owner itself may start as often as it likes (several gateways, restarts).
    Application::build(app.settings.clone())
        .await
        .expect("the owning database's gateway starts again");
}

#[tokio::test]
async fn a_reconciler_leaves_the_claims_of_events_its_database_does_not_have() {
    let (app, event) = spawn_stepped_app_with_event(2).await;
    let booking = app.claim_seats(&event, "alice", &["S0001"]).await;

    // Another deployment's reconciler on the same namespace (started without the
    // gateway's check, as a stale process might be).
    let other = ScratchDatabase::new();
    let pool = seatgate::db::connect_and_migrate(&other.url, 4)
        .await
        .unwrap();
    let stranger = Reconciler::new(app.redis.clone(), pool, ReconcilerConfig::default()).unwrap();
    for _ in 0..3 {
        let report = stranger.step(Duration::from_millis(50)).await.unwrap();
        assert_eq!(report, StepReport::default(), "it settles nothing");
    }
    let r = app
        .get_booking(&event, &booking, &app.user_token("alice"))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "pending");
    // The entry was not even delivered: it waits, untouched, for the owner.
    let outbox = app.redis.keys(&event).outbox();
    let mut conn = app.redis.connection();
    let length: u64 = conn.xlen(&outbox).await.unwrap();
    let delivered: redis::streams::StreamPendingReply =
        conn.xpending(&outbox, "reconcilers").await.unwrap();
    assert_eq!((length, delivered.count()), (1, 0));

    let owner = app.reconciler();
    eventually(
        "the owner's reconciler confirms the claim",
        Duration::from_secs(20),
        || async {
            owner.step(Duration::from_millis(50)).await.unwrap();
            let r = app
                .get_booking(&event, &booking, &app.user_token("alice"))
                .await;
            (r.json::<Value>().await.unwrap()["status"] == "confirmed").then_some(())
        },
    )
    .await;
}

//! Replication group commit (`SEATGATE_REDIS_MIN_REPLICAS`): a claim is answered 202
//! only once a replica holds it; a replica that does not confirm in time makes the
//! claim a 503 whose retry, with the same Idempotency-Key, replays it; concurrent
//! claims share `WAIT` rounds.
//!
//! Each test runs a private primary and replica (`seatgate_sandbox::ReplicatedRedis`)
//! and stalls (SIGSTOP) or kills only that replica. Skipped (or failed under
//! `SEATGATE_REQUIRE_SERVERS=1`) without `redis-server`.

use redis::AsyncCommands;
use reqwest::StatusCode;
use seatgate::claims::replication::{GroupCommit, ReplicationError};
use seatgate::claims::RedisStore;
use seatgate_sandbox::{PrivateRedis, ReplicatedRedis};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::common::redis_server_installed;
use crate::helpers::*;

/// A primary with one replica, and a gateway on the primary that needs the replica to
/// hold each claim (waiting `timeout` for it, below the tests' 5 s Redis call bound).
/// No reconciler: claims stay `pending`.
async fn replicated_app(timeout: Duration) -> Option<(ReplicatedRedis, TestApp)> {
    if !redis_server_installed() {
        return None;
    }
    let group = ReplicatedRedis::start(1, 0)
        .await
        .expect("a primary and a replica start");
    let app = spawn_app_with(|s| {
        s.redis_url = group.primary.url();
        s.durability.min_replicas = 1;
        s.durability.replication_timeout = timeout;
        s.reconciler = false;
    })
    .await;
    Some((group, app))
}

async fn conn(redis: &PrivateRedis) -> redis::aio::MultiplexedConnection {
    raw_redis(&redis.url()).await
}

/// The status field of a booking record on `node`, if it has the record.
async fn record_status(
    app: &TestApp,
    node: &PrivateRedis,
    event: &str,
    booking: &str,
) -> Option<String> {
    let key = app.redis.keys(event).booking(booking);
    conn(node).await.hget(key, "status").await.unwrap()
}

/// The state of `seat` in Redis on `node` (`pending:<booking id>`, …).
async fn seat_state(app: &TestApp, node: &PrivateRedis, event: &str, seat: &str) -> String {
    let key = app.redis.keys(event).seats();
    let state: Option<String> = conn(node).await.hget(key, seat).await.unwrap();
    state.unwrap_or_default()
}

async fn booking_id(r: reqwest::Response) -> String {
    let body = expect_json(r, StatusCode::ACCEPTED).await;
    body["booking_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_replica_required_a_claim_is_answered_only_once_the_replica_holds_it() {
    let Some((mut group, app)) = replicated_app(Duration::from_secs(4)).await else {
        return;
    };
    let event = app.event_with(&seat_names(20), 4).await;

    // A stalled replica: the claim runs on the primary, but its 202 waits.
    group.replicas[0].pause().unwrap();
    let claim = {
        let (base, client, token) = (
            app.base.clone(),
            app.client.clone(),
            app.user_token("stalled"),
        );
        let path = format!("{base}/v1/events/{event}/bookings");
        tokio::spawn(async move {
            client
                .post(path)
                .bearer_auth(token)
                .json(&pick(&["S0001"]))
                .send()
                .await
                .unwrap()
        })
    };
    eventually(
        "the primary ran the claim",
        Duration::from_secs(10),
        || async {
            let state = seat_state(&app, &group.primary, &event, "S0001").await;
            state.starts_with("pending:").then_some(())
        },
    )
    .await;
    // Showing that something does not happen takes a wait: without group commit the
    // 202 is on its way within a millisecond of the script.
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        while !claim.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "a claim was answered while its replica could not have it"
    );
    group.replicas[0].resume().unwrap();
    let booking = booking_id(claim.await.unwrap()).await;
    assert_eq!(
        record_status(&app, &group.replicas[0], &event, &booking)
            .await
            .as_deref(),
        Some("pending"),
        "the replica holds the claim it was answered for"
    );

    // And claim by claim: each 202's booking is on the replica the moment it arrives.
    for i in 2..=10 {
        let seat = format!("S{i:04}");
        let r = app
            .claim(&event, &format!("user{i}"), &pick(&[&seat]), None)
            .await;
        let booking = booking_id(r).await;
        assert_eq!(
            record_status(&app, &group.replicas[0], &event, &booking)
                .await
                .as_deref(),
            Some("pending"),
            "{seat}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_its_replica_does_not_confirm_is_503_and_its_retry_replays_it() {
    // Each claim while the replica is dead waits this long; a healthy replica on a
    // loaded machine has answered well within it.
    let Some((mut group, app)) = replicated_app(Duration::from_secs(1)).await else {
        return;
    };
    let event = app.event_with(&seat_names(10), 4).await;
    let body = pick(&["S0001"]);

    group.replicas[0].kill();
    let r = app.claim(&event, "alice", &body, Some("key-1")).await;
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    // The claim ran on the primary: the 503 is indeterminate, not a refusal.
    let state = seat_state(&app, &group.primary, &event, "S0001").await;
    let first = state
        .strip_prefix("pending:")
        .unwrap_or_else(|| panic!("S0001 is {state:?} on the primary"))
        .to_owned();

    // A replay would be a 202 too, so it waits for the replica as well.
    let r = app.claim(&event, "alice", &body, Some("key-1")).await;
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let r = app.claim(&event, "bob", &pick(&["S0002"]), None).await;
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    // Answers that are final without a replica are not held up.
    let r = app.claim(&event, "carol", &body, None).await;
    expect_error(r, StatusCode::CONFLICT, "seats_unavailable").await;

    group.replicas[0].restart().await.unwrap();
    group
        .wait_replicas_in_sync(Instant::now() + Duration::from_secs(20))
        .await
        .unwrap();
    let r = app.claim(&event, "alice", &body, Some("key-1")).await;
    assert_eq!(
        booking_id(r).await,
        first,
        "the retry answers the claim the 503 was about"
    );
    assert_eq!(
        record_status(&app, &group.replicas[0], &event, &first)
            .await
            .as_deref(),
        Some("pending")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_claims_share_few_waits() {
    let Some((group, app)) = replicated_app(Duration::from_secs(4)).await else {
        return;
    };
    let event = app.event_with(&seat_names(400), 4).await;
    let commit = app.group_commit.clone().expect("min replicas 1 has rounds");
    let before = commit.stats();

    let claims: Vec<(String, Value)> = (0..300)
        .map(|i| (format!("user{i}"), json!({ "quantity": 1 })))
        .collect();
    let answers = app.claim_storm(&event, claims, 300).await;
    let bookings: Vec<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
            body["booking_id"].as_str().unwrap().to_owned()
        })
        .collect();

    let after = commit.stats();
    let (rounds, claims) = (after.rounds - before.rounds, after.claims - before.claims);
    eprintln!(
        "figure: 300 concurrent claims, {claims} waited for the replica in {rounds} WAIT rounds"
    );
    assert!(claims >= 300, "every 202 waited for the replica ({claims})");
    assert!(rounds < claims, "{rounds} rounds for {claims} claims");

    let mut replica = conn(&group.replicas[0]).await;
    let mut pipe = redis::pipe();
    for booking in &bookings {
        pipe.hget(app.redis.keys(&event).booking(booking), "status");
    }
    let statuses: Vec<Option<String>> = pipe.query_async(&mut replica).await.unwrap();
    assert!(
        statuses.iter().all(|s| s.as_deref() == Some("pending")),
        "the replica holds every claim answered 202"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_covers_writes_that_other_connections_made() {
    // A replayed claim was written earlier, maybe by another gateway, maybe on a
    // connection since replaced; a bare WAIT covers only its own connection's writes.
    if !redis_server_installed() {
        return;
    }
    let mut group = ReplicatedRedis::start(1, 0).await.unwrap();
    // A WAIT counts against the store's call bound: the bound is above the WAIT's.
    let store = RedisStore::connect(&group.primary.url(), "repl-test:", Duration::from_secs(5))
        .await
        .unwrap();
    // Long enough for a healthy replica on a loaded machine; the paused round waits
    // all of it.
    let commit = GroupCommit::for_store(store, 1, Duration::from_secs(2));
    assert_eq!(commit.covered().await, Ok(()));

    group.replicas[0].pause().unwrap();
    let mut other = conn(&group.primary).await;
    let () = other.set("repl-test:written-elsewhere", "1").await.unwrap();
    assert_eq!(
        commit.covered().await,
        Err(ReplicationError::TooFewReplicas {
            acked: 0,
            required: 1
        }),
        "a stalled replica cannot hold the other connection's write"
    );
    group.replicas[0].resume().unwrap();
    assert_eq!(commit.covered().await, Ok(()));
    let on_replica: Option<String> = conn(&group.replicas[0])
        .await
        .get("repl-test:written-elsewhere")
        .await
        .unwrap();
    assert_eq!(on_replica.as_deref(), Some("1"));
}

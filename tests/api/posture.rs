//! Startup posture and eviction: the gateway refuses a Redis whose `maxmemory-policy`
//! evicts keys unless `SEATGATE_ALLOW_EVICTION` is set, checks the policy when Redis
//! first answers if it started without it, and answers a claim on a Redis out of memory
//! 503 with Retry-After, with nothing of the claim written.
//!
//! Each test runs a private `redis-server` (skipped, or failed under
//! `SEATGATE_REQUIRE_SERVERS=1`, without one).

use redis::AsyncCommands;
use reqwest::StatusCode;
use seatgate::claims::posture::Posture;
use seatgate::claims::RedisStore;
use seatgate::config::Settings;
use seatgate::startup::Application;
use seatgate_sandbox::{PrivateRedis, RedisOptions, ReplicatedRedis};
use std::time::Duration;

use crate::common::redis_server_installed;
use crate::helpers::*;

async fn private_redis_with(options: RedisOptions) -> Option<PrivateRedis> {
    if !redis_server_installed() {
        return None;
    }
    Some(
        PrivateRedis::start_with(options)
            .await
            .expect("a private redis-server starts"),
    )
}

fn evicting() -> RedisOptions {
    RedisOptions::new().config("maxmemory-policy", "allkeys-lru")
}

async fn conn(redis: &PrivateRedis) -> redis::aio::MultiplexedConnection {
    raw_redis(&redis.url()).await
}

/// Settings as `spawn_app_with` makes them, for a build that is expected to fail.
fn settings_on(redis_url: &str, db: &ScratchDatabase) -> Settings {
    let mut settings = Settings::local(
        "admin-token-of-the-posture-tests",
        "jwt-secret-of-the-posture-tests-0123456789",
    );
    settings.http_addr = "127.0.0.1:0".into();
    settings.redis_url = redis_url.to_owned();
    settings.database_url = db.url.clone();
    settings
}

#[tokio::test]
async fn a_gateway_refuses_to_start_on_an_evicting_redis_naming_the_setting() {
    let Some(redis) = private_redis_with(evicting()).await else {
        return;
    };
    let db = ScratchDatabase::new();
    let built = Application::build(settings_on(&redis.url(), &db)).await;
    let err = format!("{:#}", built.err().expect("the build refuses"));
    assert!(err.contains("allkeys-lru"), "{err}");
    assert!(err.contains("SEATGATE_ALLOW_EVICTION"), "{err}");
}

#[tokio::test]
async fn with_allow_eviction_a_gateway_starts_on_an_evicting_redis_and_claims() {
    let Some(redis) = private_redis_with(evicting()).await else {
        return;
    };
    let app = spawn_app_with(|s| {
        s.redis_url = redis.url();
        s.durability.allow_eviction = true;
    })
    .await;
    let event = app.event_with(&seat_names(4), 4).await;
    app.claim_seats(&event, "alice", &["S0001"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_before_redis_checks_the_policy_when_redis_first_answers() {
    let Some(mut redis) = private_redis_with(evicting()).await else {
        return;
    };
    redis.kill();
    let app = spawn_app_with(|s| {
        s.redis_url = redis.url();
        s.redis_timeout = Duration::from_millis(300);
    })
    .await;
    let r = app
        .claim("any-event", "alice", &pick(&["S0001"]), None)
        .await;
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    redis.restart().await.unwrap();
    // Redis answers again (an unknown event is a 404, not a 503) ...
    eventually(
        "Redis answers the gateway",
        Duration::from_secs(30),
        || async {
            (app.event("no-such-event").await.status() == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    // ... but evicts keys: claims stay 503.
    let r = app
        .claim("any-event", "alice", &pick(&["S0001"]), None)
        .await;
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    // The operator fixes the policy; claims are served without a restart.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut conn(&redis).await)
        .await
        .unwrap();
    let event = app.event_with(&seat_names(4), 4).await;
    eventually("claims are served", Duration::from_secs(30), || async {
        let r = app
            .claim(&event, "alice", &pick(&["S0001"]), Some("k"))
            .await;
        (r.status() == StatusCode::ACCEPTED).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_a_redis_out_of_memory_is_503_with_retry_after_and_writes_nothing() {
    let Some(redis) = private_redis_with(RedisOptions::new()).await else {
        return;
    };
    let app = spawn_app_with(|s| s.redis_url = redis.url()).await;
    let event = app.event_with(&seat_names(10), 4).await;
    app.claim_seats(&event, "alice", &["S0001"]).await;

    // Fill Redis up to a small maxmemory, with noeviction (the default policy).
    let mut admin = conn(&redis).await;
    let used: u64 = redis.info("memory").await.unwrap()["used_memory"]
        .parse()
        .unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + 1024 * 1024)
        .query_async(&mut admin)
        .await
        .unwrap();
    // Big values first, then ever smaller ones: a refused SET's own argument is part of
    // the memory counted against it, so only a tiny write refused means Redis is full.
    let mut filled = 0;
    for size in [64 * 1024, 4096, 256, 16] {
        let filler = "x".repeat(size);
        loop {
            let set: redis::RedisResult<()> = admin.set(format!("filler:{filled}"), &filler).await;
            match set {
                Ok(()) => filled += 1,
                Err(e) if e.to_string().contains("OOM") => break,
                Err(e) => panic!("filling Redis: {e}"),
            }
            assert!(filled < 100_000, "Redis never ran out of memory");
        }
    }

    for body in [pick(&["S0002"]), best_of(1)] {
        let r = app.claim(&event, "bob", &body, Some("oom-key")).await;
        let retry_after = r.headers().get("retry-after").cloned();
        expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
        assert_eq!(retry_after.unwrap(), "1");
    }
    // Nothing of the refused claims was written: the seats are where they were.
    let keys = app.redis.keys(&event);
    let state: Option<String> = admin.hget(keys.seats(), "S0002").await.unwrap();
    assert_eq!(state.as_deref(), Some("available"));
    let in_avail: Option<f64> = admin.zscore(keys.avail(), "S0002").await.unwrap();
    assert!(in_avail.is_some(), "S0002 is still on offer");
    let offered: u64 = admin.zcard(keys.avail()).await.unwrap();
    assert_eq!(offered, 9);
    // Reads go on.
    assert_eq!(app.event(&event).await.status(), StatusCode::OK);

    // Memory back: the retry with the same key is a fresh claim (the 503 recorded
    // nothing).
    let fillers: Vec<String> = (0..filled).map(|i| format!("filler:{i}")).collect();
    let _: u64 = admin.del(fillers).await.unwrap();
    let r = app
        .claim(&event, "bob", &pick(&["S0002"]), Some("oom-key"))
        .await;
    expect_json(r, StatusCode::ACCEPTED).await;
}

#[tokio::test]
async fn the_reconciler_alone_refuses_an_evicting_redis_too() {
    let Some(redis) = private_redis_with(evicting()).await else {
        return;
    };
    let db = ScratchDatabase::new();
    let args = seatgate::cli::reconcile::ReconcileArgs {
        store: seatgate::cli::StoreArgs::new(&redis.url(), &db.url, "posture-test:"),
    };
    let err = format!(
        "{:#}",
        seatgate::cli::reconcile::run(args).await.unwrap_err()
    );
    assert!(err.contains("allkeys-lru"), "{err}");
    assert!(err.contains("SEATGATE_ALLOW_EVICTION"), "{err}");
}

async fn posture_of(url: &str, required: u32) -> Posture {
    let store = RedisStore::connect(url, "posture-test:", Duration::from_secs(2))
        .await
        .unwrap();
    Posture::read(&store, required).await.unwrap()
}

#[tokio::test]
async fn the_posture_reads_persistence_and_replicas_and_says_unknown_without_config() {
    if !redis_server_installed() {
        return;
    }
    let durable = PrivateRedis::start_with(
        RedisOptions::new()
            .appendonly(true)
            .config("save", "3600 1"),
    )
    .await
    .unwrap();
    let posture = posture_of(&durable.url(), 0).await;
    assert_eq!(
        posture.persistence(),
        "aof (appendfsync everysec) + rdb (save 3600 1)"
    );
    assert_eq!(posture.maxmemory_policy, "noeviction");
    assert!(!posture.evicts());

    // Managed services rename or disable CONFIG: what it would tell is unknown.
    let hidden = PrivateRedis::start_with(
        RedisOptions::new()
            .appendonly(true)
            .config("rename-command", "CONFIG \"\""),
    )
    .await
    .unwrap();
    let posture = posture_of(&hidden.url(), 0).await;
    assert_eq!(
        (posture.appendfsync.as_deref(), posture.save.as_deref()),
        (None, None)
    );
    assert_eq!(
        posture.persistence(),
        "aof (appendfsync unknown) + rdb unknown (CONFIG unavailable)"
    );

    let group = ReplicatedRedis::start(1, 0).await.unwrap();
    let posture = posture_of(&group.primary.url(), 1).await;
    assert_eq!(posture.role, "master");
    assert_eq!(
        (posture.connected_replicas, posture.required_replicas),
        (1, 1)
    );
    assert_eq!(posture.persistence(), "none");
}

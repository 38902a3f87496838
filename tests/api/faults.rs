//! Failures that really happen: private redis-server / mariadbd processes killed and
//! restarted, consumers that die holding entries, shutdown in the middle of a drop.
//! Each ends with a final read: every 202 is confirmed or rejected, no seat is held
//! twice, and the audit finds Redis and MySQL in agreement. One file because every
//! test here shares the private-server set-up and that final read.

use futures::stream::{self, StreamExt};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

use seatgate::claims::keys::RECONCILER_GROUP;
use seatgate::reconciler::{Reconciler, ReconcilerConfig};
use seatgate_sandbox::{PrivateMysql, PrivateRedis};

use crate::common::{mysql_server_installed, redis_server_installed};
use crate::helpers::*;
use crate::proxy::{FaultyProxy, Mode};

/// Claims each seat once for its own user; returns seat → booking id of the 202s and
/// panics on anything but 202 or 409.
async fn claim_each(app: &TestApp, event: &str, seats: &[String]) -> HashMap<String, String> {
    let answers: Vec<(String, StatusCode, Value)> = stream::iter(seats.iter().cloned())
        .map(|seat| async move {
            let r = app
                .claim(
                    event,
                    &format!("user-{seat}"),
                    &json!({ "seats": [seat] }),
                    None,
                )
                .await;
            (seat, r.status(), r.json::<Value>().await.unwrap())
        })
        .buffer_unordered(64)
        .collect()
        .await;
    answers
        .into_iter()
        .map(|(seat, status, body)| {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            (seat, body["booking_id"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The final read: every acknowledged claim is confirmed and holds its seat in MySQL,
/// and the audit agrees.
async fn final_read(app: &TestApp, event: &str, won: &HashMap<String, String>) {
    let summary = app.settled(event).await;
    assert_eq!(summary["booked"], won.len(), "{summary}");
    for (seat, booking) in won {
        assert_eq!(
            app.mysql_seat(event, seat).await,
            booked_row(booking),
            "seat {seat}"
        );
        assert_eq!(
            app.mysql_booking(booking).await.as_deref(),
            Some("confirmed")
        );
    }
    assert_eq!(app.mysql_confirmed(event).await, won.len() as i64);
    let audit = app.audit(event, false).await;
    assert_eq!(audit["consistent"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_killed_mid_drop_loses_no_acknowledged_claim() {
    if !mysql_server_installed() {
        return;
    }
    let mut mysql = PrivateMysql::start().await.unwrap();
    let app = spawn_app_with(|s| s.database_url = mysql.url("seatgate")).await;
    let seats = seat_names(60);
    let event = app.event_with(&seats, 4).await;

    let mut won = claim_each(&app, &event, &seats[..20]).await;
    mysql.kill();
    // Claims never wait for MySQL: they keep being acknowledged while it is down.
    let outage = std::time::Instant::now();
    won.extend(claim_each(&app, &event, &seats[20..50]).await);
    let answered_in = outage.elapsed();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json::<Value>().await.unwrap()["mysql"], "down");
    assert!(app.event_json(&event).await["pending"].as_u64().unwrap() > 0);

    let pending = app.event_json(&event).await["pending"].clone();
    mysql.restart().await.unwrap();
    let back = std::time::Instant::now();
    won.extend(claim_each(&app, &event, &seats[50..]).await);
    final_read(&app, &event, &won).await;
    // Figures for the record (never asserted: the machine is shared).
    eprintln!(
        "figure: 30 claims acknowledged in {answered_in:?} with MySQL down ({pending} pending); \
         all {} confirmed {:?} after MySQL came back",
        won.len(),
        back.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_with_retry_after_and_recovers_with_its_aof() {
    let Some(mut redis) = private_redis_aof().await else {
        return;
    };
    let app = spawn_app_with(|s| {
        s.redis_url = redis.url();
        s.redis_timeout = Duration::from_millis(300);
    })
    .await;
    let seats = seat_names(20);
    let event = app.event_with(&seats, 4).await;
    let mut won = claim_each(&app, &event, &seats[..10]).await;

    redis.kill();
    for seat in &seats[10..15] {
        let asked = std::time::Instant::now();
        let r = app
            .claim(&event, "late", &json!({ "seats": [seat] }), None)
            .await;
        eprintln!(
            "figure: claim with Redis down answered {} in {:?}",
            r.status(),
            asked.elapsed()
        );
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unavailable");
    }
    let r = app.event(&event).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    redis.restart().await.unwrap();
    // The multiplexed connection reconnects by itself; the claims made before the
    // crash are still there (appendfsync always in this test).
    eventually(
        "claims are served again",
        Duration::from_secs(30),
        || async { (app.event(&event).await.status() == StatusCode::OK).then_some(()) },
    )
    .await;
    // A restarted Redis is fenced until checked against MySQL: claims answer 503
    // meanwhile, and a client's retries get the real answer.
    for seat in &seats[..10] {
        let r = app
            .claim_retrying(&event, "late", &json!({ "seats": [seat] }))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CONFLICT,
            "{seat} must still be held"
        );
    }
    won.extend(claim_each(&app, &event, &seats[10..]).await);
    final_read(&app, &event, &won).await;
}

/// A private redis-server with an AOF fsynced on every write, so a kill loses nothing.
async fn private_redis_aof() -> Option<PrivateRedis> {
    if !redis_server_installed() {
        return None;
    }
    let redis = PrivateRedis::start(true).await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("always")
        .query_async(&mut conn)
        .await
        .unwrap();
    Some(redis)
}

/// Runs a reconciler of its own (on the app's Redis) until a step settles nothing.
async fn settle_all(app: &TestApp) {
    let reconciler = Reconciler::new(
        app.redis.clone(),
        app.db.clone(),
        ReconcilerConfig::default(),
    )
    .unwrap();
    while reconciler
        .step(Duration::from_millis(50))
        .await
        .unwrap()
        .settled()
        > 0
    {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_data_the_gateway_rebuilds_it_from_mysql_by_itself() {
    let Some((mut redis, app)) = spawn_app_on_private_redis(|s| s.reconciler = false).await else {
        return;
    };
    let seats = seat_names(6);
    let event = app.event_with(&seats, 4).await;
    let confirmed = claim_each(&app, &event, &seats[..3]).await;
    settle_all(&app).await;
    let r = app
        .claim(&event, "pat", &pick(&["S0004"]), Some("pat-key"))
        .await;
    let lost = expect_json(r, StatusCode::ACCEPTED).await;

    // No persistence: a restart is a loss of everything Redis held. The fence keeper
    // rebuilds the event from MySQL with no admin involved.
    redis.restart().await.unwrap();
    eventually(
        "the event is on sale again",
        Duration::from_secs(30),
        || async { (app.event(&event).await.status() == StatusCode::OK).then_some(()) },
    )
    .await;

    let r = app.warm(&event).await;
    let warmed = expect_json(r, StatusCode::OK).await;
    assert_eq!(counts(&warmed), (3, 0, 3));
    for (seat, booking) in &confirmed {
        assert_eq!(app.seat_status(&event, seat).await, "booked");
        let b = app.booking_json(&event, booking, &app.admin()).await;
        assert_eq!(b["status"], "confirmed");
        let r = app
            .claim(&event, "late", &json!({ "seats": [seat] }), None)
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
    }
    // The pending claim is gone: its owner reads why, and a retry gets a fresh claim.
    let lost_id = lost["booking_id"].as_str().unwrap();
    let b = app
        .booking_json(&event, lost_id, &app.user_token("pat"))
        .await;
    assert_eq!(b["status"], "rejected", "{b}");
    assert_eq!(b["reason"], "lost_in_redis_failover", "{b}");
    let r = app
        .claim(&event, "pat", &pick(&["S0004"]), Some("pat-key"))
        .await;
    let fresh = expect_json(r, StatusCode::ACCEPTED).await;
    assert_ne!(fresh["booking_id"], lost["booking_id"]);
    // The per-user tallies came back too: users of confirmed seats still count them.
    let user = format!("user-{}", seats[0]);
    let r = app.claim(&event, &user, &best_of(4), None).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    settle_all(&app).await;
    assert_eq!(app.mysql_confirmed(&event).await, 4);
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn a_dead_consumers_entries_are_taken_over() {
    let (app, event) = spawn_stepped_app_with_event(5).await;
    let seats = seat_names(5);
    let won = claim_each(&app, &event, &seats).await;

    // A consumer reads every entry and dies without acknowledging any.
    let mut conn = app.redis.connection();
    let opts = redis::streams::StreamReadOptions::default()
        .group(RECONCILER_GROUP, "doomed")
        .count(100);
    let read: redis::streams::StreamReadReply = conn
        .xread_options(&[app.redis.keys(&event).outbox()], &[">"], &opts)
        .await
        .unwrap();
    assert_eq!(read.keys[0].ids.len(), 5);

    // A live reconciler sees no new entries, then takes the idle ones over.
    let config = ReconcilerConfig {
        claim_min_idle: Duration::from_millis(100),
        autoclaim_every: Duration::ZERO,
        ..ReconcilerConfig::default()
    };
    let reconciler = Reconciler::new(app.redis.clone(), app.db.clone(), config).unwrap();
    eventually(
        "the entries are taken over and settled",
        Duration::from_secs(20),
        || async {
            reconciler.step(Duration::from_millis(50)).await.unwrap();
            (app.event_json(&event).await["pending"] == 0).then_some(())
        },
    )
    .await;
    final_read(&app, &event, &won).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_in_the_middle_of_a_drop_loses_nothing_acknowledged() {
    let mut app = spawn_app().await;
    let seats = seat_names(300);
    let event = app.event_with(&seats, 4).await;

    let storm = {
        let client = app.client.clone();
        let base = app.base.clone();
        let event = event.clone();
        let tokens: Vec<(String, String)> = seats
            .iter()
            .map(|s| (s.clone(), app.user_token(&format!("user-{s}"))))
            .collect();
        tokio::spawn(async move {
            stream::iter(tokens)
                .map(|(seat, token)| {
                    let client = client.clone();
                    let url = format!("{base}/v1/events/{event}/bookings");
                    async move {
                        let r = client
                            .post(url)
                            .bearer_auth(token)
                            .json(&json!({"seats": [seat]}))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                                let b: Value = r.json().await.unwrap();
                                Some((seat, b["booking_id"].as_str().unwrap().to_owned()))
                            }
                            // Refused or cut off by the shutdown: not acknowledged.
                            _ => None,
                        }
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await
        })
    };
    eventually("the drop is under way", Duration::from_secs(20), || async {
        (app.event_json(&event).await["available"].as_u64().unwrap() < 250).then_some(())
    })
    .await;
    app.stop().await;
    let won: HashMap<String, String> = storm.await.unwrap().into_iter().flatten().collect();
    assert!(!won.is_empty());

    // Whatever was acknowledged is persisted by the next reconciler.
    let reconciler = app.reconciler();
    while reconciler
        .step(Duration::from_millis(50))
        .await
        .unwrap()
        .settled()
        > 0
    {}
    for (seat, booking) in &won {
        assert_eq!(app.mysql_seat(&event, seat).await, booked_row(booking));
    }
    // A claim answered while the client was being cut off may be persisted without
    // the client knowing; never the other way round.
    assert!(app.mysql_confirmed(&event).await >= won.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_while_redis_and_mysql_are_down_and_recovers_when_they_return() {
    if !mysql_server_installed() {
        return;
    }
    let Some(mut redis) = private_redis().await else {
        return;
    };
    let mut mysql = PrivateMysql::start().await.unwrap();
    redis.kill();
    mysql.kill();
    let app = spawn_app_with(|s| {
        s.redis_url = redis.url();
        s.database_url = mysql.url("seatgate");
        s.redis_timeout = Duration::from_millis(300);
    })
    .await;

    let r = app.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get("/readyz").await;
    let body = expect_json(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        (body["redis"].clone(), body["mysql"].clone()),
        (json!("down"), json!("down"))
    );
    let r = app.event("anything").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let r = app
        .create_event(&json!({"id": "later", "name": "Later", "seats": ["A1"]}))
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    redis.restart().await.unwrap();
    mysql.restart().await.unwrap();
    eventually("the gateway is ready", Duration::from_secs(60), || async {
        let r = app.get("/readyz").await;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    // Migrations ran in the background; the whole flow works, reconciler included.
    let event = eventually(
        "an event can be created",
        Duration::from_secs(30),
        || async {
            let id = app.event_id();
            let r = app
                .create_event(&json!({"id": id, "name": "Back", "seats": seat_names(3)}))
                .await;
            (r.status() == StatusCode::CREATED).then_some(id)
        },
    )
    .await;
    assert_eq!(app.warm(&event).await.status(), StatusCode::OK);
    let won = claim_each(&app, &event, &seat_names(3)).await;
    final_read(&app, &event, &won).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_keep_being_answered_while_mysql_writes_are_stalled() {
    let (app, event) = spawn_app_with_event(40).await;
    let seats = seat_names(40);

    // Another transaction holds every seat row of the event: the reconciler's
    // FOR UPDATE waits behind it (and times out, and retries).
    let blocker = app.lock_seats(&event).await;
    let won = claim_each(&app, &event, &seats).await;
    assert_eq!(
        won.len(),
        40,
        "every claim answered 202 while MySQL was stalled"
    );
    assert_eq!(app.event_json(&event).await["pending"], 40);
    assert_eq!(app.mysql_confirmed(&event).await, 0);

    blocker.rollback().await.unwrap();
    let released = std::time::Instant::now();
    final_read(&app, &event, &won).await;
    eprintln!("figure: 40 claims acknowledged while MySQL was locked; all confirmed {:?} after the lock was released", released.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_reconcilers_share_the_outbox_safely() {
    let (app, event) = spawn_app_with_event(100).await;
    let seats = seat_names(100);
    // Two more consumers besides the gateway's own.
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let extra: Vec<_> = (0..2)
        .map(|_| {
            let r = Reconciler::new(
                app.redis.clone(),
                app.db.clone(),
                ReconcilerConfig::default(),
            )
            .unwrap();
            let mut stop = stop_tx.subscribe();
            tokio::spawn(r.run(async move {
                let _ = stop.recv().await;
            }))
        })
        .collect();
    // 500 claims, five per seat, so conflicts race across consumers too.
    let requests: Vec<(String, String)> = (0..500)
        .map(|i| (format!("u{i}"), seats[i % 100].clone()))
        .collect();
    let answers: Vec<(String, StatusCode, Value)> = stream::iter(requests)
        .map(|(user, seat)| {
            let app = &app;
            let event = &event;
            async move {
                let r = app
                    .claim(event, &user, &json!({ "seats": [seat] }), None)
                    .await;
                (seat, r.status(), r.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let mut won = HashMap::new();
    for (seat, status, body) in answers {
        match status {
            StatusCode::ACCEPTED => {
                assert!(won
                    .insert(seat, body["booking_id"].as_str().unwrap().to_owned())
                    .is_none());
            }
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(won.len(), 100);
    final_read(&app, &event, &won).await;
    let _ = stop_tx.send(());
    for handle in extra {
        handle.await.unwrap();
    }
}

/// Claims with an Idempotency-Key, retrying 503s with the same key until an answer
/// (the client protocol of the README); returns seat → booking id of the wins.
async fn claim_each_retrying(
    app: &TestApp,
    event: &str,
    seats: &[String],
) -> HashMap<String, String> {
    let mut won = HashMap::new();
    for seat in seats {
        let key = format!("key-{seat}");
        let r = app
            .claim_retrying_with_key(
                event,
                &format!("user-{seat}"),
                &json!({ "seats": [seat] }),
                &key,
            )
            .await;
        let body = expect_json(r, StatusCode::ACCEPTED).await;
        won.insert(
            seat.clone(),
            body["booking_id"].as_str().unwrap().to_owned(),
        );
    }
    won
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_cut_network_to_redis_answers_503_and_heals() {
    let proxy = FaultyProxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let app = spawn_app_with(|s| {
        s.redis_url = format!("redis://{}", proxy.host_port());
        s.redis_timeout = Duration::from_millis(300);
    })
    .await;
    let seats = seat_names(30);
    let event = app.event_with(&seats, 4).await;
    let mut won = claim_each_retrying(&app, &event, &seats[..10]).await;

    for mode in [Mode::Stall, Mode::Cut] {
        proxy.set(mode);
        for seat in &seats[10..20] {
            // Same keys as the retries below: whatever reached Redis is found again.
            let r = app
                .claim(
                    &event,
                    &format!("user-{seat}"),
                    &json!({ "seats": [seat] }),
                    Some(&format!("key-{seat}")),
                )
                .await;
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{mode:?}");
            assert_eq!(r.headers()["retry-after"], "1");
            assert_eq!(r.json::<Value>().await.unwrap()["error"], "unavailable");
        }
        let r = app.get("/readyz").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        proxy.set(Mode::Pass);
        won.extend(claim_each_retrying(&app, &event, &seats[10..20]).await);
    }
    won.extend(claim_each_retrying(&app, &event, &seats[20..]).await);
    final_read(&app, &event, &won).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_cut_network_to_mysql_delays_confirmation_only() {
    let proxy = FaultyProxy::start("127.0.0.1:3306".parse().unwrap()).await;
    let (app, event) = spawn_stepped_app_with_event(30).await;
    let seats = seat_names(30);
    // The reconciler reaches MySQL through the proxy; the API directly.
    let db_url = format!("mysql://root@{}/{}", proxy.host_port(), app.db_name());
    let pool = seatgate::db::lazy_pool(&db_url, 8).unwrap();
    let reconciler = Reconciler::new(
        app.redis.clone(),
        pool,
        ReconcilerConfig {
            settle_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_millis(200),
            ..ReconcilerConfig::default()
        },
    )
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(reconciler.run(async move {
        let _ = stop_rx.await;
    }));

    let mut won = claim_each(&app, &event, &seats[..10]).await;
    app.settled(&event).await;
    for mode in [Mode::Stall, Mode::Cut] {
        proxy.set(mode);
        let batch = if mode == Mode::Stall {
            &seats[10..20]
        } else {
            &seats[20..]
        };
        won.extend(claim_each(&app, &event, batch).await);
        assert!(app.event_json(&event).await["pending"].as_u64().unwrap() > 0);
        proxy.set(Mode::Pass);
        app.settled(&event).await;
    }
    final_read(&app, &event, &won).await;
    let _ = stop_tx.send(());
    running.await.unwrap();
}

//! seatgate on a private Redis Cluster of its own (three primaries, three replicas), for
//! what only a cluster can do: move an event's slot to another primary during a drop.
//! The tests whose bodies hold on any topology run on a cluster too, unchanged, through
//! `scripts/test_cluster.sh` (`SEATGATE_TEST_REDIS_URL`).

use futures::{stream, StreamExt};
use reqwest::StatusCode;
use seatgate_sandbox::{slot_of, PrivateCluster};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// A private cluster of three primaries and three replicas; `None` when redis-server
/// is not installed and the test is to be skipped (see `common`).
async fn cluster() -> Option<PrivateCluster> {
    if !crate::common::redis_server_installed() {
        return None;
    }
    Some(
        PrivateCluster::start(3, 1)
            .await
            .expect("a private Redis Cluster starts"),
    )
}

/// Creates and warms an event of `seats` seats on each primary of `cluster`, with ids
/// of `app`'s own; returns their ids, in the order of the primaries.
async fn an_event_on_each_primary(
    cluster: &mut PrivateCluster,
    app: &TestApp,
    seats: usize,
) -> Vec<String> {
    let prefix = format!("e{}-", &app.event_id()[3..]);
    let events = cluster
        .event_id_on_each_primary(&app.settings.redis_namespace, &prefix)
        .await
        .unwrap();
    assert_eq!(events.len(), 3, "one event on each primary");
    for event in &events {
        app.event_named(event, &seat_names(seats), 4).await;
    }
    events
}

/// The slot of an event's keys (they all carry the hash tag `{e:<id>}`).
fn slot_of_event(event: &str) -> u16 {
    slot_of(&format!("{{e:{event}}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_goes_on_while_its_events_slot_moves_to_another_primary() {
    let Some(mut cluster) = cluster().await else {
        return;
    };
    let app = spawn_app_with(|s| s.redis_url = cluster.seeds_url()).await;
    let seats = 150;
    let event = app.event_with(&seat_names(seats), 1).await;
    let slot = slot_of_event(&event);
    let from = cluster.primary_for_slot(slot).await.unwrap();
    let to = *cluster
        .primaries()
        .await
        .unwrap()
        .iter()
        .find(|&&p| p != from)
        .unwrap();

    // Eight claims per seat, each from its own user, while the slot moves key by key
    // (ASK for keys already moved, TRYAGAIN for a script whose keys are split).
    let claims = (0..seats * 8)
        .map(|i| (format!("fan-{i}"), best_of(1)))
        .collect();
    let drop = async {
        let answers = app.claim_storm(&event, claims, 32).await;
        (answers, Instant::now())
    };
    let migrate = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster
            .migrate_slot_paced(slot, to, Some(Duration::from_millis(2)))
            .await
            .unwrap();
        Instant::now()
    };
    let ((answers, drop_ended), moved) = tokio::join!(drop, migrate);
    assert_eq!(cluster.primary_for_slot(slot).await.unwrap(), to);
    assert!(
        moved < drop_ended,
        "the slot moved during the drop, and claims went on after it had"
    );

    // Every claim was answered (the storm retries 503s, which carry Retry-After); no
    // seat went to two bookings.
    let mut winners = Vec::new();
    let mut seats_taken = HashSet::new();
    for (status, body) in &answers {
        match *status {
            StatusCode::ACCEPTED => {
                for seat in body["seats"].as_array().unwrap() {
                    assert!(seats_taken.insert(seat.clone()), "{seat} sold twice");
                }
                winners.push(body["booking_id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => assert_eq!(body["error"], "sold_out", "{body}"),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), seats, "every seat sold once");
    // Every 202 is confirmed in MySQL, and the stores agree.
    let summary = app.settled(&event).await;
    assert_eq!(summary["booked"], seats);
    assert_eq!(app.mysql_confirmed(&event).await, seats as i64);
    for booking in &winners {
        assert_eq!(
            app.mysql_booking(booking).await.as_deref(),
            Some("confirmed")
        );
    }
    let audit = app.audit(&event, false).await;
    assert_eq!(audit["consistent"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_leaves_the_other_shards_selling_and_its_events_recover() {
    let Some(mut cluster) = cluster().await else {
        return;
    };
    let app = spawn_app_with(|s| s.redis_url = cluster.seeds_url()).await;
    let events = an_event_on_each_primary(&mut cluster, &app, 400).await;
    // Sold before the failure, confirmed in MySQL: these must survive it.
    let mut before = Vec::new();
    for event in &events {
        let (booking, _) = app.claim_best(event, "early", 2).await;
        before.push((event.clone(), booking));
    }
    eventually(
        "the first claims are confirmed",
        Duration::from_secs(30),
        || async {
            let mut all = true;
            for (_, booking) in &before {
                all &= app.mysql_booking(booking).await.as_deref() == Some("confirmed");
            }
            all.then_some(())
        },
    )
    .await;

    // The first event's primary dies; its replica takes over. Meanwhile the other two
    // shards keep selling: every claim on them is answered 202 at the first try.
    let doomed = &events[0];
    let port = cluster
        .primary_for_slot(slot_of_event(doomed))
        .await
        .unwrap();
    let others = &events[1..];
    let failing_over = cluster.kill_primary_and_wait_failover(port);
    let selling = async {
        let mut sold = Vec::new();
        let mut i = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            for event in others {
                let r = app
                    .claim(event, &format!("during-{i}"), &best_of(1), None)
                    .await;
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(
                    status,
                    StatusCode::ACCEPTED,
                    "a claim on another shard: {body}"
                );
                sold.push((
                    event.clone(),
                    body["booking_id"].as_str().unwrap().to_owned(),
                ));
                i += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sold
    };
    let (promoted, sold) = tokio::join!(failing_over, selling);
    promoted.unwrap();
    assert!(
        sold.len() >= 20,
        "the other shards sold during the failover: {}",
        sold.len()
    );

    // The failed shard's event sells again once seatgate has rebuilt it from MySQL,
    // without an operator; what MySQL had confirmed is still its owner's.
    eventually(
        "the failed shard sells again",
        Duration::from_secs(60),
        || async {
            let r = app.claim(doomed, "late", &best_of(1), None).await;
            (r.status() == StatusCode::ACCEPTED).then_some(())
        },
    )
    .await;
    for (event, booking) in &before {
        let b = app.booking_json(event, booking, &app.admin()).await;
        assert_eq!(b["status"], "confirmed", "{b}");
        for seat in b["seats"].as_array().unwrap() {
            assert_eq!(
                app.seat_status(event, seat.as_str().unwrap()).await,
                "booked"
            );
        }
    }
    // Everything sold is confirmed, once, and the stores agree on every event.
    for event in &events {
        app.settled(event).await;
        let audit = app.audit(event, false).await;
        assert_eq!(audit["consistent"], true, "{event}: {audit}");
    }
    for (_, booking) in &sold {
        assert_eq!(
            app.mysql_booking(booking).await.as_deref(),
            Some("confirmed")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_and_two_reconcilers_share_a_drop_over_every_shard() {
    let Some(mut cluster) = cluster().await else {
        return;
    };
    // Each gateway runs a reconciler: two of each, on one database and namespace.
    let app = spawn_app_with(|s| {
        s.redis_url = cluster.seeds_url();
        s.user_rate = 0.01;
        s.user_burst = 8;
    })
    .await;
    let peer = app.spawn_peer().await;
    let bases = [app.base.clone(), peer.base.clone()];
    let seats = 60;
    let events = an_event_on_each_primary(&mut cluster, &app, seats).await;

    // 600 fans, one claim each, spread over the three events and the two gateways; a
    // greedy user meanwhile sends twelve claims on one event, alternating gateways.
    let fans = stream::iter(0..600)
        .map(|i| {
            let (app, event, base) = (&app, &events[i % 3], &bases[i % 2]);
            async move {
                let key = uuid::Uuid::now_v7().to_string();
                let user = format!("fan-{i}");
                loop {
                    let r = app
                        .claim_at(base, event, &user, &best_of(1), Some(&key))
                        .await;
                    if r.status() != StatusCode::SERVICE_UNAVAILABLE {
                        let status = r.status();
                        return (
                            event.clone(),
                            status,
                            r.json::<serde_json::Value>().await.unwrap(),
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let greedy = async {
        let mut statuses = Vec::new();
        for i in 0..12 {
            let r = app
                .claim_at(&bases[i % 2], &events[0], "greedy", &best_of(1), None)
                .await;
            statuses.push(r.status());
        }
        statuses
    };
    let (answers, greedy) = tokio::join!(fans, greedy);

    // The per-user limit (4) and the claim rate (a burst of 8) held across the two
    // gateways: eight claims were decided, four refused for the rate.
    let count = |s: StatusCode| greedy.iter().filter(|&&g| g == s).count();
    assert_eq!(count(StatusCode::TOO_MANY_REQUESTS), 4, "{greedy:?}");
    assert!(count(StatusCode::ACCEPTED) <= 4, "{greedy:?}");
    assert_eq!(
        count(StatusCode::ACCEPTED)
            + count(StatusCode::CONFLICT)
            + count(StatusCode::UNPROCESSABLE_ENTITY),
        8,
        "{greedy:?}"
    );

    // No seat twice; every 202 confirmed once the two reconcilers are done.
    let mut taken = HashSet::new();
    let mut winners = Vec::new();
    for (event, status, body) in &answers {
        match *status {
            StatusCode::ACCEPTED => {
                for seat in body["seats"].as_array().unwrap() {
                    assert!(
                        taken.insert((event.clone(), seat.clone())),
                        "{event} {seat} sold twice"
                    );
                }
                winners.push(body["booking_id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => assert_eq!(body["error"], "sold_out", "{body}"),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    for event in &events {
        let summary = app.settled(event).await;
        assert_eq!(summary["booked"], seats, "{event} sold out");
        assert_eq!(app.mysql_confirmed(event).await, seats as i64, "{event}");
        let audit = app.audit(event, false).await;
        assert_eq!(audit["consistent"], true, "{event}: {audit}");
    }
    for booking in &winners {
        assert_eq!(
            app.mysql_booking(booking).await.as_deref(),
            Some("confirmed")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_from_every_node_are_loaded_again_where_needed() {
    let Some(mut cluster) = cluster().await else {
        return;
    };
    let app = spawn_app_with(|s| s.redis_url = cluster.seeds_url()).await;
    let events = an_event_on_each_primary(&mut cluster, &app, 10).await;
    for event in &events {
        app.claim_ok(event, "before", &best_of(1)).await;
    }
    // Every node forgets every script (a restart without persistence of scripts, a
    // failover to a replica that never ran them, an operator's SCRIPT FLUSH).
    let claim_sha = seatgate::claims::scripts::CLAIM.get_hash().to_owned();
    let mut primaries = Vec::new();
    for port in cluster.primaries().await.unwrap() {
        let mut conn = raw_redis(&seatgate_sandbox::redis_url(port)).await;
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        primaries.push(conn);
    }
    let claim_loaded = |mut conn: redis::aio::MultiplexedConnection| {
        let sha = claim_sha.clone();
        async move {
            let exists: Vec<bool> = redis::cmd("SCRIPT")
                .arg("EXISTS")
                .arg(&sha)
                .query_async(&mut conn)
                .await
                .unwrap();
            exists[0]
        }
    };
    for conn in &primaries {
        assert!(!claim_loaded(conn.clone()).await, "flushed");
    }
    // Each claim meets NOSCRIPT on its shard; the script is loaded and the claim runs.
    for event in &events {
        app.claim_ok(event, "after", &best_of(1)).await;
        let summary = app.settled(event).await;
        assert_eq!(summary["booked"], 2, "{summary}");
    }
    for conn in primaries {
        assert!(claim_loaded(conn).await, "loaded again on every shard");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_refuses_a_cluster_with_one_evicting_primary_and_group_commit() {
    let Some(mut cluster) = cluster().await else {
        return;
    };
    let seeds = cluster.seeds_url();
    let settings = |db: &ScratchDatabase| {
        let mut s = seatgate::config::Settings::local(
            "admin-token-of-the-cluster-tests",
            "jwt-secret-of-the-cluster-tests-0123456789",
        );
        s.http_addr = "127.0.0.1:0".into();
        s.redis_url = seeds.clone();
        s.database_url = db.url.clone();
        s
    };
    // Group commit's WAIT is not written per shard yet: refused, with the setting named.
    let db = ScratchDatabase::new();
    let mut grouped = settings(&db);
    grouped.durability.min_replicas = 1;
    let built = seatgate::startup::Application::build(grouped).await;
    let err = format!("{:#}", built.err().expect("the build refuses"));
    assert!(err.contains("SEATGATE_REDIS_MIN_REPLICAS"), "{err}");

    // One primary of three evicts: the weakest shard decides.
    let last = *cluster.primaries().await.unwrap().last().unwrap();
    let mut conn = raw_redis(&seatgate_sandbox::redis_url(last)).await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    let built = seatgate::startup::Application::build(settings(&db)).await;
    let err = format!("{:#}", built.err().expect("the build refuses"));
    assert!(err.contains("allkeys-lru"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_promoted_without_a_booking_never_sells_its_seat_again() {
    let Some(mut cluster) = cluster().await else {
        return;
    };
    let app = spawn_app_with(|s| s.redis_url = cluster.seeds_url()).await;
    let event = an_event_on_each_primary(&mut cluster, &app, 4)
        .await
        .remove(0);
    let booking = app.claim_seats(&event, "owner", &["S0001"]).await;
    eventually(
        "the booking is confirmed",
        Duration::from_secs(30),
        || async {
            (app.mysql_booking(&booking).await.as_deref() == Some("confirmed")).then_some(())
        },
    )
    .await;

    // The replica that will take over lost the booking (as one that lags would): its
    // copy of the seat reads available, while the primary's and MySQL's say booked. (A
    // replicated write frees the seat; a write the primary keeps to itself,
    // `redis.set_repl(redis.REPL_NONE)`, books it again there only.)
    let primary = cluster
        .primary_for_slot(slot_of_event(&event))
        .await
        .unwrap();
    let mut conn = raw_redis(&seatgate_sandbox::redis_url(primary)).await;
    let seats_key = app.redis.keys(&event).seats();
    let booked: String = redis::cmd("HGET")
        .arg(&seats_key)
        .arg("S0001")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(booked, format!("booked:{booking}"));
    let set_seat = |replicate: bool, state: String| {
        let (mut conn, key) = (conn.clone(), seats_key.clone());
        async move {
            let script = if replicate {
                "return redis.call('HSET', KEYS[1], 'S0001', ARGV[1])"
            } else {
                "redis.set_repl(redis.REPL_NONE) return redis.call('HSET', KEYS[1], 'S0001', ARGV[1])"
            };
            let _: i64 = redis::Script::new(script)
                .key(key)
                .arg(state)
                .invoke_async(&mut conn)
                .await
                .unwrap();
        }
    };
    set_seat(true, "available".into()).await;
    set_seat(false, booked).await;
    let () = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async::<i64>(&mut conn)
        .await
        .map(|_| ())
        .unwrap();

    // The primary dies while buyers keep asking for the seat. No claim on it is ever
    // acknowledged: the event is fenced on the promoted replica until rebuilt from MySQL.
    let killing = cluster.kill_primary_and_wait_failover(primary);
    let asking = async {
        let mut answers = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            let user = format!("buyer-{}", answers.len());
            let r = app
                .claim(
                    &event,
                    &user,
                    &serde_json::json!({"seats": ["S0001"]}),
                    None,
                )
                .await;
            answers.push(r.status());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answers
    };
    let (promoted, answers) = tokio::join!(killing, asking);
    promoted.unwrap();
    assert!(
        !answers.contains(&StatusCode::ACCEPTED),
        "a booked seat was sold again: {answers:?}"
    );
    assert!(
        answers.contains(&StatusCode::CONFLICT),
        "sales resumed: {answers:?}"
    );
    assert_eq!(app.seat_status(&event, "S0001").await, "booked");
    let b = app.booking_json(&event, &booking, &app.admin()).await;
    assert_eq!(b["status"], "confirmed", "{b}");
}

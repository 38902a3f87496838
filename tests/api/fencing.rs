//! Redis that lost writes: a restart from an older snapshot, keys lost behind the
//! gateway's back. Each test runs a private redis-server, does to it what must never
//! be done to the shared one, and checks that no claim was acknowledged on a seat
//! MySQL has booked, that sales resumed with no operator, and that nothing
//! acknowledged was forgotten.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

use crate::helpers::*;

/// `SAVE`, then the RDB file is what a restart loads.
async fn snapshot(url: &str) {
    let () = redis::cmd("SAVE")
        .query_async(&mut raw_redis(url).await)
        .await
        .unwrap();
}

/// `SHUTDOWN NOSAVE`: the server exits without writing what it has since the snapshot.
async fn shutdown_nosave(url: &str) {
    let gone: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async(&mut raw_redis(url).await)
        .await;
    assert!(gone.is_err(), "SHUTDOWN answers by closing the connection");
}

async fn metric(app: &TestApp, line_start: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_an_older_snapshot_acknowledges_no_claim_on_a_booked_seat_and_heals_by_itself(
) {
    let Some((mut redis, app)) =
        spawn_app_on_private_redis(|s| s.redis_timeout = Duration::from_secs(2)).await
    else {
        return;
    };
    // `SEATGATE_FENCE_SEATS` scales the event (BENCHMARKS.md, "Fencing", measures the
    // fence on large ones); two thirds of the seats sell before the restart.
    let n: usize = std::env::var("SEATGATE_FENCE_SEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let fans = n * 2 / 3;
    let seats = seat_names(n);
    // One seat per user: the tallies are what stop a winner from buying again.
    let event = app.event_with(&seats, 1).await;
    // The snapshot holds the event on sale with every seat free.
    snapshot(&redis.url()).await;
    let fences_before = metric(
        &app,
        "seatgate_redis_fences_total{cause=\"new_redis_node\"}",
    )
    .await;

    // The drop: the fans win a seat each, and every win is confirmed in MySQL.
    let claims = (0..fans)
        .map(|i| (format!("fan-{i}"), best_of(1)))
        .collect::<Vec<_>>();
    let won: Vec<(String, String)> = app
        .claim_storm(&event, claims, 32)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, (status, body))| {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            (
                format!("fan-{i}"),
                body["booking_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    eventually(
        "every win is confirmed",
        Duration::from_secs(120),
        || async { (app.mysql_confirmed(&event).await == fans as i64).then_some(()) },
    )
    .await;

    // Redis dies and comes back with the snapshot: every seat reads available there,
    // the fans' tallies are gone.
    shutdown_nosave(&redis.url()).await;
    redis.restart().await.unwrap();
    let restarted = std::time::Instant::now();
    let mut fenced_for = None;

    // Every seat, claimed by a newcomer (retrying through 503s, as clients do): a seat
    // that MySQL has booked is never acknowledged; the others sell.
    let mut sold = 0;
    for seat in &seats {
        let (mysql, _) = app.mysql_seat(&event, seat).await;
        let r = app
            .claim_retrying(&event, &format!("new-{seat}"), &json!({ "seats": [seat] }))
            .await;
        let status = r.status();
        fenced_for.get_or_insert_with(|| restarted.elapsed());
        if mysql == "booked" {
            assert_eq!(status, StatusCode::CONFLICT, "{seat} is booked in MySQL");
        } else {
            assert_eq!(
                status,
                StatusCode::ACCEPTED,
                "{seat} is free: {}",
                r.text().await.unwrap()
            );
            sold += 1;
        }
    }
    eprintln!(
        "figure: {n} seats, {fans} booked: claims fenced for {:?} after Redis came back",
        fenced_for.unwrap()
    );
    assert_eq!(sold, n - fans);
    // The fans' tallies are back: none may buy a second seat (the limit is checked
    // before the seats, so this is not the sold-out answer).
    for (fan, booking) in &won {
        let r = app.claim(&event, fan, &best_of(1), None).await;
        expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "user_limit_exceeded").await;
        let b = app.booking_json(&event, booking, &app.admin()).await;
        assert_eq!(b["status"], "confirmed", "{b}");
    }

    assert!(
        metric(
            &app,
            "seatgate_redis_fences_total{cause=\"new_redis_node\"}"
        )
        .await
            > fences_before,
        "the fence is counted"
    );
    eventually(
        "every sale is confirmed",
        Duration::from_secs(60),
        || async { (app.mysql_confirmed(&event).await == n as i64).then_some(()) },
    )
    .await;
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_acknowledged_then_lost_with_redis_reads_rejected_lost_in_redis_failover() {
    let Some((mut redis, app)) = spawn_app_on_private_redis(|s| s.reconciler = false).await else {
        return;
    };
    let seats = seat_names(4);
    let event = app.event_with(&seats, 4).await;
    let r = app.claim(&event, "pat", &pick(&["S0001"]), None).await;
    let lost = expect_json(r, StatusCode::ACCEPTED).await;
    let lost_id = lost["booking_id"].as_str().unwrap();

    // No persistence: the claim is gone with everything else.
    redis.restart().await.unwrap();

    // Its owner (and the admin) learn what happened; nobody gets a 404 for it.
    let b = eventually("the event is rebuilt", Duration::from_secs(30), || async {
        let r = app
            .get_booking(&event, lost_id, &app.user_token("pat"))
            .await;
        if r.status() != StatusCode::OK {
            return None;
        }
        Some(r.json::<Value>().await.unwrap())
    })
    .await;
    assert_eq!(b["status"], "rejected", "{b}");
    assert_eq!(b["reason"], "lost_in_redis_failover", "{b}");
    let b = app.booking_json(&event, lost_id, &app.admin()).await;
    assert_eq!(b["reason"], "lost_in_redis_failover", "{b}");
    // A booking made after the rebuild that does not exist is still unknown.
    let made_up = uuid::Uuid::now_v7().to_string();
    let r = app
        .get_booking(&event, &made_up, &app.user_token("pat"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The seat sells again.
    app.claim_seats(&event, "sam", &["S0001"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_keys_vanish_is_fenced_then_rebuilt_from_mysql() {
    let app = spawn_app().await;
    let seats = seat_names(5);
    let event = app.event_with(&seats, 4).await;
    let (booking, _) = app.claim_best(&event, "ann", 2).await;
    eventually(
        "the claim is confirmed",
        Duration::from_secs(30),
        || async { (app.mysql_confirmed(&event).await == 1).then_some(()) },
    )
    .await;

    // Every key of the event vanishes (a flush, an eviction, an operator's DEL).
    app.redis.delete_event(&event).await.unwrap();
    // Until the keeper rebuilds it, a claim is refused as unavailable, never 404.
    let r = app.claim(&event, "bob", &best_of(1), None).await;
    assert!(
        r.status() == StatusCode::SERVICE_UNAVAILABLE || r.status() == StatusCode::ACCEPTED,
        "{}",
        r.status()
    );
    let won = eventually("sales resume", Duration::from_secs(30), || async {
        let r = app.claim(&event, "cat", &best_of(1), None).await;
        if r.status() != StatusCode::ACCEPTED {
            return None;
        }
        Some(r.json::<Value>().await.unwrap())
    })
    .await;
    // ann's two seats are still hers: the seat sold to cat is another one.
    let b = app.booking_json(&event, &booking, &app.admin()).await;
    assert_eq!(b["status"], "confirmed");
    for seat in b["seats"].as_array().unwrap() {
        assert!(!won["seats"].as_array().unwrap().contains(seat));
        assert_eq!(
            app.seat_status(&event, seat.as_str().unwrap()).await,
            "booked"
        );
    }
    // ann's tally came back with the rebuild: two more seats, not four.
    let r = app.claim(&event, "ann", &best_of(3), None).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

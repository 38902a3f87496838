//! `--hold-seconds`: a drop on an event with holds, through a real in-process gateway.
//! A share of the winners abandon their holds; the buyers who lost come back for the
//! seats the expiries free; the run ends with every seat booked once or free, and the
//! load generator's checks (MySQL, Redis, counters, audit) say so. MySQL is read here
//! too, apart from those checks.
//!
//! Skips (with a message) when `redis-server` or `mariadbd` is not installed, unless
//! `SEATGATE_REQUIRE_SERVERS=1` (set by `.ci/run`), where it fails.

#[path = "../../../tests/common/mod.rs"]
#[allow(dead_code)] // this binary needs only the installed-server checks
mod common;

use seatgate::cli::StoreArgs;
use seatgate::config::ClaimStrategy;
use seatgate_tools::loadgen::{HoldPlan, InProcessGateway, Pacing, Plan, Stores, Workload};
use sqlx::Connection;
use std::collections::HashMap;
use std::time::Duration;

const SEATS: u32 = 30;

fn store_args() -> StoreArgs {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let id = &id[id.len() - 12..];
    let redis = std::env::var("SEATGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    StoreArgs::new(
        &redis,
        &format!("mysql://root@127.0.0.1:3306/sgtools_holds_{id}"),
        &format!("sgtools-holds-{id}:"),
    )
}

/// `(status, count)` of the event's seat rows and of its bookings in MySQL.
async fn mysql_counts(
    database_url: &str,
    event_id: &str,
) -> (HashMap<String, i64>, HashMap<String, i64>) {
    let mut conn = sqlx::MySqlConnection::connect(database_url).await.unwrap();
    // Read as bytes: the columns' collation may make them binary to sqlx.
    let seats: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM seats WHERE event_id = ? GROUP BY status")
            .bind(event_id)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let bookings: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM bookings WHERE event_id = ? GROUP BY status")
            .bind(event_id)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    let text = |rows: Vec<(Vec<u8>, i64)>| {
        rows.into_iter()
            .map(|(s, n)| (String::from_utf8(s).unwrap(), n))
            .collect()
    };
    (text(seats), text(bookings))
}

/// Drops the run's database and what is left of its Redis namespace (the owner and
/// incarnation keys; the event's keys went with the gateway).
async fn clean_up(stores: &Stores, store: &StoreArgs) {
    drop_database(&stores.database_url).await;
    let namespace = stores.redis_namespace(&store.redis_namespace);
    let client = redis::Client::open(stores.redis_url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = Vec::new();
    {
        let mut iter: redis::AsyncIter<String> =
            redis::AsyncCommands::scan_match(&mut c, format!("{namespace}*"))
                .await
                .unwrap();
        while let Some(key) = iter.next_item().await {
            keys.push(key.unwrap());
        }
    }
    if !keys.is_empty() {
        let _: i64 = redis::AsyncCommands::del(&mut c, keys).await.unwrap();
    }
}

async fn drop_database(database_url: &str) {
    let (server, database) = database_url.rsplit_once('/').unwrap();
    let mut conn = sqlx::MySqlConnection::connect(&format!("{server}/mysql"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS `{database}`"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_holds_are_resold_and_every_seat_ends_booked_once_or_free() {
    if !(common::redis_server_installed() && common::mysql_server_installed()) {
        return;
    }
    let store = store_args();
    let stores = Stores::ensure(&store).await.unwrap();
    let ids = seatgate_tools::loadgen::event_ids("holds", 1).unwrap();
    let plan = Plan {
        workload: Workload {
            events: 1,
            seats: SEATS,
            claims_per_seat: 5,
            users: None,
            per_user_limit: 4,
            mix: None,
            seed: 3,
        },
        pacing: Pacing::new(None, 32, Duration::from_secs(1)).unwrap(),
        duration: None,
        event_ids: ids.clone(),
        event_name: "tools holds test".into(),
        progress: false,
        watchers: 0,
        holds: HoldPlan::new(2, 0.6).unwrap(),
    };
    let gateway = InProcessGateway::start(&stores, &store, ClaimStrategy::Redis, 32)
        .await
        .expect("the gateway starts");
    let report = gateway
        .run_and_stop(&plan, false, Duration::ZERO)
        .await
        .expect("the drop runs");
    let table = report.render();
    assert!(report.ok(), "{table}");
    let h = report.holds.clone().expect("the report has the holds");
    // Every seat was held in the drop; every hold ended one way.
    assert_eq!(report.won, u64::from(SEATS), "{table}");
    assert!(
        h.holds > u64::from(SEATS),
        "returning buyers held seats too: {table}"
    );
    assert_eq!(h.checkouts + h.expiries, h.holds, "{table}");
    assert!(h.expiries > 0 && h.abandoned > 0, "{table}");
    assert!(
        h.resold_seats > 0,
        "some abandoned seats were re-sold: {table}"
    );
    assert!(h.waves >= 2 && h.returning_claims > 0, "{table}");
    assert_eq!(h.seats.total, u64::from(SEATS));
    assert_eq!(h.seats.booked + h.seats.available, h.seats.total, "{table}");
    assert_eq!(
        h.seats.booked, h.checkouts,
        "one seat per checkout: {table}"
    );
    assert!(table.contains("re-sold"), "{table}");

    // MySQL, read here: a booked seat per checkout, the rest free, nothing held.
    let (seats, bookings) = mysql_counts(&stores.database_url, &ids[0]).await;
    let n = |m: &HashMap<String, i64>, k: &str| m.get(k).copied().unwrap_or(0) as u64;
    assert_eq!(n(&seats, "booked"), h.checkouts, "{seats:?}");
    assert_eq!(n(&seats, "available"), h.seats.available, "{seats:?}");
    assert_eq!(n(&seats, "held"), 0, "{seats:?}");
    assert_eq!(n(&bookings, "confirmed"), h.checkouts, "{bookings:?}");
    assert_eq!(n(&bookings, "expired"), h.expiries, "{bookings:?}");
    assert_eq!(
        n(&bookings, "held") + n(&bookings, "pending"),
        0,
        "{bookings:?}"
    );

    // The JSON report carries the same.
    let json = report.to_json();
    assert_eq!(json["holds"]["checkouts"], h.checkouts);
    assert_eq!(json["holds"]["seats"]["total"], SEATS);
    clean_up(&stores, &store).await;
}

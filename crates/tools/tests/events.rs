//! `--events N`: one drop over several events, through a real in-process gateway.
//!
//! - On the configured Redis and MySQL (private ones when those do not answer): the
//!   claims go round the events, every event is checked on its own (one winner per
//!   seat, every win confirmed, MySQL and Redis agree), and the report has a line and a
//!   JSON entry per event. MySQL is read here too, apart from the load generator's
//!   own checks.
//! - On a private Redis Cluster: the events land one on each primary, as the sandbox's
//!   own view of the slots says, and the report names those primaries.
//!
//! Each test skips (with a message) when `redis-server` or `mariadbd` is not installed,
//! unless `SEATGATE_REQUIRE_SERVERS=1` (set by `.ci/run`), where it fails.

#[path = "../../../tests/common/mod.rs"]
#[allow(dead_code)] // this binary needs only the installed-server checks
mod common;

use seatgate::cli::StoreArgs;
use seatgate::config::ClaimStrategy;
use seatgate_tools::loadgen::{
    cluster, DropReport, InProcessGateway, Pacing, Plan, Stores, Workload,
};
use sqlx::Connection;
use std::collections::HashSet;
use std::time::Duration;

const SEATS: u32 = 20;
const CLAIMS_PER_SEAT: u32 = 10;

fn store_args(tag: &str) -> StoreArgs {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let id = &id[id.len() - 12..];
    let redis = std::env::var("SEATGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    StoreArgs::new(
        &redis,
        &format!("mysql://root@127.0.0.1:3306/sgtools_{tag}_{id}"),
        &format!("sgtools-{tag}-{id}:"),
    )
}

fn plan(event_ids: Vec<String>) -> Plan {
    Plan {
        workload: Workload {
            events: event_ids.len() as u32,
            seats: SEATS,
            claims_per_seat: CLAIMS_PER_SEAT,
            users: None,
            per_user_limit: 4,
            mix: None,
            seed: 1,
        },
        pacing: Pacing::new(None, 64, Duration::from_secs(1)).unwrap(),
        duration: None,
        event_ids,
        event_name: "tools events test".into(),
        progress: false,
        watchers: 0,
        holds: None,
    }
}

/// Runs `plan` on a gateway of its own on `stores`, and marks the events' shards.
async fn run(stores: &Stores, store: &StoreArgs, plan: &Plan) -> DropReport {
    let gateway = InProcessGateway::start(stores, store, ClaimStrategy::Redis, 64)
        .await
        .expect("the gateway starts");
    let mut report = gateway
        .run_and_stop(plan, false, Duration::ZERO)
        .await
        .expect("the drop runs");
    let namespace = stores.redis_namespace(&store.redis_namespace);
    cluster::mark_shards(&mut report, &stores.redis_url, namespace).await;
    report
}

/// Seats booked in MySQL per event, read here.
async fn booked_in_mysql(database_url: &str, event_ids: &[String]) -> Vec<i64> {
    let mut conn = sqlx::MySqlConnection::connect(database_url).await.unwrap();
    let mut out = Vec::new();
    for id in event_ids {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM seats WHERE event_id = ? AND status = 'booked'",
        )
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        out.push(n);
    }
    conn.close().await.unwrap();
    out
}

/// Drops the run's database and what is left of its namespace on a shared Redis (the
/// owner and incarnation keys; the events' keys went with the gateway); a private
/// cluster goes whole.
async fn clean_up(stores: &Stores, store: &StoreArgs) {
    let (server, database) = stores.database_url.rsplit_once('/').unwrap();
    let mut conn = sqlx::MySqlConnection::connect(&format!("{server}/mysql"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS `{database}`"))
        .execute(&mut conn)
        .await
        .unwrap();
    if stores.redis_url.contains(',') {
        return;
    }
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

/// The report's per-event facts every run must show, whatever the topology.
fn assert_each_event_sold_out(report: &DropReport, event_ids: &[String]) {
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.events.len(), event_ids.len());
    let per_event = u64::from(SEATS * CLAIMS_PER_SEAT);
    for (event, id) in report.events.iter().zip(event_ids) {
        assert_eq!(&event.event_id, id);
        assert_eq!(event.sent, per_event, "{}", report.render());
        assert_eq!(event.won, u64::from(SEATS), "{}", report.render());
        assert_eq!(event.lost + event.errors, per_event - u64::from(SEATS));
        assert_eq!(event.confirmed, u64::from(SEATS));
        assert!(event.confirmed_after.is_some());
        assert!(event.ok);
    }
    assert_eq!(report.won, u64::from(SEATS) * event_ids.len() as u64);
    let json = report.to_json();
    assert_eq!(json["config"]["events"], event_ids.len());
    let ids: HashSet<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), event_ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_over_three_events_checks_and_reports_each() {
    if !(common::redis_server_installed() && common::mysql_server_installed()) {
        return;
    }
    let store = store_args("ev");
    let stores = Stores::ensure(&store).await.unwrap();
    let ids = seatgate_tools::loadgen::event_ids("ev", 3).unwrap();
    let report = run(&stores, &store, &plan(ids.clone())).await;
    assert_each_event_sold_out(&report, &ids);
    assert_eq!(
        booked_in_mysql(&stores.database_url, &ids).await,
        [i64::from(SEATS); 3]
    );
    let table = report.render();
    for id in &ids {
        assert!(table.contains(id.as_str()), "{table}");
    }
    clean_up(&stores, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_events_land_one_on_each_primary() {
    if !(common::redis_server_installed() && common::mysql_server_installed()) {
        return;
    }
    let store = store_args("evc");
    let mut stores = Stores::ensure_cluster(&store, 3, 0).await.unwrap();
    let namespace = stores.redis_namespace(&store.redis_namespace).to_owned();
    let ids = cluster::name_events("evc", 3, &stores.redis_url, &namespace)
        .await
        .unwrap();
    let report = run(&stores, &store, &plan(ids.clone())).await;
    assert_each_event_sold_out(&report, &ids);
    assert_eq!(
        booked_in_mysql(&stores.database_url, &ids).await,
        [i64::from(SEATS); 3]
    );
    // The sandbox's own view: each event's slot on another primary, the one the
    // report names.
    let private = stores.cluster().unwrap();
    let mut ports = HashSet::new();
    for event in &report.events {
        let slot = seatgate_sandbox::slot_of(&format!("{namespace}{{e:{}}}:meta", event.event_id));
        let port = private.primary_for_slot(slot).await.unwrap();
        assert_eq!(
            event.shard.as_deref(),
            Some(format!("127.0.0.1:{port}").as_str()),
            "{}",
            report.render()
        );
        ports.insert(port);
    }
    assert_eq!(ports.len(), 3, "{}", report.render());
    clean_up(&stores, &store).await;
}

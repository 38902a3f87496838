//! Helpers shared by the bench binaries that need the machine's Redis and MariaDB.
//!
//! The shared services are never flushed or reconfigured: each bench binary works in a
//! key namespace and a database of its own and removes them at the end. A service that
//! does not answer makes the suite print `skipped: …` and exit 0.

// Each bench binary uses a different subset of these helpers.
#![allow(dead_code)]

use redis::AsyncCommands;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The benches measure the gateway as the binary runs it: with its allocator (see
/// `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The runtime every bench drives the gateway's code on: two workers, as the machine
/// has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The shared Redis; `SEATGATE_BENCH_REDIS_URL` points the benches elsewhere.
pub fn redis_url() -> String {
    std::env::var("SEATGATE_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The shared MySQL server (no database); `SEATGATE_BENCH_MYSQL_URL` points the benches
/// elsewhere.
pub fn mysql_server() -> String {
    std::env::var("SEATGATE_BENCH_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// How long a service may take to answer before the suite is skipped.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A short unique id (the tail of a UUID v7) for namespaces, databases and events.
pub fn unique_id() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    id[id.len() - 12..].to_owned()
}

/// A fresh Redis key namespace (`sgbench<uuid>:`).
pub fn namespace() -> String {
    format!("sgbench{}:", uuid::Uuid::now_v7().simple())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `Err(reason)` unless MariaDB/MySQL accepts a connection within [`PROBE_TIMEOUT`].
pub async fn probe_mysql() -> Result<(), String> {
    use sqlx::Connection;
    let server = mysql_server();
    let connected =
        tokio::time::timeout(PROBE_TIMEOUT, sqlx::MySqlConnection::connect(&server)).await;
    match connected {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(err)) => Err(format!("MySQL at {server} refused: {err}")),
        Err(_) => Err(format!(
            "MySQL at {server} did not answer within {PROBE_TIMEOUT:?}"
        )),
    }
}

/// Deletes every key matching `pattern` (SCAN with a large COUNT, then DEL). Best
/// effort: returns how many keys went, or the error.
pub async fn delete_keys(url: &str, pattern: &str) -> Result<u64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = tokio::time::timeout(PROBE_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("{url} did not answer within {PROBE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if !keys.is_empty() {
            let n: u64 = conn.del(keys).await.map_err(|e| e.to_string())?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Drops a bench database; connections still using it are killed first, so the DROP
/// never waits on their metadata locks.
pub async fn drop_database(db_name: &str) -> Result<(), sqlx::Error> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::MySqlConnection::connect(&mysql_server()).await?;
    sqlx::query("SET SESSION lock_wait_timeout = 10")
        .execute(&mut conn)
        .await?;
    let ids = sqlx::query(
        "SELECT CAST(id AS UNSIGNED) AS id FROM information_schema.processlist WHERE db = ?",
    )
    .bind(db_name)
    .fetch_all(&mut conn)
    .await?;
    for row in ids {
        if let Ok(id) = row.try_get::<u64, _>("id") {
            let _ = sqlx::query(&format!("KILL {id}")).execute(&mut conn).await;
        }
    }
    sqlx::query(&format!("DROP DATABASE IF EXISTS `{db_name}`"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Removes a bench run's Redis keys (and database, if any) when dropped, also when a
/// benchmark panicked. Runs on a thread and runtime of its own, since `Drop` cannot
/// await and may run inside the bench's runtime.
pub struct Cleanup {
    pub label: &'static str,
    pub namespace: String,
    pub database: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let label = self.label;
        let namespace = self.namespace.clone();
        let database = self.database.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                eprintln!("{label}: cleanup could not start a runtime");
                return;
            };
            rt.block_on(async move {
                if let Some(db) = database {
                    match drop_database(&db).await {
                        Ok(()) => eprintln!("{label}: dropped database {db}"),
                        Err(err) => eprintln!("{label}: dropping database {db} failed: {err}"),
                    }
                }
                match delete_keys(&redis_url(), &format!("{namespace}*")).await {
                    Ok(n) => eprintln!("{label}: deleted {n} Redis keys under {namespace}"),
                    Err(err) => eprintln!("{label}: deleting {namespace}* failed: {err}"),
                }
            });
        })
        .join();
    }
}

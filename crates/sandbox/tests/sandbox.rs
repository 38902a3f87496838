//! The private servers of `seatgate-sandbox`: they start, answer, die on `kill()` and
//! come back on `restart()` with what they had made durable.
//!
//! Each test skips (with a message) when its server binary is not installed, unless
//! `SEATGATE_REQUIRE_SERVERS=1` (set by `.ci/run`), where it fails (see `common`).

#[path = "../../../tests/common/mod.rs"]
mod common;

use seatgate_sandbox::{PrivateMysql, PrivateRedis};
use std::time::Duration;

async fn ping(url: &str) -> redis::RedisResult<String> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut conn).await
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_private_redis_survives_kill_and_restart_with_its_aof() {
    if !common::redis_server_installed() {
        return;
    }
    let mut redis = PrivateRedis::start(true).await.expect("redis starts");
    let url = redis.url();
    assert_eq!(ping(&url).await.unwrap(), "PONG");
    assert!(redis.is_running());

    // A write the server has acknowledged is in the AOF (in the page cache at least),
    // so a process crash does not lose it.
    let mut conn = redis_conn(&url).await;
    let () = redis::cmd("SET")
        .arg("sandbox:key")
        .arg("kept")
        .query_async(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let old_pid = redis.pid();
    redis.kill();
    assert!(!redis.is_running());
    let down = tokio::time::timeout(Duration::from_secs(2), ping(&url)).await;
    assert!(!matches!(down, Ok(Ok(_))), "a killed redis must not answer");

    redis.restart().await.expect("redis restarts");
    assert_eq!(redis.url(), url, "same port after a restart");
    assert_ne!(redis.pid(), old_pid);
    assert_eq!(ping(&url).await.unwrap(), "PONG");
    let mut conn = redis_conn(&url).await;
    let value: Option<String> = redis::cmd("GET")
        .arg("sandbox:key")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("kept"), "the AOF survived the crash");
}

#[tokio::test]
async fn a_private_mysql_answers_and_keeps_committed_rows_across_a_crash() {
    if !common::mysql_server_installed() {
        return;
    }
    let mut mysql = PrivateMysql::start().await.expect("mariadbd starts");
    let url = mysql.url("");
    let one: i64 = {
        let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
        let one = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        sqlx::query("CREATE DATABASE sandbox")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE sandbox.t (id INT PRIMARY KEY) ENGINE=InnoDB")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO sandbox.t VALUES (42)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        one
    };
    assert_eq!(one, 1);

    mysql.kill();
    assert!(!mysql.is_running());
    let down = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::MySqlPool::connect(&mysql.url("")),
    )
    .await;
    assert!(
        !matches!(down, Ok(Ok(_))),
        "a killed mariadbd must not answer"
    );

    mysql.restart().await.expect("mariadbd restarts");
    let pool = sqlx::MySqlPool::connect(&mysql.url("sandbox"))
        .await
        .unwrap();
    let id: i32 = sqlx::query_scalar("SELECT id FROM t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(id, 42, "a committed row survives a crash");
    pool.close().await;
}

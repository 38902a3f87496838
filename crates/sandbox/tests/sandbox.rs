//! The private servers of `seatgate-sandbox`: they start, answer, die on `kill()` and
//! come back on `restart()` with what they had made durable; a replica follows its
//! primary, and sentinels promote a replica when the primary is killed.
//!
//! Each test skips (with a message) when its server binary is not installed, unless
//! `SEATGATE_REQUIRE_SERVERS=1` (set by `.ci/run`), where it fails (see `common`).

#[path = "../../../tests/common/mod.rs"]
mod common;

use seatgate_sandbox::{PrivateMysql, PrivateRedis, RedisOptions, ReplicatedRedis};
use std::time::{Duration, Instant};

async fn ping(url: &str) -> redis::RedisResult<String> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut conn).await
}

/// A connection whose replies may take as long as the commands here wait (redis-rs
/// gives up on a reply after 500 ms by default; `WAIT … 5000` may take longer while a
/// restarted replica resyncs).
async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(10)));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
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
async fn a_paused_redis_answers_nothing_until_it_is_resumed() {
    if !common::redis_server_installed() {
        return;
    }
    let mut redis = PrivateRedis::start(false).await.expect("redis starts");
    let mut conn = redis_conn(&redis.url()).await;
    redis.pause().unwrap();
    let ping = redis::cmd("PING");
    let stalled = tokio::time::timeout(
        Duration::from_millis(300),
        ping.query_async::<String>(&mut conn),
    )
    .await;
    assert!(stalled.is_err(), "a paused redis must not answer");
    assert!(redis.is_running(), "paused is not dead");
    redis.resume().unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

async fn get(url: &str, key: &str) -> Option<String> {
    let mut conn = redis_conn(url).await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn config_get(url: &str, name: &str) -> String {
    let mut conn = redis_conn(url).await;
    let (_, value): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(&mut conn)
        .await
        .unwrap();
    value
}

/// SET `key` on `url`, then WAIT until `replicas` replicas acknowledged it.
async fn set_and_wait(url: &str, key: &str, value: &str, replicas: usize) {
    let mut conn = redis_conn(url).await;
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
    let acked: usize = redis::cmd("WAIT")
        .arg(replicas)
        .arg(5000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, replicas, "WAIT: every replica holds {key}");
}

#[tokio::test]
async fn a_replica_follows_its_primary_and_both_keep_their_configuration_across_a_restart() {
    if !common::redis_server_installed() {
        return;
    }
    let options = RedisOptions::new()
        .config("maxmemory", "64mb")
        .config("maxmemory-policy", "allkeys-lru")
        .config("save", "3600 1");
    let primary = PrivateRedis::start_with(options.clone())
        .await
        .expect("primary starts");
    let mut replica = PrivateRedis::start_with(options.replica_of(primary.port()))
        .await
        .expect("replica starts");

    // The extra directives win over the sandbox's own (`save ""` among them).
    assert_eq!(
        config_get(&primary.url(), "maxmemory-policy").await,
        "allkeys-lru"
    );
    assert_eq!(config_get(&primary.url(), "maxmemory").await, "67108864");
    assert_eq!(config_get(&primary.url(), "save").await, "3600 1");

    let until = Instant::now() + Duration::from_secs(20);
    while replica.info("replication").await.unwrap()["master_link_status"] != "up" {
        assert!(Instant::now() < until, "the replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    set_and_wait(&primary.url(), "sandbox:replicated", "yes", 1).await;
    assert_eq!(
        get(&replica.url(), "sandbox:replicated").await.as_deref(),
        Some("yes")
    );

    // A restart reads the same configuration file: still a replica of the same primary.
    replica.restart().await.expect("replica restarts");
    let info = replica.info("replication").await.unwrap();
    assert_eq!(info["role"], "slave");
    assert_eq!(info["master_port"], primary.port().to_string());
    assert_eq!(
        config_get(&replica.url(), "maxmemory-policy").await,
        "allkeys-lru"
    );
}

#[tokio::test]
async fn sentinels_promote_a_replica_when_the_primary_is_killed() {
    if !common::redis_server_installed() {
        return;
    }
    let started = Instant::now();
    let mut group = ReplicatedRedis::start(2, 3)
        .await
        .expect("the group starts");
    let ready = started.elapsed();
    let old = group.primary.port();
    assert_eq!(group.current_primary_port().await.unwrap(), old);
    assert!(group
        .sentinel_url()
        .starts_with("redis+sentinel://127.0.0.1:"));
    assert!(group.sentinel_url().ends_with("/seatgate"));

    // A write both replicas acknowledged survives the failover.
    set_and_wait(&group.primary.url(), "sandbox:before-failover", "kept", 2).await;

    let killed = Instant::now();
    group.primary.kill();
    let new = group
        .wait_for_failover(old, Duration::from_secs(30))
        .await
        .expect("the sentinels promote a replica");
    let failover = killed.elapsed();
    assert_ne!(new, old);
    let replica_ports: Vec<u16> = group.replicas.iter().map(PrivateRedis::port).collect();
    assert!(replica_ports.contains(&new), "a replica was promoted");
    assert_eq!(group.current_primary_port().await.unwrap(), new);

    let new_url = group.node_mut(new).unwrap().url();
    assert_eq!(
        get(&new_url, "sandbox:before-failover").await.as_deref(),
        Some("kept")
    );

    // The other replica is moved to the new primary and replicates its writes.
    let other = group
        .replicas
        .iter()
        .find(|r| r.port() != new)
        .expect("two replicas");
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let info = other.info("replication").await.unwrap();
        if info.get("master_port") == Some(&new.to_string())
            && info.get("master_link_status").map(String::as_str) == Some("up")
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "the other replica never followed the new primary: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set_and_wait(&new_url, "sandbox:after-failover", "written", 1).await;
    assert_eq!(
        get(&other.url(), "sandbox:after-failover").await.as_deref(),
        Some("written")
    );
    eprintln!(
        "group of 1 primary, 2 replicas, 3 sentinels ready in {ready:?}; \
         failover after SIGKILL seen by every sentinel in {failover:?}"
    );
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

//! The private Redis Cluster of `seatgate-sandbox`: it starts with every slot covered and
//! every replica in sync, its slot function agrees with the servers', it moves a slot
//! with its keys while a client keeps writing to them, and it fails a killed primary
//! over to its replica.
//!
//! Each test skips (with a message) when `redis-server` is not installed, unless
//! `SEATGATE_REQUIRE_SERVERS=1` (set by `.ci/run`), where it fails (see `common`).

#[path = "../../../tests/common/mod.rs"]
#[allow(dead_code)] // this binary needs only `redis_server_installed`
mod common;

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, ServerErrorKind};
use seatgate_sandbox::{
    cluster_info, cluster_nodes, redis_url, slot_of, PrivateCluster, CLUSTER_SLOTS,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn conn(port: u16) -> MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    redis::Client::open(redis_url(port))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// What a hand-made cluster client saw: answers, and the redirections it followed.
#[derive(Default, Debug)]
struct Redirects {
    asks: usize,
    moves: usize,
}

/// Runs `cmd` starting at the node on `port` and follows `ASK` (with `ASKING`) and
/// `MOVED` redirections as a cluster client does, so that a test can see them.
async fn cluster_query<T: redis::FromRedisValue>(
    conns: &mut HashMap<u16, MultiplexedConnection>,
    mut port: u16,
    cmd: &redis::Cmd,
    seen: &mut Redirects,
) -> T {
    let mut asking = false;
    for _ in 0..5 {
        if let std::collections::hash_map::Entry::Vacant(e) = conns.entry(port) {
            e.insert(conn(port).await);
        }
        let c = conns.get_mut(&port).unwrap();
        let result = if asking {
            redis::pipe()
                .cmd("ASKING")
                .ignore()
                .add_command(cmd.clone())
                .query_async::<(T,)>(c)
                .await
                .map(|(v,)| v)
        } else {
            cmd.query_async::<T>(c).await
        };
        match result {
            Ok(value) => return value,
            Err(e) => {
                let (addr, _) = e.redirect_node().unwrap_or_else(|| panic!("{e}"));
                let next: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
                asking = e.kind() == ErrorKind::Server(ServerErrorKind::Ask);
                if asking {
                    seen.asks += 1;
                } else {
                    seen.moves += 1;
                }
                port = next;
            }
        }
    }
    panic!(
        "more than 5 redirections for {:?}",
        cmd.get_packed_command()
    );
}

async fn count_keys_in_slot(port: u16, slot: u16) -> usize {
    redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query_async(&mut conn(port).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cluster_starts_ready_and_moves_a_slot_with_its_keys_while_a_client_writes() {
    if !common::redis_server_installed() {
        return;
    }
    let started = Instant::now();
    let mut cluster = PrivateCluster::start(3, 1)
        .await
        .expect("the cluster starts");
    let ready = started.elapsed();

    // Every node, asked on its own: all slots covered, 3 primaries and 3 replicas
    // known, every replica linked to its primary.
    assert_eq!(cluster.nodes().len(), 6);
    for node in cluster.nodes() {
        let info = cluster_info(node.port()).await.unwrap();
        assert_eq!(info["cluster_state"], "ok");
        assert_eq!(info["cluster_slots_assigned"], CLUSTER_SLOTS.to_string());
        let view = cluster_nodes(node.port()).await.unwrap();
        let covered: u32 = view
            .iter()
            .flat_map(|n| n.slots.iter())
            .map(|&(a, b)| u32::from(b - a) + 1)
            .sum();
        assert_eq!(covered, u32::from(CLUSTER_SLOTS), "node {}", node.port());
        assert_eq!(view.iter().filter(|n| n.is_primary()).count(), 3);
        let replication = node.info("replication").await.unwrap();
        if replication["role"] == "slave" {
            assert_eq!(replication["master_link_status"], "up");
        }
    }
    let primaries = cluster.primaries().await.unwrap();
    assert_eq!(primaries.len(), 3);
    let seeds = cluster.seeds_url();
    for port in &primaries {
        assert!(seeds.split(',').any(|url| url == redis_url(*port)));
    }
    assert_eq!(seeds.split(',').count(), 3);
    assert_eq!(cluster.node_url(0), cluster.nodes()[0].url());

    // The local slot function agrees with the server's, hash tags included.
    let mut c0 = conn(primaries[0]).await;
    for key in [
        "foo",
        "bar",
        "123456789",
        "{e:drop-1}:meta",
        "ns:{e:drop-1}:seats",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "sièges{é}",
        "",
        "seatgate:{e:wordcamp-2027}:outbox",
    ] {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut c0)
            .await
            .unwrap();
        assert_eq!(slot_of(key), slot, "slot of {key:?}");
    }

    // One event id per primary: each one's keys are served by that primary without
    // a redirection.
    let ids = cluster.event_id_on_each_primary("ns:", "ev").await.unwrap();
    assert_eq!(ids.len(), 3);
    for (id, &port) in ids.iter().zip(&primaries) {
        assert!(id.starts_with("ev") && id.len() <= 6, "{id}");
        let key = format!("ns:{{e:{id}}}:meta");
        assert_eq!(cluster.primary_for_slot(slot_of(&key)).await.unwrap(), port);
        let () = redis::cmd("SET")
            .arg(&key)
            .arg("on this primary")
            .query_async(&mut conn(port).await)
            .await
            .unwrap_or_else(|e| panic!("{key} on {port}: {e}"));
    }

    // A slot with 40 keys moves to another primary, one key every 5 ms, while a client
    // keeps incrementing every key of it and creating new ones: no write is lost.
    let id = &ids[0];
    let from = primaries[0];
    let to = primaries[1];
    let key = |i: usize| format!("ns:{{e:{id}}}:k{i}");
    let slot = slot_of(&key(0));
    let mut c_from = conn(from).await;
    for i in 0..40 {
        let () = redis::cmd("SET")
            .arg(key(i))
            .arg(i * 1000)
            .query_async(&mut c_from)
            .await
            .unwrap();
    }
    let before = count_keys_in_slot(from, slot).await;
    assert_eq!(before, 41, "40 keys and the event's meta");

    let done = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let done = done.clone();
        let keys: Vec<String> = (0..40).map(key).collect();
        let new_key = {
            let id = id.clone();
            move |j: usize| format!("ns:{{e:{id}}}:new{j}")
        };
        async move {
            let mut conns = HashMap::new();
            let mut seen = Redirects::default();
            let mut increments = vec![0i64; keys.len()];
            let mut created = 0usize;
            // The migration's end is seen after at least one more full round, so every
            // key is also written once the slot has moved.
            let mut rounds_after_done = 0;
            while rounds_after_done < 2 {
                if done.load(Ordering::SeqCst) {
                    rounds_after_done += 1;
                }
                for (i, k) in keys.iter().enumerate() {
                    let _: i64 =
                        cluster_query(&mut conns, from, redis::cmd("INCR").arg(k), &mut seen).await;
                    increments[i] += 1;
                }
                let () = cluster_query(
                    &mut conns,
                    from,
                    redis::cmd("SET").arg(new_key(created)).arg("x"),
                    &mut seen,
                )
                .await;
                created += 1;
            }
            (increments, created, seen)
        }
    });
    let migration_started = Instant::now();
    cluster
        .migrate_slot_paced(slot, to, Some(Duration::from_millis(5)))
        .await
        .expect("the slot moves");
    let migration = migration_started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (increments, created, seen) = writer.await.unwrap();

    assert_eq!(cluster.primary_for_slot(slot).await.unwrap(), to);
    assert_eq!(count_keys_in_slot(from, slot).await, 0);
    assert_eq!(count_keys_in_slot(to, slot).await, before + created);
    let mut c_to = conn(to).await;
    for (i, n) in increments.iter().enumerate() {
        let value: i64 = redis::cmd("GET")
            .arg(key(i))
            .query_async(&mut c_to)
            .await
            .unwrap();
        assert_eq!(value, i as i64 * 1000 + n, "{}: every INCR counted", key(i));
    }
    assert!(
        seen.asks > 0,
        "the client was sent to the target while the slot moved: {seen:?}"
    );
    assert!(seen.moves > 0, "and moved there for good after: {seen:?}");
    // The source now answers MOVED for the slot.
    let moved = redis::cmd("GET")
        .arg(key(0))
        .query_async::<Option<String>>(&mut c_from)
        .await
        .unwrap_err();
    assert_eq!(moved.kind(), ErrorKind::Server(ServerErrorKind::Moved));
    assert_eq!(
        moved.redirect_node(),
        Some((format!("127.0.0.1:{to}").as_str(), slot))
    );

    // Moving it back unpaced (batches) works too, and a move to its owner is a no-op.
    cluster.migrate_slot(slot, from).await.unwrap();
    assert_eq!(count_keys_in_slot(from, slot).await, before + created);
    cluster.migrate_slot(slot, from).await.unwrap();
    assert_eq!(cluster.primary_for_slot(slot).await.unwrap(), from);

    // Bad requests are errors, and touch nothing.
    let a_replica = cluster
        .nodes()
        .iter()
        .map(|n| n.port())
        .find(|p| !primaries.contains(p))
        .unwrap();
    let err = cluster.migrate_slot(slot, a_replica).await.unwrap_err();
    assert!(format!("{err:#}").contains("not a live primary"), "{err:#}");
    assert!(cluster.migrate_slot(CLUSTER_SLOTS, to).await.is_err());
    assert!(cluster.primary_for_slot(CLUSTER_SLOTS).await.is_err());
    assert!(cluster
        .event_id_on_each_primary("", "bad id")
        .await
        .is_err());
    assert!(PrivateCluster::start(2, 1).await.is_err());
    assert_eq!(cluster.primary_for_slot(slot).await.unwrap(), from);
    assert_eq!(count_keys_in_slot(from, slot).await, before + created);

    eprintln!(
        "cluster of 3 primaries + 3 replicas ready in {ready:?}; slot {slot} (41 keys) \
         moved one key per 5 ms in {migration:?} under {} client INCRs and {created} new \
         keys ({seen:?})",
        increments.iter().sum::<i64>()
    );
}

#[tokio::test]
async fn a_killed_primary_is_replaced_by_its_replica_which_keeps_its_keys() {
    if !common::redis_server_installed() {
        return;
    }
    let mut cluster = PrivateCluster::start(3, 1)
        .await
        .expect("the cluster starts");
    let primaries = cluster.primaries().await.unwrap();
    let old = primaries[1];
    let ids = cluster.event_id_on_each_primary("", "fo").await.unwrap();
    let key = format!("{{e:{}}}:meta", ids[1]);
    let mut c = conn(old).await;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("kept")
        .query_async(&mut c)
        .await
        .unwrap();
    let acked: usize = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(acked, 1, "the replica holds the key");
    drop(c);
    let view = cluster_nodes(old).await.unwrap();
    let old_id = &view.iter().find(|n| n.port == old).unwrap().id;
    let replica = view
        .iter()
        .find(|n| n.primary_id.as_ref() == Some(old_id))
        .map(|n| n.port);
    assert!(replica.is_some(), "the primary has a replica");

    let killed = Instant::now();
    let new = cluster
        .kill_primary_and_wait_failover(old)
        .await
        .expect("the replica takes over");
    let failover = killed.elapsed();
    assert_ne!(new, old);
    assert_eq!(Some(new), replica, "its own replica was promoted");
    assert!(!cluster.node_mut(old).unwrap().is_running());

    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn(new).await)
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("kept"));
    assert_eq!(cluster.primary_for_slot(slot_of(&key)).await.unwrap(), new);
    let now = cluster.primaries().await.unwrap();
    assert!(now.contains(&new) && !now.contains(&old), "{now:?}");
    assert!(cluster.seeds_url().contains(&redis_url(new)));
    assert!(!cluster.seeds_url().contains(&redis_url(old)));

    // The old primary restarts from its nodes.conf and rejoins as the new one's replica.
    cluster.node_mut(old).unwrap().restart().await.unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let info = cluster
            .node_mut(old)
            .unwrap()
            .info("replication")
            .await
            .unwrap();
        if info.get("role").map(String::as_str) == Some("slave")
            && info.get("master_port") == Some(&new.to_string())
            && info.get("master_link_status").map(String::as_str) == Some("up")
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "the old primary did not rejoin: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("failover after SIGKILL of a primary, seen by every node: {failover:?}");
}

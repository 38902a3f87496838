//! Where a drop's events live on a Redis Cluster: every key of an event carries its
//! hash tag, so one event is one slot and one shard. With several events, a drop on a
//! cluster names them so that they go round the primaries (event `k` on primary
//! `k % primaries`), and the report says which primary served which event.

use anyhow::{bail, Context};
use redis::Value;
use std::time::Duration;

use seatgate::claims::keys::EventKeys;
use seatgate_sandbox::slot_of;

/// How long `CLUSTER SLOTS` may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// One primary of a cluster and the slot ranges it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `host:port`.
    pub addr: String,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
}

impl Shard {
    fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// The slot of an event's keys under `namespace`, as the gateway builds them.
pub fn event_slot(namespace: &str, event_id: &str) -> u16 {
    slot_of(&EventKeys::new(namespace, event_id).meta())
}

/// The primaries of the cluster that `redis_url` (one node, or comma-separated seeds)
/// names, ordered by their lowest slot; `None` when it is not a cluster (one node
/// without cluster mode, Sentinel) or does not answer.
pub async fn shards(redis_url: &str) -> Option<Vec<Shard>> {
    if redis_url.starts_with("redis+sentinel") {
        return None;
    }
    let seed = redis_url.split(',').next()?.trim();
    tokio::time::timeout(ASK_TIMEOUT, cluster_slots(seed))
        .await
        .ok()?
        .ok()
        .filter(|s| !s.is_empty())
}

async fn cluster_slots(seed: &str) -> anyhow::Result<Vec<Shard>> {
    let client = redis::Client::open(seed)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    parse_cluster_slots(&reply)
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, id, …], replicas…], …]`.
fn parse_cluster_slots(reply: &Value) -> anyhow::Result<Vec<Shard>> {
    let Value::Array(ranges) = reply else {
        bail!("CLUSTER SLOTS answered {reply:?}");
    };
    let mut shards: Vec<Shard> = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            bail!("a CLUSTER SLOTS entry is {range:?}");
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            bail!("a CLUSTER SLOTS entry is {fields:?}");
        };
        let host = match primary.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            other => bail!("a CLUSTER SLOTS host is {other:?}"),
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            bail!("a CLUSTER SLOTS port is {:?}", primary.get(1));
        };
        let addr = format!("{host}:{port}");
        let range = (
            u16::try_from(*start).context("slot out of range")?,
            u16::try_from(*end).context("slot out of range")?,
        );
        match shards.iter_mut().find(|s| s.addr == addr) {
            Some(shard) => shard.slots.push(range),
            None => shards.push(Shard {
                addr,
                slots: vec![range],
            }),
        }
    }
    for shard in &mut shards {
        shard.slots.sort_unstable();
    }
    shards.sort_by_key(|s| s.slots.first().map(|r| r.0));
    Ok(shards)
}

/// `n` event ids `<base>-<k><tag>` (`<base>` alone when `n` is 1 and the first primary
/// owns it), event `k` on primary `k % shards.len()`.
pub fn place_events(base: &str, namespace: &str, n: u32, shards: &[Shard]) -> Vec<String> {
    (0..n.max(1))
        .map(|k| {
            let shard = &shards[k as usize % shards.len()];
            let stem = if n <= 1 {
                base.to_owned()
            } else {
                format!("{base}-{k}")
            };
            if n <= 1 && shard.owns(event_slot(namespace, &stem)) {
                return stem;
            }
            // Each primary owns about 1/N of the slots: a few tags find one of them.
            (0u32..)
                .map(|t| format!("{stem}{}", tag(t)))
                .find(|id| shard.owns(event_slot(namespace, id)))
                .expect("every primary owns some slot")
        })
        .collect()
}

/// `a`, `b`, …, `z`, `ba`, …: short lowercase tags.
fn tag(mut n: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Ids for a drop's `n` events: on a cluster, placed round its primaries (see
/// [`place_events`]); elsewhere [`super::event_ids`].
pub async fn name_events(
    prefix: &str,
    n: u32,
    redis_url: &str,
    namespace: &str,
) -> anyhow::Result<Vec<String>> {
    match shards(redis_url).await {
        Some(shards) => Ok(place_events(
            &super::event_id(prefix)?,
            namespace,
            n,
            &shards,
        )),
        None => super::event_ids(prefix, n),
    }
}

/// On a cluster, writes into each event of `report` the primary serving it now.
pub async fn mark_shards(report: &mut super::DropReport, redis_url: &str, namespace: &str) {
    let Some(shards) = shards(redis_url).await else {
        return;
    };
    for event in &mut report.events {
        event.shard = shard_of(&shards, namespace, &event.event_id).map(|s| s.addr.clone());
    }
}

/// The primary serving `event_id`'s slot.
pub fn shard_of<'a>(shards: &'a [Shard], namespace: &str, event_id: &str) -> Option<&'a Shard> {
    let slot = event_slot(namespace, event_id);
    shards.iter().find(|s| s.owns(slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<Shard> {
        vec![
            Shard {
                addr: "127.0.0.1:7000".into(),
                slots: vec![(0, 5460)],
            },
            Shard {
                addr: "127.0.0.1:7001".into(),
                slots: vec![(5461, 10922)],
            },
            Shard {
                addr: "127.0.0.1:7002".into(),
                slots: vec![(10923, 16383)],
            },
        ]
    }

    #[test]
    fn events_go_round_the_primaries() {
        let shards = three();
        for namespace in ["", "sgtest-ns:"] {
            let ids = place_events("drop-1700000000000", namespace, 7, &shards);
            assert_eq!(ids.len(), 7);
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 7, "{ids:?}");
            for (k, id) in ids.iter().enumerate() {
                assert!(id.starts_with(&format!("drop-1700000000000-{k}")), "{id}");
                assert!(id.len() <= 64);
                let owner = shard_of(&shards, namespace, id).unwrap();
                assert_eq!(owner, &shards[k % 3], "{id} in {namespace:?}");
            }
        }
        let one = place_events("drop-1", "", 1, &shards);
        assert_eq!(shard_of(&shards, "", &one[0]).unwrap(), &shards[0]);
    }

    #[test]
    fn cluster_slots_replies_are_read() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let node = |port: i64| Value::Array(vec![bulk("127.0.0.1"), Value::Int(port), bulk("id")]);
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node(7001),
                node(7004),
            ]),
            Value::Array(vec![Value::Int(101), Value::Int(5460), node(7000)]),
            Value::Array(vec![Value::Int(10923), Value::Int(16383), node(7002)]),
            // Slot 100 was moved to 7002.
            Value::Array(vec![Value::Int(100), Value::Int(100), node(7002)]),
            Value::Array(vec![Value::Int(0), Value::Int(99), node(7000)]),
        ]);
        let shards = parse_cluster_slots(&reply).unwrap();
        // By lowest slot, as the sandbox lists its primaries.
        let addrs: Vec<&str> = shards.iter().map(|s| s.addr.as_str()).collect();
        assert_eq!(
            addrs,
            ["127.0.0.1:7000", "127.0.0.1:7002", "127.0.0.1:7001"]
        );
        assert_eq!(shards[0].slots, [(0, 99), (101, 5460)]);
        assert_eq!(shards[1].slots, [(100, 100), (10923, 16383)]);
        assert!(shards[1].owns(100) && !shards[0].owns(100));
        assert!(parse_cluster_slots(&Value::Int(1)).is_err());
    }
}

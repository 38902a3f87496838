//! The outbox streams, as the reconciler sees them: reading (this consumer's pending
//! entries, then new ones), taking over stale entries of dead consumers
//! (`XAUTOCLAIM`), acknowledging settled entries, dead-lettering undecodable ones,
//! making sure of the consumer groups, sampling the outbox lengths, and decoding
//! entries into [`Claim`]s. Everything here is Redis; nothing touches MySQL except
//! through [`Reconciler::reject_claim`] for a dead letter's booking.

use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Claim, Reconciler};
use crate::claims::ensure_group;
use crate::claims::keys::RECONCILER_GROUP;
use crate::domain::{BookingId, RejectReason};
use crate::telemetry;

/// How often `seatgate_outbox_length` is sampled, at most.
const OUTBOX_SAMPLE_EVERY: Duration = Duration::from_secs(1);

impl Reconciler {
    /// Takes over stale entries, then reads this consumer's pending entries and, after
    /// them, new ones (waiting up to `block` only if there were none pending).
    pub(super) async fn read(
        &self,
        keys: &[&String],
        outboxes: &HashMap<String, String>,
        block: Duration,
    ) -> anyhow::Result<Vec<Entry>> {
        self.autoclaim(keys).await?;
        let mut reader = self.reader.clone();
        let opts = StreamReadOptions::default()
            .group(RECONCILER_GROUP, &self.consumer)
            .count(self.config.batch);
        let own: Vec<&str> = vec!["0"; keys.len()];
        let mut entries = decode(reader.xread_options(keys, &own, &opts).await?, outboxes);
        let new: Vec<&str> = vec![">"; keys.len()];
        let opts = if entries.is_empty() {
            opts.block(block.as_millis() as usize)
        } else {
            opts
        };
        entries.extend(decode(
            reader.xread_options(keys, &new, &opts).await?,
            outboxes,
        ));
        Ok(entries)
    }

    pub(super) async fn ensure_groups(&self, outboxes: &[&String]) -> anyhow::Result<()> {
        let missing: Vec<String> = {
            let grouped = self.grouped.lock().expect("not poisoned");
            outboxes
                .iter()
                .filter(|k| !grouped.contains(k.as_str()))
                .map(|k| k.to_string())
                .collect()
        };
        let mut conn = self.redis.connection();
        for outbox in missing {
            ensure_group(&mut conn, &outbox).await?;
            self.grouped.lock().expect("not poisoned").insert(outbox);
        }
        Ok(())
    }

    /// Takes over entries that sat too long in other (presumably dead) consumers'
    /// pending lists; they are settled by the following steps.
    async fn autoclaim(&self, outboxes: &[&String]) -> anyhow::Result<()> {
        {
            let mut last = self.last_autoclaim.lock().expect("not poisoned");
            if last.is_some_and(|t| t.elapsed() < self.config.autoclaim_every) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let mut conn = self.redis.connection();
        let idle = self.config.claim_min_idle.as_millis() as u64;
        for outbox in outboxes {
            let reply: StreamAutoClaimReply = conn
                .xautoclaim_options(
                    outbox.as_str(),
                    RECONCILER_GROUP,
                    &self.consumer,
                    idle,
                    "0-0",
                    StreamAutoClaimOptions::default().count(self.config.batch),
                )
                .await?;
            if !reply.claimed.is_empty() {
                tracing::info!(outbox = %outbox, entries = reply.claimed.len(), "took over stale outbox entries");
            }
        }
        Ok(())
    }

    /// Sets `seatgate_outbox_length` to the outboxes' summed `XLEN` (one pipelined
    /// round trip), at most once a second; a failure only skips the sample.
    pub(super) async fn sample_outboxes(&self, outboxes: &[&String]) {
        {
            let mut last = self.last_outbox_sample.lock().expect("not poisoned");
            if last.is_some_and(|t| t.elapsed() < OUTBOX_SAMPLE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut pipe = redis::pipe();
        for outbox in outboxes {
            pipe.xlen(outbox.as_str());
        }
        let mut conn = self.redis.connection();
        match pipe.query_async::<Vec<u64>>(&mut conn).await {
            Ok(lengths) => telemetry::outbox_length(lengths.iter().sum()),
            Err(err) => tracing::debug!(error = %err, "cannot sample the outbox lengths"),
        }
    }

    pub(super) async fn acknowledge(
        &self,
        acks: HashMap<String, Vec<String>>,
    ) -> anyhow::Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (outbox, ids) in &acks {
            // XDEL after XACK keeps the stream from growing; the entry is settled.
            pipe.xack(outbox, RECONCILER_GROUP, ids).ignore();
            pipe.xdel(outbox, ids).ignore();
        }
        let mut conn = self.redis.connection();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Moves an undecodable entry to the event's dead-letter stream with its error.
    /// If the entry still names its booking and Redis has the booking's record, the
    /// booking is rejected (seats back to MySQL's truth) first, so its seats are not
    /// held forever. Returns false when that rejection failed transiently (the entry
    /// stays pending and is tried again).
    pub(super) async fn dead_letter(&self, entry: &Entry, problem: &str) -> anyhow::Result<bool> {
        if let Some(booking_id) = &entry.booking_hint {
            if let Some(booking) = self.redis.booking(&entry.event_id, booking_id).await? {
                let claim = Claim {
                    event_id: entry.event_id.clone(),
                    booking_id: booking.booking_id,
                    user_id: booking.user_id,
                    seats: booking.seats,
                };
                if let Err(err) = self
                    .reject_claim(&claim, RejectReason::MalformedClaim)
                    .await
                {
                    tracing::warn!(booking.id = %claim.booking_id, error = %err, "cannot reject the booking of an undecodable entry yet");
                    return Ok(false);
                }
            }
        }
        tracing::error!(outbox = %entry.outbox, entry.id = %entry.id, problem, "undecodable outbox entry moved to the dead-letter stream");
        let mut conn = self.redis.connection();
        let dead = self.redis.keys(&entry.event_id).dead_letters();
        let _: String = conn
            .xadd(
                dead,
                "*",
                &[
                    ("entry", entry.id.as_str()),
                    ("booking", entry.booking_hint.as_deref().unwrap_or("")),
                    ("error", problem),
                ],
            )
            .await?;
        Ok(true)
    }
}

/// An outbox entry and the claim decoded from it.
pub(super) struct Entry {
    pub(super) outbox: String,
    pub(super) event_id: String,
    pub(super) id: String,
    pub(super) claim: Result<Claim, String>,
    /// The booking id, when the entry has a readable one (for dead letters).
    pub(super) booking_hint: Option<BookingId>,
}

fn decode(reply: Option<StreamReadReply>, outboxes: &HashMap<String, String>) -> Vec<Entry> {
    let Some(reply) = reply else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for stream in reply.keys {
        let Some(event_id) = outboxes.get(&stream.key) else {
            continue;
        };
        for item in stream.ids {
            let field = |name: &str| -> Result<String, String> {
                match item.map.get(name) {
                    Some(redis::Value::BulkString(b)) => String::from_utf8(b.clone())
                        .map_err(|_| format!("field {name} is not UTF-8")),
                    _ => Err(format!("field {name} is missing")),
                }
            };
            let claim = (|| {
                let seats: Vec<String> = serde_json::from_str(&field("s")?)
                    .map_err(|e| format!("field s is not a list of seats: {e}"))?;
                if seats.is_empty() {
                    return Err("field s is empty".to_owned());
                }
                Ok(Claim {
                    event_id: event_id.clone(),
                    booking_id: field("b")?,
                    user_id: field("u")?,
                    seats,
                })
            })();
            let booking_hint = field("b").ok().and_then(|b| BookingId::parse(b).ok());
            entries.push(Entry {
                outbox: stream.key.clone(),
                event_id: event_id.clone(),
                id: item.id,
                claim,
                booking_hint,
            });
        }
    }
    entries
}

/// True when Redis answered `NOGROUP`: a stream, or its consumer group, is gone.
pub(super) fn is_no_group(err: &anyhow::Error) -> bool {
    err.downcast_ref::<redis::RedisError>()
        .is_some_and(|e| e.code() == Some("NOGROUP"))
}

//! One event's outbox stream, as the reconciler sees it: reading (this consumer's
//! pending entries, then new ones), taking over stale entries of dead consumers
//! (`XAUTOCLAIM`), acknowledging settled entries, dead-lettering undecodable ones,
//! making sure of the consumer group, sampling the outbox length, and decoding entries
//! into [`Claim`]s. Every command here names the keys of one event only (its outbox,
//! its dead-letter stream, its booking records), so each goes to that event's Redis
//! Cluster slot and one event's trouble fails only that event's commands. None of them
//! blocks: they ride the store's shared connection (see `worker` for why). Everything
//! here is Redis; nothing touches MySQL except through [`Reconciler::reject_claim`] for
//! a dead letter's booking.

use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use std::time::{Duration, Instant};

use super::{Claim, Reconciler};
use crate::claims::ensure_group;
use crate::claims::keys::RECONCILER_GROUP;
use crate::domain::{BookingId, RejectReason};

/// How often an event's outbox length is sampled (`seatgate_outbox_length`), at most.
const OUTBOX_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What the reconciler keeps about one event's outbox between two reads of it.
pub(super) struct OutboxState {
    pub(super) event_id: String,
    pub(super) outbox: String,
    /// This consumer may have entries of this outbox in its pending list (delivered,
    /// not acknowledged): true at first, after a step left entries to retry, and after
    /// `XAUTOCLAIM` took some over; false once a read of the pending list came back
    /// empty. Spares an idle outbox the second `XREADGROUP` per poll.
    pub(super) own_pending: bool,
    pub(super) last_autoclaim: Option<Instant>,
    pub(super) last_sample: Option<Instant>,
}

impl OutboxState {
    pub(super) fn new(reconciler: &Reconciler, event_id: &str) -> Self {
        Self {
            event_id: event_id.to_owned(),
            outbox: reconciler.redis.keys(event_id).outbox(),
            own_pending: true,
            last_autoclaim: None,
            last_sample: None,
        }
    }
}

impl Reconciler {
    /// Takes over stale entries (every `autoclaim_every`), then reads this consumer's
    /// pending entries (when it may have some) and new ones, at most `batch` of each.
    /// Never waits for entries: an empty answer is an empty answer.
    pub(super) async fn read(&self, state: &mut OutboxState) -> anyhow::Result<Vec<Entry>> {
        self.autoclaim(state).await?;
        let mut conn = self.redis.connection();
        let opts = StreamReadOptions::default()
            .group(RECONCILER_GROUP, &self.consumer)
            .count(self.config.batch);
        let keys = [state.outbox.as_str()];
        let mut entries = Vec::new();
        if state.own_pending {
            entries = decode(conn.xread_options(&keys, &["0"], &opts).await?, state);
            state.own_pending = !entries.is_empty();
        }
        entries.extend(decode(
            conn.xread_options(&keys, &[">"], &opts).await?,
            state,
        ));
        Ok(entries)
    }

    /// Makes sure the outbox has the reconcilers' consumer group (once, until a read
    /// answers `NOGROUP` and [`Reconciler::forget_group`] is called).
    pub(super) async fn ensure_group(&self, outbox: &str) -> anyhow::Result<()> {
        if self.grouped.lock().expect("not poisoned").contains(outbox) {
            return Ok(());
        }
        let mut conn = self.redis.connection();
        ensure_group(&mut conn, outbox).await?;
        self.grouped
            .lock()
            .expect("not poisoned")
            .insert(outbox.to_owned());
        Ok(())
    }

    /// Forgets that the outbox has its group (it answered `NOGROUP`: the stream, or its
    /// group, is gone), so the next [`Reconciler::ensure_group`] recreates it.
    pub(super) fn forget_group(&self, outbox: &str) {
        self.grouped.lock().expect("not poisoned").remove(outbox);
    }

    /// Takes over entries that sat too long in other (presumably dead) consumers'
    /// pending lists; they are read with this consumer's own pending entries.
    async fn autoclaim(&self, state: &mut OutboxState) -> anyhow::Result<()> {
        if state
            .last_autoclaim
            .is_some_and(|t| t.elapsed() < self.config.autoclaim_every)
        {
            return Ok(());
        }
        state.last_autoclaim = Some(Instant::now());
        let mut conn = self.redis.connection();
        let idle = self.config.claim_min_idle.as_millis() as u64;
        let reply: StreamAutoClaimReply = conn
            .xautoclaim_options(
                state.outbox.as_str(),
                RECONCILER_GROUP,
                &self.consumer,
                idle,
                "0-0",
                StreamAutoClaimOptions::default().count(self.config.batch),
            )
            .await?;
        if !reply.claimed.is_empty() {
            state.own_pending = true;
            tracing::info!(outbox = %state.outbox, entries = reply.claimed.len(), "took over stale outbox entries");
        }
        Ok(())
    }

    /// Samples the outbox's `XLEN` into `seatgate_outbox_length` (the sum over the
    /// events) at most once a second; a failure only skips the sample.
    pub(super) async fn sample_outbox(&self, state: &mut OutboxState) {
        if state
            .last_sample
            .is_some_and(|t| t.elapsed() < OUTBOX_SAMPLE_EVERY)
        {
            return;
        }
        state.last_sample = Some(Instant::now());
        let mut conn = self.redis.connection();
        match conn.xlen::<_, u64>(state.outbox.as_str()).await {
            Ok(length) => self.gauges.outbox_length(&state.event_id, length),
            Err(err) => {
                tracing::debug!(outbox = %state.outbox, error = %err, "cannot sample the outbox length")
            }
        }
    }

    /// Acknowledges settled entries of one outbox and deletes them (`XACK` + `XDEL`,
    /// one pipelined round trip on the outbox's slot).
    pub(super) async fn acknowledge(&self, outbox: &str, ids: &[String]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        // XDEL after XACK keeps the stream from growing; the entry is settled.
        pipe.xack(outbox, RECONCILER_GROUP, ids).ignore();
        pipe.xdel(outbox, ids).ignore();
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
                    hold: None,
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

fn decode(reply: Option<StreamReadReply>, state: &OutboxState) -> Vec<Entry> {
    let Some(reply) = reply else {
        return Vec::new();
    };
    let event_id = &state.event_id;
    let mut entries = Vec::new();
    for stream in reply.keys {
        if stream.key != state.outbox {
            continue;
        }
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
                // `x` only on events with holds; `t` on every claim.
                let hold = match field("x") {
                    Ok(x) => {
                        let millis = |name: &str, text: String| {
                            text.parse::<u64>()
                                .map_err(|_| format!("field {name} is not milliseconds"))
                        };
                        Some(super::Hold {
                            claimed_ms: millis("t", field("t")?)?,
                            expires_ms: millis("x", x)?,
                        })
                    }
                    Err(_) => None,
                };
                Ok(Claim {
                    event_id: event_id.clone(),
                    booking_id: field("b")?,
                    user_id: field("u")?,
                    seats,
                    hold,
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

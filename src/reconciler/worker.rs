//! Each event's outbox on its own: one worker task per registered event, so that an
//! event whose outbox cannot be read (a lost group, a key of the wrong type, its Redis
//! shard down) or whose claims wait on MySQL locks holds up no other event, and so that
//! every Redis command names one event's keys (one Redis Cluster slot; a single
//! `XREADGROUP … STREAMS k1 … kn` over several events is a `CROSSSLOT` error there).
//!
//! [`Reconciler::run`] is a supervisor: every [`REGISTRY_EVERY`] it reads the registry
//! of on-sale events (keeping this database's own, see `Reconciler::ours`), starts a
//! worker for each new one, stops the workers of events that left it (after their
//! step), restarts any that died, and runs the sweeper when it is due. A worker loops:
//! one step ([`Reconciler::step_event`]: make sure of the group, sample the length,
//! take over stale entries every `autoclaim_every`, read its own pending then new
//! entries, settle the batch, acknowledge), then a pause: none after a step that read
//! something, a growing idle pause after one that read nothing, a capped exponential
//! backoff with jitter after one that failed or left entries to retry. Several
//! reconciler processes share each outbox through the consumer group, as before.
//!
//! **Reads do not block.** A blocking `XREADGROUP` holds its connection for the whole
//! wait, so it needs a connection of its own: one per event per process (100 events on
//! sale, 100 connections per reconciler; on a cluster, 100 cluster clients each with a
//! connection to every node). Instead every worker polls with a plain `XREADGROUP
//! COUNT batch` on the store's shared multiplexed connection (which the lead's
//! cluster-aware `Primary` routes by slot), and paces itself: no pause while its outbox
//! has entries, and when it is empty, a pause that starts at [`IDLE_FIRST`] and doubles
//! up to `ReconcilerConfig::block`. The connection count stays constant whatever the
//! number of events, nothing ever waits behind a blocked read, and an idle event costs
//! one `XREADGROUP` per `block` (50 a second at the default 20 ms, about 3 µs of Redis
//! time each); the price is up to `block` of latency for a claim that finds its
//! event's worker idle (BENCHMARKS.md, "Reconciler per event", has both measured, at
//! 20 and 50 ms).
//!
//! **MySQL is shared.** Every settle transaction (a batch, a single claim, a rejection,
//! a sweep's) takes a permit of one semaphore first (`mysql_permits`, by default half
//! the pool), so 100 busy events do not open 100 transactions at once nor starve the
//! API's share of the pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::outbox::{is_no_group, Entry, OutboxState};
use super::{Reconciler, Settled, StepReport};
use crate::backoff::backoff;
use crate::clock::stream_entry_age;
use crate::domain::RejectReason;
use crate::telemetry;

/// How often the supervisor reads the registry of on-sale events.
pub(super) const REGISTRY_EVERY: Duration = Duration::from_millis(500);
/// The first idle pause of a worker whose outbox had nothing to read.
pub(super) const IDLE_FIRST: Duration = Duration::from_millis(2);

/// The next idle pause after `idle`: doubling from [`IDLE_FIRST`] up to `cap`.
pub(super) fn next_idle(idle: Duration, cap: Duration) -> Duration {
    if idle.is_zero() {
        IDLE_FIRST.min(cap)
    } else {
        (idle * 2).min(cap)
    }
}

/// The per-event figures behind the process-wide gauges: `seatgate_outbox_length` is
/// the sum of the events' last sampled lengths, `seatgate_reconciler_lag_seconds` the
/// largest age of an entry the last read of any event returned.
#[derive(Default)]
pub(super) struct Gauges {
    events: Mutex<HashMap<String, (u64, Duration)>>,
}

impl Gauges {
    pub(super) fn outbox_length(&self, event_id: &str, length: u64) {
        let mut events = self.events.lock().expect("not poisoned");
        events.entry(event_id.to_owned()).or_default().0 = length;
        telemetry::outbox_length(events.values().map(|(n, _)| n).sum());
    }

    fn lag(&self, event_id: &str, lag: Duration) {
        let mut events = self.events.lock().expect("not poisoned");
        events.entry(event_id.to_owned()).or_default().1 = lag;
        Self::publish_lag(&events);
    }

    /// An event no longer read here: its figures leave the sums.
    fn forget(&self, event_id: &str) {
        let mut events = self.events.lock().expect("not poisoned");
        events.remove(event_id);
        telemetry::outbox_length(events.values().map(|(n, _)| n).sum());
        Self::publish_lag(&events);
    }

    fn publish_lag(events: &HashMap<String, (u64, Duration)>) {
        telemetry::reconciler_lag(
            events
                .values()
                .map(|(_, lag)| *lag)
                .max()
                .unwrap_or_default(),
        );
    }
}

/// The running workers of [`Reconciler::run`], by event.
#[derive(Default)]
pub(super) struct Workers {
    running: HashMap<String, (watch::Sender<bool>, JoinHandle<()>)>,
}

impl Workers {
    /// Starts a worker for each event of `events` without one (or whose worker died)
    /// and stops those of events no longer in it, without waiting for them.
    pub(super) fn align(&mut self, reconciler: &Arc<Reconciler>, events: &[String]) {
        self.running.retain(|event, (stop, handle)| {
            if handle.is_finished() {
                tracing::error!(event.id = %event, "an outbox worker ended unexpectedly; starting it again");
                return false;
            }
            if !events.contains(event) {
                tracing::info!(event.id = %event, "event no longer on sale; its outbox worker stops");
                let _ = stop.send(true);
                return false;
            }
            true
        });
        for event in events {
            if !self.running.contains_key(event) {
                let (stop, stopped) = watch::channel(false);
                let handle = tokio::spawn(reconciler.clone().work(event.clone(), stopped));
                self.running.insert(event.clone(), (stop, handle));
            }
        }
    }

    /// Stops every worker and waits until each has finished its step.
    pub(super) async fn stop(self) {
        for (stop, _) in self.running.values() {
            let _ = stop.send(true);
        }
        for (_, (_, handle)) in self.running {
            let _ = handle.await;
        }
    }
}

impl Reconciler {
    /// One event's worker: steps until told to stop, pacing itself (see the module doc).
    /// A step in progress is finished before it stops.
    async fn work(self: Arc<Self>, event_id: String, mut stop: watch::Receiver<bool>) {
        let mut state = OutboxState::new(&self, &event_id);
        let mut idle = Duration::ZERO;
        let mut failures: u32 = 0;
        while !*stop.borrow() {
            let pause = match self.step_event(&mut state).await {
                Ok((_, report)) if report.retry > 0 => {
                    failures = failures.saturating_add(1);
                    backoff(failures, self.config.max_backoff)
                }
                Ok((0, _)) => {
                    failures = 0;
                    idle = next_idle(idle, self.config.block);
                    idle
                }
                Ok(_) => {
                    failures = 0;
                    idle = Duration::ZERO;
                    Duration::ZERO
                }
                Err(err) => {
                    tracing::warn!(event.id = %event_id, error = %format!("{err:#}"), "outbox step failed");
                    failures = failures.saturating_add(1);
                    backoff(failures, self.config.max_backoff)
                }
            };
            if pause.is_zero() {
                // Busy: read again at once, but let the other tasks run first.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.gauges.forget(&event_id);
    }

    /// One step on one event's outbox: returns how many entries it read, and what it
    /// did with them. A read that meets `NOGROUP` (the stream or its group is gone:
    /// deleted, or lost with Redis's data) recreates the group and reads again.
    pub(super) async fn step_event(
        &self,
        state: &mut OutboxState,
    ) -> anyhow::Result<(usize, StepReport)> {
        self.ensure_group(&state.outbox).await?;
        self.sample_outbox(state).await;
        let entries = match self.read(state).await {
            Err(err) if is_no_group(&err) => {
                tracing::warn!(outbox = %state.outbox, error = %format!("{err:#}"), "an outbox lost its consumer group; recreating it");
                self.forget_group(&state.outbox);
                self.ensure_group(&state.outbox).await?;
                self.read(state).await?
            }
            read => read?,
        };
        self.gauges.lag(
            &state.event_id,
            entries
                .iter()
                .map(|e| stream_entry_age(&e.id))
                .max()
                .unwrap_or_default(),
        );
        let read = entries.len();
        if read == 0 {
            return Ok((0, StepReport::default()));
        }
        let report = self.settle_and_acknowledge(&state.outbox, entries).await?;
        if report.retry > 0 {
            state.own_pending = true;
        }
        Ok((read, report))
    }

    /// Settles a batch read from one outbox, dead-letters what cannot be decoded, gives
    /// up on claims past their deadline or with a permanent error (rejecting them), and
    /// acknowledges everything settled. Entries that failed transiently stay pending.
    async fn settle_and_acknowledge(
        &self,
        outbox: &str,
        entries: Vec<Entry>,
    ) -> anyhow::Result<StepReport> {
        let mut report = StepReport::default();
        let mut acks: Vec<String> = Vec::new();
        for (entry, outcome) in self.settle_entries(entries).await {
            match (&entry.claim, outcome) {
                (Err(problem), _) => {
                    if !self.dead_letter(&entry, problem).await? {
                        report.retry += 1;
                        continue;
                    }
                    report.dead += 1;
                }
                (Ok(_), Ok(settled)) => report.count(&settled),
                (Ok(claim), Err(err)) => {
                    let give_up = if !err.is_transient() {
                        Some(RejectReason::PersistFailed)
                    } else if stream_entry_age(&entry.id) > self.config.claim_deadline {
                        Some(RejectReason::DeadlineExceeded)
                    } else {
                        None
                    };
                    tracing::warn!(
                        event.id = %claim.event_id, booking.id = %claim.booking_id,
                        transient = err.is_transient(), error = %err, giving_up = give_up.is_some(),
                        "claim not persisted"
                    );
                    let Some(reason) = give_up else {
                        report.retry += 1;
                        continue;
                    };
                    match self.reject_claim(claim, reason).await {
                        Ok(settled) => report.count(&settled),
                        Err(err) => {
                            tracing::warn!(booking.id = %claim.booking_id, error = %err,
                                "cannot reject the claim either; it stays pending and is retried");
                            report.retry += 1;
                            continue;
                        }
                    }
                }
            }
            acks.push(entry.id);
        }
        self.acknowledge(outbox, &acks).await?;
        telemetry::bookings_settled("confirmed", report.confirmed);
        telemetry::bookings_settled("held", report.held);
        telemetry::bookings_settled("rejected", report.rejected);
        telemetry::reconciler_trouble(report.retry, report.dead);
        Ok(report)
    }
}

impl StepReport {
    fn count(&mut self, settled: &Settled) {
        match settled {
            Settled::Confirmed => self.confirmed += 1,
            Settled::Held => self.held += 1,
            Settled::Rejected(_) => self.rejected += 1,
            Settled::AlreadySettled(_) => self.already_settled += 1,
        }
    }

    pub(super) fn add(&mut self, other: StepReport) {
        self.confirmed += other.confirmed;
        self.held += other.held;
        self.rejected += other.rejected;
        self.already_settled += other.already_settled;
        self.retry += other.retry;
        self.dead += other.dead;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_pause_doubles_up_to_its_cap() {
        let cap = Duration::from_millis(50);
        let mut idle = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..8 {
            idle = next_idle(idle, cap);
            seen.push(idle.as_millis());
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 50, 50, 50]);
        assert_eq!(
            next_idle(Duration::ZERO, Duration::from_millis(1)).as_millis(),
            1
        );
    }
}

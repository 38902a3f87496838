//! The watcher of one event: every tick it reads the counters and, when they moved
//! (or every few seconds regardless), the seat statuses, and broadcasts one delta.

use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::map::MapState;
use super::source::{Reading, Source};
use super::{lock, Hub, Message, Watch, RATE_WINDOW, RESYNC_TICKS};

/// A watcher: reads the event every tick until nobody watches or it is gone.
pub(super) async fn run(hub: Arc<Hub>, event_id: String, watch: Arc<Watch>) {
    let mut ticks = tokio::time::interval(hub.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = hub.closed.subscribe();
    let mut poller = Poller::default();
    tracing::debug!(event.id = %event_id, "live map watcher started");
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = closed.wait_for(|closed| *closed) => break,
        }
        if hub.retire(&event_id, &watch, false) {
            break;
        }
        match poller.poll(&hub.source, &event_id, &watch).await {
            Ok(true) => poller.failing = false,
            Ok(false) => {
                let _ = watch.tx.send(Message::Gone);
                hub.retire(&event_id, &watch, true);
                break;
            }
            Err(err) => {
                // Once per outage, not once per tick; the map resumes by itself.
                if !poller.failing {
                    tracing::warn!(event.id = %event_id, error = %format!("{err:#}"),
                        "live map cannot read the event; retrying");
                }
                poller.failing = true;
            }
        }
    }
    tracing::debug!(event.id = %event_id, "live map watcher stopped");
}

#[derive(Default)]
struct Poller {
    ticks_since_scan: u32,
    /// `(when, claims_total)` samples over the last `RATE_WINDOW`.
    samples: VecDeque<(Instant, u64)>,
    failing: bool,
}

impl Poller {
    /// One tick; false when the event is no longer on sale.
    async fn poll(
        &mut self,
        source: &Source,
        event_id: &str,
        watch: &Watch,
    ) -> anyhow::Result<bool> {
        // Counters first, seats second: any change after this read shows in the next
        // tick's counters, so a change the seat scan misses is caught up then.
        let Some(Reading { name, counters }) = source.read(event_id).await? else {
            return Ok(false);
        };
        let rate = self.rate(counters.claims_total);
        let previous = lock(&watch.map).as_ref().map(|m| m.counters);
        let Some(previous) = previous else {
            let seats = source.seats(event_id).await?;
            let map = MapState::new(event_id, name, seats, counters);
            let mut slot = lock(&watch.map);
            let _ = watch.tx.send(map.snapshot());
            *slot = Some(map);
            return Ok(true);
        };
        self.ticks_since_scan += 1;
        let moved = (
            previous.available,
            previous.pending,
            previous.booked,
            previous.claims_total,
        ) != (
            counters.available,
            counters.pending,
            counters.booked,
            counters.claims_total,
        );
        let statuses = if moved || self.ticks_since_scan >= RESYNC_TICKS {
            self.ticks_since_scan = 0;
            Some(source.statuses(event_id).await?)
        } else {
            None
        };
        let mut slot = lock(&watch.map);
        let Some(map) = slot.as_mut() else {
            return Ok(true);
        };
        let changes = statuses.map(|s| map.apply(&s)).unwrap_or_default();
        if changes.is_empty() && map.counters == counters && map.claims_per_sec == rate {
            return Ok(true);
        }
        map.counters = counters;
        map.claims_per_sec = rate;
        let changes: Vec<serde_json::Value> = changes
            .into_iter()
            .map(|(i, c)| json!([i, (c as char).to_string()]))
            .collect();
        let body = json!({ "changes": changes, "counters": map.counters_json() });
        let _ = watch.tx.send(Message::Delta(body.to_string().into()));
        Ok(true)
    }

    /// Claims per second over the last `RATE_WINDOW`.
    fn rate(&mut self, total: Option<u64>) -> Option<f64> {
        let total = total?;
        let now = Instant::now();
        self.samples.push_back((now, total));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let &(since, first) = self.samples.front()?;
        let secs = now.duration_since(since).as_secs_f64();
        if secs <= 0.0 {
            return Some(0.0);
        }
        Some(total.saturating_sub(first) as f64 / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_claim_rate_is_measured_over_the_window() {
        let mut p = Poller::default();
        assert_eq!(p.rate(None), None);
        assert_eq!(p.rate(Some(10)), Some(0.0));
        let start = p.samples[0].0;
        p.samples[0].0 = start - Duration::from_millis(500);
        let r = p.rate(Some(60)).unwrap();
        assert!((90.0..=100.0).contains(&r), "50 claims in ~0.5 s: {r}");
    }
}

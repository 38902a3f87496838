//! `--watchers N`: people watching the live seat map during the drop. Each holds an
//! SSE stream of the event (`GET /v1/events/{id}/stream`) open from before the first
//! claim until the drop is verified, and counts what it receives, so that a run with
//! watchers and one without measure what the fan-out costs the claim path.

use crate::schema::WatchSummary;
use anyhow::{ensure, Context};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Watchers {
    tasks: Vec<JoinHandle<anyhow::Result<WatchSummary>>>,
    stop: watch::Sender<bool>,
}

impl Watchers {
    /// Opens `n` streams on the event and checks each starts (200).
    pub async fn start(base: &str, event_id: &str, n: u32) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(n as usize)
            .build()
            .context("the watchers' HTTP client")?;
        let url = format!("{base}/v1/events/{event_id}/stream");
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let response = client
                .get(&url)
                .send()
                .await
                .with_context(|| format!("cannot open {url}"))?;
            ensure!(
                response.status().is_success(),
                "{url} answered {}",
                response.status()
            );
            tasks.push(tokio::spawn(watch_one(response, stopped.clone())));
        }
        Ok(Self { tasks, stop })
    }

    /// Closes the streams and sums what they received.
    pub async fn finish(self) -> anyhow::Result<WatchSummary> {
        let _ = self.stop.send(true);
        let mut sum = WatchSummary::default();
        for task in self.tasks {
            let one = task.await.context("a watcher task failed")??;
            sum.watchers += 1;
            sum.snapshots += one.snapshots;
            sum.deltas += one.deltas;
            sum.bytes += one.bytes;
        }
        Ok(sum)
    }
}

async fn watch_one(
    response: reqwest::Response,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<WatchSummary> {
    let mut seen = WatchSummary::default();
    // Atomic only so that the (spawned, so Send) future can count through a shared
    // reference; nothing else touches it.
    let bytes = AtomicU64::new(0);
    let chunks = futures::stream::unfold(response, |mut response| async move {
        let chunk = response.chunk().await.transpose()?;
        Some((chunk, response))
    })
    .inspect(|chunk| {
        if let Ok(chunk) = chunk {
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    let mut events = std::pin::pin!(chunks.eventsource());
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            event = events.next() => event,
        };
        let Some(event) = event else { break };
        seen.count(&event.context("a watcher's stream failed")?);
    }
    seen.bytes = bytes.load(Ordering::Relaxed);
    Ok(seen)
}

impl WatchSummary {
    /// Counts one event of the seat map stream.
    fn count(&mut self, event: &eventsource_stream::Event) {
        match event.event.as_str() {
            "snapshot" => self.snapshots += 1,
            "delta" => self.deltas += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_counted_across_chunk_boundaries() {
        let chunks = [
            &b"event: snapshot\ndata: {}\n\nevent: del"[..],
            b"ta\ndata: {\"changes\":[]}\n\n:keep-alive\n\nevent: delta\n",
            b"data: {}\n\n",
        ]
        .map(|c| Ok::<_, std::convert::Infallible>(c.to_vec()));
        let mut events = futures::stream::iter(chunks).eventsource();
        let mut seen = WatchSummary::default();
        while let Some(event) = events.next().await {
            seen.count(&event.unwrap());
        }
        assert_eq!((seen.snapshots, seen.deltas), (1, 2));
    }
}

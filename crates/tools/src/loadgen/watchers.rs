//! `--watchers N`: people watching the live seat map during the drop. Each holds an
//! SSE stream of the event (`GET /v1/events/{id}/stream`) open from before the first
//! claim until the drop is verified, and counts what it receives, so that a run with
//! watchers and one without measure what the fan-out costs the claim path.

use anyhow::{ensure, Context};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the watchers received, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WatchSummary {
    pub watchers: u32,
    pub snapshots: u64,
    pub deltas: u64,
    pub bytes: u64,
}

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
    mut response: reqwest::Response,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<WatchSummary> {
    let mut seen = WatchSummary::default();
    let mut lines = LineCounter::default();
    loop {
        let chunk = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            chunk = response.chunk() => chunk.context("a watcher's stream failed")?,
        };
        let Some(chunk) = chunk else { break };
        seen.bytes += chunk.len() as u64;
        lines.feed(&chunk, &mut seen);
    }
    Ok(seen)
}

/// Counts `event:` lines across chunk boundaries.
#[derive(Default)]
struct LineCounter {
    partial: Vec<u8>,
}

impl LineCounter {
    fn feed(&mut self, chunk: &[u8], seen: &mut WatchSummary) {
        for &byte in chunk {
            if byte != b'\n' {
                // Only the start of a line matters.
                if self.partial.len() < 32 {
                    self.partial.push(byte);
                }
                continue;
            }
            match self.partial.strip_prefix(b"event:").map(<[u8]>::trim_ascii) {
                Some(b"snapshot") => seen.snapshots += 1,
                Some(b"delta") => seen.deltas += 1,
                _ => {}
            }
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_across_chunk_boundaries() {
        let mut seen = WatchSummary::default();
        let mut lines = LineCounter::default();
        for chunk in [
            &b"event: snapshot\ndata: {}\n\nevent: del"[..],
            b"ta\ndata: {\"changes\":[]}\n\n:keep-alive\n\nevent: delta\n",
            b"data: {}\n\n",
        ] {
            lines.feed(chunk, &mut seen);
        }
        assert_eq!((seen.snapshots, seen.deltas), (1, 2));
    }
}

//! The ticket-drop load generator behind `seatgate-tools drop` and `seatgate-tools demo`.
//!
//! A drop creates an event through the admin API, warms it, then fires a workload of
//! claims at it through the public API, as simulated users would: every claim with its
//! own `Idempotency-Key`, 429/503/connection failures retried with the same key after
//! a full-jitter backoff that honours `Retry-After`. It records every answer in HDR
//! histograms, waits until every won claim is confirmed, and checks the stores hold
//! exactly what the clients were told. The parts:
//!
//! - [`mix`]: the `--quantity-mix` and its reproducible assignment to claims.
//! - [`schedule`]: open-loop send times and the coordinated-omission correction.
//! - [`buyers`]: on events with holds, what each winner does with its hold
//!   (checks out or walks away) and the waves of returning buyers.
//! - [`client`]: the HTTP calls and the claim retry protocol.
//! - [`stores`], [`gateway`]: the Redis/MySQL and the gateway a drop runs against
//!   (started in this process, or already running at a URL); [`cluster`]: which
//!   primary of a Redis Cluster each event lands on.
//! - [`runner`]: one drop, closed or open loop.
//! - [`verify`]: the confirmation wait and the MySQL, Redis and audit checks.
//! - [`report`]: what a drop measured, as the tables and as the JSON report (whose
//!   types are [`crate::schema`]).
//! - [`storm`]: a connection storm (`seatgate-tools storm`): N fresh connections at once,
//!   one claim each, timed to the first answer, with the kernel's listen counters.

pub mod buyers;
pub mod client;
pub mod cluster;
pub mod gateway;
pub mod mix;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod stores;
pub mod storm;
pub mod verify;
pub mod watchers;

pub use buyers::HoldPlan;
pub use gateway::{InProcessGateway, Target};
pub use mix::QuantityMix;
pub use report::{Comparison, DropReport};
pub use runner::{event_id, event_ids, run, Pacing, Plan, Workload};
pub use schedule::Schedule;
pub use stores::Stores;

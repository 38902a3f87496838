//! seatgate: a Redis-fronted seat reservation gateway for ticket drops.
//!
//! The flow, and where each part lives:
//!
//! - [`api`]: the HTTP contract (axum), documented at `/openapi.json`. The claim
//!   handler makes one Redis call and never touches MySQL.
//! - [`claims`]: Redis. Key names, the Lua scripts of `lua/` and their replies as
//!   types. `claim.lua` claims seats atomically *and* appends the claim to the event's
//!   outbox stream in the same step, so no acknowledged claim can be forgotten. The
//!   connection follows the primary (Sentinel) and claims run only on a Redis node
//!   checked against MySQL (`claims::fence`); with replicas required, a claim's 202
//!   waits for them (`claims::replication`).
//! - [`reconciler`]: reads the outboxes through a consumer group and persists each
//!   claim into MySQL inside a `SELECT … FOR UPDATE` transaction, then confirms it in
//!   Redis, or rejects it and puts Redis back in line with MySQL; its sweeper settles
//!   seats held by claims that can no longer settle.
//! - [`strategy`]: the one interface the handlers and the live map claim and read
//!   through: Redis (the product) or the MySQL baseline the benchmarks compare it with.
//! - [`db`]: MySQL, the system of record (migrations in `migrations/`).
//! - [`deployment`]: one Redis namespace belongs to one MySQL database.
//! - [`ops`]: warm, audit and cancel, which span both stores, and the fence keeper that
//!   rebuilds Redis from MySQL after a restart, a failover or lost keys.
//! - [`live`]: the live seat map (snapshots, the SSE hub and its watchers).
//! - [`domain`]: validated ids, seat states, reject reasons, event validation.
//! - [`clock`], [`backoff`]: the wall clock as Unix time; retry delays.
//! - [`server`]: the HTTP server loop (listen backlog, connection cap, header and idle
//!   timeouts).
//! - [`startup`], [`config`], [`telemetry`], [`cli`]: running it.
//!
//! The load generator, the plots and the private test servers are crates of their
//! own beside this one (`crates/tools`, `crates/sandbox`), so the server is built
//! without them.

pub mod api;
pub mod backoff;
pub mod claims;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod deployment;
pub mod domain;
pub mod live;
pub mod ops;
pub mod reconciler;
pub mod server;
pub mod startup;
pub mod strategy;
pub mod telemetry;

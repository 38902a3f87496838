//! API tests against the machine's real Redis and MariaDB: one binary, one module per
//! concern. Each test spawns its own gateway on port 0 with its own database and Redis
//! namespace (see `helpers`).

mod admin_cli;
mod bad_input;
mod baseline;
mod bookings;
mod browser;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod connections;
mod failover;
mod faults;
mod fencing;
mod front_page;
mod health;
mod helpers;
mod holds;
mod idempotency;
mod lifecycle;
mod live;
mod lock_order;
mod lua;
mod lua_model;
mod metrics;
mod my_bookings;
mod namespace;
mod openapi;
mod outbox;
mod posture;
mod proxy;
mod race;
mod rate_limit;
mod reconciler_shards;
mod redis_loss;
mod replication;
mod seat_map;
mod wait;

//! `seatgate serve`: the HTTP API, with the reconciler in the same process by default.

use anyhow::Context;
use clap::Args;

use super::StoreArgs;
use crate::config::{ClaimStrategy, Secret, Settings};
use crate::server::ServerLimits;
use crate::startup::{shutdown_signal, Application};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SEATGATE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Bearer token of the admin endpoints (required).
    #[arg(long, env = "SEATGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// HS256 secret of user JWTs (required).
    #[arg(long, env = "SEATGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// How claims are booked.
    #[arg(long, env = "SEATGATE_CLAIM_STRATEGY", value_enum, default_value_t = ClaimStrategy::Redis)]
    pub claim_strategy: ClaimStrategy,
    /// Longest any request may take, in milliseconds, before it is answered 503.
    #[arg(long, env = "SEATGATE_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub(crate) request_timeout_ms: u64,
    /// Claims in flight at once before new ones get 503 overloaded.
    #[arg(long, env = "SEATGATE_MAX_INFLIGHT_CLAIMS", default_value_t = 10_000)]
    pub max_inflight_claims: usize,
    /// Live seat map streams (`GET /v1/events/{id}/stream`) open at once before new
    /// ones get 503 overloaded.
    #[arg(long, env = "SEATGATE_MAX_LIVE_STREAMS", default_value_t = 10_000)]
    pub max_live_streams: usize,
    /// Live seat map streams one client address may hold at once (a venue's wifi
    /// puts many people behind one address: keep it generous).
    #[arg(
        long,
        env = "SEATGATE_MAX_LIVE_STREAMS_PER_CLIENT",
        default_value_t = 256
    )]
    pub max_live_streams_per_client: usize,
    /// Claims per second one user may make on average in one event, across every
    /// gateway (0: no limit).
    #[arg(long, env = "SEATGATE_USER_RATE", default_value_t = 5.0)]
    pub user_rate: f64,
    /// Claims one user may make in a burst before the rate applies.
    #[arg(long, env = "SEATGATE_USER_BURST", default_value_t = 10)]
    pub user_burst: u32,
    /// Do not run the reconciler in this process (run `seatgate reconcile` instead).
    #[arg(long, env = "SEATGATE_NO_RECONCILER")]
    pub(crate) no_reconciler: bool,
    /// MySQL connections in the pool.
    #[arg(long, env = "SEATGATE_DB_MAX_CONNECTIONS", default_value_t = 32)]
    pub db_max_connections: u32,
    /// Connections the kernel queues for accept (capped by net.core.somaxconn).
    #[arg(long, env = "SEATGATE_LISTEN_BACKLOG", default_value_t = 4096)]
    pub(crate) listen_backlog: u32,
    /// HTTP connections open at once; beyond it new ones wait in the backlog.
    #[arg(long, env = "SEATGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Milliseconds a client may take to send a request head, from its first byte.
    #[arg(long, env = "SEATGATE_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub(crate) header_timeout_ms: u64,
    /// Milliseconds a connection may stay open with no request in flight and no
    /// byte moving.
    #[arg(long, env = "SEATGATE_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub(crate) idle_timeout_ms: u64,
    /// Milliseconds a served public seat map may be old: one store read per event per
    /// interval, however many readers.
    #[arg(long, env = "SEATGATE_SEAT_MAP_MAX_AGE_MS", default_value_t = 200)]
    pub(crate) seat_map_max_age_ms: u64,
}

impl ServeArgs {
    /// The settings, refusing to go on without the secrets.
    pub fn settings(self) -> anyhow::Result<Settings> {
        let admin_token = self
            .admin_token
            .filter(|t| !t.is_empty())
            .context("SEATGATE_ADMIN_TOKEN is not set: `serve` needs the admin bearer token")?;
        let jwt_secret = self.jwt_secret.filter(|t| !t.is_empty()).context(
            "SEATGATE_JWT_SECRET is not set: `serve` needs the HS256 secret of user tokens",
        )?;
        Ok(Settings {
            http_addr: self.http_addr,
            redis_timeout: self.store.redis_timeout(),
            claim_deadline: self.store.claim_deadline(),
            durability: self.store.durability(),
            redis_url: self.store.redis_url,
            database_url: self.store.database_url,
            redis_namespace: self.store.redis_namespace,
            admin_token: Secret::new(admin_token),
            jwt_secret: Secret::new(jwt_secret),
            claim_strategy: self.claim_strategy,
            request_timeout: std::time::Duration::from_millis(self.request_timeout_ms.max(1)),
            max_inflight_claims: self.max_inflight_claims.max(1),
            max_live_streams: self.max_live_streams,
            max_live_streams_per_client: self.max_live_streams_per_client,
            user_rate: self.user_rate,
            user_burst: self.user_burst,
            reconciler: !self.no_reconciler,
            db_max_connections: self.db_max_connections.max(1),
            server: ServerLimits {
                listen_backlog: self.listen_backlog.max(1),
                max_connections: self.max_connections.max(1),
                header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
                idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            },
            seat_map_max_age: Duration::from_millis(self.seat_map_max_age_ms),
        })
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let app = Application::build(args.settings()?).await?;
    app.run_until(shutdown_signal()).await
}

//! The HTTP API of ARCHITECTURE.md: one module per resource, each with its `router()`,
//! merged here.

pub mod admin;
pub mod auth;
pub mod bookings;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod rate_limit;

use axum::Router;
use sqlx::MySqlPool;
use std::sync::Arc;
use tokio::sync::Semaphore;

use crate::claims::settled::SettledFeed;
use crate::claims::RedisStore;
use crate::config::ClaimStrategy;
use auth::Auth;
use error::ApiError;

/// What every handler can reach. Cheap to clone (handles and `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub redis: RedisStore,
    pub db: MySqlPool,
    pub auth: Arc<Auth>,
    /// Permits for claims in flight (load shedding).
    pub claim_permits: Arc<Semaphore>,
    /// Wakes `Prefer: wait` claims when their booking settles.
    pub settled: SettledFeed,
    /// Per-user claim rate limit; `None` when disabled.
    pub rate_limiter: Option<Arc<rate_limit::UserRateLimiter>>,
    pub strategy: ClaimStrategy,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(admin::router())
        .merge(events::router())
        .merge(bookings::router())
        .merge(health::router())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

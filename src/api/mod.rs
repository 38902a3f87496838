//! The HTTP API: one module per resource, each with its `router()`, merged here. The
//! contract (paths, bodies, status and error codes) is the OpenAPI document served at
//! `/openapi.json`, generated from these handlers; README.md's API section summarises it.

pub mod admin;
pub mod auth;
pub mod bookings;
pub mod error;
pub mod events;
pub mod extract;
pub mod front;
pub mod health;
pub mod live;
pub mod metrics;
pub mod openapi;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use sqlx::MySqlPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::claims::settled::SettledFeed;
use crate::claims::RedisStore;
use crate::domain::EventId;
use auth::Auth;
use error::ApiError;

/// What every handler can reach: one `Arc`, since axum clones the state for every
/// request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl AppState {
    /// `event_not_found` unless the event is on sale (warmed): every public endpoint
    /// treats an event that is not on sale as unknown.
    pub(crate) async fn ensure_on_sale(&self, event_id: &EventId) -> Result<(), ApiError> {
        if !self.redis.is_on_sale(event_id).await? {
            return Err(ApiError::EventNotFound);
        }
        Ok(())
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles behind [`AppState`].
pub struct Shared {
    /// The claims' replication rounds when `SEATGATE_REDIS_MIN_REPLICAS` >= 1 (the
    /// strategy holds it; here for its counters).
    pub group_commit: Option<crate::claims::replication::GroupCommit>,
    pub redis: RedisStore,
    pub db: MySqlPool,
    pub auth: Arc<Auth>,
    /// Permits for claims in flight (load shedding).
    pub(crate) claim_permits: Arc<Semaphore>,
    /// The number of permits `claim_permits` started with.
    pub max_inflight_claims: usize,
    /// Wakes `Prefer: wait` claims when their booking settles.
    pub settled: SettledFeed,
    /// Longest any request may take before it is answered 503.
    pub request_timeout: Duration,
    /// True once MySQL has the schema (migrations applied); until then /readyz is 503.
    pub(crate) db_ready: tokio::sync::watch::Receiver<bool>,
    /// How claims are made and events read: Redis, or the MySQL baseline.
    pub strategy: Arc<dyn crate::strategy::Strategy>,
    /// Watchers of the live seat maps (`GET /v1/events/{id}/stream`).
    pub live: crate::live::LiveHub,
    /// Seat map snapshots shared by all readers of `GET /v1/events/{id}/seats`.
    pub(crate) seat_maps: crate::live::snapshot::SeatMaps,
}

/// Every route of the API with its OpenAPI description: one declaration, so what is
/// served and what is documented cannot part.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(admin::router())
        .merge(events::router())
        .merge(front::router())
        .merge(bookings::router())
        .merge(health::router())
        .merge(live::router())
        .merge(metrics::router())
        .merge(openapi::router())
}

/// The API's OpenAPI document, as `GET /openapi.json` serves it.
pub fn openapi_doc() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let deadline = state.request_timeout;
    let (routes, doc) = api().split_for_parts();
    routes
        .layer(Extension(openapi::Spec::new(&doc)))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(move |req, next| {
            within(deadline, req, next)
        }))
        // Outermost first: give each request an id (or keep the caller's), run it in
        // a span carrying that id, and send the id back.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // Failures are logged once, where they are handled (`ApiError`).
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Answers 503 `unavailable` (with `Retry-After`) when a request takes longer than
/// `deadline`, whatever it waits on. Every step below is safe to abandon: claims are
/// one atomic script, settles and warms are idempotent, and an unfinished transaction
/// is rolled back by MySQL.
async fn within(deadline: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_ms = deadline.as_millis() as u64,
                "request timed out"
            );
            ApiError::Unavailable.into_response()
        }
    }
}

/// The span every request runs in: method, path and request id, never headers or body
/// (they carry tokens).
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", request.id = %id, method = %req.method(), path = %req.uri().path())
}

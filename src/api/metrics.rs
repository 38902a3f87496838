//! `GET /metrics`: the process's metrics in the Prometheus text format (see
//! [`crate::telemetry`] for the names).
//!
//! Like `/healthz` it needs no token, so it must not be exposed publicly: serve the
//! API through a proxy that does not route `/metrics`, or scrape it on a private
//! network. The figures are process-wide (every gateway of one process shares them).

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::tagged;
use super::AppState;
use crate::telemetry;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router() -> OpenApiRouter<AppState> {
    tagged("operations", OpenApiRouter::new().routes(routes!(metrics)))
}

/// The process's metrics in the Prometheus text format
///
/// Unauthenticated like /healthz: keep it off the public internet.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
    ),
    security(())
)]
async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        telemetry::prometheus().render(),
    )
}

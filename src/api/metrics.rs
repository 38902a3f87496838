//! `GET /metrics`: the process's metrics in the Prometheus text format (see
//! [`crate::telemetry`] for the names).
//!
//! Like `/healthz` it needs no token, so it must not be exposed publicly: serve the
//! API through a proxy that does not route `/metrics`, or scrape it on a private
//! network. The figures are process-wide (every gateway of one process shares them).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
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
async fn metrics() -> Response {
    let body = telemetry::prometheus().render();
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

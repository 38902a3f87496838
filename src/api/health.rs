//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::tagged;
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    tagged(
        "operations",
        OpenApiRouter::new()
            .routes(routes!(healthz))
            .routes(routes!(readyz)),
    )
}

/// The process is up.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// Liveness: 200 while the process runs
#[utoipa::path(
    get,
    path = "/healthz",
    responses((status = 200, description = "The process runs", body = Health)),
    security(())
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Whether the backends answer.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
    /// `up` or `down`.
    #[schema(value_type = String, example = "up")]
    redis: &'static str,
    /// `up` or `down` (down until the migrations are applied).
    #[schema(value_type = String, example = "up")]
    mysql: &'static str,
}

/// Readiness: 200 when Redis and MySQL answer, else 503
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Redis and MySQL answer", body = Readiness),
        (status = 503, description = "Redis or MySQL does not answer (or MySQL has no schema yet)", body = Readiness),
    ),
    security(())
)]
async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let limit = Duration::from_secs(1);
    let redis = app.redis.ping().await.is_ok();
    let mysql = *app.db_ready.borrow()
        && matches!(
            tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(&app.db)).await,
            Ok(Ok(_))
        );
    let status = if redis && mysql {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "up" } else { "down" };
    (
        status,
        Json(Readiness {
            status: if redis && mysql {
                "ready"
            } else {
                "unavailable"
            },
            redis: word(redis),
            mysql: word(mysql),
        }),
    )
}

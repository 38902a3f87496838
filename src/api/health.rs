//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::Duration;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// 200 while the process runs.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when Redis and MySQL both answer within a second (and MySQL has its schema),
/// else 503 naming which not.
async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
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
        Json(
            json!({ "status": if redis && mysql { "ready" } else { "unavailable" },
                     "redis": word(redis), "mysql": word(mysql) }),
        ),
    )
}

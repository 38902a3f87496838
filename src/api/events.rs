//! Public reads: an event's counters and its seat map. No token needed; an event that
//! is not on sale (not warmed) is answered as unknown.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::ApiPath;
use super::AppState;
use crate::config::ClaimStrategy;
use crate::db::sync_claim;
use crate::domain::{is_valid_event_id, SeatStatus};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/events/{id}/seats", get(get_seats))
}

async fn get_event(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    if !is_valid_event_id(&id) {
        return Err(ApiError::EventNotFound);
    }
    let event = match app.strategy {
        ClaimStrategy::Redis => app.redis.event_summary(&id).await?,
        ClaimStrategy::Mysql => sync_claim::event_summary(&app.db, &id).await?,
    }
    .ok_or(ApiError::EventNotFound)?;
    Ok(Json(json!({
        "id": id,
        "name": event.name,
        "seats_total": event.seats_total,
        "available": event.available,
        "pending": event.pending,
        "booked": event.booked,
        "per_user_limit": event.per_user_limit,
    })))
}

async fn get_seats(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    if !is_valid_event_id(&id) || !app.redis.is_on_sale(&id).await? {
        return Err(ApiError::EventNotFound);
    }
    let seats: Vec<Value> = match app.strategy {
        ClaimStrategy::Redis => app
            .redis
            .seat_states(&id)
            .await?
            .into_iter()
            .map(|s| json!({ "id": s.seat, "status": SeatStatus::from_state(&s.state) }))
            .collect(),
        ClaimStrategy::Mysql => sync_claim::seat_map(&app.db, &id)
            .await?
            .into_iter()
            .map(|(seat, status)| json!({ "id": seat, "status": status }))
            .collect(),
    };
    Ok(Json(json!({ "event_id": id, "seats": seats })))
}

//! Public reads: an event's counters and its seat map. No token needed; an event that
//! is not on sale (not warmed) is answered as unknown.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::ApiPath;
use super::openapi::{EventNotFound, Unavailable};
use super::AppState;
use crate::config::ClaimStrategy;
use crate::db::sync_claim;
use crate::domain::{is_valid_event_id, SeatStatus};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_event))
        .routes(routes!(get_seats))
}

/// An event's counters.
#[derive(Debug, Serialize, ToSchema)]
struct EventView {
    id: String,
    name: String,
    seats_total: u64,
    available: u64,
    pending: u64,
    booked: u64,
    per_user_limit: u32,
}

#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    summary = "An event on sale, with its seat counters",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 404, response = inline(EventNotFound)),
        (status = 503, response = inline(Unavailable)),
    ),
    security(())
)]
async fn get_event(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EventView>, ApiError> {
    if !is_valid_event_id(&id) {
        return Err(ApiError::EventNotFound);
    }
    let event = match app.strategy {
        ClaimStrategy::Redis => app.redis.event_summary(&id).await?,
        ClaimStrategy::Mysql => sync_claim::event_summary(&app.db, &id).await?,
    }
    .ok_or(ApiError::EventNotFound)?;
    Ok(Json(EventView {
        id,
        name: event.name,
        seats_total: event.seats_total,
        available: event.available,
        pending: event.pending,
        booked: event.booked,
        per_user_limit: event.per_user_limit,
    }))
}

/// An event's seat map, in best-available order.
#[derive(Debug, Serialize, ToSchema)]
struct SeatMap {
    event_id: String,
    seats: Vec<SeatView>,
}

/// One seat and its status.
#[derive(Debug, Serialize, ToSchema)]
struct SeatView {
    id: String,
    /// `available`, `pending` or `booked` (the mysql claim strategy has no `pending`).
    #[schema(value_type = SeatStatus)]
    status: String,
}

#[utoipa::path(
    get,
    path = "/v1/events/{id}/seats",
    tag = "events",
    summary = "The seat map of an event on sale",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "Every seat with its status", body = SeatMap),
        (status = 404, response = inline(EventNotFound)),
        (status = 503, response = inline(Unavailable)),
    ),
    security(())
)]
async fn get_seats(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SeatMap>, ApiError> {
    app.ensure_on_sale(&id).await?;
    let seats: Vec<SeatView> = match app.strategy {
        ClaimStrategy::Redis => app
            .redis
            .seat_states(&id)
            .await?
            .into_iter()
            .map(|s| SeatView {
                status: SeatStatus::from_state(&s.state).as_str().to_owned(),
                id: s.seat,
            })
            .collect(),
        ClaimStrategy::Mysql => sync_claim::seat_map(&app.db, &id)
            .await?
            .into_iter()
            .map(|(id, status)| SeatView { id, status })
            .collect(),
    };
    Ok(Json(SeatMap {
        event_id: id,
        seats,
    }))
}

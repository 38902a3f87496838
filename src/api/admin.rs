//! Admin endpoints: create, warm and audit events.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use super::events::SeatCounters;
use super::extract::{json_body, parse_event_id, read_body, ApiPath, ApiQuery};
use super::openapi::{tagged, AdminEventErrors, AdminUnauthorized, EventIdParam, Unavailable};
use super::AppState;
use crate::db::events::{self, CreateEventError, NewEvent};
use crate::domain::event;
use crate::ops;
use crate::ops::audit::Divergence;

/// An event of 100,000 seats of 32 characters is a few MiB of JSON.
const CREATE_EVENT_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    tagged(
        "admin",
        OpenApiRouter::new()
            .routes(routes!(create_event))
            .routes(routes!(warm_event))
            .routes(routes!(audit_event)),
    )
}

/// A new event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateEvent {
    /// The event id, `[A-Za-z0-9_-]{1,64}`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    id: String,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// The seat ids (each 1 to 32 characters, unique), in best-available order.
    #[schema(schema_with = super::openapi::event_seats)]
    seats: Vec<String>,
    /// Most seats one user may hold in this event (pending plus confirmed); 4 when
    /// absent or null.
    #[schema(minimum = 1, maximum = 100, default = 4)]
    per_user_limit: Option<u32>,
    /// Seconds a persisted claim is held for its checkout (`POST
    /// …/bookings/{booking_id}/checkout`) before its seats go back on sale; 0 (the
    /// default): no holds, a persisted claim is confirmed at once.
    #[schema(minimum = 0, maximum = 7200, default = 0)]
    hold_seconds: Option<u32>,
    /// How long after the claim a hold may be extended to (`…/extend`); defaults to
    /// `hold_seconds`, never below it.
    #[schema(minimum = 0, maximum = 7200)]
    hold_max_seconds: Option<u32>,
}

impl CreateEvent {
    /// The event's per-user limit and holds, when the whole event is valid.
    fn validate(&self) -> Result<(u32, (u32, u32)), ApiError> {
        event::validate(&self.id, &self.name, &self.seats, self.per_user_limit)
            .and_then(|limit| {
                Ok((
                    limit,
                    event::holds(self.hold_seconds, self.hold_max_seconds)?,
                ))
            })
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))
    }
}

/// The answer to a created event.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedEvent {
    id: String,
    name: String,
    seats_total: usize,
    per_user_limit: u32,
    /// Only for an event with holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_seconds: Option<u32>,
    /// Only for an event with holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_max_seconds: Option<u32>,
}

/// Create an event (in MySQL; not on sale until warmed)
#[utoipa::path(
    post,
    path = "/v1/admin/events",
    request_body = CreateEvent,
    responses(
        (status = 201, description = "The event was created", body = CreatedEvent),
        (status = 400, description = "`invalid_request`: bad JSON or a field out of range", body = ErrorBody),
        (status = 401, response = inline(AdminUnauthorized)),
        (status = 409, description = "`event_exists`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 16 MiB", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ),
    security(("admin_token" = []))
)]
async fn create_event(
    State(app): State<AppState>,
    _: Admin,
    body: Body,
) -> Result<(StatusCode, Json<CreatedEvent>), ApiError> {
    let req: CreateEvent = json_body(&read_body(body, CREATE_EVENT_BODY_LIMIT).await?)?;
    let (per_user_limit, (hold_seconds, hold_max_seconds)) = req.validate()?;
    let new = NewEvent {
        id: &req.id,
        name: &req.name,
        seats: &req.seats,
        per_user_limit,
        hold_seconds,
        hold_max_seconds,
    };
    match events::create_event(&app.db, &new).await {
        Ok(()) => {}
        Err(CreateEventError::Exists) => return Err(ApiError::EventExists),
        Err(CreateEventError::Db(e)) => return Err(e.into()),
    }
    tracing::info!(event.id = %req.id, seats = req.seats.len(), "event created");
    let seats_total = req.seats.len();
    Ok((
        StatusCode::CREATED,
        Json(CreatedEvent {
            id: req.id,
            name: req.name,
            seats_total,
            per_user_limit,
            hold_seconds: (hold_max_seconds > 0).then_some(hold_seconds),
            hold_max_seconds: (hold_max_seconds > 0).then_some(hold_max_seconds),
        }),
    ))
}

/// An event's seat counts after a warm.
#[derive(Debug, Serialize, ToSchema)]
struct WarmReport {
    event_id: String,
    #[serde(flatten)]
    counters: SeatCounters,
}

/// Copy an event's inventory from MySQL into Redis and put it on sale
///
/// Safe at any time: never frees a seat a pending claim holds, never hands out a seat MySQL
/// has booked. No body.
#[utoipa::path(
    post,
    path = "/v1/admin/events/{id}/warm",
    params(EventIdParam),
    responses(
        (status = 200, description = "The event is on sale", body = WarmReport),
        AdminEventErrors,
    ),
    security(("admin_token" = []))
)]
async fn warm_event(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: Admin,
) -> Result<Json<WarmReport>, ApiError> {
    let id = parse_event_id(id)?;
    let counts = ops::warm::warm(&app.redis, &app.db, &id).await?;
    Ok(Json(WarmReport {
        event_id: id.into_string(),
        counters: counts.into(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Also bring Redis in line with MySQL (pending claims are left alone).
    #[serde(default)]
    repair: bool,
}

/// What an audit found.
#[derive(Debug, Serialize, ToSchema)]
struct AuditResponse {
    event_id: String,
    /// True when Redis and MySQL agree on every seat.
    consistent: bool,
    /// Every seat whose states differ (a claim still pending is not a divergence).
    divergences: Vec<Divergence>,
    /// True when the divergences were repaired (`repair=true`).
    repaired: bool,
}

/// Compare an event's seats in Redis and MySQL, and optionally repair Redis
#[utoipa::path(
    get,
    path = "/v1/admin/events/{id}/audit",
    params(EventIdParam, AuditQuery),
    responses(
        (status = 200, description = "The audit report", body = AuditResponse),
        (status = 400, description = "`invalid_request`: a bad query string", body = ErrorBody),
        AdminEventErrors,
    ),
    security(("admin_token" = []))
)]
async fn audit_event(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<AuditQuery>,
    _: Admin,
) -> Result<Json<AuditResponse>, ApiError> {
    let id = parse_event_id(id)?;
    let report = ops::audit::audit(&app.redis, &app.db, &id, query.repair).await?;
    Ok(Json(AuditResponse {
        event_id: id.into_string(),
        consistent: report.divergences.is_empty(),
        divergences: report.divergences,
        repaired: report.repaired,
    }))
}

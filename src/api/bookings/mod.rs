//! Bookings: claim (the hot path, [`claim`]), read, cancel.
//!
//! The claim's body and headers are parsed in [`request`], before any store is
//! touched; the claim handler then makes exactly one call to the claim strategy and
//! turns the outcome into the contract's answer. Reading and cancelling a booking are
//! here.

mod claim;
pub mod request;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use request::{
    idempotency_key, prefer_wait, ParsedClaim, Wanted, CLAIM_BODY_LIMIT, CLAIM_SEATS_MAX, MAX_WAIT,
};

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{parse_booking_id, parse_event_id, ApiPath};
use super::openapi::Unavailable;
use super::AppState;
use crate::domain::*;
use crate::ops;
use crate::ops::cancel::Requester;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(claim::create_booking))
        .routes(routes!(get_booking, cancel_booking))
}

/// The booking as JSON, with `Location` pointing at it.
fn booking_response(status: StatusCode, booking: &Booking) -> Response {
    let location = format!(
        "/v1/events/{}/bookings/{}",
        booking.event_id, booking.booking_id
    );
    let mut response = (status, Json(booking)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The caller as a requester of an existing booking (owner or admin).
fn requester(caller: &Caller) -> Requester<'_> {
    match caller {
        Caller::Admin => Requester::Admin,
        Caller::User(user) => Requester::User(user),
    }
}

/// Parses the path of a booking URL: the event first (a malformed id, or an event not
/// on sale, is `event_not_found`), then the booking (a malformed id names no booking).
async fn booking_path(
    app: &AppState,
    event_id: String,
    booking_id: String,
) -> Result<(EventId, BookingId), ApiError> {
    let event_id = parse_event_id(event_id)?;
    app.ensure_on_sale(&event_id).await?;
    Ok((event_id, parse_booking_id(booking_id)?))
}

#[utoipa::path(
    get,
    path = "/v1/events/{id}/bookings/{booking_id}",
    tag = "bookings",
    summary = "A booking, for its owner or the admin",
    params(
        ("id" = String, Path, description = "Event id"),
        ("booking_id" = String, Path, format = "uuid", description = "Booking id (a UUID)"),
    ),
    responses(
        (status = 200, description = "The booking: `pending`, `confirmed`, `rejected` (with `reason`) or `cancelled`", body = Booking),
        (status = 401, description = "`unauthorized`: missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`booking_not_found` (also for anyone but its owner and the admin); `event_not_found`", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ),
    security(("user_jwt" = []), ("admin_token" = []))
)]
async fn get_booking(
    State(app): State<AppState>,
    ApiPath((event_id, booking_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Booking>, ApiError> {
    let caller = app.auth.caller(&headers)?;
    let (event_id, booking_id) = booking_path(&app, event_id, booking_id).await?;
    let booking = ops::cancel::find(
        &app.redis,
        &app.db,
        &event_id,
        &booking_id,
        &requester(&caller),
    )
    .await?;
    Ok(Json(booking))
}

#[utoipa::path(
    delete,
    path = "/v1/events/{id}/bookings/{booking_id}",
    tag = "bookings",
    summary = "Cancel a booking (owner or admin); its seats are available again",
    description = "Works on a pending booking too (it is then never persisted as booked). Idempotent.",
    params(
        ("id" = String, Path, description = "Event id"),
        ("booking_id" = String, Path, format = "uuid", description = "Booking id (a UUID)"),
    ),
    responses(
        (status = 200, description = "The booking, `cancelled`", body = Booking),
        (status = 401, description = "`unauthorized`: missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`booking_not_found` (also for anyone but its owner and the admin); `event_not_found`", body = ErrorBody),
        (status = 409, description = "`booking_rejected`: a rejected booking cannot be cancelled", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ),
    security(("user_jwt" = []), ("admin_token" = []))
)]
async fn cancel_booking(
    State(app): State<AppState>,
    ApiPath((event_id, booking_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Booking>, ApiError> {
    let caller = app.auth.caller(&headers)?;
    let (event_id, booking_id) = booking_path(&app, event_id, booking_id).await?;
    let booking = ops::cancel::cancel(
        &app.redis,
        &app.db,
        &event_id,
        &booking_id,
        &requester(&caller),
    )
    .await?;
    Ok(Json(booking))
}

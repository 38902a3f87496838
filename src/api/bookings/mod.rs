//! Bookings: claim (the hot path, [`claim`]), list ([`list`]), read, cancel; a held
//! booking's checkout and extension ([`hold`]).
//!
//! The claim's body and headers are parsed in [`request`], before any store is
//! touched; the claim handler then makes exactly one call to the claim strategy and
//! turns the outcome into the contract's answer. Reading and cancelling a booking are
//! here.

mod claim;
mod hold;
mod list;
pub mod request;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
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
use super::openapi::{tagged, BookingErrors, BookingParams};
use super::AppState;
use crate::domain::*;
use crate::ops;
use crate::ops::cancel::Requester;

pub fn router() -> OpenApiRouter<AppState> {
    tagged(
        "bookings",
        OpenApiRouter::new()
            .routes(routes!(claim::create_booking, list::list_bookings))
            .routes(routes!(get_booking, cancel_booking))
            .merge(hold::routes()),
    )
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

/// The booking a URL names, if the caller may see it (its owner or the admin). The
/// caller is checked first, then the path: the event (a malformed id, or an event not
/// on sale, is `event_not_found`), then the booking (a malformed id names no booking).
struct VisibleBooking(Booking);

impl FromRequestParts<AppState> for VisibleBooking {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        booking_in_path(parts, app, false).await.map(Self)
    }
}

/// The booking the URL names, for its owner, or (unless `owner_only`) the admin; the
/// admin token on an owner-only route finds no booking. Checked in this order: caller,
/// event, booking.
async fn booking_in_path(
    parts: &mut Parts,
    app: &AppState,
    owner_only: bool,
) -> Result<Booking, ApiError> {
    let ApiPath((event_id, booking_id)) = ApiPath::from_request_parts(parts, app).await?;
    let caller = app.auth.caller(&parts.headers)?;
    let event_id = parse_event_id(event_id)?;
    app.ensure_on_sale(&event_id).await?;
    let booking_id = parse_booking_id(booking_id)?;
    if owner_only && caller == Caller::Admin {
        return Err(ApiError::BookingNotFound);
    }
    let requester = requester(&caller);
    Ok(ops::cancel::find(&app.redis, &app.db, &event_id, &booking_id, &requester).await?)
}

/// A booking, for its owner or the admin
#[utoipa::path(
    get,
    path = "/v1/events/{id}/bookings/{booking_id}",
    params(BookingParams),
    responses(
        (status = 200, description = "The booking: `pending`, `held` (with `expires_at`), `confirmed`, `rejected` (with `reason`), `cancelled` or `expired`", body = Booking),
        BookingErrors,
    ),
    security(("user_jwt" = []), ("admin_token" = []))
)]
async fn get_booking(VisibleBooking(booking): VisibleBooking) -> Json<Booking> {
    Json(booking)
}

/// Cancel a booking (owner or admin); its seats are available again
///
/// Works on a pending booking too (it is then never persisted as booked), and on a
/// held one (its seats are free at once). Idempotent; a hold that expired first
/// answers its booking as `expired`.
#[utoipa::path(
    delete,
    path = "/v1/events/{id}/bookings/{booking_id}",
    params(BookingParams),
    responses(
        (status = 200, description = "The booking, `cancelled` (or `expired`, when its hold ran out first)", body = Booking),
        BookingErrors,
        (status = 409, description = "`booking_rejected`: a rejected booking cannot be cancelled", body = ErrorBody),
    ),
    security(("user_jwt" = []), ("admin_token" = []))
)]
async fn cancel_booking(
    State(app): State<AppState>,
    VisibleBooking(booking): VisibleBooking,
) -> Result<Json<Booking>, ApiError> {
    Ok(Json(
        ops::cancel::cancel(&app.redis, &app.db, booking).await?,
    ))
}

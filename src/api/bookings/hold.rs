//! A held booking's checkout and extension (events with holds), for its owner.
//!
//! Both take the booking the URL names from its owner's JWT alone (the admin token is
//! not its owner: 404), parse and check the body before any store is touched, and
//! leave the decision to `ops::hold`, which makes it in MySQL under the booking's
//! seat locks.

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::super::error::{ApiError, ErrorBody};
use super::super::extract::{json_body, read_body};
use super::super::openapi::{BookingErrors, BookingParams};
use super::super::AppState;
use crate::clock::unix_millis;
use crate::domain::{Attendee, Booking, HOLD_SECONDS_MAX};
use crate::ops::{self, hold::Checkout};

/// The largest checkout or extension body: 100 attendees (a booking's most seats) of
/// the longest name and e-mail fit with room to spare.
const HOLD_BODY_LIMIT: usize = 128 * 1024;

/// The booking a URL names, if the caller is its owner (a user JWT). Checked in the
/// same order as a read: caller, event, booking.
struct OwnBooking(Booking);

impl FromRequestParts<AppState> for OwnBooking {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        // The admin may read and cancel any booking, but a checkout is its buyer's.
        super::booking_in_path(parts, app, true).await.map(Self)
    }
}

/// A checkout: the attendee of each seat, and optionally the payment's reference.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CheckoutBody {
    /// Exactly one per seat of the booking.
    #[schema(min_items = 1, max_items = 100)]
    attendees: Vec<Attendee>,
    /// The payment's reference at the payment provider, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    payment_reference: Option<String>,
}

/// Check out a held booking: it is `confirmed`, with its attendees
///
/// The owner's JWT only. The same checkout again answers the same; MySQL decides a
/// checkout racing with the hold's expiry, exactly one of them wins. Attendee names and
/// e-mails are kept in MySQL only and shown only to the booking's owner.
#[utoipa::path(
    post,
    path = "/v1/events/{id}/bookings/{booking_id}/checkout",
    params(BookingParams),
    request_body = CheckoutBody,
    responses(
        (status = 200, description = "The booking, `confirmed`, with its `attendees`", body = Booking),
        (status = 400, description = "`invalid_request`: bad JSON, a missing or extra attendee, a seat not in the booking, an empty or over-long name, a malformed e-mail", body = ErrorBody),
        BookingErrors,
        (status = 409, description = "`hold_expired`: the hold ran out and its seats are back on sale; `booking_pending` (with `Retry-After`): the claim is not persisted yet; `booking_not_held`: confirmed already, with other details (or never held); `booking_cancelled`; `booking_rejected`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over 128 KiB", body = ErrorBody),
    ),
    security(("user_jwt" = []))
)]
async fn checkout(
    State(app): State<AppState>,
    OwnBooking(booking): OwnBooking,
    body: Body,
) -> Result<Json<Booking>, ApiError> {
    let body: CheckoutBody = json_body(&read_body(body, HOLD_BODY_LIMIT).await?)?;
    let checkout = Checkout {
        attendees: body.attendees,
        payment_reference: body.payment_reference,
    };
    Ok(Json(
        ops::hold::checkout(&app.redis, &app.db, booking, &checkout, unix_millis()).await?,
    ))
}

/// An extension: how many seconds from now the hold should last.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    /// Seconds from now, 0 to 7200 (0 ends the hold now: its seats go back on sale
    /// within 2 s). Capped at the claim's time plus the event's `hold_max_seconds`.
    #[schema(minimum = 0, maximum = 7200)]
    seconds: u32,
}

/// Extend a held booking's hold
///
/// The new `expires_at` is the earlier of now + `seconds` and the claim's time + the
/// event's `hold_max_seconds`.
#[utoipa::path(
    post,
    path = "/v1/events/{id}/bookings/{booking_id}/extend",
    params(BookingParams),
    request_body = ExtendBody,
    responses(
        (status = 200, description = "The booking, `held`, with its new `expires_at`", body = Booking),
        (status = 400, description = "`invalid_request`: bad JSON, `seconds` missing or outside 0..7200", body = ErrorBody),
        BookingErrors,
        (status = 409, description = "`hold_expired`; `booking_not_held`: confirmed (checked out, or an event without holds); `booking_pending` (with `Retry-After`): not persisted yet; `booking_cancelled`; `booking_rejected`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
    ),
    security(("user_jwt" = []))
)]
async fn extend(
    State(app): State<AppState>,
    OwnBooking(booking): OwnBooking,
    body: Body,
) -> Result<Json<Booking>, ApiError> {
    let body: ExtendBody = json_body(&read_body(body, HOLD_BODY_LIMIT).await?)?;
    if body.seconds > HOLD_SECONDS_MAX {
        return Err(ApiError::InvalidRequest(format!(
            "seconds must be 0 to {HOLD_SECONDS_MAX}"
        )));
    }
    Ok(Json(
        ops::hold::extend(&app.redis, &app.db, booking, body.seconds, unix_millis()).await?,
    ))
}

pub(super) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(checkout))
        .routes(utoipa_axum::routes!(extend))
}

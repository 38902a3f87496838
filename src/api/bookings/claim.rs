//! The claim handler, the hot path: parse (caller, `Idempotency-Key`, body), one call
//! to the claim strategy, then the contract's answer, waiting for the booking to settle
//! first when the client sent `Prefer: wait`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use super::booking_response;
use super::request::{
    idempotency_key, prefer_wait, ClaimBody, ParsedClaim, Wanted, CLAIM_BODY_LIMIT,
};
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{parse_event_id, read_body, ApiPath};
use crate::api::openapi::EventNotFound;
use crate::api::AppState;
use crate::claims::{ClaimOutcome, ClaimRequest, Selection};
use crate::domain::*;
use crate::telemetry::{self, ClaimProbe, ClaimResult};

/// Claim seats: specific ones, or a quantity of the best available
///
/// Held in Redis at once (202 `pending`) and persisted to MySQL in the background. With an
/// `Idempotency-Key`, the same user, key and body again gets the first answer's status code
/// and `booking_id` for 24 h (202, 409 and 422 are recorded; 400, 401, 413, 429 and 503 are
/// not). With the mysql claim strategy a successful claim is booked at once and answered
/// 201 `confirmed`.
#[utoipa::path(
    post,
    path = "/v1/events/{id}/bookings",
    params(
        ("id" = String, Path, description = "Event id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
            pattern = r"^[\x21-\x7E]{1,255}$",
            description = "1 to 255 visible ASCII characters, scoped to the user and the event; \
                any other value is 400 `invalid_request`"),
        ("Prefer" = Option<String>, Header, nullable = false, example = "wait=5",
            description = "`wait=N` (RFC 7240, N capped at 10 seconds): wait for the booking to \
                leave `pending` before answering; other preferences are ignored"),
    ),
    request_body(content = ClaimBody, description = "Exactly one of `seats` and `quantity`"),
    responses(
        (status = 201, description = "`confirmed`: settled within a `Prefer: wait`, or the mysql claim strategy", body = Booking,
            headers(
                ("Location" = String, description = "/v1/events/{id}/bookings/{booking_id}"),
                ("Preference-Applied" = String, description = "`wait=N` when a wait was honoured"),
            )),
        (status = 202, description = "`pending`: held in Redis, being persisted", body = Booking,
            headers(
                ("Location" = String, description = "/v1/events/{id}/bookings/{booking_id}"),
                ("Preference-Applied" = String, description = "`wait=N` when a wait was honoured"),
            )),
        (status = 400, description = "`invalid_request`: bad JSON, both or neither of seats/quantity, empty or duplicate seats, a seat id outside 1..32 characters, more than 100 seats, quantity < 1, bad Idempotency-Key", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing, invalid or expired user JWT (the admin token cannot claim)", body = ErrorBody),
        (status = 404, response = inline(EventNotFound)),
        (status = 409, description = "`seats_unavailable` (with `seats`, the requested seats that are taken); `sold_out` when a quantity cannot be met; `booking_rejected` (with `booking_id` and `reason`) when a `Prefer: wait` claim was rejected", body = ErrorBody,
            examples(
                ("seats_unavailable" = (value = json!({"error": "seats_unavailable", "message": "some of the requested seats are taken", "seats": ["A1"]}))),
                ("sold_out" = (value = json!({"error": "sold_out", "message": "not enough seats are left for this quantity"}))),
            )),
        (status = 413, description = "`payload_too_large`: body over 16 KiB (a valid claim needs less)", body = ErrorBody),
        (status = 422, description = "`user_limit_exceeded` (with `limit`); `unknown_seats` (with `seats`); `idempotency_key_reused` (same user and key, different body)", body = ErrorBody,
            examples(
                ("user_limit_exceeded" = (value = json!({"error": "user_limit_exceeded", "message": "this booking would take the user over the per-user limit of 4 seats", "limit": 4}))),
                ("unknown_seats" = (value = json!({"error": "unknown_seats", "message": "some of the requested seats do not exist in this event", "seats": ["Z9"]}))),
                ("idempotency_key_reused" = (value = json!({"error": "idempotency_key_reused", "message": "this Idempotency-Key was used before with a different request"}))),
            )),
        (status = 429, description = "`rate_limited`: this user claims in this event faster than `SEATGATE_USER_RATE` allows (one limit across every gateway; a claim answered 400, 404 or replayed does not count, and a 429 is not recorded under the Idempotency-Key)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`overloaded` (too many claims in flight) or `unavailable` (a backend failed or the request timed out; or, with `SEATGATE_REDIS_MIN_REPLICAS`, the replicas did not confirm the claim in time: it may exist, so retry with the same Idempotency-Key)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("user_jwt" = []))
)]
pub(super) async fn create_booking(
    State(app): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Caller::User(user_id) = app.auth.caller(&headers)? else {
        return Err(ApiError::Unauthorized(
            "bookings are made with a user token",
        ));
    };
    let mut probe = ClaimProbe::start();
    let answer = claim(&app, event_id, user_id, &headers, body, &mut probe).await;
    if let Err(err) = &answer {
        if probe.outcome() != ClaimResult::Replay {
            probe.set(claim_result_of(err));
        }
    }
    // Again now that this claim's permit is back, so an idle gateway shows 0.
    telemetry::claims_in_flight(in_flight(&app));
    answer
}

/// The claim of an authenticated user; tells `probe` how it went when it went well
/// (the caller names the errors).
async fn claim(
    app: &AppState,
    event_id: String,
    user_id: UserId,
    headers: &HeaderMap,
    body: Body,
    probe: &mut ClaimProbe,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    let wait = prefer_wait(headers);
    let bytes = read_body(body, CLAIM_BODY_LIMIT).await?;
    let (wanted, fingerprint) = match key {
        Some(_) => {
            let claim = ParsedClaim::parse(&bytes)?;
            (claim.wanted, Some(claim.fingerprint))
        }
        None => (Wanted::parse(&bytes)?, None),
    };
    // After the caller and the body: a claim wrong in several ways is answered for
    // the first of them, in this order.
    let event_id = parse_event_id(event_id)?;
    // Load shedding: a bounded number of claims in flight; beyond it, an immediate 503
    // with Retry-After rather than a queue that grows until latency is unbounded.
    let _permit = app
        .claim_permits
        .try_acquire()
        .map_err(|_| ApiError::Overloaded)?;
    telemetry::claims_in_flight(in_flight(app));

    let booking_id = BookingId::generate();
    let selection = match &wanted {
        Wanted::Seats(seats) => Selection::Seats(seats),
        Wanted::Quantity(n) => Selection::Quantity(*n),
    };
    let request = ClaimRequest {
        event_id: &event_id,
        user_id: &user_id,
        booking_id: &booking_id,
        selection,
        idempotency: key.zip(fingerprint.as_deref()),
        now_ms: crate::clock::unix_millis(),
    };
    let outcome = app.strategy.claim(&request).await?;
    let (outcome, replay) = match outcome {
        ClaimOutcome::Replay { first, answered } => (*first, Some(answered)),
        fresh => (fresh, None),
    };
    if replay.is_some() {
        probe.set(ClaimResult::Replay);
    }
    match outcome {
        ClaimOutcome::Pending {
            booking_id,
            seats,
            expires_ms,
        } => {
            let booking = Booking {
                booking_id,
                event_id: event_id.into_string(),
                user_id: user_id.into_string(),
                seats,
                status: BookingStatus::Pending,
                reason: None,
                expires_at: expires_ms.map(Timestamp),
                attendees: None,
            };
            match (replay, wait) {
                // A replay answers the first answer's status code, whatever its own
                // `Prefer` says; the body shows the booking as it is now.
                (Some(answered), _) => {
                    let now = app
                        .strategy
                        .booking(&booking.event_id, &booking.booking_id)
                        .await?
                        .unwrap_or(booking);
                    let status = answered
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .unwrap_or(StatusCode::ACCEPTED);
                    Ok(answer_with(status, &now))
                }
                (None, Some(wait)) => {
                    probe.set(ClaimResult::Pending);
                    let (event_id, user_id) = (booking.event_id.clone(), booking.user_id.clone());
                    let response = wait_for_settlement(app, booking, wait).await?;
                    let status = response.status();
                    let keyed = key.zip(fingerprint.as_deref());
                    if let (Some((key, fingerprint)), false) =
                        (keyed, status == StatusCode::ACCEPTED)
                    {
                        // Best effort: if this fails, a replay answers 202 with the
                        // booking as it is then, which a client handles anyway.
                        if let Err(err) = app
                            .redis
                            .record_answer(&event_id, &user_id, key, fingerprint, status.as_u16())
                            .await
                        {
                            tracing::warn!(event.id = %event_id, error = %err,
                                "cannot note the answer in the idempotency record");
                        }
                    }
                    Ok(response)
                }
                (None, None) => {
                    probe.set(ClaimResult::Pending);
                    Ok(booking_response(StatusCode::ACCEPTED, &booking))
                }
            }
        }
        ClaimOutcome::Confirmed { booking_id, seats } => {
            // Booked at once (the mysql baseline); a replay shows it as it is now.
            if replay.is_none() {
                probe.set(ClaimResult::Confirmed);
                telemetry::bookings_settled("confirmed", 1);
            }
            let mut booking = Booking {
                booking_id,
                event_id: event_id.into_string(),
                user_id: user_id.into_string(),
                seats,
                status: BookingStatus::Confirmed,
                reason: None,
                expires_at: None,
                attendees: None,
            };
            if replay.is_some() {
                if let Some(now) = app
                    .strategy
                    .booking(&booking.event_id, &booking.booking_id)
                    .await?
                {
                    booking = now;
                }
            }
            Ok(booking_response(StatusCode::CREATED, &booking))
        }
        ClaimOutcome::SeatsUnavailable(seats) => Err(ApiError::SeatsUnavailable(seats)),
        ClaimOutcome::SoldOut => Err(ApiError::SoldOut),
        ClaimOutcome::UserLimit(limit) => Err(ApiError::UserLimitExceeded(limit)),
        ClaimOutcome::UnknownSeats(seats) => Err(ApiError::UnknownSeats(seats)),
        ClaimOutcome::EventNotFound => Err(ApiError::EventNotFound),
        ClaimOutcome::KeyReused => Err(ApiError::IdempotencyKeyReused),
        ClaimOutcome::RateLimited { retry_after_ms } => Err(ApiError::RateLimited {
            retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
        }),
        ClaimOutcome::Replay { .. } => unreachable!("claim replies never nest replays"),
    }
}

/// Claims holding a load-shedding permit.
fn in_flight(app: &AppState) -> usize {
    app.max_inflight_claims
        .saturating_sub(app.claim_permits.available_permits())
}

/// The `outcome` label of a claim answered with this error.
fn claim_result_of(err: &ApiError) -> ClaimResult {
    match err {
        ApiError::SeatsUnavailable(_) => ClaimResult::SeatsUnavailable,
        ApiError::SoldOut => ClaimResult::SoldOut,
        ApiError::UserLimitExceeded(_) => ClaimResult::UserLimit,
        ApiError::UnknownSeats(_) => ClaimResult::UnknownSeats,
        ApiError::EventNotFound => ClaimResult::EventNotFound,
        ApiError::IdempotencyKeyReused => ClaimResult::KeyReused,
        ApiError::InvalidRequest(_) | ApiError::PayloadTooLarge => ClaimResult::InvalidRequest,
        ApiError::RateLimited { .. } => ClaimResult::RateLimited,
        ApiError::Overloaded => ClaimResult::Overloaded,
        _ => ClaimResult::Unavailable,
    }
}

/// Answers a `Prefer: wait` claim: waits (without polling) until the booking leaves
/// `pending` or the wait runs out, then answers 201 `confirmed`, 409 `booking_rejected`
/// with the reason, or 202 with the booking as it is.
async fn wait_for_settlement(
    app: &AppState,
    booking: Booking,
    wait: Duration,
) -> Result<Response, ApiError> {
    // Watch first, then read: a settle between the two is not missed.
    let settled = app
        .settled
        .watch(&booking.event_id, &booking.booking_id)
        .await;
    let mut now = app
        .redis
        .booking(&booking.event_id, &booking.booking_id)
        .await?
        .unwrap_or(booking);
    if now.status == BookingStatus::Pending {
        let _ = tokio::time::timeout(wait, settled).await;
        app.settled.forget(&now.booking_id);
        if let Some(latest) = app.redis.booking(&now.event_id, &now.booking_id).await? {
            now = latest;
        }
    } else {
        drop(settled);
        app.settled.forget(&now.booking_id);
    }
    let status = match now.status {
        // Persisted: confirmed, or held for its checkout.
        BookingStatus::Confirmed | BookingStatus::Held => StatusCode::CREATED,
        BookingStatus::Rejected => StatusCode::CONFLICT,
        BookingStatus::Pending | BookingStatus::Cancelled | BookingStatus::Expired => {
            StatusCode::ACCEPTED
        }
    };
    let mut response = answer_with(status, &now);
    if let Ok(applied) = HeaderValue::from_str(&format!("wait={}", wait.as_secs())) {
        response.headers_mut().insert("preference-applied", applied);
    }
    Ok(response)
}

/// A claim's answer with this status code: 409 `booking_rejected` with the reason, or
/// the booking.
fn answer_with(status: StatusCode, booking: &Booking) -> Response {
    if status == StatusCode::CONFLICT {
        return ApiError::ClaimRejected {
            booking_id: booking.booking_id.clone(),
            reason: booking.reason.clone().unwrap_or_default(),
        }
        .into_response();
    }
    booking_response(status, booking)
}

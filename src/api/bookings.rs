//! Bookings: claim (the hot path), read, cancel.
//!
//! The claim handler reads as parse → claim → map: it checks the caller, the
//! `Idempotency-Key` and the body, then makes exactly one Redis call (`claim.lua`),
//! and turns the outcome into the contract's answer. MySQL is never touched here.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{json_body, parse_booking_id, parse_event_id, read_body, ApiPath};
use super::openapi::{EventNotFound, Unavailable};
use super::AppState;
use crate::claims::{ClaimOutcome, ClaimRequest, Selection};
use crate::domain::*;
use crate::ops;
use crate::ops::cancel::Requester;
use crate::telemetry::{self, ClaimProbe, ClaimResult};

/// Largest claim body accepted: what a valid claim can need (100 seat ids of 32
/// characters, most of them multi-byte, fit in about 13 KiB), so that nobody can make
/// the gateway buffer more.
pub const CLAIM_BODY_LIMIT: usize = 16 * 1024;

/// Most seats one claim may name: no user may hold more in any event.
pub const CLAIM_SEATS_MAX: usize = PER_USER_LIMIT_MAX as usize;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_booking))
        .routes(routes!(get_booking, cancel_booking))
}

/// The claim body: exactly one of `seats` and `quantity`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    /// Specific seats, unique, all or nothing.
    #[schema(schema_with = super::openapi::claim_seats)]
    seats: Option<Vec<String>>,
    /// Best available: this many of the lowest-ordinal free seats.
    #[schema(minimum = 1)]
    quantity: Option<u64>,
}

/// A validated claim body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Seats(Vec<String>),
    Quantity(u32),
}

/// A claim body that passed validation, with the fingerprint of what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedClaim {
    pub wanted: Wanted,
    /// Identifies the body's JSON value for idempotency (see [`fingerprint`]).
    pub fingerprint: String,
}

impl ParsedClaim {
    /// Parses and validates a claim body (see [`Wanted::parse`]) and fingerprints it:
    /// the path of a claim with an `Idempotency-Key`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let value: serde_json::Value = json_body(bytes)?;
        let fingerprint = fingerprint(&value);
        let body: ClaimBody = serde_json::from_value(value)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid claim: {e}")))?;
        Ok(Self {
            wanted: Wanted::validate(body)?,
            fingerprint,
        })
    }
}

impl Wanted {
    /// Parses and validates a claim body without fingerprinting it: a claim without an
    /// `Idempotency-Key` needs no fingerprint, and the hot path does not pay for one.
    /// Everything the contract can refuse with a 400 is refused here, before any Redis
    /// call, so no malformed claim (a megabyte seat id, thousands of seats) ever
    /// reaches Redis or its idempotency records.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        Self::validate(json_body(bytes)?)
    }

    fn validate(body: ClaimBody) -> Result<Self, ApiError> {
        let wanted = match (body.seats, body.quantity) {
            (Some(seats), None) => {
                if seats.is_empty() {
                    return Err(ApiError::InvalidRequest("seats must not be empty".into()));
                }
                if seats.len() > CLAIM_SEATS_MAX {
                    return Err(ApiError::InvalidRequest(format!(
                        "a claim names at most {CLAIM_SEATS_MAX} seats"
                    )));
                }
                if let Some(bad) = seats.iter().find(|s| !is_valid_seat_id(s)) {
                    let shown: String = bad.chars().take(SEAT_ID_MAX + 1).collect();
                    return Err(ApiError::InvalidRequest(format!(
                        "seat ids are 1 to {SEAT_ID_MAX} characters: {shown:?}"
                    )));
                }
                let mut seen = HashSet::with_capacity(seats.len());
                if let Some(dup) = seats.iter().find(|s| !seen.insert(s.as_str())) {
                    return Err(ApiError::InvalidRequest(format!("duplicate seat {dup:?}")));
                }
                Wanted::Seats(seats)
            }
            (None, Some(0)) => {
                return Err(ApiError::InvalidRequest(
                    "quantity must be at least 1".into(),
                ))
            }
            // No claim can take more than the highest per-user limit; anything above
            // it is answered by the limit check, so the figure passed on is capped
            // (the fingerprint keeps what was sent).
            (None, Some(n)) => Wanted::Quantity(n.min(u64::from(PER_USER_LIMIT_MAX) + 1) as u32),
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidRequest(
                    "give either seats or quantity, not both".into(),
                ))
            }
            (None, None) => {
                return Err(ApiError::InvalidRequest(
                    "give seats (a list of seat ids) or quantity (a number)".into(),
                ))
            }
        };
        Ok(wanted)
    }
}

/// A fingerprint of a request body for idempotency: two bodies with the same JSON
/// value (whitespace and key order aside) have the same fingerprint, and any other
/// two differ (`{"seats": null, "quantity": 2}` is not `{"quantity": 2}`). The value
/// is hashed in serde_json's canonical form: objects serialise with sorted keys (its
/// `Map` is a `BTreeMap`, the `preserve_order` feature being off).
fn fingerprint(value: &serde_json::Value) -> String {
    let canonical = value.to_string();
    hex::encode(&Sha256::digest(canonical.as_bytes())[..16])
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    if !is_valid_idempotency_key(value.as_bytes()) {
        return Err(ApiError::InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    // Visible ASCII is valid UTF-8.
    Ok(value.to_str().ok())
}

#[utoipa::path(
    post,
    path = "/v1/events/{id}/bookings",
    tag = "bookings",
    summary = "Claim seats: specific ones, or a quantity of the best available",
    description = "Held in Redis at once (202 `pending`) and persisted to MySQL in the background. \
        With an `Idempotency-Key`, the same user, key and body again gets the first answer's \
        status code and `booking_id` for 24 h (202, 409 and 422 are recorded; 400, 401, 413, \
        429 and 503 are not). With the mysql claim strategy a successful claim is booked at \
        once and answered 201 `confirmed`.",
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
        (status = 429, description = "`rate_limited`: too many claims from this user", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`overloaded` (too many claims in flight) or `unavailable` (a backend failed or the request timed out)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("user_jwt" = []))
)]
async fn create_booking(
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
    if let Some(limiter) = &app.rate_limiter {
        limiter
            .check(&user_id, std::time::Instant::now())
            .map_err(|wait| ApiError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            })?;
    }
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
    // Checked; from here on the claim and the booking it makes carry them as text.
    let (event_id, user_id) = (event_id.into_string(), user_id.into_string());
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
        ClaimOutcome::Pending { booking_id, seats } => {
            let booking = Booking {
                booking_id,
                event_id,
                user_id,
                seats,
                status: BookingStatus::Pending,
                reason: None,
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
                event_id,
                user_id,
                seats,
                status: BookingStatus::Confirmed,
                reason: None,
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

/// Longest `Prefer: wait` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The `wait=N` preference (RFC 7240), capped at [`MAX_WAIT`]. Preferences that are
/// malformed or unknown are ignored, as the RFC asks.
pub fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pref| {
            let pref = pref.split(';').next()?.trim();
            let (name, value) = pref.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let secs: u64 = value.trim().trim_matches('"').parse().ok()?;
            Some(Duration::from_secs(secs).min(MAX_WAIT))
        })
        .next()
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
    let settled = app.settled.watch(&booking.booking_id);
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
        BookingStatus::Confirmed => StatusCode::CREATED,
        BookingStatus::Rejected => StatusCode::CONFLICT,
        BookingStatus::Pending | BookingStatus::Cancelled => StatusCode::ACCEPTED,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both parse paths (with and without a fingerprint) must agree.
    fn parse(body: &str) -> Result<Wanted, u16> {
        let keyed = ParsedClaim::parse(body.as_bytes())
            .map(|c| c.wanted)
            .map_err(|e| e.status().as_u16());
        let unkeyed = Wanted::parse(body.as_bytes()).map_err(|e| e.status().as_u16());
        assert_eq!(keyed, unkeyed, "{body}");
        keyed
    }

    fn fp(body: &str) -> String {
        ParsedClaim::parse(body.as_bytes()).unwrap().fingerprint
    }

    #[test]
    fn claim_bodies_are_exactly_one_of_seats_or_quantity() {
        assert_eq!(
            parse(r#"{"seats":["A1","A2"]}"#),
            Ok(Wanted::Seats(vec!["A1".into(), "A2".into()]))
        );
        assert_eq!(parse(r#"{"quantity":2}"#), Ok(Wanted::Quantity(2)));
        assert_eq!(
            parse(r#"{"seats":null,"quantity":2}"#),
            Ok(Wanted::Quantity(2))
        );
        for bad in [
            r#"{"seats":["A1"],"quantity":1}"#,
            r#"{}"#,
            r#"{"seats":[]}"#,
            r#"{"seats":["A1","A1"]}"#,
            r#"{"quantity":0}"#,
            r#"{"quantity":-1}"#,
            r#"{"quantity":1.5}"#,
            r#"{"quantity":"2"}"#,
            r#"{"seats":"A1"}"#,
            r#"{"seats":[1]}"#,
            r#"{"seat":["A1"]}"#,
            r#"["A1"]"#,
            r#"{"seats":["A1"]"#,
            "",
        ] {
            assert_eq!(parse(bad), Err(400), "{bad}");
        }
    }

    #[test]
    fn seat_ids_and_seat_counts_outside_the_contract_are_refused_before_redis() {
        let seats = |ids: Vec<String>| serde_json::json!({ "seats": ids }).to_string();
        assert_eq!(parse(&seats(vec!["".into()])), Err(400));
        assert_eq!(parse(&seats(vec!["x".repeat(33)])), Err(400));
        assert_eq!(parse(&seats(vec!["é".repeat(33)])), Err(400));
        assert!(parse(&seats(vec!["é".repeat(32)])).is_ok());
        let many = |n: usize| (0..n).map(|i| format!("S{i}")).collect::<Vec<_>>();
        assert!(parse(&seats(many(CLAIM_SEATS_MAX))).is_ok());
        assert_eq!(parse(&seats(many(CLAIM_SEATS_MAX + 1))), Err(400));
    }

    #[test]
    fn the_largest_valid_claim_fits_the_body_limit() {
        // 100 seat ids of 32 four-byte characters each.
        let ids: Vec<String> = (0..CLAIM_SEATS_MAX)
            .map(|i| format!("{i:03}{}", "😀".repeat(29)))
            .collect();
        let body = serde_json::json!({ "seats": ids }).to_string();
        assert!(body.len() <= CLAIM_BODY_LIMIT, "{} bytes", body.len());
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn the_same_json_value_has_the_same_fingerprint() {
        let a = fp(r#"{"seats":["A1","A2"]}"#);
        assert_eq!(a, fp("{ \"seats\" : [ \"A1\", \"A2\" ] }"));
        assert_ne!(a, fp(r#"{"seats":["A2","A1"]}"#));
        assert_ne!(a, fp(r#"{"seats":["A1A2"]}"#));
        // Key order does not matter.
        assert_eq!(
            fp(r#"{"quantity":2,"seats":null}"#),
            fp(r#"{"seats":null,"quantity":2}"#)
        );
    }

    #[test]
    fn the_fingerprint_is_of_what_was_sent() {
        // Both answered by the limit check alike, but not the same request.
        assert_ne!(fp(r#"{"quantity":500}"#), fp(r#"{"quantity":101}"#));
        assert_ne!(
            fp(r#"{"seats":null,"quantity":2}"#),
            fp(r#"{"quantity":2}"#)
        );
    }
}

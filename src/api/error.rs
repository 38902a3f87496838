//! The API's error model: one enum, one JSON shape, one place that picks status codes.
//!
//! Every error body is `{"error": "<snake_case_code>", "message": "<text>"}` plus the
//! fields the contract names (`seats`, `limit`). Failures of Redis or MySQL are logged
//! here, once, and answered with an opaque 503 and `Retry-After`: a client should
//! retry them (with the same Idempotency-Key), and nothing about the backend leaks.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::claims::StoreError;
use crate::ops::OpError;

/// Seconds a client is asked to wait before retrying a 503.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("event not found")]
    EventNotFound,
    #[error("booking not found")]
    BookingNotFound,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("an event with this id already exists")]
    EventExists,
    #[error("some of the requested seats are taken")]
    SeatsUnavailable(Vec<String>),
    #[error("not enough seats are left for this quantity")]
    SoldOut,
    #[error("the booking was rejected")]
    BookingRejected,
    #[error("the booking was cancelled")]
    BookingCancelled,
    #[error("the hold has expired; its seats are back on sale")]
    HoldExpired,
    #[error("the booking is not held (it is {0}); only a held booking can be extended or checked out again with other details")]
    BookingNotHeld(&'static str),
    #[error("the claim is not persisted yet; retry after the Retry-After delay")]
    BookingPending,
    #[error("the claim was rejected: {reason}")]
    ClaimRejected { booking_id: String, reason: String },
    #[error("the request body is larger than this endpoint accepts")]
    PayloadTooLarge,
    #[error("this booking would take the user over the per-user limit of {0} seats")]
    UserLimitExceeded(u32),
    #[error("some of the requested seats do not exist in this event")]
    UnknownSeats(Vec<String>),
    #[error("this Idempotency-Key was used before with a different request")]
    IdempotencyKeyReused,
    #[error("too many claims from this user; retry after the Retry-After delay")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many claims in flight; retry after the Retry-After delay")]
    Overloaded,
    #[error("a backend is unavailable; retry after the Retry-After delay")]
    Unavailable,
}

/// The `error` code of an error body: every code the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    EventNotFound,
    BookingNotFound,
    /// The router's own answer to a path it does not serve.
    NotFound,
    /// The router's own answer to a method a served path does not take.
    MethodNotAllowed,
    EventExists,
    SeatsUnavailable,
    SoldOut,
    BookingRejected,
    BookingCancelled,
    HoldExpired,
    BookingNotHeld,
    BookingPending,
    PayloadTooLarge,
    UserLimitExceeded,
    UnknownSeats,
    IdempotencyKeyReused,
    RateLimited,
    Overloaded,
    Unavailable,
}

/// The JSON body of every error: `error` and `message`, plus the fields some codes
/// carry (`seats`, `limit`, `booking_id`, `reason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// With `seats_unavailable`: the requested seats that are taken; with
    /// `unknown_seats`: the requested seats that do not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub seats: Option<Vec<String>>,
    /// With `user_limit_exceeded`: the event's per-user limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub limit: Option<u32>,
    /// With `booking_rejected` from a `Prefer: wait` claim: the rejected booking.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub booking_id: Option<String>,
    /// With `booking_rejected` from a `Prefer: wait` claim: why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        use ApiError::*;
        match self {
            InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            EventNotFound => (StatusCode::NOT_FOUND, ErrorCode::EventNotFound),
            BookingNotFound => (StatusCode::NOT_FOUND, ErrorCode::BookingNotFound),
            RouteNotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed),
            EventExists => (StatusCode::CONFLICT, ErrorCode::EventExists),
            SeatsUnavailable(_) => (StatusCode::CONFLICT, ErrorCode::SeatsUnavailable),
            SoldOut => (StatusCode::CONFLICT, ErrorCode::SoldOut),
            BookingRejected => (StatusCode::CONFLICT, ErrorCode::BookingRejected),
            BookingCancelled => (StatusCode::CONFLICT, ErrorCode::BookingCancelled),
            HoldExpired => (StatusCode::CONFLICT, ErrorCode::HoldExpired),
            BookingNotHeld(_) => (StatusCode::CONFLICT, ErrorCode::BookingNotHeld),
            BookingPending => (StatusCode::CONFLICT, ErrorCode::BookingPending),
            ClaimRejected { .. } => (StatusCode::CONFLICT, ErrorCode::BookingRejected),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            UserLimitExceeded(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UserLimitExceeded,
            ),
            UnknownSeats(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::UnknownSeats),
            IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
            ),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Overloaded => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded),
            Unavailable => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
        }
    }

    /// The JSON body of this error. It takes the error, so that the seats of a 409
    /// (the answer to nearly every claim of a drop) move into the body, not copied.
    pub(crate) fn into_body(self) -> ErrorBody {
        let mut body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            seats: None,
            limit: None,
            booking_id: None,
            reason: None,
        };
        match self {
            ApiError::SeatsUnavailable(seats) | ApiError::UnknownSeats(seats) => {
                body.seats = Some(seats);
            }
            ApiError::UserLimitExceeded(limit) => body.limit = Some(limit),
            ApiError::ClaimRejected { booking_id, reason } => {
                body.booking_id = Some(booking_id);
                body.reason = Some(reason);
            }
            _ => {}
        }
        body
    }

    /// The `error` code of this error.
    pub fn code(&self) -> ErrorCode {
        self.status_and_code().1
    }

    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match self {
            ApiError::RateLimited { retry_after_secs } => Some(retry_after_secs),
            ApiError::BookingPending => Some(RETRY_AFTER_SECS),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            _ => None,
        };
        let mut response = (status, Json(self.into_body())).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let StoreError::Fenced(why) = err {
            // Logged once by the fence keeper, not once per refused claim.
            tracing::debug!(why, "claim refused: Redis is fenced");
            return ApiError::Unavailable;
        }
        tracing::error!(error = %err, "redis call failed");
        crate::telemetry::store_error("redis");
        ApiError::Unavailable
    }
}

impl From<crate::strategy::StrategyError> for ApiError {
    fn from(err: crate::strategy::StrategyError) -> Self {
        match err {
            crate::strategy::StrategyError::Redis(err) => err.into(),
            crate::strategy::StrategyError::Mysql(err) => err.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        tracing::error!(error = %err, "mysql call failed");
        crate::telemetry::store_error("mysql");
        ApiError::Unavailable
    }
}

impl From<OpError> for ApiError {
    fn from(err: OpError) -> Self {
        match err {
            OpError::EventNotFound => ApiError::EventNotFound,
            OpError::BookingNotFound => ApiError::BookingNotFound,
            OpError::BookingRejected => ApiError::BookingRejected,
            OpError::BookingCancelled => ApiError::BookingCancelled,
            OpError::HoldExpired => ApiError::HoldExpired,
            OpError::BookingNotHeld(status) => ApiError::BookingNotHeld(status.as_str()),
            OpError::BookingPending => ApiError::BookingPending,
            OpError::InvalidCheckout(why) => ApiError::InvalidRequest(why),
            OpError::Db(e) => e.into(),
            OpError::Redis(e) => e.into(),
        }
    }
}

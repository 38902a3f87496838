//! The API's error model: one enum, one JSON shape, one place that picks status codes.
//!
//! Every error body is `{"error": "<snake_case_code>", "message": "<text>"}` plus the
//! fields the contract names (`seats`, `limit`). Failures of Redis or MySQL are logged
//! here, once, and answered with an opaque 503 and `Retry-After`: a client should
//! retry them (with the same Idempotency-Key), and nothing about the backend leaks.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::claims::StoreError;
use crate::ops::OpError;

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

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
    #[error("the booking was rejected and cannot be cancelled")]
    BookingRejected,
    #[error("the claim was rejected: {reason}")]
    ClaimRejected { booking_id: String, reason: String },
    #[error("the request body is larger than 1 MiB")]
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

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            EventNotFound => (StatusCode::NOT_FOUND, "event_not_found"),
            BookingNotFound => (StatusCode::NOT_FOUND, "booking_not_found"),
            RouteNotFound => (StatusCode::NOT_FOUND, "not_found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            EventExists => (StatusCode::CONFLICT, "event_exists"),
            SeatsUnavailable(_) => (StatusCode::CONFLICT, "seats_unavailable"),
            SoldOut => (StatusCode::CONFLICT, "sold_out"),
            BookingRejected => (StatusCode::CONFLICT, "booking_rejected"),
            ClaimRejected { .. } => (StatusCode::CONFLICT, "booking_rejected"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            UserLimitExceeded(_) => (StatusCode::UNPROCESSABLE_ENTITY, "user_limit_exceeded"),
            UnknownSeats(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_seats"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        let (_, code) = self.status_and_code();
        let mut body = json!({ "error": code, "message": self.to_string() });
        match self {
            ApiError::SeatsUnavailable(seats) | ApiError::UnknownSeats(seats) => {
                body["seats"] = json!(seats);
            }
            ApiError::UserLimitExceeded(limit) => body["limit"] = json!(limit),
            ApiError::ClaimRejected { booking_id, reason } => {
                body["booking_id"] = json!(booking_id);
                body["reason"] = json!(reason);
            }
            _ => {}
        }
        body
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
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            _ => None,
        };
        let mut response = (status, Json(self.body())).into_response();
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
        tracing::error!(error = %err, "redis call failed");
        crate::telemetry::store_error("redis");
        ApiError::Unavailable
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
            OpError::Db(e) => e.into(),
            OpError::Redis(e) => e.into(),
        }
    }
}

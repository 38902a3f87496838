//! Public reads: an event's counters and its seat map. No token needed; an event that
//! is not on sale (not warmed) is answered as unknown.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::EventPath;
use super::openapi::{tagged, EventIdParam, EventReadErrors};
use super::AppState;
use crate::claims::SeatCounts;
use crate::live::snapshot::SeatMap;

pub fn router() -> OpenApiRouter<AppState> {
    tagged(
        "events",
        OpenApiRouter::new()
            .routes(routes!(get_event))
            .routes(routes!(get_seats)),
    )
}

/// An event's seat counters, as its view here and the admin's warm report show them.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SeatCounters {
    seats_total: u64,
    available: u64,
    pending: u64,
    /// Seats held for their checkout (events with holds; absent when none are).
    #[serde(skip_serializing_if = "is_zero")]
    held: u64,
    booked: u64,
}

impl From<SeatCounts> for SeatCounters {
    fn from(counts: SeatCounts) -> Self {
        let SeatCounts {
            seats_total,
            available,
            pending,
            booked,
            held,
        } = counts;
        Self {
            seats_total,
            available,
            pending,
            held,
            booked,
        }
    }
}

/// An event's counters.
#[derive(Debug, Serialize, ToSchema)]
struct EventView {
    id: String,
    name: String,
    #[serde(flatten)]
    counters: SeatCounters,
    per_user_limit: u32,
    /// Seconds a persisted claim is held for its checkout (absent: no holds).
    #[serde(skip_serializing_if = "is_zero")]
    hold_seconds: u32,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// An event on sale, with its seat counters
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    params(EventIdParam),
    responses(
        (status = 200, description = "The event", body = EventView),
        EventReadErrors,
    ),
    security(())
)]
async fn get_event(
    State(app): State<AppState>,
    EventPath(id): EventPath,
) -> Result<Json<EventView>, ApiError> {
    let event = app
        .strategy
        .event_summary(&id)
        .await?
        .ok_or(ApiError::EventNotFound)?;
    let counters = SeatCounters {
        seats_total: event.seats_total,
        available: event.available,
        pending: event.pending,
        held: event.held,
        booked: event.booked,
    };
    Ok(Json(EventView {
        id: id.into_string(),
        name: event.name,
        counters,
        per_user_limit: event.per_user_limit,
        hold_seconds: event.hold_seconds,
    }))
}

/// The seat map of an event on sale
///
/// Served from a snapshot shared by all readers, at most 200 ms old. Carries an `ETag`;
/// a request whose `If-None-Match` names it is answered 304 without a body.
/// `Cache-Control: public, max-age=1` lets a CDN absorb readers.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/seats",
    params(
        ("id" = String, Path, description = "Event id"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "The `ETag` of a map already held"),
    ),
    responses(
        (status = 200, description = "Every seat with its status", body = SeatMap,
            headers(
                ("ETag" = String, description = "Validator of this map"),
                ("Cache-Control" = String, description = "`public, max-age=1`"),
            )),
        (status = 304, description = "The map named by `If-None-Match` is current",
            headers(("ETag" = String, description = "Validator of this map"))),
        EventReadErrors,
    ),
    security(())
)]
async fn get_seats(
    State(app): State<AppState>,
    EventPath(id): EventPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    app.ensure_on_sale(&id).await?;
    let snapshot = app.seat_maps.get(&id).await.map_err(|err| {
        tracing::error!(event.id = %id, error = %format!("{err:#}"), "cannot read the seat map");
        ApiError::Unavailable
    })?;
    let etag = HeaderValue::from_str(&snapshot.etag).expect("a hex etag is a header value");
    let cache = HeaderValue::from_static("public, max-age=1");
    if if_none_match(&headers, &snapshot.etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        snapshot.body,
    )
        .into_response())
}

/// True when `If-None-Match` names `etag` (or is `*`), weak or strong (RFC 9110,
/// section 13.1.2: the comparison for `If-None-Match` is weak).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(if_none_match(&with("\"abc\""), "\"abc\""));
        assert!(if_none_match(&with("W/\"abc\""), "\"abc\""));
        assert!(if_none_match(&with("\"x\", \"abc\""), "\"abc\""));
        assert!(if_none_match(&with("*"), "\"abc\""));
        assert!(!if_none_match(&with("\"abd\""), "\"abc\""));
        assert!(!if_none_match(&HeaderMap::new(), "\"abc\""));
    }
}

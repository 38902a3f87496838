//! Request extraction with the API's own error shape: axum's default rejections are
//! plain text (and say 422 for bad JSON); the contract wants JSON 400s and 413s.

use axum::body::{Body, Bytes};
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::FromRequestParts;
use futures::StreamExt;
use http_body::Body as _;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::{BookingId, EventId};

/// `axum::extract::Path`, rejecting with a JSON 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub T);

/// `axum::extract::Query`, rejecting with a JSON 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub T);

/// The event id of a path (`/…/events/{id}…`), parsed: a malformed id names no event,
/// so it is answered 404 `event_not_found`, as an unknown event is.
///
/// For handlers whose only check before the event's is the path itself. A handler that
/// checks the caller (401) or the body (400, 413) first takes the raw segment with
/// [`ApiPath`] and parses it with [`parse_event_id`] after those checks, so a request wrong
/// in two ways keeps the answer it has always had.
pub(crate) struct EventPath(pub EventId);

impl<S: Send + Sync> FromRequestParts<S> for EventPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let ApiPath(raw) = ApiPath::<String>::from_request_parts(parts, state).await?;
        parse_event_id(raw).map(Self)
    }
}

/// Parses an event id from a path; a malformed one is 404 `event_not_found`.
pub(crate) fn parse_event_id(raw: String) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(|_| ApiError::EventNotFound)
}

/// Parses a booking id from a path; a malformed one is 404 `booking_not_found`.
pub(crate) fn parse_booking_id(raw: String) -> Result<BookingId, ApiError> {
    BookingId::parse(raw).map_err(|_| ApiError::BookingNotFound)
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match &rejection {
            // A path segment that is not UTF-8 (`%FF`) can name no event, seat or
            // booking: answered like any other path that names nothing, with the 404
            // every operation with path parameters documents (not an undocumented 400).
            PathRejection::FailedToDeserializePathParams(e)
                if matches!(e.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) =>
            {
                ApiError::RouteNotFound
            }
            _ => ApiError::InvalidRequest(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidRequest(rejection.body_text())
    }
}

/// Reads a request body of at most `limit` bytes; 413 beyond it. Handlers call this
/// only once they have checked the caller, so a client without a valid token never
/// makes the gateway buffer a body. A `Content-Length` over the limit is refused
/// before a byte of the body is read.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::InvalidRequest(format!("cannot read the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// Parses a JSON body into `T`, with serde's message (line, column, field) in the 400.
pub(crate) fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidRequest("a JSON body is required".into()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    /// The status and `error` code of `GET uri` on a route that takes an [`EventPath`].
    async fn answer(uri: &str) -> (StatusCode, String) {
        let app = Router::new().route(
            "/events/{id}",
            get(|EventPath(id): EventPath| async move { id.into_string() }),
        );
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        if status.is_success() {
            return (status, text);
        }
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        (status, body["error"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn an_event_path_parses_a_well_formed_id() {
        assert_eq!(
            answer("/events/wc-2026_eu").await,
            (StatusCode::OK, "wc-2026_eu".to_owned())
        );
    }

    #[tokio::test]
    async fn a_malformed_event_id_in_a_path_is_event_not_found() {
        let too_long = format!("/events/{}", "x".repeat(65));
        for uri in ["/events/bad%20id", "/events/%C3%A9", too_long.as_str()] {
            assert_eq!(
                answer(uri).await,
                (StatusCode::NOT_FOUND, "event_not_found".to_owned()),
                "{uri}"
            );
        }
        assert_eq!(
            answer("/events/%FF").await,
            (StatusCode::NOT_FOUND, "not_found".to_owned())
        );
    }
}

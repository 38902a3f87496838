//! The live seat map: the SSE stream `GET /v1/events/{id}/stream` (public, like the
//! seat map it streams) and the page that shows it, `GET /live/{id}`, whose HTML, CSS
//! and JS are compiled into the binary (no front-end build step).

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;

use super::error::ApiError;
use super::extract::ApiPath;
use super::AppState;
use crate::domain::is_valid_event_id;
use crate::live::{Message, Subscription};

const PAGE: &str = include_str!("../../static/live.html");
const SCRIPT: &str = include_str!("../../static/live.js");
const STYLE: &str = include_str!("../../static/live.css");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events/{id}/stream", get(stream))
        .route("/live/{id}", get(page))
        .route("/live/assets/live.js", get(script))
        .route("/live/assets/live.css", get(style))
}

/// The event's seat map as a stream of batched changes (see `crate::live`).
async fn stream(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if !is_valid_event_id(&id) || !app.redis.is_on_sale(&id).await? {
        return Err(ApiError::EventNotFound);
    }
    let events = futures::stream::unfold(app.live.subscribe(&id), next_event);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn next_event(mut sub: Subscription) -> Option<(Result<Event, Infallible>, Subscription)> {
    let event = match sub.next().await? {
        Message::Snapshot(data) => Event::default().event("snapshot").data(&*data),
        Message::Delta(data) => Event::default().event("delta").data(&*data),
        Message::Gone => Event::default().event("gone").data("{}"),
    };
    Some((Ok(event), sub))
}

/// The page; it reads the event id from its own path.
async fn page(ApiPath(id): ApiPath<String>) -> Result<Html<&'static str>, ApiError> {
    if !is_valid_event_id(&id) {
        return Err(ApiError::EventNotFound);
    }
    Ok(Html(PAGE))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

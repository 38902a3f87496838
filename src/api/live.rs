//! The live seat map: the SSE stream `GET /v1/events/{id}/stream` (public, like the
//! seat map it streams) and the page that shows it, `GET /live/{id}`, whose HTML, CSS
//! and JS are compiled into the binary (no front-end build step).

use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::Extension;
use futures::Stream;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::EventPath;
use super::openapi::{tagged, EventIdParam, EventNotFound};
use super::AppState;
use crate::live::{Message, Subscription};

const PAGE: &str = include_str!("../../static/live.html");
const SCRIPT: &str = include_str!("../../static/live.js");
const STYLE: &str = include_str!("../../static/live.css");

pub fn router() -> OpenApiRouter<AppState> {
    // The stream is a public read of an event, like its seat map; the page and its
    // assets are the live map itself.
    let reads = OpenApiRouter::new().routes(routes!(stream));
    let page = OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(script))
        .routes(routes!(style));
    tagged("events", reads).merge(tagged("live", page))
}

/// One event of the stream. Before OpenAPI 3.2's `itemSchema`, the `schema` of a
/// `text/event-stream` answer describes each event (as schemathesis reads it), not the
/// text of the stream. Documentation only: the events are written by [`next_event`].
#[derive(ToSchema)]
#[allow(dead_code)]
struct StreamEvent {
    event: StreamEventKind,
    /// The event's JSON (see the operation's description; `{}` for `gone`).
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// The kinds of event of the stream.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum StreamEventKind {
    Snapshot,
    Delta,
    Gone,
}

/// The seat map of an event on sale, live, as Server-Sent Events
///
/// First a `snapshot` event: `{"event_id", "name", "seats": [id, ...] (best-available
/// order), "status": "aaphb..." (one character per seat: a available, p pending, h held
/// for its checkout, b booked), "counters"}`. Then at most one `delta` event per 200 ms
/// while anything changes: `{"changes": [[seat index, "a"|"p"|"h"|"b"], ...], "counters"}`.
/// `gone` when the event is no longer on sale. `counters` is `{"seats_total",
/// "available", "pending", "held", "booked", "claims_total", "claims_per_sec",
/// "outbox_length", "reconciler_lag_ms"}` (`claims_*` null under the mysql strategy). A subscriber that falls behind is sent a fresh snapshot.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/stream",
    params(EventIdParam),
    responses(
        (status = 200, description = "An endless `text/event-stream`: each event as described", body = StreamEvent,
            content_type = "text/event-stream"),
        (status = 404, response = inline(EventNotFound)),
        (status = 503, description = "`overloaded`: the gateway holds its maximum of streams (`SEATGATE_MAX_LIVE_STREAMS`), or this client address its maximum (`SEATGATE_MAX_LIVE_STREAMS_PER_CLIENT`); `unavailable`: Redis failed or the request timed out", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(())
)]
async fn stream(
    State(app): State<AppState>,
    EventPath(id): EventPath,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    app.ensure_on_sale(&id).await?;
    let client = client.map(|Extension(ConnectInfo(addr))| addr.ip());
    let subscription = app
        .live
        .subscribe(&id, client)
        .ok_or(ApiError::Overloaded)?;
    let events = futures::stream::unfold(subscription, next_event);
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

/// The live seat map page of an event (HTML; it waits for the event to go on sale)
#[utoipa::path(
    get,
    path = "/live/{id}",
    params(EventIdParam),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 404, description = "`event_not_found`: not a valid event id", body = ErrorBody),
    ),
    security(())
)]
async fn page(EventPath(_): EventPath) -> Html<&'static str> {
    Html(PAGE)
}

/// The live seat map's script
#[utoipa::path(
    get,
    path = "/live/assets/live.js",
    responses((status = 200, description = "JavaScript", body = String, content_type = "text/javascript")),
    security(())
)]
async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

/// The live seat map's style sheet
#[utoipa::path(
    get,
    path = "/live/assets/live.css",
    responses((status = 200, description = "CSS", body = String, content_type = "text/css")),
    security(())
)]
async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

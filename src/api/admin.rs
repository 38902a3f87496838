//! Admin endpoints: create, warm and audit events.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;

use super::error::ApiError;
use super::extract::{body_bytes, json_body, ApiPath, ApiQuery};
use super::AppState;
use crate::db::events::{self, CreateEventError, NewEvent};
use crate::domain::*;
use crate::ops;

/// An event of 100,000 seats of 32 characters is a few MiB of JSON.
const CREATE_EVENT_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/events",
            post(create_event).layer(DefaultBodyLimit::max(CREATE_EVENT_BODY_LIMIT)),
        )
        .route("/v1/admin/events/{id}/warm", post(warm_event))
        .route("/v1/admin/events/{id}/audit", get(audit_event))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEvent {
    id: String,
    name: String,
    seats: Vec<String>,
    per_user_limit: Option<u32>,
}

impl CreateEvent {
    fn validate(&self) -> Result<u32, ApiError> {
        let bad = |m: &str| Err(ApiError::InvalidRequest(m.to_owned()));
        if !is_valid_event_id(&self.id) {
            return bad("id must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -");
        }
        if !(1..=EVENT_NAME_MAX).contains(&self.name.chars().count()) {
            return bad("name must be 1 to 200 characters");
        }
        if !(1..=SEATS_MAX).contains(&self.seats.len()) {
            return bad("seats must list 1 to 100000 seats");
        }
        if let Some(seat) = self.seats.iter().find(|s| !is_valid_seat_id(s)) {
            return Err(ApiError::InvalidRequest(format!(
                "seat ids must be 1 to 32 characters: {seat:?}"
            )));
        }
        let mut seen = HashSet::with_capacity(self.seats.len());
        if let Some(seat) = self.seats.iter().find(|s| !seen.insert(s.as_str())) {
            return Err(ApiError::InvalidRequest(format!("duplicate seat {seat:?}")));
        }
        let limit = self.per_user_limit.unwrap_or(PER_USER_LIMIT_DEFAULT);
        if !(1..=PER_USER_LIMIT_MAX).contains(&limit) {
            return bad("per_user_limit must be 1 to 100");
        }
        Ok(limit)
    }
}

async fn create_event(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    app.auth.admin(&headers)?;
    let req: CreateEvent = json_body(&body_bytes(body)?)?;
    let per_user_limit = req.validate()?;
    let new = NewEvent {
        id: &req.id,
        name: &req.name,
        seats: &req.seats,
        per_user_limit,
    };
    match events::create_event(&app.db, &new).await {
        Ok(()) => {}
        Err(CreateEventError::Exists) => return Err(ApiError::EventExists),
        Err(CreateEventError::Db(e)) => return Err(e.into()),
    }
    tracing::info!(event.id = %req.id, seats = req.seats.len(), "event created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": req.id,
            "name": req.name,
            "seats_total": req.seats.len(),
            "per_user_limit": per_user_limit,
        })),
    ))
}

async fn warm_event(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    app.auth.admin(&headers)?;
    if !is_valid_event_id(&id) {
        return Err(ApiError::EventNotFound);
    }
    let counts = ops::warm::warm(&app.redis, &app.db, &id).await?;
    Ok(Json(json!({
        "event_id": id,
        "seats_total": counts.seats_total,
        "available": counts.available,
        "pending": counts.pending,
        "booked": counts.booked,
    })))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    repair: bool,
}

async fn audit_event(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    app.auth.admin(&headers)?;
    if !is_valid_event_id(&id) {
        return Err(ApiError::EventNotFound);
    }
    let report = ops::audit::audit(&app.redis, &app.db, &id, query.repair).await?;
    Ok(Json(json!({
        "event_id": id,
        "consistent": report.divergences.is_empty(),
        "divergences": report.divergences,
        "repaired": report.repaired,
    })))
}

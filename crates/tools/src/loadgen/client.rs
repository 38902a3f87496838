//! The HTTP side of a drop: admin calls (create, warm, audit) and the claim client.
//!
//! Clients behave as the contract asks of them: every claim carries an
//! `Idempotency-Key`, and a 429, a 503 or a failed connection is retried with the same
//! key after a full-jitter exponential backoff that honours `Retry-After`, so a retry
//! can never claim twice.

use anyhow::{bail, Context};
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Attempts per claim, the first included, before a 429/503/connection error counts.
pub const MAX_ATTEMPTS: u32 = 8;
/// Longest wait before a retry, `Retry-After` included.
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Time allowed to a single HTTP request (a hung request is retried with its key).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A gateway's base URL, with the HTTP client and admin token to talk to it.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: Client,
    admin_token: String,
}

impl Api {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) keeping up to `connections`
    /// idle connections.
    pub fn new(base: &str, admin_token: &str, connections: usize) -> anyhow::Result<Self> {
        let client = Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
            admin_token: admin_token.to_owned(),
        })
    }

    /// `POST /v1/admin/events` then `POST /v1/admin/events/{id}/warm`. With
    /// `hold_seconds` above 0 the event has holds: a persisted claim is `held` until its
    /// buyer checks out or the hold expires. At 0 the field is left out, so a gateway
    /// that predates holds still takes the request.
    pub async fn create_and_warm(
        &self,
        event_id: &str,
        name: &str,
        seat_ids: &[String],
        per_user_limit: u32,
        hold_seconds: u32,
    ) -> anyhow::Result<()> {
        let mut body = json!({
            "id": event_id,
            "name": name,
            "seats": seat_ids,
            "per_user_limit": per_user_limit,
        });
        if hold_seconds > 0 {
            body["hold_seconds"] = json!(hold_seconds);
        }
        let created = self
            .client
            .post(format!("{}/v1/admin/events", self.base))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .context("POST /v1/admin/events failed")?;
        expect_status(created, StatusCode::CREATED, "creating the event").await?;
        let warmed = self
            .client
            .post(format!("{}/v1/admin/events/{event_id}/warm", self.base))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .context("POST /v1/admin/events/{id}/warm failed")?;
        expect_status(warmed, StatusCode::OK, "warming the event").await?;
        Ok(())
    }

    /// `GET /v1/events/{id}`: the event's counters, or `None` while it answers
    /// anything but 200.
    pub async fn event(&self, event_id: &str) -> anyhow::Result<Option<Value>> {
        let response = self
            .client
            .get(format!("{}/v1/events/{event_id}", self.base))
            .send()
            .await
            .context("GET /v1/events/{id} failed")?;
        if response.status() != StatusCode::OK {
            return Ok(None);
        }
        let body = response
            .json()
            .await
            .context("GET /v1/events/{id} answered unreadable JSON")?;
        Ok(Some(body))
    }

    /// `GET /v1/events/{id}/seats`.
    pub async fn seats(&self, event_id: &str) -> anyhow::Result<Value> {
        let response = self
            .client
            .get(format!("{}/v1/events/{event_id}/seats", self.base))
            .send()
            .await
            .context("GET /v1/events/{id}/seats failed")?;
        expect_status(response, StatusCode::OK, "reading the seat map").await
    }

    /// `GET /v1/admin/events/{id}/audit`.
    pub async fn audit(&self, event_id: &str) -> anyhow::Result<Value> {
        let response = self
            .client
            .get(format!("{}/v1/admin/events/{event_id}/audit", self.base))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .context("GET /v1/admin/events/{id}/audit failed")?;
        expect_status(response, StatusCode::OK, "auditing the event").await
    }

    /// `GET /v1/events/{id}/bookings/{booking_id}` as admin: the booking, or `None` on
    /// 404.
    pub async fn booking(&self, event_id: &str, booking_id: &str) -> anyhow::Result<Option<Value>> {
        let response = self
            .client
            .get(format!(
                "{}/v1/events/{event_id}/bookings/{booking_id}",
                self.base
            ))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .context("GET /v1/events/{id}/bookings/{booking_id} failed")?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect_status(response, StatusCode::OK, "reading a booking")
            .await
            .map(Some)
    }
}

/// How one claim ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 202 pending (redis strategy) or 201 confirmed (mysql strategy).
    Won {
        booking_id: String,
        seats: Vec<String>,
        /// True for 201 `confirmed`: already in MySQL.
        confirmed: bool,
    },
    /// 409 `seats_unavailable` or `sold_out`: the label says which.
    Lost(&'static str),
    /// 422 `user_limit_exceeded`: the user already holds their limit.
    UserLimit,
    /// Anything else, labelled `"<status> <error code>"` or by transport failure.
    Error(String),
}

impl Outcome {
    /// The answer's label, as the report counts it.
    pub fn label(&self) -> String {
        match self {
            Outcome::Won {
                confirmed: false, ..
            } => "202 pending".into(),
            Outcome::Won {
                confirmed: true, ..
            } => "201 confirmed".into(),
            Outcome::Lost(label) => (*label).into(),
            Outcome::UserLimit => "422 user_limit_exceeded".into(),
            Outcome::Error(label) => label.clone(),
        }
    }
}

pub const LOST_SEATS_UNAVAILABLE: &str = "409 seats_unavailable";
pub const LOST_SOLD_OUT: &str = "409 sold_out";

/// One claim as sent.
pub struct ClaimCall<'a> {
    pub url: &'a str,
    pub token: &'a str,
    pub key: &'a str,
    pub body: &'a str,
}

/// A claim's final answer, with when its first attempt started and when the answer
/// came, and how many retries it took.
pub struct Sent {
    pub outcome: Outcome,
    pub started: Instant,
    pub done: Instant,
    pub retries: u32,
}

/// Sends one claim, retrying 429, 503 and transport failures with the same
/// `Idempotency-Key` (so a retry can never claim twice).
pub async fn send_claim(client: &Client, call: &ClaimCall<'_>) -> Sent {
    let started = Instant::now();
    let mut retries = 0;
    let outcome = loop {
        let (label, retry_after) = match attempt(client, call).await {
            Attempt::Done(outcome) => break outcome,
            Attempt::Retry { label, retry_after } => (label, retry_after),
        };
        if retries + 1 >= MAX_ATTEMPTS {
            break Outcome::Error(label);
        }
        retries += 1;
        tokio::time::sleep(backoff(retries, retry_after)).await;
    };
    Sent {
        outcome,
        started,
        done: Instant::now(),
        retries,
    }
}

/// One attempt's result: final, or worth retrying.
enum Attempt {
    Done(Outcome),
    Retry {
        label: String,
        retry_after: Option<Duration>,
    },
}

async fn attempt(client: &Client, call: &ClaimCall<'_>) -> Attempt {
    let sent = client
        .post(call.url)
        .bearer_auth(call.token)
        .header("idempotency-key", call.key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(call.body.to_owned())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return transport_failure(&e),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // A body that fails to arrive is a transport failure: the retry (same key) gets
    // the recorded answer again.
    let answer: Value = match response.bytes().await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(e) => return transport_failure(&e),
    };
    Attempt::from_answer(status, retry_after, &answer)
}

impl Attempt {
    fn from_answer(status: StatusCode, retry_after: Option<Duration>, answer: &Value) -> Self {
        let code = answer["error"].as_str().unwrap_or("");
        let label = format!("{} {code}", status.as_u16()).trim_end().to_owned();
        let won = |confirmed: bool| match answer["booking_id"].as_str() {
            Some(b) => Attempt::Done(Outcome::Won {
                booking_id: b.to_owned(),
                seats: answer["seats"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                confirmed,
            }),
            None => Attempt::Done(Outcome::Error(format!(
                "{} without a booking_id",
                status.as_u16()
            ))),
        };
        match status {
            StatusCode::ACCEPTED => won(false),
            StatusCode::CREATED if answer["status"] == "confirmed" => won(true),
            StatusCode::CONFLICT if code == "seats_unavailable" => {
                Attempt::Done(Outcome::Lost(LOST_SEATS_UNAVAILABLE))
            }
            StatusCode::CONFLICT if code == "sold_out" => {
                Attempt::Done(Outcome::Lost(LOST_SOLD_OUT))
            }
            StatusCode::UNPROCESSABLE_ENTITY if code == "user_limit_exceeded" => {
                Attempt::Done(Outcome::UserLimit)
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                Attempt::Retry { label, retry_after }
            }
            _ => Attempt::Done(Outcome::Error(label)),
        }
    }
}

fn transport_failure(e: &reqwest::Error) -> Attempt {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    if e.is_builder() {
        return Attempt::Done(Outcome::Error(format!("cannot build the request: {e}")));
    }
    Attempt::Retry {
        label: format!("transport error ({kind})"),
        retry_after: None,
    }
}

/// Full jitter: a uniform wait up to a ceiling that doubles per retry, capped; never
/// sooner than the server's `Retry-After` (itself capped).
pub fn backoff(retry: u32, retry_after: Option<Duration>) -> Duration {
    let floor = retry_after.unwrap_or(Duration::ZERO).min(BACKOFF_CAP);
    seatgate::backoff::backoff(retry.saturating_sub(1), BACKOFF_CAP).max(floor)
}

/// The JSON body of `response` if it has the `expected` status, else an error naming
/// `what` with the status and body.
pub async fn expect_status(
    response: reqwest::Response,
    expected: StatusCode,
    what: &str,
) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("{what}: reading the answer failed"))?;
    if status != expected {
        bail!("{what}: expected {expected}, got {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: the answer is not JSON: {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        for retry in 1..=MAX_ATTEMPTS {
            assert!(backoff(retry, None) <= BACKOFF_CAP);
        }
        assert!(backoff(1, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        assert_eq!(backoff(1, Some(Duration::from_secs(60))), BACKOFF_CAP);
    }

    fn outcome(status: u16, body: Value) -> Option<Outcome> {
        match Attempt::from_answer(StatusCode::from_u16(status).unwrap(), None, &body) {
            Attempt::Done(o) => Some(o),
            Attempt::Retry { .. } => None,
        }
    }

    #[test]
    fn answers_map_to_outcomes() {
        let pending = json!({"booking_id": "b1", "seats": ["A1"], "status": "pending"});
        assert_eq!(
            outcome(202, pending),
            Some(Outcome::Won {
                booking_id: "b1".into(),
                seats: vec!["A1".into()],
                confirmed: false
            })
        );
        let confirmed = json!({"booking_id": "b2", "seats": ["A1", "A2"], "status": "confirmed"});
        let won = outcome(201, confirmed).unwrap();
        assert_eq!(won.label(), "201 confirmed");
        assert!(matches!(won, Outcome::Won { confirmed: true, ref seats, .. } if seats.len() == 2));
        assert_eq!(
            outcome(409, json!({"error": "seats_unavailable"})),
            Some(Outcome::Lost(LOST_SEATS_UNAVAILABLE))
        );
        assert_eq!(
            outcome(409, json!({"error": "sold_out"})),
            Some(Outcome::Lost(LOST_SOLD_OUT))
        );
        assert_eq!(
            outcome(422, json!({"error": "user_limit_exceeded", "limit": 4})),
            Some(Outcome::UserLimit)
        );
        assert_eq!(
            outcome(404, json!({"error": "event_not_found"})),
            Some(Outcome::Error("404 event_not_found".into()))
        );
        assert_eq!(
            outcome(202, json!({})),
            Some(Outcome::Error("202 without a booking_id".into()))
        );
        assert_eq!(outcome(429, json!({"error": "rate_limited"})), None);
        assert_eq!(outcome(503, json!({"error": "overloaded"})), None);
    }
}

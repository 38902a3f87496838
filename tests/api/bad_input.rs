//! Every bad input of the contract gets its 4xx with a JSON error body, never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// A request of the contract: method and path, and the bearer token and JSON text it
/// carries (sent as written, to send what a typed body cannot).
struct Call<'a> {
    method: Method,
    path: String,
    token: Option<&'a str>,
    body: Option<String>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: impl Into<String>) -> Self {
        let path = path.into();
        Self {
            method,
            path,
            token: None,
            body: None,
        }
    }

    fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    fn token(self, token: Option<&'a str>) -> Self {
        Self { token, ..self }
    }

    fn body(self, body: impl Into<String>) -> Self {
        let body = Some(body.into());
        Self { body, ..self }
    }
}

/// Sends a request and checks status and error code.
async fn expect(app: &TestApp, call: &Call<'_>, status: StatusCode, code: &str) -> Value {
    let Call {
        method,
        path,
        token,
        body,
    } = call;
    let mut req = app.client.request(method.clone(), app.url(path));
    if let Some(token) = token {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.clone());
    }
    let r = req.send().await.unwrap();
    let got = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{method} {path}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["error"], code, "{text}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    body
}

#[tokio::test]
async fn malformed_claims_are_400_invalid_request() {
    let (app, event) = spawn_app_with_event(3).await;
    let path = format!("/v1/events/{event}/bookings");
    let token = app.user_token("alice");
    for body in [
        "{not json",
        "",
        "[]",
        "null",
        r#"{"seats": "S0001"}"#,
        r#"{"seats": [1, 2]}"#,
        r#"{"quantity": "2"}"#,
        r#"{"quantity": 1.5}"#,
        r#"{"quantity": -1}"#,
        r#"{"quantity": 0}"#,
        r#"{"seats": []}"#,
        r#"{"seats": ["S0001", "S0001"]}"#,
        r#"{"seats": ["S0001"], "quantity": 1}"#,
        r#"{}"#,
        r#"{"seats": ["S0001"], "user": "bob"}"#,
    ] {
        let call = Call::post(&path).token(Some(&token)).body(body);
        expect(&app, &call, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Nothing was claimed by any of them.
    assert_eq!(app.event_json(&event).await["available"], 3);
}

#[tokio::test]
async fn bad_idempotency_keys_are_400() {
    let (app, event) = spawn_app_with_event(3).await;
    for key in ["has space", &"k".repeat(256), "tab\there"] {
        let r = app.claim(&event, "alice", &best_of(1), Some(key)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
    let ok = app
        .claim(&event, "alice", &best_of(1), Some(&"k".repeat(255)))
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_claim_body_over_16_kib_is_413() {
    let (app, event) = spawn_app_with_event(3).await;
    // 100 seat ids of 32 characters each is a valid claim well under the limit; this
    // one pads its JSON with whitespace to just over it.
    let seats: Vec<String> = (0..100).map(|i| format!("{i:032}")).collect();
    let mut body = serde_json::to_string(&json!({ "seats": seats })).unwrap();
    assert!(body.len() < 16 * 1024);
    body.push_str(&" ".repeat(16 * 1024 + 1 - body.len()));
    let token = app.user_token("alice");
    let call = Call::post(format!("/v1/events/{event}/bookings")).token(Some(&token));
    let call = call.body(body);
    expect(
        &app,
        &call,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn seat_ids_and_counts_outside_the_contract_are_400_and_leave_nothing_in_redis() {
    let (app, event) = spawn_app_with_event(3).await;
    let too_many: Vec<String> = (0..101).map(|i| format!("S{i}")).collect();
    for (i, body) in [
        json!({"seats": ["x".repeat(33)]}),
        json!({"seats": ["x".repeat(4000)]}),
        json!({"seats": [""]}),
        json!({"seats": too_many}),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("key-{i}");
        let r = app.claim(&event, "alice", &body, Some(&key)).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("invalid_request"), "{text}");
        // Refused before Redis: no idempotency record holds the bad seat ids.
        let record = app.redis.keys(&event).idempotency("alice", &key);
        let exists: bool = redis::AsyncCommands::exists(&mut app.redis.connection(), &record)
            .await
            .unwrap();
        assert!(!exists, "{record} was stored");
    }
}

/// Sends a request head announcing a 1 MiB body, and no body: the answer must come
/// without the gateway waiting for (or buffering) the body.
async fn answered_before_the_body(app: &TestApp, path: &str, auth: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut got))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    String::from_utf8_lossy(&got[..n]).into_owned()
}

#[tokio::test]
async fn bodies_are_not_read_before_the_caller_is_authenticated() {
    let app = spawn_app_with(|s| s.request_timeout = std::time::Duration::from_secs(60)).await;
    let event = app.event_with(&seat_names(3), 4).await;
    let claim = format!("/v1/events/{event}/bookings");
    for (path, auth) in [
        (claim.as_str(), None),
        (claim.as_str(), Some("not-a-jwt")),
        ("/v1/admin/events", None),
        ("/v1/admin/events", Some("wrong-admin-token")),
    ] {
        let answer = answered_before_the_body(&app, path, auth).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains("unauthorized"), "{path}: {answer}");
    }
    // A valid caller announcing more than the limit is refused at once too.
    let answer = answered_before_the_body(&app, &claim, Some(&app.user_token("alice"))).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn unknown_events_are_404() {
    let app = spawn_app().await;
    let token = app.user_token("alice");
    for id in ["no-such-event", "bad%20id", &"x".repeat(65), "%C3%A9"] {
        let claim = Call::post(format!("/v1/events/{id}/bookings")).token(Some(&token));
        for call in [
            Call::get(format!("/v1/events/{id}")),
            Call::get(format!("/v1/events/{id}/seats")),
            claim.body(r#"{"quantity": 1}"#),
        ] {
            expect(&app, &call, StatusCode::NOT_FOUND, "event_not_found").await;
        }
    }
    let nothing = Call::get("/v1/nothing-here");
    expect(&app, &nothing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn paths_that_are_not_utf8_are_404_like_any_path_naming_nothing() {
    let app = spawn_app().await;
    let user = app.user_token("alice");
    let booking = "01890f6e-7c1a-7cc2-8a3b-3f2b1d6c9e55";
    let admin = Some(app.admin_token.as_str());
    let calls = [
        Call::get("/v1/events/%FF"),
        Call::get("/v1/events/%FF/seats"),
        Call::get("/v1/events/%FF/stream"),
        Call::get("/live/%FF"),
        Call::post("/v1/admin/events/%FF/warm").token(admin),
        Call::get("/v1/admin/events/%FF/audit").token(admin),
        Call::post("/v1/events/%FF/bookings").token(Some(&user)),
        Call::get(format!("/v1/events/%FF/bookings/{booking}")).token(Some(&user)),
        Call::get("/v1/events/e/bookings/%FF%FE").token(admin),
        Call::new(Method::DELETE, "/v1/events/e/bookings/%FF").token(admin),
    ];
    for call in calls {
        expect(&app, &call, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn user_endpoints_need_a_valid_hs256_token() {
    let (app, event) = spawn_app_with_event(3).await;
    let path = format!("/v1/events/{event}/bookings");
    let secret = app.jwt_secret.clone();
    let expired = seatgate::api::auth::sign_claims(&secret, "alice", 1_000_000_000);
    let wrong_key =
        seatgate::api::auth::sign_user_token(&seatgate::config::Secret::new("nope"), "alice", 60);
    let too_long_sub = seatgate::api::auth::sign_user_token(&secret, &"u".repeat(129), 60);
    // {"alg":"none"} with {"sub":"alice","exp":9999999999}
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
    for token in [
        None,
        Some("garbage"),
        Some(expired.as_str()),
        Some(wrong_key.as_str()),
        Some(too_long_sub.as_str()),
        Some(none),
    ] {
        let call = Call::post(&path).token(token).body(r#"{"quantity": 1}"#);
        expect(&app, &call, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let r = app
        .client
        .post(app.url(&path))
        .header("Authorization", "Basic YWxpY2U6cHc=")
        .json(&best_of(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.event_json(&event).await["available"], 3);
    // A 128-character user id is fine; characters, not bytes.
    let r = app.claim(&event, &"ü".repeat(128), &best_of(1), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let (app, event) = spawn_app_with_event(3).await;
    let user = app.user_token("alice");
    let create = json!({"id": "x1", "name": "X", "seats": ["A"]}).to_string();
    for token in [None, Some("wrong"), Some(user.as_str())] {
        for call in [
            Call::post("/v1/admin/events").body(&create),
            Call::post(format!("/v1/admin/events/{event}/warm")),
            Call::get(format!("/v1/admin/events/{event}/audit")),
        ] {
            let call = call.token(token);
            expect(&app, &call, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
    }
}

#[tokio::test]
async fn invalid_events_are_400_and_duplicates_409() {
    let app = spawn_app().await;
    let admin = app.admin();
    let id = app.event_id();
    let long_name = "n".repeat(201);
    let long_seat = "s".repeat(33);
    for body in [
        json!({"id": "bad id", "name": "X", "seats": ["A"]}),
        json!({"id": "x".repeat(65), "name": "X", "seats": ["A"]}),
        json!({"id": "", "name": "X", "seats": ["A"]}),
        json!({"id": id, "name": "", "seats": ["A"]}),
        json!({"id": id, "name": long_name, "seats": ["A"]}),
        json!({"id": id, "name": "X", "seats": []}),
        json!({"id": id, "name": "X", "seats": ["A", "A"]}),
        json!({"id": id, "name": "X", "seats": [""]}),
        json!({"id": id, "name": "X", "seats": [long_seat]}),
        // MySQL's collation ignores trailing spaces: "A1 " would collide with "A1".
        json!({"id": id, "name": "X", "seats": ["A1", "A1 "]}),
        json!({"id": id, "name": "X", "seats": ["B "]}),
        json!({"id": id, "name": "X", "seats": ["A"], "per_user_limit": 0}),
        json!({"id": id, "name": "X", "seats": ["A"], "per_user_limit": 101}),
        json!({"id": id, "name": "X", "seats": "A"}),
        json!({"name": "X", "seats": ["A"]}),
    ] {
        let call = Call::post("/v1/admin/events").token(Some(&admin));
        let call = call.body(body.to_string());
        expect(&app, &call, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Seat ids are exact: "A" and "a" are two seats; 32 characters counted as such.
    let ok = json!({"id": id, "name": "é".repeat(200), "seats": ["A", "a", "é".repeat(32)], "per_user_limit": 100});
    let r = app.create_event(&ok).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let again = Call::post("/v1/admin/events").token(Some(&admin));
    let again = again.body(ok.to_string());
    expect(&app, &again, StatusCode::CONFLICT, "event_exists").await;
}

#[tokio::test]
async fn a_gateway_with_weak_secrets_refuses_to_start() {
    let strong_admin = "an-admin-token-long-enough";
    let strong_jwt = "a-jwt-secret-of-at-least-32-bytes!!";
    for (admin, jwt, named) in [
        ("w3ak-T0ken", strong_jwt, "SEATGATE_ADMIN_TOKEN"),
        (
            strong_admin,
            "jwt-of-31-bytes-xxxxxxxxxxxxxxx",
            "SEATGATE_JWT_SECRET",
        ),
    ] {
        let weak = if named == "SEATGATE_ADMIN_TOKEN" {
            admin
        } else {
            jwt
        };
        let mut settings = seatgate::config::Settings::local(admin, jwt);
        settings.http_addr = "127.0.0.1:0".into();
        let err = match seatgate::startup::Application::build(settings).await {
            Ok(_) => panic!("started with a weak {named}"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.contains(named), "{err}");
        assert!(!err.contains(weak), "the secret is not shown: {err}");
    }
}

//! Every bad input of the contract gets its 4xx with a JSON error body, never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// Sends a request and checks status and error code.
async fn expect(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
    status: StatusCode,
    code: &str,
) -> Value {
    let mut req = app.client.request(method.clone(), app.url(path));
    if let Some(token) = token {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
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
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(3), 4).await;
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
        expect(
            &app,
            Method::POST,
            &path,
            Some(&token),
            Some(body.into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    // Nothing was claimed by any of them.
    assert_eq!(app.event_json(&event).await["available"], 3);
}

#[tokio::test]
async fn bad_idempotency_keys_are_400() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(3), 4).await;
    for key in ["has space", &"k".repeat(256), "tab\there"] {
        let r = app
            .client
            .post(app.url(&format!("/v1/events/{event}/bookings")))
            .bearer_auth(app.user_token("alice"))
            .header("Idempotency-Key", key)
            .json(&json!({"quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
    let ok = app
        .claim(
            &event,
            "alice",
            &json!({"quantity": 1}),
            Some(&"k".repeat(255)),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_413() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(3), 4).await;
    let seats: Vec<String> = (0..120_000).map(|i| format!("seat-{i}")).collect();
    let body = serde_json::to_string(&json!({ "seats": seats })).unwrap();
    assert!(body.len() > 1024 * 1024);
    expect(
        &app,
        Method::POST,
        &format!("/v1/events/{event}/bookings"),
        Some(&app.user_token("alice")),
        Some(body),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn unknown_events_are_404() {
    let app = spawn_app().await;
    let token = app.user_token("alice");
    let claim = Some(r#"{"quantity": 1}"#.to_owned());
    for id in ["no-such-event", "bad%20id", &"x".repeat(65), "%C3%A9"] {
        expect(
            &app,
            Method::GET,
            &format!("/v1/events/{id}"),
            None,
            None,
            StatusCode::NOT_FOUND,
            "event_not_found",
        )
        .await;
        expect(
            &app,
            Method::GET,
            &format!("/v1/events/{id}/seats"),
            None,
            None,
            StatusCode::NOT_FOUND,
            "event_not_found",
        )
        .await;
        expect(
            &app,
            Method::POST,
            &format!("/v1/events/{id}/bookings"),
            Some(&token),
            claim.clone(),
            StatusCode::NOT_FOUND,
            "event_not_found",
        )
        .await;
    }
    expect(
        &app,
        Method::GET,
        "/v1/nothing-here",
        None,
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn user_endpoints_need_a_valid_hs256_token() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(3), 4).await;
    let path = format!("/v1/events/{event}/bookings");
    let body = Some(r#"{"quantity": 1}"#.to_owned());
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
        expect(
            &app,
            Method::POST,
            &path,
            token,
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let r = app
        .client
        .post(app.url(&path))
        .header("Authorization", "Basic YWxpY2U6cHc=")
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.event_json(&event).await["available"], 3);
    // A 128-character user id is fine; characters, not bytes.
    let r = app
        .claim(&event, &"ü".repeat(128), &json!({"quantity": 1}), None)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(3), 4).await;
    let user = app.user_token("alice");
    let create = Some(json!({"id": "x1", "name": "X", "seats": ["A"]}).to_string());
    for token in [None, Some("wrong"), Some(user.as_str())] {
        expect(
            &app,
            Method::POST,
            "/v1/admin/events",
            token,
            create.clone(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        expect(
            &app,
            Method::POST,
            &format!("/v1/admin/events/{event}/warm"),
            token,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        expect(
            &app,
            Method::GET,
            &format!("/v1/admin/events/{event}/audit"),
            token,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
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
        expect(
            &app,
            Method::POST,
            "/v1/admin/events",
            Some(&admin),
            Some(body.to_string()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    // Seat ids are exact: "A" and "a" are two seats; 32 characters counted as such.
    let ok = json!({"id": id, "name": "é".repeat(200), "seats": ["A", "a", "é".repeat(32)], "per_user_limit": 100});
    let r = app.create_event(&ok).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    expect(
        &app,
        Method::POST,
        "/v1/admin/events",
        Some(&admin),
        Some(ok.to_string()),
        StatusCode::CONFLICT,
        "event_exists",
    )
    .await;
}

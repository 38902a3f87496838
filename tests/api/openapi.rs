//! `GET /openapi.json`: the document names every route of the HTTP API, and every
//! operation it names is served by the real router (and nothing else is served on its
//! paths), so the document and the code cannot drift apart unnoticed.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

/// Who may call a route, as the document must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// No token.
    None,
    /// The admin bearer token.
    Admin,
    /// A user JWT.
    User,
    /// A user JWT (its owner's) or the admin token.
    UserOrAdmin,
}

/// Every route of the HTTP API (and the operations endpoints), written out by hand:
/// method, path template, security.
const ROUTES: &[(&str, &str, Security)] = &[
    ("post", "/v1/admin/events", Security::Admin),
    ("post", "/v1/admin/events/{id}/warm", Security::Admin),
    ("get", "/v1/admin/events/{id}/audit", Security::Admin),
    ("get", "/v1/events/{id}", Security::None),
    ("get", "/v1/events/{id}/seats", Security::None),
    ("post", "/v1/events/{id}/bookings", Security::User),
    ("get", "/v1/events/{id}/bookings", Security::UserOrAdmin),
    (
        "get",
        "/v1/events/{id}/bookings/{booking_id}",
        Security::UserOrAdmin,
    ),
    (
        "delete",
        "/v1/events/{id}/bookings/{booking_id}",
        Security::UserOrAdmin,
    ),
    (
        "post",
        "/v1/events/{id}/bookings/{booking_id}/checkout",
        Security::User,
    ),
    (
        "post",
        "/v1/events/{id}/bookings/{booking_id}/extend",
        Security::User,
    ),
    ("get", "/healthz", Security::None),
    ("get", "/readyz", Security::None),
    ("get", "/metrics", Security::None),
    ("get", "/openapi.json", Security::None),
    ("get", "/v1/events/{id}/stream", Security::None),
    ("get", "/live/{id}", Security::None),
    ("get", "/live/assets/live.js", Security::None),
    ("get", "/live/assets/live.css", Security::None),
    ("get", "/", Security::None),
];

/// Methods probed on every documented path for operations the document does not name.
const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

async fn fetch_doc(app: &TestApp) -> Value {
    let r = app.get_ok("/openapi.json", "application/json").await;
    r.json().await.expect("/openapi.json is JSON")
}

/// `doc`'s paths as (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&method.as_str()) || method == "head" || method == "options" {
                ops.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    ops
}

/// Follows a `$ref` into `#/components/...`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} resolves"))
        }
        None => schema,
    }
}

/// The schema of a JSON request or response body (`requestBody` or a response),
/// resolved.
fn json_schema<'a>(doc: &'a Value, body: &'a Value) -> &'a Value {
    resolve(doc, &body["content"]["application/json"]["schema"])
}

/// The strings of a JSON array of strings.
fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// The security schemes an operation accepts: one entry per alternative, each the
/// sorted names that alternative needs (an empty entry: no token).
fn security_of(op: &Value) -> Vec<Vec<String>> {
    let mut alternatives: Vec<Vec<String>> = op["security"]
        .as_array()
        .expect("every operation states its security")
        .iter()
        .map(|req| {
            let mut names: Vec<String> = req.as_object().unwrap().keys().cloned().collect();
            names.sort();
            names
        })
        .collect();
    alternatives.sort();
    alternatives
}

/// A concrete URL path for a template: placeholder values for its parameters.
fn concrete(path: &str) -> String {
    path.replace("{id}", "no-such-event")
        .replace("{booking_id}", "01890f6e-7c1a-7cc2-8a3b-3f2b1d6c9e55")
}

#[tokio::test]
async fn openapi_json_is_an_openapi_3_document_naming_every_route() {
    let app = spawn_app().await;
    let doc = fetch_doc(&app).await;
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string(), "{}", doc["info"]);
    assert!(doc["info"]["version"].is_string(), "{}", doc["info"]);
    assert!(doc["paths"].is_object());

    let schemes = &doc["components"]["securitySchemes"];
    for name in ["admin_token", "user_jwt"] {
        assert_eq!(schemes[name]["type"], "http", "{name}: {schemes}");
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}: {schemes}");
    }

    for (method, path, security) in ROUTES {
        let op = &doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{} {path} is not in the document",
            method.to_uppercase()
        );
        let expected: Vec<Vec<String>> = match security {
            Security::None => vec![vec![]],
            Security::Admin => vec![vec!["admin_token".into()]],
            Security::User => vec![vec!["user_jwt".into()]],
            Security::UserOrAdmin => vec![vec!["admin_token".into()], vec!["user_jwt".into()]],
        };
        assert_eq!(security_of(op), expected, "security of {method} {path}");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no responses"
        );
        // Every path parameter of the template is documented.
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            let documented = op["parameters"].as_array().is_some_and(|params| {
                params
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"] == name && p["required"] == true)
            });
            assert!(documented, "{method} {path} does not document {{{name}}}");
        }
    }
    // And nothing else: a route the document adds must be added to ROUTES (and to
    // README.md's API table) too.
    let mut documented: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(path, method, _)| (method, path))
        .collect();
    documented.sort();
    let mut listed: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    listed.sort();
    assert_eq!(documented, listed);
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else_on_its_paths() {
    let app = spawn_app().await;
    let doc = fetch_doc(&app).await;
    let ops = operations(&doc);
    assert!(!ops.is_empty());
    for (path, method, op) in &ops {
        let url = app.url(&concrete(path));
        let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        // No token and no body: no side effects, and the router still has to pick the
        // handler before anything can be refused.
        let r = app.client.request(http_method, &url).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but not served: {body}"
        );
        assert!(
            !(status == StatusCode::NOT_FOUND && code.as_deref() == Some("not_found")),
            "{method} {path} is documented but not served: {body}"
        );
        // The handler answered, with a status the document names for it.
        assert!(
            op["responses"][status.as_str()].is_object(),
            "{method} {path} answered {status}, which its document does not name: {body}"
        );
    }
    // Served but not documented: every other method on a documented path must meet
    // the router's own 405.
    let paths: std::collections::BTreeSet<&String> = ops.iter().map(|(p, _, _)| p).collect();
    for path in paths {
        for method in METHODS {
            if doc["paths"][path.as_str()][*method].is_object() {
                continue;
            }
            let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app
                .client
                .request(http_method, app.url(&concrete(path)))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
                "{} {path} is served but not documented: {body}",
                method.to_uppercase()
            );
        }
    }
}

#[tokio::test]
async fn the_claim_and_the_error_body_are_described_in_full() {
    let app = spawn_app().await;
    let doc = fetch_doc(&app).await;

    let claim = &doc["paths"]["/v1/events/{id}/bookings"]["post"];
    for status in [
        "201", "202", "400", "401", "404", "409", "413", "422", "429", "503",
    ] {
        assert!(
            claim["responses"][status].is_object(),
            "the claim does not document {status}"
        );
    }
    for status in ["201", "202"] {
        let headers = &claim["responses"][status]["headers"];
        assert!(headers["Location"].is_object(), "{status}: {headers}");
    }
    for status in ["429", "503"] {
        let headers = &claim["responses"][status]["headers"];
        assert!(headers["Retry-After"].is_object(), "{status}: {headers}");
    }
    let headers: Vec<&str> = claim["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(headers.contains(&"Idempotency-Key"), "{headers:?}");
    assert!(headers.contains(&"Prefer"), "{headers:?}");

    let body = json_schema(&doc, &claim["requestBody"]);
    assert!(body["properties"]["seats"].is_object(), "{body}");
    assert!(body["properties"]["quantity"].is_object(), "{body}");

    // The pending booking's schema.
    let booking = json_schema(&doc, &claim["responses"]["202"]);
    for field in ["booking_id", "event_id", "user_id", "seats", "status"] {
        assert!(
            booking["properties"][field].is_object(),
            "{field}: {booking}"
        );
    }
    let status = resolve(&doc, &booking["properties"]["status"]);
    let statuses = strings(&status["enum"]);
    assert_eq!(
        statuses,
        [
            "pending",
            "held",
            "confirmed",
            "rejected",
            "cancelled",
            "expired"
        ]
    );

    // The error body: `error` (its codes) and `message`, plus `seats` and `limit`.
    let error = json_schema(&doc, &claim["responses"]["409"]);
    let required = strings(&error["required"]);
    assert!(required.contains(&"error") && required.contains(&"message"));
    assert!(error["properties"]["seats"].is_object(), "{error}");
    assert!(error["properties"]["limit"].is_object(), "{error}");
    let codes = resolve(&doc, &error["properties"]["error"]);
    let codes = strings(&codes["enum"]);
    for code in [
        "invalid_request",
        "unauthorized",
        "event_not_found",
        "booking_not_found",
        "event_exists",
        "seats_unavailable",
        "sold_out",
        "booking_rejected",
        "payload_too_large",
        "user_limit_exceeded",
        "unknown_seats",
        "idempotency_key_reused",
        "rate_limited",
        "overloaded",
        "unavailable",
        "not_found",
        "method_not_allowed",
    ] {
        assert!(codes.contains(&code), "{code} is not among {codes:?}");
    }
    assert!(
        claim["responses"]["422"]["content"]["application/json"]["examples"]["user_limit_exceeded"]
            ["value"]["limit"]
            .is_number()
    );

    // The audit's `repair` query parameter.
    let audit = &doc["paths"]["/v1/admin/events/{id}/audit"]["get"];
    assert!(
        audit["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["in"] == "query" && p["name"] == "repair"),
        "{audit}"
    );
    // The create body.
    let create = json_schema(
        &doc,
        &doc["paths"]["/v1/admin/events"]["post"]["requestBody"],
    );
    for field in ["id", "name", "seats", "per_user_limit"] {
        assert!(create["properties"][field].is_object(), "{field}: {create}");
    }
}

#[tokio::test]
async fn the_served_document_is_the_one_the_code_builds() {
    let app = spawn_app().await;
    let served = fetch_doc(&app).await;
    let built = serde_json::to_value(seatgate::api::openapi_doc()).unwrap();
    assert_eq!(served, built);
}

/// Every `$ref` in the document points at something the document has: a dangling one
/// (a response component used but never registered) makes the whole document unusable
/// to clients and to the API fuzzer.
#[tokio::test]
async fn every_reference_in_the_document_resolves() {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let app = spawn_app().await;
    let doc = fetch_doc(&app).await;
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("not a local reference: {reference}"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
}

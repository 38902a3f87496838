//! `GET /v1/events/{id}/bookings`: a user's own bookings (including claims only Redis
//! has yet), every booking for the admin, newest first, in keyset pages.

use reqwest::{Method, StatusCode};
use seatgate::reconciler::Reconciler;
use serde_json::Value;
use std::time::Duration;

use crate::helpers::*;

/// Runs reconciler steps until one settles nothing.
async fn drain(r: &Reconciler) {
    loop {
        let report = r.step(Duration::from_millis(50)).await.unwrap();
        assert_eq!(report.retry, 0, "{report:?}");
        if report.settled() == 0 {
            return;
        }
    }
}

/// `GET /v1/events/{event}/bookings{query}` with `token`.
async fn list(app: &TestApp, event: &str, query: &str, token: &str) -> reqwest::Response {
    let path = format!("/v1/events/{event}/bookings{query}");
    app.call(Method::GET, &path, token, None).await
}

/// The listing's JSON (200 expected).
async fn list_json(app: &TestApp, event: &str, query: &str, token: &str) -> Value {
    expect_json(list(app, event, query, token).await, StatusCode::OK).await
}

/// `(booking id, status)` of each booking of a listing, in its order.
fn entries(listing: &Value) -> Vec<(String, String)> {
    listing["bookings"]
        .as_array()
        .unwrap_or_else(|| panic!("no bookings in {listing}"))
        .iter()
        .map(|b| {
            (
                b["booking_id"].as_str().unwrap().to_owned(),
                b["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The pairs `(id, status)` for `ids`, all with `status`.
fn all(ids: &[&String], status: &str) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| (id.to_string(), status.to_owned()))
        .collect()
}

/// Every page of a listing from `query` (which must end with a parameter, so that
/// `&cursor=` can follow): the bookings in order, and the number of pages.
async fn walk(app: &TestApp, event: &str, query: &str, token: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let page = list_json(app, event, &q, token).await;
        pages += 1;
        assert!(pages <= 20, "the pages do not end");
        ids.extend(entries(&page).into_iter().map(|(id, _)| id));
        match page.get("next_cursor") {
            None => return (ids, pages),
            Some(next) => {
                let next = next.as_str().unwrap_or_else(|| panic!("{page}"));
                assert_eq!(ids.last().map(String::as_str), Some(next), "{page}");
                cursor = Some(next.to_owned());
            }
        }
    }
}

#[tokio::test]
async fn a_user_sees_their_own_bookings_newest_first_pending_and_cancelled_ones_too() {
    let (app, event) = spawn_stepped_app_with_event(10).await;
    let alice = app.user_token("alice");
    let bob = app.user_token("bob");
    let first = app.claim_seats(&event, "alice", &["S0001"]).await;
    let second = app.claim_seats(&event, "alice", &["S0002", "S0003"]).await;
    let bobs = app.claim_seats(&event, "bob", &["S0009"]).await;
    drain(&app.reconciler()).await;
    let r = app.cancel(&event, &first, &alice).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Made after the reconciler ran, and the gateway runs none: only Redis has it.
    let third = app.claim_seats(&event, "alice", &["S0004"]).await;
    assert_eq!(app.mysql_booking(&third).await, None);

    let listing = list_json(&app, &event, "", &alice).await;
    assert_eq!(
        entries(&listing),
        [
            (third.clone(), "pending".to_owned()),
            (second.clone(), "confirmed".to_owned()),
            (first.clone(), "cancelled".to_owned()),
        ],
        "{listing}"
    );
    assert!(listing.get("next_cursor").is_none(), "{listing}");
    let pending = &listing["bookings"][0];
    assert_eq!(pending["user_id"], "alice");
    assert_eq!(pending["event_id"], event.as_str());
    assert_eq!(pending["seats"], serde_json::json!(["S0004"]));
    assert_eq!(listing["bookings"][1]["seats"].as_array().unwrap().len(), 2);

    // Bob sees his, and none of alice's.
    let listing = list_json(&app, &event, "", &bob).await;
    assert_eq!(entries(&listing), [(bobs.clone(), "confirmed".to_owned())]);
    // A user with no bookings gets an empty list.
    let listing = list_json(&app, &event, "", &app.user_token("carol")).await;
    assert_eq!(listing["bookings"], serde_json::json!([]), "{listing}");

    // Filters and pages apply to the claims only Redis has as to MySQL's rows.
    let pending = list_json(&app, &event, "?status=pending", &alice).await;
    assert_eq!(entries(&pending), [(third.clone(), "pending".to_owned())]);
    let confirmed = list_json(&app, &event, "?status=confirmed", &alice).await;
    assert_eq!(
        entries(&confirmed),
        [(second.clone(), "confirmed".to_owned())]
    );
    let (walked, pages) = walk(&app, &event, "?limit=1", &alice).await;
    assert_eq!(walked, [third.clone(), second.clone(), first.clone()]);
    assert_eq!(pages, 3);

    // The admin sees what MySQL has: every user's, but not the claim not persisted yet.
    let admin = list_json(&app, &event, "", &app.admin()).await;
    assert_eq!(
        entries(&admin),
        [
            (bobs.clone(), "confirmed".to_owned()),
            (second.clone(), "confirmed".to_owned()),
            (first.clone(), "cancelled".to_owned()),
        ]
    );

    // Once persisted, the claim is MySQL's: alice's listing shows it confirmed, and
    // the admin's lists it.
    drain(&app.reconciler()).await;
    let listing = list_json(&app, &event, "", &alice).await;
    assert_eq!(
        entries(&listing)[0],
        (third.clone(), "confirmed".to_owned())
    );
    assert_eq!(entries(&listing).len(), 3);
    let admin = list_json(&app, &event, "", &app.admin()).await;
    assert_eq!(entries(&admin)[0], (third.clone(), "confirmed".to_owned()));
}

#[tokio::test]
async fn a_pending_claim_cancelled_before_it_was_persisted_is_listed_cancelled() {
    let (app, event) = spawn_stepped_app_with_event(4).await;
    let alice = app.user_token("alice");
    let id = app.claim_seats(&event, "alice", &["S0001"]).await;
    let r = app.cancel(&event, &id, &alice).await;
    assert_eq!(r.status(), StatusCode::OK);
    // MySQL has its tombstone, Redis no longer counts it: cancelled, listed once.
    let listing = list_json(&app, &event, "", &alice).await;
    assert_eq!(entries(&listing), [(id, "cancelled".to_owned())]);
}

#[tokio::test]
async fn the_admin_pages_through_every_booking_without_gaps_or_repeats() {
    let (app, event) = spawn_app_with_event(10).await;
    let mut made = Vec::new();
    for i in 0..7 {
        let seat = format!("S{:04}", i + 1);
        made.push(
            app.claim_seats(&event, &format!("user{i}"), &[seat.as_str()])
                .await,
        );
    }
    app.settled(&event).await;
    let admin = app.admin();

    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    let (walked, pages) = walk(&app, &event, "?limit=3", &admin).await;
    assert_eq!(walked, newest_first);
    assert_eq!(pages, 3);
    // The first page is full and says where to go on; the default page has them all.
    let page = list_json(&app, &event, "?limit=3", &admin).await;
    assert_eq!(entries(&page).len(), 3);
    assert_eq!(page["next_cursor"], made[4].as_str());
    let everything = list_json(&app, &event, "", &admin).await;
    assert_eq!(
        entries(&everything),
        all(&made.iter().rev().collect::<Vec<_>>(), "confirmed")
    );
    assert!(everything.get("next_cursor").is_none(), "{everything}");
    // A page that ends exactly at the last booking names no cursor: the page's query
    // looked one row further and found none.
    let (walked, pages) = walk(&app, &event, "?limit=7", &admin).await;
    assert_eq!(walked, newest_first);
    assert_eq!(pages, 1);

    // Status filter: two cancelled, five confirmed, each with its own pages.
    for id in [&made[1], &made[5]] {
        let r = app.cancel(&event, id, &admin).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let cancelled = list_json(&app, &event, "?status=cancelled", &admin).await;
    assert_eq!(entries(&cancelled), all(&[&made[5], &made[1]], "cancelled"));
    let (confirmed, pages) = walk(&app, &event, "?status=confirmed&limit=2", &admin).await;
    assert_eq!(
        confirmed,
        [&made[6], &made[4], &made[3], &made[2], &made[0]]
            .map(|s| s.to_owned())
            .to_vec()
    );
    assert_eq!(pages, 3);
    let none = list_json(&app, &event, "?status=expired", &admin).await;
    assert_eq!(none["bookings"], serde_json::json!([]));
    // A cursor in another spelling of the same UUID pages the same.
    let upper = made[4].to_uppercase();
    let page = list_json(&app, &event, &format!("?limit=10&cursor={upper}"), &admin).await;
    let ids: Vec<String> = entries(&page).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        [&made[3], &made[2], &made[1], &made[0]].map(|s| s.to_owned())
    );
}

#[tokio::test]
async fn bad_queries_are_invalid_requests_and_unknown_events_not_found() {
    let (app, event) = spawn_app_with_event(2).await;
    app.claim_seats(&event, "alice", &["S0001"]).await;
    for token in [app.admin(), app.user_token("alice")] {
        for query in [
            "?status=booked",
            "?status=",
            "?status=CONFIRMED",
            "?limit=0",
            "?limit=501",
            "?limit=-1",
            "?limit=ten",
            "?limit=",
            "?cursor=not-a-uuid",
            "?cursor=",
            "?order=asc",
            "?limit=3&limit=4",
        ] {
            let r = list(&app, &event, query, &token).await;
            let body = expect_json(r, StatusCode::BAD_REQUEST).await;
            assert_eq!(body["error"], "invalid_request", "{query}: {body}");
            assert!(body["message"].is_string(), "{query}: {body}");
        }
        for query in ["?limit=1", "?limit=500", "?status=held"] {
            let r = list(&app, &event, query, &token).await;
            assert_eq!(r.status(), StatusCode::OK, "{query}");
        }
        let r = list(&app, "no-such-event", "", &token).await;
        expect_error(r, StatusCode::NOT_FOUND, "event_not_found").await;
        let r = list(&app, "bad%20id", "", &token).await;
        expect_error(r, StatusCode::NOT_FOUND, "event_not_found").await;
    }

    // An event that exists but is not on sale is unknown to this endpoint too.
    let cold = app.event_id();
    let r = app
        .create_event(
            &serde_json::json!({"id": cold, "name": "Cold", "seats": ["A1"], "per_user_limit": 1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = list(&app, &cold, "", &app.admin()).await;
    expect_error(r, StatusCode::NOT_FOUND, "event_not_found").await;

    // No token, a wrong one: 401 before anything else is looked at.
    let r = app
        .get(&format!("/v1/events/{event}/bookings?limit=0"))
        .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = list(&app, &event, "", "not-a-token").await;
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn the_document_describes_the_listing_and_its_query() {
    let app = spawn_app().await;
    let r = app.get_ok("/openapi.json", "application/json").await;
    let doc: Value = r.json().await.unwrap();
    let op = &doc["paths"]["/v1/events/{id}/bookings"]["get"];
    for status in ["200", "400", "401", "404", "503"] {
        assert!(op["responses"][status].is_object(), "{status}: {op}");
    }
    let query: Vec<&Value> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .collect();
    let names: Vec<&str> = query.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["status", "limit", "cursor"], "{op}");
    let limit = &query[1]["schema"];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&1.into(), &500.into()),
        "{limit}"
    );
    assert_eq!(query[2]["schema"]["format"], "uuid", "{op}");
    let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
    let reference = schema["$ref"]
        .as_str()
        .unwrap_or_else(|| panic!("{schema}"));
    let list = doc.pointer(reference.trim_start_matches('#')).unwrap();
    assert!(list["properties"]["bookings"].is_object(), "{list}");
    assert!(list["properties"]["next_cursor"].is_object(), "{list}");
    assert_eq!(list["required"], serde_json::json!(["bookings"]), "{list}");
}

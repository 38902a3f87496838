//! `GET /`: the front page lists the events on sale, each with its counters and a link
//! to its live seat map, shows event names as text whatever they contain, leaves out
//! events that are not on sale, and answers 503 when Redis is gone.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

use crate::helpers::*;

/// The front page's HTML, checked to be a 200 `text/html; charset=utf-8`.
async fn front_page(app: &TestApp) -> String {
    let r = app.get("/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    r.text().await.unwrap()
}

/// The table row of `event` on the page, if it has one.
fn row<'a>(page: &'a str, event: &str) -> Option<&'a str> {
    let start = page.find(&format!("<tr data-event=\"{event}\">"))?;
    let len = page[start..].find("</tr>").expect("the row ends");
    Some(&page[start..start + len])
}

/// The number in the row's cell of class `counter` (`available`, `held`, ...).
fn cell(row: &str, counter: &str) -> u64 {
    let open = format!("<td class=\"n {counter}\">");
    let start = row
        .find(&open)
        .unwrap_or_else(|| panic!("no {counter} cell in {row}"))
        + open.len();
    let len = row[start..].find("</td>").unwrap();
    row[start..start + len].parse().unwrap()
}

/// Creates and warms an event of `seats` seats with the given name and hold.
async fn event_named(app: &TestApp, name: &str, seats: usize, hold_seconds: u32) -> String {
    let id = app.event_id();
    let r = app
        .create_event(&json!({
            "id": id, "name": name, "seats": seat_names(seats), "hold_seconds": hold_seconds,
        }))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let r = app.warm(&id).await;
    assert_eq!(r.status(), StatusCode::OK);
    id
}

#[tokio::test]
async fn events_on_sale_are_listed_with_their_counters_and_live_maps() {
    let app = spawn_app().await;
    let plain = event_named(&app, "Plain drop", 5, 0).await;
    let holding = event_named(&app, "Drop with holds", 6, 600).await;
    app.claim_seats(&plain, "alice", &["S0001"]).await;
    app.claim_seats(&holding, "bob", &["S0002", "S0003"]).await;
    // The reconciler persists both claims: one booked, two seats held for checkout.
    eventually("the claims persisted", Duration::from_secs(30), || async {
        let booked = app.seat_status(&plain, "S0001").await == "booked";
        let held = app.seat_status(&holding, "S0003").await == "held";
        (booked && held).then_some(())
    })
    .await;

    let page = front_page(&app).await;
    assert!(page.contains("<title>seatgate</title>"), "{page}");
    assert!(!page.contains("No events on sale"), "{page}");
    let r = row(&page, &plain).expect("the plain event is listed");
    assert!(r.contains("Plain drop"), "{r}");
    assert_eq!(
        ["available", "pending", "held", "booked", "total"].map(|c| cell(r, c)),
        [4, 0, 0, 1, 5],
        "{r}"
    );
    assert!(r.contains(&format!("<a href=\"/live/{plain}\">")), "{r}");
    let r = row(&page, &holding).expect("the event with holds is listed");
    assert!(r.contains("Drop with holds"), "{r}");
    assert_eq!(
        ["available", "pending", "held", "booked", "total"].map(|c| cell(r, c)),
        [4, 0, 2, 0, 6],
        "{r}"
    );
    assert!(r.contains(&format!("<a href=\"/live/{holding}\">")), "{r}");
    // Sorted by id.
    let (first, second) = if plain < holding {
        (&plain, &holding)
    } else {
        (&holding, &plain)
    };
    assert!(page.find(first.as_str()).unwrap() < page.find(second.as_str()).unwrap());
    assert!(page.contains("href=\"/openapi.json\""));
    assert!(page.contains("href=\"/metrics\""));
    // Every link on the page leads somewhere.
    for path in [
        format!("/live/{holding}"),
        "/openapi.json".into(),
        "/metrics".into(),
    ] {
        assert_eq!(app.get(&path).await.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn an_event_not_warmed_is_not_listed() {
    let app = spawn_app().await;
    assert!(front_page(&app).await.contains("No events on sale"));
    let cold = app.event_id();
    let r = app
        .create_event(&json!({"id": cold, "name": "Cold event", "seats": ["A1"]}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let page = front_page(&app).await;
    assert!(page.contains("No events on sale"), "{page}");
    assert!(!page.contains(&cold), "{page}");
    assert!(!page.contains("Cold event"), "{page}");

    // Once warmed, it is.
    let r = app.warm(&cold).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = front_page(&app).await;
    assert!(
        row(&page, &cold).is_some_and(|r| r.contains("Cold event")),
        "{page}"
    );
    assert!(!page.contains("No events on sale"), "{page}");
}

#[tokio::test]
async fn markup_in_an_event_name_is_shown_as_text() {
    let app = spawn_app().await;
    let name = r#"<script>alert(1)</script> & "Q" 'n' <img src=x onerror=alert(2)>"#;
    let id = event_named(&app, name, 2, 0).await;
    let page = front_page(&app).await;
    let r = row(&page, &id).expect("the event is listed");
    assert!(
        r.contains(
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Q&quot; &#39;n&#39; \
             &lt;img src=x onerror=alert(2)&gt;"
        ),
        "{r}"
    );
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
}

#[tokio::test]
async fn without_redis_the_front_page_answers_503() {
    let Some((mut redis, app)) = spawn_app_on_private_redis(|s| s.reconciler = false).await else {
        eprintln!("SKIPPED: redis-server is not installed");
        return;
    };
    front_page(&app).await;
    redis.kill();
    let r = app.get("/").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unavailable", "{body}");
}

//! `GET /metrics`. The recorder is process-wide and every test of this binary shares
//! it, so the counters are compared before and after, never read as totals.

use reqwest::StatusCode;
use std::collections::HashMap;

use crate::helpers::*;

/// Series (name with its labels, as rendered) → value, from the Prometheus text.
pub(crate) async fn scrape(app: &TestApp) -> (String, HashMap<String, f64>) {
    let r = app.get_ok("/metrics", "text/plain; version=0.0.4").await;
    let text = r.text().await.unwrap();
    let series = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{l}"));
            (series.to_owned(), value)
        })
        .collect();
    (text, series)
}

pub(crate) fn value(series: &HashMap<String, f64>, name: &str) -> f64 {
    series.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_claims_by_outcome_and_settlements() {
    let (app, event) = spawn_app_with_event(2).await;
    let (_, before) = scrape(&app).await;

    let won = app.claim_seats(&event, "winner", &["S0001"]).await;
    let r = app.claim(&event, "loser", &pick(&["S0001"]), None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    app.settled(&event).await;
    let r = app.cancel(&event, &won, &app.user_token("winner")).await;
    assert_eq!(r.status(), StatusCode::OK);

    let (text, after) = scrape(&app).await;
    for name in [
        "seatgate_claims_total",
        "seatgate_claim_duration_seconds",
        "seatgate_claims_in_flight",
        "seatgate_bookings_settled_total",
        "seatgate_reconciler_retries_total",
        "seatgate_reconciler_dead_letters_total",
        "seatgate_reconciler_lag_seconds",
        "seatgate_outbox_length",
        "seatgate_store_errors_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{text}"
        );
    }
    for series in [
        r#"seatgate_claim_duration_seconds_bucket{le="+Inf"}"#,
        "seatgate_claim_duration_seconds_count",
        "seatgate_reconciler_retries_total",
        "seatgate_reconciler_dead_letters_total",
        "seatgate_reconciler_lag_seconds",
        "seatgate_outbox_length",
        "seatgate_claims_in_flight",
        r#"seatgate_store_errors_total{store="redis"}"#,
        r#"seatgate_store_errors_total{store="mysql"}"#,
    ] {
        assert!(after.contains_key(series), "{series} missing from:\n{text}");
    }
    for outcome in [
        "pending",
        "confirmed",
        "seats_unavailable",
        "sold_out",
        "user_limit",
        "unknown_seats",
        "event_not_found",
        "key_reused",
        "replay",
        "overloaded",
        "rate_limited",
        "unavailable",
    ] {
        let series = format!(r#"seatgate_claims_total{{outcome="{outcome}"}}"#);
        assert!(
            after.contains_key(&series),
            "{series} missing from:\n{text}"
        );
    }
    for (series, at_least) in [
        (r#"seatgate_claims_total{outcome="pending"}"#, 1.0),
        (r#"seatgate_claims_total{outcome="seats_unavailable"}"#, 1.0),
        (
            r#"seatgate_bookings_settled_total{result="confirmed"}"#,
            1.0,
        ),
        (
            r#"seatgate_bookings_settled_total{result="cancelled"}"#,
            1.0,
        ),
        ("seatgate_claim_duration_seconds_count", 2.0),
    ] {
        let grew = value(&after, series) - value(&before, series);
        assert!(grew >= at_least, "{series} grew by {grew}, not {at_least}");
    }
}

#[tokio::test]
async fn metrics_need_no_token() {
    let app = spawn_app().await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.client.post(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

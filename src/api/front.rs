//! `GET /`: the front page, for a person who opens the gateway in a browser. It lists
//! the events on sale with their counters and a link to each one's live seat map, and
//! points at the API's document and the metrics. Plain HTML with its style inline: no
//! script, no assets, nothing fetched from elsewhere.

use axum::extract::State;
use axum::response::Html;
use futures::future::join_all;
use std::fmt::Write;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::openapi::{tagged, Unavailable};
use super::AppState;
use crate::domain::claim::EventSummary;

/// The most events the page lists. The registry is read whole (one `SMEMBERS`), but
/// each listed event costs a read of its counters, so a namespace with thousands of
/// events on sale costs at most this many reads per page view.
pub const LISTED_MAX: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    tagged("live", OpenApiRouter::new().routes(routes!(front_page)))
}

/// The front page (HTML): the events on sale, with their counters and live seat maps
#[utoipa::path(
    get,
    path = "/",
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 503, response = inline(Unavailable)),
    ),
    security(())
)]
async fn front_page(State(app): State<AppState>) -> Result<Html<String>, ApiError> {
    let mut ids = app.redis.registered_events().await?;
    ids.sort_unstable();
    let more = ids.len().saturating_sub(LISTED_MAX);
    ids.truncate(LISTED_MAX);
    // Read through the strategy, as `GET /v1/events/{id}` does, so the page shows the
    // counters the public API answers. The reads share one multiplexed connection, so
    // running them together costs Redis nothing more than running them in turn.
    let summaries = join_all(ids.iter().map(|id| app.strategy.event_summary(id))).await;
    let mut events = Vec::with_capacity(ids.len());
    for (id, summary) in ids.into_iter().zip(summaries) {
        // An id still in the registry whose event is no longer on sale is not shown.
        if let Some(summary) = summary? {
            events.push((id, summary));
        }
    }
    Ok(Html(render(&events, more)))
}

/// Escapes text for HTML element content and for quoted attribute values alike.
/// Event names are free text: a name must show as what it says, never as markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
:root{--available:#cfe9d6;--pending:#f2b233;--held:#cc4499;--booked:#2f4b7c;\
--ink:#1d2330;--muted:#5f6672;font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;\
color:var(--ink);background:#fafafa}\
body{margin:0 auto;padding:24px;max-width:920px}\
h1{font-size:24px;margin:0 0 4px}h1 span{color:var(--booked)}\
p{margin:4px 0 16px;color:var(--muted)}\
a{color:#1f5fa8}\
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e3e5e8}\
th,td{padding:8px 12px;text-align:left;border-bottom:1px solid #eceef1}\
th{font-size:13px;color:var(--muted);font-weight:600}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th.n{text-align:right}\
.id{font-family:ui-monospace,monospace;font-size:13px;color:var(--muted)}\
.dot{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:4px}\
.dot.available{background:var(--available)}.dot.pending{background:var(--pending)}\
.dot.held{background:var(--held)}.dot.booked{background:var(--booked)}\
.empty{padding:16px;background:#fff;border:1px solid #e3e5e8;border-radius:6px}\
footer{margin-top:20px;font-size:14px}";

/// The page for `events` (id and summary, in the order shown), and `more` events on
/// sale that are not listed.
fn render(events: &[(String, EventSummary)], more: usize) -> String {
    let mut page = String::with_capacity(2048 + events.len() * 400);
    page.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>seatgate</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>",
    );
    page.push_str(STYLE);
    page.push_str(
        "</style>\n</head>\n<body>\n<h1><span>seatgate</span></h1>\n\
         <p>A seat reservation gateway for ticket drops. The events on sale:</p>\n",
    );
    if events.is_empty() {
        page.push_str("<p class=\"empty\">No events on sale.</p>\n");
    } else {
        page.push_str(
            "<table>\n<thead><tr><th>event</th>\
             <th class=\"n\"><span class=\"dot available\"></span>available</th>\
             <th class=\"n\"><span class=\"dot pending\"></span>pending</th>\
             <th class=\"n\"><span class=\"dot held\"></span>held</th>\
             <th class=\"n\"><span class=\"dot booked\"></span>booked</th>\
             <th class=\"n\">seats</th><th>live map</th></tr></thead>\n<tbody>\n",
        );
        for (id, e) in events {
            let (id, name) = (escape(id), escape(&e.name));
            // Writing to a String cannot fail.
            let _ = writeln!(
                page,
                "<tr data-event=\"{id}\"><td>{name}<br><span class=\"id\">{id}</span></td>\
                 <td class=\"n available\">{}</td><td class=\"n pending\">{}</td>\
                 <td class=\"n held\">{}</td><td class=\"n booked\">{}</td>\
                 <td class=\"n total\">{}</td>\
                 <td><a href=\"/live/{id}\">/live/{id}</a></td></tr>",
                e.available, e.pending, e.held, e.booked, e.seats_total,
            );
        }
        page.push_str("</tbody>\n</table>\n");
        if more > 0 {
            let _ = writeln!(
                page,
                "<p class=\"more\">{more} more event{} on sale not listed here (the first {LISTED_MAX} by id are).</p>",
                if more == 1 { "" } else { "s" }
            );
        }
    }
    page.push_str(
        "<footer><a href=\"/openapi.json\">API (OpenAPI document)</a> · \
         <a href=\"/metrics\">metrics</a></footer>\n</body>\n</html>\n",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str) -> EventSummary {
        EventSummary {
            name: name.into(),
            per_user_limit: 4,
            seats_total: 10,
            available: 4,
            pending: 3,
            booked: 2,
            held: 1,
            hold_seconds: 600,
        }
    }

    #[test]
    fn markup_in_a_name_is_shown_as_text() {
        let page = render(&[("e1".into(), summary("<b>\"Tom\" & 'Jerry'</b>"))], 0);
        assert!(page.contains("&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"));
        assert!(!page.contains("<b>"));
    }

    #[test]
    fn an_event_shows_its_counters_and_its_live_map() {
        let page = render(&[("wc-2026".into(), summary("WordCamp"))], 0);
        for needle in [
            "<td class=\"n available\">4</td>",
            "<td class=\"n pending\">3</td>",
            "<td class=\"n held\">1</td>",
            "<td class=\"n booked\">2</td>",
            "<td class=\"n total\">10</td>",
            "<a href=\"/live/wc-2026\">",
        ] {
            assert!(page.contains(needle), "{needle}");
        }
        assert!(!page.contains("more event"));
    }

    #[test]
    fn no_events_and_too_many_events_are_said_so() {
        assert!(render(&[], 0).contains("No events on sale"));
        let page = render(&[("e".into(), summary("E"))], 7);
        assert!(page.contains("7 more events on sale not listed"), "{page}");
        assert!(!page.contains("No events on sale"));
    }
}

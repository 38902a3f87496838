//! `seatgate admin events`: every event with its seat and booking counts in MySQL and
//! (when warmed) Redis, as a table or `--json`.

use clap::Args;
use serde::Serialize;

use super::{emit, mysql, redis, table};
use crate::cli::thousands;
use crate::cli::StoreArgs;
use crate::db::events as db_events;

/// `events`' options.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Lists the events, as a table or as JSON.
pub(super) async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let events = list_events(&args.store).await?;
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&events)?))
    } else {
        emit(&render_events(&events))
    }
}

/// One event of `admin events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventListing {
    pub id: String,
    pub name: String,
    pub seats_total: u64,
    pub per_user_limit: u32,
    /// On sale in Redis (where the redis claim strategy looks).
    pub on_sale: bool,
    /// Redis's counts, when the event is warmed and on sale.
    pub redis: Option<RedisCounts>,
    pub mysql: MysqlCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisCounts {
    pub available: u64,
    pub pending: u64,
    pub booked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MysqlCounts {
    /// MySQL's own on-sale flag (set by warm).
    pub on_sale: bool,
    pub seats_booked: u64,
    pub bookings_confirmed: u64,
}

/// Every event, oldest first, with its counts in MySQL and (when warmed) Redis.
pub async fn list_events(store: &StoreArgs) -> anyhow::Result<Vec<EventListing>> {
    let redis = redis(store).await?;
    let pool = mysql(store).await?;
    let rows = db_events::list_events_with_counts(&pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let summary = redis.event_summary(&row.event.id).await?;
        out.push(EventListing {
            on_sale: summary.is_some(),
            redis: summary.map(|s| RedisCounts {
                available: s.available,
                pending: s.pending,
                booked: s.booked,
            }),
            mysql: MysqlCounts {
                on_sale: row.on_sale,
                seats_booked: row.seats_booked,
                bookings_confirmed: row.bookings_confirmed,
            },
            id: row.event.id,
            name: row.event.name,
            seats_total: row.event.seats_total,
            per_user_limit: row.event.per_user_limit,
        });
    }
    Ok(out)
}

/// Longest event name shown in the table.
const NAME_SHOWN: usize = 32;

fn render_events(events: &[EventListing]) -> String {
    if events.is_empty() {
        return "no events\n".to_owned();
    }
    let dash = || "-".to_owned();
    let mut lost = false;
    let rows: Vec<[String; 9]> = events
        .iter()
        .map(|e| {
            let name = if e.name.chars().count() > NAME_SHOWN {
                let head: String = e.name.chars().take(NAME_SHOWN - 1).collect();
                format!("{head}…")
            } else {
                e.name.clone()
            };
            let on_sale = match (e.on_sale, e.mysql.on_sale) {
                (true, _) => "yes".to_owned(),
                (false, true) => {
                    lost = true;
                    "no*".to_owned()
                }
                (false, false) => "no".to_owned(),
            };
            let r = e.redis.as_ref();
            [
                e.id.clone(),
                name,
                thousands(e.seats_total),
                on_sale,
                r.map_or_else(dash, |r| thousands(r.available)),
                r.map_or_else(dash, |r| thousands(r.pending)),
                r.map_or_else(dash, |r| thousands(r.booked)),
                thousands(e.mysql.seats_booked),
                thousands(e.mysql.bookings_confirmed),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "NAME",
            "SEATS",
            "ON SALE",
            "AVAILABLE",
            "PENDING",
            "BOOKED",
            "MYSQL BOOKED",
            "CONFIRMED",
        ],
        &rows,
        &[false, false, true, false, true, true, true, true, true],
    );
    out.push_str(
        "AVAILABLE/PENDING/BOOKED: seats in Redis (- when not warmed); \
         MYSQL BOOKED: seats booked in MySQL; CONFIRMED: confirmed bookings\n",
    );
    if lost {
        out.push_str(
            "* on sale in MySQL but not in Redis (Redis lost its data?): \
             `seatgate admin warm ID` puts it back\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_table_marks_what_redis_lost() {
        let e = EventListing {
            id: "wc".into(),
            name: "WordCamp".into(),
            seats_total: 600,
            per_user_limit: 4,
            on_sale: false,
            redis: None,
            mysql: MysqlCounts {
                on_sale: true,
                seats_booked: 3,
                bookings_confirmed: 2,
            },
        };
        let t = render_events(&[e]);
        assert!(t.contains("wc  WordCamp    600  no*"), "{t}");
        assert!(t.contains("* on sale in MySQL but not in Redis"), "{t}");
    }
}

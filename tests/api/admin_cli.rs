//! `seatgate admin`: its library functions pointed at the test's own database and Redis
//! namespace, and the real binary for the exit codes and messages an operator sees.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use seatgate::cli::admin::{self, AuditArgs, CreateEventArgs, WarmArgs};
use seatgate::cli::StoreArgs;
use seatgate::db::events::{create_event, CreateEventError, NewEvent};
use seatgate::ops::import::ImportErrors;

use crate::helpers::*;

fn store(app: &TestApp) -> StoreArgs {
    StoreArgs {
        redis_timeout_ms: 5000,
        ..StoreArgs::new(
            &app.settings.redis_url,
            &app.settings.database_url,
            &app.settings.redis_namespace,
        )
    }
}

fn from_csv(app: &TestApp, id: &str, csv: &Path, warm: bool) -> CreateEventArgs {
    CreateEventArgs {
        id: id.to_owned(),
        name: "WordCamp Test 2026".to_owned(),
        csv: Some(csv.to_owned()),
        rows: None,
        seats_per_row: None,
        per_user_limit: 2,
        hold_seconds: 0,
        hold_max_seconds: None,
        warm,
        store: store(app),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// MySQL's seats of the event in ordinal order.
async fn mysql_seats(app: &TestApp, event: &str) -> Vec<String> {
    let rows: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT seat_id FROM seats WHERE event_id = ? ORDER BY ordinal")
            .bind(event)
            .fetch_all(&app.db)
            .await
            .unwrap();
    rows.into_iter()
        .map(|r| String::from_utf8(r.0).unwrap())
        .collect()
}

async fn mysql_event_rows(app: &TestApp, event: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE id = ?")
        .bind(event)
        .fetch_one(&app.db)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn create_from_csv_then_warm_audit_repair_and_list() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    // The ordinal column orders the seats; other columns (quoted, with commas) are
    // ignored.
    let csv = write(
        dir.path(),
        "seats.csv",
        "section,seat,ordinal\n\"Floor, left\",L2,2\r\nBalcony,B1,30\nFloor,L1,1\n\"Box\",\"Box \"\"A\"\"\",4\n",
    );
    let event = app.event_id();
    let created = admin::create_event(&from_csv(&app, &event, &csv, false), false)
        .await
        .unwrap();
    assert_eq!(created.seats_total, 4);
    assert_eq!(created.warmed, None);
    assert_eq!(
        mysql_seats(&app, &event).await,
        ["L1", "L2", "Box \"A\"", "B1"]
    );
    // Created, not yet on sale.
    assert_eq!(app.event(&event).await.status(), StatusCode::NOT_FOUND);

    // The same id again is a clear error, and changes nothing.
    let err = admin::create_event(&from_csv(&app, &event, &csv, false), false)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("exists already"), "{err:#}");
    assert_eq!(mysql_seats(&app, &event).await.len(), 4);

    // Warm: the public endpoint answers with the counts.
    let warm = WarmArgs {
        id: event.clone(),
        store: store(&app),
    };
    let counts = admin::warm(&warm, false).await.unwrap();
    assert_eq!(
        (
            counts.seats_total,
            counts.available,
            counts.pending,
            counts.booked
        ),
        (4, 4, 0, 0)
    );
    let e = app.event_json(&event).await;
    assert_eq!(
        e,
        json!({"id": event, "name": "WordCamp Test 2026", "seats_total": 4, "available": 4,
               "pending": 0, "booked": 0, "per_user_limit": 2})
    );
    // Best available follows the CSV's ordinals.
    let booking = app.claim_ok(&event, "alice", &best_of(1)).await;
    app.settled(&event).await;
    assert_eq!(app.mysql_seat(&event, "L1").await, booked_row(&booking));

    // A divergence made by hand: audit finds it, and fails while it stands.
    app.redis_set_seat(&event, "B1", "booked:not-a-booking")
        .await;
    let audit = |repair| AuditArgs {
        id: event.clone(),
        repair,
        all: false,
        store: store(&app),
    };
    let found = admin::audit(&audit(false)).await.unwrap();
    assert_eq!(found.report.divergences.len(), 1);
    let d = &found.report.divergences[0];
    assert_eq!(
        (d.seat.as_str(), d.redis.as_str(), d.mysql.as_str()),
        ("B1", "booked:not-a-booking", "available")
    );
    assert_eq!(found.remaining().len(), 1);
    // --repair fixes it and a second audit agrees.
    let repaired = admin::audit(&audit(true)).await.unwrap();
    assert!(repaired.report.repaired);
    assert_eq!(repaired.after_repair.as_deref(), Some(&[][..]));
    assert!(repaired.remaining().is_empty());
    assert_eq!(app.seat_status(&event, "B1").await, "available");
    assert!(admin::audit(&audit(false))
        .await
        .unwrap()
        .report
        .divergences
        .is_empty());

    // `events` lists it with Redis's and MySQL's counts.
    let events = admin::list_events(&store(&app)).await.unwrap();
    let listed = events.iter().find(|e| e.id == event).expect("listed");
    let listed = serde_json::to_value(listed).unwrap();
    assert_eq!(
        listed,
        json!({"id": event, "name": "WordCamp Test 2026", "seats_total": 4, "per_user_limit": 2,
               "on_sale": true, "redis": {"available": 3, "pending": 0, "booked": 1},
               "mysql": {"on_sale": true, "seats_booked": 1, "bookings_confirmed": 1}})
    );
}

#[tokio::test]
async fn a_bad_csv_writes_nothing_and_names_every_error() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let long = "X".repeat(33);
    let csv = write(
        dir.path(),
        "bad.csv",
        &format!("seat,ordinal\nA1,1\nA2,2\nA1,3\n{long},4\nA5,five\nA6,6\n"),
    );
    let event = app.event_id();
    let err = admin::create_event(&from_csv(&app, &event, &csv, true), false)
        .await
        .unwrap_err();
    let errors = err.downcast::<ImportErrors>().expect("import errors");
    let source = csv.display().to_string();
    assert_eq!(
        errors.lines(),
        [
            format!("{source}:4:1: duplicate seat \"A1\" (first on line 2)"),
            format!("{source}:5:1: seat id \"{long}\" is longer than 32 characters (33)"),
            format!("{source}:6:4: ordinal \"five\" is not an integer"),
        ]
    );
    assert_eq!(mysql_event_rows(&app, &event).await, 0);
    assert!(mysql_seats(&app, &event).await.is_empty());
    assert_eq!(app.event(&event).await.status(), StatusCode::NOT_FOUND);
}

/// What makes `create-event` all or nothing: one transaction. A seat MySQL refuses in
/// the second insert chunk (`"S1 "` is `"S1"` to the PAD SPACE collation; the CSV
/// parser refuses it up front) leaves neither the event nor the first chunk's seats.
#[tokio::test]
async fn a_failure_in_mysql_mid_import_leaves_nothing() {
    let app = spawn_app().await;
    let mut seats: Vec<String> = (1..=1500).map(|i| format!("S{i}")).collect();
    seats.push("S1 ".to_owned());
    let event = app.event_id();
    let result = create_event(
        &app.db,
        &NewEvent {
            id: &event,
            name: "half",
            seats: &seats,
            per_user_limit: 4,
            hold_seconds: 0,
            hold_max_seconds: 0,
        },
    )
    .await;
    assert!(matches!(result, Err(CreateEventError::Db(_))), "{result:?}");
    assert_eq!(mysql_event_rows(&app, &event).await, 0);
    assert!(mysql_seats(&app, &event).await.is_empty());
}

#[tokio::test]
async fn a_10000_seat_csv_imports_and_warms_in_one_command() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("seat_id,section\n");
    for i in 0..10_000 {
        let _ = writeln!(
            text,
            "{}{},hall",
            (b'A' + (i / 500) as u8) as char,
            i % 500 + 1
        );
    }
    let csv = write(dir.path(), "big.csv", &text);
    let event = app.event_id();
    let created = admin::create_event(&from_csv(&app, &event, &csv, true), false)
        .await
        .unwrap();
    assert_eq!(created.seats_total, 10_000);
    let counts = created.warmed.expect("warmed");
    assert_eq!((counts.seats_total, counts.available), (10_000, 10_000));
    let seats = mysql_seats(&app, &event).await;
    assert_eq!(seats.len(), 10_000);
    assert_eq!(
        (seats[0].as_str(), seats[499].as_str(), seats[500].as_str()),
        ("A1", "A500", "B1")
    );
    assert_eq!(seats[9_999], "T500");
    let e = app.event_json(&event).await;
    assert_eq!(
        (e["seats_total"].clone(), e["available"].clone()),
        (json!(10_000), json!(10_000))
    );
}

#[tokio::test]
async fn a_row_pattern_makes_row_major_seats() {
    let app = spawn_app().await;
    let event = app.event_id();
    let args = CreateEventArgs {
        id: event.clone(),
        name: "Pattern".to_owned(),
        csv: None,
        rows: Some("A-C".to_owned()),
        seats_per_row: Some(2),
        per_user_limit: 4,
        hold_seconds: 0,
        hold_max_seconds: None,
        warm: true,
        store: store(&app),
    };
    let created = admin::create_event(&args, false).await.unwrap();
    assert_eq!(created.warmed.map(|c| c.available), Some(6));
    assert_eq!(
        mysql_seats(&app, &event).await,
        ["A1", "A2", "B1", "B2", "C1", "C2"]
    );
}

/// The real binary: exit codes, and messages with file:line:column.
async fn seatgate(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .args(args)
        .env("SEATGATE_REDIS_URL", &app.settings.redis_url)
        .env("SEATGATE_DATABASE_URL", &app.settings.database_url)
        .env("SEATGATE_REDIS_NAMESPACE", &app.settings.redis_namespace)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_binary_exits_non_zero_with_line_and_column() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.csv", "seat\nA1\nA1\n\"A3\n");
    let event = app.event_id();
    let out = seatgate(
        &app,
        &[
            "admin",
            "create-event",
            "--id",
            &event,
            "--name",
            "Bad",
            "--csv",
            bad.to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("bad.csv:3:1: duplicate seat \"A1\" (first on line 2)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.csv:4:1: bad quoting: this quoted field is never closed"),
        "{stderr}"
    );
    assert!(stderr.contains("2 errors; nothing was written"), "{stderr}");
    assert_eq!(mysql_event_rows(&app, &event).await, 0);

    // A good one, by pattern, warmed; then audit (failing while inconsistent) and events.
    let out = seatgate(
        &app,
        &[
            "admin",
            "create-event",
            "--id",
            &event,
            "--name",
            "Good",
            "--rows",
            "A,B",
            "--seats-per-row",
            "3",
            "--warm",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("6 seats, 6 available, 0 pending, 0 booked"),
        "{stdout}"
    );

    app.redis_set_seat(&event, "A2", "booked:bogus").await;
    let out = seatgate(&app, &["admin", "audit", &event]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("A2    booked:bogus  available"), "{stdout}");
    let out = seatgate(&app, &["admin", "audit", &event, "--repair"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = seatgate(&app, &["admin", "events", "--json"]).await;
    assert!(out.status.success());
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == event.as_str())
        .expect("listed");
    assert_eq!(listed["redis"]["available"], 6);
    let out = seatgate(&app, &["admin", "events"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(&event), "{table}");
}

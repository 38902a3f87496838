//! One lock order on seat rows for every MySQL writer and reader: warm and audit against
//! a writer that locks seats in seat id order (as the reconciler and cancel do), and a
//! cancel that loses a deadlock anyway is retried as a whole transaction.
//!
//! The events here list their seats so that best-available (ordinal) order is the
//! reverse of seat id order: a reader that locked in ordinal order would meet the
//! writer head on.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{MySqlConnection, Row};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Ordinal order S3, S2, S1: the reverse of seat id order.
fn reversed_seats() -> Vec<String> {
    ["S3", "S2", "S1"].iter().map(|s| s.to_string()).collect()
}

/// Locks one seat row `FOR UPDATE` on `conn` (inside the caller's transaction).
async fn lock_seat(conn: &mut MySqlConnection, event: &str, seat: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT seat_id FROM seats WHERE event_id = ? AND seat_id = ? FOR UPDATE")
        .bind(event)
        .bind(seat)
        .fetch_one(conn)
        .await
        .map(|_| ())
}

/// Lets one test at a time poll `INNODB_TRX` (see [`someone_waits_for_a_lock`]).
static INNODB_TRX_POLL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until some transaction of this test's database waits for a row lock.
///
/// Polls every 150 ms, not faster: InnoDB refreshes the snapshot behind
/// `information_schema.INNODB_TRX` only when it has not been read for 100 ms, so a
/// tighter loop would keep reading the same stale snapshot. For the same reason only
/// one test polls at a time: two polling side by side read the table less than 100 ms
/// apart between them, and both would read one stale snapshot until their deadlines.
async fn someone_waits_for_a_lock(app: &TestApp) {
    let _alone = INNODB_TRX_POLL.lock().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX t \
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE p.DB = ? AND t.trx_state = 'LOCK WAIT'",
        )
        .bind(app.db_name())
        .fetch_one(&app.db)
        .await
        .unwrap()
        .get("n");
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until a transaction waits for a seat lock"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The writer takes the lowest seat id, `reader` starts and blocks on it, then the
/// writer takes the highest seat id too. Readers that lock in seat id order wait for
/// the writer and nobody deadlocks; a reader that locked in ordinal order (S3, S2
/// first) would hold S3 and make the writer's second lock a deadlock (1213).
async fn reader_against_a_writer<F, Fut>(app: &TestApp, event: &str, reader: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = StatusCode> + Send + 'static,
{
    let mut writer = app.db.begin().await.unwrap();
    lock_seat(&mut writer, event, "S1").await.unwrap();
    let reader = tokio::spawn(reader());
    someone_waits_for_a_lock(app).await;
    lock_seat(&mut writer, event, "S3")
        .await
        .expect("the writer's second seat lock is granted: no deadlock");
    writer.commit().await.unwrap();
    assert_eq!(reader.await.unwrap(), StatusCode::OK);
}

/// An admin request as the reader of [`reader_against_a_writer`]: its status code.
fn admin_request(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = StatusCode> + Send>> {
    let request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(app.admin());
    move || Box::pin(async move { request.send().await.unwrap().status() })
}

#[tokio::test]
async fn warm_during_a_drop_takes_seat_locks_in_seat_id_order() {
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let event = app.event_with(&reversed_seats(), 4).await;
    let warm = admin_request(
        &app,
        reqwest::Method::POST,
        &format!("/v1/admin/events/{event}/warm"),
    );
    reader_against_a_writer(&app, &event, warm).await;
    assert_eq!(app.seat_order(&event).await, reversed_seats());
}

#[tokio::test]
async fn audit_during_a_drop_takes_seat_locks_in_seat_id_order() {
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let event = app.event_with(&reversed_seats(), 4).await;
    let audit = admin_request(
        &app,
        reqwest::Method::GET,
        &format!("/v1/admin/events/{event}/audit?repair=true"),
    );
    reader_against_a_writer(&app, &event, audit).await;
    assert_eq!(app.audit(&event, false).await["consistent"], true);
}

#[tokio::test]
async fn a_cancel_that_loses_a_deadlock_is_retried_as_a_whole_transaction() {
    let app = spawn_app().await;
    let event = app.event_with(&reversed_seats(), 4).await;
    let id = app
        .claim_ok(&event, "alice", &json!({"seats": ["S1", "S3"]}))
        .await;
    app.settled(&event).await;

    // A transaction that locks against the rule (S3 before S1), made heavy with undo
    // so that InnoDB picks the cancel, not it, as the deadlock's victim.
    sqlx::query("CREATE TABLE ballast (id INT PRIMARY KEY)")
        .execute(&app.db)
        .await
        .unwrap();
    let mut rogue = app.db.begin().await.unwrap();
    let rows = (0..200)
        .map(|i| format!("({i})"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!("INSERT INTO ballast (id) VALUES {rows}"))
        .execute(&mut *rogue)
        .await
        .unwrap();
    lock_seat(&mut rogue, &event, "S3").await.unwrap();

    // The cancel locks S1, then waits for S3.
    let (client, url, token) = (
        app.client.clone(),
        app.url(&format!("/v1/events/{event}/bookings/{id}")),
        app.user_token("alice"),
    );
    let cancel = tokio::spawn(async move {
        let r = client.delete(url).bearer_auth(token).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    });
    someone_waits_for_a_lock(&app).await;
    // S1 closes the cycle: the cancel is rolled back (1213) and this lock is granted.
    lock_seat(&mut rogue, &event, "S1").await.unwrap();
    rogue.commit().await.unwrap();

    let (status, body) = cancel.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.mysql_booking(&id).await.as_deref(), Some("cancelled"));
    assert_eq!(
        app.mysql_seat(&event, "S1").await,
        ("available".into(), None)
    );
    assert_eq!(app.seat_status(&event, "S3").await, "available");
}

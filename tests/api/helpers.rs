//! `spawn_app()` and a `TestApp` with one method per endpoint.
//!
//! Each test gets its own MySQL database (`sg_test_<id>`) and its own Redis key
//! namespace (`sgt<id>:`), both removed when the `TestApp` is dropped, also when the
//! test panics. The machine's shared Redis and MariaDB are used, never flushed.
//!
//! One file because it is the one place every test module reaches for set-up and
//! requests: the app and its scratch stores first, then small builders and checks of
//! request and answer bodies, then the `TestApp` methods, then the clean-up.

use futures::stream::{self, StreamExt};
use redis::AsyncCommands;
use reqwest::{Method, Response, StatusCode};
use seatgate::claims::RedisStore;
use seatgate::config::{Secret, Settings};
use seatgate::reconciler::{Reconciler, ReconcilerConfig};
use seatgate::startup::Application;
use serde_json::{json, Value};
use sqlx::MySqlPool;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The Redis the gateways of the tests run on: the machine's, or what
/// `SEATGATE_TEST_REDIS_URL` names (`scripts/test_cluster.sh` runs the same test bodies
/// on a private Redis Cluster by setting it to the cluster's seeds).
pub fn test_redis_url() -> String {
    std::env::var("SEATGATE_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_URL.to_owned())
}
pub const MYSQL_SERVER: &str = "mysql://root@127.0.0.1:3306";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub jwt_secret: Secret,
    pub db: MySqlPool,
    pub redis: RedisStore,
    pub settings: Settings,
    /// The gateway's live seat map watchers.
    pub live: seatgate::live::LiveHub,
    /// The claims' replication rounds (`SEATGATE_REDIS_MIN_REPLICAS` >= 1).
    pub group_commit: Option<seatgate::claims::replication::GroupCommit>,
    db_name: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A gateway with the reconciler running.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A gateway whose settings the test adjusts first (e.g. `s.reconciler = false`).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    // Logs only on request (RUST_LOG=...), to keep test output readable.
    if std::env::var_os("RUST_LOG").is_some() {
        seatgate::telemetry::init();
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    let id = &id[id.len() - 12..];
    let db_name = format!("sg_test_{id}");
    let mut settings = Settings::local(
        &format!("admin-token-{id}"),
        &format!("jwt-secret-of-this-test-{id}"),
    );
    settings.http_addr = "127.0.0.1:0".into();
    settings.redis_url = test_redis_url();
    settings.database_url = format!("{MYSQL_SERVER}/{db_name}");
    settings.redis_namespace = format!("sgt{id}:");
    settings.db_max_connections = 16;
    // The tests share two cores with each other: a Redis call can take longer than a
    // production bound while a storm test runs beside it. Tests of the bound itself
    // set their own.
    settings.redis_timeout = Duration::from_secs(5);
    // Tests read the seat map right after changing it; the snapshot's interval has a
    // test of its own.
    settings.seat_map_max_age = Duration::ZERO;
    // Tests make many claims per user on purpose; the limit has a test of its own.
    settings.user_rate = 0.0;
    adjust(&mut settings);

    let app = Application::build(settings.clone())
        .await
        .expect("the application builds (are Redis and MariaDB up?)");
    let base = format!("http://{}", app.local_addr());
    let db = app.state().db.clone();
    let redis = app.state().redis.clone();
    let live = app.state().live.clone();
    let group_commit = app.state().group_commit.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        admin_token: settings.admin_token.expose().to_owned(),
        jwt_secret: settings.jwt_secret.clone(),
        db,
        redis,
        settings,
        live,
        group_commit,
        db_name,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// Another gateway process on a [`TestApp`]'s database and Redis namespace, as a second
/// instance behind the same load balancer (see [`TestApp::spawn_peer`]). It stops when
/// dropped; the stores are the `TestApp`'s to clean up.
pub struct Peer {
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A gateway with the reconciler running, and a warmed event of `seats` seats (`S0001`
/// on, per-user limit 4).
pub async fn spawn_app_with_event(seats: usize) -> (TestApp, String) {
    let app = spawn_app().await;
    let event = app.event_with(&seat_names(seats), 4).await;
    (app, event)
}

/// [`spawn_app_with_event`] with the gateway's reconciler off: claims stay pending until
/// the test runs a [`TestApp::reconciler`] itself.
pub async fn spawn_stepped_app_with_event(seats: usize) -> (TestApp, String) {
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let event = app.event_with(&seat_names(seats), 4).await;
    (app, event)
}

/// A MySQL database of its own, beside a `TestApp`'s: another deployment's. Dropped
/// with this guard, also when the test panics.
pub struct ScratchDatabase {
    pub name: String,
    /// `mysql://…/<name>` (the database is created by whoever connects first).
    pub url: String,
}

impl ScratchDatabase {
    pub fn new() -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let name = format!("sg_test_{}", &id[id.len() - 12..]);
        Self {
            url: format!("{MYSQL_SERVER}/{name}"),
            name,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_aside(async move { drop_database(&name).await });
    }
}

/// Runs `cleanup` to its end on a runtime of its own, in a thread of its own: `Drop`
/// cannot await, and it also runs while a panicking test's runtime is blocked.
pub fn block_on_aside(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(cleanup);
    })
    .join();
}

/// A private redis-server for tests that must do what the shared one must not suffer
/// (SCRIPT FLUSH, kills). `None` when redis-server is not installed and the test is to
/// be skipped (see `common`).
pub async fn private_redis() -> Option<seatgate_sandbox::PrivateRedis> {
    if !crate::common::redis_server_installed() {
        return None;
    }
    Some(
        seatgate_sandbox::PrivateRedis::start(false)
            .await
            .expect("a private redis-server starts"),
    )
}

/// A gateway on a private redis-server of its own (`adjust` tunes its settings
/// further), for tests that kill, restart or reconfigure Redis. `None` when the test is
/// to be skipped (see [`private_redis`]).
pub async fn spawn_app_on_private_redis(
    adjust: impl FnOnce(&mut Settings),
) -> Option<(seatgate_sandbox::PrivateRedis, TestApp)> {
    let redis = private_redis().await?;
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis_url = url;
        adjust(s);
    })
    .await;
    Some((redis, app))
}

/// A connection of its own to the Redis at `url`, for what the test does behind the
/// gateway's back. Replies may take up to 10 s (redis-rs's default gives up after
/// 500 ms, which a `SAVE` or a `WAIT` on a loaded machine can pass).
pub async fn raw_redis(url: &str) -> redis::aio::MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn seat_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("S{i:04}")).collect()
}

/// Owned seat ids, for events whose seat names (and so their order) matter.
pub fn seat_ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// The seat map listing `seats` in this order with these statuses, as
/// [`TestApp::seat_statuses`] reads it.
pub fn listed(seats: &[String], statuses: &[&str]) -> Vec<(String, String)> {
    assert_eq!(seats.len(), statuses.len(), "a status for each seat");
    let statuses = statuses.iter().map(|s| s.to_string());
    seats.iter().cloned().zip(statuses).collect()
}

/// A claim body that picks its seats.
pub fn pick(ids: &[&str]) -> Value {
    json!({ "seats": ids })
}

/// A best-available claim body.
pub fn best_of(n: u32) -> Value {
    json!({ "quantity": n })
}

/// MySQL's row of a free seat, as [`TestApp::mysql_seat`] reads it.
pub fn free_row() -> (String, Option<String>) {
    ("available".to_owned(), None)
}

/// MySQL's row of a seat that `booking` holds, as [`TestApp::mysql_seat`] reads it.
pub fn booked_row(booking: &str) -> (String, Option<String>) {
    ("booked".to_owned(), Some(booking.to_owned()))
}

/// `(available, pending, booked)` of an event summary or a warm report.
pub fn counts(v: &Value) -> (u64, u64, u64) {
    let n = |field: &str| {
        v[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no count {field} in {v}"))
    };
    (n("available"), n("pending"), n("booked"))
}

/// Asserts an error answer's status and JSON error code; returns its body.
pub async fn expect_error(r: Response, status: StatusCode, code: &str) -> Value {
    let body = expect_json(r, status).await;
    assert_eq!(body["error"], code, "{body}");
    body
}

/// Asserts a response's status (showing the body when it differs) and returns its JSON
/// body.
pub async fn expect_json(r: Response, status: StatusCode) -> Value {
    let got = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

impl TestApp {
    /// The name of this test's MySQL database.
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn user_token(&self, user: &str) -> String {
        seatgate::api::auth::sign_user_token(&self.jwt_secret, user, 3600)
    }

    pub fn admin(&self) -> String {
        self.admin_token.clone()
    }

    /// A fresh event id, unique across tests.
    pub fn event_id(&self) -> String {
        let id = uuid::Uuid::now_v7().simple().to_string();
        format!("ev-{}", &id[id.len() - 12..])
    }

    /// A GET of `path` without credentials.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Sends `method path` with `token` as its bearer, and `body` as JSON if given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.unwrap()
    }

    /// GETs `path` and expects a 200 whose content type starts with `content_type`.
    pub async fn get_ok(&self, path: &str, content_type: &str) -> Response {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let got = r.headers()["content-type"].to_str().unwrap();
        assert!(got.starts_with(content_type), "{path}: {got}");
        r
    }

    pub async fn create_event(&self, body: &Value) -> Response {
        let admin = &self.admin_token;
        self.call(Method::POST, "/v1/admin/events", admin, Some(body))
            .await
    }

    pub async fn warm(&self, event: &str) -> Response {
        let path = format!("/v1/admin/events/{event}/warm");
        self.call(Method::POST, &path, &self.admin_token, None)
            .await
    }

    /// Creates and warms an event with the given seats; returns its id.
    pub async fn event_with(&self, seats: &[String], per_user_limit: u32) -> String {
        let id = self.event_id();
        self.event_named(&id, seats, per_user_limit).await;
        id
    }

    /// Creates and warms the event `id` (an id chosen by the test: on a cluster, the
    /// id places the event on a shard).
    pub async fn event_named(&self, id: &str, seats: &[String], per_user_limit: u32) {
        let r = self
            .create_event(&json!({"id": id, "name": "Test event", "seats": seats, "per_user_limit": per_user_limit}))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let r = self.warm(id).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }

    /// A second gateway with this one's settings (its own port), on the same MySQL
    /// database and Redis namespace.
    pub async fn spawn_peer(&self) -> Peer {
        let app = Application::build(self.settings.clone())
            .await
            .expect("a second gateway builds on the same stores");
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Peer {
            base,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub async fn claim(
        &self,
        event: &str,
        user: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Response {
        self.claim_at(&self.base, event, user, body, key).await
    }

    /// [`TestApp::claim`] sent to the gateway at `base` (this one's, or a [`Peer`]'s).
    pub async fn claim_at(
        &self,
        base: &str,
        event: &str,
        user: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Response {
        let url = format!("{base}/v1/events/{event}/bookings");
        let mut req = self.client.post(url).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.bearer_auth(self.user_token(user)).send().await.unwrap()
    }

    /// Claims as a well-behaved client does in a drop: with an `Idempotency-Key`, and
    /// the same request again after a 503 (whose outcome is unknown; the retry with the
    /// same key tells). Storm tests use it so that a loaded machine, where a Redis
    /// call may pass its bound, slows them down instead of failing them.
    pub async fn claim_retrying(&self, event: &str, user: &str, body: &Value) -> Response {
        let key = uuid::Uuid::now_v7().to_string();
        self.claim_retrying_with_key(event, user, body, &key).await
    }

    /// [`TestApp::claim_retrying`] with the caller's `Idempotency-Key` (to find again
    /// what earlier requests with it did). Every 503 must carry `Retry-After`.
    pub async fn claim_retrying_with_key(
        &self,
        event: &str,
        user: &str,
        body: &Value,
        key: &str,
    ) -> Response {
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.claim(event, user, body, Some(key)).await;
            if r.status() != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > give_up {
                return r;
            }
            assert!(
                r.headers().contains_key("retry-after"),
                "a 503 without Retry-After"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends every `(user, body)` claim with `in_flight` at once, each as
    /// [`TestApp::claim_retrying`] sends it; returns the answers (status, JSON body) in
    /// the order of `claims`.
    pub async fn claim_storm(
        &self,
        event: &str,
        claims: Vec<(String, Value)>,
        in_flight: usize,
    ) -> Vec<(StatusCode, Value)> {
        let mut answers: Vec<(usize, StatusCode, Value)> =
            stream::iter(claims.into_iter().enumerate())
                .map(|(i, (user, body))| async move {
                    let r = self.claim_retrying(event, &user, &body).await;
                    (i, r.status(), r.json::<Value>().await.unwrap())
                })
                .buffer_unordered(in_flight)
                .collect()
                .await;
        answers.sort_by_key(|(i, _, _)| *i);
        answers.into_iter().map(|(_, s, b)| (s, b)).collect()
    }

    /// Claims and expects a 202; returns the booking id.
    pub async fn claim_ok(&self, event: &str, user: &str, body: &Value) -> String {
        let r = self.claim(event, user, body, None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: Value = r.json().await.unwrap();
        body["booking_id"].as_str().unwrap().to_owned()
    }

    /// Claims the named seats and expects a 202; returns the booking id.
    pub async fn claim_seats(&self, event: &str, user: &str, ids: &[&str]) -> String {
        self.claim_ok(event, user, &pick(ids)).await
    }

    /// A best-available claim of `n` by `user` (202 expected): its booking id and seats.
    pub async fn claim_best(&self, event: &str, user: &str, n: u32) -> (String, Value) {
        let r = self.claim(event, user, &best_of(n), None).await;
        let body = expect_json(r, StatusCode::ACCEPTED).await;
        (
            body["booking_id"].as_str().unwrap().to_owned(),
            body["seats"].clone(),
        )
    }

    /// The booking as `token`'s holder reads it (200 expected).
    pub async fn booking_json(&self, event: &str, booking: &str, token: &str) -> Value {
        expect_json(
            self.get_booking(event, booking, token).await,
            StatusCode::OK,
        )
        .await
    }

    pub async fn get_booking(&self, event: &str, booking: &str, token: &str) -> Response {
        let path = format!("/v1/events/{event}/bookings/{booking}");
        self.call(Method::GET, &path, token, None).await
    }

    pub async fn cancel(&self, event: &str, booking: &str, token: &str) -> Response {
        let path = format!("/v1/events/{event}/bookings/{booking}");
        self.call(Method::DELETE, &path, token, None).await
    }

    pub async fn event(&self, event: &str) -> Response {
        self.get(&format!("/v1/events/{event}")).await
    }

    pub async fn event_json(&self, event: &str) -> Value {
        let r = self.event(event).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Seat id → public status.
    pub async fn seat_statuses(&self, event: &str) -> Vec<(String, String)> {
        let r = self.get(&format!("/v1/events/{event}/seats")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_owned(),
                    s["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub async fn seat_status(&self, event: &str, seat: &str) -> String {
        self.seat_statuses(event)
            .await
            .into_iter()
            .find(|(id, _)| id == seat)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("seat {seat} not listed"))
    }

    pub async fn audit(&self, event: &str, repair: bool) -> Value {
        let path = format!("/v1/admin/events/{event}/audit?repair={repair}");
        let r = self.call(Method::GET, &path, &self.admin_token, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Waits until no claim of the event is pending (the reconciler caught up).
    pub async fn settled(&self, event: &str) -> Value {
        eventually(
            "every claim is settled",
            Duration::from_secs(60),
            || async {
                let e = self.event_json(event).await;
                (e["pending"] == 0).then_some(e)
            },
        )
        .await
    }

    /// MySQL's view of a seat: (status, booking id).
    pub async fn mysql_seat(&self, event: &str, seat: &str) -> (String, Option<String>) {
        let row: (Vec<u8>, Option<Vec<u8>>) = sqlx::query_as(
            "SELECT status, booking_id FROM seats WHERE event_id = ? AND seat_id = ?",
        )
        .bind(event)
        .bind(seat)
        .fetch_one(&self.db)
        .await
        .unwrap();
        (
            String::from_utf8(row.0).unwrap(),
            row.1.map(|b| String::from_utf8(b).unwrap()),
        )
    }

    /// Writes a confirmed booking of `seat` straight into MySQL, behind the gateway's
    /// back (a booking made elsewhere, or a COMMIT whose confirm never reached Redis).
    pub async fn mysql_book(&self, event: &str, seat: &str, booking: &str, user: &str) {
        let insert = sqlx::query(
            "INSERT INTO bookings (id, event_id, user_id, status, seats) \
             VALUES (?, ?, ?, 'confirmed', JSON_ARRAY(?))",
        )
        .bind(booking)
        .bind(event)
        .bind(user)
        .bind(seat);
        let update = sqlx::query(
            "UPDATE seats SET status = 'booked', booking_id = ? WHERE event_id = ? AND seat_id = ?",
        )
        .bind(booking)
        .bind(event)
        .bind(seat);
        for statement in [insert, update] {
            statement.execute(&self.db).await.unwrap();
        }
    }

    /// Another transaction holding every seat row of the event (`FOR UPDATE`) until it
    /// is rolled back or dropped: MySQL writes of those seats wait behind it.
    pub async fn lock_seats(&self, event: &str) -> sqlx::Transaction<'static, sqlx::MySql> {
        let mut blocker = self.db.begin().await.unwrap();
        sqlx::query("SELECT seat_id FROM seats WHERE event_id = ? FOR UPDATE")
            .bind(event)
            .fetch_all(&mut *blocker)
            .await
            .unwrap();
        blocker
    }

    /// MySQL's status of a booking, if it has the booking.
    pub async fn mysql_booking(&self, booking: &str) -> Option<String> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT status FROM bookings WHERE id = ?")
            .bind(booking)
            .fetch_optional(&self.db)
            .await
            .unwrap();
        row.map(|r| String::from_utf8(r.0).unwrap())
    }

    /// Confirmed bookings of the event in MySQL.
    pub async fn mysql_confirmed(&self, event: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM bookings WHERE event_id = ? AND status = 'confirmed'",
        )
        .bind(event)
        .fetch_one(&self.db)
        .await
        .unwrap();
        n
    }

    /// A reconciler on this gateway's Redis and MySQL, with the default tuning, for
    /// tests that drive it themselves (the gateway's own runs unless turned off).
    pub fn reconciler(&self) -> Reconciler {
        Reconciler::new(
            self.redis.clone(),
            self.db.clone(),
            ReconcilerConfig::default(),
        )
        .unwrap()
    }

    /// The seat ids of the public seat map, in its (best-available) order.
    pub async fn seat_order(&self, event: &str) -> Vec<String> {
        self.seat_statuses(event)
            .await
            .into_iter()
            .map(|(seat, _)| seat)
            .collect()
    }

    /// Shuts the gateway down gracefully (as on SIGTERM) and waits until it stopped:
    /// requests in flight finish, the reconciler finishes its step.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Sets a seat's Redis state behind the API's back (to inject divergences).
    pub async fn redis_set_seat(&self, event: &str, seat: &str, state: &str) {
        let mut conn = self.redis.connection();
        let _: i64 = conn
            .hset(self.redis.keys(event).seats(), seat, state)
            .await
            .unwrap();
    }
}

/// Deletes the keys matching `pattern`. SCAN with a large COUNT: the shared Redis may
/// hold many other keys, and the default COUNT of 10 would take a round trip per 10.
/// Of several comma-separated nodes (a cluster's primaries), on each.
pub async fn delete_keys(url: &str, pattern: &str) {
    for node in url.split(',') {
        delete_keys_on_node(node.trim(), pattern).await;
    }
}

/// [`delete_keys`] on one node, one key per `DEL` (a cluster node refuses a `DEL` of
/// keys in several slots).
async fn delete_keys_on_node(url: &str, pattern: &str) {
    if url.starts_with("redis+sentinel://") {
        return;
    }
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let page: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await;
        let Ok((next, keys)) = page else {
            return;
        };
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.del(key).ignore();
            }
            let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Drops a test database. The test's own gateway may have died (panic, abort) with a
/// transaction open, and this runs while that runtime is blocked in `Drop`: its
/// connections are killed first, so DROP DATABASE never waits on their metadata locks.
async fn drop_database(db_name: &str) {
    use sqlx::{Connection, Row};
    let Ok(mut conn) = sqlx::MySqlConnection::connect(MYSQL_SERVER).await else {
        return;
    };
    let _ = sqlx::query("SET SESSION lock_wait_timeout = 10")
        .execute(&mut conn)
        .await;
    let ids = sqlx::query(
        "SELECT CAST(id AS UNSIGNED) AS id FROM information_schema.processlist WHERE db = ?",
    )
    .bind(db_name)
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for row in ids {
        if let Ok(id) = row.try_get::<u64, _>("id") {
            let _ = sqlx::query(&format!("KILL {id}")).execute(&mut conn).await;
        }
    }
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{db_name}`"))
        .execute(&mut conn)
        .await;
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        let db_name = self.db_name.clone();
        let namespace = self.settings.redis_namespace.clone();
        let redis_url = self.settings.redis_url.clone();
        block_on_aside(async move {
            drop_database(&db_name).await;
            delete_keys(&redis_url, &format!("{namespace}*")).await;
        });
    }
}

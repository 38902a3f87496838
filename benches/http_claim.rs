//! The HTTP claim path, in process: the whole gateway (`Application::build` +
//! `run_until`, reconciler included) on 127.0.0.1, driven by a reqwest client on the
//! same tokio runtime, against the machine's Redis and MariaDB.
//!
//! Sequential (one request at a time, over a kept-alive connection):
//! - `healthz`: `GET /healthz`, the HTTP ceiling (routing, middleware, JSON, no I/O).
//! - `claim_hot_seat`: `POST /v1/events/{id}/bookings` `{"seats":["HOT"]}` for a seat
//!   that is already taken, so 409 `seats_unavailable`: JWT check, body parse, one
//!   `EVALSHA claim.lua`, error body. What almost every request of a drop gets.
//!
//! Concurrent (256 requests in flight at once; throughput in requests per second):
//! - `healthz_x256`, `claim_hot_seat_x256`.
//!
//! Own database `sg_bench_<id>` and key namespace `sgbench<uuid>:`, both removed at the
//! end. Without Redis or MySQL the suite prints `skipped: …` and exits 0. The per-user
//! rate limit is off (`user_rate = 0`), since one user sends every request.
//!
//! Run: `cargo bench --bench http_claim`

mod common;

use criterion::{Criterion, Throughput};
use futures::future::join_all;
use reqwest::{header, Client, StatusCode};
use seatgate::claims::RedisStore;
use seatgate::config::Settings;
use seatgate::startup::Application;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// Requests in flight at once in the concurrent variants.
const IN_FLIGHT: usize = 256;
/// The seat every claim asks for (taken before the benchmarks start).
const HOT_SEAT: &str = "HOT";
const CLAIM_BODY: &str = r#"{"seats":["HOT"]}"#;

fn main() -> ExitCode {
    let rt = common::runtime();
    let namespace = common::namespace();
    if let Err(reason) = rt.block_on(probe(&namespace)) {
        println!("skipped: http_claim benchmarks need Redis and MySQL: {reason}");
        return ExitCode::SUCCESS;
    }

    let id = common::unique_id();
    let db_name = format!("sg_bench_{id}");
    // Drops the database and deletes the keys at the end, also if a benchmark panics.
    let _cleanup = common::Cleanup {
        label: "http_claim",
        namespace: namespace.clone(),
        database: Some(db_name.clone()),
    };

    let mut settings = Settings::local(
        &format!("admin-token-{id}"),
        &format!("jwt-secret-of-this-test-{id}"),
    );
    settings.http_addr = "127.0.0.1:0".into();
    settings.redis_url = common::redis_url();
    settings.database_url = format!("{}/{db_name}", common::mysql_server());
    settings.redis_namespace = namespace;
    settings.db_max_connections = 8;
    settings.user_rate = 0.0;

    let gateway = match rt.block_on(Gateway::start(settings)) {
        Ok(gateway) => gateway,
        Err(err) => {
            eprintln!("http_claim: starting the gateway failed: {err:#}");
            return ExitCode::FAILURE;
        }
    };

    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    sequential(&mut criterion, &rt, &gateway);
    concurrent(&mut criterion, &rt, &gateway);
    criterion.final_summary();

    if let Err(err) = rt.block_on(gateway.stop()) {
        eprintln!("http_claim: the gateway did not stop cleanly: {err:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `Err(reason)` unless both Redis and MySQL answer within a short timeout.
async fn probe(namespace: &str) -> Result<(), String> {
    let url = common::redis_url();
    match tokio::time::timeout(
        common::PROBE_TIMEOUT,
        RedisStore::connect(&url, namespace, Duration::from_secs(1)),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => return Err(format!("Redis at {url} refused: {err:#}")),
        Err(_) => {
            return Err(format!(
                "Redis at {url} did not answer within {:?}",
                common::PROBE_TIMEOUT
            ))
        }
    }
    common::probe_mysql().await
}

/// The running gateway, with an event whose seat `HOT` is taken.
struct Gateway {
    client: Client,
    healthz: String,
    claim: String,
    user_token: String,
    shutdown: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    async fn start(settings: Settings) -> anyhow::Result<Self> {
        let app = Application::build(settings.clone()).await?;
        let base = format!("http://{}", app.local_addr());
        let (shutdown, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let client = Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(30))
            .build()?;
        let admin = settings.admin_token.expose();

        let event = format!("bench-{}", common::unique_id());
        let mut seats = vec![HOT_SEAT.to_owned()];
        seats.extend((1..100).map(|i| format!("S{i:04}")));
        let created = client
            .post(format!("{base}/v1/admin/events"))
            .bearer_auth(admin)
            .json(&json!({"id": event, "name": "Bench event", "seats": seats, "per_user_limit": 4}))
            .send()
            .await?;
        anyhow::ensure!(
            created.status() == StatusCode::CREATED,
            "create event: {} {}",
            created.status(),
            created.text().await?
        );
        let warmed = client
            .post(format!("{base}/v1/admin/events/{event}/warm"))
            .bearer_auth(admin)
            .send()
            .await?;
        anyhow::ensure!(
            warmed.status() == StatusCode::OK,
            "warm: {} {}",
            warmed.status(),
            warmed.text().await?
        );

        let claim = format!("{base}/v1/events/{event}/bookings");
        let sign =
            |user: &str| seatgate::api::auth::sign_user_token(&settings.jwt_secret, user, 3600);
        let gateway = Self {
            client,
            healthz: format!("{base}/healthz"),
            claim,
            user_token: sign("fan"),
            shutdown,
            server,
        };
        // The first claim takes the seat; every later one is a 409.
        let first = gateway
            .client
            .post(&gateway.claim)
            .bearer_auth(sign("holder"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(CLAIM_BODY)
            .send()
            .await?;
        anyhow::ensure!(
            first.status() == StatusCode::ACCEPTED,
            "first claim: {} {}",
            first.status(),
            first.text().await?
        );
        let second = gateway.hot_seat_request().send().await?;
        let status = second.status();
        let body: Value = second.json().await?;
        anyhow::ensure!(
            status == StatusCode::CONFLICT
                && body["error"] == "seats_unavailable"
                && body["seats"] == json!([HOT_SEAT]),
            "second claim: {status} {body}"
        );
        Ok(gateway)
    }

    fn hot_seat_request(&self) -> reqwest::RequestBuilder {
        self.client
            .post(&self.claim)
            .bearer_auth(&self.user_token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(CLAIM_BODY)
    }

    /// Sends the request and reads the whole body (so the connection is reused).
    async fn exchange(request: reqwest::RequestBuilder) -> (StatusCode, usize) {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let body = response.bytes().await.expect("a whole response body");
        (status, body.len())
    }

    async fn healthz_ok(&self) {
        let (status, _) = Self::exchange(self.client.get(&self.healthz)).await;
        assert_eq!(status, StatusCode::OK);
    }

    async fn claim_409(&self) {
        let (status, _) = Self::exchange(self.hot_seat_request()).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }

    /// Graceful shutdown (as on SIGTERM), waiting until the gateway stopped.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(30), self.server).await???;
        Ok(())
    }
}

fn sequential(c: &mut Criterion, rt: &Runtime, gw: &Gateway) {
    let mut group = c.benchmark_group("http");
    group.bench_function("healthz", |b| {
        b.to_async(rt).iter(|| gw.healthz_ok());
    });
    group.bench_function("claim_hot_seat", |b| {
        b.to_async(rt).iter(|| gw.claim_409());
    });
    group.finish();
}

fn concurrent(c: &mut Criterion, rt: &Runtime, gw: &Gateway) {
    let mut group = c.benchmark_group("http_concurrent");
    // An iteration is 256 requests (~10 ms): criterion's minimum of 10 samples fits 3 s.
    group.sample_size(10);
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("healthz_x256", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for _ in 0..iters {
                join_all((0..IN_FLIGHT).map(|_| gw.healthz_ok())).await;
            }
            start.elapsed()
        });
    });
    group.bench_function("claim_hot_seat_x256", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for _ in 0..iters {
                join_all((0..IN_FLIGHT).map(|_| gw.claim_409())).await;
            }
            start.elapsed()
        });
    });
    group.finish();
}

//! `seatgate demo`: a real ticket drop on this machine, through the real HTTP API.
//!
//! The demo starts the gateway in this process (on a free port, with the reconciler),
//! creates an event and warms it, then fires `seats × claims-per-seat` claims, each
//! from a different simulated user asking for one seat, with exactly `concurrency`
//! requests in flight. It waits until every winning claim is confirmed in MySQL, then
//! checks MySQL directly (one confirmed booking per seat, each seat owned by the
//! booking its winner was told about, no seat booked twice) and asks the audit
//! endpoint whether Redis and MySQL agree. It prints a short report and exits
//! non-zero if any check failed.
//!
//! If Redis or MySQL does not answer at the configured URL but its server binary is
//! installed, the demo runs a private one (see [`crate::sandbox`]) for its own use and
//! stops it at the end. The demo's event keeps its data (its id is unique per run).
//!
//! Clients behave as the contract asks of them: every claim carries an
//! `Idempotency-Key`, and a 429, a 503 or a failed connection is retried with the same
//! key after a full-jitter exponential backoff that honours `Retry-After`.

use anyhow::{bail, Context};
use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::Rng;
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};
use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::StoreArgs;
use crate::api::auth::sign_user_token;
use crate::claims::RedisStore;
use crate::config::{Secret, Settings};
use crate::db::{opt_text, text};
use crate::sandbox::{self, PrivateMysql, PrivateRedis};
use crate::startup::Application;

/// Most claims one run makes: every claim's token and key are made before the clock
/// starts, and this keeps that under a few hundred MB.
const MAX_CLAIMS: u64 = 2_000_000;
/// Attempts per claim, the first included, before a 429/503/connection error counts.
const MAX_ATTEMPTS: u32 = 8;
/// First backoff ceiling; it doubles per retry up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Longest wait before a retry, `Retry-After` included.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// How long every won claim may take to be confirmed after the drop ends.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(120);
/// Pause between reads of the event's counters while waiting for confirmations.
const CONFIRM_POLL: Duration = Duration::from_millis(50);
/// Time allowed to a single HTTP request (a hung request is retried with its key).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to Redis/MySQL to answer the first probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seats in the event.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub seats: u32,
    /// Claims per seat, each from a different user.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub claims_per_seat: u32,
    /// Claims in flight at once.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub concurrency: u32,
    /// The event's per-user limit.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub per_user_limit: u32,
    /// Keep the demo event's Redis keys (booking and idempotency records, about 100
    /// bytes per claim) instead of deleting them at the end; MySQL keeps its rows
    /// either way.
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let total = u64::from(args.seats) * u64::from(args.claims_per_seat);
    if total > MAX_CLAIMS {
        bail!("{total} claims is more than one demo run makes (at most {MAX_CLAIMS}); lower --seats or --claims-per-seat");
    }
    // Private servers, if any, live until the end of this function (after the
    // gateway has stopped using them).
    let stores = Stores::ensure(&args.store).await?;

    let admin_token = Uuid::now_v7().to_string();
    let jwt_secret = Secret::new(Uuid::now_v7().to_string());
    let mut settings = Settings::local(&admin_token, jwt_secret.expose());
    settings.http_addr = "127.0.0.1:0".into();
    settings.redis_url = stores.redis_url.clone();
    settings.database_url = stores.database_url.clone();
    settings.redis_namespace = args.store.redis_namespace.clone();
    settings.redis_timeout = args.store.redis_timeout();
    // Load shedding is not what the demo measures: leave room above the client's own
    // bound so no claim is refused for it.
    settings.max_inflight_claims = args.concurrency as usize * 4;
    settings.reconciler = true;

    let app = Application::build(settings)
        .await
        .context("cannot start the gateway")?;
    let addr = app.local_addr();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let gateway = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));

    let demo = Demo {
        args: &args,
        base: format!("http://{addr}"),
        admin_token,
        jwt_secret,
        database_url: stores.database_url.clone(),
    };
    let outcome = demo.run().await;

    // Stop the gateway whatever happened, before the private servers go.
    let _ = stop_tx.send(());
    let stopped = gateway.await;
    let report = outcome?;
    stopped
        .context("the gateway task failed")?
        .context("the gateway failed")?;
    if !args.keep {
        // A default run leaves ~250,000 idempotency records (24 h TTL) behind; on a
        // shared Redis that is worth giving back now.
        let redis = RedisStore::connect(
            &stores.redis_url,
            &args.store.redis_namespace,
            args.store.redis_timeout(),
        )
        .await?;
        redis
            .delete_event(&report.event_id)
            .await
            .context("cannot delete the demo event's Redis keys")?;
    }
    drop(stores);

    print!("{}", report.render());
    if !report.failures.is_empty() {
        bail!("the demo's checks failed: {}", report.failures.join("; "));
    }
    Ok(())
}

/// The Redis and MySQL the demo uses, and the private servers it started, if any.
struct Stores {
    redis_url: String,
    database_url: String,
    _redis: Option<PrivateRedis>,
    _mysql: Option<PrivateMysql>,
}

impl Stores {
    /// Uses the configured servers if they answer; otherwise starts private ones when
    /// their binaries are installed.
    async fn ensure(store: &StoreArgs) -> anyhow::Result<Self> {
        let mut stores = Self {
            redis_url: store.redis_url.clone(),
            database_url: store.database_url.clone(),
            _redis: None,
            _mysql: None,
        };
        if let Err(e) = sandbox::redis_ping(&store.redis_url, PROBE_TIMEOUT).await {
            if !redis_unreachable(&e) {
                return Err(e.context(format!(
                    "Redis at {} answered, but not as the demo needs",
                    redact(&store.redis_url)
                )));
            }
            if sandbox::binary_on_path("redis-server").is_none() {
                bail!(
                    "Redis at {}: {e:#}; and redis-server is not installed \
                     to start a private one: apt-get install redis-server, or point \
                     --redis-url / SEATGATE_REDIS_URL at a running Redis",
                    redact(&store.redis_url)
                );
            }
            let redis = PrivateRedis::start(false)
                .await
                .context("cannot start a private redis-server")?;
            println!(
                "Redis did not answer at {}; started a private redis-server on port {}",
                redact(&store.redis_url),
                redis.port()
            );
            stores.redis_url = redis.url();
            stores._redis = Some(redis);
        }
        if let Err(e) = sandbox::mysql_ping(&store.database_url, PROBE_TIMEOUT).await {
            if !mysql_unreachable(&e) {
                return Err(e.context(format!(
                    "MySQL at {} answered, but not as the demo needs",
                    redact(&store.database_url)
                )));
            }
            if !PrivateMysql::available() {
                bail!(
                    "MySQL at {}: {e:#}; and mariadbd is not installed to \
                     start a private one: apt-get install mariadb-server, or point \
                     --database-url / SEATGATE_DATABASE_URL at a running MySQL",
                    redact(&store.database_url)
                );
            }
            let database = sqlx::mysql::MySqlConnectOptions::from_str(&store.database_url)
                .ok()
                .and_then(|o| o.get_database().map(str::to_owned))
                .unwrap_or_else(|| "seatgate".to_owned());
            let mysql = PrivateMysql::start()
                .await
                .context("cannot start a private mariadbd")?;
            println!(
                "MySQL did not answer at {}; started a private mariadbd on port {}",
                redact(&store.database_url),
                mysql.port()
            );
            stores.database_url = mysql.url(&database);
            stores._mysql = Some(mysql);
        }
        Ok(stores)
    }
}

/// True when a failed PING means nobody is there (worth a private server), rather
/// than a server that answered with an error (a password, say) or a bad URL.
fn redis_unreachable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<redis::RedisError>() {
        Some(r) => {
            r.is_io_error()
                || r.is_connection_refusal()
                || r.is_timeout()
                || r.is_connection_dropped()
        }
        // The probe's own timeout.
        None => true,
    }
}

/// As [`redis_unreachable`], for MySQL.
fn mysql_unreachable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_)) => true,
        Some(_) => false,
        None => true,
    }
}

/// A URL with its user info (which may hold a password) hidden.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// One run of the demo against a started gateway.
struct Demo<'a> {
    args: &'a DemoArgs,
    base: String,
    admin_token: String,
    jwt_secret: Secret,
    database_url: String,
}

/// One simulated user's claim, made before the clock starts.
struct Claim {
    user: String,
    token: String,
    key: String,
    seat: usize,
}

/// How one claim ended.
enum Outcome {
    Won { booking_id: String },
    Lost,
    Error(String),
}

/// One claim's result, as the client saw it.
struct ClaimResult {
    index: usize,
    outcome: Outcome,
    /// From the first attempt's start to the final answer, retries included: what
    /// the user waited.
    latency: Duration,
    retries: u32,
}

/// What the demo measured and found.
struct Report {
    seats: u32,
    claims_per_seat: u32,
    concurrency: u32,
    event_id: String,
    total: u64,
    drop_time: Duration,
    latency: Histogram<u64>,
    won: u64,
    lost: u64,
    errors: BTreeMap<String, u64>,
    retries: u64,
    confirmed: u64,
    /// From the drop's end until every won claim was confirmed (None: not within the
    /// deadline).
    confirmed_after: Option<Duration>,
    /// What the MySQL check found, when it passed.
    mysql_summary: Option<String>,
    failures: Vec<String>,
}

impl Demo<'_> {
    async fn run(&self) -> anyhow::Result<Report> {
        let args = self.args;
        let seats = args.seats as usize;
        let concurrency = args.concurrency as usize;
        let total = seats as u64 * u64::from(args.claims_per_seat);
        let event_id = format!(
            "demo-{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_millis()
        );
        let width = seats.to_string().len().max(4);
        let seat_ids: Vec<String> = (1..=seats).map(|n| format!("S{n:0width$}")).collect();

        let client = Client::builder()
            .pool_max_idle_per_host(concurrency)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;

        self.create_and_warm(&client, &event_id, &seat_ids).await?;

        // Tokens and keys are made before the clock starts, off the runtime's threads.
        let claims = {
            let secret = self.jwt_secret.clone();
            tokio::task::spawn_blocking(move || make_claims(&secret, total as usize, seats))
                .await
                .context("making the claims' tokens failed")?
        };
        let bodies: Arc<Vec<String>> = Arc::new(
            seat_ids
                .iter()
                .map(|s| json!({ "seats": [s] }).to_string())
                .collect(),
        );
        let users: Vec<String> = claims.iter().map(|c| c.user.clone()).collect();
        let claim_url: Arc<str> = format!("{}/v1/events/{event_id}/bookings", self.base).into();

        let mut report = Report {
            seats: args.seats,
            claims_per_seat: args.claims_per_seat,
            concurrency: args.concurrency,
            event_id: event_id.clone(),
            total,
            drop_time: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .context("cannot make the latency histogram")?,
            won: 0,
            lost: 0,
            errors: BTreeMap::new(),
            retries: 0,
            confirmed: 0,
            confirmed_after: None,
            mysql_summary: None,
            failures: Vec::new(),
        };
        // seat index -> (user, booking id) of its winner
        let mut winners: Vec<Option<(String, String)>> = vec![None; seats];

        // The drop. Each claim is its own task so the client's work spreads over the
        // runtime's threads; buffer_unordered keeps exactly `concurrency` in flight.
        let started = Instant::now();
        let mut results =
            futures::stream::iter(claims.into_iter().enumerate().map(|(index, claim)| {
                let client = client.clone();
                let url = Arc::clone(&claim_url);
                let bodies = Arc::clone(&bodies);
                tokio::spawn(async move {
                    let body = &bodies[claim.seat];
                    send_claim(&client, &url, &claim, body, index).await
                })
            }))
            .buffer_unordered(concurrency);
        while let Some(result) = results.next().await {
            let r = result.context("a claim task failed")?;
            let micros = u64::try_from(r.latency.as_micros()).unwrap_or(u64::MAX);
            report.latency.saturating_record(micros.max(1));
            report.retries += u64::from(r.retries);
            match r.outcome {
                Outcome::Won { booking_id } => {
                    report.won += 1;
                    let seat = r.index % seats;
                    if let Some((other, _)) = &winners[seat] {
                        report.failures.push(format!(
                            "seat {} was won twice ({} and {})",
                            seat_ids[seat], other, users[r.index]
                        ));
                    } else {
                        winners[seat] = Some((users[r.index].clone(), booking_id));
                    }
                }
                Outcome::Lost => report.lost += 1,
                Outcome::Error(label) => *report.errors.entry(label).or_default() += 1,
            }
        }
        drop(results);
        let drop_ended = Instant::now();
        report.drop_time = drop_ended - started;

        self.wait_for_confirmations(&client, &event_id, &mut report, drop_ended)
            .await?;
        self.check_mysql(&event_id, &seat_ids, &winners, &mut report)
            .await?;
        self.check_audit(&client, &event_id, &mut report).await?;
        if report.won != u64::from(args.seats) {
            report.failures.push(format!(
                "{} of {} seats were won; every seat had claims, so each should have exactly one winner",
                report.won, args.seats
            ));
        }
        Ok(report)
    }

    async fn create_and_warm(
        &self,
        client: &Client,
        event_id: &str,
        seat_ids: &[String],
    ) -> anyhow::Result<()> {
        let created = client
            .post(format!("{}/v1/admin/events", self.base))
            .bearer_auth(&self.admin_token)
            .json(&json!({
                "id": event_id,
                "name": "seatgate demo drop",
                "seats": seat_ids,
                "per_user_limit": self.args.per_user_limit,
            }))
            .send()
            .await
            .context("POST /v1/admin/events failed")?;
        expect_status(created, StatusCode::CREATED, "creating the event").await?;
        let warmed = client
            .post(format!("{}/v1/admin/events/{event_id}/warm", self.base))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .context("POST /v1/admin/events/{id}/warm failed")?;
        expect_status(warmed, StatusCode::OK, "warming the event").await?;
        Ok(())
    }

    /// Polls the event's counters until nothing is pending and every won claim is
    /// booked. A counter endpoint is cheap enough to poll for a demo.
    async fn wait_for_confirmations(
        &self,
        client: &Client,
        event_id: &str,
        report: &mut Report,
        drop_ended: Instant,
    ) -> anyhow::Result<()> {
        let url = format!("{}/v1/events/{event_id}", self.base);
        let mut last = Value::Null;
        loop {
            let response = client
                .get(&url)
                .send()
                .await
                .context("GET /v1/events/{id} failed")?;
            if response.status() == StatusCode::OK {
                last = response
                    .json()
                    .await
                    .context("GET /v1/events/{id} answered unreadable JSON")?;
                let pending = last["pending"].as_u64();
                let booked = last["booked"].as_u64();
                report.confirmed = booked.unwrap_or(0);
                if pending == Some(0) && booked == Some(report.won) {
                    report.confirmed_after = Some(drop_ended.elapsed());
                    return Ok(());
                }
            }
            if drop_ended.elapsed() >= CONFIRM_DEADLINE {
                report.failures.push(format!(
                    "not every won claim was confirmed within {CONFIRM_DEADLINE:?}: won {}, event counters {last}",
                    report.won
                ));
                return Ok(());
            }
            tokio::time::sleep(CONFIRM_POLL).await;
        }
    }

    /// Looks at MySQL directly: the system of record must hold exactly the winners.
    async fn check_mysql(
        &self,
        event_id: &str,
        seat_ids: &[String],
        winners: &[Option<(String, String)>],
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url)
            .await
            .context("cannot connect to MySQL to check the drop")?;
        let result = mysql_failures(&pool, event_id, seat_ids, winners).await;
        pool.close().await;
        let (booked, failures) = result.context("checking the drop in MySQL failed")?;
        if failures.is_empty() {
            report.mysql_summary = Some(format!(
                "{} seats booked, no seat with two bookings",
                thousands(booked)
            ));
        }
        report.failures.extend(failures);
        Ok(())
    }

    /// Asks the gateway whether Redis and MySQL agree about the event.
    async fn check_audit(
        &self,
        client: &Client,
        event_id: &str,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let response = client
            .get(format!("{}/v1/admin/events/{event_id}/audit", self.base))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .context("GET /v1/admin/events/{id}/audit failed")?;
        let audit = expect_status(response, StatusCode::OK, "auditing the event").await?;
        if audit["consistent"] != Value::Bool(true) {
            let divergences = audit["divergences"].as_array().map_or(0, Vec::len);
            let first: Vec<String> = audit["divergences"]
                .as_array()
                .into_iter()
                .flatten()
                .take(3)
                .map(Value::to_string)
                .collect();
            report.failures.push(format!(
                "the audit found Redis and MySQL inconsistent: {divergences} divergences, e.g. {}",
                first.join(", ")
            ));
        }
        Ok(())
    }
}

/// Every way MySQL disagrees with what the clients were told, and the booked count.
async fn mysql_failures(
    pool: &MySqlPool,
    event_id: &str,
    seat_ids: &[String],
    winners: &[Option<(String, String)>],
) -> Result<(u64, Vec<String>), sqlx::Error> {
    let mut failures = Vec::new();

    let booked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM seats WHERE event_id = ? AND status = 'booked'")
            .bind(event_id)
            .fetch_one(pool)
            .await?;
    let booked = u64::try_from(booked).unwrap_or(0);
    let won = winners.iter().flatten().count() as u64;
    if booked != won {
        failures.push(format!(
            "MySQL has {booked} seats booked, clients won {won}"
        ));
    }

    let doubled = sqlx::query(
        "SELECT seat_id FROM seats WHERE event_id = ? GROUP BY seat_id HAVING COUNT(*) > 1",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await?;
    if !doubled.is_empty() {
        failures.push(format!("{} seats have more than one row", doubled.len()));
    }

    // Each won seat is booked by exactly the booking its winner was told about.
    let rows = sqlx::query("SELECT seat_id, status, booking_id FROM seats WHERE event_id = ?")
        .bind(event_id)
        .fetch_all(pool)
        .await?;
    let mut seat_rows: HashMap<String, (String, Option<String>)> = HashMap::new();
    let mut owners: HashMap<String, String> = HashMap::new();
    for row in &rows {
        let seat = text(row, "seat_id")?;
        let status = text(row, "status")?;
        let booking = opt_text(row, "booking_id")?;
        if status == "booked" {
            match &booking {
                Some(b) => {
                    if let Some(other) = owners.insert(b.clone(), seat.clone()) {
                        failures.push(format!("booking {b} owns two seats: {other} and {seat}"));
                    }
                }
                None => failures.push(format!("seat {seat} is booked with no booking id")),
            }
        }
        seat_rows.insert(seat, (status, booking));
    }
    for (seat_id, winner) in seat_ids.iter().zip(winners) {
        let Some((_, booking_id)) = winner else {
            continue;
        };
        match seat_rows.get(seat_id) {
            Some((status, Some(b))) if status == "booked" && b == booking_id => {}
            Some((status, b)) => failures.push(format!(
                "seat {seat_id}: the winner got booking {booking_id}, MySQL says {status} by {b:?}"
            )),
            None => failures.push(format!("seat {seat_id} is missing from MySQL")),
        }
    }

    // Every won booking is confirmed, for its winner; no other booking is.
    let rows = sqlx::query("SELECT id, user_id, status FROM bookings WHERE event_id = ?")
        .bind(event_id)
        .fetch_all(pool)
        .await?;
    let mut bookings: HashMap<String, (String, String)> = HashMap::new();
    for row in &rows {
        bookings.insert(
            text(row, "id")?,
            (text(row, "user_id")?, text(row, "status")?),
        );
    }
    let won_ids: HashSet<&str> = winners.iter().flatten().map(|(_, b)| b.as_str()).collect();
    for (user, booking_id) in winners.iter().flatten() {
        match bookings.get(booking_id) {
            Some((u, status)) if u == user && status == "confirmed" => {}
            Some((u, status)) => failures.push(format!(
                "booking {booking_id} of {user} is {status} for {u} in MySQL"
            )),
            None => failures.push(format!("booking {booking_id} of {user} is not in MySQL")),
        }
    }
    let extra = bookings
        .iter()
        .filter(|(id, (_, status))| status == "confirmed" && !won_ids.contains(id.as_str()))
        .count();
    if extra > 0 {
        failures.push(format!(
            "{extra} confirmed bookings in MySQL were never reported as won"
        ));
    }
    Ok((booked, failures))
}

/// One claim per simulated user: user `u<i>` wants seat `i % seats`.
fn make_claims(secret: &Secret, total: usize, seats: usize) -> Vec<Claim> {
    (0..total)
        .map(|i| {
            let user = format!("u{i}");
            Claim {
                token: sign_user_token(secret, &user, 3600),
                key: Uuid::now_v7().to_string(),
                seat: i % seats,
                user,
            }
        })
        .collect()
}

/// Sends one claim, retrying 429, 503 and transport failures with the same
/// `Idempotency-Key` (so a retry can never claim twice).
async fn send_claim(
    client: &Client,
    url: &str,
    claim: &Claim,
    body: &str,
    index: usize,
) -> ClaimResult {
    let started = Instant::now();
    let mut retries = 0;
    let outcome = loop {
        let (label, retry_after) = match attempt(client, url, claim, body).await {
            Attempt::Done(outcome) => break outcome,
            Attempt::Retry { label, retry_after } => (label, retry_after),
        };
        if retries + 1 >= MAX_ATTEMPTS {
            break Outcome::Error(label);
        }
        retries += 1;
        tokio::time::sleep(backoff(retries, retry_after)).await;
    };
    ClaimResult {
        index,
        outcome,
        latency: started.elapsed(),
        retries,
    }
}

/// One attempt's result: final, or worth retrying.
enum Attempt {
    Done(Outcome),
    Retry {
        label: String,
        retry_after: Option<Duration>,
    },
}

async fn attempt(client: &Client, url: &str, claim: &Claim, body: &str) -> Attempt {
    let sent = client
        .post(url)
        .bearer_auth(&claim.token)
        .header("idempotency-key", &claim.key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return transport_failure(&e),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // A body that fails to arrive is a transport failure: the retry (same key) gets
    // the recorded answer again.
    let answer: Value = match response.bytes().await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(e) => return transport_failure(&e),
    };
    let code = answer["error"].as_str().unwrap_or("");
    let label = format!("{} {code}", status.as_u16()).trim_end().to_owned();
    match status {
        StatusCode::ACCEPTED => match answer["booking_id"].as_str() {
            Some(b) => Attempt::Done(Outcome::Won {
                booking_id: b.to_owned(),
            }),
            None => Attempt::Done(Outcome::Error("202 without a booking_id".into())),
        },
        StatusCode::CONFLICT if code == "seats_unavailable" => Attempt::Done(Outcome::Lost),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            Attempt::Retry { label, retry_after }
        }
        _ => Attempt::Done(Outcome::Error(label)),
    }
}

fn transport_failure(e: &reqwest::Error) -> Attempt {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    if e.is_builder() {
        return Attempt::Done(Outcome::Error(format!("cannot build the request: {e}")));
    }
    Attempt::Retry {
        label: format!("transport error ({kind})"),
        retry_after: None,
    }
}

/// Full jitter: a uniform wait up to a ceiling that doubles per retry, capped; never
/// sooner than the server's `Retry-After` (itself capped).
fn backoff(retry: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let jitter_ms = rand::rng().random_range(0..=ceiling.as_millis() as u64);
    let floor = retry_after.unwrap_or(Duration::ZERO).min(BACKOFF_CAP);
    Duration::from_millis(jitter_ms).max(floor)
}

/// The JSON body of `response` if it has the `expected` status, else an error naming
/// `what` with the status and body.
async fn expect_status(
    response: reqwest::Response,
    expected: StatusCode,
    what: &str,
) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("{what}: reading the answer failed"))?;
    if status != expected {
        bail!("{what}: expected {expected}, got {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: the answer is not JSON: {body}"))
}

impl Report {
    fn render(&self) -> String {
        let mut out = String::new();
        let h = &self.latency;
        let secs = self.drop_time.as_secs_f64().max(1e-9);
        let error_count: u64 = self.errors.values().sum();
        let _ = writeln!(
            out,
            "seatgate demo: {} seats × {} claims per seat = {} claims, {} in flight",
            thousands(self.seats.into()),
            thousands(self.claims_per_seat.into()),
            thousands(self.total),
            thousands(self.concurrency.into()),
        );
        let _ = writeln!(out, "  event            {}", self.event_id);
        let _ = writeln!(
            out,
            "  claims/s         {}   ({:.2} s for the drop)",
            thousands((self.total as f64 / secs).round() as u64),
            secs
        );
        let _ = writeln!(
            out,
            "  latency          p50 {}   p99 {}   p99.9 {}   max {}",
            millis(h.value_at_quantile(0.5)),
            millis(h.value_at_quantile(0.99)),
            millis(h.value_at_quantile(0.999)),
            millis(h.max()),
        );
        let one_per_seat = if self.won == u64::from(self.seats) {
            "(one per seat)"
        } else {
            "(NOT one per seat)"
        };
        let _ = writeln!(
            out,
            "  won              {:<6} {one_per_seat}",
            thousands(self.won)
        );
        let _ = writeln!(
            out,
            "  lost             {:<6} (409 seats_unavailable)",
            thousands(self.lost)
        );
        let _ = writeln!(
            out,
            "  errors/retries   {} / {}",
            thousands(error_count),
            thousands(self.retries)
        );
        for (label, count) in &self.errors {
            let _ = writeln!(out, "    {label:<28} {}", thousands(*count));
        }
        match self.confirmed_after {
            Some(after) => {
                let _ = writeln!(
                    out,
                    "  confirmed        {:<6} all within {:.2} s of the drop's end",
                    thousands(self.confirmed),
                    after.as_secs_f64()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  confirmed        {} of {} (not all within {} s)",
                    thousands(self.confirmed),
                    thousands(self.won),
                    CONFIRM_DEADLINE.as_secs()
                );
            }
        }
        if self.failures.is_empty() {
            let summary = self.mysql_summary.as_deref().unwrap_or("");
            let _ = writeln!(out, "  MySQL check      ok: {summary}, audit consistent");
        } else {
            let _ = writeln!(out, "  checks           FAILED");
            for failure in self.failures.iter().take(20) {
                let _ = writeln!(out, "    - {failure}");
            }
            if self.failures.len() > 20 {
                let _ = writeln!(out, "    … and {} more", self.failures.len() - 20);
            }
        }
        out
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as milliseconds (seconds from 1 s) with sensible precision.
fn millis(micros: u64) -> String {
    let ms = micros as f64 / 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(249_500), "249,500");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn latencies_read_in_milliseconds() {
        assert_eq!(millis(850), "0.85 ms");
        assert_eq!(millis(1_900), "1.9 ms");
        assert_eq!(millis(15_400), "15 ms");
        assert_eq!(millis(4_063_000), "4.1 s");
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        for retry in 1..=MAX_ATTEMPTS {
            assert!(backoff(retry, None) <= BACKOFF_CAP);
        }
        assert!(backoff(1, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        assert_eq!(backoff(1, Some(Duration::from_secs(60))), BACKOFF_CAP);
    }

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redact("mysql://root:hunter2@db:3306/seatgate"),
            "mysql://***@db:3306/seatgate"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}

//! `seatgate-tools drop`: a reproducible ticket-drop load generator.
//!
//! It runs against a gateway already running (`--url`, with `--admin-token` and
//! `--jwt-secret` to create the event and sign the users' tokens) or one it starts in
//! this process (`--strategy redis|mysql`, on the configured Redis and MySQL, or on
//! private ones when those do not answer). It creates and warms a fresh event, fires
//! `seats × claims-per-seat` claims at it, in a closed loop (`--concurrency` in flight)
//! or an open loop (`--rate` claims per second on a fixed schedule, latency measured
//! from each claim's intended send time), records HDR latency histograms and every
//! answer, waits until every win is confirmed, and checks MySQL, Redis and the audit
//! agree with what the clients were told. A short table goes to stdout, a JSON report
//! to `--json PATH`, a progress bar to stderr when it is a terminal.
//!
//! `--compare` runs the same workload (each on a fresh event) against the redis
//! strategy and then the mysql baseline, and prints the throughput and p99 ratios.
//!
//! `--events N` spreads the claims round robin over N events of `--seats` each (claim
//! `i` goes to event `i % N`); every event is checked on its own, and the report gives
//! the totals and a line per event. On a Redis Cluster the events are named so that
//! they go round its primaries, and each line names the primary that served the
//! event. `--cluster` runs on a private cluster (three primaries, three replicas)
//! started for the run.
//!
//! `--hold-seconds N` gives the events holds (`--checkout-ratio` of them checked out,
//! the rest left to expire, the seats they free bought by returning waves of buyers
//! who lost; see [`crate::loadgen::buyers`]), and the report's `holds` says what they
//! came to.
//!
//! JSON: one run is one report object (`"schema": "seatgate.drop.v1"`); a comparison
//! is `{"schema": "seatgate.drop.compare.v1", "runs": [redis, mysql], "comparison":
//! {"throughput_ratio", "p99_ratio", …}}` with both ratios redis over mysql.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

use crate::loadgen::runner::strategy_name;
use crate::loadgen::{
    self, cluster, Comparison, DropReport, HoldPlan, InProcessGateway, Pacing, Plan, QuantityMix,
    Stores, Target, Workload,
};
use seatgate::cli::StoreArgs;
use seatgate::config::ClaimStrategy;

/// Where MySQL is when neither `--database-url` nor `SEATGATE_DATABASE_URL` says.
const DEFAULT_DATABASE_URL: &str = "mysql://root@127.0.0.1:3306/seatgate";

#[derive(Debug, Args)]
pub struct DropArgs {
    /// Drop on the gateway running at this URL (e.g. http://127.0.0.1:8080) instead of
    /// starting one in this process.
    #[arg(long)]
    pub url: Option<String>,
    /// Admin bearer token of the gateway at --url (creates and warms the event).
    #[arg(long, env = "SEATGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// HS256 secret of the gateway at --url (signs the simulated users' tokens).
    #[arg(long, env = "SEATGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Claim strategy of the gateway started in this process (default redis); with
    /// --url, what the gateway there uses, if known (for the report and checks).
    #[arg(long, value_enum)]
    pub strategy: Option<ClaimStrategy>,
    /// Run the same workload against the redis strategy, then the mysql baseline (each
    /// in this process, on a fresh event), and print both and their ratios.
    #[arg(long, conflicts_with_all = ["url", "strategy"])]
    pub compare: bool,
    /// Run on a private Redis Cluster (three primaries, three replicas) started for
    /// this run and shut down after it, instead of the configured Redis.
    #[arg(long, conflicts_with = "url")]
    pub cluster: bool,

    /// Events, each of --seats seats with --claims-per-seat claims per seat; the
    /// claims go round the events (on a cluster, the events go round the primaries).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub events: u32,
    /// Seats in each event.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub seats: u32,
    /// Claims per seat (the workload is events × seats × claims-per-seat claims).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub claims_per_seat: u32,
    /// Distinct simulated users; claim i is made by user i mod users (default: one
    /// user per claim).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub users: Option<u64>,
    /// Claims in flight at once (closed loop); the cap on outstanding claims (open
    /// loop).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub concurrency: u32,
    /// Open loop: send this many claims per second on a fixed schedule, whatever the
    /// answers, measuring latency from each claim's intended send time (corrected for
    /// coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: a claim that cannot start (--concurrency outstanding) within this
    /// many milliseconds of its intended time is dropped and counted, not queued.
    #[arg(long, default_value_t = 1000, requires = "rate")]
    pub max_lateness_ms: u64,
    /// Stop sending after this many seconds (default: send the whole workload).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Claims ask for a quantity (best available) in this mix of quantity:percent,
    /// e.g. "1:80,2:15,4:5"; without it, claim i asks for seat i mod seats by name.
    #[arg(long)]
    pub quantity_mix: Option<QuantityMix>,
    /// Seed of the quantity mix's order (the same seed, the same workload).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The event's per-user limit.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub per_user_limit: u32,
    /// Give the events holds of this many seconds (0: none). Each winner checks out
    /// (see --checkout-ratio) after a short random think or lets its hold expire;
    /// buyers who lost come back in waves for the seats the expiries free, up to four
    /// waves, and the run ends when every hold has ended (as `demo --hold-seconds`).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=7200))]
    pub hold_seconds: u32,
    /// With --hold-seconds: the share of holds their buyers check out (0.0 to 1.0).
    #[arg(long, default_value_t = 1.0)]
    pub checkout_ratio: f64,

    /// Write the machine-readable report here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Keep the events' Redis keys (about 100 bytes per claim) instead of deleting them
    /// at the end (in-process runs; MySQL keeps its rows either way).
    #[arg(long)]
    pub keep: bool,
    /// No progress bar (it is only ever shown when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Hold this many live seat map streams (`GET /v1/events/{id}/stream`) open on the
    /// event during the run, to measure what the fan-out costs the claims.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub watchers: u32,

    /// Redis URL (in-process runs; with --url, the gateway's Redis, if it is to tell
    /// which primary of a cluster serves which event).
    #[arg(
        long,
        env = "SEATGATE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// MySQL URL: of the in-process gateway (default
    /// mysql://root@127.0.0.1:3306/seatgate), or, with --url, of that gateway, to check
    /// the drop in MySQL directly (without it, checks go through the API).
    #[arg(long, env = "SEATGATE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Prefix of every Redis key (in-process runs; with --url, the gateway's, to
    /// place the events on a cluster's primaries).
    #[arg(long, env = "SEATGATE_REDIS_NAMESPACE", default_value = "")]
    pub redis_namespace: String,
    /// Timeout of each Redis call on the request path, in milliseconds (in-process).
    #[arg(long, env = "SEATGATE_REDIS_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,
    /// Replicas that must hold a claim before its 202 (in-process; Redis `WAIT`).
    #[arg(long, env = "SEATGATE_REDIS_MIN_REPLICAS", default_value_t = 0)]
    pub redis_min_replicas: u32,
    /// How long a claim waits for those replicas, in milliseconds (in-process).
    #[arg(
        long,
        env = "SEATGATE_REDIS_REPLICATION_TIMEOUT_MS",
        default_value_t = 500
    )]
    pub redis_replication_timeout_ms: u64,
}

impl DropArgs {
    /// The plan of one run, on the events `event_ids` (one per `--events`).
    fn plan(&self, event_ids: Vec<String>) -> anyhow::Result<Plan> {
        let pacing = Pacing::new(
            self.rate,
            self.concurrency,
            Duration::from_millis(self.max_lateness_ms),
        )?;
        let duration = match self.duration {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 && d <= 86_400.0 => {
                Some(Duration::from_secs_f64(d))
            }
            Some(d) => bail!("--duration {d}: give seconds, above 0 and at most a day"),
        };
        Ok(Plan {
            workload: Workload {
                events: self.events,
                seats: self.seats,
                claims_per_seat: self.claims_per_seat,
                users: self.users,
                per_user_limit: self.per_user_limit,
                mix: self.quantity_mix.clone(),
                seed: self.seed,
            },
            pacing,
            duration,
            event_ids,
            event_name: "seatgate load drop".into(),
            progress: !self.no_progress,
            watchers: self.watchers,
            holds: HoldPlan::new(self.hold_seconds, self.checkout_ratio)?,
        })
    }

    fn store_args(&self) -> StoreArgs {
        StoreArgs {
            redis_timeout_ms: self.redis_timeout_ms,
            redis_min_replicas: self.redis_min_replicas,
            redis_replication_timeout_ms: self.redis_replication_timeout_ms,
            ..StoreArgs::new(
                &self.redis_url,
                self.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL),
                &self.redis_namespace,
            )
        }
    }
}

pub async fn run(args: DropArgs) -> anyhow::Result<()> {
    // Refuse a bad plan before starting anything.
    let plan = args.plan(loadgen::event_ids("drop", args.events)?)?;
    if plan.holds.is_some() && (args.compare || args.strategy == Some(ClaimStrategy::Mysql)) {
        bail!("--hold-seconds needs the redis strategy (its reconciler persists and expires the holds); drop --compare and --strategy mysql");
    }
    if let Some(mix) = &args.quantity_mix {
        if mix.max_quantity() > args.per_user_limit {
            eprintln!(
                "note: --quantity-mix asks for up to {} seats, above --per-user-limit {}: those claims will be refused (422)",
                mix.max_quantity(),
                args.per_user_limit
            );
        }
    }
    if let Some(url) = &args.url {
        let report = external(&args, url).await?;
        print!("{}", report.render());
        write_json(&args, report.to_json())?;
        return finish(&[&report]);
    }
    let store = args.store_args();
    // Private servers, if any, live until the end of this function.
    let stores = if args.cluster {
        Stores::ensure_cluster(&store, 3, 1).await?
    } else {
        Stores::ensure(&store).await?
    };
    if !args.compare {
        let strategy = args.strategy.unwrap_or_default();
        let report = in_process(&args, &stores, &store, strategy).await?;
        print!("{}", report.render());
        write_json(&args, report.to_json())?;
        return finish(&[&report]);
    }
    let ours = in_process(&args, &stores, &store, ClaimStrategy::Redis).await?;
    print!("{}", ours.render());
    println!();
    let baseline = in_process(&args, &stores, &store, ClaimStrategy::Mysql)
        .await
        .context("the mysql strategy's run failed (the redis run is above)")?;
    print!("{}", baseline.render());
    println!();
    let comparison = Comparison {
        ours: &ours,
        baseline: &baseline,
    };
    print!("{}", comparison.render());
    write_json(&args, comparison.to_json())?;
    finish(&[&ours, &baseline])
}

/// One run on a gateway started here with `strategy`, stopped afterwards.
async fn in_process(
    args: &DropArgs,
    stores: &Stores,
    store: &StoreArgs,
    strategy: ClaimStrategy,
) -> anyhow::Result<DropReport> {
    let namespace = stores.redis_namespace(&store.redis_namespace);
    let prefix = format!("drop-{}", strategy_name(strategy));
    let ids = cluster::name_events(&prefix, args.events, &stores.redis_url, namespace).await?;
    let plan = args.plan(ids)?;
    let gateway = InProcessGateway::start(stores, store, strategy, args.concurrency).await?;
    let mut report = gateway
        .run_and_stop(&plan, args.keep, std::time::Duration::ZERO)
        .await?;
    cluster::mark_shards(&mut report, &stores.redis_url, namespace).await;
    Ok(report)
}

/// One run on the gateway at `url`.
async fn external(args: &DropArgs, url: &str) -> anyhow::Result<DropReport> {
    let url = url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--url {url}: give the gateway's base URL, e.g. http://127.0.0.1:8080");
    }
    let admin_token = args
        .admin_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .context(
            "--url needs --admin-token (or SEATGATE_ADMIN_TOKEN) to create and warm the event",
        )?;
    let jwt_secret = args
        .jwt_secret
        .as_deref()
        .filter(|t| !t.is_empty())
        .context("--url needs --jwt-secret (or SEATGATE_JWT_SECRET) to sign the users' tokens")?;
    let mut target = Target::external(url, admin_token, jwt_secret, args.database_url.clone());
    target.strategy = args.strategy;
    // The gateway's Redis, if given, tells where its events land on a cluster.
    let ids =
        cluster::name_events("drop", args.events, &args.redis_url, &args.redis_namespace).await?;
    let plan = args.plan(ids)?;
    let mut report = loadgen::run(&target, &plan).await?;
    cluster::mark_shards(&mut report, &args.redis_url, &args.redis_namespace).await;
    Ok(report)
}

fn write_json(args: &DropArgs, value: Value) -> anyhow::Result<()> {
    let Some(path) = &args.json else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(&value).context("cannot encode the JSON report")?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
    eprintln!("JSON report written to {}", path.display());
    Ok(())
}

/// Fails when any run's checks failed (the tables say which).
fn finish(reports: &[&DropReport]) -> anyhow::Result<()> {
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| {
            format!(
                "{}: {}",
                r.config.event_id,
                r.failures
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
        .collect();
    if !failed.is_empty() {
        bail!("the drop's checks failed: {}", failed.join(" | "));
    }
    Ok(())
}

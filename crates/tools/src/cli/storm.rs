//! `seatgate-tools storm`: a connection storm against a running gateway.
//!
//! N clients connect at the same instant, each on a fresh TCP connection, and send one
//! claim (see [`crate::loadgen::storm`]). It creates and warms a fresh event through
//! the admin API (`--admin-token`), signs one user token per connection
//! (`--jwt-secret`), and prints the answers, the time to first answer (connect start
//! → status line: p50, p99, p99.9, max), the connect times and the deltas of the
//! kernel's `TcpExtListenOverflows` / `TcpExtListenDrops` across the storm;
//! `--json PATH` writes them as `"schema": "seatgate.storm.v1"` (times in µs).
//!
//! Run it from a process of its own (not in the gateway's runtime), with an open-file
//! limit above `--connections` on both sides:
//!
//! ```sh
//! seatgate-tools storm --url http://127.0.0.1:8080 --connections 5000 --json storm.json
//! ```
//!
//! It exits non-zero when a connection got no answer, so a script can tell a clean
//! storm from one that lost clients.

use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

use crate::loadgen::storm::{self, StormPlan, StormTarget};
use seatgate::config::Secret;

#[derive(Debug, Args)]
pub struct StormArgs {
    /// The gateway's base URL (plain http), e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// Admin bearer token of the gateway (creates and warms the event).
    #[arg(long, env = "SEATGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// HS256 secret of the gateway (signs one user token per connection).
    #[arg(long, env = "SEATGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Connections opened at once, one claim each (keep it under this process's
    /// open-file limit, `ulimit -n`).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub connections: u32,
    /// Seats in the storm's event; connection i claims seat i mod seats (so most
    /// claims lose: 409, as in a drop).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub seats: u32,
    /// Seconds each connection may take from its connect to its status line.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// Write the machine-readable report here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

pub async fn run(args: StormArgs) -> anyhow::Result<()> {
    let url = args.url.trim_end_matches('/');
    if !url.starts_with("http://") {
        bail!("--url {url}: give the gateway's plain-http base URL, e.g. http://127.0.0.1:8080");
    }
    if args.timeout_secs == 0 {
        bail!("--timeout-secs must be at least 1");
    }
    let admin_token = args.admin_token.filter(|t| !t.is_empty()).context(
        "--admin-token (or SEATGATE_ADMIN_TOKEN) is needed to create and warm the event",
    )?;
    let jwt_secret = args
        .jwt_secret
        .filter(|t| !t.is_empty())
        .context("--jwt-secret (or SEATGATE_JWT_SECRET) is needed to sign the users' tokens")?;
    let target = StormTarget {
        base: url.to_owned(),
        admin_token,
        jwt_secret: Secret::new(jwt_secret),
    };
    let plan = StormPlan {
        connections: args.connections,
        seats: args.seats,
        timeout: Duration::from_secs(args.timeout_secs),
        event_id: storm::storm_event_id(),
    };
    let report = storm::run(&target, &plan).await?;
    print!("{}", report.render());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())
            .context("cannot encode the JSON report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
        eprintln!("JSON report written to {}", path.display());
    }
    let unanswered = u64::from(report.connections) - report.answered();
    if unanswered > 0 {
        bail!(
            "{unanswered} of {} connections got no answer",
            report.connections
        );
    }
    Ok(())
}

//! The `seatgate` command line: one binary, one subcommand per job, one file each.
//!
//! The tooling (demo, load generator, plots) is the `seatgate-tools` binary of its own
//! crate; what it shares with these commands ([`StoreArgs`], [`thousands`]) lives here.

pub mod admin;
pub mod reconcile;
pub mod serve;
pub mod token;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// seatgate: a Redis-fronted seat reservation gateway for ticket drops.
#[derive(Debug, Parser)]
#[command(name = "seatgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (and, unless --no-reconciler, the reconciler).
    Serve(serve::ServeArgs),
    /// Run the reconciler alone (run several for more throughput or redundancy).
    Reconcile(reconcile::ReconcileArgs),
    /// Print a user JWT signed with SEATGATE_JWT_SECRET, for local use.
    Token(token::TokenArgs),
    /// Prepare a drop: create events from a CSV or a row pattern, warm, audit, list.
    Admin(admin::AdminArgs),
}

impl Cli {
    /// Runs the command; errors are printed with their causes.
    pub fn run(self) -> ExitCode {
        crate::telemetry::init();
        exit_code(match self.command {
            Command::Token(args) => token::run(args),
            Command::Serve(args) => block_on(serve::run(args)),
            Command::Reconcile(args) => block_on(reconcile::run(args)),
            Command::Admin(args) => block_on(admin::run(args)),
        })
    }
}

/// Runs a command on a multi-threaded tokio runtime of its own.
pub fn block_on(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(command)
}

/// The process's exit code for a command's result; an error is printed with its causes.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where Redis and MySQL are; shared by the subcommands that need them.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Redis URL.
    #[arg(
        long,
        env = "SEATGATE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// MySQL URL; the database is created if missing.
    #[arg(
        long,
        env = "SEATGATE_DATABASE_URL",
        default_value = "mysql://root@127.0.0.1:3306/seatgate"
    )]
    pub database_url: String,
    /// Prefix of every Redis key, to share one Redis between deployments.
    #[arg(long, env = "SEATGATE_REDIS_NAMESPACE", default_value = "")]
    pub redis_namespace: String,
    /// Timeout of each Redis call on the request path, in milliseconds.
    #[arg(long, env = "SEATGATE_REDIS_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,
    /// Seconds after which a claim that still cannot be persisted is rejected.
    #[arg(long, env = "SEATGATE_CLAIM_DEADLINE", default_value_t = 300)]
    pub claim_deadline_secs: u64,
    /// Replicas that must hold a claim before it is answered 202 (Redis `WAIT`); 0
    /// answers once the primary has run the claim script.
    #[arg(long, env = "SEATGATE_REDIS_MIN_REPLICAS", default_value_t = 0)]
    pub redis_min_replicas: u32,
    /// Milliseconds a claim waits for its replicas before it is answered 503.
    #[arg(
        long,
        env = "SEATGATE_REDIS_REPLICATION_TIMEOUT_MS",
        default_value_t = 500
    )]
    pub redis_replication_timeout_ms: u64,
    /// Start even when Redis's `maxmemory-policy` evicts keys (losing idempotency
    /// records and bookings): only when that is deliberate.
    #[arg(long, env = "SEATGATE_ALLOW_EVICTION")]
    pub allow_eviction: bool,
}

impl StoreArgs {
    /// The stores at these addresses, with every other setting at its default (for
    /// tools and tests that build the arguments in code).
    pub fn new(redis_url: &str, database_url: &str, redis_namespace: &str) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            database_url: database_url.to_owned(),
            redis_namespace: redis_namespace.to_owned(),
            redis_timeout_ms: 1000,
            claim_deadline_secs: 300,
            redis_min_replicas: 0,
            redis_replication_timeout_ms: 500,
            allow_eviction: false,
        }
    }

    /// The Redis call timeout (at least 1 ms).
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }

    /// How long a claim may wait to be persisted before it is rejected.
    pub fn claim_deadline(&self) -> Duration {
        Duration::from_secs(self.claim_deadline_secs)
    }

    /// What a claim needs of Redis's replication and memory policy.
    pub fn durability(&self) -> crate::config::Durability {
        crate::config::Durability {
            min_replicas: self.redis_min_replicas,
            replication_timeout: Duration::from_millis(self.redis_replication_timeout_ms.max(1)),
            allow_eviction: self.allow_eviction,
        }
    }
}

/// `1234567` → `1,234,567`, for the tables the command lines print.
pub fn thousands(n: u64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(249_500), "249,500");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

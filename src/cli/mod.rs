//! The `seatgate` command line: one binary, one subcommand per job, one file each.

pub mod admin;
pub mod demo;
pub mod drop;
pub mod plot;
pub mod reconcile;
pub mod serve;
pub mod storm;
pub mod token;

use clap::{Args, Parser, Subcommand};
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
    /// Run a local ticket drop end to end through the real HTTP API and report.
    Demo(demo::DemoArgs),
    /// Load-test a gateway with a reproducible ticket drop (closed or open loop) and verify it.
    Drop(drop::DropArgs),
    /// Open N connections to a gateway at once, one claim each, and report the time to
    /// first answer and the kernel's listen-queue overflows.
    Storm(storm::StormArgs),
    /// Prepare a drop: create events from a CSV or a row pattern, warm, audit, list.
    Admin(admin::AdminArgs),
    /// Render the benchmarks' results as SVG plots (latency, throughput, reconciler).
    Plot(plot::PlotArgs),
}

impl Cli {
    /// Runs the command; errors are printed with their causes.
    pub fn run(self) -> ExitCode {
        crate::telemetry::init();
        let result = match self.command {
            Command::Token(args) => token::run(args),
            Command::Plot(args) => plot::run(args),
            command => {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("error: cannot start the runtime: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                runtime.block_on(async move {
                    match command {
                        Command::Serve(args) => serve::run(args).await,
                        Command::Reconcile(args) => reconcile::run(args).await,
                        Command::Demo(args) => demo::run(args).await,
                        Command::Drop(args) => drop::run(args).await,
                        Command::Storm(args) => storm::run(args).await,
                        Command::Admin(args) => admin::run(args).await,
                        Command::Token(_) | Command::Plot(_) => unreachable!("handled above"),
                    }
                })
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
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
}

impl StoreArgs {
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }

    pub fn claim_deadline(&self) -> Duration {
        Duration::from_secs(self.claim_deadline_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}

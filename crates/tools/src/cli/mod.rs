//! The `seatgate-tools` command line: one subcommand per tool, one file each.

pub mod demo;
pub mod drop;
pub mod plot;
pub mod storm;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// seatgate-tools: the demo, the load generator and the plots for the seatgate gateway.
#[derive(Debug, Parser)]
#[command(name = "seatgate-tools", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local ticket drop end to end through the real HTTP API and report.
    Demo(demo::DemoArgs),
    /// Load-test a gateway with a reproducible ticket drop (closed or open loop) and verify it.
    Drop(drop::DropArgs),
    /// Open N connections to a gateway at once, one claim each, and report the time to
    /// first answer and the kernel's listen-queue overflows.
    Storm(storm::StormArgs),
    /// Render the benchmarks' results as SVG plots (latency, throughput, reconciler).
    Plot(plot::PlotArgs),
}

impl Cli {
    /// Runs the command; errors are printed with their causes.
    pub fn run(self) -> ExitCode {
        seatgate::telemetry::init();
        let result = match self.command {
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
                        Command::Demo(args) => demo::run(args).await,
                        Command::Drop(args) => drop::run(args).await,
                        Command::Storm(args) => storm::run(args).await,
                        Command::Plot(_) => unreachable!("handled above"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}

//! The `seatgate-tools` command line: one subcommand per tool, one file each.

pub mod cluster;
pub mod demo;
pub mod drop;
pub mod plot;
pub mod storm;

use clap::{Parser, Subcommand};
use seatgate::cli::{block_on, exit_code};
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
    /// Start a private Redis Cluster, print its seeds URL, and keep it until stdin ends.
    Cluster(cluster::ClusterArgs),
}

impl Cli {
    /// Runs the command; errors are printed with their causes.
    pub fn run(self) -> ExitCode {
        seatgate::telemetry::init();
        exit_code(match self.command {
            Command::Plot(args) => plot::run(args),
            Command::Demo(args) => block_on(demo::run(args)),
            Command::Drop(args) => block_on(drop::run(args)),
            Command::Storm(args) => block_on(storm::run(args)),
            Command::Cluster(args) => block_on(cluster::run(args)),
        })
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

//! `seatgate-tools cluster`: a private Redis Cluster for as long as it is wanted.
//!
//! Starts a cluster of private `redis-server` processes (see `seatgate_sandbox::
//! PrivateCluster`), prints its seeds URL (the value for `SEATGATE_REDIS_URL`) as one
//! line on stdout, and keeps it until stdin reaches its end; then every node is killed
//! and its directory removed. Reading stdin instead of waiting for a signal means the
//! cluster goes when whoever started it goes, however it ends: `scripts/test_cluster.sh`
//! holds the pipe, so a script that dies takes its cluster with it.

use anyhow::Context;
use clap::Args;
use seatgate_sandbox::PrivateCluster;
use tokio::io::AsyncReadExt;

/// Arguments of `seatgate-tools cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Primaries (shards), at least 3.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=16))]
    pub primaries: u16,
    /// Replicas of each primary.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=2))]
    pub replicas: u16,
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let cluster = PrivateCluster::start(args.primaries.into(), args.replicas.into())
        .await
        .context("cannot start a private Redis Cluster")?;
    println!("{}", cluster.seeds_url());
    let mut sink = Vec::new();
    tokio::io::stdin().read_to_end(&mut sink).await?;
    drop(cluster);
    Ok(())
}

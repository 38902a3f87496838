//! `seatgate reconcile`: the reconciler alone. Any number can run side by side; the
//! consumer groups share the outbox entries among them.

use clap::Args;

use super::StoreArgs;
use crate::claims::RedisStore;
use crate::db;
use crate::reconciler::{Reconciler, ReconcilerConfig};
use crate::startup::shutdown_signal;
use anyhow::Context;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let redis = RedisStore::connect(
        &args.store.redis_url,
        &args.store.redis_namespace,
        args.store.redis_timeout(),
    )
    .await
    .context("cannot connect to Redis at SEATGATE_REDIS_URL")?;
    // As `serve` does: never run on a Redis that evicts keys unless told to.
    crate::claims::posture::check_and_log(&redis, &args.store.durability())
        .await
        .map_err(anyhow::Error::new)
        .context("Redis at SEATGATE_REDIS_URL")?;
    let pool = db::connect_and_migrate(&args.store.database_url, 32).await?;
    // As `serve` does: never reconcile a namespace that another database owns.
    crate::deployment::claim_namespace(&redis, &pool, &args.store.database_url).await?;
    let reconciler = Reconciler::new(
        redis,
        pool,
        ReconcilerConfig {
            claim_deadline: args.store.claim_deadline(),
            ..ReconcilerConfig::default()
        },
    )?;
    tracing::info!(consumer = %reconciler.consumer(), "reconciler running");
    reconciler.run(shutdown_signal()).await;
    Ok(())
}

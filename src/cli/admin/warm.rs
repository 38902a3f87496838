//! `seatgate admin warm`: copy an event's inventory from MySQL into Redis and put it on
//! sale, with a progress bar on a terminal.

use clap::Args;
use sqlx::MySqlPool;

use super::{check_event_id, emit, mysql, op_error, progress_bar, redis};
use crate::claims::{RedisStore, SeatCounts};
use crate::cli::thousands;
use crate::cli::StoreArgs;
use crate::ops::{warm as warm_op, OpError};

/// `warm`'s options.
#[derive(Debug, Clone, Args)]
pub struct WarmArgs {
    /// The event's id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Warms the event and prints its counts.
pub(super) async fn run(args: WarmArgs) -> anyhow::Result<()> {
    let counts = warm(&args, true).await?;
    emit(&format!("{}\n", render_counts(&args.id, &counts)))
}

/// Warms the event, showing a progress bar when `show_progress` and stderr is a
/// terminal.
pub(super) async fn warm_with_bar(
    redis: &RedisStore,
    pool: &MySqlPool,
    id: &str,
    show_progress: bool,
) -> Result<SeatCounts, OpError> {
    let bar = progress_bar(show_progress, "warming");
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = warm_op::warm_with_progress(redis, pool, id, Some(&progress)).await;
    bar.finish_and_clear();
    result
}

/// Warms the event (MySQL → Redis) and puts it on sale; the counts after.
pub async fn warm(args: &WarmArgs, show_progress: bool) -> anyhow::Result<SeatCounts> {
    check_event_id(&args.id)?;
    let redis = redis(&args.store).await?;
    let pool = mysql(&args.store).await?;
    warm_with_bar(&redis, &pool, &args.id, show_progress)
        .await
        .map_err(|e| op_error(&args.id, e))
}

/// The line that says an event is on sale, with its counts.
pub(super) fn render_counts(id: &str, c: &SeatCounts) -> String {
    format!(
        "event {id} warmed and on sale: {} seats, {} available, {} pending, {} booked",
        thousands(c.seats_total),
        thousands(c.available),
        thousands(c.pending),
        thousands(c.booked)
    )
}

//! `seatgate admin`: prepare a drop from the command line, talking to MySQL and Redis
//! directly (the same `SEATGATE_REDIS_URL` / `SEATGATE_DATABASE_URL` /
//! `SEATGATE_REDIS_NAMESPACE` as `serve`), no HTTP and no admin token involved.
//!
//! One file per subcommand, holding its options, its library function and its `run`:
//!
//! - `create_event`: an event and its seats from a CSV file or a row pattern. The
//!   inventory is validated whole before anything is written (errors as
//!   `file:line:column: message`, see [`crate::ops::import`]), then created in one MySQL
//!   transaction: all or nothing. `--warm` warms it right after.
//! - `warm`: MySQL → Redis and on sale, with a progress bar on a terminal.
//! - `audit`: Redis against MySQL; `--repair` gives Redis MySQL's state. Exits non-zero
//!   while the event is inconsistent.
//! - `events`: every event with its counts, as a table or `--json`.
//!
//! Each subcommand is a library function taking its arguments (so tests can point it
//! at their own database and namespace); its `run` prints what it returns. This file
//! holds what they share: connecting, the id check, error wording, stdout, the table.

mod audit;
mod create_event;
mod events;
mod warm;

pub use audit::{audit, AuditArgs, AuditOutcome};
pub use create_event::{create_event, read_inventory, CreateEventArgs, Created};
pub use events::{list_events, EventListing, EventsArgs, MysqlCounts, RedisCounts};
pub use warm::{warm, WarmArgs};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::MySqlPool;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use super::StoreArgs;
use crate::claims::RedisStore;
use crate::domain::event;
use crate::ops::OpError;

/// `seatgate admin`'s options: which subcommand.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an event and its seats from a CSV file or a row pattern (all or nothing).
    CreateEvent(CreateEventArgs),
    /// Copy an event's inventory from MySQL into Redis and put it on sale.
    Warm(WarmArgs),
    /// Compare an event's seats in Redis and MySQL; --repair gives Redis MySQL's state.
    Audit(AuditArgs),
    /// List the events with their seat and booking counts.
    Events(EventsArgs),
}

/// Runs an admin subcommand and prints its outcome.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::CreateEvent(a) => create_event::run(a).await,
        AdminCommand::Warm(a) => warm::run(a).await,
        AdminCommand::Audit(a) => audit::run(a).await,
        AdminCommand::Events(a) => events::run(a).await,
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

async fn mysql(store: &StoreArgs) -> anyhow::Result<MySqlPool> {
    crate::db::connect_and_migrate(&store.database_url, 4).await
}

/// The least time each Redis call of an admin command may take, whatever
/// `SEATGATE_REDIS_TIMEOUT_MS` says for the request path: an audit reads a whole
/// inventory (100,000 seats) in one call, which takes longer than a claim.
const ADMIN_REDIS_TIMEOUT: Duration = Duration::from_secs(30);

async fn redis(store: &StoreArgs) -> anyhow::Result<RedisStore> {
    RedisStore::connect(
        &store.redis_url,
        &store.redis_namespace,
        store.redis_timeout().max(ADMIN_REDIS_TIMEOUT),
    )
    .await
    .context("cannot connect to Redis at SEATGATE_REDIS_URL")
}

fn check_event_id(id: &str) -> anyhow::Result<()> {
    event::check_id(id).with_context(|| format!("event id {id:?} is not valid"))
}

fn op_error(id: &str, err: OpError) -> anyhow::Error {
    match err {
        OpError::EventNotFound => {
            anyhow!("no event {id:?} in MySQL (create it with `seatgate admin create-event`)")
        }
        other => anyhow::Error::new(other),
    }
}

/// A progress bar on stderr for `len` steps: hidden unless wanted and stderr is a
/// terminal.
fn progress_bar(wanted: bool, what: &str) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} seats, eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_owned());
    bar
}

/// A plain text table: columns padded to their widest cell (in characters), numbers
/// right-aligned.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]], right: &[bool; N]) -> String {
    let mut widths: [usize; N] = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let w = widths[i];
            if right[i] {
                let _ = write!(text, "{cell:>w$}");
            } else {
                let _ = write!(text, "{cell:<w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_characters() {
        let t = table(
            &["ID", "N"],
            &[
                ["é-1".to_owned(), "5".to_owned()],
                ["b".to_owned(), "1,000".to_owned()],
            ],
            &[false, true],
        );
        assert_eq!(t, "ID       N\né-1      5\nb    1,000\n");
    }
}

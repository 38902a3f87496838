//! `seatgate admin create-event`: an event and its seats from a CSV file or a row
//! pattern, validated whole, then created in one MySQL transaction (all or nothing);
//! `--warm` puts it on sale right after.

use anyhow::{bail, Context};
use clap::{ArgGroup, Args};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::warm::{render_counts, warm_with_bar};
use super::{check_event_id, emit, mysql, op_error, redis};
use crate::claims::SeatCounts;
use crate::cli::thousands;
use crate::cli::StoreArgs;
use crate::db::events::{self as db_events, CreateEventError, NewEvent};
use crate::domain::{event, PER_USER_LIMIT_DEFAULT};
use crate::ops::import::{self, ImportErrors};

/// `create-event`'s options.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("inventory").required(true).args(["csv", "rows"])))]
pub struct CreateEventArgs {
    /// Event id: 1 to 64 characters of A-Z, a-z, 0-9, _ and -.
    #[arg(long)]
    pub id: String,
    /// Event name: 1 to 200 characters.
    #[arg(long)]
    pub name: String,
    /// Seats from a CSV file: a header row, a `seat` (or `seat_id`) column, an optional
    /// integer `ordinal` column giving the best-available order (else the file order);
    /// other columns are ignored.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Seats from a pattern: rows as a range of letters (A-T) or a list (A,B,C or
    /// A-C,AA), each with seats 1..=--seats-per-row, in row-major order (A1, A2, …).
    #[arg(long, value_name = "ROWS", requires = "seats_per_row")]
    pub rows: Option<String>,
    /// Seats in each row of --rows.
    #[arg(long, value_name = "N", requires = "rows")]
    pub seats_per_row: Option<u32>,
    /// Most seats one user may hold in this event.
    #[arg(long, default_value_t = PER_USER_LIMIT_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub per_user_limit: u32,
    /// Seconds a persisted claim is held for its checkout before its seats go back on
    /// sale (0: no holds; a persisted claim is confirmed at once).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=7200))]
    pub hold_seconds: u32,
    /// How long after the claim a hold may be extended to (default: --hold-seconds).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=7200))]
    pub hold_max_seconds: Option<u32>,
    /// Warm the event right after creating it (it goes on sale).
    #[arg(long)]
    pub warm: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Creates the event and prints what was made; an invalid CSV prints every error found,
/// one per line, before the error that ends the command.
pub(super) async fn run(args: CreateEventArgs) -> anyhow::Result<()> {
    match create_event(&args, true).await {
        Ok(created) => emit(&render_created(&created)),
        Err(err) => match err.downcast::<ImportErrors>() {
            Ok(errors) => {
                for line in errors.lines() {
                    eprintln!("{line}");
                }
                let n = errors.total();
                bail!(
                    "{}: {n} error{}; nothing was written",
                    errors.source,
                    if n == 1 { "" } else { "s" }
                )
            }
            Err(err) => Err(err),
        },
    }
}

/// What `create-event` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Created {
    pub id: String,
    pub name: String,
    pub seats_total: usize,
    pub per_user_limit: u32,
    /// The seat ids of the first and last seat, in best-available order.
    pub(crate) first_seat: String,
    pub(crate) last_seat: String,
    /// The counts after `--warm`.
    #[serde(skip)]
    pub warmed: Option<SeatCounts>,
}

/// The seats of `create-event`'s inventory option, validated; an invalid CSV is an
/// [`ImportErrors`] (downcast the error to list its lines).
pub fn read_inventory(args: &CreateEventArgs) -> anyhow::Result<Vec<String>> {
    match (&args.csv, &args.rows, args.seats_per_row) {
        (Some(path), None, None) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Ok(import::parse_seats_csv(
                &path.display().to_string(),
                &bytes,
            )?)
        }
        (None, Some(rows), Some(per_row)) => {
            import::pattern_seats(rows, per_row).map_err(anyhow::Error::msg)
        }
        _ => bail!("give the seats either as --csv FILE or as --rows ROWS --seats-per-row N"),
    }
}

/// Validates everything, then creates the event in one MySQL transaction; with
/// `--warm`, warms it. Nothing is written unless the whole inventory is valid, and
/// with `--warm` Redis must answer before anything is written. If the warm itself
/// fails, the event stays created (not on sale) and the error says so.
pub async fn create_event(args: &CreateEventArgs, show_progress: bool) -> anyhow::Result<Created> {
    // The id and the name before the inventory is read: a typo there is found at once.
    check_event_id(&args.id)?;
    event::check_name(&args.name).with_context(|| {
        format!(
            "the event name has {} characters",
            args.name.chars().count()
        )
    })?;
    let seats = read_inventory(args)?;
    let per_user_limit = event::validate(&args.id, &args.name, &seats, Some(args.per_user_limit))
        .context("the event is not valid; nothing was written")?;
    let (hold_seconds, hold_max_seconds) =
        event::holds(Some(args.hold_seconds), args.hold_max_seconds)
            .context("the event is not valid; nothing was written")?;
    let pool = mysql(&args.store).await?;
    let redis = if args.warm {
        Some(redis(&args.store).await?)
    } else {
        None
    };
    let new = NewEvent {
        id: &args.id,
        name: &args.name,
        seats: &seats,
        per_user_limit,
        hold_seconds,
        hold_max_seconds,
    };
    match db_events::create_event(&pool, &new).await {
        Ok(()) => {}
        Err(CreateEventError::Exists) => bail!(
            "event {:?} exists already; nothing was written (pick another --id; \
             `seatgate admin events` lists them)",
            args.id
        ),
        Err(CreateEventError::Db(e)) => {
            return Err(anyhow::Error::new(e)
                .context("creating the event failed; nothing was written (one transaction)"))
        }
    }
    let mut created = Created {
        id: args.id.clone(),
        name: args.name.clone(),
        seats_total: seats.len(),
        per_user_limit,
        first_seat: seats.first().cloned().unwrap_or_default(),
        last_seat: seats.last().cloned().unwrap_or_default(),
        warmed: None,
    };
    if let Some(redis) = redis {
        match warm_with_bar(&redis, &pool, &args.id, show_progress).await {
            Ok(counts) => created.warmed = Some(counts),
            Err(err) => {
                return Err(op_error(&args.id, err).context(format!(
                    "event {:?} was created with {} seats, but warming it failed, so it is \
                     not on sale; run `seatgate admin warm {}` to retry",
                    args.id,
                    seats.len(),
                    args.id
                )))
            }
        }
    }
    Ok(created)
}

fn render_created(c: &Created) -> String {
    let mut out = format!(
        "created event {} ({:?}): {} seats (best first: {}, last: {}), per-user limit {}\n",
        c.id,
        c.name,
        thousands(c.seats_total as u64),
        c.first_seat,
        c.last_seat,
        c.per_user_limit
    );
    match &c.warmed {
        Some(counts) => {
            let _ = writeln!(out, "{}", render_counts(&c.id, counts));
        }
        None => {
            let _ = writeln!(
                out,
                "not on sale yet: run `seatgate admin warm {}` to open the sale",
                c.id
            );
        }
    }
    out
}

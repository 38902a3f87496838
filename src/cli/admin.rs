//! `seatgate admin`: prepare a drop from the command line, talking to MySQL and Redis
//! directly (the same `SEATGATE_REDIS_URL` / `SEATGATE_DATABASE_URL` /
//! `SEATGATE_REDIS_NAMESPACE` as `serve`), no HTTP and no admin token involved.
//!
//! - `create-event`: an event and its seats from a CSV file or a row pattern. The
//!   inventory is validated whole before anything is written (errors as
//!   `file:line:column: message`, see [`crate::ops::import`]), then created in one
//!   MySQL transaction: all or nothing. `--warm` warms it right after.
//! - `warm`: MySQL → Redis and on sale, with a progress bar on a terminal.
//! - `audit`: Redis against MySQL; `--repair` gives Redis MySQL's state. Exits
//!   non-zero while the event is inconsistent.
//! - `events`: every event with its counts, as a table or `--json`.
//!
//! Each subcommand is a library function taking its arguments (so tests can point it
//! at their own database and namespace); [`run`] prints what they return.

use anyhow::{anyhow, bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sqlx::MySqlPool;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use super::StoreArgs;
use crate::claims::{RedisStore, SeatCounts};
use crate::cli::thousands;
use crate::db::events::{self as db_events, CreateEventError, NewEvent};
use crate::domain::{is_valid_event_id, EVENT_NAME_MAX, PER_USER_LIMIT_DEFAULT};
use crate::ops::audit::{self as audit_op, AuditReport, Divergence};
use crate::ops::import::{self, ImportErrors};
use crate::ops::{warm as warm_op, OpError};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

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
    /// Warm the event right after creating it (it goes on sale).
    #[arg(long)]
    pub warm: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WarmArgs {
    /// The event's id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// The event's id.
    pub id: String,
    /// Give Redis MySQL's state for every divergent seat (pending claims untouched),
    /// then audit again.
    #[arg(long)]
    pub repair: bool,
    /// List every divergence (otherwise the first 100).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs an admin subcommand and prints its outcome.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::CreateEvent(a) => match create_event(&a, true).await {
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
        },
        AdminCommand::Warm(a) => {
            let counts = warm(&a, true).await?;
            emit(&format!("{}\n", render_counts(&a.id, &counts)))
        }
        AdminCommand::Audit(a) => {
            let outcome = audit(&a).await?;
            emit(&render_audit(&a.id, &outcome, a.all))?;
            match outcome.remaining().len() {
                0 => Ok(()),
                n => bail!(
                    "event {} is inconsistent: {n} divergence{}{}",
                    a.id,
                    if n == 1 { "" } else { "s" },
                    if a.repair {
                        " remain after the repair"
                    } else {
                        " (run with --repair to give Redis MySQL's state)"
                    }
                ),
            }
        }
        AdminCommand::Events(a) => {
            let events = list_events(&a.store).await?;
            if a.json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&events)?))
            } else {
                emit(&render_events(&events))
            }
        }
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
    if !is_valid_event_id(id) {
        bail!("event id {id:?} is not valid: 1 to 64 characters of A-Z, a-z, 0-9, _ and -");
    }
    Ok(())
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

/// What `create-event` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Created {
    pub id: String,
    pub name: String,
    pub seats_total: usize,
    pub per_user_limit: u32,
    /// The seat ids of the first and last seat, in best-available order.
    pub first_seat: String,
    pub last_seat: String,
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
    check_event_id(&args.id)?;
    let name_len = args.name.chars().count();
    if !(1..=EVENT_NAME_MAX).contains(&name_len) {
        bail!("the event name must be 1 to {EVENT_NAME_MAX} characters (it has {name_len})");
    }
    let seats = read_inventory(args)?;
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
        per_user_limit: args.per_user_limit,
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
        per_user_limit: args.per_user_limit,
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

async fn warm_with_bar(
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

/// What `audit` found, and after `--repair` what a second audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOutcome {
    pub report: AuditReport,
    /// The divergences of the audit after the repair (`None` without a repair).
    pub after_repair: Option<Vec<Divergence>>,
}

impl AuditOutcome {
    /// Divergences still there.
    pub fn remaining(&self) -> &[Divergence] {
        self.after_repair
            .as_deref()
            .unwrap_or(&self.report.divergences)
    }
}

/// Audits the event; with `--repair`, repairs Redis and audits again to check.
pub async fn audit(args: &AuditArgs) -> anyhow::Result<AuditOutcome> {
    check_event_id(&args.id)?;
    let redis = redis(&args.store).await?;
    let pool = mysql(&args.store).await?;
    let report = audit_op::audit(&redis, &pool, &args.id, args.repair)
        .await
        .map_err(|e| op_error(&args.id, e))?;
    let after_repair = if args.repair && !report.divergences.is_empty() {
        let again = audit_op::audit(&redis, &pool, &args.id, false)
            .await
            .map_err(|e| op_error(&args.id, e))?;
        Some(again.divergences)
    } else {
        None
    };
    Ok(AuditOutcome {
        report,
        after_repair,
    })
}

/// One event of `admin events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventListing {
    pub id: String,
    pub name: String,
    pub seats_total: u64,
    pub per_user_limit: u32,
    /// On sale in Redis (where the redis claim strategy looks).
    pub on_sale: bool,
    /// Redis's counts, when the event is warmed and on sale.
    pub redis: Option<RedisCounts>,
    pub mysql: MysqlCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisCounts {
    pub available: u64,
    pub pending: u64,
    pub booked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MysqlCounts {
    /// MySQL's own on-sale flag (set by warm).
    pub on_sale: bool,
    pub seats_booked: u64,
    pub bookings_confirmed: u64,
}

/// Every event, oldest first, with its counts in MySQL and (when warmed) Redis.
pub async fn list_events(store: &StoreArgs) -> anyhow::Result<Vec<EventListing>> {
    let redis = redis(store).await?;
    let pool = mysql(store).await?;
    let rows = db_events::list_events_with_counts(&pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let summary = redis.event_summary(&row.id).await?;
        out.push(EventListing {
            on_sale: summary.is_some(),
            redis: summary.map(|s| RedisCounts {
                available: s.available,
                pending: s.pending,
                booked: s.booked,
            }),
            mysql: MysqlCounts {
                on_sale: row.on_sale,
                seats_booked: row.seats_booked,
                bookings_confirmed: row.bookings_confirmed,
            },
            id: row.id,
            name: row.name,
            seats_total: row.seats_total,
            per_user_limit: row.per_user_limit,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Rendering

fn render_counts(id: &str, c: &SeatCounts) -> String {
    format!(
        "event {id} warmed and on sale: {} seats, {} available, {} pending, {} booked",
        thousands(c.seats_total),
        thousands(c.available),
        thousands(c.pending),
        thousands(c.booked)
    )
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

/// Rows shown by `audit` without `--all`.
const AUDIT_SHOWN: usize = 100;

fn render_audit(id: &str, outcome: &AuditOutcome, all: bool) -> String {
    let mut out = String::new();
    let found = &outcome.report.divergences;
    if found.is_empty() {
        let _ = writeln!(out, "event {id}: Redis and MySQL agree (no divergences)");
        return out;
    }
    let shown = if all { found.len() } else { AUDIT_SHOWN };
    let rows: Vec<[String; 3]> = found
        .iter()
        .take(shown)
        .map(|d| [d.seat.clone(), d.redis.clone(), d.mysql.clone()])
        .collect();
    out.push_str(&table(&["SEAT", "REDIS", "MYSQL"], &rows, &[false; 3]));
    if found.len() > shown {
        let _ = writeln!(
            out,
            "… and {} more (--all lists them all)",
            found.len() - shown
        );
    }
    let _ = write!(
        out,
        "event {id}: {} divergence{}",
        found.len(),
        if found.len() == 1 { "" } else { "s" }
    );
    match &outcome.after_repair {
        None => {
            let _ = writeln!(out, ", not repaired");
        }
        Some(left) if left.is_empty() => {
            let _ = writeln!(
                out,
                ", repaired: Redis has MySQL's state, and a second audit finds none"
            );
        }
        Some(left) => {
            let _ = writeln!(
                out,
                ", repaired what could be; a second audit still finds {}{}",
                left.len(),
                if left.iter().any(|d| d.mysql == "missing") {
                    " (seats Redis has and MySQL does not are left for a human to look at)"
                } else {
                    ""
                }
            );
        }
    }
    out
}

/// Longest event name shown in the table.
const NAME_SHOWN: usize = 32;

fn render_events(events: &[EventListing]) -> String {
    if events.is_empty() {
        return "no events\n".to_owned();
    }
    let dash = || "-".to_owned();
    let mut lost = false;
    let rows: Vec<[String; 9]> = events
        .iter()
        .map(|e| {
            let name = if e.name.chars().count() > NAME_SHOWN {
                let head: String = e.name.chars().take(NAME_SHOWN - 1).collect();
                format!("{head}…")
            } else {
                e.name.clone()
            };
            let on_sale = match (e.on_sale, e.mysql.on_sale) {
                (true, _) => "yes".to_owned(),
                (false, true) => {
                    lost = true;
                    "no*".to_owned()
                }
                (false, false) => "no".to_owned(),
            };
            let r = e.redis.as_ref();
            [
                e.id.clone(),
                name,
                thousands(e.seats_total),
                on_sale,
                r.map_or_else(dash, |r| thousands(r.available)),
                r.map_or_else(dash, |r| thousands(r.pending)),
                r.map_or_else(dash, |r| thousands(r.booked)),
                thousands(e.mysql.seats_booked),
                thousands(e.mysql.bookings_confirmed),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "NAME",
            "SEATS",
            "ON SALE",
            "AVAILABLE",
            "PENDING",
            "BOOKED",
            "MYSQL BOOKED",
            "CONFIRMED",
        ],
        &rows,
        &[false, false, true, false, true, true, true, true, true],
    );
    out.push_str(
        "AVAILABLE/PENDING/BOOKED: seats in Redis (- when not warmed); \
         MYSQL BOOKED: seats booked in MySQL; CONFIRMED: confirmed bookings\n",
    );
    if lost {
        out.push_str(
            "* on sale in MySQL but not in Redis (Redis lost its data?): \
             `seatgate admin warm ID` puts it back\n",
        );
    }
    out
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

    #[test]
    fn events_table_marks_what_redis_lost() {
        let e = EventListing {
            id: "wc".into(),
            name: "WordCamp".into(),
            seats_total: 600,
            per_user_limit: 4,
            on_sale: false,
            redis: None,
            mysql: MysqlCounts {
                on_sale: true,
                seats_booked: 3,
                bookings_confirmed: 2,
            },
        };
        let t = render_events(&[e]);
        assert!(t.contains("wc  WordCamp    600  no*"), "{t}");
        assert!(t.contains("* on sale in MySQL but not in Redis"), "{t}");
    }
}

//! `seatgate admin audit`: compare an event's seats in Redis and MySQL; `--repair`
//! gives Redis MySQL's state and audits again. Exits non-zero while the event is
//! inconsistent.

use anyhow::bail;
use clap::Args;
use std::fmt::Write as _;

use super::{check_event_id, emit, mysql, op_error, redis, table};
use crate::cli::StoreArgs;
use crate::ops::audit::{self as audit_op, AuditReport, Divergence};

/// `audit`'s options.
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

/// Audits the event, prints the divergences, and fails while any remain.
pub(super) async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let outcome = audit(&args).await?;
    emit(&render_audit(&args.id, &outcome, args.all))?;
    match outcome.remaining().len() {
        0 => Ok(()),
        n => bail!(
            "event {} is inconsistent: {n} divergence{}{}",
            args.id,
            if n == 1 { "" } else { "s" },
            if args.repair {
                " remain after the repair"
            } else {
                " (run with --repair to give Redis MySQL's state)"
            }
        ),
    }
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

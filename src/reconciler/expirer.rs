//! The expirer: gives back the seats of holds that ran out.
//!
//! Every [`EXPIRE_EVERY`] it gathers the bookings whose deadline has passed from two
//! places, and expires each through `ops::hold::expire_due`, which decides in MySQL
//! under the booking's seat locks (a checkout racing with it at the deadline is
//! decided there too, exactly once) and then has Redis follow:
//! - each registered event's holds zset in Redis (`{e:ID}:holds`, booking id scored
//!   by deadline), which `confirm.lua` fills as the reconciler persists holds. An
//!   entry leaves it only when `cancel.lua` frees the booking or `confirm.lua`
//!   confirms it: so a follow-up Redis missed (down at that instant) stays due and is
//!   finished here;
//! - MySQL's held bookings past their deadline (`bookings_by_expiry`), which finds
//!   the holds whose zset entry Redis lost (a restart from older data, a failover).
//!
//! The deadlines live in the stores, not in this process: a restarted reconciler
//! picks up where the last one left, and several reconcilers may run expirers side
//! by side (the locks make the second one's work a no-op). The claim path pays
//! nothing for it: `claim.lua` only stamps the deadline on the booking record and
//! the outbox entry. Expiry is at most `EXPIRE_EVERY` plus one pass late, well inside
//! the contract's 2 s, while MySQL and Redis answer.

use futures::StreamExt;
use std::collections::HashSet;
use std::time::Duration;

use super::Reconciler;
use crate::clock::unix_millis;
use crate::db;
use crate::ops::hold::{self, Expiry};

/// How often the expirer looks for holds that ran out.
pub(super) const EXPIRE_EVERY: Duration = Duration::from_millis(250);

/// Most due holds one pass takes from each event's zset, and from MySQL; more wait
/// for the next pass (a quarter of a second later).
const DUE_PER_PASS: usize = 500;

/// Expiries in flight at once (each one MySQL transaction and one Redis script).
const IN_FLIGHT: usize = 8;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Holds expired now.
    pub expired: usize,
    /// Bookings found due in Redis that MySQL had ended otherwise (or extended):
    /// Redis follows MySQL now.
    pub followed: usize,
    /// Bookings whose expiry failed (retried next pass).
    pub failed: usize,
}

impl Reconciler {
    /// One expiry pass over every registered event of this database (see the module
    /// documentation). [`Reconciler::run`] runs one every [`EXPIRE_EVERY`].
    pub async fn expire_holds(&self) -> anyhow::Result<ExpiryReport> {
        let now = unix_millis();
        let events = self.registered().await?;
        let mut due: Vec<String> = Vec::new();
        let from_redis = futures::future::join_all(
            events
                .iter()
                .map(|event| self.redis.holds_due(event, now, DUE_PER_PASS)),
        )
        .await;
        for (event, found) in events.iter().zip(from_redis) {
            match found {
                Ok(found) => due.extend(found.into_iter().map(|(bid, _)| bid)),
                Err(err) => {
                    tracing::warn!(event.id = %event, error = %err, "cannot read the event's due holds")
                }
            }
        }
        due.extend(
            db::bookings::due_holds(&self.db, now, DUE_PER_PASS)
                .await?
                .into_iter()
                .map(|(bid, _)| bid),
        );
        let mut seen = HashSet::new();
        due.retain(|bid| seen.insert(bid.clone()));

        let mut report = ExpiryReport::default();
        let outcomes: Vec<_> = futures::stream::iter(due)
            .map(|bid| async move {
                let outcome = hold::expire_due(&self.redis, &self.db, &bid, now).await;
                (bid, outcome)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (bid, outcome) in outcomes {
            match outcome {
                Ok(Expiry::Expired(_)) => report.expired += 1,
                Ok(Expiry::Followed(_) | Expiry::NotDue) => report.followed += 1,
                Ok(Expiry::Unknown) => {
                    tracing::debug!(booking.id = %bid, "a due hold MySQL does not have; left alone");
                }
                Err(err) => {
                    report.failed += 1;
                    tracing::warn!(booking.id = %bid, error = %err, "cannot expire the hold yet; retrying");
                }
            }
        }
        Ok(report)
    }

    /// Runs expiry passes every [`EXPIRE_EVERY`] until the task is dropped or
    /// aborted (an aborted pass leaves nothing half done: its MySQL transaction rolls
    /// back, and a Redis follow-up it missed is found again in the holds zset).
    pub(super) async fn expire_forever(&self) {
        let mut tick = tokio::time::interval(EXPIRE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.expire_holds().await {
                tracing::warn!(error = %format!("{err:#}"), "expiry pass failed; retrying");
            }
        }
    }
}

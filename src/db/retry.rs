//! Whole-transaction retries of lock conflicts.
//!
//! InnoDB answers a deadlock (1213) by rolling back one transaction of the cycle, and a
//! lock wait timeout (1205) leaves the waiting statement failed. Either way the attempt
//! is lost as a whole: its reads were made under locks it no longer holds. So warm,
//! audit and cancel run their transaction through [`retry_lock_conflicts`], which
//! starts again from `BEGIN` after a backoff (the failed attempt's transaction was
//! dropped, hence rolled back). Each of them is idempotent, so an attempt whose
//! failure came after it had written to Redis is safe to repeat.
//!
//! One lock order on seat rows (see `db::bookings`) keeps seatgate's own transactions
//! from deadlocking each other; this covers everything else that can lock the same
//! rows (an operator's session, a future query that breaks the rule).
//!
//! Only lock conflicts are retried here, unlike the reconciler, which retries every
//! transient failure until its claim deadline: these operations answer a caller who
//! is waiting, and for a lost connection or a read-only server a quick 503 (the
//! caller may retry, everything here is idempotent) serves better than seconds of
//! retrying inside one request.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

/// Attempts in all, the first included.
pub(crate) const ATTEMPTS: u32 = 5;

/// Cap of the backoff between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// True for a deadlock (1213) or a lock wait timeout (1205).
pub(crate) fn is_lock_conflict(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|e| matches!(e.number(), 1205 | 1213)),
        _ => false,
    }
}

/// True when `err`, or an error in its chain of sources, is a lock conflict.
fn caused_by_lock_conflict(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<sqlx::Error>()
            .is_some_and(is_lock_conflict)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Runs `attempt` (one whole transaction, from `BEGIN` to `COMMIT`) until it succeeds,
/// fails with anything but a lock conflict, or has failed [`ATTEMPTS`] times; between
/// attempts, capped exponential backoff with full jitter (as the reconciler's). The
/// error may wrap the `sqlx::Error` (found through `source()`), as `OpError` does.
pub(crate) async fn retry_lock_conflicts<T, E, F, Fut>(
    operation: &'static str,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Error + 'static,
{
    let mut failures = 0;
    loop {
        match attempt().await {
            Err(err) if failures + 1 < ATTEMPTS && caused_by_lock_conflict(&err) => {
                failures += 1;
                tracing::warn!(operation, failures, error = %err, "lock conflict; retrying the transaction");
                tokio::time::sleep(crate::backoff::backoff(failures, MAX_BACKOFF)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: {0}")]
    struct Wrapper(#[source] sqlx::Error);

    #[test]
    fn only_deadlocks_and_lock_wait_timeouts_are_lock_conflicts() {
        assert!(!is_lock_conflict(&sqlx::Error::PoolTimedOut));
        assert!(!caused_by_lock_conflict(&Wrapper(sqlx::Error::Io(
            std::io::Error::other("connection reset")
        ))));
    }

    #[tokio::test]
    async fn other_failures_are_returned_at_once() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Wrapper> = retry_lock_conflicts("test", || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(Wrapper(sqlx::Error::PoolTimedOut))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}

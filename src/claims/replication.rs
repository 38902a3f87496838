//! Replication group commit: with `SEATGATE_REDIS_MIN_REPLICAS=N` (N >= 1) a claim is
//! answered 202 only once N replicas hold it, so a failover to one of them loses no
//! acknowledged claim (README.md, "What survives what").
//!
//! Redis's `WAIT n timeout` blocks until `n` replicas have acknowledged every write its
//! client connection sent before it, or the timeout passes, and answers how many did.
//! One `WAIT` per claim would cost each claim a replica round trip on top of its own;
//! [`GroupCommit`] shares them instead. Claims whose script replies have arrived queue
//! for the next round; one round at a time is in flight per store; the round's `WAIT`
//! answers every claim of that round at once. So the cost is about one replica round
//! trip per claim however many claims arrive together, and a round carries more claims
//! the busier the gateway is.
//!
//! **Why a round covers its claims.** A claim joins a round only after its script reply
//! arrived, so the script has run on the primary. The round is closed (no one joins it
//! any more) before its `WAIT` is sent. A round sends `SET <mark>` and then `WAIT`, in
//! one pipeline: the mark is a write sent after every one of the round's claims had run,
//! so the primary runs it after them, and a `WAIT` covers its own connection's writes,
//! the mark included, and so every write the primary ran before the mark, whichever
//! connection sent it (the replication stream is one sequence). A bare `WAIT` would
//! cover only the writes of its own connection: wrong twice over here. A replayed claim
//! (a retried Idempotency-Key) wrote nothing this time; its claim may have been
//! written by another gateway, or by this one before a reconnect. And a connection
//! that reconnected between a claim and the `WAIT` has written nothing, so a bare `WAIT`
//! on it would answer at once, covering nothing.
//!
//! **Why one round at a time.** A round that starts while another is in flight could
//! only cover the same claims or later ones, and would block its connection beside the
//! first; waiting for the first to return and then covering everyone who arrived
//! meanwhile in one round costs less. The claims that arrive during a round wait for
//! the next one, which starts as soon as the current one returns if anyone waits.
//!
//! **Failure.** A `WAIT` that answers fewer replicas than required (its timeout,
//! `SEATGATE_REDIS_REPLICATION_TIMEOUT_MS`, passed), or that fails, fails every claim
//! of its round: the claim ran on the primary, but nothing says a replica has it, so
//! the outcome is unknown to the client, who is answered 503 `unavailable` with
//! Retry-After. A retry with the same Idempotency-Key replays the claim (and waits for
//! the replicas again) if the claim survived, or makes a fresh one if it did not.
//!
//! The rounds' logic is generic over how a `WAIT` is sent ([`GroupCommit::new`]), so it
//! is tested here without Redis; [`GroupCommit::for_store`] sends them through a
//! [`RedisStore`].

use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use super::{ClaimOutcome, RedisStore};
use crate::telemetry;

/// Why the claims of a round could not be acknowledged. The claims themselves ran on
/// the primary; whether a replica has them is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// `WAIT` answered: fewer replicas than required acknowledged within the timeout.
    #[error("{acked} of the {required} required replicas acknowledged the claim in time")]
    TooFewReplicas { acked: u64, required: u64 },
    /// The `WAIT` (or its mark) failed or timed out on the way.
    #[error("waiting for the replicas failed: {0}")]
    WaitFailed(String),
    /// The round's task ended before answering (the runtime is shutting down).
    #[error("the replication round was abandoned")]
    Abandoned,
}

/// A round's answer, shared by all its claims.
type RoundResult = Result<(), ReplicationError>;

/// Sends one `WAIT` (with its mark) and answers how many replicas acknowledged.
type SendWait = dyn Fn() -> BoxFuture<'static, Result<u64, String>> + Send + Sync;

/// Shares `WAIT` rounds among concurrent claims (see the module docs). Cheap to clone:
/// clones share the rounds.
#[derive(Clone)]
pub struct GroupCommit {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replicas a round needs.
    required: u64,
    send: Box<SendWait>,
    /// Held only to join or take a round, never across an await.
    state: Mutex<State>,
    rounds: AtomicU64,
    claims: AtomicU64,
}

struct State {
    /// True while a driver task runs rounds. It clears this (under the lock) when it
    /// finds no claim waiting, so a claim that joins afterwards starts a new driver, and
    /// there is never more than one.
    driving: bool,
    /// The round that a claim joining now belongs to. Its `WAIT` is not sent yet: the
    /// driver swaps it for a fresh one (closing it) before sending.
    next: Round,
}

/// One round: how many claims joined it, and where its answer is published.
struct Round {
    claims: u64,
    answer: watch::Sender<Option<RoundResult>>,
}

impl Round {
    fn new() -> Self {
        Self {
            claims: 0,
            answer: watch::Sender::new(None),
        }
    }
}

/// Counters of a [`GroupCommit`] since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// `WAIT` rounds sent.
    pub rounds: u64,
    /// Claims that joined a round.
    pub claims: u64,
}

impl GroupCommit {
    /// Rounds that need `required` replicas, each sending its `WAIT` with `send`, which
    /// answers how many replicas acknowledged (or why it could not tell).
    pub fn new<F>(required: u32, send: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<u64, String>> + Send + Sync + 'static,
    {
        Self {
            inner: Arc::new(Inner {
                required: u64::from(required),
                send: Box::new(send),
                state: Mutex::new(State {
                    driving: false,
                    next: Round::new(),
                }),
                rounds: AtomicU64::new(0),
                claims: AtomicU64::new(0),
            }),
        }
    }

    /// Rounds whose `WAIT`s `store` sends, needing `required` replicas within `timeout`.
    /// The `WAIT` is one of `store`'s calls, whose own timeout (`SEATGATE_REDIS_TIMEOUT_MS`)
    /// cuts it short if `timeout` is longer: keep `timeout` below it.
    pub fn for_store(store: RedisStore, required: u32, timeout: Duration) -> Self {
        Self::new(required, move || {
            let store = store.clone();
            Box::pin(async move {
                store
                    .wait_for_replicas(required, timeout)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    }

    /// Replicas each round needs.
    pub fn required(&self) -> u64 {
        self.inner.required
    }

    /// Rounds sent and claims covered so far.
    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            rounds: self.inner.rounds.load(Ordering::Relaxed),
            claims: self.inner.claims.load(Ordering::Relaxed),
        }
    }

    /// Waits until a `WAIT` sent after this call has confirmed the required replicas:
    /// call it once the claim's script reply has arrived. An error means the claim
    /// may or may not be on a replica (answer 503).
    pub async fn covered(&self) -> RoundResult {
        let (mut answer, start_driver) = {
            let mut state = lock(&self.inner.state);
            state.next.claims += 1;
            let answer = state.next.answer.subscribe();
            let start_driver = !state.driving;
            state.driving = true;
            (answer, start_driver)
        };
        if start_driver {
            tokio::spawn(drive(self.inner.clone()));
        }
        let answered = match answer.wait_for(Option::is_some).await {
            Ok(result) => result.clone(),
            // The driver was dropped before it answered this round.
            Err(_) => None,
        };
        answered.unwrap_or(Err(ReplicationError::Abandoned))
    }
}

/// The state, even if a panic elsewhere poisoned its lock: every change to it is one
/// assignment, so no panic leaves it half-made.
fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs rounds while claims wait for one, then stops (see [`State::driving`]).
async fn drive(inner: Arc<Inner>) {
    loop {
        let round = {
            let mut state = lock(&inner.state);
            if state.next.claims == 0 {
                state.driving = false;
                return;
            }
            std::mem::replace(&mut state.next, Round::new())
        };
        // The round is closed: everyone in it joined before this WAIT is sent.
        let started = Instant::now();
        let acked = (inner.send)().await;
        let result = match acked {
            Ok(acked) if acked >= inner.required => Ok(()),
            Ok(acked) => Err(ReplicationError::TooFewReplicas {
                acked,
                required: inner.required,
            }),
            Err(e) => Err(ReplicationError::WaitFailed(e)),
        };
        inner.rounds.fetch_add(1, Ordering::Relaxed);
        inner.claims.fetch_add(round.claims, Ordering::Relaxed);
        telemetry::replication_round(round_label(&result), round.claims, started.elapsed());
        if let Err(err) = &result {
            tracing::warn!(claims = round.claims, error = %err,
                "replicas did not confirm a round of claims; answering them 503");
        }
        round.answer.send_replace(Some(result));
    }
}

/// The `result` label of a round in the metrics.
fn round_label(result: &RoundResult) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(ReplicationError::TooFewReplicas { .. }) => "too_few_replicas",
        Err(_) => "failed",
    }
}

/// True when a claim with this outcome is about to be answered 202 `pending`: a fresh
/// pending claim, or a replay of one whose first answer was a 202 (a replay of a
/// `Prefer: wait` claim answered 201 or 409 is not a 202 again).
pub fn acknowledges_pending(outcome: &ClaimOutcome) -> bool {
    match outcome {
        ClaimOutcome::Pending { .. } => true,
        ClaimOutcome::Replay { first, answered } => {
            matches!(**first, ClaimOutcome::Pending { .. }) && matches!(answered, None | Some(202))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::{mpsc, Mutex as AsyncMutex};

    /// A `WAIT` that the test answers: each round announces itself on `sent` and then
    /// waits for the test to send its answer.
    struct FakeReplicas {
        commit: GroupCommit,
        sent: mpsc::UnboundedReceiver<usize>,
        answers: mpsc::UnboundedSender<Result<u64, String>>,
    }

    fn fake(required: u32) -> FakeReplicas {
        let (sent_tx, sent) = mpsc::unbounded_channel();
        let (answers, answers_rx) = mpsc::unbounded_channel::<Result<u64, String>>();
        let answers_rx = Arc::new(AsyncMutex::new(answers_rx));
        let calls = Arc::new(AtomicUsize::new(0));
        let commit = GroupCommit::new(required, move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = sent_tx.send(n);
            let answers_rx = answers_rx.clone();
            Box::pin(async move {
                let answer = answers_rx.lock().await.recv().await;
                answer.unwrap_or_else(|| Err("test over".into()))
            })
        });
        FakeReplicas {
            commit,
            sent,
            answers,
        }
    }

    fn spawn_claim(commit: &GroupCommit) -> tokio::task::JoinHandle<RoundResult> {
        let commit = commit.clone();
        tokio::spawn(async move { commit.covered().await })
    }

    /// Lets spawned tasks run until they are all parked.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_lone_claim_is_covered_by_one_round() {
        let mut f = fake(1);
        let claim = spawn_claim(&f.commit);
        assert_eq!(f.sent.recv().await, Some(1));
        f.answers.send(Ok(1)).unwrap();
        assert_eq!(claim.await.unwrap(), Ok(()));
        assert_eq!(
            f.commit.stats(),
            GroupCommitStats {
                rounds: 1,
                claims: 1
            }
        );
    }

    #[tokio::test]
    async fn claims_that_arrive_during_a_round_wait_for_the_next_and_share_it() {
        let mut f = fake(1);
        let first = spawn_claim(&f.commit);
        assert_eq!(f.sent.recv().await, Some(1), "round 1 is sent");

        // These replies arrived after round 1's WAIT was sent: it cannot cover them.
        let later: Vec<_> = (0..10).map(|_| spawn_claim(&f.commit)).collect();
        settle().await;
        f.answers.send(Ok(1)).unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));

        // Round 2 starts as soon as round 1 returns, for all ten at once.
        assert_eq!(f.sent.recv().await, Some(2));
        settle().await;
        assert!(
            later.iter().all(|c| !c.is_finished()),
            "no claim of round 2 is answered before its WAIT returns"
        );
        f.answers.send(Ok(1)).unwrap();
        for claim in later {
            assert_eq!(claim.await.unwrap(), Ok(()));
        }
        assert_eq!(
            f.commit.stats(),
            GroupCommitStats {
                rounds: 2,
                claims: 11
            }
        );
        assert!(f.sent.try_recv().is_err(), "no third round: nobody waits");
    }

    #[tokio::test]
    async fn at_most_one_wait_is_in_flight() {
        let mut f = fake(1);
        let claims: Vec<_> = (0..50).map(|_| spawn_claim(&f.commit)).collect();
        assert_eq!(f.sent.recv().await, Some(1));
        let more: Vec<_> = (0..50).map(|_| spawn_claim(&f.commit)).collect();
        settle().await;
        assert!(
            f.sent.try_recv().is_err(),
            "a second WAIT while the first is out"
        );
        f.answers.send(Ok(2)).unwrap();
        assert_eq!(f.sent.recv().await, Some(2));
        f.answers.send(Ok(2)).unwrap();
        for claim in claims.into_iter().chain(more) {
            assert_eq!(claim.await.unwrap(), Ok(()));
        }
        let stats = f.commit.stats();
        assert_eq!(stats.claims, 100);
        assert!(stats.rounds <= 3, "{stats:?}");
    }

    #[tokio::test]
    async fn too_few_replicas_or_a_failed_wait_fails_its_round_only() {
        let mut f = fake(2);
        let short = spawn_claim(&f.commit);
        assert_eq!(f.sent.recv().await, Some(1));
        f.answers.send(Ok(1)).unwrap();
        assert_eq!(
            short.await.unwrap(),
            Err(ReplicationError::TooFewReplicas {
                acked: 1,
                required: 2
            })
        );

        let broken = spawn_claim(&f.commit);
        assert_eq!(f.sent.recv().await, Some(2));
        f.answers.send(Err("connection reset".into())).unwrap();
        assert_eq!(
            broken.await.unwrap(),
            Err(ReplicationError::WaitFailed("connection reset".into()))
        );

        // The next round starts afresh.
        let fine = spawn_claim(&f.commit);
        assert_eq!(f.sent.recv().await, Some(3));
        f.answers.send(Ok(2)).unwrap();
        assert_eq!(fine.await.unwrap(), Ok(()));
    }

    #[test]
    fn only_answers_that_would_be_202_wait_for_replicas() {
        let pending = ClaimOutcome::Pending {
            booking_id: "b".into(),
            seats: vec!["A1".into()],
            expires_ms: None,
        };
        let replay = |answered| ClaimOutcome::Replay {
            first: Box::new(pending.clone()),
            answered,
        };
        assert!(acknowledges_pending(&pending));
        assert!(acknowledges_pending(&replay(None)));
        assert!(acknowledges_pending(&replay(Some(202))));
        assert!(!acknowledges_pending(&replay(Some(201))));
        assert!(!acknowledges_pending(&replay(Some(409))));
        assert!(!acknowledges_pending(&ClaimOutcome::SoldOut));
        assert!(!acknowledges_pending(&ClaimOutcome::Replay {
            first: Box::new(ClaimOutcome::SoldOut),
            answered: None,
        }));
    }
}

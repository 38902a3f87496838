//! A model-based randomized test of the Lua scripts: random interleavings of claims,
//! settlements, cancellations, warms and audit repairs, run on the real Redis and on a
//! small reference model written here in plain Rust, compared after every step. One
//! file because the model, its operations and the invariants are read together: each
//! operation's model step sits beside the script call it mirrors.
//!
//! # The world
//!
//! Each case is one small event (4 to 12 seats, so claims collide all the time) with a
//! per-user limit of 2 to 5, three users and two idempotency keys per user, and in half
//! the cases a per-user claim rate (one claim per 20 to 200 s, bursts of 1 to 3) on a
//! clock that moves 10 s per step (the rate state's expiry runs on Redis's own clock,
//! so the steps are far longer than a step really takes). The [`Model`] holds two things:
//!
//! - **Redis as the scripts should leave it**: each seat's state, each booking record
//!   (owner, seats, status), each user's tally, each idempotency record and each user's
//!   claim rate state (GCRA's theoretical arrival time). The model
//!   updates these by the rules the scripts' headers document, written again from those
//!   headers in Rust, never by reading Redis.
//! - **MySQL's truth**: which booking each seat is booked by, and the booking rows
//!   (confirmed, cancelled or rejected). The callers' protocols, as `reconciler/`,
//!   `ops/cancel.rs`, `ops/warm.rs` and `ops/audit.rs` follow them, decide how MySQL
//!   changes and what each script is passed (the seats' MySQL states for `reject.lua`,
//!   the inventory for `warm.lua`, the confirmed holdings for the tallies).
//!
//! The operations ([`Op`]) are what the gateway does to an event: a claim (specific
//! seats, some unknown to the event, or a quantity; with or without an idempotency key),
//! a client's retry of an earlier request, the reconciler settling a booking's outbox
//! entry (booking it, rejecting it, or redelivering it once settled), a user's
//! cancellation, a warm, and an audit with repair. The script that follows a settle's or
//! a cancel's MySQL COMMIT can run late, after other operations ([`Then::Later`]), or
//! never, the process dying in between ([`Then::Never`]): that is how Redis and MySQL
//! come to disagree, and what redeliveries, warms and audit repairs are there for.
//!
//! # What is checked after every step
//!
//! Every script's reply equals the model's (who wins a seat, `sold_out`, `limit`,
//! unknown and taken seats, replays and reused keys, `rate_limited` and its wait; the status a settle script
//! reports; how many seats a warm changed; the counts after a warm), and Redis, read
//! directly, keeps these invariants ([`check`]):
//!
//! - `{e}:avail` holds exactly the available seats, each scored by its ordinal;
//! - the counters in `{e}:meta` (pending, booked, seats_total) equal the counts of the
//!   seat states in `{e}:seats` (the available count the API shows is avail's `ZCARD`,
//!   right by the previous invariant);
//! - every pending or booked seat's booking record lists it, with the matching status,
//!   and its `ords` field gives the ordinals of its seats;
//! - every live (pending or confirmed) booking holds each seat it lists, so no seat is
//!   in two live bookings;
//! - each user's tally equals the seat counts of their live bookings;
//! - the order list names the seats in ordinal order;
//!
//! and Redis's seat states, booking statuses and tallies equal the model's.
//!
//! `SEATGATE_MODEL_CASES` (default 64) and `SEATGATE_MODEL_STEPS` (the longest case,
//! default 120 steps; proptest draws lengths up to it) scale the run. A failure is
//! shrunk to a short sequence of operations; write it down as a regression test of its
//! own (see the end of this file).

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis::AsyncCommands;
use seatgate::claims::{ClaimOutcome, ClaimRequest, SeatCounts, Selection, UserRate};
use seatgate::domain::{BookingStatus, RejectReason, SeatId, SeatState, UserId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::helpers::REDIS_URL;
use crate::lua::Lab;

/// Users per case.
const USERS: usize = 3;
/// Idempotency keys per user.
const KEYS: usize = 2;
/// Seat ids a claim may name that the event does not have.
const UNKNOWN: usize = 2;
/// How far the clock moves per step, in milliseconds.
const STEP_MS: u64 = 10_000;
/// The clock at the first step (ms since the epoch).
const EPOCH_MS: u64 = 1_767_225_600_000;

/// The seat of ordinal `i`. Names sort against the ordinals (`Z0`, `Y1`, …), so a seat
/// put back at a wrong score, or sorted by name, shows.
fn seat_name(i: usize) -> String {
    format!("{}{i}", char::from(b'Z' - i as u8))
}

/// A seat id of a request: `i < n` is the seat of ordinal `i`, above that an id the
/// event does not have.
fn requested_seat(n: usize, i: usize) -> String {
    if i < n {
        seat_name(i)
    } else {
        format!("x{}", i - n)
    }
}

fn user_name(u: usize) -> String {
    format!("u{u}")
}

/// What a claim asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    /// These seats (indices as in [`requested_seat`]), distinct, in request order (the
    /// API refuses duplicates).
    Seats(Vec<usize>),
    /// The best available seats.
    Quantity(u32),
}

impl What {
    /// The request fingerprint the idempotency record keeps: equal for equal requests.
    fn fingerprint(&self) -> String {
        format!("{self:?}")
    }
}

/// How the reconciler decides a claim MySQL has not seen yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Book it if MySQL has its seats free (else reject it, `seats_taken`).
    Book,
    /// Turn it down whatever the seats (`deadline_exceeded`).
    Reject,
}

/// What becomes of the script a caller runs after its MySQL COMMIT (`confirm.lua`,
/// `cancel.lua`). A rejection runs `reject.lua` before its COMMIT, under the seats'
/// locks: for it, `Never` means the COMMIT is lost, and `Later` is `Now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Runs at once.
    Now,
    /// Runs at a later step ([`Op::Deliver`]), other operations in between: a confirm
    /// arriving after the booking was cancelled, a cancel after its seats were warmed
    /// back and sold again.
    Later,
    /// Never runs: the process died after the COMMIT. Redis and MySQL disagree until a
    /// redelivery, a repeated DELETE, a warm or an audit repair.
    Never,
}

/// One thing the gateway does to the event.
#[derive(Debug, Clone)]
enum Op {
    /// `claim.lua` for `user`, with idempotency key `key` if any.
    Claim {
        user: usize,
        what: What,
        key: Option<usize>,
    },
    /// An earlier claim request sent again, as a client retries: a replay with a key, a
    /// new claim without one.
    Retry { claim: Index },
    /// The reconciler settling a booking's outbox entry (a redelivery if it was settled
    /// before).
    Settle {
        booking: Index,
        verdict: Verdict,
        then: Then,
    },
    /// The owner's `DELETE` of a booking.
    Cancel { booking: Index, then: Then },
    /// A script held back by [`Then::Later`] finally runs.
    Deliver { call: Index },
    /// Admin warm: MySQL's inventory copied into Redis, `chunk` seats per `warm.lua`.
    Warm { chunk: usize },
    /// Admin audit with repair.
    Audit,
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    let what = prop_oneof![
        3 => prop::sample::subsequence((0..n + UNKNOWN).collect::<Vec<_>>(), 1..=3)
            .prop_shuffle()
            .prop_map(What::Seats),
        2 => (1..=3u32).prop_map(What::Quantity),
    ];
    // Claims dominate, so that seats run out and collide; delays and crashes are rare
    // enough that most bookings also take the ordinary path.
    let then = |now, later, never| prop_oneof![now => Just(Then::Now), later => Just(Then::Later), never => Just(Then::Never)];
    prop_oneof![
        8 => (0..USERS, what, prop::option::weighted(0.4, 0..KEYS))
            .prop_map(|(user, what, key)| Op::Claim { user, what, key }),
        1 => any::<Index>().prop_map(|claim| Op::Retry { claim }),
        5 => (
            any::<Index>(),
            prop_oneof![4 => Just(Verdict::Book), 1 => Just(Verdict::Reject)],
            then(8, 1, 1),
        )
            .prop_map(|(booking, verdict, then)| Op::Settle { booking, verdict, then }),
        3 => (any::<Index>(), then(6, 2, 2))
            .prop_map(|(booking, then)| Op::Cancel { booking, then }),
        1 => any::<Index>().prop_map(|call| Op::Deliver { call }),
        1 => (1..=n).prop_map(|chunk| Op::Warm { chunk }),
        1 => Just(Op::Audit),
    ]
}

/// The per-user claim rate of a case, if any: (claims per second, burst).
type Rate = Option<(f64, u32)>;

/// A case: seats in the event, per-user limit, claim rate, operations.
fn case(max_steps: usize) -> impl Strategy<Value = (usize, u32, Rate, Vec<Op>)> {
    let rate = prop::option::of((
        prop::sample::select(vec![0.005, 0.01, 0.02, 0.05]),
        1..=3u32,
    ));
    (4..=12usize, 2..=5u32, rate).prop_flat_map(move |(n, limit, rate)| {
        (
            Just(n),
            Just(limit),
            Just(rate),
            prop::collection::vec(op(n), 1..=max_steps),
        )
    })
}

/// A seat's state, in Redis or (never pending) in MySQL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seat {
    Available,
    Pending(String),
    Booked(String),
}

impl Seat {
    /// As `{e}:seats` and the scripts spell it.
    fn redis(&self) -> String {
        match self {
            Seat::Available => "available".into(),
            Seat::Pending(bid) => format!("pending:{bid}"),
            Seat::Booked(bid) => format!("booked:{bid}"),
        }
    }

    /// As the store's wrappers take it (MySQL's truth handed to reject and warm).
    fn state(&self) -> SeatState {
        match self {
            Seat::Available => SeatState::Available,
            Seat::Pending(bid) => SeatState::Pending(bid.clone()),
            Seat::Booked(bid) => SeatState::Booked(bid.clone()),
        }
    }
}

/// A booking record, as Redis should hold it.
#[derive(Debug, Clone)]
struct Record {
    user: usize,
    /// Ordinals, in the order the claim took them.
    seats: Vec<usize>,
    status: BookingStatus,
}

/// A booking row in MySQL.
#[derive(Debug, Clone)]
struct Row {
    user: usize,
    seats: Vec<usize>,
    status: BookingStatus,
    /// Only for a rejected row.
    reason: Option<RejectReason>,
}

/// A script call a caller's protocol decided on, with what it is passed.
#[derive(Debug, Clone)]
enum Call {
    Confirm,
    Reject {
        reason: RejectReason,
        truth: Vec<(usize, Seat)>,
    },
    Cancel {
        user: usize,
        seats: Vec<usize>,
    },
}

/// The reference model: Redis as the scripts should leave it, and MySQL's truth.
#[derive(Debug)]
struct Model {
    n: usize,
    limit: u32,
    /// Redis `{e}:seats`, by ordinal.
    seats: Vec<Seat>,
    /// Redis `{e}:b:<bid>`.
    records: BTreeMap<String, Record>,
    /// Redis `{e}:user:<uid>`: booking id → seats, by user.
    tallies: Vec<BTreeMap<String, usize>>,
    /// Redis `{e}:idem:…`: (user, key) → (fingerprint, recorded outcome).
    idempotency: HashMap<(usize, usize), (String, ClaimOutcome)>,
    /// The claim rate: (claims per second, burst); `None`: no limit.
    rate: Rate,
    /// Redis `{e}:rate:<uid>`: each user's theoretical arrival time (ms), by user.
    tats: Vec<Option<f64>>,
    /// MySQL: the booking each seat is booked by, by ordinal.
    mysql_seats: Vec<Option<String>>,
    /// MySQL's booking rows.
    mysql_rows: BTreeMap<String, Row>,
    /// Every claim request sent, for retries.
    requests: Vec<(usize, What, Option<usize>)>,
    /// Every booking made, in order (what `Settle` and `Cancel` pick from).
    bookings: Vec<String>,
}

impl Model {
    fn new(n: usize, limit: u32, rate: Rate) -> Self {
        Self {
            n,
            limit,
            rate,
            tats: vec![None; USERS],
            seats: vec![Seat::Available; n],
            records: BTreeMap::new(),
            tallies: vec![BTreeMap::new(); USERS],
            idempotency: HashMap::new(),
            mysql_seats: vec![None; n],
            mysql_rows: BTreeMap::new(),
            requests: Vec::new(),
            bookings: Vec::new(),
        }
    }

    fn truth(&self, i: usize) -> Seat {
        match &self.mysql_seats[i] {
            Some(bid) => Seat::Booked(bid.clone()),
            None => Seat::Available,
        }
    }

    // ---- The scripts, as their headers describe them. ----

    /// `claim.lua` at `now` (ms).
    fn claim(
        &mut self,
        bid: &str,
        user: usize,
        what: &What,
        key: Option<usize>,
        now: u64,
    ) -> ClaimOutcome {
        if let Some(key) = key {
            if let Some((fp, first)) = self.idempotency.get(&(user, key)) {
                return if *fp == what.fingerprint() {
                    ClaimOutcome::Replay {
                        first: Box::new(first.clone()),
                        answered: None,
                    }
                } else {
                    ClaimOutcome::KeyReused
                };
            }
        }
        // The event is always on sale here. The rate: GCRA, in the script's own
        // float arithmetic (so the waits compare exactly); a refusal changes nothing.
        let mut next_tat = None;
        if let Some((per_second, burst)) = self.rate {
            let t = now as f64;
            let interval = 1000.0 / per_second;
            let tat = self.tats[user].unwrap_or(t).max(t);
            let early = (tat - t) - f64::from(burst - 1) * interval;
            if early > 0.0 {
                return ClaimOutcome::RateLimited {
                    retry_after_ms: early.ceil().max(1.0) as u64,
                };
            }
            next_tat = Some(tat + interval);
        }
        let outcome = self.decide_claim(bid, user, what);
        if next_tat.is_some() {
            self.tats[user] = next_tat;
        }
        if let Some(key) = key {
            self.idempotency
                .insert((user, key), (what.fingerprint(), outcome.clone()));
        }
        outcome
    }

    fn decide_claim(&mut self, bid: &str, user: usize, what: &What) -> ClaimOutcome {
        let wanted = match what {
            What::Seats(seats) => seats.len(),
            What::Quantity(q) => *q as usize,
        };
        let held: usize = self.tallies[user].values().sum();
        if held + wanted > self.limit as usize {
            return ClaimOutcome::UserLimit(self.limit);
        }
        let chosen: Vec<usize> = match what {
            What::Seats(seats) => {
                let unknown: Vec<String> = seats
                    .iter()
                    .filter(|&&i| i >= self.n)
                    .map(|&i| requested_seat(self.n, i))
                    .collect();
                if !unknown.is_empty() {
                    return ClaimOutcome::UnknownSeats(unknown);
                }
                let taken: Vec<String> = seats
                    .iter()
                    .filter(|&&i| self.seats[i] != Seat::Available)
                    .map(|&i| seat_name(i))
                    .collect();
                if !taken.is_empty() {
                    return ClaimOutcome::SeatsUnavailable(taken);
                }
                seats.clone()
            }
            What::Quantity(_) => {
                let free: Vec<usize> = (0..self.n)
                    .filter(|&i| self.seats[i] == Seat::Available)
                    .take(wanted)
                    .collect();
                if free.len() < wanted {
                    return ClaimOutcome::SoldOut;
                }
                free
            }
        };
        for &i in &chosen {
            self.seats[i] = Seat::Pending(bid.to_owned());
        }
        self.tallies[user].insert(bid.to_owned(), chosen.len());
        self.records.insert(
            bid.to_owned(),
            Record {
                user,
                seats: chosen.clone(),
                status: BookingStatus::Pending,
            },
        );
        self.bookings.push(bid.to_owned());
        ClaimOutcome::Pending {
            booking_id: bid.to_owned(),
            seats: chosen.into_iter().map(seat_name).collect(),
            expires_ms: None,
        }
    }

    /// `confirm.lua`.
    fn confirm(&mut self, bid: &str) -> Option<BookingStatus> {
        let record = self.records.get_mut(bid)?;
        if record.status != BookingStatus::Pending {
            return Some(record.status);
        }
        for &i in &record.seats {
            if self.seats[i] == Seat::Pending(bid.to_owned()) {
                self.seats[i] = Seat::Booked(bid.to_owned());
            }
        }
        record.status = BookingStatus::Confirmed;
        Some(BookingStatus::Confirmed)
    }

    /// `reject.lua`.
    fn reject(&mut self, bid: &str, truth: &[(usize, Seat)]) -> Option<BookingStatus> {
        let record = self.records.get_mut(bid)?;
        if record.status != BookingStatus::Pending {
            return Some(record.status);
        }
        for (i, state) in truth {
            if self.seats[*i] == Seat::Pending(bid.to_owned()) {
                self.seats[*i] = state.clone();
            }
        }
        record.status = BookingStatus::Rejected;
        self.tallies[record.user].remove(bid);
        Some(BookingStatus::Rejected)
    }

    /// `cancel.lua`.
    fn cancel(&mut self, bid: &str, user: usize, seats: &[usize]) -> Option<BookingStatus> {
        let status = self.records.get(bid).map(|r| r.status);
        if status == Some(BookingStatus::Rejected) {
            return status;
        }
        for &i in seats {
            let held = [Seat::Pending(bid.to_owned()), Seat::Booked(bid.to_owned())];
            if held.contains(&self.seats[i]) {
                self.seats[i] = Seat::Available;
            }
        }
        self.tallies[user].remove(bid);
        let record = self.records.get_mut(bid)?;
        record.status = BookingStatus::Cancelled;
        Some(BookingStatus::Cancelled)
    }

    /// `warm.lua` with MySQL's states of `chunk`: the number of seats changed.
    fn warm_chunk(&mut self, chunk: &[usize]) -> i64 {
        let mut changed = 0;
        for &i in chunk {
            let truth = self.truth(i);
            if !matches!(self.seats[i], Seat::Pending(_)) && self.seats[i] != truth {
                self.seats[i] = truth;
                changed += 1;
            }
        }
        changed
    }

    /// `warm_finish.lua`'s counts.
    fn counts(&self) -> SeatCounts {
        let count = |f: fn(&Seat) -> bool| self.seats.iter().filter(|s| f(s)).count() as u64;
        SeatCounts {
            seats_total: self.n as u64,
            available: count(|s| *s == Seat::Available),
            pending: count(|s| matches!(s, Seat::Pending(_))),
            booked: count(|s| matches!(s, Seat::Booked(_))),
            held: 0,
        }
    }

    // ---- The callers' protocols: what MySQL does and which script follows. ----

    /// The reconciler settling `bid`'s outbox entry (`reconciler/settle.rs`): MySQL
    /// changes, and the script call that follows, if any, and whether it runs before
    /// the COMMIT (a rejection, run under the seats' locks; `Then::Never` loses its
    /// COMMIT).
    fn settle(&mut self, bid: &str, verdict: Verdict, then: Then) -> Option<(Call, bool)> {
        if let Some(row) = self.mysql_rows.get(bid) {
            // MySQL knew the booking: a redelivery; tell Redis what MySQL has.
            let call = match row.status {
                BookingStatus::Confirmed => Call::Confirm,
                BookingStatus::Cancelled => Call::Cancel {
                    user: row.user,
                    seats: row.seats.clone(),
                },
                // The model's events have no holds.
                BookingStatus::Held | BookingStatus::Expired => {
                    unreachable!("no holds in the model")
                }
                BookingStatus::Rejected | BookingStatus::Pending => Call::Reject {
                    reason: row.reason.unwrap_or(RejectReason::SeatsTaken),
                    truth: row.seats.iter().map(|&i| (i, self.truth(i))).collect(),
                },
            };
            let before_commit = matches!(call, Call::Reject { .. });
            return Some((call, before_commit));
        }
        let record = &self.records[bid];
        if record.status != BookingStatus::Pending {
            return None;
        }
        let (user, seats) = (record.user, record.seats.clone());
        let taken = seats.iter().any(|&i| self.mysql_seats[i].is_some());
        if taken || verdict == Verdict::Reject {
            let reason = if taken {
                RejectReason::SeatsTaken
            } else {
                RejectReason::DeadlineExceeded
            };
            let truth = seats.iter().map(|&i| (i, self.truth(i))).collect();
            if then != Then::Never {
                self.mysql_rows.insert(
                    bid.to_owned(),
                    Row {
                        user,
                        seats,
                        status: BookingStatus::Rejected,
                        reason: Some(reason),
                    },
                );
            }
            return Some((Call::Reject { reason, truth }, true));
        }
        for &i in &seats {
            self.mysql_seats[i] = Some(bid.to_owned());
        }
        self.mysql_rows.insert(
            bid.to_owned(),
            Row {
                user,
                seats,
                status: BookingStatus::Confirmed,
                reason: None,
            },
        );
        Some((Call::Confirm, false))
    }

    /// The owner's cancellation (`ops/cancel.rs`): MySQL first, then `cancel.lua`.
    /// `None` when the API refuses (a rejected booking).
    fn cancel_in_mysql(&mut self, bid: &str) -> Option<Call> {
        let record = &self.records[bid];
        let (user, seats) = (record.user, record.seats.clone());
        match self.mysql_rows.get_mut(bid) {
            Some(row) if row.status == BookingStatus::Rejected => return None,
            Some(row) if row.status == BookingStatus::Confirmed => {
                row.status = BookingStatus::Cancelled;
                for slot in &mut self.mysql_seats {
                    if slot.as_deref() == Some(bid) {
                        *slot = None;
                    }
                }
            }
            Some(_) => {}
            // Not in MySQL yet (pending, or a rejection whose COMMIT was lost): a
            // tombstone, so that the reconciler never books it.
            None => {
                self.mysql_rows.insert(
                    bid.to_owned(),
                    Row {
                        user,
                        seats: seats.clone(),
                        status: BookingStatus::Cancelled,
                        reason: None,
                    },
                );
            }
        }
        Some(Call::Cancel { user, seats })
    }

    /// What audit repair passes to `warm.lua` (seats in ordinal order whose Redis state
    /// differs from MySQL's, pending seats aside) and the bookings Redis showed on them
    /// (which warm, too, reads before it overwrites the seats).
    fn divergences(&self) -> (Vec<usize>, BTreeSet<String>) {
        let mut repairs = Vec::new();
        let mut stale = BTreeSet::new();
        for i in 0..self.n {
            let state = &self.seats[i];
            if !matches!(state, Seat::Pending(_)) && *state != self.truth(i) {
                if let Seat::Booked(bid) = state {
                    stale.insert(bid.clone());
                }
                repairs.push(i);
            }
        }
        (repairs, stale)
    }

    /// The confirmed holdings warm writes into the tallies: (user, booking, seats).
    fn confirmed_holdings(&self) -> Vec<(usize, String, usize)> {
        self.mysql_rows
            .iter()
            .filter(|(_, row)| row.status == BookingStatus::Confirmed)
            .map(|(bid, row)| (row.user, bid.clone(), row.seats.len()))
            .collect()
    }
}

/// One case: the lab on the real Redis, the model, and a step counter.
struct Harness {
    lab: Lab,
    model: Model,
    /// Booking ids are made by the caller (UUID v7 in the gateway); a counter here.
    next_bid: usize,
    /// Scripts held back by [`Then::Later`], with their booking.
    in_flight: Vec<(String, Call)>,
    /// How often each outcome came up, to show what the run covered.
    seen: BTreeMap<String, usize>,
    /// The clock claims are made at (ms), [`STEP_MS`] on per step.
    now: u64,
}

impl Harness {
    async fn new(n: usize, limit: u32) -> Self {
        Self::with_rate(n, limit, None).await
    }

    async fn with_rate(n: usize, limit: u32, rate: Rate) -> Self {
        let names: Vec<String> = (0..n).map(seat_name).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut lab = Lab::new(REDIS_URL, &names, &[], limit).await;
        lab.store = lab
            .store
            .clone()
            .with_user_rate(rate.and_then(|(per_second, burst)| UserRate::new(per_second, burst)));
        Self {
            lab,
            model: Model::new(n, limit, rate),
            now: EPOCH_MS,
            next_bid: 0,
            in_flight: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    fn note(&mut self, what: impl Into<String>) {
        *self.seen.entry(what.into()).or_default() += 1;
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.now += STEP_MS;
        match op {
            Op::Claim { user, what, key } => self.claim(*user, what.clone(), *key).await,
            Op::Retry { claim } => {
                if self.model.requests.is_empty() {
                    return Ok(());
                }
                let (user, what, key) = claim.get(&self.model.requests).clone();
                self.claim(user, what, key).await
            }
            Op::Settle {
                booking,
                verdict,
                then,
            } => {
                let Some(bid) = self.pick(booking) else {
                    return Ok(());
                };
                self.settle(bid, *verdict, *then).await
            }
            Op::Cancel { booking, then } => {
                let Some(bid) = self.pick(booking) else {
                    return Ok(());
                };
                self.cancel(bid, *then).await
            }
            Op::Deliver { call } => {
                if self.in_flight.is_empty() {
                    return Ok(());
                }
                let (bid, call) = self.in_flight.remove(call.index(self.in_flight.len()));
                self.call(&bid, call).await
            }
            Op::Warm { chunk } => self.warm(*chunk).await,
            Op::Audit => self.audit().await,
        }
    }

    async fn settle(
        &mut self,
        bid: String,
        verdict: Verdict,
        then: Then,
    ) -> Result<(), TestCaseError> {
        match self.model.settle(&bid, verdict, then) {
            Some((call, true)) => self.call(&bid, call).await,
            Some((call, false)) => self.follow_up(bid, call, then).await,
            None => Ok(()),
        }
    }

    async fn cancel(&mut self, bid: String, then: Then) -> Result<(), TestCaseError> {
        if self.model.records[&bid].status == BookingStatus::Rejected
            && self.model.mysql_rows.contains_key(&bid)
        {
            // The API refuses before MySQL: nothing to do.
            return Ok(());
        }
        match self.model.cancel_in_mysql(&bid) {
            Some(call) => self.follow_up(bid, call, then).await,
            None => Ok(()),
        }
    }

    /// The script that follows a COMMIT: run now, held back, or lost.
    async fn follow_up(
        &mut self,
        bid: String,
        call: Call,
        then: Then,
    ) -> Result<(), TestCaseError> {
        match then {
            Then::Now => self.call(&bid, call).await,
            Then::Later => {
                self.in_flight.push((bid, call));
                Ok(())
            }
            Then::Never => {
                self.note("died between a COMMIT and its script");
                Ok(())
            }
        }
    }

    fn pick(&self, booking: &Index) -> Option<String> {
        (!self.model.bookings.is_empty()).then(|| booking.get(&self.model.bookings).clone())
    }

    async fn claim(
        &mut self,
        user: usize,
        what: What,
        key: Option<usize>,
    ) -> Result<(), TestCaseError> {
        let bid = format!("b{}", self.next_bid);
        self.next_bid += 1;
        let n = self.model.n;
        let names: Vec<SeatId>;
        let selection = match &what {
            What::Seats(seats) => {
                names = seats
                    .iter()
                    .map(|&i| SeatId::parse(requested_seat(n, i)).expect("a well-formed seat id"))
                    .collect();
                Selection::Seats(&names)
            }
            What::Quantity(q) => Selection::Quantity(*q),
        };
        let key_name = key.map(|k| format!("k{k}"));
        let fingerprint = what.fingerprint();
        let got = self
            .lab
            .store
            .claim(&ClaimRequest {
                event_id: &self.lab.event_id(),
                user_id: &UserId::parse(user_name(user)).unwrap(),
                booking_id: &bid,
                selection,
                idempotency: key_name.as_deref().map(|k| (k, fingerprint.as_str())),
                now_ms: self.now,
            })
            .await
            .map_err(fail)?;
        let want = self.model.claim(&bid, user, &what, key, self.now);
        self.model.requests.push((user, what, key));
        self.note(format!("claim.lua {}", outcome_name(&want)));
        prop_assert_eq!(got, want, "claim.lua's reply");
        // The user's rate state, while it still matters (it expires on Redis's clock).
        if let Some(tat) = self.model.tats[user].filter(|&tat| tat > self.now as f64) {
            let mut conn = self.lab.store.connection();
            let key = self.lab.store.keys(&self.lab.event).rate(&user_name(user));
            let stored: Option<String> = conn.get(&key).await.map_err(fail)?;
            let stored = stored.and_then(|s| s.parse::<f64>().ok());
            prop_assert_eq!(stored, Some(tat), "{}'s rate state", user_name(user));
        }
        Ok(())
    }

    /// Runs a settle script in Redis and in the model and compares the replies.
    async fn call(&mut self, bid: &str, call: Call) -> Result<(), TestCaseError> {
        let (store, event) = (&self.lab.store, self.lab.event.as_str());
        let names = |seats: &[usize]| seats.iter().map(|&i| seat_name(i)).collect::<Vec<_>>();
        let (script, got, want) = match call {
            Call::Confirm => {
                let record = &self.model.records[bid];
                let seats = names(&record.seats);
                let got = store
                    .confirm(event, bid, &user_name(record.user), &seats)
                    .await;
                ("confirm.lua", got, self.model.confirm(bid))
            }
            Call::Reject { reason, truth } => {
                let record = &self.model.records[bid];
                let states: Vec<(String, SeatState)> = truth
                    .iter()
                    .map(|(i, state)| (seat_name(*i), state.state()))
                    .collect();
                let got = store
                    .reject(event, bid, &user_name(record.user), reason, &states)
                    .await;
                ("reject.lua", got, self.model.reject(bid, &truth))
            }
            Call::Cancel { user, seats } => {
                let got = store
                    .cancel(event, bid, &user_name(user), &names(&seats))
                    .await;
                ("cancel.lua", got, self.model.cancel(bid, user, &seats))
            }
        };
        prop_assert_eq!(got.map_err(fail)?, want, "{}'s reply for {}", script, bid);
        self.note(format!("{script} {want:?}"));
        Ok(())
    }

    /// `ops/warm.rs`: the inventory in ordinal order, `chunk` seats per `warm.lua`, the
    /// cancellations Redis missed finished as audit repair finishes them, the confirmed
    /// holdings into the tallies, then `warm_finish.lua` opening the sale.
    async fn warm(&mut self, chunk: usize) -> Result<(), TestCaseError> {
        let (_, stale) = self.model.divergences();
        self.note("warm");
        let ordinals: Vec<usize> = (0..self.model.n).collect();
        for part in ordinals.chunks(chunk) {
            self.warm_chunk(part).await?;
        }
        self.finish_cancellations(stale).await?;
        let holdings = self.model.confirmed_holdings();
        let rows: Vec<(String, String, i64)> = holdings
            .iter()
            .map(|(user, bid, seats)| (user_name(*user), bid.clone(), *seats as i64))
            .collect();
        self.lab
            .store
            .set_holdings(&self.lab.event, &rows)
            .await
            .map_err(fail)?;
        for (user, bid, seats) in holdings {
            self.model.tallies[user].insert(bid, seats);
        }
        self.warm_finish(true).await
    }

    /// `ops/audit.rs` with repair: `warm.lua` over the divergent seats, `cancel.lua` for
    /// each booking Redis showed on one of them that MySQL has cancelled, then
    /// `warm_finish.lua` (leaving the on-sale flag alone).
    async fn audit(&mut self) -> Result<(), TestCaseError> {
        let (repairs, stale) = self.model.divergences();
        if repairs.is_empty() {
            return Ok(());
        }
        self.note("audit repair");
        self.warm_chunk(&repairs).await?;
        self.finish_cancellations(stale).await?;
        self.warm_finish(false).await
    }

    /// `ops/audit.rs`, `finish_cancellations`: `cancel.lua` for each of `bookings` (those
    /// Redis showed on a seat MySQL has in another state) that MySQL has cancelled.
    async fn finish_cancellations(
        &mut self,
        bookings: BTreeSet<String>,
    ) -> Result<(), TestCaseError> {
        for bid in bookings {
            let Some(row) = self.model.mysql_rows.get(&bid) else {
                continue;
            };
            if row.status == BookingStatus::Cancelled {
                let call = Call::Cancel {
                    user: row.user,
                    seats: row.seats.clone(),
                };
                self.call(&bid, call).await?;
            }
        }
        Ok(())
    }

    async fn warm_chunk(&mut self, ordinals: &[usize]) -> Result<(), TestCaseError> {
        let triples: Vec<(String, i64, SeatState)> = ordinals
            .iter()
            .map(|&i| (seat_name(i), i as i64, self.model.truth(i).state()))
            .collect();
        let got = self
            .lab
            .store
            .warm_chunk(&self.lab.event, &triples)
            .await
            .map_err(fail)?;
        prop_assert_eq!(got, self.model.warm_chunk(ordinals), "warm.lua's reply");
        Ok(())
    }

    async fn warm_finish(&mut self, on_sale: bool) -> Result<(), TestCaseError> {
        let m = &self.model;
        let got = self
            .lab
            .store
            .warm_finish(&self.lab.event, "Lab", m.limit, m.n as u64, on_sale, 0)
            .await
            .map_err(fail)?;
        prop_assert_eq!(got, m.counts(), "warm_finish.lua's reply");
        Ok(())
    }
}

/// The reply's tag, as `claim.lua` spells it (a replay: the tag of what it replays).
fn outcome_name(outcome: &ClaimOutcome) -> String {
    match outcome {
        ClaimOutcome::Pending { .. } => "pending".into(),
        ClaimOutcome::Confirmed { .. } => "confirmed".into(),
        ClaimOutcome::SeatsUnavailable(_) => "unavailable".into(),
        ClaimOutcome::SoldOut => "sold_out".into(),
        ClaimOutcome::UserLimit(_) => "limit".into(),
        ClaimOutcome::UnknownSeats(_) => "unknown".into(),
        ClaimOutcome::EventNotFound => "not_found".into(),
        ClaimOutcome::KeyReused => "reused".into(),
        ClaimOutcome::RateLimited { .. } => "rate_limited".into(),
        ClaimOutcome::Replay { first, .. } => format!("replay of {}", outcome_name(first)),
    }
}

fn fail(err: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("redis: {err}"))
}

/// A booking record as read from Redis.
#[derive(Debug)]
struct RedisRecord {
    user: String,
    seats: Vec<String>,
    ords: String,
    status: String,
}

/// Reads the event's keys and checks the invariants of the module doc, and that Redis
/// equals the model.
async fn check(lab: &Lab, model: &Model) -> Result<(), TestCaseError> {
    let k = lab.store.keys(&lab.event);
    let mut conn = lab.store.connection();
    // One round trip: the event's keys, every user's tally and the record of every
    // booking the model knows of.
    let mut bids: Vec<String> = model.records.keys().cloned().collect();
    let mut pipe = redis::pipe();
    pipe.hgetall(k.seats())
        .zrange_withscores(k.avail(), 0, -1)
        .hgetall(k.meta())
        .lrange(k.order(), 0, -1);
    for u in 0..USERS {
        pipe.hgetall(k.user(&user_name(u)));
    }
    for bid in &bids {
        pipe.hgetall(k.booking(bid));
    }
    let values: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(fail)?;
    let mut values = values.into_iter();
    let mut next = || values.next().ok_or_else(|| fail("short pipeline reply"));
    let seats: BTreeMap<String, String> = redis::from_redis_value(next()?).map_err(fail)?;
    let avail: Vec<(String, f64)> = redis::from_redis_value(next()?).map_err(fail)?;
    let meta: HashMap<String, String> = redis::from_redis_value(next()?).map_err(fail)?;
    let order: Vec<String> = redis::from_redis_value(next()?).map_err(fail)?;
    let mut tallies: Vec<HashMap<String, String>> = Vec::with_capacity(USERS);
    for _ in 0..USERS {
        tallies.push(redis::from_redis_value(next()?).map_err(fail)?);
    }
    let mut booking_hashes: Vec<HashMap<String, String>> = Vec::with_capacity(bids.len());
    for _ in 0..bids.len() {
        booking_hashes.push(redis::from_redis_value(next()?).map_err(fail)?);
    }
    // A booking a seat names that the model does not know (there should be none: the
    // test makes every booking id) is read too, so the checks below can show it.
    let strangers: BTreeSet<String> = seats
        .values()
        .filter_map(|state| Some(state.split_once(':')?.1.to_owned()))
        .filter(|bid| !model.records.contains_key(bid))
        .collect();
    for bid in strangers {
        let h: HashMap<String, String> = conn.hgetall(k.booking(&bid)).await.map_err(fail)?;
        bids.push(bid);
        booking_hashes.push(h);
    }
    let mut records = BTreeMap::new();
    for (bid, mut h) in bids.iter().zip(booking_hashes) {
        if h.is_empty() {
            continue;
        }
        let field = |h: &mut HashMap<String, String>, f: &str| h.remove(f).unwrap_or_default();
        let seats: Vec<String> = serde_json::from_str(&field(&mut h, "seats"))
            .map_err(|e| TestCaseError::fail(format!("{bid}: seats: {e}")))?;
        let record = RedisRecord {
            user: field(&mut h, "user"),
            seats,
            ords: field(&mut h, "ords"),
            status: field(&mut h, "status"),
        };
        records.insert(bid.clone(), record);
    }

    // The seats hash holds exactly the event's seats.
    let names: Vec<String> = (0..model.n).map(seat_name).collect();
    prop_assert_eq!(
        seats.keys().cloned().collect::<BTreeSet<_>>(),
        names.iter().cloned().collect::<BTreeSet<_>>(),
        "seat ids in {{e}}:seats"
    );
    // avail: exactly the available seats, scored by ordinal.
    let want_avail: BTreeMap<String, f64> = names
        .iter()
        .enumerate()
        .filter(|(_, s)| seats[*s] == "available")
        .map(|(i, s)| (s.clone(), i as f64))
        .collect();
    let got_avail: BTreeMap<String, f64> = avail.into_iter().collect();
    prop_assert_eq!(got_avail, want_avail, "{{e}}:avail against {{e}}:seats");
    // meta's counters.
    let count = |prefix: &str| seats.values().filter(|s| s.starts_with(prefix)).count();
    let meta_num = |f: &str| meta.get(f).and_then(|v| v.parse::<usize>().ok());
    prop_assert_eq!(meta_num("pending"), Some(count("pending:")), "meta pending");
    prop_assert_eq!(meta_num("booked"), Some(count("booked:")), "meta booked");
    prop_assert_eq!(meta_num("seats_total"), Some(model.n), "meta seats_total");
    prop_assert_eq!(meta.get("on_sale").map(String::as_str), Some("1"));
    // The order list.
    prop_assert_eq!(&order, &names, "{{e}}:order");

    // Held seats and their bookings, both ways.
    for (seat, state) in &seats {
        let (want_status, bid) = match state.split_once(':') {
            Some(("pending", bid)) => ("pending", bid),
            Some(("booked", bid)) => ("confirmed", bid),
            _ => {
                prop_assert_eq!(state.as_str(), "available", "state of {}", seat);
                continue;
            }
        };
        let Some(record) = records.get(bid) else {
            return Err(TestCaseError::fail(format!(
                "{seat} is {state} but {bid} has no record"
            )));
        };
        prop_assert!(
            record.seats.contains(seat) && record.status == want_status,
            "{} is {} but its record is {:?}",
            seat,
            state,
            record
        );
    }
    let mut want_tallies: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); USERS];
    for (bid, record) in &records {
        // The ordinals the freeing scripts put seats back at.
        let ords: Vec<String> = record
            .seats
            .iter()
            .map(|s| names.iter().position(|n| n == s).unwrap().to_string())
            .collect();
        prop_assert_eq!(&record.ords, &ords.join(","), "ords of {}", bid);
        let held = match record.status.as_str() {
            "pending" => format!("pending:{bid}"),
            "confirmed" => format!("booked:{bid}"),
            _ => continue,
        };
        for seat in &record.seats {
            prop_assert_eq!(
                seats.get(seat),
                Some(&held),
                "seat {} of live booking {} ({:?})",
                seat,
                bid,
                record
            );
        }
        let user: usize = record.user[1..].parse().unwrap();
        want_tallies[user].insert(bid.clone(), record.seats.len().to_string());
    }
    for (u, (got, want)) in tallies.iter().zip(&want_tallies).enumerate() {
        let got: BTreeMap<String, String> = got.clone().into_iter().collect();
        prop_assert_eq!(&got, want, "tally of u{} against its live bookings", u);
    }

    // Redis equals the model.
    for (i, name) in names.iter().enumerate() {
        prop_assert_eq!(
            &seats[name],
            &model.seats[i].redis(),
            "{} in Redis and in the model",
            name
        );
    }
    for (bid, record) in &model.records {
        let got = records.get(bid).map(|r| r.status.as_str());
        prop_assert_eq!(got, Some(record.status.as_str()), "status of {}", bid);
    }
    for (u, (got, want)) in tallies.iter().zip(&model.tallies).enumerate() {
        let got: BTreeMap<String, usize> = got
            .iter()
            .map(|(b, n)| (b.clone(), n.parse().unwrap()))
            .collect();
        prop_assert_eq!(&got, want, "tally of u{} in Redis and in the model", u);
    }
    Ok(())
}

/// Runs one case on a fresh lab (its keys are deleted when it drops); returns how often
/// each outcome came up.
async fn run_case(
    n: usize,
    limit: u32,
    rate: Rate,
    ops: &[Op],
) -> Result<BTreeMap<String, usize>, TestCaseError> {
    let mut harness = Harness::with_rate(n, limit, rate).await;
    check(&harness.lab, &harness.model).await?;
    for (i, op) in ops.iter().enumerate() {
        harness.step(op).await.map_err(|e| at_step(e, i, op))?;
        check(&harness.lab, &harness.model)
            .await
            .map_err(|e| at_step(e, i, op))?;
    }
    Ok(std::mem::take(&mut harness.seen))
}

fn at_step(err: TestCaseError, i: usize, op: &Op) -> TestCaseError {
    TestCaseError::fail(format!("after step {i} ({op:?}): {err}"))
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_lua_scripts_agree_with_a_reference_model_over_random_interleavings() {
    let cases = env_or("SEATGATE_MODEL_CASES", 64);
    let max_steps = env_or("SEATGATE_MODEL_STEPS", 120) as usize;
    let mut runner = TestRunner::new(Config {
        cases,
        // Failures are shrunk and printed; the minimal case is then written down as a
        // test of its own rather than kept in a regressions file.
        failure_persistence: None,
        // Each shrinking attempt replays a case on Redis; bound the time it may take.
        max_shrink_time: 120_000,
        ..Config::default()
    });
    // One runtime for every case: the store's connection lives on it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Totals over the cases that passed (shrinking reruns failing cases).
    let steps = AtomicUsize::new(0);
    let seen = Mutex::new(BTreeMap::<String, usize>::new());
    let started = Instant::now();
    let result = runner.run(&case(max_steps), |(n, limit, rate, ops)| {
        let outcomes = rt.block_on(run_case(n, limit, rate, &ops))?;
        steps.fetch_add(ops.len(), Ordering::Relaxed);
        let mut seen = seen.lock().unwrap();
        for (what, count) in outcomes {
            *seen.entry(what).or_default() += count;
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    // Shown with `--nocapture`: the size of the run and what it covered.
    eprintln!(
        "lua_model: {cases} cases, {} steps in {:?}",
        steps.load(Ordering::Relaxed),
        started.elapsed()
    );
    for (what, count) in seen.into_inner().unwrap() {
        eprintln!("  {count:6}  {what}");
    }
}

/// The first failure the model found, shrunk: a confirmed booking's cancellation dies
/// between its MySQL COMMIT and `cancel.lua`, then a warm. Warm copied the seat from
/// MySQL (available) and left the record `confirmed` and on its owner's tally, so the
/// booking held a seat it did not hold (and sold again) and counted against the limit
/// for good; no audit saw a divergence any more. Warm now finishes such cancellations
/// as audit repair does (`ops/warm.rs`; end to end in `lifecycle.rs`,
/// `warm_finishes_a_cancel_that_died_between_its_commit_and_redis`).
#[tokio::test]
async fn a_warm_after_a_cancel_lost_between_commit_and_redis_leaves_no_stale_booking() {
    let mut h = Harness::new(4, 2).await;
    h.claim(0, What::Seats(vec![1]), None).await.unwrap();
    h.settle("b0".into(), Verdict::Book, Then::Now)
        .await
        .unwrap();
    h.cancel("b0".into(), Then::Never).await.unwrap();
    h.warm(1).await.unwrap();
    check(&h.lab, &h.model).await.unwrap();
    assert_eq!(h.model.records["b0"].status, BookingStatus::Cancelled);
    // Her whole limit is hers again.
    h.claim(0, What::Quantity(2), None).await.unwrap();
    assert_eq!(h.model.records["b1"].status, BookingStatus::Pending);
    check(&h.lab, &h.model).await.unwrap();
}

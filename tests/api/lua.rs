//! Each Lua script called directly through `RedisStore`, on the shared Redis under a
//! namespace of its own (no MySQL involved), and a call after `SCRIPT FLUSH` on a
//! private redis-server (flushing the shared server's script cache is not ours to do).
//! One file because each script's tests read the same fixtures (an event warmed straight
//! into Redis) and follow the order of `lua/`.

use redis::AsyncCommands;
use seatgate::claims::{ClaimOutcome, ClaimRequest, RedisStore, Restore, SeatCounts, Selection};
use seatgate::domain::{BookingStatus, EventId, RejectReason, SeatId, SeatState, UserId};
use std::time::Duration;

use crate::helpers::REDIS_URL;

/// A store under a fresh namespace, with one warmed event of `seats` (all available
/// unless `booked` names some), removed on drop. Also the ground `lua_model` runs on.
pub(crate) struct Lab {
    url: String,
    pub(crate) store: RedisStore,
    pub(crate) event: String,
}

impl Lab {
    /// The lab's event as a claim names it.
    pub(crate) fn event_id(&self) -> EventId {
        EventId::parse(self.event.as_str()).unwrap()
    }

    pub(crate) async fn new(
        url: &str,
        seats: &[&str],
        booked: &[(&str, &str)],
        limit: u32,
    ) -> Self {
        let ns = format!("sgl{}:", uuid::Uuid::now_v7().simple());
        let store = RedisStore::connect(url, &ns, Duration::from_secs(10))
            .await
            .unwrap();
        let event = "lab".to_owned();
        let chunk: Vec<(String, i64, SeatState)> = seats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let state = booked
                    .iter()
                    .find(|(seat, _)| seat == s)
                    .map(|(_, b)| SeatState::Booked(b.to_string()))
                    .unwrap_or(SeatState::Available);
                (s.to_string(), i as i64, state)
            })
            .collect();
        assert_eq!(
            store.warm_chunk(&event, &chunk).await.unwrap(),
            seats.len() as i64
        );
        store
            .warm_finish(&event, "Lab", limit, seats.len() as u64, true, 0)
            .await
            .unwrap();
        Self {
            url: url.to_owned(),
            store,
            event,
        }
    }

    async fn claim(
        &self,
        user: &str,
        bid: &str,
        seats: &[&str],
        key: Option<(&str, &str)>,
    ) -> ClaimOutcome {
        let seats: Vec<SeatId> = seats.iter().map(|s| SeatId::parse(*s).unwrap()).collect();
        self.store
            .claim(&ClaimRequest {
                event_id: &self.event_id(),
                user_id: &UserId::parse(user).unwrap(),
                booking_id: bid,
                selection: Selection::Seats(&seats),
                idempotency: key,
                now_ms: 1,
            })
            .await
            .unwrap()
    }

    async fn quantity(&self, user: &str, bid: &str, n: u32) -> ClaimOutcome {
        self.store
            .claim(&ClaimRequest {
                event_id: &self.event_id(),
                user_id: &UserId::parse(user).unwrap(),
                booking_id: bid,
                selection: Selection::Quantity(n),
                idempotency: None,
                now_ms: 1,
            })
            .await
            .unwrap()
    }

    async fn state(&self, seat: &str) -> String {
        let mut conn = self.store.connection();
        conn.hget(self.store.keys(&self.event).seats(), seat)
            .await
            .unwrap()
    }

    async fn counts(&self) -> (u64, u64, u64) {
        let s = self
            .store
            .event_summary(&self.event)
            .await
            .unwrap()
            .unwrap();
        (s.available, s.pending, s.booked)
    }

    async fn outbox_len(&self) -> usize {
        let mut conn = self.store.connection();
        conn.xlen(self.store.keys(&self.event).outbox())
            .await
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let pattern = self.store.keys(&self.event).pattern();
        let url = self.url.clone();
        crate::helpers::block_on_aside(async move {
            crate::helpers::delete_keys(&url, &pattern).await;
        });
    }
}

fn pending(bid: &str, seats: &[&str]) -> ClaimOutcome {
    ClaimOutcome::Pending {
        booking_id: bid.into(),
        seats: seats.iter().map(|s| s.to_string()).collect(),
        expires_ms: None,
    }
}

#[tokio::test]
async fn claim_lua_claims_all_or_nothing_and_writes_the_outbox_in_the_same_step() {
    let lab = Lab::new(REDIS_URL, &["A1", "A2", "A3"], &[("A3", "old")], 4).await;
    assert_eq!(
        lab.claim("u1", "b1", &["A1"], None).await,
        pending("b1", &["A1"])
    );
    assert_eq!(lab.state("A1").await, "pending:b1");
    assert_eq!(lab.outbox_len().await, 1);

    assert_eq!(
        lab.claim("u2", "b2", &["A2", "A1", "A3"], None).await,
        ClaimOutcome::SeatsUnavailable(vec!["A1".into(), "A3".into()])
    );
    assert_eq!(lab.state("A2").await, "available");
    assert_eq!(
        lab.outbox_len().await,
        1,
        "a failed claim leaves no outbox entry"
    );
    assert_eq!(
        lab.claim("u2", "b2", &["A2", "Z9"], None).await,
        ClaimOutcome::UnknownSeats(vec!["Z9".into()])
    );
    assert_eq!(lab.quantity("u2", "b3", 2).await, ClaimOutcome::SoldOut);
    assert_eq!(
        lab.quantity("u2", "b3", 5).await,
        ClaimOutcome::UserLimit(4)
    );
    assert_eq!(lab.quantity("u2", "b3", 1).await, pending("b3", &["A2"]));
    assert_eq!(lab.counts().await, (0, 2, 1));

    let missing = Lab::new(REDIS_URL, &["A1"], &[], 4).await;
    let other = RedisStore::connect(REDIS_URL, "sgl-none:", Duration::from_secs(10))
        .await
        .unwrap();
    let seats = vec![SeatId::parse("A1").unwrap()];
    let outcome = other
        .claim(&ClaimRequest {
            event_id: &missing.event_id(),
            user_id: &UserId::parse("u").unwrap(),
            booking_id: "b",
            selection: Selection::Seats(&seats),
            idempotency: None,
            now_ms: 1,
        })
        .await
        .unwrap();
    assert_eq!(outcome, ClaimOutcome::EventNotFound);
}

#[tokio::test]
async fn claim_lua_replays_recorded_outcomes_per_user_and_key() {
    let lab = Lab::new(REDIS_URL, &["A1", "A2"], &[], 4).await;
    let first = lab.claim("u1", "b1", &["A1"], Some(("k", "fp1"))).await;
    assert_eq!(first, pending("b1", &["A1"]));
    assert_eq!(
        lab.claim("u1", "b9", &["A1"], Some(("k", "fp1"))).await,
        ClaimOutcome::Replay {
            first: Box::new(pending("b1", &["A1"])),
            answered: None
        }
    );
    assert_eq!(
        lab.claim("u1", "b9", &["A2"], Some(("k", "fp2"))).await,
        ClaimOutcome::KeyReused
    );
    // Another user's identical key is another record.
    assert_eq!(
        lab.claim("u2", "b2", &["A1"], Some(("k", "fp1"))).await,
        ClaimOutcome::SeatsUnavailable(vec!["A1".into()])
    );
    assert_eq!(
        lab.claim("u2", "b3", &["A1"], Some(("k", "fp1"))).await,
        ClaimOutcome::Replay {
            first: Box::new(ClaimOutcome::SeatsUnavailable(vec!["A1".into()])),
            answered: None
        }
    );
    assert_eq!(lab.outbox_len().await, 1);
}

#[tokio::test]
async fn confirm_reject_and_cancel_lua_move_only_the_seats_their_booking_holds() {
    let lab = Lab::new(REDIS_URL, &["A1", "A2", "A3", "A4"], &[], 4).await;
    let s = &lab.store;
    let e = &lab.event;
    lab.claim("u1", "b1", &["A1", "A2"], None).await;
    lab.claim("u2", "b2", &["A3"], None).await;
    lab.claim("u3", "b3", &["A4"], None).await;
    let seats = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // confirm.lua
    assert_eq!(
        s.confirm(e, "b1", "u1", &seats(&["A1", "A2"]))
            .await
            .unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(
        s.confirm(e, "b1", "u1", &seats(&["A1", "A2"]))
            .await
            .unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(lab.state("A1").await, "booked:b1");
    assert_eq!(
        s.confirm(e, "nope", "u9", &seats(&["A1"])).await.unwrap(),
        None
    );
    assert_eq!(lab.counts().await, (0, 2, 2));

    // reject.lua: MySQL says A3 is booked by "x"; a confirmed booking is never rejected.
    let truth = vec![("A3".to_owned(), SeatState::Booked("x".into()))];
    assert_eq!(
        s.reject(e, "b2", "u2", RejectReason::SeatsTaken, &truth)
            .await
            .unwrap(),
        Some(BookingStatus::Rejected)
    );
    assert_eq!(lab.state("A3").await, "booked:x");
    let b = s.booking(e, "b2").await.unwrap().unwrap();
    assert_eq!(
        (b.status, b.reason.as_deref()),
        (BookingStatus::Rejected, Some("seats_taken"))
    );
    let free = vec![("A1".to_owned(), SeatState::Available)];
    assert_eq!(
        s.reject(e, "b1", "u1", RejectReason::SeatsTaken, &free)
            .await
            .unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(lab.state("A1").await, "booked:b1");
    assert_eq!(lab.counts().await, (0, 1, 3));

    // cancel.lua: a pending and a confirmed booking; a rejected one is refused.
    assert_eq!(
        s.cancel(e, "b3", "u3", &seats(&["A4"])).await.unwrap(),
        Some(BookingStatus::Cancelled)
    );
    assert_eq!(
        s.cancel(e, "b1", "u1", &seats(&["A1", "A2"]))
            .await
            .unwrap(),
        Some(BookingStatus::Cancelled)
    );
    assert_eq!(
        s.cancel(e, "b1", "u1", &seats(&["A1", "A2"]))
            .await
            .unwrap(),
        Some(BookingStatus::Cancelled)
    );
    assert_eq!(
        s.cancel(e, "b2", "u2", &seats(&["A3"])).await.unwrap(),
        Some(BookingStatus::Rejected)
    );
    assert_eq!(lab.state("A3").await, "booked:x");
    assert_eq!(lab.counts().await, (3, 0, 1));
    // A late confirm cannot resurrect a cancelled booking.
    assert_eq!(
        s.confirm(e, "b3", "u3", &seats(&["A4"])).await.unwrap(),
        Some(BookingStatus::Cancelled)
    );
    assert_eq!(lab.state("A4").await, "available");
    // The freed seats are offered again, in ordinal order.
    assert_eq!(
        lab.quantity("u4", "b4", 3).await,
        pending("b4", &["A1", "A2", "A4"])
    );
}

#[tokio::test]
async fn warm_lua_never_touches_a_pending_seat_and_recounts() {
    let lab = Lab::new(REDIS_URL, &["A1", "A2", "A3"], &[], 4).await;
    lab.claim("u1", "b1", &["A1"], None).await;
    let s = &lab.store;
    // MySQL's truth: A1 free (its claim is on the way), A2 booked by "m", A3 free.
    let chunk = vec![
        ("A1".to_owned(), 0, SeatState::Available),
        ("A2".to_owned(), 1, SeatState::Booked("m".into())),
        ("A3".to_owned(), 2, SeatState::Available),
    ];
    assert_eq!(s.warm_chunk(&lab.event, &chunk).await.unwrap(), 1);
    assert_eq!(lab.state("A1").await, "pending:b1");
    assert_eq!(lab.state("A2").await, "booked:m");
    let counts = s
        .warm_finish(&lab.event, "Lab", 4, 3, true, 0)
        .await
        .unwrap();
    assert_eq!(
        counts,
        SeatCounts {
            seats_total: 3,
            available: 1,
            pending: 1,
            booked: 1,
            held: 0,
        }
    );
    assert_eq!(lab.quantity("u2", "b2", 1).await, pending("b2", &["A3"]));
}

#[tokio::test]
async fn scripts_reload_themselves_after_script_flush() {
    let Some(redis) = crate::helpers::private_redis().await else {
        return;
    };
    let lab = Lab::new(&redis.url(), &["A1", "A2"], &[], 4).await;
    assert_eq!(
        lab.claim("u1", "b1", &["A1"], None).await,
        pending("b1", &["A1"])
    );
    let mut conn = lab.store.connection();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let loaded: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(seatgate::claims::scripts::CLAIM.get_hash())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(loaded, vec![false]);
    // EVALSHA answers NOSCRIPT; the wrapper loads the script and the claim goes through.
    assert_eq!(
        lab.claim("u2", "b2", &["A2"], None).await,
        pending("b2", &["A2"])
    );
    assert_eq!(
        lab.store
            .confirm(&lab.event, "b2", "u2", &["A2".to_owned()])
            .await
            .unwrap(),
        Some(BookingStatus::Confirmed)
    );
}

impl Lab {
    /// The seat's score in the available set (its ordinal), or `None` when not in it.
    async fn score(&self, seat: &str) -> Option<f64> {
        let mut conn = self.store.connection();
        conn.zscore(self.store.keys(&self.event).avail(), seat)
            .await
            .unwrap()
    }

    /// The order list.
    async fn order(&self) -> Vec<String> {
        let mut conn = self.store.connection();
        conn.lrange(self.store.keys(&self.event).order(), 0, -1)
            .await
            .unwrap()
    }
}

fn seats(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The available set holds exactly the seats passed, each scored by its index in
/// `all` (its ordinal).
async fn assert_available_at_ordinals(lab: &Lab, all: &[&str], expected: &[&str]) {
    for (ordinal, seat) in all.iter().enumerate() {
        let want = expected.contains(seat).then_some(ordinal as f64);
        assert_eq!(lab.score(seat).await, want, "score of {seat}");
    }
}

#[tokio::test]
async fn freed_seats_go_back_to_their_exact_ordinal_after_reject_and_cancel() {
    // Names sort differently from ordinals, so a wrong score would show.
    let all = ["Z0", "Y1", "X2", "W3", "V4", "U5", "T6", "S7"];
    let lab = Lab::new(REDIS_URL, &all, &[], 8).await;
    let (s, e) = (&lab.store, lab.event.as_str());
    // Best available (ZRANGE WITHSCORES) and specific seats (ZMSCORE), out of order.
    assert_eq!(
        lab.quantity("u1", "b1", 2).await,
        pending("b1", &["Z0", "Y1"])
    );
    assert_eq!(
        lab.claim("u2", "b2", &["U5", "W3"], None).await,
        pending("b2", &["U5", "W3"])
    );
    assert_eq!(
        lab.claim("u3", "b3", &["T6"], None).await,
        pending("b3", &["T6"])
    );
    assert_eq!(
        s.confirm(e, "b3", "u3", &seats(&["T6"])).await.unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(
        lab.claim("u4", "b4", &["S7"], None).await,
        pending("b4", &["S7"])
    );
    assert_available_at_ordinals(&lab, &all, &["X2", "V4"]).await;

    // Reject (MySQL has Y1 free and Z0 booked by someone else).
    let truth = vec![
        ("Z0".to_owned(), SeatState::Booked("m".into())),
        ("Y1".to_owned(), SeatState::Available),
    ];
    assert_eq!(
        s.reject(e, "b1", "u1", RejectReason::SeatsTaken, &truth)
            .await
            .unwrap(),
        Some(BookingStatus::Rejected)
    );
    assert_available_at_ordinals(&lab, &all, &["Y1", "X2", "V4"]).await;
    // Cancel of a pending booking, then of a confirmed one.
    assert_eq!(
        s.cancel(e, "b2", "u2", &seats(&["U5", "W3"]))
            .await
            .unwrap(),
        Some(BookingStatus::Cancelled)
    );
    assert_eq!(
        s.cancel(e, "b3", "u3", &seats(&["T6"])).await.unwrap(),
        Some(BookingStatus::Cancelled)
    );
    assert_available_at_ordinals(&lab, &all, &["Y1", "X2", "W3", "V4", "U5", "T6"]).await;
    assert_eq!(lab.counts().await, (6, 1, 1));

    // Best available hands them out in ordinal order again.
    assert_eq!(lab.quantity("u5", "b5", 1).await, pending("b5", &["Y1"]));
    assert_eq!(
        lab.quantity("u6", "b6", 5).await,
        pending("b6", &["X2", "W3", "V4", "U5", "T6"])
    );
    assert_eq!(lab.quantity("u7", "b7", 1).await, ClaimOutcome::SoldOut);
}

#[tokio::test]
async fn a_seat_freed_without_its_booking_record_finds_its_ordinal_in_the_order_list() {
    let all = ["C0", "B1", "A2"];
    let lab = Lab::new(REDIS_URL, &all, &[], 4).await;
    let (s, e) = (&lab.store, lab.event.as_str());
    assert_eq!(
        lab.claim("u1", "b1", &["A2"], None).await,
        pending("b1", &["A2"])
    );
    s.confirm(e, "b1", "u1", &seats(&["A2"])).await.unwrap();
    // Redis lost the record (say, restored from an older snapshot); MySQL cancels.
    let mut conn = s.connection();
    let _: i64 = conn.del(s.keys(e).booking("b1")).await.unwrap();
    assert_eq!(
        s.cancel(e, "b1", "u1", &seats(&["A2"])).await.unwrap(),
        None
    );
    assert_available_at_ordinals(&lab, &all, &["C0", "B1", "A2"]).await;
}

#[tokio::test]
async fn warm_lua_keeps_the_order_list_that_seat_states_lists_seats_by() {
    let all = ["Z9", "A1", "M5", "B2"];
    let lab = Lab::new(REDIS_URL, &all, &[], 4).await;
    let (s, e) = (&lab.store, lab.event.as_str());
    assert_eq!(lab.order().await, seats(&all));
    lab.claim("u1", "b1", &["A1"], None).await;
    let listed: Vec<(String, i64, String)> = s
        .seat_states(e)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.seat, x.ordinal, x.state.to_redis()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("Z9".to_owned(), 0, "available".to_owned()),
            ("A1".to_owned(), 1, "pending:b1".to_owned()),
            ("M5".to_owned(), 2, "available".to_owned()),
            ("B2".to_owned(), 3, "available".to_owned()),
        ]
    );

    // Warm again, in two chunks: the list stays as it is.
    let triples = |range: std::ops::Range<usize>| -> Vec<(String, i64, SeatState)> {
        range
            .map(|i| (all[i].to_owned(), i as i64, SeatState::Available))
            .collect()
    };
    s.warm_chunk(e, &triples(0..2)).await.unwrap();
    s.warm_chunk(e, &triples(2..4)).await.unwrap();
    assert_eq!(lab.order().await, seats(&all));
    // A scattered repair of a seat out of place puts it back.
    let mut conn = s.connection();
    let () = conn.lset(s.keys(e).order(), 2, "B2").await.unwrap();
    s.warm_chunk(e, &[("M5".to_owned(), 2, SeatState::Available)])
        .await
        .unwrap();
    assert_eq!(lab.order().await, seats(&all));
    // A lost list is rebuilt by a warm; a seat beyond the end is left for that warm.
    let _: i64 = conn.del(s.keys(e).order()).await.unwrap();
    s.warm_chunk(e, &[("M5".to_owned(), 2, SeatState::Available)])
        .await
        .unwrap();
    assert_eq!(lab.order().await, Vec::<String>::new());
    let by_id: Vec<(String, i64)> = s
        .seat_states(e)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.seat, x.ordinal))
        .collect();
    assert_eq!(
        by_id[0],
        ("A1".to_owned(), i64::MAX),
        "unplaced seats come last, by id"
    );
    s.warm_chunk(e, &triples(0..4)).await.unwrap();
    assert_eq!(lab.order().await, seats(&all));
    assert_eq!(lab.state("A1").await, "pending:b1");
}

impl Lab {
    /// `(available, pending, booked)` counted from the seat states themselves, which
    /// the counters in meta (and avail's size) must equal.
    async fn recount(&self) -> (u64, u64, u64) {
        let mut conn = self.store.connection();
        let states: Vec<String> = conn
            .hvals(self.store.keys(&self.event).seats())
            .await
            .unwrap();
        let count = |prefix: &str| states.iter().filter(|s| s.starts_with(prefix)).count() as u64;
        (count("available"), count("pending:"), count("booked:"))
    }

    /// The seats the user's tally counts for `bid`.
    async fn tally(&self, user: &str, bid: &str) -> Option<u64> {
        let mut conn = self.store.connection();
        conn.hget(self.store.keys(&self.event).user(user), bid)
            .await
            .unwrap()
    }

    /// True when Redis has `key`.
    async fn exists(&self, key: String) -> bool {
        let mut conn = self.store.connection();
        conn.exists(key).await.unwrap()
    }
}

#[tokio::test]
async fn reject_lua_rejects_a_claim_whose_record_redis_lost_and_writes_the_record_again() {
    let lab = Lab::new(REDIS_URL, &["A1", "A2", "A3", "A4"], &[], 4).await;
    let (s, e) = (&lab.store, lab.event.as_str());
    lab.claim("u1", "b1", &["A1", "A2"], None).await;
    lab.claim("u2", "b2", &["A3"], None).await;
    // Redis loses b1's record (an eviction, say); seats and tally are still there.
    let mut conn = s.connection();
    let _: i64 = conn.del(s.keys(e).booking("b1")).await.unwrap();

    // MySQL: A1 is free, A2 booked by "m".
    let truth = vec![
        ("A1".to_owned(), SeatState::Available),
        ("A2".to_owned(), SeatState::Booked("m".into())),
    ];
    let lost = RejectReason::LostInRedisFailover;
    for _ in 0..2 {
        // The second call finds the record it wrote and changes nothing.
        assert_eq!(
            s.reject(e, "b1", "u1", lost, &truth).await.unwrap(),
            Some(BookingStatus::Rejected)
        );
        assert_eq!(lab.state("A1").await, "available");
        assert_eq!(lab.state("A2").await, "booked:m");
        assert_eq!(lab.state("A3").await, "pending:b2");
        // A1 is back at its ordinal, found in the order list (no record, no ords).
        assert_eq!(lab.score("A1").await, Some(0.0));
        assert_eq!(lab.counts().await, (2, 1, 1));
        assert_eq!(lab.recount().await, (2, 1, 1));
        assert_eq!(lab.tally("u1", "b1").await, None);
        assert_eq!(lab.tally("u2", "b2").await, Some(1));
        let b = s.booking(e, "b1").await.unwrap().expect("a record again");
        assert_eq!(
            (b.user_id.as_str(), b.seats, b.status, b.reason.as_deref()),
            (
                "u1",
                seats(&["A1", "A2"]),
                BookingStatus::Rejected,
                Some("lost_in_redis_failover")
            )
        );
    }
    // The owner can use the allowance again.
    assert_eq!(
        lab.claim("u1", "b3", &["A1", "A4"], None).await,
        pending("b3", &["A1", "A4"])
    );

    // An event whose keys Redis lost altogether: nothing is written (a warm rebuilds
    // it from MySQL, which has the rejection).
    let gone = s.keys("gone");
    let free = vec![("A1".to_owned(), SeatState::Available)];
    assert_eq!(
        s.reject("gone", "b9", "u9", lost, &free).await.unwrap(),
        None
    );
    for key in [gone.booking("b9"), gone.meta(), gone.seats()] {
        assert!(!lab.exists(key.clone()).await, "{key} was written");
    }
}

#[tokio::test]
async fn confirm_lua_restores_a_confirmed_booking_whose_record_redis_lost() {
    let lab = Lab::new(
        REDIS_URL,
        &["A1", "A2", "A3", "A4", "A5"],
        &[("A4", "x")],
        5,
    )
    .await;
    let (s, e) = (&lab.store, lab.event.as_str());
    lab.claim("u1", "b1", &["A1", "A2"], None).await;
    lab.claim("u9", "b9", &["A3"], None).await;
    // Redis lost b1's record and its tally entry, and holds A2 as available (older
    // data); MySQL has b1 confirmed on A1 to A4 (it says so; the script does not ask).
    let k = s.keys(e);
    let mut conn = s.connection();
    let _: i64 = conn.del(k.booking("b1")).await.unwrap();
    let _: i64 = conn.hdel(k.user("u1"), "b1").await.unwrap();
    let _: i64 = conn.hset(k.seats(), "A2", "available").await.unwrap();
    let _: i64 = conn.zadd(k.avail(), "A2", 1).await.unwrap();
    s.warm_finish(e, "Lab", 5, 5, true, 0).await.unwrap();
    assert_eq!(lab.counts().await, (2, 2, 1));
    let mine = seats(&["A1", "A2", "A3", "A4"]);

    // Without the caller's word that it holds the seats' locks: only reported.
    assert_eq!(s.confirm(e, "b1", "u1", &mine).await.unwrap(), None);
    assert_eq!(lab.state("A1").await, "pending:b1");
    assert_eq!(lab.state("A2").await, "available");

    assert_eq!(
        s.restore_confirmed(e, "b1", "u1", &mine).await.unwrap(),
        Restore::Restored
    );
    let check = || async {
        for seat in &mine {
            assert_eq!(lab.state(seat).await, "booked:b1", "{seat}");
        }
        assert_eq!(lab.score("A2").await, None, "A2 left avail");
        assert_eq!(lab.score("A5").await, Some(4.0));
        assert_eq!(lab.counts().await, (1, 0, 4));
        assert_eq!(lab.recount().await, (1, 0, 4));
        let b = s.booking(e, "b1").await.unwrap().expect("a record again");
        assert_eq!(
            (b.user_id.as_str(), &b.seats, b.status),
            ("u1", &mine, BookingStatus::Confirmed)
        );
        assert_eq!(lab.tally("u1", "b1").await, Some(4));
    };
    check().await;
    // The owner's limit counts the booking again: 4 held, 2 more would make 6 > 5.
    assert_eq!(
        lab.quantity("u1", "b2", 2).await,
        ClaimOutcome::UserLimit(5)
    );
    // Again: the record is there, nothing moves; a plain confirm says confirmed.
    assert_eq!(
        s.restore_confirmed(e, "b1", "u1", &mine).await.unwrap(),
        Restore::Present(BookingStatus::Confirmed)
    );
    assert_eq!(
        s.confirm(e, "b1", "u1", &mine).await.unwrap(),
        Some(BookingStatus::Confirmed)
    );
    check().await;

    // An event whose keys Redis lost altogether: nothing is written.
    let gone = s.keys("gone");
    assert_eq!(
        s.restore_confirmed("gone", "b9", "u9", &seats(&["A1"]))
            .await
            .unwrap(),
        Restore::EventMissing
    );
    for key in [gone.booking("b9"), gone.meta(), gone.user("u9")] {
        assert!(!lab.exists(key.clone()).await, "{key} was written");
    }
}

/// The scripts of a hold's life: `confirm.lua` holds a pending booking and later
/// confirms it, never the other way round; `cancel.lua` expires a hold but leaves a
/// confirmed booking alone, and the first end a booking had stays its end;
/// `extend.lua` moves a held booking's deadline only.
#[tokio::test]
async fn a_hold_only_moves_forward_and_ends_once() {
    let lab = Lab::new(REDIS_URL, &["A1", "A2", "A3"], &[], 4).await;
    let s = &lab.store;
    let e = &lab.event;
    let seats = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let holds = s.keys(e).holds();
    let deadline = |bid: &str| {
        let holds = holds.clone();
        let bid = bid.to_owned();
        async move {
            let mut conn = s.connection();
            let at: Option<f64> = conn.zscore(holds, bid).await.unwrap();
            at.map(|at| at as u64)
        }
    };
    lab.claim("u1", "b1", &["A1"], None).await;
    lab.claim("u2", "b2", &["A2"], None).await;
    lab.claim("u3", "b3", &["A3"], None).await;

    // Held: seats held:<bid>, counted held, in the holds zset at its deadline.
    for (bid, user, seat) in [("b1", "u1", "A1"), ("b2", "u2", "A2"), ("b3", "u3", "A3")] {
        assert_eq!(
            s.hold(e, bid, user, 5_000, &seats(&[seat])).await.unwrap(),
            Some(BookingStatus::Held)
        );
    }
    assert_eq!(lab.state("A1").await, "held:b1");
    let summary = s.event_summary(e).await.unwrap().unwrap();
    assert_eq!((summary.pending, summary.held), (0, 3));
    assert_eq!(deadline("b1").await, Some(5_000));
    assert_eq!(
        s.extend(e, "b1", 9_000).await.unwrap(),
        Some(BookingStatus::Held)
    );
    assert_eq!(deadline("b1").await, Some(9_000));

    // Confirmed: booked, out of the zset; holding it again changes nothing.
    assert_eq!(
        s.confirm(e, "b1", "u1", &seats(&["A1"])).await.unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(
        s.hold(e, "b1", "u1", 5_000, &seats(&["A1"])).await.unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(lab.state("A1").await, "booked:b1");
    assert_eq!(deadline("b1").await, None);
    // An expiry of a confirmed booking changes nothing either.
    assert_eq!(
        s.expire(e, "b1", "u1", &seats(&["A1"])).await.unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(lab.state("A1").await, "booked:b1");
    assert_eq!(
        s.extend(e, "b1", 20_000).await.unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(deadline("b1").await, None);

    // Expired: the seat is available again, the tally and the zset forget it; a late
    // cancel keeps it expired, a late confirm cannot resurrect it.
    assert_eq!(
        s.expire(e, "b2", "u2", &seats(&["A2"])).await.unwrap(),
        Some(BookingStatus::Expired)
    );
    assert_eq!(lab.state("A2").await, "available");
    assert_eq!(deadline("b2").await, None);
    assert_eq!(
        s.cancel(e, "b2", "u2", &seats(&["A2"])).await.unwrap(),
        Some(BookingStatus::Expired)
    );
    assert_eq!(
        s.confirm(e, "b2", "u2", &seats(&["A2"])).await.unwrap(),
        Some(BookingStatus::Expired)
    );
    assert_eq!(lab.state("A2").await, "available");
    // Cancelled first: a late expiry keeps it cancelled.
    assert_eq!(
        s.cancel(e, "b3", "u3", &seats(&["A3"])).await.unwrap(),
        Some(BookingStatus::Cancelled)
    );
    assert_eq!(
        s.expire(e, "b3", "u3", &seats(&["A3"])).await.unwrap(),
        Some(BookingStatus::Cancelled)
    );
    let summary = s.event_summary(e).await.unwrap().unwrap();
    assert_eq!(
        (
            summary.available,
            summary.pending,
            summary.held,
            summary.booked
        ),
        (2, 0, 0, 1)
    );
    // The claim path may take the freed seats again, at their place.
    lab.claim("u4", "b4", &["A2"], None).await;
    assert_eq!(lab.state("A2").await, "pending:b4");
}

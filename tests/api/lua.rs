//! Each Lua script called directly through `RedisStore`, on the shared Redis under a
//! namespace of its own (no MySQL involved), and a call after `SCRIPT FLUSH` on a
//! private redis-server (flushing the shared server's script cache is not ours to do).

use redis::AsyncCommands;
use seatgate::claims::{ClaimOutcome, ClaimRequest, RedisStore, SeatCounts, Selection};
use seatgate::domain::BookingStatus;
use std::time::Duration;

use crate::helpers::REDIS_URL;

/// A store under a fresh namespace, with one warmed event of `seats` (all available
/// unless `booked` names some), removed on drop.
struct Lab {
    url: String,
    store: RedisStore,
    event: String,
}

impl Lab {
    async fn new(url: &str, seats: &[&str], booked: &[(&str, &str)], limit: u32) -> Self {
        let ns = format!("sgl{}:", uuid::Uuid::now_v7().simple());
        let store = RedisStore::connect(url, &ns, Duration::from_secs(2))
            .await
            .unwrap();
        let event = "lab".to_owned();
        let chunk: Vec<(String, i64, String)> = seats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let state = booked
                    .iter()
                    .find(|(seat, _)| seat == s)
                    .map(|(_, b)| format!("booked:{b}"))
                    .unwrap_or_else(|| "available".into());
                (s.to_string(), i as i64, state)
            })
            .collect();
        assert_eq!(
            store.warm_chunk(&event, &chunk).await.unwrap(),
            seats.len() as i64
        );
        store
            .warm_finish(&event, "Lab", limit, seats.len() as u64, true)
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
        let seats: Vec<String> = seats.iter().map(|s| s.to_string()).collect();
        self.store
            .claim(&ClaimRequest {
                event_id: &self.event,
                user_id: user,
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
                event_id: &self.event,
                user_id: user,
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
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(crate::helpers::delete_keys(&url, &pattern));
        })
        .join();
    }
}

fn pending(bid: &str, seats: &[&str]) -> ClaimOutcome {
    ClaimOutcome::Pending {
        booking_id: bid.into(),
        seats: seats.iter().map(|s| s.to_string()).collect(),
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
    let other = RedisStore::connect(REDIS_URL, "sgl-none:", Duration::from_secs(2))
        .await
        .unwrap();
    let seats = vec!["A1".to_owned()];
    let outcome = other
        .claim(&ClaimRequest {
            event_id: &missing.event,
            user_id: "u",
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
        ClaimOutcome::Replay(Box::new(pending("b1", &["A1"])))
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
        ClaimOutcome::Replay(Box::new(ClaimOutcome::SeatsUnavailable(vec!["A1".into()])))
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
        s.confirm(e, "b1", &seats(&["A1", "A2"])).await.unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(
        s.confirm(e, "b1", &seats(&["A1", "A2"])).await.unwrap(),
        Some(BookingStatus::Confirmed)
    );
    assert_eq!(lab.state("A1").await, "booked:b1");
    assert_eq!(s.confirm(e, "nope", &seats(&["A1"])).await.unwrap(), None);
    assert_eq!(lab.counts().await, (0, 2, 2));

    // reject.lua: MySQL says A3 is booked by "x"; a confirmed booking is never rejected.
    let truth = vec![("A3".to_owned(), "booked:x".to_owned())];
    assert_eq!(
        s.reject(e, "b2", "u2", "seats_taken", &truth)
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
    let free = vec![("A1".to_owned(), "available".to_owned())];
    assert_eq!(
        s.reject(e, "b1", "u1", "seats_taken", &free).await.unwrap(),
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
        s.confirm(e, "b3", &seats(&["A4"])).await.unwrap(),
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
        ("A1".to_owned(), 0, "available".to_owned()),
        ("A2".to_owned(), 1, "booked:m".to_owned()),
        ("A3".to_owned(), 2, "available".to_owned()),
    ];
    assert_eq!(s.warm_chunk(&lab.event, &chunk).await.unwrap(), 1);
    assert_eq!(lab.state("A1").await, "pending:b1");
    assert_eq!(lab.state("A2").await, "booked:m");
    let counts = s.warm_finish(&lab.event, "Lab", 4, 3, true).await.unwrap();
    assert_eq!(
        counts,
        SeatCounts {
            seats_total: 3,
            available: 1,
            pending: 1,
            booked: 1
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
            .confirm(&lab.event, "b2", &["A2".to_owned()])
            .await
            .unwrap(),
        Some(BookingStatus::Confirmed)
    );
}

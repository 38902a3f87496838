//! The per-claim decision of a settle, as a pure function.
//!
//! The settle transaction (see the at-least-once protocol in `reconciler`) gathers
//! everything a decision depends on while it holds the claim's seat locks: the seat
//! rows, the booking row MySQL may already have, and whether Redis still holds the
//! claim as pending. [`decide`] turns that reading into a [`Decision`]; the
//! transaction then carries it out. Keeping the decision apart from the I/O lets every branch of the
//! at-least-once protocol be tested without a database or Redis.

use crate::db::bookings::{BookingRow, LockedSeat};
use crate::domain::{BookingStatus, RejectReason};

use super::Claim;

/// What to do with one claim, given what MySQL and Redis say under the seat locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// MySQL already has the booking (a redelivery, a cancellation tombstone, or a
    /// recorded rejection): nothing is written, and Redis is brought in line with it.
    FollowMysql(Follow),
    /// Redis holds the claim as settled (confirmed, rejected or cancelled by an earlier
    /// delivery) and MySQL has no row to follow: there is nothing to persist. Carries
    /// Redis's status.
    AlreadySettled(BookingStatus),
    /// Reject the claim for `reason`. `record` says whether a `rejected` booking row is
    /// written: not when a seat is missing, since that most likely means the event is
    /// missing, and a booking row must name an existing event (`bookings_event`).
    Reject { reason: RejectReason, record: bool },
    /// Book the seats and insert the booking: `confirmed`, or `held` when the claim
    /// carries a hold.
    Persist,
}

/// How Redis follows a booking MySQL already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follow {
    /// MySQL has it confirmed: `confirm.lua` after the COMMIT.
    Confirm,
    /// MySQL has it held: `confirm.lua` holds it in Redis after the COMMIT.
    Hold,
    /// MySQL has a cancellation tombstone: cancel in Redis after the COMMIT.
    Cancel,
    /// MySQL has it expired: its seats are freed in Redis after the COMMIT.
    Expire,
    /// MySQL recorded a rejection for this reason: `reject.lua` while the locks are
    /// held, with MySQL's state of the seats.
    Reject(RejectReason),
}

/// Decides one claim (steps 2 to 5 of the protocol).
///
/// - `known`: the booking row MySQL has for the claim's id, if any;
/// - `redis_status`: the claim's booking status in Redis (`None` if Redis has none);
/// - `locked`: the claim's seat rows as locked (and as updated by the claims decided
///   before it in the same batch), one per seat of `claim.seats`, in that order;
///   `None` for a seat MySQL does not have;
/// - `give_up`: the reason to reject a claim that could otherwise be persisted
///   (see `Reconciler::reject_claim`).
pub(crate) fn decide(
    claim: &Claim,
    known: Option<&BookingRow>,
    redis_status: Option<BookingStatus>,
    locked: &[Option<&LockedSeat>],
    give_up: Option<RejectReason>,
) -> Decision {
    debug_assert_eq!(locked.len(), claim.seats.len(), "one lock per seat");
    if let Some(row) = known {
        return Decision::FollowMysql(match row.status {
            BookingStatus::Confirmed => Follow::Confirm,
            BookingStatus::Held => Follow::Hold,
            BookingStatus::Cancelled => Follow::Cancel,
            BookingStatus::Expired => Follow::Expire,
            BookingStatus::Rejected | BookingStatus::Pending => {
                Follow::Reject(reason_of(row.reason.as_deref()))
            }
        });
    }
    let all_exist = locked.iter().all(Option::is_some);
    match redis_status {
        Some(BookingStatus::Pending) => {}
        Some(settled) => return Decision::AlreadySettled(settled),
        // Acknowledged once (its outbox entry or its seats say so), unknown to MySQL,
        // and Redis lost its record: the tally and idempotency record that went with it
        // may be gone too, so persisting it could break the per-user limit or book it
        // twice. It is rejected, and recorded so that its owner's GET says why.
        None => {
            return Decision::Reject {
                reason: RejectReason::LostInRedisFailover,
                record: all_exist,
            }
        }
    }
    let taken = locked
        .iter()
        .flatten()
        .any(|l| l.taken_by_other(&claim.booking_id));
    let reason = if !all_exist {
        Some(RejectReason::EventNotFound)
    } else if taken {
        Some(RejectReason::SeatsTaken)
    } else {
        give_up
    };
    match reason {
        Some(reason) => Decision::Reject {
            reason,
            record: all_exist,
        },
        None => Decision::Persist,
    }
}

/// The reason a booking row records (reasons recorded in MySQL are always one of
/// them; anything else reads as seats taken).
fn reason_of(recorded: Option<&str>) -> RejectReason {
    recorded
        .and_then(RejectReason::parse)
        .unwrap_or(RejectReason::SeatsTaken)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKING: &str = "0193a1b2-0000-7000-8000-000000000001";
    const OTHER: &str = "0193a1b2-0000-7000-8000-000000000002";

    fn claim() -> Claim {
        Claim {
            event_id: "ev".into(),
            booking_id: BOOKING.into(),
            user_id: "u1".into(),
            seats: vec!["A1".into(), "A2".into()],
            hold: None,
        }
    }

    fn seat(seat: &str, status: &str, booking: Option<&str>) -> LockedSeat {
        LockedSeat {
            seat: seat.into(),
            status: status.into(),
            booking_id: booking.map(str::to_owned),
        }
    }

    fn free() -> [LockedSeat; 2] {
        [seat("A1", "available", None), seat("A2", "available", None)]
    }

    fn known(status: BookingStatus, reason: Option<&str>) -> BookingRow {
        let claim = claim();
        BookingRow {
            id: claim.booking_id,
            event_id: claim.event_id,
            user_id: claim.user_id,
            status,
            seats: claim.seats,
            reason: reason.map(str::to_owned),
            claimed_ms: None,
            expires_ms: None,
        }
    }

    fn decide_on(
        known: Option<&BookingRow>,
        redis_status: Option<BookingStatus>,
        seats: &[Option<&LockedSeat>],
        give_up: Option<RejectReason>,
    ) -> Decision {
        decide(&claim(), known, redis_status, seats, give_up)
    }

    /// The decision on a claim that is pending in Redis and unknown to MySQL.
    fn decide_pending(seats: &[Option<&LockedSeat>], give_up: Option<RejectReason>) -> Decision {
        decide_on(None, Some(BookingStatus::Pending), seats, give_up)
    }

    fn reject(reason: RejectReason, record: bool) -> Decision {
        Decision::Reject { reason, record }
    }

    #[test]
    fn a_pending_claim_on_free_seats_is_persisted() {
        let [a1, a2] = free();
        let pending = Some(BookingStatus::Pending);
        assert_eq!(
            decide_on(None, pending, &[Some(&a1), Some(&a2)], None),
            Decision::Persist
        );
    }

    #[test]
    fn seats_already_booked_by_the_same_booking_do_not_block_it() {
        let a1 = seat("A1", "booked", Some(BOOKING));
        let a2 = seat("A2", "available", None);
        let pending = Some(BookingStatus::Pending);
        assert_eq!(
            decide_on(None, pending, &[Some(&a1), Some(&a2)], None),
            Decision::Persist
        );
    }

    #[test]
    fn a_redelivered_persisted_claim_is_confirmed_again_in_redis() {
        let row = known(BookingStatus::Confirmed, None);
        let a1 = seat("A1", "booked", Some(BOOKING));
        let a2 = seat("A2", "booked", Some(BOOKING));
        for redis_status in [None, Some(BookingStatus::Pending)] {
            assert_eq!(
                decide_on(Some(&row), redis_status, &[Some(&a1), Some(&a2)], None),
                Decision::FollowMysql(Follow::Confirm)
            );
        }
    }

    #[test]
    fn a_redelivered_held_claim_is_held_again_and_an_expired_one_freed() {
        let held = known(BookingStatus::Held, None);
        let a1 = seat("A1", "held", Some(BOOKING));
        let a2 = seat("A2", "held", Some(BOOKING));
        for redis_status in [None, Some(BookingStatus::Pending)] {
            assert_eq!(
                decide_on(Some(&held), redis_status, &[Some(&a1), Some(&a2)], None),
                Decision::FollowMysql(Follow::Hold)
            );
        }
        let expired = known(BookingStatus::Expired, None);
        let [f1, f2] = free();
        assert_eq!(
            decide_on(Some(&expired), None, &[Some(&f1), Some(&f2)], None),
            Decision::FollowMysql(Follow::Expire)
        );
    }

    #[test]
    fn a_seat_another_booking_holds_for_its_checkout_is_taken() {
        let a1 = seat("A1", "held", Some(OTHER));
        let a2 = seat("A2", "available", None);
        assert_eq!(
            decide_pending(&[Some(&a1), Some(&a2)], None),
            reject(RejectReason::SeatsTaken, true)
        );
    }

    #[test]
    fn a_cancellation_tombstone_cancels_the_claim_in_redis() {
        let row = known(BookingStatus::Cancelled, None);
        let [a1, a2] = free();
        assert_eq!(
            decide_on(
                Some(&row),
                Some(BookingStatus::Pending),
                &[Some(&a1), Some(&a2)],
                None
            ),
            Decision::FollowMysql(Follow::Cancel)
        );
    }

    #[test]
    fn a_recorded_rejection_is_repeated_in_redis_with_its_reason() {
        let [a1, a2] = free();
        let row = known(BookingStatus::Rejected, Some("deadline_exceeded"));
        assert_eq!(
            decide_on(
                Some(&row),
                Some(BookingStatus::Pending),
                &[Some(&a1), Some(&a2)],
                Some(RejectReason::PersistFailed)
            ),
            Decision::FollowMysql(Follow::Reject(RejectReason::DeadlineExceeded))
        );
        // A pending row, or a reason MySQL should not have, reads as seats taken.
        for row in [
            known(BookingStatus::Pending, None),
            known(BookingStatus::Rejected, Some("no_such_reason")),
        ] {
            assert_eq!(
                decide_on(Some(&row), None, &[Some(&a1), Some(&a2)], None),
                Decision::FollowMysql(Follow::Reject(RejectReason::SeatsTaken))
            );
        }
    }

    #[test]
    fn a_claim_redis_holds_as_settled_is_not_persisted() {
        let [a1, a2] = free();
        for redis_status in [
            BookingStatus::Rejected,
            BookingStatus::Confirmed,
            BookingStatus::Cancelled,
        ] {
            assert_eq!(
                decide_on(None, Some(redis_status), &[Some(&a1), Some(&a2)], None),
                Decision::AlreadySettled(redis_status)
            );
        }
    }

    #[test]
    fn a_claim_whose_record_redis_lost_is_rejected_and_recorded_not_persisted() {
        let [a1, a2] = free();
        let lost = reject(RejectReason::LostInRedisFailover, true);
        // Free seats, and whatever reason the caller would give up for: lost wins.
        for give_up in [None, Some(RejectReason::DeadlineExceeded)] {
            assert_eq!(
                decide_on(None, None, &[Some(&a1), Some(&a2)], give_up),
                lost
            );
        }
        // Seats MySQL has booked for another booking: lost all the same (the seats go
        // to MySQL's truth either way).
        let taken = seat("A2", "booked", Some(OTHER));
        assert_eq!(
            decide_on(None, None, &[Some(&a1), Some(&taken)], None),
            lost
        );
        // A seat MySQL does not have: rejected, but no row (it would name no event).
        assert_eq!(
            decide_on(None, None, &[Some(&a1), None], None),
            reject(RejectReason::LostInRedisFailover, false)
        );
    }

    #[test]
    fn a_claim_whose_record_redis_lost_follows_mysql_when_mysql_has_it() {
        let [a1, a2] = free();
        let booked = [
            seat("A1", "booked", Some(BOOKING)),
            seat("A2", "booked", Some(BOOKING)),
        ];
        let cases = [
            (
                known(BookingStatus::Confirmed, None),
                Follow::Confirm,
                &booked,
            ),
            (
                known(BookingStatus::Cancelled, None),
                Follow::Cancel,
                &[a1.clone(), a2.clone()],
            ),
            (
                known(BookingStatus::Rejected, Some("lost_in_redis_failover")),
                Follow::Reject(RejectReason::LostInRedisFailover),
                &[a1.clone(), a2.clone()],
            ),
        ];
        for (row, follow, [s1, s2]) in cases {
            assert_eq!(
                decide_on(Some(&row), None, &[Some(s1), Some(s2)], None),
                Decision::FollowMysql(follow)
            );
        }
    }

    #[test]
    fn a_missing_seat_rejects_without_a_record() {
        let a1 = seat("A1", "booked", Some(OTHER));
        assert_eq!(
            decide_pending(&[Some(&a1), None], Some(RejectReason::DeadlineExceeded)),
            reject(RejectReason::EventNotFound, false)
        );
    }

    #[test]
    fn a_seat_booked_by_another_booking_rejects_with_a_record() {
        let a1 = seat("A1", "available", None);
        let a2 = seat("A2", "booked", Some(OTHER));
        assert_eq!(
            decide_pending(
                &[Some(&a1), Some(&a2)],
                Some(RejectReason::DeadlineExceeded)
            ),
            reject(RejectReason::SeatsTaken, true)
        );
    }

    #[test]
    fn giving_up_rejects_a_claim_that_could_be_persisted() {
        let [a1, a2] = free();
        assert_eq!(
            decide_pending(&[Some(&a1), Some(&a2)], Some(RejectReason::PersistFailed)),
            reject(RejectReason::PersistFailed, true)
        );
    }
}

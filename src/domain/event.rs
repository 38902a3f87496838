//! What a new event must be: the one set of rules for every way an event is made (the
//! admin API, `seatgate admin create-event`, and its CSV import).
//!
//! Each rule is a small function so that the CSV import can apply the per-seat rules row
//! by row and say on which line a seat breaks them; [`validate`] applies them all, in a
//! fixed order, and answers with the first broken one.

use std::collections::HashSet;

use super::{
    is_valid_event_id, is_valid_seat_id, EVENT_ID_MAX, EVENT_NAME_MAX, HOLD_SECONDS_MAX,
    PER_USER_LIMIT_DEFAULT, PER_USER_LIMIT_MAX, SEATS_MAX, SEAT_ID_MAX,
};

/// Why a new event is refused. Its message is the one the admin API answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The id is not `[A-Za-z0-9_-]{1,64}`.
    #[error("id must be 1 to {max} characters of A-Z, a-z, 0-9, _ and -", max = EVENT_ID_MAX)]
    Id,
    /// The name is empty or too long.
    #[error("name must be 1 to {max} characters", max = EVENT_NAME_MAX)]
    Name,
    /// No seats, or more than an event may have.
    #[error("seats must list 1 to {max} seats", max = SEATS_MAX)]
    SeatCount,
    /// A seat id is empty or too long (the seat id).
    #[error("seat ids must be 1 to {max} characters: {0:?}", max = SEAT_ID_MAX)]
    SeatIdLength(String),
    /// A seat id ends with a space (the seat id): MySQL compares ids with PAD SPACE, so
    /// "A1 " and "A1" would be one row.
    #[error("seat ids may not end with a space: {0:?}")]
    SeatIdTrailingSpace(String),
    /// A seat listed twice (the seat id).
    #[error("duplicate seat {0:?}")]
    DuplicateSeat(String),
    /// The per-user limit is out of range.
    #[error("per_user_limit must be 1 to {max}", max = PER_USER_LIMIT_MAX)]
    PerUserLimit,
    /// The hold is out of range.
    #[error("hold_seconds must be 0 to {max}", max = HOLD_SECONDS_MAX)]
    HoldSeconds,
    /// The longest hold is out of range, or below the hold.
    #[error("hold_max_seconds must be hold_seconds to {max}", max = HOLD_SECONDS_MAX)]
    HoldMaxSeconds,
}

/// An event's holds, `(hold_seconds, hold_max_seconds)`: the hold 0 (none) unless
/// given, the longest hold the hold unless given, both at most
/// [`HOLD_SECONDS_MAX`], the longest never below the hold.
pub fn holds(hold: Option<u32>, max: Option<u32>) -> Result<(u32, u32), EventError> {
    let hold = hold.unwrap_or(0);
    if hold > HOLD_SECONDS_MAX {
        return Err(EventError::HoldSeconds);
    }
    let max = max.unwrap_or(hold);
    if !(hold..=HOLD_SECONDS_MAX).contains(&max) {
        return Err(EventError::HoldMaxSeconds);
    }
    Ok((hold, max))
}

/// Checks an event id.
pub(crate) fn check_id(id: &str) -> Result<(), EventError> {
    if is_valid_event_id(id) {
        Ok(())
    } else {
        Err(EventError::Id)
    }
}

/// Checks an event name: 1 to 200 characters.
pub(crate) fn check_name(name: &str) -> Result<(), EventError> {
    if (1..=EVENT_NAME_MAX).contains(&name.chars().count()) {
        Ok(())
    } else {
        Err(EventError::Name)
    }
}

/// Checks one seat id: its length, then its end.
pub(crate) fn check_seat(seat: &str) -> Result<(), EventError> {
    check_seat_length(seat)?;
    check_seat_end(seat)
}

fn check_seat_length(seat: &str) -> Result<(), EventError> {
    if is_valid_seat_id(seat) {
        Ok(())
    } else {
        Err(EventError::SeatIdLength(seat.to_owned()))
    }
}

fn check_seat_end(seat: &str) -> Result<(), EventError> {
    if seat.ends_with(' ') {
        Err(EventError::SeatIdTrailingSpace(seat.to_owned()))
    } else {
        Ok(())
    }
}

/// The per-user limit of a new event: the given one if it is in range, else the default
/// when none is given.
pub fn per_user_limit(limit: Option<u32>) -> Result<u32, EventError> {
    let limit = limit.unwrap_or(PER_USER_LIMIT_DEFAULT);
    if (1..=PER_USER_LIMIT_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(EventError::PerUserLimit)
    }
}

/// Checks a whole new event and answers with its per-user limit. The rules are applied
/// in this order, each over every seat before the next: id, name, seat count, seat id
/// lengths, seat id ends, duplicate seats, per-user limit.
pub(crate) fn validate(
    id: &str,
    name: &str,
    seats: &[String],
    per_user_limit: Option<u32>,
) -> Result<u32, EventError> {
    check_id(id)?;
    check_name(name)?;
    if !(1..=SEATS_MAX).contains(&seats.len()) {
        return Err(EventError::SeatCount);
    }
    seats.iter().try_for_each(|s| check_seat_length(s))?;
    seats.iter().try_for_each(|s| check_seat_end(s))?;
    let mut seen = HashSet::with_capacity(seats.len());
    if let Some(seat) = seats.iter().find(|s| !seen.insert(s.as_str())) {
        return Err(EventError::DuplicateSeat(seat.clone()));
    }
    self::per_user_limit(per_user_limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_default_to_none_and_the_longest_to_the_hold() {
        assert_eq!(holds(None, None).unwrap(), (0, 0));
        assert_eq!(holds(Some(900), None).unwrap(), (900, 900));
        assert_eq!(holds(Some(900), Some(7200)).unwrap(), (900, 7200));
        assert_eq!(holds(Some(0), Some(60)).unwrap(), (0, 60));
        assert!(matches!(
            holds(Some(7201), None),
            Err(EventError::HoldSeconds)
        ));
        assert!(matches!(
            holds(Some(900), Some(899)),
            Err(EventError::HoldMaxSeconds)
        ));
        assert!(matches!(
            holds(None, Some(7201)),
            Err(EventError::HoldMaxSeconds)
        ));
    }

    fn seats(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn message(id: &str, name: &str, ids: &[&str], limit: Option<u32>) -> String {
        validate(id, name, &seats(ids), limit)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_valid_event_answers_with_its_limit() {
        assert_eq!(
            validate("wc-26", "WordCamp", &seats(&["A1", "a1"]), None),
            Ok(4)
        );
        assert_eq!(validate("wc", "W", &seats(&["A1"]), Some(100)), Ok(100));
        let long_seat = "é".repeat(SEAT_ID_MAX);
        assert_eq!(
            validate("wc", &"é".repeat(200), &[long_seat], Some(1)),
            Ok(1)
        );
    }

    #[test]
    fn each_rule_has_the_api_message() {
        let id = "id must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -";
        assert_eq!(message("bad id", "X", &["A"], None), id);
        assert_eq!(message(&"x".repeat(65), "X", &["A"], None), id);
        assert_eq!(message("", "X", &["A"], None), id);
        let name = "name must be 1 to 200 characters";
        assert_eq!(message("e", "", &["A"], None), name);
        assert_eq!(message("e", &"n".repeat(201), &["A"], None), name);
        assert_eq!(
            message("e", "X", &[], None),
            "seats must list 1 to 100000 seats"
        );
        assert_eq!(
            message("e", "X", &[""], None),
            "seat ids must be 1 to 32 characters: \"\""
        );
        assert_eq!(
            message("e", "X", &["B "], None),
            "seat ids may not end with a space: \"B \""
        );
        assert_eq!(message("e", "X", &["A", "A"], None), "duplicate seat \"A\"");
        for limit in [0, 101] {
            assert_eq!(
                message("e", "X", &["A"], Some(limit)),
                "per_user_limit must be 1 to 100"
            );
        }
    }

    #[test]
    fn every_seat_is_checked_for_length_before_any_for_its_end() {
        let long = "x".repeat(33);
        assert_eq!(
            validate("e", "X", &seats(&["A ", &long]), None),
            Err(EventError::SeatIdLength(long))
        );
    }

    #[test]
    fn too_many_seats_are_refused() {
        let many: Vec<String> = (0..=SEATS_MAX).map(|i| format!("S{i}")).collect();
        assert_eq!(validate("e", "X", &many, None), Err(EventError::SeatCount));
        assert_eq!(validate("e", "X", &many[1..], None), Ok(4));
    }

    #[test]
    fn one_seat_is_checked_alone() {
        assert_eq!(check_seat("A1"), Ok(()));
        assert_eq!(
            check_seat(&"é".repeat(33)),
            Err(EventError::SeatIdLength("é".repeat(33)))
        );
        assert_eq!(
            check_seat("A1 "),
            Err(EventError::SeatIdTrailingSpace("A1 ".into()))
        );
    }
}

//! Seat states as Redis spells them in `{e}:seats`: `available`, `pending:<bid>`,
//! `held:<bid>` (persisted, waiting for its checkout) and `booked:<bid>`. This is the one place in Rust that reads or writes that text; the
//! Lua scripts in `lua/` spell it the same way, and `warm.lua` and `reject.lua` are
//! handed states written here.

use crate::domain::{SeatState, SeatStatus};

const AVAILABLE: &str = "available";
const PENDING: &str = "pending:";
const HELD: &str = "held:";
const BOOKED: &str = "booked:";

impl SeatState {
    /// Reads a state from Redis; `None` for text no script writes.
    pub(crate) fn from_redis(text: &str) -> Option<Self> {
        if text == AVAILABLE {
            Some(Self::Available)
        } else if let Some(bid) = text.strip_prefix(PENDING) {
            Some(Self::Pending(bid.to_owned()))
        } else if let Some(bid) = text.strip_prefix(HELD) {
            Some(Self::Held(bid.to_owned()))
        } else {
            text.strip_prefix(BOOKED)
                .map(|bid| Self::Booked(bid.to_owned()))
        }
    }

    /// The state as Redis holds it.
    pub fn to_redis(&self) -> String {
        match self {
            Self::Available => AVAILABLE.to_owned(),
            Self::Pending(bid) => format!("{PENDING}{bid}"),
            Self::Held(bid) => format!("{HELD}{bid}"),
            Self::Booked(bid) => format!("{BOOKED}{bid}"),
        }
    }
}

/// The public status of a seat whose Redis state is `text`, without allocating: the
/// seat map reads thousands of them per refresh. Text no script writes reads as
/// available.
pub fn status_of(text: &str) -> SeatStatus {
    if text.starts_with(PENDING) {
        SeatStatus::Pending
    } else if text.starts_with(HELD) {
        SeatStatus::Held
    } else if text.starts_with(BOOKED) {
        SeatStatus::Booked
    } else {
        SeatStatus::Available
    }
}

/// A seat id goes to Redis as its text (a claim's ARGV).
impl redis::ToRedisArgs for crate::domain::SeatId {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.as_str().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_states_round_trip_through_their_redis_text() {
        for (state, text) in [
            (SeatState::Available, "available"),
            (SeatState::Pending("b1".into()), "pending:b1"),
            (SeatState::Held("b2".into()), "held:b2"),
            (
                SeatState::Booked("0193a1b2-0000-7000-8000-000000000001".into()),
                "booked:0193a1b2-0000-7000-8000-000000000001",
            ),
        ] {
            assert_eq!(state.to_redis(), text);
            assert_eq!(SeatState::from_redis(text), Some(state.clone()));
            assert_eq!(status_of(text), state.status());
        }
    }

    #[test]
    fn text_no_script_writes_is_not_a_seat_state() {
        for text in [
            "",
            "Available",
            "pending",
            "booked",
            "sold:b1",
            "available:b1",
        ] {
            assert_eq!(SeatState::from_redis(text), None, "{text}");
        }
        assert_eq!(status_of("garbage"), SeatStatus::Available);
    }
}

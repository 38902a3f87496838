//! The claim body parser, `ParsedClaim::parse`: any bytes give a claim or a 400, never
//! a panic, and a claim it lets through obeys the contract: 1 to 100 unique seat ids of
//! 1 to 32 characters, or a quantity of at least 1. The same JSON value written another
//! way (compact, pretty, keys in another order) parses to the same claim and fingerprint.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use seatgate::api::bookings::{ParsedClaim, Wanted, CLAIM_SEATS_MAX};
use seatgate::domain::{PER_USER_LIMIT_MAX, SEAT_ID_MAX};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(claim) = ParsedClaim::parse(data) else {
        return;
    };
    match &claim.wanted {
        Wanted::Seats(seats) => {
            assert!((1..=CLAIM_SEATS_MAX).contains(&seats.len()), "{seats:?}");
            for seat in seats {
                let n = seat.chars().count();
                assert!((1..=SEAT_ID_MAX).contains(&n), "{seat:?}");
            }
            let unique: HashSet<&str> = seats.iter().map(|s| s.as_str()).collect();
            assert_eq!(unique.len(), seats.len(), "{seats:?}");
        }
        Wanted::Quantity(n) => {
            // Capped one above the highest per-user limit, so the limit check answers.
            assert!((1..=PER_USER_LIMIT_MAX + 1).contains(n), "{n}");
        }
    }
    let value: Value = serde_json::from_slice(data).expect("a valid claim is JSON");
    for text in [
        value.to_string(),
        serde_json::to_string_pretty(&value).unwrap(),
        keys_reversed(&value),
    ] {
        let again = ParsedClaim::parse(text.as_bytes()).expect("the same value is valid");
        assert_eq!(again, claim, "{text}");
    }
});

/// The value with the top-level object's keys in reverse order (serde_json writes them
/// sorted), as another client might send it.
fn keys_reversed(value: &Value) -> String {
    let Value::Object(map) = value else {
        return value.to_string();
    };
    let members: Vec<String> = map
        .iter()
        .rev()
        .map(|(k, v)| format!("{}: {v}", Value::String(k.clone())))
        .collect();
    format!("{{ {} }}", members.join(" , "))
}

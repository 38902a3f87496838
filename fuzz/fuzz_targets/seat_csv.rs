//! The seat CSV import, `parse_seats_csv` (`seatgate admin create-event --csv`): any
//! bytes give seats or errors, never a panic. Seats it accepts are valid, unique ids
//! with no trailing space, and written back as a CSV they read the same. Errors are
//! at most `MAX_REPORTED`, each at a 1-based line and column inside the file.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use seatgate::domain::is_valid_seat_id;
use seatgate::ops::import::{parse_seats_csv, MAX_REPORTED};

fuzz_target!(|data: &[u8]| {
    match parse_seats_csv("fuzz.csv", data) {
        Ok(seats) => {
            assert!(!seats.is_empty());
            let unique: HashSet<&String> = seats.iter().collect();
            assert_eq!(unique.len(), seats.len(), "{seats:?}");
            for seat in &seats {
                assert!(is_valid_seat_id(seat), "{seat:?}");
                assert!(!seat.ends_with(' '), "{seat:?}");
            }
            let again = parse_seats_csv("again.csv", to_csv(&seats).as_bytes())
                .unwrap_or_else(|e| panic!("{seats:?} written back: {e}"));
            assert_eq!(again, seats);
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty());
            assert!(errors.errors.len() <= MAX_REPORTED);
            // One past the last line: "no seats" points below a header-only file. A line
            // ends at `\n`, `\r\n` or a lone `\r`.
            let breaks = data
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && data.get(i + 1) != Some(&b'\n')))
                .count();
            let lines = breaks + 2;
            for e in &errors.errors {
                assert!((1..=lines).contains(&e.line), "{e} in {lines} lines");
                assert!(e.column >= 1, "{e}");
            }
            assert_eq!(
                errors.lines().len(),
                errors.errors.len() + usize::from(errors.more > 0)
            );
        }
    }
});

/// The seats as a one-column CSV, every id quoted.
fn to_csv(seats: &[String]) -> String {
    let mut out = String::from("seat\n");
    for seat in seats {
        out.push('"');
        out.push_str(&seat.replace('"', "\"\""));
        out.push_str("\"\n");
    }
    out
}

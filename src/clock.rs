//! The wall clock as Unix time, in one place: claims are stamped with it, tokens
//! expire by it, run ids and report dates are made from it. A clock set before 1970
//! reads as 0 rather than failing: nothing here is worth a panic over it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    unix_millis() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_agree() {
        let (ms, s) = (unix_millis(), unix_secs());
        assert!(ms / 1000 <= s && s <= ms / 1000 + 1, "{ms} ms, {s} s");
        assert!(s > 1_700_000_000, "after 2023: {s}");
    }
}

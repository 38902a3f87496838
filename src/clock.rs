//! The wall clock as Unix time, in one place: claims are stamped with it, tokens
//! expire by it, run ids and report dates are made from it. A clock set before 1970
//! reads as 0 rather than failing: nothing here is worth a panic over it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// How long ago a Redis stream entry was added: its id is `<milliseconds>-<sequence>`.
/// An id that does not parse reads as added now.
pub(crate) fn stream_entry_age(id: &str) -> Duration {
    let added_ms: u64 = id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(u64::MAX);
    Duration::from_millis(unix_millis().saturating_sub(added_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_entry_ids_tell_their_age() {
        let now_ms = unix_millis();
        let age = stream_entry_age(&format!("{}-0", now_ms - 5_000));
        assert!(age >= Duration::from_secs(5) && age < Duration::from_secs(60));
        assert_eq!(stream_entry_age("garbage"), Duration::ZERO);
    }

    #[test]
    fn seconds_and_milliseconds_agree() {
        let (ms, s) = (unix_millis(), unix_secs());
        assert!(ms / 1000 <= s && s <= ms / 1000 + 1, "{ms} ms, {s} s");
        assert!(s > 1_700_000_000, "after 2023: {s}");
    }
}

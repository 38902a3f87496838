//! The claim's headers: `Idempotency-Key` (`idempotency_key`, `is_valid_idempotency_key`)
//! and `Prefer` (`prefer_wait`). Never a panic; a key is taken exactly as sent and only
//! when it is 1 to 255 visible ASCII characters; a wait is never over `MAX_WAIT`.
//!
//! Input: header values separated by `\n` (which no header value can hold). The first
//! is the `Idempotency-Key`, the others `Prefer` headers, in order. Values `http`
//! refuses never reach the gateway and are left out.

#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use seatgate::api::bookings::{idempotency_key, prefer_wait, MAX_WAIT};
use seatgate::domain::is_valid_idempotency_key;

fuzz_target!(|data: &[u8]| {
    let visible_ascii =
        |b: &[u8]| (1..=255).contains(&b.len()) && b.iter().all(u8::is_ascii_graphic);
    assert_eq!(is_valid_idempotency_key(data), visible_ascii(data));

    let mut parts = data.split(|&b| b == b'\n');
    let mut headers = HeaderMap::new();
    let key = parts.next().and_then(|b| HeaderValue::from_bytes(b).ok());
    if let Some(key) = &key {
        headers.insert("idempotency-key", key.clone());
    }
    for prefer in parts.filter_map(|b| HeaderValue::from_bytes(b).ok()) {
        headers.append("prefer", prefer);
    }

    match (idempotency_key(&headers), &key) {
        (Ok(None), None) => {}
        (Ok(Some(taken)), Some(sent)) => {
            assert_eq!(taken.as_bytes(), sent.as_bytes());
            assert!(visible_ascii(sent.as_bytes()));
        }
        (Err(_), Some(sent)) => assert!(!visible_ascii(sent.as_bytes())),
        (got, sent) => panic!("Idempotency-Key {sent:?} read as {got:?}"),
    }

    if let Some(wait) = prefer_wait(&headers) {
        assert!(wait <= MAX_WAIT, "{wait:?}");
        let said_wait = headers.get_all("prefer").iter().any(|v| {
            v.as_bytes()
                .to_ascii_lowercase()
                .windows(4)
                .any(|w| w == b"wait")
        });
        assert!(said_wait, "a wait from no wait preference: {headers:?}");
    }
});
